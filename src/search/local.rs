//! Local search (METHOD.md §4): the weights `phi` of a candidate loss are trained by unrolled
//! differentiation through one SGD step of the base model.
//!
//! With one inner step the meta-gradient is exact and needs no tape:
//! `dT/dphi_j = -lr_eff * sum_{b,k} (J_f(theta0) v)_{bk} * d g_{bk} / d phi_j`, where `v` is the
//! gradient of the validation task loss `T` at the updated parameters `theta1`, `J_f v` one JVP
//! of the model at `theta0` on the training batch, and `g` the gradient of the batch loss with
//! respect to the raw outputs, whose `phi` derivatives come from the JIT's mixed derivatives
//! `d2M/(dyhat dphi_j)` (through the softmax for classification). `lr_eff` is the first step's
//! factor: `lr`, or `lr * (1 + momentum)` with Nesterov (the momentum buffer starts at the first
//! gradient); weight decay does not depend on `phi`.

use evomal_sdk::layers::standard_normal;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::KernelKind;
use crate::backend::jit::{self, JitKernel};
use crate::expr::LossExpr;
use crate::expr::interp::FullBatchMut;
use crate::plugin::{JvpMethod, PluginModel};
use crate::search::ml3::LossNet;
use crate::train::objective::{
    Objective, TaskKind, Weighted, one_hot, probabilities, probabilities_vjp,
};
use crate::train::optim::{Optimizer, OptimizerConfig};
use crate::train::{BatchSampler, Task, TrainError, pass_seed};
use evomal_sdk::Mode;

/// Settings of the local search; `Default` is the reference (250 meta steps, Adam 1e-3).
#[derive(Clone, Debug, PartialEq)]
pub struct LocalSearchConfig {
    pub meta_steps: usize,
    pub meta_lr: f32,
    /// Unrolled SGD steps; only 1 is supported (the exact, tape-free case).
    pub inner_steps: usize,
    pub batch: usize,
    /// The base model's SGD settings for the unrolled step.
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
}

