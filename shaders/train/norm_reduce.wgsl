// Per candidate and channel of a batch norm, the sums over the batch of `v` (an output gradient
// or an input tangent, `[candidate][row][feature]`) and of `v x_hat`, into `red`: what its
// parameter gradient, input gradient and forward-mode derivative need.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> red: array<f32>;
@group(0) @binding(4) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= d.p * d.c) {
        return;
    }
    let c = i / d.c;
    let ch = i % d.c;
    let hw = d.h * d.w;
    let mean = stats[2u * i];
    let inv_std = stats[2u * i + 1u];
    var sum = 0.0;
    var sum_x = 0.0;
    for (var r = 0u; r < d.rows; r++) {
        let x = c * d.in_stride + r * d.a + ch * hw;
        let t = (c * d.rows + r) * d.a + ch * hw;
        for (var j = 0u; j < hw; j++) {
            let e = v[t + j];
            sum += e;
            sum_x += e * (input[x + j] - mean) * inv_std;
        }
    }
    red[2u * i] = sum;
    red[2u * i + 1u] = sum_x;
}
