//! The batch objective of METHOD.md §2 on top of a compiled loss kernel.
//!
//! Regression: the loss sees the raw outputs. Classification: it sees the softmax of the logits
//! against the one-hot target. A one-output classifier is a two-class softmax over the logits
//! (0, z): the loss sees both classes, (1 - sigmoid(z), sigmoid(z)) against (1 - y, y), so its
//! cross-entropy is the binary cross-entropy and a learned loss treats both classes alike.
//! Either way the per-element loss is summed and averaged over the batch, and the gradient is
//! taken with respect to the model's raw outputs.

use crate::backend::jit::{JitError, JitKernel};
use crate::expr::LossExpr;

/// A loss applied element by element: `M(y, yhat)` and `dM/dyhat` for every element of a
/// batch. A compiled expression under its weights is one; ML3's loss network is another.
pub trait ElementLoss {
    fn loss_grad(
        &self,
        y: &[f32],
        yhat: &[f32],
        loss: &mut [f32],
        grad: &mut [f32],
    ) -> Result<(), JitError>;
}

/// A compiled `LossGrad` kernel under a set of weights (one per node).
#[derive(Clone, Copy)]
pub struct Weighted<'a> {
    pub kernel: &'a JitKernel,
    pub weights: &'a [f32],
}

impl ElementLoss for Weighted<'_> {
    fn loss_grad(
        &self,
        y: &[f32],
        yhat: &[f32],
        loss: &mut [f32],
        grad: &mut [f32],
    ) -> Result<(), JitError> {
        self.kernel.loss_grad(y, yhat, self.weights, loss, grad)
    }
}

/// Mean squared error, as a loss expression (summed over outputs, averaged over the batch).
pub const MSE: &str = "square(sub(y, yhat))";
/// Cross-entropy on the probabilities against the one-hot target.
pub const CE: &str = "mul(-1, mul(y, log(yhat)))";

/// Whether the model's outputs go through a softmax before the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    Regression,
    Classification,
}

impl TaskKind {
    /// The conventional loss of this kind of task — MSE or cross-entropy: the baseline a
    /// learned loss is compared with, and the task loss the local search validates with.
    pub fn baseline(self) -> LossExpr {
        let text = match self {
            TaskKind::Regression => MSE,
            TaskKind::Classification => CE,
        };
        text.parse().expect("the baseline losses parse")
    }

    /// Values per example the loss sees for `n_out` model outputs: two for a one-output
    /// classifier (both classes), else the outputs.
    pub fn loss_width(self, n_out: usize) -> usize {
        match self {
            TaskKind::Classification if n_out == 1 => 2,
            _ => n_out,
        }
    }
}

/// Reusable buffers for [`Objective::loss_and_grad`]; sized on first use, never reallocated for
/// the same batch shape.
#[derive(Default)]
pub struct Objective {
    y: Vec<f32>,
    yhat: Vec<f32>,
    elem_loss: Vec<f32>,
    elem_grad: Vec<f32>,
}

impl Objective {
    /// The batch loss, and `grad = dL/d(raw outputs)` (both for `batch` rows of `n_out`).
    /// `targets` holds values (regression) or class indices (classification).
    pub fn loss_and_grad(
        &mut self,
        loss: &dyn ElementLoss,
        kind: TaskKind,
        outputs: &[f32],
        targets: &[f32],
        n_out: usize,
        grad: &mut [f32],
    ) -> Result<f32, JitError> {
        let batch = outputs.len() / n_out;
        let n = batch * kind.loss_width(n_out);
        self.y.resize(n, 0.0);
        self.yhat.resize(n, 0.0);
        self.elem_loss.resize(n, 0.0);
        self.elem_grad.resize(n, 0.0);
        match kind {
            TaskKind::Regression => {
                self.y.copy_from_slice(targets);
                self.yhat.copy_from_slice(outputs);
            }
            TaskKind::Classification => {
                one_hot(targets, n_out, &mut self.y);
                probabilities(outputs, n_out, &mut self.yhat);
            }
        }
        loss.loss_grad(
            &self.y,
            &self.yhat,
            &mut self.elem_loss,
            &mut self.elem_grad,
        )?;
        let inv_b = 1.0 / batch as f32;
        let loss = self.elem_loss.iter().map(|&l| l as f64).sum::<f64>() as f32 * inv_b;
        match kind {
            TaskKind::Regression => {
                grad.iter_mut()
                    .zip(&self.elem_grad)
                    .for_each(|(g, &e)| *g = e * inv_b);
            }
            TaskKind::Classification => {
                probabilities_vjp(&self.yhat, &self.elem_grad, n_out, inv_b, grad);
            }
        }
        Ok(loss)
    }
}

/// One-hot rows from class indices (for one output, the rows `(1 - y, y)`); `out` holds
/// `loss_width(n_out)` values per label.
pub fn one_hot(labels: &[f32], n_out: usize, out: &mut [f32]) {
    out.fill(0.0);
    let width = TaskKind::Classification.loss_width(n_out);
    for (row, &c) in out.chunks_exact_mut(width).zip(labels) {
        row[c as usize] = 1.0;
    }
}