impl Default for LocalSearchConfig {
    fn default() -> LocalSearchConfig {
        LocalSearchConfig {
            meta_steps: 250,
            meta_lr: 1e-3,
            inner_steps: 1,
            batch: 128,
            lr: 0.01,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

impl LocalSearchConfig {
    /// The factor of the first SGD step's gradient in `theta1`.
    pub fn lr_eff(&self) -> f32 {
        if self.nesterov {
            self.lr * (1.0 + self.momentum)
        } else {
            self.lr
        }
    }
}

/// Failures of the local search.
#[derive(Debug, thiserror::Error)]
pub enum LocalSearchError {
    #[error(
        "local search with inner_steps = {0} is not supported yet: only the exact one-step case (inner_steps = 1)"
    )]
    InnerSteps(usize),
    #[error(transparent)]
    Train(#[from] TrainError),
}

/// What [`local_search`] leaves.
#[derive(Clone, Debug)]
pub struct LocalSearchResult {
    /// The candidate with its learned weights.
    pub loss: LossExpr,
    /// Validation task loss after the unrolled step, per meta step.
    pub trace: Vec<f32>,
    /// Whether a meta step produced a non-finite loss or gradient (the last finite weights are
    /// kept, and the search stopped there).
    pub diverged: bool,
    /// True when the plugin has no JVP and a finite difference stood in for it.
    pub used_fd_jvp: bool,
}

/// Computes one-step meta-gradients of a candidate loss on one task and model.
pub struct MetaGradient<'t, 'p> {
    task: &'t Task<'p>,
    cfg: LocalSearchConfig,
    loss: MetaLoss,
    task_loss: JitKernel,
    task_loss_weights: Vec<f32>,
    buf: Buffers,
}

/// The parameterised loss whose weights the meta-gradient is for.
enum MetaLoss {
    /// An expression's full kernel (mixed derivatives per weight) and its weight count.
    Tree { full: JitKernel, n_weights: usize },
    /// ML3's loss network (the weights are the network's).
    Network,
}

#[derive(Default)]
struct Buffers {
    y_t: Vec<f32>,
    y_v: Vec<f32>,
    out: Vec<f32>,
    ky: Vec<f32>,
    kyhat: Vec<f32>,
    m: Vec<f32>,
    dm: Vec<f32>,
    dphi: Vec<f32>,
    d2: Vec<f32>,
    g: Vec<f32>,
    jv: Vec<f32>,
    dg: Vec<f32>,
    column: Vec<f32>,
    dout: Vec<f32>,
    objective: Objective,
}

impl<'t, 'p> MetaGradient<'t, 'p> {
    /// Compiles the candidate's full kernel and the task loss (MSE or cross-entropy).
    pub fn new(
        task: &'t Task<'p>,
        loss: &LossExpr,
        cfg: LocalSearchConfig,
    ) -> Result<Self, LocalSearchError> {
        let full = jit::compile(loss, KernelKind::Full).map_err(TrainError::from)?;
        let loss = MetaLoss::Tree {
            full,
            n_weights: loss.n_weights(),
        };
        Self::with_loss(task, loss, cfg)
    }

    /// Meta-gradients for the weights of ML3's loss network.
    pub fn for_network(
        task: &'t Task<'p>,
        cfg: LocalSearchConfig,
    ) -> Result<Self, LocalSearchError> {
        Self::with_loss(task, MetaLoss::Network, cfg)
    }

    fn with_loss(
        task: &'t Task<'p>,
        loss: MetaLoss,
        cfg: LocalSearchConfig,
    ) -> Result<Self, LocalSearchError> {
        if cfg.inner_steps != 1 {
            return Err(LocalSearchError::InnerSteps(cfg.inner_steps));
        }
        let task_expr = task.kind.baseline();
        Ok(MetaGradient {
            task,
            loss,
            task_loss: jit::compile(&task_expr, KernelKind::LossGrad).map_err(TrainError::from)?,
            task_loss_weights: task_expr.weights().to_vec(),
            cfg,
            buf: Buffers::default(),
        })
    }

    /// The validation task loss after one SGD step from `theta0 = init(init_seed)` under the
    /// candidate with weights `phi` (one per node, or the network's), and `dT/dphi` (one per
    /// weight; a tree root's is 0). The third value is how the JVP was computed.
    pub fn compute(
        &mut self,
        model: &mut PluginModel,
        phi: &[f32],
        init_seed: u64,
        train_idx: &[u64],
        valid_idx: &[u64],
    ) -> Result<(f32, Vec<f32>, JvpMethod), TrainError> {
        let t = self.task;
        let n_out = t.n_out;
        let b = &mut self.buf;
        let (bt, bv) = (train_idx.len(), valid_idx.len());
        b.y_t.resize(bt * t.target_width, 0.0);
        b.y_v.resize(bv * t.target_width, 0.0);
        model.init(init_seed)?;

        // The candidate on the training batch at theta0: per element M, dM/dyhat,
        // d2M/(dyhat dphi). Both passes run in training mode, as the reference's model does.
        // The loss sees `width` values per example (two for a one-output classifier), the
        // model gives `n_out`.
        let n = bt * t.kind.loss_width(n_out);
        b.out.resize(bt * n_out, 0.0);
        let train_mode = Mode::Train {
            seed: pass_seed(init_seed, 0),
        };
        model.forward(0, train_idx, train_mode, &mut b.out, Some(&mut b.y_t))?;
        b.ky.resize(n, 0.0);
        b.kyhat.resize(n, 0.0);
        match t.kind {
            TaskKind::Regression => {
                b.ky.copy_from_slice(&b.y_t);
                b.kyhat.copy_from_slice(&b.out);
            }
            TaskKind::Classification => {
                one_hot(&b.y_t, n_out, &mut b.ky);
                probabilities(&b.out, n_out, &mut b.kyhat);
            }
        }
        for v in [&mut b.m, &mut b.dm] {
            v.resize(n, 0.0);
        }
        match &self.loss {
            MetaLoss::Tree { full, n_weights } => {
                for v in [&mut b.dphi, &mut b.d2] {
                    v.resize(n * n_weights, 0.0);
                }
                let outs = FullBatchMut {
                    loss: &mut b.m,
                    dyhat: &mut b.dm,
                    dphi: &mut b.dphi,
                    d2: &mut b.d2,
                };
                full.full(&b.ky, &b.kyhat, phi, outs)
                    .map_err(TrainError::from)?;
            }
            MetaLoss::Network => {
                LossNet::loss_grad_under(phi, &b.ky, &b.kyhat, &mut b.m, &mut b.dm);
            }
        }
        let inv_b = 1.0 / bt as f32;
        b.g.resize(bt * n_out, 0.0);
        to_raw_outputs(t.kind, &b.kyhat, &b.dm, n_out, inv_b, &mut b.g);

        // theta1 = theta0 - lr_eff (grad + wd theta0), kept in the model.
        let lr_eff = self.cfg.lr_eff();
        model.meta_lookahead(&b.g, lr_eff, self.cfg.weight_decay)?;

        // v = grad of the validation task loss at theta1.
        b.out.resize(bv * n_out, 0.0);
        let valid_mode = Mode::Train {
            seed: pass_seed(init_seed, 1),
        };
        model.forward(1, valid_idx, valid_mode, &mut b.out, Some(&mut b.y_v))?;
        b.dout.resize(bv * n_out, 0.0);
        let task_loss = Weighted {
            kernel: &self.task_loss,
            weights: &self.task_loss_weights,
        };
        let val_loss =
            b.objective
                .loss_and_grad(&task_loss, t.kind, &b.out, &b.y_v, n_out, &mut b.dout)?;
        model.meta_pullback(&b.dout)?;

        // J_f(theta0) v on the training batch.
        b.jv.resize(bt * n_out, 0.0);
        let method = model.meta_jvp(&mut b.jv)?;

        // dT/dphi_j = -lr_eff * <J v, d g / d phi_j>.
        let mut meta = vec![0.0f32; phi.len()];
        match &self.loss {
            MetaLoss::Tree { n_weights: k, .. } => {
                let k = *k;
                b.column.resize(n, 0.0);
                b.dg.resize(bt * n_out, 0.0);
                for (j, m) in meta.iter_mut().enumerate().take(k) {
                    for (e, c) in b.column.iter_mut().enumerate() {
                        *c = b.d2[e * k + j];
                    }
                    to_raw_outputs(t.kind, &b.kyhat, &b.column, n_out, inv_b, &mut b.dg);
                    let dot: f64 =
                        b.jv.iter()
                            .zip(&b.dg)
                            .map(|(&a, &c)| a as f64 * c as f64)
                            .sum();
                    *m = (-(lr_eff as f64) * dot) as f32;
                }
            }
            MetaLoss::Network => {
                // <J v, A(d dM/dyhat / d phi)> = <A^T J v, ...>: one contraction of the
                // network's mixed derivatives with per-element coefficients.
                b.column.resize(n, 0.0);
                from_raw_outputs(t.kind, &b.kyhat, &b.jv, n_out, inv_b, &mut b.column);
                let mut acc = vec![0.0f64; phi.len()];
                LossNet::meta_contract(phi, &b.ky, &b.kyhat, &b.column, &mut acc);
                for (m, a) in meta.iter_mut().zip(&acc) {
                    *m = (-(lr_eff as f64) * a) as f32;
                }
            }
        }
        Ok((val_loss, meta, method))
    }
}

/// `d(batch loss)/d(raw outputs)` from per-element `dM/dyhat`, scaled by `1/B`.
fn to_raw_outputs(
    kind: TaskKind,
    p: &[f32],
    dm: &[f32],
    n_out: usize,
    inv_b: f32,
    out: &mut [f32],
) {
    match kind {
        TaskKind::Regression => out.iter_mut().zip(dm).for_each(|(o, &d)| *o = d * inv_b),
        TaskKind::Classification => probabilities_vjp(p, dm, n_out, inv_b, out),
    }
}

/// The transpose of [`to_raw_outputs`]: per-element coefficients from a vector over the raw
/// outputs. Scaling and the softmax's Jacobian are symmetric, so that is the same map except
/// for a one-output classifier, whose loss sees two values per output.
fn from_raw_outputs(
    kind: TaskKind,
    p: &[f32],
    v: &[f32],
    n_out: usize,
    inv_b: f32,
    out: &mut [f32],
) {
    if kind == TaskKind::Classification && n_out == 1 {
        for ((o, p), &d) in out.chunks_exact_mut(2).zip(p.chunks_exact(2)).zip(v) {
            let c = inv_b * p[0] * p[1] * d;
            o[0] = -c;
            o[1] = c;
        }
    } else {
        to_raw_outputs(kind, p, v, n_out, inv_b, out);
    }
}

/// Trains the weights of `loss` for `cfg.meta_steps` Adam steps; weights start at
/// `1 + 0.001 N(0, 1)` (the reference), each meta step from a fresh base-model initialisation.
pub fn local_search(
    task: &Task<'_>,
    model: &mut PluginModel,
    loss: &LossExpr,
    cfg: &LocalSearchConfig,
    seed: u64,
) -> Result<LocalSearchResult, LocalSearchError> {
    let mut meta = MetaGradient::new(task, loss, cfg.clone())?;
    let (n_train, n_valid) = (task.split_size(0), task.split_size(1));
    let mut walk = MetaWalk::new(n_train, n_valid, loss, cfg, seed);
    let mut used_fd_jvp = false;
    while let Some(step) = walk.next_step() {
        let (val, grad, method) =
            meta.compute(model, step.phi, step.init_seed, step.train, step.valid)?;
        used_fd_jvp |= method != JvpMethod::Exact;
        walk.take(val, &grad);
    }
    Ok(walk.finish(loss, used_fd_jvp))
}

/// What one meta step works on: the weights as they stand, the training and validation batches,
/// and the base model's initialisation seed.
pub struct MetaStep<'w> {
    pub phi: &'w [f32],
    pub train: &'w [u64],
    pub valid: &'w [u64],
    pub init_seed: u64,
    /// The next step's `init_seed`, if the walk has a next step (and does not diverge now).
    /// It does not depend on this step's result, so the GPU path draws the next
    /// initialisations on the host while the device computes this step.
    pub next_init_seed: Option<u64>,
}

/// One candidate's local search without the meta-gradient itself: its random draws (initial
/// weights, batches, base-model seeds, all from `seed`), the meta-Adam steps, the trace and the
/// stop on divergence. The CPU ([`local_search`]) and the GPU (many at once) drive it alike.
pub struct MetaWalk {
    rng: ChaCha8Rng,
    phi: Vec<f32>,
    train_sampler: BatchSampler,
    valid_sampler: BatchSampler,
    train_idx: Vec<u64>,
    valid_idx: Vec<u64>,
    adam: Optimizer,
    meta_lr: f32,
    steps_left: usize,
    trace: Vec<f32>,
    diverged: bool,
}

impl MetaWalk {
    /// The walk of `loss` on a task with `n_train` training and `n_valid` validation examples.
    pub fn new(
        n_train: usize,
        n_valid: usize,
        loss: &LossExpr,
        cfg: &LocalSearchConfig,
        seed: u64,
    ) -> MetaWalk {
        let init = |rng: &mut ChaCha8Rng| {
            (0..loss.len())
                .map(|_| 1.0 + 0.001 * standard_normal(rng) as f32)
                .collect()
        };
        Self::with_init(n_train, n_valid, init, cfg, seed)
    }

