// Batch norm's statistics per candidate and channel of `[c][h*w]` inputs: `kind` 0 the batch's
// mean and biased variance, moving the running statistics by momentum 0.1 (with the unbiased
// variance, PyTorch's rule); 2 the same without moving them; 1 the running statistics
// (evaluation). Writes (mean, 1 / sqrt(variance + 1e-5)) per channel to `stats`.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> state: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= d.p * d.c) {
        return;
    }
    let c = i / d.c;
    let ch = i % d.c;
    let hw = d.h * d.w;
    let s = c * d.n_state + d.state_offset;
    var mean: f32;
    var var_: f32;
    if (d.kind == 1u) {
        mean = state[s + ch];
        var_ = state[s + d.c + ch];
    } else {
        let n = f32(d.rows * hw);
        var sum = 0.0;
        for (var r = 0u; r < d.rows; r++) {
            let x = c * d.in_stride + r * d.a + ch * hw;
            for (var j = 0u; j < hw; j++) {
                sum += input[x + j];
            }
        }
        mean = sum / n;
        var sq = 0.0;
        for (var r = 0u; r < d.rows; r++) {
            let x = c * d.in_stride + r * d.a + ch * hw;
            for (var j = 0u; j < hw; j++) {
                let e = input[x + j] - mean;
                sq += e * e;
            }
        }
        var_ = sq / n;
        if (d.kind == 0u) {
            let unbiased = select(var_, var_ * n / (n - 1.0), n > 1.0);
            state[s + ch] = 0.9 * state[s + ch] + 0.1 * mean;
            state[s + d.c + ch] = 0.9 * state[s + d.c + ch] + 0.1 * unbiased;
        }
    }
    stats[2u * i] = mean;
    stats[2u * i + 1u] = 1.0 / sqrt(var_ + 1e-5);
}
