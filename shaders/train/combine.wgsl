// Element-wise over `p * rows * a` values: `kind` 0 out = x + y (a residual block's merge, or
// the two gradients of a block's input), 1 out = x (a copy). `y` is shared by the candidates
// when `in_stride` is 0 (the data batch).
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let per = d.rows * d.a;
    if (i >= d.p * per) {
        return;
    }
    if (d.kind == 1u) {
        out[i] = x[i];
    } else {
        out[i] = x[i] + y[(i / per) * d.in_stride + i % per];
    }
}
