//! TaylorGLO (Gonzalez & Miikkulainen 2021), a baseline of METHOD.md §8: the loss is a
//! third-order bivariate Taylor polynomial with eight parameters `t0..t7`,
//!
//! `t2 (y-t1) + t3/2 (y-t1)^2 + t4/6 (y-t1)^3 + t5 (yhat-t0)(y-t1) + t6/2 (yhat-t0)(y-t1)^2
//!  + t7/2 (yhat-t0)^2 (y-t1)`,
//!
//! per output, summed, searched with CMA-ES (the `cmaes` crate: mean 0, sigma 1.2, population
//! 25, 50 generations) on EvoMAL's fitness. The polynomial is built as a loss expression of
//! evomal's IR, its parameters as node weights, so the JIT, WGSL and the exports apply as they
//! are. As in the reference code, the prediction enters through the three cross terms only.
//!
//! A run resumes by replay: CMA-ES is deterministic for its seed, so a resumed run samples the
//! same points again and takes the fitness of those already scored from the checkpoint's
//! record instead of training.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use cmaes::{CMAESOptions, DVector, TerminationReason};
use serde::{Deserialize, Serialize};

use crate::backend::KernelKind;
use crate::backend::jit;
use crate::expr::{LossExpr, Op};
use crate::plugin::{PluginError, PluginModel};
use crate::train::{Task, TrainConfig, TrainError};

/// Failures of a TaylorGLO search.
#[derive(Debug, thiserror::Error)]
pub enum TaylorGloError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("CMA-ES refused its settings: {0}")]
    Settings(String),
    #[error("CMA-ES scored no point")]
    NothingScored,
    /// The caller's `on_generation` stopped the run (writing a checkpoint, say).
    #[error("{0}")]
    Stopped(String),
}

/// The polynomial's parameters.
pub const N_PARAMS: usize = 8;

/// Which variable the expansion's one-variable terms are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaylorForm {
    /// The reference code's (and METHOD.md's): `(y - t1)`, the target, so the prediction
    /// enters through the three cross terms only.
    #[default]
    Reference,
    /// Gonzalez & Miikkulainen's paper: the expansion's first variable is the prediction, so
    /// every term depends on it: `t2 (yhat-t1) + … + t5 (y-t0)(yhat-t1) + …`.
    Paper,
}

/// CMA-ES settings; `Default` is the reference.
#[derive(Clone, Debug, PartialEq)]
pub struct TaylorGloConfig {
    pub population: usize,
    pub generations: usize,
    pub sigma: f64,
    pub form: TaylorForm,
}

impl Default for TaylorGloConfig {
    fn default() -> TaylorGloConfig {
        TaylorGloConfig {
            population: 25,
            generations: 50,
            sigma: 1.2,
            form: TaylorForm::Reference,
        }
    }
}

/// The Taylor loss with parameters `t` as an expression: each parameter is the weight of a
/// constant node or of a term (a node's weight scales what it feeds its parent).
pub fn taylor_loss(t: &[f64; N_PARAMS], form: TaylorForm) -> LossExpr {
    let w = |x: f64| x as f32;
    let leaf = |op| LossExpr::leaf(op, 1.0);
    let constant = |x: f64| LossExpr::leaf(Op::One, w(x));
    let (first, second) = match form {
        TaylorForm::Reference => (Op::Y, Op::Yhat),
        TaylorForm::Paper => (Op::Yhat, Op::Y),
    };
    // (first - t1) and (second - t0), each a fresh subtree where used (a tree, not a graph).
    let dy = || LossExpr::binary(Op::Sub, 1.0, &leaf(first), &constant(t[1]));
    let dp = || LossExpr::binary(Op::Sub, 1.0, &leaf(second), &constant(t[0]));
    let square = |e: &LossExpr| LossExpr::unary(Op::Square, 1.0, e);
    let mul = |weight: f64, a: &LossExpr, b: &LossExpr| LossExpr::binary(Op::Mul, w(weight), a, b);
    let terms = [
        with_root_weight(dy(), w(t[2])),
        with_root_weight(square(&dy()), w(t[3] / 2.0)),
        mul(t[4] / 6.0, &square(&dy()), &dy()),
        mul(t[5], &dp(), &dy()),
        mul(t[6] / 2.0, &dp(), &square(&dy())),
        mul(t[7] / 2.0, &square(&dp()), &dy()),
    ];
    let add = |a: &LossExpr, b: &LossExpr| LossExpr::binary(Op::Add, 1.0, a, b);
    let left = add(&add(&terms[0], &terms[1]), &terms[2]);
    let right = add(&add(&terms[3], &terms[4]), &terms[5]);
    add(&left, &right)
}

