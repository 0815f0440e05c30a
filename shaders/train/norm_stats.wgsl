// Batch norm's statistics per candidate (workgroup y) and channel (workgroup x) of `[c][h*w]`
// inputs (with `workgroup_sum.wgsl`): `kind` 0 the batch's mean and biased variance, moving
// the running statistics by momentum 0.1 (with the unbiased variance, PyTorch's rule); 2 the
// same without moving them; 1 the running statistics (evaluation). Writes
// (mean, 1 / sqrt(variance + 1e-5)) per channel to `stats`.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> state: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

@compute @workgroup_size(GROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) me: u32) {
    let c = wid.y;
    let ch = wid.x;
    let hw = d.h * d.w;
    let len = d.rows * hw;
    let s = c * d.n_state + d.state_offset;
    var mean: f32;
    var var_: f32;
    if (d.kind == 1u) {
        mean = state[s + ch];
        var_ = state[s + d.c + ch];
    } else {
        let n = f32(len);
        var part = 0.0;
        for (var e = me; e < len; e += GROUP) {
            part += input[c * d.in_stride + (e / hw) * d.a + ch * hw + e % hw];
        }
        mean = workgroup_sum(me, part) / n;
        part = 0.0;
        for (var e = me; e < len; e += GROUP) {
            let x = input[c * d.in_stride + (e / hw) * d.a + ch * hw + e % hw] - mean;
            part += x * x;
        }
        var_ = workgroup_sum(me, part) / n;
        if (d.kind == 0u && me == 0u) {
            let unbiased = select(var_, var_ * n / (n - 1.0), n > 1.0);
            state[s + ch] = 0.9 * state[s + ch] + 0.1 * mean;
            state[s + d.c + ch] = 0.9 * state[s + d.c + ch] + 0.1 * unbiased;
        }
    }
    if (me == 0u) {
        let i = c * d.c + ch;
        stats[2u * i] = mean;
        stats[2u * i + 1u] = 1.0 / sqrt(var_ + 1e-5);
    }
}
