//! The EvoMAL generation loop: GP over loss trees, each new candidate screened (canonical-form
//! cache, rejection protocol, gradient-equivalence cache), tuned by the local search, and
//! scored by partial training.
//!
//! Determinism: every candidate draws from a seed derived from (search seed, generation, index),
//! and the caches consult only earlier generations plus earlier members of the same generation
//! in index order, so a seed fixes the whole search.

use std::collections::HashMap;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::backend::KernelKind;
use crate::backend::jit;
use crate::expr::{LossExpr, structural_hash};
use crate::gp::{self, GpConfig};
use crate::gpu::population::PopulationTrainer;
use crate::plugin::{PluginError, PluginModel};
use crate::search::filters::{GradientCache, RejectionConfig, rejection_protocol};
use crate::search::local::{LocalSearchConfig, LocalSearchError, local_search};
use crate::train::{Task, TrainConfig, TrainError};

mod checkpoint;

/// Everything the search needs besides the task.
#[derive(Clone, Debug)]
pub struct SearchPlan {
    pub gp: GpConfig,
    /// Whether candidates' weights are tuned (EvoMAL) or stay 1 (GP-LFL).
    pub local_search: Option<LocalSearchConfig>,
    pub fitness: TrainConfig,
    pub rejection: Option<RejectionConfig>,
    /// Absolute tolerance of the gradient-equivalence check, `None` to skip it.
    pub gradient_tolerance: Option<f32>,
    pub seed: u64,
}

/// How a candidate got its fitness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Trained and scored.
    Evaluated,
    /// Its canonical form was evaluated before.
    CanonicalHit,
    /// Its gradient fingerprint matched an evaluated loss.
    GradientHit,
    /// Rejected by the rejection protocol (fitness +inf).
    Rejected,
    /// Its training or local search went non-finite (fitness +inf).
    Diverged,
}

/// One generation's summary.
#[derive(Clone, Debug)]
pub struct Generation {
    pub index: usize,
    pub best: f64,
    pub median: f64,
    pub counts: HashMap<&'static str, usize>,
    pub seconds: f64,
}

/// A distinct candidate (by canonical form) and what its evaluation found.
#[derive(Clone, Debug)]
pub struct Evaluated {
    /// +inf when rejected or diverged.
    pub fitness: f64,
    /// With learned weights.
    pub loss: LossExpr,
    /// The generation that evaluated it first.
    pub generation: usize,
    pub verdict: Verdict,
}

/// The best candidate found.
#[derive(Clone, Debug)]
pub struct Best {
    /// With learned weights.
    pub loss: LossExpr,
    pub fitness: f64,
    pub generation: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    LocalSearch(#[from] LocalSearchError),
    /// A checkpoint that cannot be read back.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Saving a checkpoint failed (the message names the file).
    #[error("{0}")]
    Io(String),
}

struct Scored {
    fitness: f64,
    learned: LossExpr,
    verdict: Verdict,
}

impl Scored {
    /// A candidate that is not trained for fitness (rejected, or diverged in the local search).
    fn unscored(candidate: LossExpr, verdict: Verdict) -> Scored {
        Scored {
            fitness: f64::INFINITY,
            learned: candidate,
            verdict,
        }
    }

    /// A candidate whose fitness run ended with `fitness` (+inf: it diverged).
    fn trained(learned: LossExpr, fitness: f64) -> Scored {
        let verdict = if fitness.is_finite() {
            Verdict::Evaluated
        } else {
            Verdict::Diverged
        };
        Scored {
            fitness,
            learned,
            verdict,
        }
    }
}

/// A candidate after screening: scored already, or waiting for its local search (on the GPU,
/// with its seed) or its fitness run.
enum Pending {
    Scored(Scored),
    LocalSearch(LossExpr, u64),
    Fitness(LossExpr),
}

/// The search state between generations: everything a checkpoint holds.
pub struct Search<'t, 'p> {
    task: &'t Task<'p>,
    plan: SearchPlan,
    /// The next generation to evaluate, and its population.
    next: usize,
    population: Vec<LossExpr>,
    rng: ChaCha8Rng,
    canonical: HashMap<u64, Evaluated>,
    gradients: GradientCache,
    /// Scores each generation's surviving candidates side by side on the GPU, when set.
    gpu: Option<&'t PopulationTrainer<'t>>,
    pub best: Option<Best>,
    pub generations: Vec<Generation>,
}

impl<'t, 'p> Search<'t, 'p> {
    pub fn new(task: &'t Task<'p>, plan: SearchPlan) -> Search<'t, 'p> {
        let tol = plan.gradient_tolerance.unwrap_or(1e-2);
        let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
        let population = gp::initial_population(&mut rng, &plan.gp);
        Search {
            task,
            plan,
            next: 0,
            population,
            rng,
            canonical: HashMap::new(),
            gradients: GradientCache::new(tol),
            gpu: None,
            best: None,
            generations: Vec::new(),
        }
    }

