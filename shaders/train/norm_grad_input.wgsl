// A training batch norm's input gradient, through the batch statistics:
// din = gamma inv_std (dout - mean(dout) - x_hat mean(dout x_hat)), means from `norm_reduce`.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> red: array<f32>;
@group(0) @binding(5) var<storage, read_write> din: array<f32>;
@group(0) @binding(6) var<uniform> d: Dims;

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
    let ch = k / (d.h * d.w);
    let at = 2u * (c * d.c + ch);
    let n = f32(d.rows * d.h * d.w);
    let xhat = (input[c * d.in_stride + r * d.a + k] - stats[at]) * stats[at + 1u];
    let scale = params[c * d.n_params + d.offset + ch] * stats[at + 1u];
    din[i] = scale * (dout[i] - red[at] / n - xhat * red[at + 1u] / n);
}
