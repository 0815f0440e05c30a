// Batch norm: out = gamma (x - mean) inv_std + beta per channel, with the statistics of
// `norm_stats`; `gamma` then `beta` at the layer's offset in each candidate's parameters.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> d: Dims;

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
    let xhat = (input[c * d.in_stride + r * d.a + k] - stats[at]) * stats[at + 1u];
    let w = c * d.n_params + d.offset;
    out[i] = params[w + ch] * xhat + params[w + d.c + ch];
}
