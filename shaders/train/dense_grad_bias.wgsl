// Gradient of a dense layer's biases: db[o] = sum_r dout[r][o] per candidate, written after the
// weights (`a x b`) at the layer's offset in `grad`; the weights' gradient is a `gemm`.
@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= d.p * d.b) {
        return;
    }
    let c = i / d.b;
    let o = i % d.b;
    let g = c * d.rows * d.b + o;
    var acc = 0.0;
    for (var r = 0u; r < d.rows; r++) {
        acc += dout[g + r * d.b];
    }
    grad[c * d.n_params + d.offset + d.a * d.b + o] = acc;
}
