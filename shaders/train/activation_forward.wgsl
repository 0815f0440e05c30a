// Elementwise activation (kind 1 relu, 2 tanh, 3 sigmoid) over `p * rows * a` values.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= d.p * d.rows * d.a) {
        return;
    }
    let v = input[i];
    switch d.kind {
        case 1u: { out[i] = max(v, 0.0); }
        case 2u: { out[i] = evomal_tanh(v); }
        default: { out[i] = 1.0 / (1.0 + exp(-v)); }
    }
}
