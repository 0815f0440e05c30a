// Gradient of a convolution's parameters as an implicit matrix product (with `im2col.wgsl` and
// `tiled.wgsl`), its long sum split: partial[split][co][k] = sum over the chunk's (r, pix) of
// dout[r][co][pix] X[k][r, pix], where the column past the window's taps is all ones, so that
// it sums dout into the bias gradient. `conv_grad_reduce` adds the chunks in order.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

fn shape() -> Shape {
    return Shape(d.c_out, d.c * d.kh * d.kw + d.bias, d.rows * d.oh * d.ow, d.chunk);
}

fn load_a(cand: u32, co: u32, k: u32) -> f32 {
    let plane = d.oh * d.ow;
    return dout[(cand * d.rows + k / plane) * d.b + co * plane + k % plane];
}

fn load_b(cand: u32, k: u32, n: u32) -> f32 {
    if (n == d.c * d.kh * d.kw) {
        return 1.0;
    }
    return im2col(cand, n, k);
}

fn store(cand: u32, split: u32, co: u32, n: u32, sum: f32) {
    let cols = d.c * d.kh * d.kw + d.bias;
    partial[((cand * d.splits + split) * d.c_out + co) * cols + n] = sum;
}
