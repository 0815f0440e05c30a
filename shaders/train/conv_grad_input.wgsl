// Gradient of a convolution's input: din[c][r][ci][iy][ix] = sum over the outputs whose window
// covers (iy, ix) of dout[c][r][co][oy][ox] W[co][ci][iy + pad - oy*stride][ix + pad - ox*stride].
@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> din: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let per = d.rows * d.a;
    if (i >= d.p * per) {
        return;
    }
    let c = i / per;
    let r = (i % per) / d.a;
    let k = i % d.a;
    let ci = k / (d.h * d.w);
    let iy = (k / d.w) % d.h;
    let ix = k % d.w;
    let w = c * d.n_params + d.offset + ci * d.kh * d.kw;
    let g = (c * d.rows + r) * d.b;
    let taps = d.c * d.kh * d.kw;
    var acc = 0.0;
    for (var ky = 0u; ky < d.kh; ky++) {
        let ny = i32(iy + d.pad) - i32(ky);
        if (ny < 0 || ny % i32(d.stride) != 0 || u32(ny) / d.stride >= d.oh) {
            continue;
        }
        let oy = u32(ny) / d.stride;
        for (var kx = 0u; kx < d.kw; kx++) {
            let nx = i32(ix + d.pad) - i32(kx);
            if (nx < 0 || nx % i32(d.stride) != 0 || u32(nx) / d.stride >= d.ow) {
                continue;
            }
            let ox = u32(nx) / d.stride;
            for (var co = 0u; co < d.c_out; co++) {
                acc += dout[g + (co * d.oh + oy) * d.ow + ox] * params[w + co * taps + ky * d.kw + kx];
            }
        }
    }
    din[i] = acc;
}
