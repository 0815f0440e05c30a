// Forward-mode derivative of a training batch norm: tout = gamma inv_std (tin - mean(tin) -
// x_hat mean(tin x_hat)) + tgamma x_hat + tbeta, means from `norm_reduce` over `tin`; without
// the first term when the input is data (`kind` 1).
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> tin: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read> tparams: array<f32>;
@group(0) @binding(4) var<storage, read> stats: array<f32>;
@group(0) @binding(5) var<storage, read> red: array<f32>;
@group(0) @binding(6) var<storage, read_write> tout: array<f32>;
@group(0) @binding(7) var<uniform> d: Dims;

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
    let w = c * d.n_params + d.offset;
    let xhat = (input[c * d.in_stride + r * d.a + k] - stats[at]) * stats[at + 1u];
    var acc = tparams[w + ch] * xhat + tparams[w + d.c + ch];
    if (d.kind == 0u) {
        let n = f32(d.rows * d.h * d.w);
        acc += params[w + ch] * stats[at + 1u] * (tin[i] - red[at] / n - xhat * red[at + 1u] / n);
    }
    tout[i] = acc;
}
