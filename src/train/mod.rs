//! Training a plugin's model with a compiled loss: seeded mini-batches, the objective of
//! METHOD.md §2, the learning-rate schedule, and evaluation metrics. The model instance holds
//! its parameters and optimiser; per step only the batch's indices, outputs, targets and output
//! gradient cross the plugin boundary. This is the one training loop, whatever the model.
//!
//! A loss or parameter vector that turns non-finite ends the run with [`Outcome::Diverged`]; it
//! is a result, not an error. The step loop allocates nothing.

pub mod meta_test;
pub mod objective;
pub mod optim;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::backend::jit::{JitError, JitKernel};
use crate::plugin::{PluginError, PluginModel, TaskPlugin};
use evomal_sdk::Mode;
use objective::{ElementLoss, Objective, TaskKind, Weighted};
use optim::{OptimizerConfig, lr_at};

/// Failures that stop training (divergence is not one of them).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Jit(#[from] JitError),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f32,
    /// Steps at which the learning rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    pub gamma: f32,
    pub optimizer: OptimizerConfig,
}

/// What a training callback sees after each step. The model may be used (to evaluate, say):
/// the next step starts with its own forward pass.
pub struct Step<'a> {
    pub index: usize,
    /// The batch loss of this step.
    pub loss: f32,
    /// The model after this step's update.
    pub model: &'a mut PluginModel,
}

/// How a training run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Finished,
    /// The batch loss or the parameters became NaN or infinite at this step.
    Diverged {
        step: usize,
    },
}

/// The data splits, as the ABI numbers them.
pub const SPLITS: [(u32, &str); 3] = [(0, "train"), (1, "valid"), (2, "test")];

/// A performance metric over a whole split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Mean squared error over all outputs.
    Mse,
    /// Fraction of examples whose arg-max output is not the label.
    ErrorRate,
    /// Mean softmax cross-entropy.
    CrossEntropy,
}

impl Metric {
    /// The metric summed over the examples of a batch: `outputs` are raw model outputs
    /// (`n_out` per example), `targets` values or class indices; `scratch` holds
    /// `outputs.len()` floats.
    pub fn sum(self, outputs: &[f32], targets: &[f32], n_out: usize, scratch: &mut [f32]) -> f64 {
        match self {
            Metric::Mse => {
                outputs
                    .iter()
                    .zip(targets)
                    .map(|(&o, &t)| (o as f64 - t as f64).powi(2))
                    .sum::<f64>()
                    / n_out as f64
            }
            Metric::ErrorRate => outputs
                .chunks_exact(n_out)
                .zip(targets)
                .filter(|(row, label)| predicted_class(row) != **label as usize)
                .count() as f64,
            Metric::CrossEntropy if n_out == 1 => outputs
                .iter()
                .zip(targets)
                .map(|(&z, &label)| {
                    let p = 1.0 / (1.0 + (-z).exp());
                    let pi = if label > 0.5 { p } else { 1.0 - p };
                    -(pi.max(1e-12) as f64).ln()
                })
                .sum(),
            Metric::CrossEntropy => {
                objective::probabilities(outputs, n_out, scratch);
                scratch
                    .chunks_exact(n_out)
                    .zip(targets)
                    .map(|(row, &label)| -(row[label as usize].max(1e-12) as f64).ln())
                    .sum()
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Mse => "mse",
            Metric::ErrorRate => "error_rate",
            Metric::CrossEntropy => "cross_entropy",
        }
    }
}

/// The task facts the loop needs, read once from the plugin.
pub struct Task<'a> {
    pub plugin: &'a TaskPlugin,
    pub kind: TaskKind,
    pub n_out: usize,
    pub input_len: usize,
    pub target_width: usize,
}

