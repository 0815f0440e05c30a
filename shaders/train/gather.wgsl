// Copies the rows of this step's batch (or this evaluation chunk) out of a whole split. With
// `kind` 0 all candidates share one batch (`rows` indices per step, output `[row][feature]`);
// with `kind` 1 each draws its own (`p * rows` indices per step, output
// `[candidate][row][feature]`).
@group(0) @binding(0) var<storage, read> xs: array<f32>;
@group(0) @binding(1) var<storage, read> ys: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
// counter[0]: the step (or chunk) being run
@group(0) @binding(3) var<storage, read> counter: array<u32>;
@group(0) @binding(4) var<storage, read_write> xb: array<f32>;
@group(0) @binding(5) var<storage, read_write> yb: array<f32>;
@group(0) @binding(6) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let sets = select(1u, d.p, d.kind == 1u);
    let base = counter[0] * sets * d.rows;
    if (i < sets * d.rows * d.a) {
        let r = i / d.a;
        xb[i] = xs[idx[base + r] * d.a + i % d.a];
    }
    if (i < sets * d.rows * d.b) {
        let r = i / d.b;
        yb[i] = ys[idx[base + r] * d.b + i % d.b];
    }
}
