//! `evomal bench fitness`: candidate fitness evaluations per second, on all CPU cores (one
//! candidate per worker, as the search runs them) and side by side on the GPU.

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
use evomal::manifest::Manifest;
use evomal::plugin::TaskPlugin;
use evomal::train::{Outcome, Task, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::json;

/// Scores `candidates` random initial-population losses (the search's seed) with the
/// manifest's `[fitness]` settings on the CPU and, when a device is chosen, on the GPU.
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
    let cfg = manifest.fitness_config();
    let make_model = || plugin.create_model(&manifest.task.model, &manifest.params_json());
    let mut model = make_model()?;
    let mut init = vec![0.0f32; model.n_params()];
    model.init(seed, &mut init)?;

    let started = Instant::now();
    let cpu: Vec<f64> = losses
        .par_iter()
        .map_init(make_model, |model, e| -> Result<f64, TrainError> {
            let model = model.as_mut().map_err(|e| TrainError::Plugin(e.clone()))?;
            let kernel = jit::compile(e, KernelKind::LossGrad)?;
            let mut params = init.clone();
            let outcome = task.train(
                model,
                &kernel,
                e.weights(),
                &cfg,
                &mut params,
                seed,
                &mut |_| {},
            )?;
            let f = task.evaluate(model, &params, 1, task.metric())?;
            Ok(if outcome == Outcome::Finished {
                f
            } else {
                f64::INFINITY
            })
        })
        .collect::<Result<_, _>>()?;
    let cpu_s = started.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();

    let gpu = Gpu::choose(device)?;
    let on_gpu = match &gpu {
        None => None,
        Some(gpu) => Some(gpu_rate(gpu, &task, &model, &losses, &init, &cfg, seed)?),
    };
    let n = losses.len() as f64;
    let agree = on_gpu.as_ref().map(|(_, fitness, _)| {
        cpu.iter()
            .zip(fitness)
            .filter(|(a, b)| {
                (*a - *b).abs() <= 1e-3 * a.abs() || (a.is_infinite() && b.is_infinite())
            })
            .count()
    });
    if json {
        let v = json!({
            "task": plugin.name(), "model": manifest.task.model, "candidates": losses.len(),
            "steps": cfg.steps, "batch": cfg.batch, "n_params": model.n_params(),
            "cpu": {"threads": threads, "seconds": cpu_s, "evals_per_s": n / cpu_s},
            "gpu": on_gpu.as_ref().map(|(name, _, s)| json!({"device": name, "seconds": s, "evals_per_s": n / s,
                    "software": gpu.as_ref().is_some_and(Gpu::is_software)})),
            "agreeing_within_1e-3": agree,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} / {}: {} candidate losses, {} fitness steps of batch {}, {} parameters",
        plugin.name(),
        manifest.task.model,
        losses.len(),
        cfg.steps,
        cfg.batch,
        model.n_params()
    )?;
    writeln!(
        out,
        "  cpu, {threads} threads: {:>8.2} evaluations/s ({cpu_s:.2} s)",
        n / cpu_s
    )?;
    if let (Some((name, _, s)), Some(agree)) = (&on_gpu, agree) {
        let caveat = if gpu.as_ref().is_some_and(Gpu::is_software) {
            " — a software rasteriser, not a GPU figure"
        } else {
            ""
        };
        writeln!(
            out,
            "  gpu, {name}: {:>8.2} evaluations/s ({s:.2} s){caveat}",
            n / s
        )?;
        writeln!(
            out,
            "  {agree} of {} fitness values agree within 1e-3 (the others train chaotically)",
            losses.len()
        )?;
    }
    Ok(())
}

/// Seconds to score all `losses` on the GPU (the trainer's one-off setup excluded), with the
/// fitness values and the device's name.
fn gpu_rate(
    gpu: &Gpu,
    task: &Task<'_>,
    model: &evomal::plugin::PluginModel,
    losses: &[LossExpr],
    init: &[f32],
    cfg: &evomal::train::TrainConfig,
    seed: u64,
) -> anyhow::Result<(String, Vec<f64>, f64)> {
    let trainer = PopulationTrainer::new(gpu, task, model, losses.len(), 1)
        .context("setting up the GPU trainer")?;
    let started = Instant::now();
    let runs = trainer.train(losses, init, cfg, seed, task.metric())?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((
        gpu.describe(),
        runs.into_iter().map(|r| r.metric).collect(),
        seconds,
    ))
}
