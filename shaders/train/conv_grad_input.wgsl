// Gradient of a convolution's input as an implicit matrix product (with `tiled.wgsl`):
// din[r][ci][iy][ix] = sum over k = (co, ky, kx) of W[co][ci][ky][kx] dout[r][co][oy][ox], where
// (oy, ox) is the output whose window puts tap (ky, kx) on (iy, ix); zero where there is none
// (the stride skips it, or it lies outside the output).
@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read_write> din: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

fn shape() -> Shape {
    let depth = d.c_out * d.kh * d.kw;
    return Shape(d.c, d.rows * d.h * d.w, depth, depth);
}

fn load_a(cand: u32, ci: u32, k: u32) -> f32 {
    let taps = d.kh * d.kw;
    return weights[cand * d.n_params + d.offset + ((k / taps) * d.c + ci) * taps + k % taps];
}

fn load_b(cand: u32, k: u32, n: u32) -> f32 {
    let taps = d.kh * d.kw;
    let hw = d.h * d.w;
    let r = n / hw;
    let pix = n % hw;
    let co = k / taps;
    let ny = i32(pix / d.w + d.pad) - i32((k % taps) / d.kw);
    let nx = i32(pix % d.w + d.pad) - i32(k % d.kw);
    if (ny < 0 || nx < 0 || ny % i32(d.stride) != 0 || nx % i32(d.stride) != 0) {
        return 0.0;
    }
    let oy = u32(ny) / d.stride;
    let ox = u32(nx) / d.stride;
    if (oy >= d.oh || ox >= d.ow) {
        return 0.0;
    }
    return dout[(cand * d.rows + r) * d.b + (co * d.oh + oy) * d.ow + ox];
}

fn store(cand: u32, split: u32, ci: u32, n: u32, sum: f32) {
    let hw = d.h * d.w;
    din[(cand * d.rows + n / hw) * d.a + ci * hw + n % hw] = sum;
}
