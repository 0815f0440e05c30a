//! Candidate filters (METHOD.md §5), run before the expensive local search and training:
//!
//! - **Rejection protocol.** A freshly initialised model's outputs on the first training
//!   examples become free variables, optimised directly with Adam under the candidate loss. A
//!   loss that does not improve the task metric of those predictions (`before - after <= 0`) is
//!   rejected.
//! - **Gradient equivalence.** At the end of the rejection protocol, the per-example L2 norms of
//!   the loss gradient with respect to the predictions fingerprint the candidate; a candidate
//!   whose fingerprint matches an evaluated one (absolute tolerance on every entry) reuses its
//!   fitness.

use std::collections::HashMap;

use crate::backend::jit::JitKernel;
use crate::plugin::PluginModel;
use crate::train::objective::{Objective, Weighted};
use crate::train::optim::{Optimizer, OptimizerConfig};
use crate::train::{Task, TrainError};
use evomal_sdk::Mode;

/// Settings of the rejection protocol; `Default` is the reference for tabular tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct RejectionConfig {
    /// Adam steps on the free predictions (1000 tabular and CIFAR/SVHN, 100 MNIST).
    pub steps: usize,
    /// Training examples whose predictions are optimised.
    pub sample: usize,
    pub lr: f32,
}

impl Default for RejectionConfig {
    fn default() -> RejectionConfig {
        RejectionConfig {
            steps: 1000,
            sample: 100,
            lr: 0.01,
        }
    }
}

/// What the rejection protocol found.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// The task metric of the predictions before and after optimisation.
    pub before: f64,
    pub after: f64,
    /// Per-example L2 norm of `dL/d(prediction)` after optimisation (the gradient-equivalence
    /// fingerprint).
    pub grad_norms: Vec<f32>,
}

impl Rejection {
    /// Accepted when the metric strictly improved.
    pub fn accepted(&self) -> bool {
        let d = self.before - self.after;
        d.is_finite() && d > 0.0
    }
}

/// Runs the rejection protocol for the loss `kernel` (a `LossGrad` kernel) under `weights`,
/// starting from the predictions of `model` initialised with `init_seed`.
pub fn rejection_protocol(
    task: &Task<'_>,
    model: &mut PluginModel,
    kernel: &JitKernel,
    weights: &[f32],
    cfg: &RejectionConfig,
    init_seed: u64,
) -> Result<Rejection, TrainError> {
    let n = cfg.sample.min(task.split_size(0));
    let idx: Vec<u64> = (0..n as u64).collect();
    let mut y = vec![0.0f32; n * task.target_width];
    model.init(init_seed)?;
    let mut pred = vec![0.0f32; n * task.n_out];
    // Evaluation mode: the first examples as they are (no augmentation, no dropout), so the
    // starting predictions depend on the initialisation alone.
    model.forward(0, &idx, Mode::Eval, &mut pred, Some(&mut y))?;

    let loss = Weighted { kernel, weights };
    let metric = task.metric();
    let mut scratch = vec![0.0f32; pred.len()];
    let before = metric.sum(&pred, &y, task.n_out, &mut scratch) / n as f64;
    let mut grad = vec![0.0f32; pred.len()];
    let mut objective = Objective::default();
    let adam = OptimizerConfig::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut opt = Optimizer::new(adam, pred.len());
    for _ in 0..cfg.steps {
        let loss = objective.loss_and_grad(&loss, task.kind, &pred, &y, task.n_out, &mut grad)?;
        if !loss.is_finite() || pred.iter().any(|p| !p.is_finite()) {
            return Ok(Rejection {
                before,
                after: f64::INFINITY,
                grad_norms: vec![f32::NAN; n],
            });
        }
        opt.step(&mut pred, &grad, cfg.lr);
    }
    let after = metric.sum(&pred, &y, task.n_out, &mut scratch) / n as f64;
    objective.loss_and_grad(&loss, task.kind, &pred, &y, task.n_out, &mut grad)?;
    // Per example, undoing the batch mean so the fingerprint does not depend on the sample size.
    let grad_norms = grad
        .chunks_exact(task.n_out)
        .map(|g| {
            g.iter()
                .map(|&v| (v * n as f32).powi(2))
                .sum::<f32>()
                .sqrt()
        })
        .collect();
    Ok(Rejection {
        before,
        after,
        grad_norms,
    })
}

/// Fitnesses of evaluated candidates, found by their gradient-norm fingerprints.
///
/// Lookup hashes the norms rounded to the tolerance, then confirms every entry within the
/// tolerance: it never reports a false match, and can miss a true one whose norms straddle a
/// rounding boundary. Fingerprints with a non-finite entry are never stored or matched.
pub struct GradientCache {
    tol: f32,
    buckets: HashMap<Vec<i64>, Vec<(Vec<f32>, f64)>>,
}

impl GradientCache {
    /// `tol` is the absolute tolerance per entry (the reference: 1e-2).
    pub fn new(tol: f32) -> GradientCache {
        GradientCache {
            tol,
            buckets: HashMap::new(),
        }
    }

    fn key(&self, norms: &[f32]) -> Option<Vec<i64>> {
        norms
            .iter()
            .map(|&v| v.is_finite().then(|| (v / self.tol).round() as i64))
            .collect()
    }

    pub fn get(&self, norms: &[f32]) -> Option<f64> {
        let bucket = self.buckets.get(&self.key(norms)?)?;
        bucket
            .iter()
            .find(|(stored, _)| {
                stored
                    .iter()
                    .zip(norms)
                    .all(|(a, b)| (a - b).abs() <= self.tol)
            })
            .map(|&(_, fitness)| fitness)
    }

    pub fn insert(&mut self, norms: Vec<f32>, fitness: f64) {
        if let Some(key) = self.key(&norms) {
            self.buckets.entry(key).or_default().push((norms, fitness));
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }

    /// Every stored fingerprint with its fitness (for checkpoints).
    pub fn entries(&self) -> impl Iterator<Item = (&[f32], f64)> {
        self.buckets
            .values()
            .flatten()
            .map(|(n, f)| (n.as_slice(), *f))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_matches_within_tolerance_and_never_falsely() {
        let mut c = GradientCache::new(1e-2);
        c.insert(vec![0.5, 1.0, 2.0], 0.3);
        assert_eq!(c.get(&[0.501, 0.999, 2.002]), Some(0.3));
        assert_eq!(c.get(&[0.5, 1.0, 2.1]), None);
        assert_eq!(c.get(&[0.5, 1.0]), None);
        c.insert(vec![f32::NAN, 1.0, 2.0], 0.1);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&[f32::NAN, 1.0, 2.0]), None);
    }
}
