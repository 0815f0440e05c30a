// A convolution's parameter gradient from `conv_grad_weights`' partial sums, added chunk by
// chunk in order (so the result does not depend on scheduling), written at the layer's offset:
// the weights [co][ci][ky][kx], then the biases.
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let depth = d.c * d.kh * d.kw;
    let cols = depth + d.bias;
    let per = d.c_out * cols;
    if (i >= d.p * per) {
        return;
    }
    let cand = i / per;
    let j = i % per;
    var sum = 0.0;
    for (var s = 0u; s < d.splits; s++) {
        sum += partial[(cand * d.splits + s) * per + j];
    }
    let co = j / cols;
    let k = j % cols;
    var at = co * depth + k;
    if (k == depth) {
        at = d.c_out * depth + co;
    }
    grad[cand * d.n_params + d.offset + at] = sum;
}