    /// A walk whose starting weights `init` draws first from the walk's generator.
    pub fn with_init(
        n_train: usize,
        n_valid: usize,
        init: impl FnOnce(&mut ChaCha8Rng) -> Vec<f32>,
        cfg: &LocalSearchConfig,
        seed: u64,
    ) -> MetaWalk {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let phi = init(&mut rng);
        let train_sampler = BatchSampler::new(n_train, rng.random());
        let valid_sampler = BatchSampler::new(n_valid, rng.random());
        let adam = Optimizer::new(
            OptimizerConfig::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            phi.len(),
        );
        MetaWalk {
            rng,
            phi,
            train_sampler,
            valid_sampler,
            train_idx: vec![0; cfg.batch.min(n_train)],
            valid_idx: vec![0; cfg.batch.min(n_valid)],
            adam,
            meta_lr: cfg.meta_lr,
            steps_left: cfg.meta_steps,
            trace: Vec::with_capacity(cfg.meta_steps),
            diverged: false,
        }
    }

    /// The next meta step, or `None` when the walk is over.
    pub fn next_step(&mut self) -> Option<MetaStep<'_>> {
        if self.steps_left == 0 || self.diverged {
            return None;
        }
        self.steps_left -= 1;
        self.train_sampler.next(&mut self.train_idx);
        self.valid_sampler.next(&mut self.valid_idx);
        let init_seed = self.rng.random();
        let next_init_seed = (self.steps_left > 0).then(|| self.rng.clone().random());
        Some(MetaStep {
            phi: &self.phi,
            train: &self.train_idx,
            valid: &self.valid_idx,
            init_seed,
            next_init_seed,
        })
    }