fn with_root_weight(mut e: LossExpr, weight: f32) -> LossExpr {
    let mut weights = e.weights().to_vec();
    *weights.last_mut().expect("a tree has a root") = weight;
    e.set_weights(&weights);
    e
}

/// One CMA-ES generation's record.
#[derive(Clone, Debug)]
pub struct GenerationStats {
    pub best: f64,
    pub median: f64,
    pub seconds: f64,
}

/// What sees the record after each generation: every point scored so far, and the
/// generations' statistics.
pub type OnGeneration<'a> =
    dyn FnMut(&Scored, &[GenerationStats]) -> Result<(), TaylorGloError> + 'a;

/// Fitness of every point scored so far, keyed by the parameters' bits: a resumed run's record.
pub type Scored = BTreeMap<[u64; N_PARAMS], f64>;

/// What [`taylorglo_search`] leaves.
#[derive(Clone, Debug)]
pub struct TaylorGloResult {
    pub params: [f64; N_PARAMS],
    pub loss: LossExpr,
    pub fitness: f64,
    pub generations: Vec<GenerationStats>,
    /// Why CMA-ES stopped (`MaxGenerations` when it ran the full course).
    pub stopped: Vec<String>,
}

fn key(x: &DVector<f64>) -> [u64; N_PARAMS] {
    std::array::from_fn(|i| x[i].to_bits())
}

/// Searches the eight parameters with CMA-ES seeded with `seed`; a point's fitness is the
/// validation metric after `fitness` training from `init(fitness_seed)`, +inf on divergence.
/// Points in `scored` are not trained again; new ones are added. `on_generation` sees the
/// record after every generation (to checkpoint it) and may stop the run with an error.
#[allow(clippy::too_many_arguments)]
pub fn taylorglo_search(
    task: &Task<'_>,
    make_model: &(dyn Fn() -> Result<PluginModel, PluginError> + Sync),
    fitness: &TrainConfig,
    fitness_seed: u64,
    cfg: &TaylorGloConfig,
    seed: u64,
    scored: &mut Scored,
    on_candidate: &(dyn Fn() + Sync),
    on_generation: &mut OnGeneration<'_>,
) -> Result<TaylorGloResult, TaylorGloError> {
    let record = Mutex::new(std::mem::take(scored));
    let models: Mutex<Vec<PluginModel>> = Mutex::new(Vec::new());
    let failure: Mutex<Option<TrainError>> = Mutex::new(None);
    let this_generation: Mutex<Vec<f64>> = Mutex::new(Vec::new());
    let evaluate = |x: &DVector<f64>| -> f64 {
        let known = record.lock().expect("not poisoned").get(&key(x)).copied();
        let result = match known {
            Some(f) => Ok(f),
            None => {
                let params: [f64; N_PARAMS] = std::array::from_fn(|i| x[i]);
                let loss = taylor_loss(&params, cfg.form);
                score(task, make_model, &models, &loss, fitness, fitness_seed)
            }
        };
        on_candidate();
        match result {
            Ok(f) => {
                record.lock().expect("not poisoned").insert(key(x), f);
                this_generation.lock().expect("not poisoned").push(f);
                f
            }
            Err(e) => {
                failure.lock().expect("not poisoned").get_or_insert(e);
                f64::NAN
            }
        }
    };
    let mut cmaes = CMAESOptions::new(vec![0.0; N_PARAMS], cfg.sigma)
        .population_size(cfg.population)
        .max_generations(cfg.generations)
        .seed(seed)
        .build(evaluate)
        .map_err(|e| TaylorGloError::Settings(format!("{e:?}")))?;
    let mut generations = Vec::new();
    let mut started = Instant::now();
    let end = loop {
        let step = cmaes.next_parallel();
        if let Some(e) = failure.lock().expect("not poisoned").take() {
            return Err(e.into());
        }
        let mut values = std::mem::take(&mut *this_generation.lock().expect("not poisoned"));
        values.sort_by(f64::total_cmp);
        generations.push(GenerationStats {
            best: values.first().copied().unwrap_or(f64::INFINITY),
            median: values
                .get(values.len() / 2)
                .copied()
                .unwrap_or(f64::INFINITY),
            seconds: started.elapsed().as_secs_f64(),
        });
        started = Instant::now();
        on_generation(&record.lock().expect("not poisoned"), &generations)?;
        if let Some(end) = step {
            break end;
        }
    };
    *scored = record.into_inner().expect("not poisoned");
    let best = end.overall_best.ok_or(TaylorGloError::NothingScored)?;
    let params: [f64; N_PARAMS] = std::array::from_fn(|i| best.point[i]);
    Ok(TaylorGloResult {
        params,
        loss: taylor_loss(&params, cfg.form),
        fitness: best.value,
        generations,
        stopped: end.reasons.iter().map(reason_name).collect(),
    })
}

