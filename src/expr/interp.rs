//! The reference interpreter: the definition of what a loss expression means.
//!
//! [`eval`] computes a value in f64 straight from the operator definitions of METHOD.md §2;
//! the `*_batch` functions mirror the JIT kernels' contract (f32 in, f32 out, f64 inside) so the
//! backends can be checked element for element. Derivatives come from the sweeps of
//! [`super::deriv`] run on plain f64 and are checked against finite differences in tests.
//!
//! Semantics, stated once:
//! - `aq(a, b) = a / sqrt(1 + b^2)`; `log(a) = ln(max(|a|, 1e-7))`; `sqrt(a) = sqrt(max(|a|, 1e-7))`.
//! - `sign(0) = 0` (and `sign(NaN)` is NaN).
//! - `min(a, b)`: `b` if `b < a`, else `a` (ties go to `a`); NaN if either is NaN. `max` likewise.
//! - Non-finite values are ordinary values: they propagate, they never panic.

use super::deriv::{F64, Sweep};
use super::{LossExpr, Op, PROTECT_EPS};

/// `M(y, yhat)` under the expression's own weights.
pub fn eval(e: &LossExpr, y: f64, yhat: f64) -> f64 {
    let weights: Vec<f64> = e.weights().iter().map(|&w| w as f64).collect();
    eval_weighted(e, &weights, y, yhat, &mut Vec::new())
}

/// `M(y, yhat)` under `weights` (one per node); `scratch` is reused between calls.
pub fn eval_weighted(
    e: &LossExpr,
    weights: &[f64],
    y: f64,
    yhat: f64,
    scratch: &mut Vec<f64>,
) -> f64 {
    let n = e.len();
    scratch.clear();
    for (i, node) in e.nodes().iter().enumerate() {
        let arg = |k: usize| scratch[node.children()[k].idx()];
        let u = match node.op {
            Op::Y => y,
            Op::Yhat => yhat,
            op => match op.arity() {
                0 => apply(op, 0.0, 0.0),
                1 => apply(op, arg(0), 0.0),
                _ => apply(op, arg(0), arg(1)),
            },
        };
        scratch.push(if i + 1 == n { u } else { u * weights[i] });
    }
    scratch[n - 1]
}

/// One operator on its (fed) arguments; `b` is ignored by unary operators, both by constants.
/// `y` and `yhat` have no fixed value and must be bound by the caller.
pub(crate) fn apply(op: Op, a: f64, b: f64) -> f64 {
    match op {
        Op::Y | Op::Yhat => panic!("{op} is an input, not an operator"),
        Op::One => 1.0,
        Op::NegOne => -1.0,
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        Op::Aq => a / (1.0 + b * b).sqrt(),
        Op::Min => min(a, b),
        Op::Max => max(a, b),
        Op::Sign => sign(a),
        Op::Square => a * a,
        Op::Abs => a.abs(),
        Op::Log => protect(a).ln(),
        Op::Sqrt => protect(a).sqrt(),
        Op::Tanh => a.tanh(),
    }
}

fn min(a: f64, b: f64) -> f64 {
    if b < a {
        b
    } else if a <= b {
        a
    } else {
        f64::NAN
    }
}

fn max(a: f64, b: f64) -> f64 {
    if a < b {
        b
    } else if b <= a {
        a
    } else {
        f64::NAN
    }
}

fn sign(a: f64) -> f64 {
    if a > 0.0 {
        1.0
    } else if a < 0.0 {
        -1.0
    } else {
        a
    }
}

fn protect(a: f64) -> f64 {
    if a.abs() < PROTECT_EPS {
        PROTECT_EPS
    } else {
        a.abs()
    }
}

/// Per-element outputs of the full derivative kernel, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Derivatives {
    pub loss: f64,
    pub dyhat: f64,
    /// `dM/dphi_j`, `j` in `0..n_weights`.
    pub dphi: Vec<f64>,
    /// `d2M/(dyhat dphi_j)`.
    pub d2: Vec<f64>,
}

/// Every derivative of one element, in f64.
pub fn derivatives(e: &LossExpr, weights: &[f64], y: f64, yhat: f64) -> Derivatives {
    let mut sweep = Sweep::new(0.0);
    let out = sweep.full(&mut F64, e, y, yhat, weights);
    Derivatives {
        loss: out.loss,
        dyhat: out.dyhat.unwrap_or(0.0),
        dphi: out.dphi.iter().map(|d| d.unwrap_or(0.0)).collect(),
        d2: out.d2.iter().map(|d| d.unwrap_or(0.0)).collect(),
    }
}

/// Kernel (a) on the interpreter: `loss[i] = M(y[i], yhat[i])`.
pub fn loss_batch(e: &LossExpr, y: &[f32], yhat: &[f32], weights: &[f32], loss: &mut [f32]) {
    let w = widen(weights);
    let mut scratch = Vec::with_capacity(e.len());
    for ((l, &yi), &pi) in loss.iter_mut().zip(y).zip(yhat) {
        *l = eval_weighted(e, &w, yi as f64, pi as f64, &mut scratch) as f32;
    }
}

/// Kernel (b) on the interpreter: the loss and `dM/dyhat`.
pub fn loss_grad_batch(
    e: &LossExpr,
    y: &[f32],
    yhat: &[f32],
    weights: &[f32],
    loss: &mut [f32],
    dyhat: &mut [f32],
) {
    let w = widen(weights);
    let mut sweep = Sweep::new(0.0);
    for i in 0..loss.len() {
        let out = sweep.forward(&mut F64, e, y[i] as f64, yhat[i] as f64, &w, true);
        loss[i] = out.loss as f32;
        dyhat[i] = out.dyhat.unwrap_or(0.0) as f32;
    }
}

/// Kernel (c) on the interpreter: loss, `dM/dyhat`, and per weight `dM/dphi` and
/// `d2M/(dyhat dphi)`, row-major `[element][weight]` with `n_weights()` columns.
pub fn full_batch(e: &LossExpr, y: &[f32], yhat: &[f32], weights: &[f32], out: FullBatchMut<'_>) {
    let w = widen(weights);
    let k = e.n_weights();
    let mut sweep = Sweep::new(0.0);
    for i in 0..out.loss.len() {
        let o = sweep.full(&mut F64, e, y[i] as f64, yhat[i] as f64, &w);
        out.loss[i] = o.loss as f32;
        out.dyhat[i] = o.dyhat.unwrap_or(0.0) as f32;
        for j in 0..k {
            out.dphi[i * k + j] = o.dphi[j].unwrap_or(0.0) as f32;
            out.d2[i * k + j] = o.d2[j].unwrap_or(0.0) as f32;
        }
    }
}

/// Output buffers of the full derivative kernel (shared by the interpreter and the JIT).
pub struct FullBatchMut<'a> {
    pub loss: &'a mut [f32],
    pub dyhat: &'a mut [f32],
    pub dphi: &'a mut [f32],
    pub d2: &'a mut [f32],
}

fn widen(weights: &[f32]) -> Vec<f64> {
    weights.iter().map(|&w| w as f64).collect()
}