    /// Takes the step's validation loss and meta-gradient: an Adam step on the weights, or the
    /// end of the walk when either is not finite (the last finite weights are kept).
    pub fn take(&mut self, val: f32, grad: &[f32]) {
        if !val.is_finite() || grad.iter().any(|g| !g.is_finite()) {
            self.diverged = true;
            return;
        }
        self.trace.push(val);
        self.adam.step(&mut self.phi, grad, self.meta_lr);
    }

    /// The weights as they stand, and the validation losses so far.
    pub fn into_parts(self) -> (Vec<f32>, Vec<f32>, bool) {
        (self.phi, self.trace, self.diverged)
    }

    pub fn finish(self, loss: &LossExpr, used_fd_jvp: bool) -> LocalSearchResult {
        let mut learned = loss.clone();
        learned.set_weights(&self.phi);
        LocalSearchResult {
            loss: learned,
            trace: self.trace,
            diverged: self.diverged,
            used_fd_jvp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_knows_the_next_steps_seed() {
        let cfg = LocalSearchConfig {
            meta_steps: 4,
            ..LocalSearchConfig::default()
        };
        let loss: LossExpr = "square(sub(y, yhat))".parse().unwrap();
        let mut walk = MetaWalk::new(100, 50, &loss, &cfg, 7);
        let mut announced = None;
        let mut steps = 0;
        while let Some(step) = walk.next_step() {
            if steps > 0 {
                assert_eq!(announced, Some(step.init_seed), "step {steps}");
            }
            announced = step.next_init_seed;
            steps += 1;
            let grad = vec![0.1; loss.len()];
            walk.take(1.0, &grad);
        }
        assert_eq!(steps, 4);
        assert_eq!(announced, None, "the last step has no next");
    }
}
