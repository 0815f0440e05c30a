// The one-step meta-gradient of every candidate's loss weights (METHOD.md §4, as
// src/search/local.rs): out[c][j] = -lr_eff * sum_{r,o} jv[c][r][o] * dg_j[c][r][o], where
// dg_j is d2M/(dyhat dphi_j) taken to the raw outputs (through the softmax for
// classification) and scaled by 1/rows. One invocation per (candidate, weight).
struct Meta {
    p: u32,
    rows: u32,
    n_out: u32,
    // weights per candidate in `d2` and `out`
    k: u32,
    classification: u32,
    lr_eff: f32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> jv: array<f32>;
// [c][r][o]: what the loss saw as yhat (probabilities for classification)
@group(0) @binding(1) var<storage, read> probs: array<f32>;
// [c][r][o][j]
@group(0) @binding(2) var<storage, read> d2: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> m: Meta;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= m.p * m.k) {
        return;
    }
    let c = i / m.k;
    let j = i % m.k;
    var sum = 0.0;
    for (var r = 0u; r < m.rows; r++) {
        let row = (c * m.rows + r) * m.n_out;
        if (m.classification == 1u && m.n_out > 1u) {
            var dot = 0.0;
            for (var o = 0u; o < m.n_out; o++) {
                dot += probs[row + o] * d2[(row + o) * m.k + j];
            }
            for (var o = 0u; o < m.n_out; o++) {
                let p = probs[row + o];
                sum += jv[row + o] * p * (d2[(row + o) * m.k + j] - dot);
            }
        } else if (m.classification == 1u) {
            let p = probs[row];
            sum += jv[row] * d2[row * m.k + j] * p * (1.0 - p);
        } else {
            for (var o = 0u; o < m.n_out; o++) {
                sum += jv[row + o] * d2[(row + o) * m.k + j];
            }
        }
    }
    out[i] = -m.lr_eff * sum / f32(m.rows);
}
