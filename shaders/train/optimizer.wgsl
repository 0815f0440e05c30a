// One optimiser step for every parameter of every candidate, with PyTorch's rules (as
// src/train/optim.rs): SGD with momentum (the buffer starts as the first gradient), optional
// Nesterov, weight decay added to the gradient; or Adam with bias correction.
struct Opt {
    // values in all candidates' vectors
    total: u32,
    // 0 SGD, 1 Adam
    kind: u32,
    nesterov: u32,
    pad: u32,
    momentum: f32,
    weight_decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
// the learning rate of every step
@group(0) @binding(4) var<storage, read> lr: array<f32>;
@group(0) @binding(5) var<storage, read> counter: array<u32>;
@group(0) @binding(6) var<uniform> o: Opt;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= o.total) {
        return;
    }
    let step = counter[0];
    let rate = lr[step];
    let p = params[i];
    let g = grad[i] + o.weight_decay * p;
    if (o.kind == 0u) {
        var dir = g;
        if (o.momentum != 0.0) {
            var b = g;
            if (step > 0u) {
                b = o.momentum * m[i] + g;
            }
            m[i] = b;
            dir = select(b, g + o.momentum * b, o.nesterov == 1u);
        }
        params[i] = p - rate * dir;
    } else {
        let t = f32(step + 1u);
        let m1 = o.beta1 * m[i] + (1.0 - o.beta1) * g;
        let v1 = o.beta2 * v[i] + (1.0 - o.beta2) * g * g;
        m[i] = m1;
        v[i] = v1;
        let c1 = 1.0 - pow(o.beta1, t);
        let c2 = 1.0 - pow(o.beta2, t);
        params[i] = p - rate * (m1 / c1) / (sqrt(v1 / c2) + o.eps);
    }
}
