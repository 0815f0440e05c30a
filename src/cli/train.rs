//! `evomal train MANIFEST --loss EXPR|mse|ce`: meta-test one loss on a task.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use evomal::backend::jit::{self, KernelKind};
use evomal::manifest::Manifest;
use evomal::plugin::TaskPlugin;
use evomal::train::{Outcome, Task};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::{parse_expr, write_atomic};

/// The baselines, as loss expressions run through the same JIT path as any other loss.
pub const MSE: &str = "square(sub(y, yhat))";
pub const CE: &str = "mul(-1, mul(y, log(yhat)))";

#[derive(Args)]
pub struct TrainArgs {
    /// The experiment manifest (TOML).
    manifest: PathBuf,
    /// The loss: an expression, or `mse` / `ce` for the baselines.
    #[arg(long)]
    loss: String,
    /// Seeds to train from (default: the manifest's `[testing] seeds`).
    #[arg(long, value_delimiter = ',')]
    seeds: Option<Vec<u64>>,
    /// Where to write the JSON results (default: `<output.dir>/train-<manifest name>.json`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: TrainArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    let plugin = TaskPlugin::open(&manifest.plugin(), &manifest.data_json())?;
    let task = Task::new(&plugin);
    let loss_text = match args.loss.as_str() {
        "mse" => MSE,
        "ce" => CE,
        other => other,
    };
    let loss = parse_expr(loss_text)?;
    let kernel = jit::compile(&loss, KernelKind::LossGrad).context("compiling the loss")?;
    let cfg = manifest.testing_config();
    let seeds = args.seeds.unwrap_or_else(|| manifest.testing.seeds.clone());
    let mut model = plugin.create_model(&manifest.task.model, &manifest.params_json())?;
    let metric = task.metric();

    let bar = progress(seeds.len() * cfg.steps, args.quiet);
    let mut rows = Vec::new();
    let started = Instant::now();
    for &seed in &seeds {
        let mut params = vec![0.0f32; model.n_params()];
        model.init(seed, &mut params)?;
        let t = Instant::now();
        let mut on_step = |step: usize, _loss: f32| {
            if step % 100 == 99 {
                bar.inc(100);
            }
        };
        let outcome = task.train(
            &mut model,
            &kernel,
            loss.weights(),
            &cfg,
            &mut params,
            seed,
            &mut on_step,
        )?;
        let seconds = t.elapsed().as_secs_f64();
        bar.set_position(rows.len() as u64 * cfg.steps as u64 + cfg.steps as u64);
        let (train, test) = match outcome {
            Outcome::Finished => (
                Some(task.evaluate(&mut model, &params, 0, metric)?),
                Some(task.evaluate(&mut model, &params, 2, metric)?),
            ),
            Outcome::Diverged { .. } => (None, None),
        };
        rows.push(SeedResult {
            seed,
            outcome,
            train,
            test,
            seconds,
        });
    }
    bar.finish_and_clear();

    writeln!(
        out,
        "{} / {} with loss {loss}",
        plugin.name(),
        manifest.task.model
    )?;
    writeln!(
        out,
        "{} steps, batch {}, lr {}; metric {}",
        cfg.steps,
        cfg.batch,
        cfg.lr,
        metric.name()
    )?;
    writeln!(
        out,
        "{:>6} {:>12} {:>12} {:>9}",
        "seed", "train", "test", "seconds"
    )?;
    for r in &rows {
        let cell = |v: Option<f64>| v.map_or("diverged".to_string(), |v| format!("{v:.5}"));
        writeln!(
            out,
            "{:>6} {:>12} {:>12} {:>9.2}",
            r.seed,
            cell(r.train),
            cell(r.test),
            r.seconds
        )?;
    }
    let train_stats = mean_std(rows.iter().filter_map(|r| r.train));
    let test_stats = mean_std(rows.iter().filter_map(|r| r.test));
    let fmt =
        |s: Option<(f64, f64)>| s.map_or("n/a".to_string(), |(m, sd)| format!("{m:.5} ± {sd:.5}"));
    writeln!(
        out,
        "mean ± std: train {}, test {}",
        fmt(train_stats),
        fmt(test_stats)
    )?;

    let path = args.out.unwrap_or_else(|| {
        let stem = args
            .manifest
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        manifest.output.dir.join(format!("train-{stem}.json"))
    });
    let stats = |s: Option<(f64, f64)>| s.map(|(m, sd)| json!({"mean": m, "std": sd}));
    let report = json!({
        "manifest": args.manifest.display().to_string(),
        "task": plugin.name(),
        "model": manifest.task.model,
        "loss": loss.to_string(),
        "metric": metric.name(),
        "config": {"steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr, "optimizer": format!("{:?}", cfg.optimizer),
                   "milestones": cfg.milestones, "gamma": cfg.gamma},
        "seeds": rows.iter().map(|r| json!({
            "seed": r.seed,
            "outcome": match r.outcome { Outcome::Finished => "finished".to_string(), Outcome::Diverged { step } => format!("diverged at step {step}") },
            "train": r.train, "test": r.test, "seconds": r.seconds,
        })).collect::<Vec<_>>(),
        "train": stats(train_stats),
        "test": stats(test_stats),
        "seconds": started.elapsed().as_secs_f64(),
    });
    write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    writeln!(out, "results: {}", path.display())?;
    Ok(())
}

struct SeedResult {
    seed: u64,
    outcome: Outcome,
    train: Option<f64>,
    test: Option<f64>,
    seconds: f64,
}

/// Mean and population standard deviation (the papers' convention), `None` when empty.
fn mean_std(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    Some((mean, var.sqrt()))
}

fn progress(total: usize, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} steps {elapsed} (eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}
