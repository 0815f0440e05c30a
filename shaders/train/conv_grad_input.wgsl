// Gradient of a convolution's input as an implicit matrix product (with `tiled.wgsl`):
// din[r][ci][iy][ix] = sum over k = (co, ky, kx) of W[co][ci][ky][kx] dout[r][co][oy][ox], where
// (oy, ox) is the output whose window puts tap (ky, kx) on (iy, ix); zero where there is none
// (the stride skips it, or it lies outside the output).
@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read_write> din: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

const TAPS: bool = true;

// Output channel co's tap (ky, kx): where its weights for input channel 0 are, where its
// output channel starts in an example's gradient, and the tap's row and column.
struct Tap {
    w_at: u32,
    out_at: u32,
    ky: i32,
    kx: i32,
}

fn tap(k: u32) -> Tap {
    let taps = d.kh * d.kw;
    let co = k / taps;
    let t = k % taps;
    return Tap(co * d.c * taps + t, co * d.oh * d.ow, i32(t / d.kw), i32(t % d.kw));
}

// An input pixel: its example's output gradient, and its padded row and column.
struct Column {
    base: u32,
    y: i32,
    x: i32,
}

fn column(cand: u32, n: u32) -> Column {
    let hw = d.h * d.w;
    let pix = n % hw;
    return Column((cand * d.rows + n / hw) * d.b, i32(pix / d.w + d.pad), i32(pix % d.w + d.pad));
}

fn shape() -> Shape {
    let depth = d.c_out * d.kh * d.kw;
    return Shape(d.c, d.rows * d.h * d.w, depth, depth);
}

fn load_a(cand: u32, ci: u32, k: u32, t: Tap) -> f32 {
    return weights[cand * d.n_params + d.offset + t.w_at + ci * d.kh * d.kw];
}

fn load_b(col: Column, k: u32, t: Tap) -> f32 {
    let ny = col.y - t.ky;
    let nx = col.x - t.kx;
    if (ny < 0 || nx < 0) {
        return 0.0;
    }
    var oy = u32(ny);
    var ox = u32(nx);
    if (d.stride != 1u) {
        if (oy % d.stride != 0u || ox % d.stride != 0u) {
            return 0.0;
        }
        oy /= d.stride;
        ox /= d.stride;
    }
    if (oy >= d.oh || ox >= d.ow) {
        return 0.0;
    }
    return dout[col.base + t.out_at + oy * d.ow + ox];
}

fn store(cand: u32, split: u32, ci: u32, n: u32, sum: f32) {
    let hw = d.h * d.w;
    din[(cand * d.rows + n / hw) * d.a + ci * hw + n % hw] = sum;
}
