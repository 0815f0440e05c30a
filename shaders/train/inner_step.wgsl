// The local search's unrolled step: theta1 = theta0 - lr_eff (grad + weight_decay theta0), for
// every parameter of every candidate (the first SGD step, momentum folded into lr_eff).
struct Step {
    total: u32,
    lr_eff: f32,
    weight_decay: f32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read> theta0: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> theta1: array<f32>;
@group(0) @binding(3) var<uniform> s: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= s.total) {
        return;
    }
    let p = theta0[i];
    theta1[i] = p - s.lr_eff * (grad[i] + s.weight_decay * p);
}