    /// Runs each generation's local searches and fitness runs on the GPU, all candidates at
    /// once, instead of one per worker thread (the workers still screen). Meta-gradients and
    /// fitness agree with the CPU's within f32 rounding.
    pub fn with_gpu(mut self, trainer: &'t PopulationTrainer<'t>) -> Search<'t, 'p> {
        self.gpu = Some(trainer);
        self
    }

    pub fn plan(&self) -> &SearchPlan {
        &self.plan
    }

    /// Whether every generation has been evaluated.
    pub fn finished(&self) -> bool {
        self.next >= self.plan.gp.generations
    }

    /// Runs the remaining generations on the current rayon pool, each worker with a model from
    /// `make_model`. `on_candidate(generation, index)` sees each scored candidate (from any
    /// thread); `on_generation` each finished generation, when the state is a consistent
    /// checkpoint (see [`Search::checkpoint`]).
    pub fn run(
        &mut self,
        make_model: &(dyn Fn() -> Result<PluginModel, PluginError> + Sync),
        on_candidate: &(dyn Fn(usize, usize) + Sync),
        on_generation: &mut dyn FnMut(&Search<'_, '_>) -> Result<(), SearchError>,
    ) -> Result<(), SearchError> {
        while !self.finished() {
            let population = std::mem::take(&mut self.population);
            let fitness =
                self.evaluate_generation(make_model, self.next, &population, on_candidate)?;
            self.next += 1;
            self.population = if self.finished() {
                population
            } else {
                gp::next_generation(&mut self.rng, &self.plan.gp, &population, &fitness)
            };
            on_generation(self)?;
        }
        Ok(())
    }

