// The batch objective of every candidate of a generation (METHOD.md §2, as
// src/train/objective.rs): one invocation per (candidate, row). Regression feeds the raw
// outputs to the loss; classification their softmax against the one-hot label (the host
// refuses one-output classifiers, whose loss sees two classes). Writes the row's summed loss
// and dL/d(raw outputs), averaged over the batch; for the local search also what the loss saw
// as yhat (`probs`) and every d2M/(dyhat dphi_j) (`d2`, KMAX per element). Generated: the constants, one `loss_K` function per candidate, the
// `candidate_loss` switch, and the local search's extra bindings and stores.

const N_OUT: u32 = {{n_out}}u;
const CLASSIFICATION: bool = {{classification}};
// weights per candidate in `weights`
const STRIDE: u32 = {{stride}}u;

@group(0) @binding(0) var<storage, read> out: array<f32>;
@group(0) @binding(1) var<storage, read> yb: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> dz: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;
{{full_bindings}}
@group(0) @binding({{dims_binding}}) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= d.p * d.rows) {
        return;
    }
    let c = i / d.rows;
    let r = i % d.rows;
    let o = i * N_OUT;
    // Targets are per row, or per candidate and row when each candidate has its own batch.
    let yr = select(r, i, d.in_stride != 0u);
    var y: array<f32, N_OUT>;
    var p: array<f32, N_OUT>;
    var g: array<f32, N_OUT>;
    if (!CLASSIFICATION) {
        for (var j = 0u; j < N_OUT; j++) {
            y[j] = yb[yr * N_OUT + j];
            p[j] = out[o + j];
        }
    } else {
        let label = u32(yb[yr]);
        var top = out[o];
        for (var j = 1u; j < N_OUT; j++) {
            top = max(top, out[o + j]);
        }
        var sum = 0.0;
        for (var j = 0u; j < N_OUT; j++) {
            p[j] = exp(out[o + j] - top);
            sum += p[j];
            y[j] = select(0.0, 1.0, j == label);
        }
        for (var j = 0u; j < N_OUT; j++) {
            p[j] = p[j] / sum;
        }
    }
{{keep_probabilities}}
    var total = 0.0;
    for (var j = 0u; j < N_OUT; j++) {
        let lg = candidate_loss(c, y[j], p[j], o + j);
        total += lg.x;
        g[j] = lg.y;
    }
    row_loss[i] = total;
    let inv_b = 1.0 / f32(d.rows);
    if (!CLASSIFICATION) {
        for (var j = 0u; j < N_OUT; j++) {
            dz[o + j] = inv_b * g[j];
        }
    } else {
        var dot = 0.0;
        for (var j = 0u; j < N_OUT; j++) {
            dot += p[j] * g[j];
        }
        for (var j = 0u; j < N_OUT; j++) {
            dz[o + j] = inv_b * p[j] * (g[j] - dot);
        }
    }
}

fn candidate_loss(c: u32, y_i: f32, yhat_i: f32, e: u32) -> vec2<f32> {
    let w = c * STRIDE;
    switch c {
{{cases}}
        default: {
            return vec2<f32>(0.0, 0.0);
        }
    }
}

{{functions}}