fn reason_name(r: &TerminationReason) -> String {
    format!("{r:?}")
}

/// One point's fitness on a model from the pool (or a new one).
fn score(
    task: &Task<'_>,
    make_model: &(dyn Fn() -> Result<PluginModel, PluginError> + Sync),
    models: &Mutex<Vec<PluginModel>>,
    loss: &LossExpr,
    fitness: &TrainConfig,
    seed: u64,
) -> Result<f64, TrainError> {
    let kernel = jit::compile(loss, KernelKind::LossGrad)?;
    let pooled = models.lock().expect("not poisoned").pop();
    let mut model = match pooled {
        Some(m) => m,
        None => make_model()?,
    };
    let f = task.fitness(&mut model, &kernel, loss.weights(), fitness, seed, 1);
    models.lock().expect("not poisoned").push(model);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::interp;

    /// METHOD.md §8's polynomial, written out (the paper's form swaps the variables).
    fn polynomial(t: &[f64; N_PARAMS], y: f64, p: f64, form: TaylorForm) -> f64 {
        let (y, p) = match form {
            TaylorForm::Reference => (y, p),
            TaylorForm::Paper => (p, y),
        };
        let (a, b) = (y - t[1], p - t[0]);
        t[2] * a
            + 0.5 * t[3] * a * a
            + t[4] / 6.0 * a * a * a
            + t[5] * b * a
            + 0.5 * t[6] * b * a * a
            + 0.5 * t[7] * b * b * a
    }

    #[test]
    fn the_expression_is_the_polynomial() {
        let cases = [
            [0.0; N_PARAMS],
            [0.5, -1.0, 2.0, 0.3, -0.7, 1.1, 0.25, -2.0],
            [-1.2, 0.8, -0.4, 1.9, 0.6, -0.3, 1.4, 0.9],
        ];
        for (t, form) in cases
            .iter()
            .flat_map(|t| [(t, TaylorForm::Reference), (t, TaylorForm::Paper)])
        {
            let e = taylor_loss(t, form);
            for &(y, p) in &[
                (0.0, 0.0),
                (1.0, 0.3),
                (-0.5, 2.0),
                (0.0, 0.97),
                (3.0, -1.0),
            ] {
                let want = polynomial(t, y, p, form);
                let got = interp::eval(&e, y, p);
                // The weights are f32: agreement to f32's precision of the parameters.
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{t:?} at (y={y}, yhat={p}): {got} vs {want}; {e}"
                );
            }
        }
    }
}
