//! Meta-testing (METHOD.md §6): train a fresh model with a loss from each seed, then score it
//! on the training and test splits.

use std::time::Instant;

use crate::plugin::PluginModel;
use crate::train::objective::ElementLoss;
use crate::train::{Outcome, Step, Task, TrainConfig, TrainError};

/// One seed's meta-test.
#[derive(Clone, Debug)]
pub struct SeedResult {
    pub seed: u64,
    pub outcome: Outcome,
    /// The task metric on the training and test splits (`None` after divergence).
    pub train: Option<f64>,
    pub test: Option<f64>,
    pub seconds: f64,
    /// `(steps done, test metric)` at evenly spaced points of the training, and at the end.
    pub curve: Vec<(usize, f64)>,
}

/// Trains with `loss` from every seed in `seeds`, recording the test metric at
/// `curve_points` evenly spaced steps; `on_step` sees each step's index.
pub fn meta_test(
    task: &Task<'_>,
    model: &mut PluginModel,
    loss: &dyn ElementLoss,
    cfg: &TrainConfig,
    seeds: &[u64],
    curve_points: usize,
    on_step: &mut dyn FnMut(usize),
) -> Result<Vec<SeedResult>, TrainError> {
    let metric = task.metric();
    let mut rows = Vec::with_capacity(seeds.len());
    for &seed in seeds {
        model.init(seed)?;
        let t = Instant::now();
        let mut curve = Vec::new();
        let every = (cfg.steps / curve_points.max(1)).max(1);
        let mut probe_error = None;
        let mut step_fn = |s: Step<'_>| {
            if (s.index + 1).is_multiple_of(every) && probe_error.is_none() {
                match task.evaluate(s.model, 2, metric) {
                    Ok(m) => curve.push((s.index + 1, m)),
                    Err(e) => probe_error = Some(e),
                }
            }
            on_step(s.index);
        };
        let outcome = task.train_with(model, loss, cfg, seed, &mut step_fn)?;
        if let Some(e) = probe_error {
            return Err(e);
        }
        let seconds = t.elapsed().as_secs_f64();
        let (train, test) = match outcome {
            Outcome::Finished => (
                Some(task.evaluate(model, 0, metric)?),
                Some(task.evaluate(model, 2, metric)?),
            ),
            Outcome::Diverged { .. } => (None, None),
        };
        rows.push(SeedResult {
            seed,
            outcome,
            train,
            test,
            seconds,
            curve,
        });
    }
    Ok(rows)
}

/// Mean and population standard deviation (the papers' convention); `None` when empty.
pub fn mean_std(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    Some((mean, var.sqrt()))
}
