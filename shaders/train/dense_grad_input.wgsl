// Gradient of a dense layer's input: din[c][r][k] = sum_o dout[c][r][o] W[k][o].
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
    let w = c * d.n_params + d.offset + k * d.b;
    let g = (c * d.rows + r) * d.b;
    var acc = 0.0;
    for (var o = 0u; o < d.b; o++) {
        acc += dout[g + o] * params[w + o];
    }
    din[i] = acc;
}