    /// Scores a generation in three phases, so the result does not depend on the thread count:
    /// canonical-cache hits and duplicates first (in order), then the new candidates in
    /// parallel against the caches as they stood, then the caches are updated in order.
    fn evaluate_generation(
        &mut self,
        make_model: &(dyn Fn() -> Result<PluginModel, PluginError> + Sync),
        generation: usize,
        population: &[LossExpr],
        on_candidate: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<f64>, SearchError> {
        let started = Instant::now();
        let keys: Vec<u64> = population
            .iter()
            .map(|c| structural_hash(&c.unweighted().canonical()))
            .collect();
        let mut first_of: HashMap<u64, usize> = HashMap::new();
        let mut fresh = Vec::new();
        for (i, &key) in keys.iter().enumerate() {
            if !self.canonical.contains_key(&key) && !first_of.contains_key(&key) {
                first_of.insert(key, i);
                fresh.push(i);
            }
        }
        let this = &*self;
        let mut scored: Vec<(usize, Pending, Option<Vec<f32>>)> = fresh
            .par_iter()
            .map_init(make_model, |model, &i| {
                let model = model
                    .as_mut()
                    .map_err(|e| SearchError::Train(TrainError::Plugin(e.clone())))?;
                let seed = candidate_seed(this.plan.seed, generation, i);
                let (p, fingerprint) = this.score(model, &population[i].unweighted(), seed)?;
                if matches!(p, Pending::Scored(_)) {
                    on_candidate(generation, i);
                }
                Ok((i, p, fingerprint))
            })
            .collect::<Result<_, SearchError>>()?;
        if let Some(trainer) = self.gpu {
            let pending: Vec<usize> = scored
                .iter()
                .filter(|(_, p, _)| !matches!(p, Pending::Scored(_)))
                .map(|(i, _, _)| *i)
                .collect();
            self.train_on_gpu(trainer, make_model, &mut scored)?;
            pending.iter().for_each(|&i| on_candidate(generation, i));
        }
        let scored: Vec<(usize, Scored, Option<Vec<f32>>)> = scored
            .into_iter()
            .map(|(i, p, fingerprint)| match p {
                Pending::Scored(s) => (i, s, fingerprint),
                _ => unreachable!("every local search and fitness run has been done"),
            })
            .collect();
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for (i, s, fingerprint) in scored {
            if let Some(norms) = fingerprint {
                self.gradients.insert(norms, s.fitness);
            }
            *counts.entry(verdict_name(s.verdict)).or_default() += 1;
            let evaluated = Evaluated {
                fitness: s.fitness,
                loss: s.learned,
                generation,
                verdict: s.verdict,
            };
            self.canonical.insert(keys[i], evaluated);
        }
        let mut fitness = Vec::with_capacity(population.len());
        for (i, key) in keys.iter().enumerate() {
            let Evaluated {
                fitness: f,
                loss: learned,
                ..
            } = self.canonical[key].clone();
            if !fresh.contains(&i) {
                *counts
                    .entry(verdict_name(Verdict::CanonicalHit))
                    .or_default() += 1;
                on_candidate(generation, i);
            }
            if f.is_finite() && self.best.as_ref().is_none_or(|b| f < b.fitness) {
                self.best = Some(Best {
                    loss: learned,
                    fitness: f,
                    generation,
                });
            }
            fitness.push(f);
        }
        let mut sorted: Vec<f64> = fitness
            .iter()
            .map(|&f| if f.is_finite() { f } else { f64::INFINITY })
            .collect();
        sorted.sort_by(f64::total_cmp);
        self.generations.push(Generation {
            index: generation,
            best: sorted[0],
            median: sorted[sorted.len() / 2],
            counts,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(fitness)
    }

    /// The fitness runs still pending in `scored`, trained together on the GPU.
    fn train_on_gpu(
        &self,
        trainer: &PopulationTrainer<'_>,
        make_model: &(dyn Fn() -> Result<PluginModel, PluginError> + Sync),
        scored: &mut [(usize, Pending, Option<Vec<f32>>)],
    ) -> Result<(), SearchError> {
        let mut model = make_model().map_err(TrainError::from)?;
        self.tune_on_gpu(trainer, &mut model, scored)?;
        let losses: Vec<LossExpr> = scored
            .iter()
            .filter_map(|(_, p, _)| match p {
                Pending::Fitness(l) => Some(l.clone()),
                _ => None,
            })
            .collect();
        if losses.is_empty() {
            return Ok(());
        }
        let mut init = vec![0.0f32; model.n_params()];
        model
            .initial_params(self.plan.seed, &mut init)
            .map_err(TrainError::from)?;
        let runs = trainer
            .train(
                &losses,
                &init,
                &self.plan.fitness,
                self.plan.seed,
                self.task.metric(),
            )
            .map_err(TrainError::from)?;
        let mut runs = runs.into_iter();
        for (_, p, _) in scored.iter_mut() {
            if let Pending::Fitness(learned) = p {
                let run = runs.next().expect("one run per pending candidate");
                *p = Pending::Scored(Scored::trained(learned.clone(), run.metric));
            }
        }
        Ok(())
    }

    /// The local searches pending in `scored`, run together on the GPU; each becomes a fitness
    /// run, or a diverged candidate.
    fn tune_on_gpu(
        &self,
        trainer: &PopulationTrainer<'_>,
        model: &mut PluginModel,
        scored: &mut [(usize, Pending, Option<Vec<f32>>)],
    ) -> Result<(), SearchError> {
        let (Some(cfg), (losses, seeds)) = (
            &self.plan.local_search,
            scored
                .iter()
                .filter_map(|(_, p, _)| match p {
                    Pending::LocalSearch(l, seed) => Some((l.clone(), *seed)),
                    _ => None,
                })
                .unzip::<_, _, Vec<LossExpr>, Vec<u64>>(),
        ) else {
            return Ok(());
        };
        let mut results = trainer
            .local_search(model, &losses, cfg, &seeds)?
            .into_iter();
        for (_, p, _) in scored.iter_mut() {
            if let Pending::LocalSearch(candidate, _) = p {
                let res = results.next().expect("one result per pending candidate");
                *p = if res.diverged {
                    Pending::Scored(Scored::unscored(candidate.clone(), Verdict::Diverged))
                } else {
                    Pending::Fitness(res.loss)
                };
            }
        }
        Ok(())
    }

    /// Screens, tunes and scores one new (unweighted) candidate — with a GPU, only screens it
    /// and leaves the rest pending; also returns its gradient fingerprint when it was computed
    /// and found no match, for the caller to store.
    fn score(
        &self,
        model: &mut PluginModel,
        candidate: &LossExpr,
        seed: u64,
    ) -> Result<(Pending, Option<Vec<f32>>), SearchError> {
        let unscored = |verdict| Scored::unscored(candidate.clone(), verdict);
        // Beyond this size the local search's kernel would take minutes to compile; such trees
        // only arise from a permissive height limit and are never good losses.
        if candidate.len() > jit::max_nodes(KernelKind::Full) {
            return Ok((Pending::Scored(unscored(Verdict::Rejected)), None));
        }
        let kernel = jit::compile(candidate, KernelKind::LossGrad).map_err(TrainError::from)?;
        let mut fingerprint = None;
        if let Some(cfg) = &self.plan.rejection {
            let r = rejection_protocol(
                self.task,
                model,
                &kernel,
                candidate.weights(),
                cfg,
                self.plan.seed,
            )?;
            if !r.accepted() {
                return Ok((Pending::Scored(unscored(Verdict::Rejected)), None));
            }
            if self.plan.gradient_tolerance.is_some() {
                if let Some(f) = self.gradients.get(&r.grad_norms) {
                    let hit = Scored {
                        fitness: f,
                        learned: candidate.clone(),
                        verdict: Verdict::GradientHit,
                    };
                    return Ok((Pending::Scored(hit), None));
                }
                fingerprint = Some(r.grad_norms);
            }
        }
        let learned = match &self.plan.local_search {
            // The GPU tunes a generation's candidates together (see `tune_on_gpu`).
            Some(_) if self.gpu.is_some() => {
                return Ok((Pending::LocalSearch(candidate.clone(), seed), fingerprint));
            }
            Some(cfg) => {
                let res = local_search(self.task, model, candidate, cfg, seed)?;
                if res.diverged {
                    return Ok((Pending::Scored(unscored(Verdict::Diverged)), fingerprint));
                }
                res.loss
            }
            None => candidate.clone(),
        };
        if self.gpu.is_some() {
            return Ok((Pending::Fitness(learned), fingerprint));
        }
        let fitness = self.fitness(model, &learned, &kernel)?;
        let scored = Scored::trained(learned, fitness);
        Ok((Pending::Scored(scored), fingerprint))
    }

    /// Validation metric after partial training from the plan's fixed seed; +inf on divergence.
    pub fn fitness(
        &self,
        model: &mut PluginModel,
        loss: &LossExpr,
        kernel: &jit::JitKernel,
    ) -> Result<f64, TrainError> {
        let (cfg, seed) = (&self.plan.fitness, self.plan.seed);
        self.task
            .fitness(model, kernel, loss.weights(), cfg, seed, 1)
    }
}

impl Search<'_, '_> {
    /// Every distinct candidate evaluated so far, best first (ties by generation, then text).
    pub fn hall_of_fame(&self) -> Vec<&Evaluated> {
        let mut all: Vec<(&Evaluated, String)> = self
            .canonical
            .values()
            .map(|e| (e, e.loss.to_string()))
            .collect();
        all.sort_by(|(a, a_text), (b, b_text)| {
            a.fitness
                .total_cmp(&b.fitness)
                .then(a.generation.cmp(&b.generation))
                .then_with(|| a_text.cmp(b_text))
        });
        all.into_iter().map(|(e, _)| e).collect()
    }
}

/// The counter a verdict increments in [`Generation::counts`].
pub fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Evaluated => "evaluated",
        Verdict::CanonicalHit => "canonical_hits",
        Verdict::GradientHit => "gradient_hits",
        Verdict::Rejected => "rejected",
        Verdict::Diverged => "diverged",
    }
}

/// A candidate's own seed, independent of evaluation order.
fn candidate_seed(seed: u64, generation: usize, index: usize) -> u64 {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for v in [generation as u64, index as u64] {
        h = (h ^ v).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 31;
    }
    h
}
