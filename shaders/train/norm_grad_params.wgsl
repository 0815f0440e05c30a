// A batch norm's parameter gradients from `norm_reduce` over the output gradient:
// dgamma = sum dout x_hat, dbeta = sum dout, per candidate at the layer's offset in `grad`.
@group(0) @binding(0) var<storage, read> red: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= d.p * 2u * d.c) {
        return;
    }
    let c = i / (2u * d.c);
    let j = i % (2u * d.c);
    let beta = j >= d.c;
    let ch = select(j, j - d.c, beta);
    grad[c * d.n_params + d.offset + j] = red[2u * (c * d.c + ch) + select(1u, 0u, beta)];
}
