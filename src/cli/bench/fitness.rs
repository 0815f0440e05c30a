//! `evomal bench fitness`: candidate evaluations per second — a local search (when the
//! manifest's method has one) and a fitness run per candidate — on all CPU cores (one candidate
//! per worker, as the search runs them) and side by side on the GPU.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use evomal::backend::KernelKind;
use evomal::backend::jit;
use evomal::expr::LossExpr;
use evomal::gp;
use evomal::gpu::population::PopulationTrainer;
use evomal::gpu::{DeviceChoice, Gpu};
use evomal::manifest::{Manifest, SearchMethod};
use evomal::plugin::{PluginError, PluginModel, TaskPlugin};
use evomal::search::local::{LocalSearchConfig, local_search};
use evomal::train::{Task, TrainConfig, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::json;

/// Seconds spent in each phase, and the fitness values.
struct Timing {
    local_s: f64,
    fitness_s: f64,
    fitness: Vec<f64>,
}

impl Timing {
    fn rate(&self, n: usize) -> f64 {
        n as f64 / (self.local_s + self.fitness_s)
    }
}

/// What both devices evaluate.
struct Bench<'a> {
    task: &'a Task<'a>,
    losses: Vec<LossExpr>,
    seeds: Vec<u64>,
    local: Option<LocalSearchConfig>,
    fitness: TrainConfig,
    seed: u64,
}

