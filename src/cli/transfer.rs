//! `evomal transfer RUN_DIR MANIFEST`: meta-test the loss learned by one run on another task or
//! model (the manifest's `[testing]`), against that task's baseline.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use evomal::manifest::Manifest;
use evomal::plugin::TaskPlugin;
use evomal::search::learned::LearnedLoss;
use evomal::train::Task;
use evomal::train::meta_test::{mean_std, meta_test};
use serde_json::json;

use super::train::{config_json, fmt_stats, progress, seeds_json, stats_json, steps_into};
use super::write_atomic;

#[derive(Args)]
pub struct TransferArgs {
    /// A results directory of `evomal run` (its `run.json` names the learned loss).
    run_dir: PathBuf,
    /// The task and model to meta-test on.
    manifest: PathBuf,
    /// Where to write the JSON results (default: `RUN_DIR/transfer-<manifest name>.json`).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: TransferArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let report = super::run_report(&args.run_dir)?;
    let learned = super::learned_in_run(&args.run_dir, &report)?;
    let manifest = Manifest::load(&args.manifest)?;
    let plugin = TaskPlugin::open(&manifest.plugin(), &manifest.data_json())?;
    let task = Task::new(&plugin);
    super::note_full_batches(&task, &[("testing.batch", manifest.testing.batch)]);
    let mut model = plugin.create_model(&manifest.task.model, &manifest.params_json())?;
    let baseline = LearnedLoss::Expr(task.kind.baseline());
    let cfg = manifest.testing_config();
    let seeds = &manifest.testing.seeds;
    let bar = progress(2 * seeds.len() * cfg.steps, args.quiet);
    let mut results = Vec::new();
    for (name, loss) in [("learned", &learned), ("baseline", &baseline)] {
        let rows = meta_test(
            &task,
            &mut model,
            &loss.trainable()?,
            &cfg,
            seeds,
            20,
            &mut steps_into(&bar),
        )?;
        results.push((name, loss, rows));
    }
    bar.finish_and_clear();

    let from = format!(
        "{} / {}",
        report["task"].as_str().unwrap_or("?"),
        report["model"].as_str().unwrap_or("?")
    );
    writeln!(out, "loss learned on {from}: {}", learned.describe())?;
    writeln!(
        out,
        "meta-tested on {} / {}, {} seeds, {} steps ({}):",
        plugin.name(),
        manifest.task.model,
        seeds.len(),
        cfg.steps,
        task.metric().name()
    )?;
    for (name, _, rows) in &results {
        let train = fmt_stats(mean_std(rows.iter().filter_map(|r| r.train)));
        let test = fmt_stats(mean_std(rows.iter().filter_map(|r| r.test)));
        writeln!(out, "  {name:<9} train {train}   test {test}")?;
    }
    let stem = args
        .manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = args
        .out
        .unwrap_or_else(|| args.run_dir.join(format!("transfer-{stem}.json")));
    let json = json!({
        "from": {"run": args.run_dir.display().to_string(), "task": report["task"], "model": report["model"]},
        "to": {"manifest": args.manifest.display().to_string(), "task": plugin.name(), "model": manifest.task.model},
        "metric": task.metric().name(),
        "config": config_json(&cfg),
        "meta_test": results.iter().map(|(name, loss, rows)| json!({
            "name": name, "loss": loss.describe(), "seeds": seeds_json(rows),
            "train": stats_json(rows.iter().filter_map(|r| r.train)), "test": stats_json(rows.iter().filter_map(|r| r.test)),
        })).collect::<Vec<_>>(),
    });
    write_atomic(&path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    writeln!(out, "results: {}", path.display())?;
    Ok(())
}
