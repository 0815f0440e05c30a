// An evomal loss kernel, written by `evomal emit-shader`: one invocation per element.
//
// The loss below is
//   {{expr}}
// (prefix form; infix: {{infix}}).
//
// Bindings, group 0 (all arrays are f32, one entry per element unless noted):
//   0  y        storage, read        targets (one-hot entries for classification)
//   1  yhat     storage, read        predictions (probabilities for classification)
//   2  weights  storage, read        one weight per node of the loss, post-order ({{n_nodes}});
//                                    the loss's own weights are the defaults
//   3  params   uniform              n: the element count
//{{binding_docs}}
// Dispatch ceil(n / 64) workgroups of 64. Reduce `loss` on the host (or in your own pass):
// the batch loss is the sum over outputs, averaged over the batch.
// Protected operators: log(a) = ln(max(|a|, 1e-7)), sqrt(a) = sqrt(max(|a|, 1e-7)),
// aq(a, b) = a / sqrt(1 + b^2); sign(0) = 0; min/max send ties to the left operand.

struct Params {
    n: u32,
}

@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read> yhat: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
{{bindings}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.n) {
        return;
    }
    let y_i = y[i];
    let yhat_i = yhat[i];
{{body}}
}