/// Evaluates the search's initial population (its seed; `candidates` of them) with the
/// manifest's `[local_search]` and `[fitness]` settings on the CPU and, when a device is
/// chosen, on the GPU.
pub fn bench_fitness(
    manifest: &Path,
    candidates: Option<usize>,
    device: DeviceChoice,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let manifest = Manifest::load(manifest)?;
    let plugin = TaskPlugin::open(&manifest.plugin(), &manifest.data_json())?;
    let task = Task::new(&plugin);
    let mut gp_cfg = manifest.gp_config();
    gp_cfg.population = candidates.unwrap_or(gp_cfg.population);
    let seed = manifest.search.seed;
    let losses = gp::initial_population(&mut ChaCha8Rng::seed_from_u64(seed), &gp_cfg);
    let bench = Bench {
        task: &task,
        seeds: (0..losses.len() as u64).map(|i| seed ^ (i + 1)).collect(),
        losses,
        local: (manifest.search.method == SearchMethod::Evomal)
            .then(|| manifest.local_search_config()),
        fitness: manifest.fitness_config(),
        seed,
    };
    let make_model = || plugin.create_model(&manifest.task.model, &manifest.params_json());
    let mut model = make_model()?;
    let cpu = bench.on_cpu(&make_model)?;
    let threads = rayon::current_num_threads();
    let gpu = Gpu::choose(device)?;
    let on_gpu = match &gpu {
        None => None,
        Some(gpu) => Some(bench.on_gpu(gpu, &mut model)?),
    };
    let n = bench.losses.len();
    let agree = on_gpu.as_ref().map(|g| {
        cpu.fitness
            .iter()
            .zip(&g.fitness)
            .filter(|(a, b)| {
                (*a - *b).abs() <= 1e-3 * a.abs() || (a.is_infinite() && b.is_infinite())
            })
            .count()
    });
    let software = gpu.as_ref().is_some_and(Gpu::is_software);
    let timing = |t: &Timing| json!({"local_search_s": t.local_s, "fitness_s": t.fitness_s, "evals_per_s": t.rate(n)});
    if json {
        let v = json!({
            "task": plugin.name(), "model": manifest.task.model, "candidates": n,
            "meta_steps": bench.local.as_ref().map(|l| l.meta_steps),
            "fitness_steps": bench.fitness.steps, "batch": bench.fitness.batch,
            "n_params": model.n_params(),
            "cpu": {"threads": threads, "timing": timing(&cpu)},
            "gpu": on_gpu.as_ref().map(|g| json!({"device": gpu.as_ref().map(Gpu::describe),
                "software": software, "timing": timing(g)})),
            "agreeing_within_1e-3": agree,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} / {}: {n} candidate losses, each {}{} fitness steps of batch {}, {} parameters",
        plugin.name(),
        manifest.task.model,
        bench.local.as_ref().map_or(String::new(), |l| format!(
            "{} meta steps, then ",
            l.meta_steps
        )),
        bench.fitness.steps,
        bench.fitness.batch,
        model.n_params()
    )?;
    let line = |name: &str, t: &Timing| {
        format!(
            "  {name}: {:>8.2} evaluations/s (local search {:.2} s, fitness {:.2} s)",
            t.rate(n),
            t.local_s,
            t.fitness_s
        )
    };
    writeln!(out, "{}", line(&format!("cpu, {threads} threads"), &cpu))?;
    if let (Some(g), Some(gpu), Some(agree)) = (&on_gpu, &gpu, agree) {
        let caveat = if software {
            " — a software rasteriser, not a GPU figure"
        } else {
            ""
        };
        writeln!(
            out,
            "{}{caveat}",
            line(&format!("gpu, {}", gpu.describe()), g)
        )?;
        writeln!(
            out,
            "  {agree} of {n} fitness values agree within 1e-3 (the others train chaotically)"
        )?;
    }
    Ok(())
}

impl Bench<'_> {
    fn init(&self, model: &mut PluginModel) -> Result<Vec<f32>, PluginError> {
        let mut init = vec![0.0f32; model.n_params()];
        model.initial_params(self.seed, &mut init)?;
        Ok(init)
    }

    fn on_cpu(
        &self,
        make_model: &(dyn Fn() -> Result<PluginModel, PluginError> + Sync),
    ) -> anyhow::Result<Timing> {
        let task = self.task;
        let started = Instant::now();
        let learned: Vec<LossExpr> = match &self.local {
            None => self.losses.clone(),
            Some(cfg) => self
                .losses
                .par_iter()
                .zip(&self.seeds)
                .map_init(
                    make_model,
                    |model, (e, &seed)| -> anyhow::Result<LossExpr> {
                        let model = model.as_mut().map_err(|e| e.clone())?;
                        Ok(local_search(task, model, e, cfg, seed)?.loss)
                    },
                )
                .collect::<anyhow::Result<_>>()?,
        };
        let local_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let fitness = learned
            .par_iter()
            .map_init(make_model, |model, e| -> Result<f64, TrainError> {
                let model = model.as_mut().map_err(|e| TrainError::Plugin(e.clone()))?;
                let kernel = jit::compile(e, KernelKind::LossGrad)?;
                task.fitness(model, &kernel, e.weights(), &self.fitness, self.seed, 1)
            })
            .collect::<Result<_, _>>()?;
        Ok(Timing {
            local_s,
            fitness_s: started.elapsed().as_secs_f64(),
            fitness,
        })
    }

    /// The trainer's one-off setup (data upload, kernels) is not timed.
    fn on_gpu(&self, gpu: &Gpu, model: &mut PluginModel) -> anyhow::Result<Timing> {
        let n = self.losses.len();
        let trainer = PopulationTrainer::new(gpu, self.task, model, n, 1)
            .context("setting up the GPU trainer")?;
        let started = Instant::now();
        let learned: Vec<LossExpr> = match &self.local {
            None => self.losses.clone(),
            Some(cfg) => trainer
                .local_search(model, &self.losses, cfg, &self.seeds)?
                .into_iter()
                .map(|r| r.loss)
                .collect(),
        };
        let local_s = started.elapsed().as_secs_f64();
        let init = self.init(model)?;
        let started = Instant::now();
        let runs = trainer.train(
            &learned,
            &init,
            &self.fitness,
            self.seed,
            self.task.metric(),
        )?;
        Ok(Timing {
            local_s,
            fitness_s: started.elapsed().as_secs_f64(),
            fitness: runs.into_iter().map(|r| r.metric).collect(),
        })
    }
}
