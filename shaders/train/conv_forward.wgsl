// A convolution, for every candidate c: out[c][r][co][oy][ox] = b[co] +
// sum_{ci,ky,kx} in[c][r][ci][oy*stride + ky - pad][ox*stride + kx - pad] W[co][ci][ky][kx],
// zero outside the image. W is `c_out x (c kh kw)` row-major, then `c_out` biases when `bias`,
// at `offset` in candidate c's parameters (the SDK's layout).
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let per = d.rows * d.b;
    if (i >= d.p * per) {
        return;
    }
    let c = i / per;
    let r = (i % per) / d.b;
    let o = i % d.b;
    let plane = d.oh * d.ow;
    let co = o / plane;
    let oy = (o % plane) / d.ow;
    let ox = o % d.ow;
    let base = c * d.n_params + d.offset;
    var acc = 0.0;
    if (d.bias == 1u) {
        acc = params[base + d.c_out * d.c * d.kh * d.kw + co];
    }
    acc += conv_at(c * d.in_stride + r * d.a, base + co * d.c * d.kh * d.kw, oy, ox);
    out[i] = acc;
}

// The window's sum for one output, `x` the example's first input and `w` the output channel's
// first weight.
fn conv_at(x: u32, w: u32, oy: u32, ox: u32) -> f32 {
    var acc = 0.0;
    for (var ci = 0u; ci < d.c; ci++) {
        for (var ky = 0u; ky < d.kh; ky++) {
            let iy = i32(oy * d.stride + ky) - i32(d.pad);
            if (iy < 0 || iy >= i32(d.h)) {
                continue;
            }
            for (var kx = 0u; kx < d.kw; kx++) {
                let ix = i32(ox * d.stride + kx) - i32(d.pad);
                if (ix < 0 || ix >= i32(d.w)) {
                    continue;
                }
                let at = (ci * d.h + u32(iy)) * d.w + u32(ix);
                acc += input[x + at] * params[w + (ci * d.kh + ky) * d.kw + kx];
            }
        }
    }
    return acc;
}
