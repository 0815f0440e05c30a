//! `evomal train MANIFEST --loss EXPR|mse|ce`: meta-test one loss on a task.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use evomal::gpu::population::PopulationTrainer;
use evomal::gpu::{DeviceChoice, Gpu};
use evomal::manifest::{Manifest, decimal_f64};
use evomal::plugin::TaskPlugin;
use evomal::search::learned::LearnedLoss;
use evomal::train::meta_test::{SeedResult, mean_std, meta_test};
use evomal::train::objective::TaskKind;
use evomal::train::optim::OptimizerConfig;
use evomal::train::{Metric, Outcome, Task, TrainConfig, TrainError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::write_atomic;

#[derive(Args)]
pub struct TrainArgs {
    /// The experiment manifest (TOML).
    manifest: PathBuf,
    /// The loss: an expression, `@FILE` for the one in a file (a run's `best_loss.txt`), a
    /// results directory of `evomal run` (its best loss), or `mse` / `ce` for the baselines.
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
    /// Where to train: `auto` (default) a hardware GPU when one is found and it can run the
    /// model and loss, else the CPU; `gpu` any adapter (an error when it cannot); `cpu`.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

pub fn run(args: TrainArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    let plugin = TaskPlugin::open(&manifest.plugin(), &manifest.data_json())?;
    let task = Task::new(&plugin);
    super::note_full_batches(&task, &[("testing.batch", manifest.testing.batch)]);
    if args.loss == "ce" && task.kind == TaskKind::Regression {
        anyhow::bail!(
            "`--loss ce` is the classification baseline, but `{}` is a regression task: use `--loss mse`",
            plugin.name()
        );
    }
    let loss = super::learned_source(&args.loss)?;
    if !loss.uses_yhat() {
        anyhow::bail!(
            "the loss `{}` does not use yhat: its gradient is zero, so training would not move the model",
            evomal::expr::abbreviate(&loss.describe())
        );
    }
    let cfg = manifest.testing_config();
    let seeds = args.seeds.unwrap_or_else(|| manifest.testing.seeds.clone());
    let mut model = plugin.create_model(&manifest.task.model, &manifest.params_json())?;

    let started = Instant::now();
    let bar = progress(seeds.len() * cfg.steps, args.quiet);
    let gpu = Gpu::choose(args.device)?;
    let trainer = match (&gpu, &loss) {
        (None, _) => None,
        (Some(gpu), LearnedLoss::Expr(_)) => match PopulationTrainer::new(gpu, &task, &model, 1, 2)
        {
            Ok(t) => Some(t),
            Err(TrainError::Gpu(e)) if args.device == DeviceChoice::Auto => {
                eprintln!("note: training on the CPU: {e}");
                None
            }
            Err(e) => return Err(e.into()),
        },
        (Some(_), LearnedLoss::Network(_)) if args.device == DeviceChoice::Gpu => {
            anyhow::bail!(
                "the GPU trains expression losses; an ML3 network trains on the CPU (--device cpu)"
            )
        }
        (Some(_), LearnedLoss::Network(_)) => None,
    };
    let rows = match (&trainer, &loss) {
        (Some(t), LearnedLoss::Expr(e)) => {
            let steps = &mut steps_into(&bar);
            t.meta_test(&mut model, e, &cfg, &seeds, task.metric(), 20, steps)?
        }
        _ => meta_test(
            &task,
            &mut model,
            &loss.trainable()?,
            &cfg,
            &seeds,
            20,
            &mut steps_into(&bar),
        )?,
    };
    let device = match (&gpu, &trainer) {
        (Some(gpu), Some(_)) => gpu.describe(),
        _ => "cpu".to_string(),
    };
    bar.finish_and_clear();

    let metric = task.metric();
    writeln!(
        out,
        "{} / {} with loss {}",
        plugin.name(),
        manifest.task.model,
        loss.describe()
    )?;
    write_table(out, &cfg, metric, &rows)?;
    let path = args.out.unwrap_or_else(|| {
        let stem = args
            .manifest
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        manifest.output.dir.join(format!("train-{stem}.json"))
    });
    let report = json!({
        "manifest": args.manifest.display().to_string(),
        "task": plugin.name(),
        "model": manifest.task.model,
        "loss": loss.describe(),
        "device": device,
        "metric": metric.name(),
        "config": config_json(&cfg),
        "seeds": seeds_json(&rows),
        "train": stats_json(rows.iter().filter_map(|r| r.train)),
        "test": stats_json(rows.iter().filter_map(|r| r.test)),
        "seconds": started.elapsed().as_secs_f64(),
    });
    write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    writeln!(out, "results: {}", path.display())?;
    Ok(())
}

/// The per-seed table and the mean ± std line.
pub fn write_table(
    out: &mut dyn Write,
    cfg: &TrainConfig,
    metric: Metric,
    rows: &[SeedResult],
) -> anyhow::Result<()> {
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
    for r in rows {
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
    writeln!(
        out,
        "mean ± std: train {}, test {}",
        fmt_stats(mean_std(rows.iter().filter_map(|r| r.train))),
        fmt_stats(mean_std(rows.iter().filter_map(|r| r.test)))
    )?;
    Ok(())
}

pub fn fmt_stats(s: Option<(f64, f64)>) -> String {
    s.map_or("n/a".to_string(), |(m, sd)| format!("{m:.5} ± {sd:.5}"))
}

pub fn stats_json(values: impl Iterator<Item = f64>) -> serde_json::Value {
    mean_std(values).map_or(
        serde_json::Value::Null,
        |(m, sd)| json!({"mean": m, "std": sd}),
    )
}

/// A training configuration for results files, its settings as the manifest wrote them.
pub fn config_json(cfg: &TrainConfig) -> serde_json::Value {
    let d = decimal_f64;
    let optimizer = match cfg.optimizer {
        OptimizerConfig::Sgd {
            momentum,
            nesterov,
            weight_decay,
        } => json!({"name": "sgd", "momentum": d(momentum), "nesterov": nesterov,
                    "weight_decay": d(weight_decay)}),
        OptimizerConfig::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => json!({"name": "adam", "beta1": d(beta1), "beta2": d(beta2), "eps": d(eps),
                    "weight_decay": d(weight_decay)}),
    };
    json!({"steps": cfg.steps, "batch": cfg.batch, "lr": d(cfg.lr), "optimizer": optimizer,
           "milestones": cfg.milestones, "gamma": d(cfg.gamma)})
}

pub fn seeds_json(rows: &[SeedResult]) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|r| {
            let outcome = match r.outcome {
                Outcome::Finished => "finished".to_string(),
                Outcome::Diverged { step } => format!("diverged at step {step}"),
            };
            json!({"seed": r.seed, "outcome": outcome, "train": r.train, "test": r.test, "seconds": r.seconds,
                   "curve": r.curve})
        })
        .collect()
}

/// A step callback that advances `bar` every 100 steps.
pub fn steps_into(bar: &ProgressBar) -> impl FnMut(usize) + '_ {
    move |step| {
        if step % 100 == 99 {
            bar.inc(100);
        }
    }
}

pub fn progress(total: usize, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} {elapsed} (eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}
