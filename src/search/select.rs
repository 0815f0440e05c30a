//! Robust selection (beyond the reference): a search's fitness is one training run from one
//! initialisation, so the candidate that scored best is often only the luckiest. The best few
//! distinct candidates are scored again from further initialisations and batch orders, and the
//! one with the best mean wins; ties (an error rate that saturates) go to the lower validation
//! task loss.

use rayon::prelude::*;

use crate::backend::KernelKind;
use crate::backend::jit;
use crate::expr::LossExpr;
use crate::plugin::{PluginError, PluginModel};
use crate::search::run::{Search, SearchError};
use crate::train::{Outcome, Task, TrainConfig, TrainError};

/// How many candidates are scored again, how often, with what training, and whether ties look
/// at the task loss.
#[derive(Clone, Debug)]
pub struct SelectionConfig {
    pub candidates: usize,
    pub repeats: usize,
    pub tie_break: bool,
    /// Score the task's baseline (MSE or cross-entropy) alongside, and keep it when no
    /// candidate's mean beats it.
    pub baseline: bool,
    /// The training of each re-scoring run: the search's fitness training, or the meta-test's.
    pub train: TrainConfig,
}

/// One candidate scored again.
#[derive(Clone, Debug)]
pub struct Rescored {
    /// With its learned weights.
    pub loss: LossExpr,
    /// Its fitness in the search, and the generation that found it (`None` for the baseline,
    /// which the search did not score).
    pub search_fitness: f64,
    pub generation: Option<usize>,
    /// The metric on the validation split after each run (the search's seed first).
    pub fitness: Vec<f64>,
    /// The task loss (MSE or cross-entropy) on the validation split after each run.
    pub task_loss: Vec<f64>,
}

impl Rescored {
    /// Mean over the runs; +inf when any diverged.
    pub fn mean(&self) -> f64 {
        mean(&self.fitness)
    }

    pub fn task_loss_mean(&self) -> f64 {
        mean(&self.task_loss)
    }
}

fn mean(xs: &[f64]) -> f64 {
    if xs.iter().all(|x| x.is_finite()) {
        xs.iter().sum::<f64>() / xs.len() as f64
    } else {
        f64::INFINITY
    }
}

/// The best `cfg.candidates` distinct candidates of `search`, each trained `1 + cfg.repeats`
/// times (from the search's seed, then from seeds derived from it) with `cfg.train`; returns
/// them in the search's order and the index of the one chosen. `None` when the search found no
/// candidate with a finite fitness.
pub fn robust_selection(
    task: &Task<'_>,
    search: &Search<'_, '_>,
    cfg: &SelectionConfig,
    make_model: &(dyn Fn() -> Result<PluginModel, PluginError> + Sync),
) -> Result<Option<(Vec<Rescored>, usize)>, SearchError> {
    let mut finalists: Vec<(LossExpr, f64, Option<usize>)> = search
        .hall_of_fame()
        .into_iter()
        .filter(|e| e.fitness.is_finite())
        .take(cfg.candidates)
        .map(|e| (e.loss.clone(), e.fitness, Some(e.generation)))
        .collect();
    if finalists.is_empty() {
        return Ok(None);
    }
    if cfg.baseline {
        finalists.push((task.kind.baseline(), f64::NAN, None));
    }
    let plan = search.plan();
    let seeds: Vec<u64> = std::iter::once(plan.seed)
        .chain((0..cfg.repeats as u64).map(|r| evomal_sdk::mix_seed(plan.seed ^ SALT, r)))
        .collect();
    let task_loss = task.task_loss_metric();
    let rescored: Vec<Rescored> = finalists
        .par_iter()
        .map_init(make_model, |model, (loss, search_fitness, generation)| {
            let model = model
                .as_mut()
                .map_err(|err| SearchError::Train(TrainError::Plugin(err.clone())))?;
            let kernel = jit::compile(loss, KernelKind::LossGrad).map_err(TrainError::from)?;
            // The baseline's search fitness, as the search would have scored it.
            let search_fitness = match generation {
                Some(_) => *search_fitness,
                None => {
                    task.fitness(model, &kernel, loss.weights(), &plan.fitness, plan.seed, 1)?
                }
            };
            let mut r = Rescored {
                loss: loss.clone(),
                search_fitness,
                generation: *generation,
                fitness: Vec::new(),
                task_loss: Vec::new(),
            };
            for &seed in &seeds {
                model.init(seed).map_err(TrainError::from)?;
                let outcome = task.train(
                    model,
                    &kernel,
                    loss.weights(),
                    &cfg.train,
                    seed,
                    &mut |_| {},
                )?;
                let (f, l) = if outcome == Outcome::Finished {
                    (
                        task.evaluate(model, 1, task.metric())?,
                        task.evaluate(model, 1, task_loss)?,
                    )
                } else {
                    (f64::INFINITY, f64::INFINITY)
                };
                r.fitness
                    .push(if f.is_finite() { f } else { f64::INFINITY });
                r.task_loss
                    .push(if l.is_finite() { l } else { f64::INFINITY });
            }
            Ok(r)
        })
        .collect::<Result<_, SearchError>>()?;
    let key = |r: &Rescored| {
        (
            r.mean(),
            if cfg.tie_break {
                r.task_loss_mean()
            } else {
                0.0
            },
        )
    };
    let chosen = (0..rescored.len())
        .min_by(|&a, &b| {
            let (ka, kb) = (key(&rescored[a]), key(&rescored[b]));
            ka.0.total_cmp(&kb.0)
                .then(ka.1.total_cmp(&kb.1))
                .then(a.cmp(&b))
        })
        .expect("at least one finalist");
    Ok(Some((rescored, chosen)))
}

/// Keeps the re-scoring seeds apart from every other stream derived from the search seed.
const SALT: u64 = 0x5e1e_c7ed_0f5e_ed5a;