impl<'a> Task<'a> {
    pub fn new(plugin: &'a TaskPlugin) -> Task<'a> {
        let info = plugin.info();
        Task {
            plugin,
            kind: if info.kind == evomal_sdk::abi::KIND_CLASSIFICATION {
                TaskKind::Classification
            } else {
                TaskKind::Regression
            },
            n_out: info.n_outputs as usize,
            input_len: plugin.input_len(),
            target_width: info.target_width as usize,
        }
    }

    pub fn split_size(&self, split: u32) -> usize {
        self.plugin.info().split_sizes[split as usize] as usize
    }

    /// The metric that scores this task (METHOD.md §7): MSE or error rate.
    pub fn metric(&self) -> Metric {
        match self.kind {
            TaskKind::Regression => Metric::Mse,
            TaskKind::Classification => Metric::ErrorRate,
        }
    }

    /// [`Task::train_with`] the loss `kernel` (a `LossGrad` kernel) under `loss_weights`.
    #[allow(clippy::too_many_arguments)]
    pub fn train(
        &self,
        model: &mut PluginModel,
        kernel: &JitKernel,
        loss_weights: &[f32],
        cfg: &TrainConfig,
        seed: u64,
        on_step: &mut dyn FnMut(Step<'_>),
    ) -> Result<Outcome, TrainError> {
        let loss = Weighted {
            kernel,
            weights: loss_weights,
        };
        self.train_with(model, &loss, cfg, seed, on_step)
    }

    /// The metric of the task loss (the baseline's own measure): MSE or cross-entropy.
    pub fn task_loss_metric(&self) -> Metric {
        match self.kind {
            TaskKind::Regression => Metric::Mse,
            TaskKind::Classification => Metric::CrossEntropy,
        }
    }

    /// Trains `model` from its current parameters (the optimiser starting afresh) for
    /// `cfg.steps` steps on the training split with `loss`, on batches (and training-pass
    /// seeds) drawn from `seed`. `on_step` sees each finished step.
    pub fn train_with(
        &self,
        model: &mut PluginModel,
        loss: &dyn ElementLoss,
        cfg: &TrainConfig,
        seed: u64,
        on_step: &mut dyn FnMut(Step<'_>),
    ) -> Result<Outcome, TrainError> {
        model.set_optimizer(&cfg.optimizer)?;
        let n_train = self.split_size(0);
        let batch = cfg.batch.min(n_train);
        let mut sampler = BatchSampler::new(n_train, seed);
        let mut idx = vec![0u64; batch];
        let mut y = vec![0.0f32; batch * self.target_width];
        let mut out = vec![0.0f32; batch * self.n_out];
        let mut dout = vec![0.0f32; batch * self.n_out];
        let mut objective = Objective::default();
        for step in 0..cfg.steps {
            sampler.next(&mut idx);
            let mode = Mode::Train {
                seed: pass_seed(seed, step),
            };
            model.forward(0, &idx, mode, &mut out, Some(&mut y))?;
            let value =
                objective.loss_and_grad(loss, self.kind, &out, &y, self.n_out, &mut dout)?;
            if !value.is_finite() {
                return Ok(Outcome::Diverged { step });
            }
            model.step(&dout, lr_at(cfg.lr, &cfg.milestones, cfg.gamma, step))?;
            on_step(Step {
                index: step,
                loss: value,
                model: &mut *model,
            });
        }
        if !model.all_finite()? {
            return Ok(Outcome::Diverged { step: cfg.steps });
        }
        Ok(Outcome::Finished)
    }

    /// The search's fitness of a loss: the task's metric on `split` after training from
    /// `init(seed)` for `cfg.steps` steps on batches drawn from `seed`; +inf when training
    /// diverged or the metric is not finite.
    #[allow(clippy::too_many_arguments)]
    pub fn fitness(
        &self,
        model: &mut PluginModel,
        kernel: &JitKernel,
        loss_weights: &[f32],
        cfg: &TrainConfig,
        seed: u64,
        split: u32,
    ) -> Result<f64, TrainError> {
        let loss = Weighted {
            kernel,
            weights: loss_weights,
        };
        self.fitness_with(model, &loss, cfg, seed, split)
    }

    /// [`Task::fitness`] of any element loss.
    pub fn fitness_with(
        &self,
        model: &mut PluginModel,
        loss: &dyn ElementLoss,
        cfg: &TrainConfig,
        seed: u64,
        split: u32,
    ) -> Result<f64, TrainError> {
        model.init(seed)?;
        let outcome = self.train_with(model, loss, cfg, seed, &mut |_| {})?;
        if outcome != Outcome::Finished {
            return Ok(f64::INFINITY);
        }
        let f = self.evaluate(model, split, self.metric())?;
        Ok(if f.is_finite() { f } else { f64::INFINITY })
    }

    /// `metric` over the whole of `split`, the model in evaluation mode.
    pub fn evaluate(
        &self,
        model: &mut PluginModel,
        split: u32,
        metric: Metric,
    ) -> Result<f64, TrainError> {
        let n = self.split_size(split);
        let chunk = 512.min(n.max(1));
        let mut idx = Vec::with_capacity(chunk);
        let mut y = vec![0.0f32; chunk * self.target_width];
        let mut out = vec![0.0f32; chunk * self.n_out];
        let mut p = vec![0.0f32; chunk * self.n_out];
        let mut total = 0.0f64;
        for start in (0..n).step_by(chunk) {
            let b = chunk.min(n - start);
            idx.clear();
            idx.extend(start as u64..(start + b) as u64);
            let (y, out) = (&mut y[..b * self.target_width], &mut out[..b * self.n_out]);
            model.forward(split, &idx, Mode::Eval, out, Some(&mut *y))?;
            let p = &mut p[..b * self.n_out];
            total += metric.sum(out, y, self.n_out, p);
        }
        Ok(total / n as f64)
    }
}

/// The seed of training step `step`'s pass (dropout masks, augmentation) in a run seeded with
/// `seed`: its own stream, so the batches drawn from `seed` stay what they were.
pub fn pass_seed(seed: u64, step: usize) -> u64 {
    evomal_sdk::mix_seed(seed, step as u64)
}

fn predicted_class(row: &[f32]) -> usize {
    if row.len() == 1 {
        return (row[0] > 0.0) as usize;
    }
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Shuffled epochs of full batches (the last partial batch of an epoch is dropped), seeded.
pub struct BatchSampler {
    perm: Vec<u64>,
    cursor: usize,
    rng: ChaCha8Rng,
}

impl BatchSampler {
    pub fn new(n: usize, seed: u64) -> BatchSampler {
        BatchSampler {
            perm: (0..n as u64).collect(),
            cursor: n,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub fn next(&mut self, out: &mut [u64]) {
        if self.cursor + out.len() > self.perm.len() {
            self.perm.shuffle(&mut self.rng);
            self.cursor = 0;
        }
        out.copy_from_slice(&self.perm[self.cursor..self.cursor + out.len()]);
        self.cursor += out.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_visits_every_example_once_per_epoch_and_is_seeded() {
        let mut s = BatchSampler::new(10, 3);
        let mut seen = Vec::new();
        let mut b = [0u64; 5];
        for _ in 0..2 {
            s.next(&mut b);
            seen.extend_from_slice(&b);
        }
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        let draw = |seed| {
            let mut s = BatchSampler::new(10, seed);
            let mut b = [0u64; 5];
            s.next(&mut b);
            b
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }
}