/// Softmax per row; for one output, `(1 - sigmoid(z), sigmoid(z))` (the softmax of `(0, z)`).
/// `out` holds `loss_width(n_out)` values per row.
pub fn probabilities(logits: &[f32], n_out: usize, out: &mut [f32]) {
    if n_out == 1 {
        for (p, &z) in out.chunks_exact_mut(2).zip(logits) {
            let s = 1.0 / (1.0 + (-z).exp());
            p[0] = 1.0 - s;
            p[1] = s;
        }
        return;
    }
    for (p, z) in out.chunks_exact_mut(n_out).zip(logits.chunks_exact(n_out)) {
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for (pi, &zi) in p.iter_mut().zip(z) {
            *pi = (zi - max).exp();
            sum += *pi;
        }
        p.iter_mut().for_each(|pi| *pi /= sum);
    }
}

/// `dL/dz` from `dL/dp` through the softmax, scaled by `scale`; `p` and `dp` hold
/// `loss_width(n_out)` values per row, `dz` `n_out`. For one output, the softmax of `(0, z)`:
/// `dL/dz = p0 p1 (dL/dp1 - dL/dp0)`.
pub(crate) fn probabilities_vjp(p: &[f32], dp: &[f32], n_out: usize, scale: f32, dz: &mut [f32]) {
    if n_out == 1 {
        for ((d, p), g) in dz.iter_mut().zip(p.chunks_exact(2)).zip(dp.chunks_exact(2)) {
            *d = scale * p[0] * p[1] * (g[1] - g[0]);
        }
        return;
    }
    for ((d, p), g) in dz
        .chunks_exact_mut(n_out)
        .zip(p.chunks_exact(n_out))
        .zip(dp.chunks_exact(n_out))
    {
        let dot: f32 = p.iter().zip(g).map(|(a, b)| a * b).sum();
        for ((di, &pi), &gi) in d.iter_mut().zip(p).zip(g) {
            *di = scale * pi * (gi - dot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::KernelKind;
    use crate::backend::jit;

    fn ce() -> JitKernel {
        jit::compile(
            &"mul(-1, mul(y, log(yhat)))".parse().unwrap(),
            KernelKind::LossGrad,
        )
        .unwrap()
    }

    /// The cross-entropy objective of a classifier with `n_out` outputs: loss and gradient.
    fn cross_entropy(logits: &[f32], labels: &[f32], n_out: usize) -> (f32, Vec<f32>) {
        let mut grad = vec![0.0f32; logits.len()];
        let loss = Objective::default()
            .loss_and_grad(
                &Weighted {
                    kernel: &ce(),
                    weights: &[1.0; 6],
                },
                TaskKind::Classification,
                logits,
                labels,
                n_out,
                &mut grad,
            )
            .unwrap();
        (loss, grad)
    }

    #[test]
    fn one_output_cross_entropy_is_the_binary_cross_entropy() {
        let logits = [1.5f32, -0.5, 0.2];
        let labels = [1.0f32, 0.0, 0.0];
        let (loss, grad) = cross_entropy(&logits, &labels, 1);
        let sigmoid = |z: f32| 1.0 / (1.0 + (-z).exp());
        let mut bce = 0.0;
        for ((&z, &y), &g) in logits.iter().zip(&labels).zip(&grad) {
            let p = sigmoid(z);
            bce -= (y * p.ln() + (1.0 - y) * (1.0 - p).ln()) / 3.0;
            // d BCE / dz = (p - y) / B: the negative examples pull too.
            assert!((g - (p - y) / 3.0).abs() < 1e-6, "{g} vs {}", (p - y) / 3.0);
        }
        assert!((loss - bce).abs() < 1e-6, "{loss} vs {bce}");
    }

    #[test]
    fn softmax_cross_entropy_gradient_is_p_minus_y() {
        let logits = [1.0f32, -0.5, 2.0, 0.3, 0.3, -1.0];
        let labels = [2.0f32, 0.0];
        let (loss, grad) = cross_entropy(&logits, &labels, 3);
        let mut p = [0.0f32; 6];
        probabilities(&logits, 3, &mut p);
        let want_loss = -(p[2].ln() + p[3].ln()) / 2.0;
        assert!((loss - want_loss).abs() < 1e-6);
        let mut y = [0.0f32; 6];
        one_hot(&labels, 3, &mut y);
        for i in 0..6 {
            assert!(
                (grad[i] - (p[i] - y[i]) / 2.0).abs() < 1e-6,
                "{i}: {} vs {}",
                grad[i],
                (p[i] - y[i]) / 2.0
            );
        }
    }

    #[test]
    fn regression_gradient_is_mean_over_the_batch() {
        let k = jit::compile(
            &"square(sub(y, yhat))".parse().unwrap(),
            KernelKind::LossGrad,
        )
        .unwrap();
        let mut obj = Objective::default();
        let mut grad = [0.0f32; 4];
        let loss = obj
            .loss_and_grad(
                &Weighted {
                    kernel: &k,
                    weights: &[1.0; 4],
                },
                TaskKind::Regression,
                &[1.0, 2.0, 3.0, 4.0],
                &[0.0; 4],
                1,
                &mut grad,
            )
            .unwrap();
        assert_eq!(loss, 30.0 / 4.0);
        assert_eq!(grad, [0.5, 1.0, 1.5, 2.0]);
    }
}
