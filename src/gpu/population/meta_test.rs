//! Meta-testing on the GPU: one loss trained from each seed as `train::meta_test` does it — the
//! seed's own initialisation, batches and dropout masks — with the test metric probed along the
//! way, then scored on the training and test splits.

use std::time::Instant;

use super::PopulationTrainer;
use crate::expr::LossExpr;
use crate::plugin::PluginModel;
use crate::train::meta_test::SeedResult;
use crate::train::{Metric, Outcome, TrainConfig, TrainError};

impl PopulationTrainer<'_> {
    /// [`crate::train::meta_test::meta_test`] on the device, for a trainer built with the test
    /// split (2) as its evaluation split; `model` gives the seeds' initial parameters.
    #[allow(clippy::too_many_arguments)]
    pub fn meta_test(
        &self,
        model: &mut PluginModel,
        loss: &LossExpr,
        cfg: &TrainConfig,
        seeds: &[u64],
        metric: Metric,
        curve_points: usize,
        on_step: &mut dyn FnMut(usize),
    ) -> Result<Vec<SeedResult>, TrainError> {
        assert_eq!(self.eval_split, 2, "meta-testing probes the test split");
        let mut rows = Vec::with_capacity(seeds.len());
        for &seed in seeds {
            let t = Instant::now();
            let mut init = vec![0.0f32; self.n_params];
            model.initial_params(seed, &mut init)?;
            let mut run = self.prepare(std::slice::from_ref(loss), &init, cfg, seed)?;
            let every = (cfg.steps / curve_points.max(1)).max(1);
            let mut curve = Vec::new();
            for at in (every..=cfg.steps).step_by(every) {
                let from = run.done;
                run.advance(self.gpu, at);
                (from..at).for_each(&mut *on_step);
                let test = self.evaluate(&run.net, &self.eval, run.eval_rows, metric)?;
                curve.push((at, test[0]));
            }
            run.advance(self.gpu, cfg.steps);
            let (outcome, _) = self.outcomes(&run, cfg)?.remove(0);
            let (train, test) = match outcome {
                Outcome::Finished => {
                    let on = |split| self.evaluate(&run.net, split, run.eval_rows, metric);
                    (Some(on(&self.train)?[0]), Some(on(&self.eval)?[0]))
                }
                Outcome::Diverged { step } => {
                    // The CPU stops at the step that diverged, and probes nothing after it.
                    curve.retain(|&(at, _)| at <= step);
                    (None, None)
                }
            };
            rows.push(SeedResult {
                seed,
                outcome,
                train,
                test,
                seconds: t.elapsed().as_secs_f64(),
                curve,
            });
        }
        Ok(rows)
    }
}
