// Forward-mode derivative of a dense layer in the direction `tparams` of the parameters (and
// `tin` of its input, unless the input is data: `kind` 1): per candidate c,
// tout[r][o] = tb[o] + sum_k in[r][k] tW[k][o] + sum_k tin[r][k] W[k][o].
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> tin: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read> tparams: array<f32>;
@group(0) @binding(4) var<storage, read_write> tout: array<f32>;
@group(0) @binding(5) var<uniform> d: Dims;

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
    var acc = tparams[w + d.a * d.b + o];
    for (var k = 0u; k < d.a; k++) {
        acc += input[x + k] * tparams[w + k * d.b + o];
    }
    if (d.kind == 0u) {
        let t = (c * d.rows + r) * d.a;
        for (var k = 0u; k < d.a; k++) {
            acc += tin[t + k] * params[w + k * d.b + o];
        }
    }
    tout[i] = acc;
}
