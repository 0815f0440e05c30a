// Gradient of a convolution's parameters: dW[co][ci][ky][kx] = sum over rows and outputs of
// dout[r][co][oy][ox] in[r][ci][oy*stride + ky - pad][ox*stride + kx - pad], then the biases
// db[co] = sum of dout[r][co]; per candidate, written at the layer's offset in `grad`.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let taps = d.c * d.kh * d.kw;
    let weights = d.c_out * taps;
    let per = weights + d.bias * d.c_out;
    if (i >= d.p * per) {
        return;
    }
    let c = i / per;
    let j = i % per;
    let plane = d.oh * d.ow;
    var acc = 0.0;
    if (j >= weights) {
        let co = j - weights;
        for (var r = 0u; r < d.rows; r++) {
            let g = (c * d.rows + r) * d.b + co * plane;
            for (var o = 0u; o < plane; o++) {
                acc += dout[g + o];
            }
        }
    } else {
        let co = j / taps;
        let ci = (j % taps) / (d.kh * d.kw);
        let ky = (j / d.kw) % d.kh;
        let kx = j % d.kw;
        for (var r = 0u; r < d.rows; r++) {
            let x = c * d.in_stride + r * d.a + ci * d.h * d.w;
            let g = (c * d.rows + r) * d.b + co * plane;
            for (var oy = 0u; oy < d.oh; oy++) {
                let iy = i32(oy * d.stride + ky) - i32(d.pad);
                if (iy < 0 || iy >= i32(d.h)) {
                    continue;
                }
                for (var ox = 0u; ox < d.ow; ox++) {
                    let ix = i32(ox * d.stride + kx) - i32(d.pad);
                    if (ix < 0 || ix >= i32(d.w)) {
                        continue;
                    }
                    acc += input[x + u32(iy) * d.w + u32(ix)] * dout[g + oy * d.ow + ox];
                }
            }
        }
    }
    grad[c * d.n_params + d.offset + j] = acc;
}
