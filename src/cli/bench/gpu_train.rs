//! `evomal bench train --device gpu`: training steps per second of a manifest's model in the
//! GPU population trainer, one copy alone and many side by side, with the device memory each
//! copy takes.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use evomal::gpu::Gpu;
use evomal::gpu::population::{KernelTime, PopulationTrainer};
use evomal::manifest::Manifest;
use evomal::plugin::TaskPlugin;
use evomal::train::{Task, TrainConfig};
use serde_json::json;

/// Times `steps` steps of `copies` models trained with the task's baseline loss: the difference
/// between a run of `warm + steps` steps and one of `warm`, so the final evaluation and the
/// set-up cancel out.
fn steps_per_second(
    trainer: &PopulationTrainer<'_>,
    task: &Task<'_>,
    init: &[f32],
    cfg: &TrainConfig,
    copies: usize,
    steps: usize,
) -> anyhow::Result<f64> {
    let losses = vec![task.kind.baseline(); copies];
    let warm = (steps / 5).clamp(2, 20);
    let run = |steps: usize| -> anyhow::Result<f64> {
        let cfg = TrainConfig {
            steps,
            ..cfg.clone()
        };
        let t = Instant::now();
        trainer.train(&losses, init, &cfg, 1, task.metric())?;
        Ok(t.elapsed().as_secs_f64())
    };
    run(warm)?;
    let (short, long) = (run(warm)?, run(warm + steps)?);
    Ok(steps as f64 / (long - short).max(f64::MIN_POSITIVE))
}

/// What `bench train --device gpu` runs.
pub struct Runs {
    /// Steps timed per measurement.
    pub steps: usize,
    /// Models in the side-by-side measurement.
    pub side_by_side: usize,
    /// Whether to time each kernel in a step of those models.
    pub profile: bool,
}

pub fn bench_train_gpu(
    gpu: &Gpu,
    manifest: &Path,
    runs: Runs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let Runs {
        steps,
        side_by_side,
        profile,
    } = runs;
    let manifest = Manifest::load(manifest)?;
    let plugin = TaskPlugin::open(&manifest.plugin(), &manifest.data_json())?;
    let task = Task::new(&plugin);
    let mut model = plugin.create_model(&manifest.task.model, &manifest.params_json())?;
    let cfg = manifest.testing_config();
    let trainer = PopulationTrainer::new(gpu, &task, &model, side_by_side.max(1), 1)?;
    let mut init = vec![0.0f32; model.n_params()];
    model.initial_params(0, &mut init)?;
    let batch = cfg.batch.min(task.split_size(0));
    let one = steps_per_second(&trainer, &task, &init, &cfg, 1, steps)?;
    let many = steps_per_second(&trainer, &task, &init, &cfg, side_by_side, steps)?;
    let together = trainer.side_by_side(&cfg);
    // A step of as many models as the side-by-side measurement trained in one dispatch.
    let profiled = side_by_side.clamp(1, together);
    let kernels = if profile {
        let losses = vec![task.kind.baseline(); profiled];
        let cfg = TrainConfig {
            steps: 3,
            ..cfg.clone()
        };
        trainer.profile_step(&losses, &init, &cfg)?
    } else {
        Vec::new()
    };
    let mut report = json!({
        "task": plugin.name(),
        "model": manifest.task.model,
        "n_params": model.n_params(),
        "batch": batch,
        "device": gpu.describe(),
        "software": gpu.is_software(),
        "steps_per_s": one,
        "side_by_side": side_by_side,
        "together": together,
        "model_steps_per_s": many * side_by_side as f64,
        "bytes_per_candidate": trainer.bytes_per_candidate(&cfg),
        "data_bytes": trainer.data_bytes(),
        "device_memory_bytes": gpu.memory(),
        "tiles": trainer.tuning().tiles.map(|t| t.to_string()),
        "min_chunk": trainer.tuning().min_chunk,
    });
    if profile {
        report["profile"] = kernels
            .iter()
            .map(|k| json!({"kernel": k.kernel, "dispatches": k.dispatches, "seconds": k.seconds}))
            .collect();
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    let caveat = if gpu.is_software() {
        " — a software rasteriser: not a GPU figure"
    } else {
        ""
    };
    let memory = gpu
        .memory()
        .map(|b| format!(", {:.1} GiB", b as f64 / (1u64 << 30) as f64))
        .unwrap_or_default();
    writeln!(
        out,
        "{} / {}: {} parameters, batch {batch}, {steps} timed steps, on {}{memory}{caveat}; \
         {:.1} MiB of data on the device",
        plugin.name(),
        manifest.task.model,
        model.n_params(),
        gpu.describe(),
        trainer.data_bytes() as f64 / (1 << 20) as f64
    )?;
    writeln!(out, "  one model:       {one:>10.3} steps/s")?;
    writeln!(
        out,
        "  {side_by_side} side by side: {:>10.3} model-steps/s ({together} per dispatch; {:.1} MiB of device memory each)",
        many * side_by_side as f64,
        trainer.bytes_per_candidate(&cfg) as f64 / (1 << 20) as f64
    )?;
    if profile {
        write_profile(&kernels, profiled, out)?;
    }
    Ok(())
}

/// The kernels' times in one step, most expensive first, with their shares.
fn write_profile(
    kernels: &[KernelTime],
    models: usize,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let total: f64 = kernels.iter().map(|k| k.seconds).sum();
    let dispatches: usize = kernels.iter().map(|k| k.dispatches).sum();
    writeln!(
        out,
        "  one step of {models} side by side, by kernel (each dispatch timed in a pass of its own):"
    )?;
    for k in kernels {
        writeln!(
            out,
            "    {:<28} {:>5} dispatches {:>10.3} ms {:>5.1} %",
            k.kernel,
            k.dispatches,
            k.seconds * 1e3,
            100.0 * k.seconds / total.max(f64::MIN_POSITIVE)
        )?;
    }
    writeln!(
        out,
        "    {:<28} {dispatches:>5} dispatches {:>10.3} ms",
        "all",
        total * 1e3
    )
}
