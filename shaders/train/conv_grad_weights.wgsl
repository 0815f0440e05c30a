// Gradient of a convolution's parameters as an implicit matrix product (with `tiled.wgsl`),
// its long sum split: partial[split][co][j] = sum over the chunk's k = (r, pix) of
// dout[r][co][pix] X[j][r, pix], X the input's columns (as `conv_gemm` gathers them), and the
// column past the window's taps all ones, so that it sums dout into the bias gradient.
// `conv_grad_reduce` adds the chunks in order.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

const TAPS: bool = true;

// Output pixel pix of example r: where it is in an example's output gradient, where the
// example's input starts, and its window's top-left corner.
struct Tap {
    out_at: u32,
    in_at: u32,
    y: i32,
    x: i32,
}

fn tap(k: u32) -> Tap {
    let plane = d.oh * d.ow;
    let r = k / plane;
    let pix = k % plane;
    let y = i32((pix / d.ow) * d.stride) - i32(d.pad);
    let x = i32((pix % d.ow) * d.stride) - i32(d.pad);
    return Tap(r * d.b + pix, r * d.a, y, x);
}

// A weight's window tap: the candidate's input, the tap's channel offset, row and column; or
// the bias column.
struct Column {
    base: u32,
    at: u32,
    ky: i32,
    kx: i32,
    ones: bool,
}

fn column(cand: u32, n: u32) -> Column {
    let taps = d.kh * d.kw;
    let t = n % taps;
    let at = (n / taps) * d.h * d.w;
    return Column(cand * d.in_stride, at, i32(t / d.kw), i32(t % d.kw), n == d.c * taps);
}

fn shape() -> Shape {
    return Shape(d.c_out, d.c * d.kh * d.kw + d.bias, d.rows * d.oh * d.ow, d.chunk);
}

fn load_a(cand: u32, co: u32, k: u32, t: Tap) -> f32 {
    return dout[cand * d.rows * d.b + t.out_at + co * d.oh * d.ow];
}

fn load_b(col: Column, k: u32, t: Tap) -> f32 {
    if (col.ones) {
        return 1.0;
    }
    let iy = t.y + col.ky;
    let ix = t.x + col.kx;
    if (iy < 0 || iy >= i32(d.h) || ix < 0 || ix >= i32(d.w)) {
        return 0.0;
    }
    return input[col.base + t.in_at + col.at + u32(iy) * d.w + u32(ix)];
}

fn store(cand: u32, split: u32, co: u32, n: u32, sum: f32) {
    let cols = d.c * d.kh * d.kw + d.bias;
    partial[((cand * d.splits + split) * d.c_out + co) * cols + n] = sum;
}
