// Forward-mode derivative of a convolution in the direction `tparams` of the parameters (and
// `tin` of its input, unless the input is data: `kind` 1): per candidate,
// tout = conv(in; tW) + tb + conv(tin; W), convolutions as in `conv_forward`.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> tin: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read> tparams: array<f32>;
@group(0) @binding(4) var<storage, read_write> tout: array<f32>;
@group(0) @binding(5) var<uniform> d: Dims;

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
    let w = base + co * d.c * d.kh * d.kw;
    let x = c * d.in_stride + r * d.a;
    let t = (c * d.rows + r) * d.a;
    let with_tin = d.kind == 0u;
    var acc = 0.0;
    if (d.bias == 1u) {
        acc = tparams[base + d.c_out * d.c * d.kh * d.kw + co];
    }
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
                let k = w + (ci * d.kh + ky) * d.kw + kx;
                acc += input[x + at] * tparams[k];
                if (with_tin) {
                    acc += tin[t + at] * params[k];
                }
            }
        }
    }
    tout[i] = acc;
}
