// An evomal loss kernel, written by `evomal emit-shader`: one invocation per element.
//
// The loss below is
//   mul(-1, mul(y, log(yhat)))
// (prefix form; infix: -(y * log(yhat))).
//
// Bindings, group 0 (all arrays are f32, one entry per element unless noted):
//   0  y        storage, read        targets (one-hot entries for classification)
//   1  yhat     storage, read        predictions (probabilities for classification)
//   2  weights  storage, read        one weight per node of the loss, post-order (6 floats);
//                                    the loss's own weights are the defaults
//   3  params   uniform              n: the element count
//   4  loss     storage, read_write  the loss
//   5  dyhat    storage, read_write  dM/dyhat
//   6  dphi     storage, read_write  n x 5 row-major: dM/dphi_j, j over all nodes but the root
//   7  d2       storage, read_write  n x 5 row-major: d2M/(dyhat dphi_j)
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
@group(0) @binding(6) var<storage, read_write> dphi: array<f32>;
@group(0) @binding(7) var<storage, read_write> d2: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.n) {
        return;
    }
    let y_i = y[i];
    let yhat_i = yhat[i];
    let v0 = -1.0;
    let v1 = v0 * weights[0];
    let v2 = y_i * weights[1];
    let v3 = 1.0;
    let v4 = yhat_i * weights[2];
    let v5 = v3 * weights[2];
    let v6 = 0.0;
    let v7 = 1.0;
    let v8 = -1.0;
    let v9 = v6 < v4;
    let v10 = v4 < v6;
    let v11 = select(v4, v8, v10);
    let v12 = select(v11, v7, v9);
    let v13 = abs(v4);
    let v14 = v5 * v12;
    let v15 = 1e-7;
    let v16 = v13 < v15;
    let v17 = select(v13, v15, v16);
    let v18 = 0.0;
    let v19 = select(v14, v18, v16);
    let v20 = log(v17);
    let v21 = v19 / v17;
    let v22 = v20 * weights[3];
    let v23 = v21 * weights[3];
    let v24 = v2 * v22;
    let v25 = v2 * v23;
    let v26 = v24 * weights[4];
    let v27 = v25 * weights[4];
    let v28 = v1 * v26;
    let v29 = v1 * v27;
    let v30 = 1.0;
    let v31 = v30 * v26;
    let v32 = v30 * v27;
    let v33 = v30 * v1;
    let v34 = v33 * v24;
    let v35 = v33 * v25;
    let v36 = v33 * weights[4];
    let v37 = v36 * v22;
    let v38 = v36 * v23;
    let v39 = v36 * v2;
    let v40 = v39 * v20;
    let v41 = v39 * v21;
    let v42 = v39 * weights[3];
    let v43 = 1.0;
    let v44 = v43 / v4;
    let v45 = v44 * v5;
    let v46 = -v45;
    let v47 = v46 / v4;
    let v48 = abs(v4);
    let v49 = 1e-7;
    let v50 = v48 < v49;
    let v51 = 0.0;
    let v52 = select(v44, v51, v50);
    let v53 = 0.0;
    let v54 = select(v47, v53, v50);
    let v55 = v42 * v52;
    let v56 = v42 * v54;
    let v57 = v55 * yhat_i;
    let v58 = v56 * yhat_i;
    let v59 = v55 * v3;
    let v60 = v58 + v59;
    let v61 = v55 * weights[2];
    let v62 = v56 * weights[2];
    let v63 = v37 * y_i;
    let v64 = v38 * y_i;
    let v65 = v37 * weights[1];
    let v66 = v38 * weights[1];
    let v67 = v31 * v0;
    let v68 = v32 * v0;
    let v69 = v31 * weights[0];
    let v70 = v32 * weights[0];
    loss[i] = v28;
    dyhat[i] = v29;
    dphi[i * 5u + 0u] = v67;
    d2[i * 5u + 0u] = v68;
    dphi[i * 5u + 1u] = v63;
    d2[i * 5u + 1u] = v64;
    dphi[i * 5u + 2u] = v57;
    d2[i * 5u + 2u] = v60;
    dphi[i * 5u + 3u] = v40;
    d2[i * 5u + 3u] = v41;
    dphi[i * 5u + 4u] = v34;
    d2[i * 5u + 4u] = v35;
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
