// out[c][r][o] = b[o] + sum_k in[c][r][k] W[k][o], for every candidate c: W is `a x b`
// row-major, then `b` biases, at `offset` in candidate c's parameters.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let per = d.rows * d.b;
    if (i >= d.p * per) {
        return;
    }
    let c = i / per;
    let r = (i % per) / d.b;
    let o = i % d.b;
    let w = c * d.n_params + d.offset;
    let x = c * d.in_stride + r * d.a;
    var acc = params[w + d.a * d.b + o];
    for (var k = 0u; k < d.a; k++) {
        acc += input[x + k] * params[w + k * d.b + o];
    }
    out[i] = acc;
}
