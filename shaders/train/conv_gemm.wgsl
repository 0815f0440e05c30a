// A convolution as an implicit matrix product (with `tiled.wgsl`): for every candidate,
// out[r][co][pix] = (out | b[co] | 0) + sum_k W[co][k] X[k][r, pix], where X, the input's
// columns, is gathered from the input as it is loaded (never stored): entry k = (ci, ky, kx)
// of output pixel pix's window of example r, zero outside the image. `kind` 0 writes the
// product, 1 adds it, 2 adds the biases from `bias` (at the layer's offset, after the weights).
// The forward pass is one product; the forward-mode derivative two (x with tW and tb, then
// t_in with W).
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> d: Dims;

const TAPS: bool = true;

// A tap of the window: its input channel's offset in an example, and its row and column.
struct Tap {
    at: u32,
    ky: i32,
    kx: i32,
}

fn tap(k: u32) -> Tap {
    let taps = d.kh * d.kw;
    let t = k % taps;
    return Tap((k / taps) * d.h * d.w, i32(t / d.kw), i32(t % d.kw));
}

// An output pixel: its example's input, and its window's top-left corner.
struct Column {
    base: u32,
    y: i32,
    x: i32,
}

fn column(cand: u32, n: u32) -> Column {
    let plane = d.oh * d.ow;
    let pix = n % plane;
    let y = i32((pix / d.ow) * d.stride) - i32(d.pad);
    let x = i32((pix % d.ow) * d.stride) - i32(d.pad);
    return Column(cand * d.in_stride + (n / plane) * d.a, y, x);
}

fn shape() -> Shape {
    let depth = d.c * d.kh * d.kw;
    return Shape(d.c_out, d.rows * d.oh * d.ow, depth, depth);
}

fn load_a(cand: u32, co: u32, k: u32, t: Tap) -> f32 {
    return weights[cand * d.n_params + d.offset + co * d.c * d.kh * d.kw + k];
}

fn load_b(col: Column, k: u32, t: Tap) -> f32 {
    let iy = col.y + t.ky;
    let ix = col.x + t.kx;
    if (iy < 0 || iy >= i32(d.h) || ix < 0 || ix >= i32(d.w)) {
        return 0.0;
    }
    return input[col.base + t.at + u32(iy) * d.w + u32(ix)];
}

fn store(cand: u32, split: u32, co: u32, n: u32, sum: f32) {
    let plane = d.oh * d.ow;
    let at = (cand * d.rows + n / plane) * d.b + co * plane + n % plane;
    var v = sum;
    if (d.kind == 1u) {
        v += out[at];
    } else if (d.kind == 2u && d.bias == 1u) {
        v += bias[cand * d.n_params + d.offset + d.c_out * d.c * d.kh * d.kw + co];
    }
    out[at] = v;
}
