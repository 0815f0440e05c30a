// An evomal loss kernel, written by `evomal emit-shader`: one invocation per element.
//
// The loss below is
//   square(sub(y, yhat))
// (prefix form; infix: (y - yhat)^2).
//
// Bindings, group 0 (all arrays are f32, one entry per element unless noted):
//   0  y        storage, read        targets (one-hot entries for classification)
//   1  yhat     storage, read        predictions (probabilities for classification)
//   2  weights  storage, read        one weight per node of the loss, post-order (4 floats);
//                                    the loss's own weights are the defaults
//   3  params   uniform              n: the element count
//   4  loss     storage, read_write  the loss
//   5  dyhat    storage, read_write  dM/dyhat
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
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> dyhat: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.n) {
        return;
    }
    let y_i = y[i];
    let yhat_i = yhat[i];
    let v0 = y_i * weights[0];
    let v1 = 1.0;
    let v2 = yhat_i * weights[1];
    let v3 = v1 * weights[1];
    let v4 = v0 - v2;
    let v5 = -v3;
    let v6 = v4 * weights[2];
    let v7 = v5 * weights[2];
    let v8 = v6 * v6;
    let v9 = v7 * v6;
    let v10 = v6 * v7;
    let v11 = v9 + v10;
    loss[i] = v8;
    dyhat[i] = v11;
}

// tanh with a small relative error everywhere: WGSL's builtin is only bounded in absolute
// error, and drivers return it several-fold off near 0, where losses such as tanh(y) + y live.
// Below |x| = 0.1 a degree-7 Taylor polynomial (truncation below 1e-9 relative), above it
// (1 - e^{-2|x|}) / (1 + e^{-2|x|}), which cannot overflow.
fn evomal_tanh(x: f32) -> f32 {
    let a = abs(x);
    if (a < 0.1) {
        let x2 = x * x;
        return x * (1.0 + x2 * (-0.33333334 + x2 * (0.13333334 + x2 * -0.053968254)));
    }
    let t = exp(-2.0 * a);
    return sign(x) * (1.0 - t) / (1.0 + t);
}

// tanh'(x) = sech(x)^2 = 4 e^{-2|x|} / (1 + e^{-2|x|})^2: 1 - tanh(x)^2 in f32 is 0 from |x| = 9 on.
fn evomal_tanh_slope(x: f32) -> f32 {
    let t = exp(-2.0 * abs(x));
    return 4.0 * t / ((1.0 + t) * (1.0 + t));
}
