//! `evomal bench fitness`: candidate evaluations per second — a local search (when the
//! manifest's method has one) and a fitness run per candidate — on all CPU cores (one candidate
//! per worker, as the search runs them) and side by side on the GPU.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
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

use super::projection::{Report, Steps, Timing};

/// What both devices evaluate.
#[derive(Clone)]
struct Bench<'a> {
    task: &'a Task<'a>,
    losses: Vec<LossExpr>,
    seeds: Vec<u64>,
    local: Option<LocalSearchConfig>,
    fitness: TrainConfig,
    seed: u64,
}

#[derive(Args)]
pub struct FitnessArgs {
    manifest: PathBuf,
    /// Candidates (default: the manifest's population).
    #[arg(long)]
    candidates: Option<usize>,
    /// `gpu` takes any adapter (software ones too); `cpu` measures the CPU only.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Gpu)]
    device: DeviceChoice,
    /// Time the GPU alone (with `--device gpu|auto`).
    #[arg(long)]
    gpu_only: bool,
    /// Time 1/125 and 3/125 of the manifest's meta and fitness steps instead of all of them,
    /// and project a generation and the whole search at the manifest's settings (for models
    /// whose full evaluation takes hours).
    #[arg(long)]
    project: bool,
    #[arg(long)]
    json: bool,
}

/// Evaluates the search's initial population (its seed; `candidates` of them) with the
/// manifest's `[local_search]` and `[fitness]` settings on the CPU and, when a device is
/// chosen, on the GPU.
pub fn bench_fitness(args: &FitnessArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    let plugin = TaskPlugin::open(&manifest.plugin(), &manifest.data_json())?;
    let task = Task::new(&plugin);
    let mut gp_cfg = manifest.gp_config();
    gp_cfg.population = args.candidates.unwrap_or(gp_cfg.population);
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
    let full = bench.steps();
    let settings = if args.project {
        Steps::short(full).to_vec()
    } else {
        vec![full]
    };
    let make_model = || plugin.create_model(&manifest.task.model, &manifest.params_json());
    let mut model = make_model()?;
    let gpu = Gpu::choose(args.device)?;
    if args.gpu_only && gpu.is_none() {
        anyhow::bail!("--gpu-only needs a GPU: pass --device gpu, or auto with an adapter");
    }
    // Set up once, as a search does (data upload, kernels, the local search's spare model
    // instances): not timed.
    let trainer = match &gpu {
        Some(gpu) => Some(
            PopulationTrainer::new(gpu, &task, &model, bench.losses.len(), 1)
                .context("setting up the GPU trainer")?,
        ),
        None => None,
    };
    let mut cpu = Vec::new();
    let mut on_gpu = Vec::new();
    for &steps in &settings {
        let b = bench.with_steps(steps);
        if !args.gpu_only {
            cpu.push((steps, b.on_cpu(&make_model)?));
        }
        if let Some(trainer) = &trainer {
            // A device's first run pays once for what later runs reuse (the driver compiles
            // and caches pipelines, the trainer makes its spare model instances): that would
            // bend the line a projection fits.
            if args.project && on_gpu.is_empty() {
                b.on_gpu(trainer, &mut model)?;
            }
            on_gpu.push((steps, b.on_gpu(trainer, &mut model)?));
        }
    }
    let report = Report {
        n: bench.losses.len(),
        threads: rayon::current_num_threads(),
        full,
        generations: gp_cfg.generations,
        gpu: gpu.as_ref(),
        cpu,
        on_gpu,
    };
    let intro = format!(
        "{} / {}: {} candidate losses, each {}{} fitness steps of batch {}, {} parameters",
        plugin.name(),
        manifest.task.model,
        report.n,
        bench.local.as_ref().map_or(String::new(), |l| format!(
            "{} meta steps, then ",
            l.meta_steps
        )),
        bench.fitness.steps,
        bench.fitness.batch,
        model.n_params()
    );
    if args.json {
        let mut v = report.json();
        v["task"] = json!(plugin.name());
        v["model"] = json!(manifest.task.model);
        v["batch"] = json!(bench.fitness.batch);
        v["n_params"] = json!(model.n_params());
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(out, "{intro}")?;
        report.text(out)?;
    }
    Ok(())
}

impl Bench<'_> {
    fn steps(&self) -> Steps {
        Steps {
            meta: self.local.as_ref().map_or(0, |l| l.meta_steps),
            fitness: self.fitness.steps,
        }
    }

    /// This bench with `steps` in place of the manifest's.
    fn with_steps(&self, steps: Steps) -> Self {
        let mut b = self.clone();
        if let Some(l) = &mut b.local {
            l.meta_steps = steps.meta;
        }
        b.fitness.steps = steps.fitness;
        b
    }

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
            meta_host: None,
        })
    }

    fn on_gpu(
        &self,
        trainer: &PopulationTrainer<'_>,
        model: &mut PluginModel,
    ) -> anyhow::Result<Timing> {
        trainer.take_meta_host_time();
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
        let meta_host = Some(trainer.take_meta_host_time()).filter(|h| h.steps > 0);
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
            meta_host,
        })
    }
}
