// Gradient of a dense layer's parameters: dW[k][o] = sum_r in[r][k] dout[r][o], and the bias
// row (k = a) sums dout; per candidate, written at the layer's offset in `grad`.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let per = (d.a + 1u) * d.b;
    if (i >= d.p * per) {
        return;
    }
    let c = i / per;
    let k = (i % per) / d.b;
    let o = i % d.b;
    let g = c * d.rows * d.b + o;
    var acc = 0.0;
    if (k == d.a) {
        for (var r = 0u; r < d.rows; r++) {
            acc += dout[g + r * d.b];
        }
    } else {
        let x = c * d.in_stride + k;
        for (var r = 0u; r < d.rows; r++) {
            acc += input[x + r * d.a] * dout[g + r * d.b];
        }
    }
    grad[c * d.n_params + d.offset + k * d.b + o] = acc;
}
