// Per candidate (workgroup y) and channel (workgroup x) of a batch norm, the sums over the
// batch of `v` (an output gradient or an input tangent, `[candidate][row][feature]`) and of
// `v x_hat`, into `red` (with `workgroup_sum.wgsl`): what its parameter gradient, input
// gradient and forward-mode derivative need.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> red: array<f32>;
@group(0) @binding(4) var<uniform> d: Dims;

@compute @workgroup_size(GROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) me: u32) {
    let c = wid.y;
    let ch = wid.x;
    let i = c * d.c + ch;
    let hw = d.h * d.w;
    let mean = stats[2u * i];
    let inv_std = stats[2u * i + 1u];
    var sum = 0.0;
    var sum_x = 0.0;
    for (var e = me; e < d.rows * hw; e += GROUP) {
        let at = (e / hw) * d.a + ch * hw + e % hw;
        let g = v[c * d.rows * d.a + at];
        sum += g;
        sum_x += g * (input[c * d.in_stride + at] - mean) * inv_std;
    }
    sum = workgroup_sum(me, sum);
    sum_x = workgroup_sum(me, sum_x);
    if (me == 0u) {
        red[2u * i] = sum;
        red[2u * i + 1u] = sum_x;
    }
}
