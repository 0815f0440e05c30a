// A convolution as an implicit matrix product (with `im2col.wgsl` and `tiled.wgsl`): for every
// candidate, out[r][co][pix] = (out | b[co] | 0) + sum_k W[co][k] X[k][r, pix]. `kind` 0 writes
// the product, 1 adds it, 2 adds the biases from `bias` (at the layer's offset, after the
// weights). The forward pass is one product; the forward-mode derivative two (x with tW and tb,
// then t_in with W).
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> d: Dims;

fn shape() -> Shape {
    let depth = d.c * d.kh * d.kw;
    return Shape(d.c_out, d.rows * d.oh * d.ow, depth, depth);
}

fn load_a(cand: u32, co: u32, k: u32) -> f32 {
    return weights[cand * d.n_params + d.offset + co * d.c * d.kh * d.kw + k];
}

fn load_b(cand: u32, k: u32, n: u32) -> f32 {
    return im2col(cand, k, n);
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
