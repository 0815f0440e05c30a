//! `evomal run MANIFEST`: the EvoMAL pipeline — search, then meta-test the best loss against
//! the baseline — with a results directory.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use clap::ValueEnum;
use evomal::backend::KernelKind;
use evomal::backend::jit;
use evomal::gpu::population::PopulationTrainer;
use evomal::gpu::{DeviceChoice, Gpu};
use evomal::manifest::{Manifest, SearchMethod};
use evomal::plot::{self, Series};
use evomal::plugin::TaskPlugin;
use evomal::search::run::{Best, Search, SearchError, SearchPlan, verdict_name};
use evomal::search::select::robust_selection;
use evomal::train::Task;
use evomal::train::TrainError;
use evomal::train::meta_test::{mean_std, meta_test};
use indicatif::{MultiProgress, ProgressDrawTarget};
use serde_json::json;

use super::files::{RunDir, write_atomic};
use super::train::{fmt_stats, progress, seeds_json, stats_json, steps_into};

#[derive(Args)]
pub struct RunArgs {
    /// The experiment manifest (TOML).
    #[arg(required_unless_present = "resume", conflicts_with = "resume")]
    manifest: Option<PathBuf>,
    /// Continue the interrupted run whose results directory this is, from its last checkpoint.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Results directory (default: `<output.dir>/<manifest name>`, or the first free of
    /// `<name>-2`, `<name>-3`, … when that holds another run). A directory named here must not
    /// hold a run already.
    #[arg(long, conflicts_with = "resume")]
    out_dir: Option<PathBuf>,
    /// Worker threads for candidate evaluation (default: all cores). The result does not
    /// depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Where local searches and fitness runs train: `gpu` runs each generation's candidates
    /// side by side on the GPU (any adapter, software ones included); `auto` does so on a
    /// hardware GPU when one is found and the model is a layer stack the GPU runs, else on the
    /// CPU.
    /// A resumed run keeps the choice it started with unless this is given.
    #[arg(long, value_enum)]
    device: Option<DeviceChoice>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// The checkpoint file in a results directory, rewritten after every generation.
const CHECKPOINT: &str = "checkpoint.json";

pub fn run(args: RunArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let started = Instant::now();
    // A resumed run reads its manifest from the checkpoint, as it was when the run started.
    let (manifest_path, manifest_text, checkpoint, dir, checkpoint_device) = match (
        &args.resume,
        &args.manifest,
    ) {
        (Some(dir), _) => {
            let path = dir.join(CHECKPOINT);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let cp: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            let manifest = cp["manifest"]
                .as_str()
                .with_context(|| format!("{}: names no manifest", path.display()))?;
            let manifest_text = cp["manifest_text"]
                .as_str()
                .with_context(|| format!("{}: holds no manifest text", path.display()))?;
            if cp["manifest_sha256"].as_str() != Some(&sha256_hex(manifest_text)) {
                anyhow::bail!(
                    "{}: `manifest_text` does not match `manifest_sha256`: the checkpoint was edited or damaged",
                    path.display()
                );
            }
            let device = cp["device"]
                .as_str()
                .and_then(|d| DeviceChoice::from_str(d, false).ok());
            (
                PathBuf::from(manifest),
                manifest_text.to_string(),
                Some(cp["search"].clone()),
                Some(dir.clone()),
                device,
            )
        }
        (None, Some(path)) => {
            let text = Manifest::read_text(path)?;
            (path.clone(), text, None, args.out_dir.clone(), None)
        }
        (None, None) => anyhow::bail!("give a manifest, or --resume DIR"),
    };
    let manifest = Manifest::parse(&manifest_path, &manifest_text)?;
    let plugin = TaskPlugin::open(&manifest.plugin(), &manifest.data_json())?;
    let task = Task::new(&plugin);
    super::note_full_batches(
        &task,
        &[
            ("fitness.batch", manifest.fitness.batch),
            ("testing.batch", manifest.testing.batch),
        ],
    );
    let mut model = plugin.create_model(&manifest.task.model, &manifest.params_json())?;
    if manifest.search.method == SearchMethod::Evomal && !model.has_jvp() {
        eprintln!(
            "note: model `{}` of plugin `{}` offers no JVP; the local search uses central finite differences instead",
            manifest.task.model,
            plugin.name()
        );
    }
    let stem = manifest_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let run_dir = match (&args.resume, dir) {
        (Some(_), Some(dir)) => RunDir::claim_existing(&dir)?,
        (None, Some(dir)) => RunDir::claim_new(&dir, true)?,
        (_, None) => RunDir::claim_new(&manifest.output.dir.join(&stem), false)?,
    };
    let dir = run_dir.path.clone();
    let baseline = task.kind.baseline();
    let metric = task.metric();

    let plan = SearchPlan {
        gp: manifest.gp_config(),
        local_search: (manifest.search.method == SearchMethod::Evomal)
            .then(|| manifest.local_search_config()),
        fitness: manifest.fitness_config(),
        rejection: manifest
            .filters
            .rejection
            .then(|| manifest.rejection_config()),
        gradient_tolerance: (manifest.filters.rejection && manifest.filters.gradient_equivalence)
            .then_some(manifest.filters.gradient_tolerance),
        seed: manifest.search.seed,
    };
    let device_choice = args.device.or(checkpoint_device).unwrap_or_default();
    let gpu = Gpu::choose(device_choice)?;
    let trainer = match &gpu {
        None => None,
        Some(gpu) => match PopulationTrainer::new(gpu, &task, &model, plan.gp.population, 1) {
            Ok(t) => Some(t),
            Err(TrainError::Gpu(e)) if device_choice == DeviceChoice::Auto => {
                eprintln!("note: local searches and fitness runs train on the CPU: {e}");
                None
            }
            Err(e) => return Err(e.into()),
        },
    };
    let device = match (&gpu, &trainer) {
        (Some(gpu), Some(_)) => gpu.describe(),
        _ => "cpu".to_string(),
    };
    let mut search = match &checkpoint {
        Some(cp) => Search::restore(&task, plan.clone(), cp)
            .with_context(|| format!("resuming from {}", dir.join(CHECKPOINT).display()))?,
        None => Search::new(&task, plan.clone()),
    };
    if let Some(trainer) = &trainer {
        search = search.with_gpu(trainer);
    }
    let make_model = || plugin.create_model(&manifest.task.model, &manifest.params_json());
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        pool = pool.num_threads(n);
    }
    let pool = pool.build().context("starting the worker threads")?;
    if manifest.search.method != SearchMethod::Baseline {
        let done = search.generations.len();
        // Two bars: generations (with the best fitness so far), and this generation's candidates.
        let multi = MultiProgress::new();
        if args.quiet || !std::io::stderr().is_terminal() {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        let bar = multi.add(progress(plan.gp.generations, false));
        bar.set_position(done as u64);
        let candidates = multi.add(progress(plan.gp.population, false));
        candidates.set_message("candidates");
        let on_candidate = |_, _| candidates.inc(1);
        let checkpoint_path = dir.join(CHECKPOINT);
        let mut on_generation = |s: &Search<'_, '_>| {
            let best = s
                .best
                .as_ref()
                .map_or("none yet".to_string(), |b| format!("{:.5}", b.fitness));
            bar.set_position(s.generations.len() as u64);
            bar.set_message(format!("generations, best {best}"));
            candidates.reset();
            let cp = json!({
                "manifest": manifest_path.display().to_string(),
                "manifest_text": manifest_text,
                "manifest_sha256": sha256_hex(&manifest_text),
                "device": device_choice.to_possible_value().map(|v| v.get_name().to_string()),
                "search": s.checkpoint(),
            });
            write_atomic(&checkpoint_path, cp.to_string().as_bytes())
                .map_err(|e| SearchError::Io(format!("writing the checkpoint: {e:#}")))
        };
        pool.install(|| search.run(&make_model, &on_candidate, &mut on_generation))?;
        candidates.finish_and_clear();
        bar.finish_and_clear();
    }
    // The loss to keep: the search's best, or the best mean of the finalists scored again.
    let selection = match manifest.selection_config() {
        Some(cfg) => pool.install(|| robust_selection(&task, &search, &cfg, &make_model))?,
        None => None,
    };
    let best: Option<Best> = match &selection {
        Some((rescored, chosen)) => {
            let r = &rescored[*chosen];
            Some(Best {
                loss: r.loss.clone(),
                fitness: r.search_fitness,
                generation: r.generation,
            })
        }
        None => search.best.clone(),
    };
    let baseline_kernel = jit::compile(&baseline, KernelKind::LossGrad)?;
    let baseline_fitness = search.fitness(&mut model, &baseline, &baseline_kernel)?;

    // Meta-testing: the best loss (if the search found one) and the baseline, every seed.
    let testing = manifest.testing_config();
    let seeds = &manifest.testing.seeds;
    let mut contenders = Vec::new();
    if let Some(best) = &best {
        contenders.push(("learned", best.loss.clone()));
    }
    contenders.push(("baseline", baseline.clone()));
    let bar = progress(contenders.len() * seeds.len() * testing.steps, args.quiet);
    let mut tested = Vec::new();
    for (name, loss) in &contenders {
        bar.set_message(format!("meta-testing the {name} loss"));
        let rows = meta_test(
            &task,
            &mut model,
            loss,
            &testing,
            seeds,
            20,
            &mut steps_into(&bar),
        )?;
        tested.push((*name, loss, rows));
    }
    bar.finish_and_clear();

    // Human summary.
    writeln!(
        out,
        "{} / {}: {:?} search, {} x {} candidates",
        plugin.name(),
        manifest.task.model,
        manifest.search.method,
        plan.gp.population,
        plan.gp.generations
    )?;
    if !search.generations.is_empty() {
        writeln!(
            out,
            "{:>4} {:>11} {:>11} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7}",
            "gen", "best", "median", "eval", "canon", "grad", "rej", "div", "seconds"
        )?;
        for g in &search.generations {
            let c = |k: &str| g.counts.get(k).copied().unwrap_or(0);
            writeln!(
                out,
                "{:>4} {:>11.5} {:>11.5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7.2}",
                g.index + 1,
                g.best,
                g.median,
                c("evaluated"),
                c("canonical_hits"),
                c("gradient_hits"),
                c("rejected"),
                c("diverged"),
                g.seconds
            )?;
        }
    }
    if let Some((rescored, chosen)) = &selection {
        writeln!(
            out,
            "robust selection: the best {} candidates trained {} times each; kept #{} (mean {} {:.5})",
            rescored.len(),
            rescored[0].fitness.len(),
            chosen + 1,
            metric.name(),
            rescored[*chosen].mean()
        )?;
    }
    match &best {
        Some(b) => {
            writeln!(out, "best loss  {}", b.loss)?;
            writeln!(out, "  infix    {}", b.loss.to_infix())?;
            writeln!(
                out,
                "  validation {} {:.5} (generation {}) vs baseline {:.5}",
                metric.name(),
                b.fitness,
                b.generation + 1,
                baseline_fitness
            )?;
        }
        None => writeln!(
            out,
            "no candidate survived the search; meta-testing the baseline only"
        )?,
    }
    if let Some(b) = &best
        && b.fitness >= baseline_fitness
    {
        writeln!(
            out,
            "warning: the learned loss is not better than the baseline on validation ({:.5} vs {:.5}); prefer the baseline, or search longer",
            b.fitness, baseline_fitness
        )?;
    }
    writeln!(
        out,
        "meta-testing, {} seeds, {} steps ({}):",
        seeds.len(),
        testing.steps,
        metric.name()
    )?;
    for (name, _, rows) in &tested {
        writeln!(
            out,
            "  {name:<9} train {}   test {}",
            fmt_stats(mean_std(rows.iter().filter_map(|r| r.train))),
            fmt_stats(mean_std(rows.iter().filter_map(|r| r.test)))
        )?;
    }

    // Results directory.
    let generations: Vec<_> = search
        .generations
        .iter()
        .map(|g| json!({"generation": g.index + 1, "best": finite(g.best), "median": finite(g.median), "counts": g.counts, "seconds": g.seconds}))
        .collect();
    let report = json!({
        "manifest": manifest_path.display().to_string(),
        "task": plugin.name(),
        "model": manifest.task.model,
        "method": format!("{:?}", manifest.search.method).to_lowercase(),
        "metric": metric.name(),
        "fitness_device": device,
        "config": {"params": &manifest.task.params, "search": &manifest.search,
                   "local_search": &manifest.local_search, "fitness": &manifest.fitness,
                   "filters": &manifest.filters, "testing": &manifest.testing},
        "generations": generations,
        "best": best.as_ref().map(|b| json!({"loss": b.loss.to_string(), "canonical": b.loss.canonical().to_string(),
                                              "infix": b.loss.to_infix(), "validation": b.fitness, "generation": b.generation + 1})),
        "selection": selection.as_ref().map(|(rescored, chosen)| json!({
            "chosen": chosen,
            "candidates": rescored.iter().map(|r| json!({
                "loss": r.loss.to_string(), "generation": r.generation + 1, "search_fitness": finite(r.search_fitness),
                "fitness": r.fitness.iter().map(|&f| finite(f)).collect::<Vec<_>>(),
                "task_loss": r.task_loss.iter().map(|&f| finite(f)).collect::<Vec<_>>(),
                "mean": finite(r.mean()), "task_loss_mean": finite(r.task_loss_mean()),
            })).collect::<Vec<_>>(),
        })),
        "baseline": {"loss": baseline.to_string(), "validation": finite(baseline_fitness)},
        "meta_test": tested.iter().map(|(name, loss, rows)| json!({
            "name": name, "loss": loss.to_string(), "seeds": seeds_json(rows),
            "train": stats_json(rows.iter().filter_map(|r| r.train)), "test": stats_json(rows.iter().filter_map(|r| r.test)),
        })).collect::<Vec<_>>(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    write_atomic(
        &dir.join("run.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    if let Some(b) = &best {
        let text = format!(
            "{}\n# canonical (unit weights): {}\n# infix: {}\n",
            b.loss,
            b.loss.unweighted().canonical(),
            b.loss.to_infix()
        );
        write_atomic(&dir.join("best_loss.txt"), text.as_bytes())?;
        let shader =
            super::shader::validated_shader(&b.loss, evomal::backend::KernelKind::LossGrad)?;
        write_atomic(&dir.join("best_loss.wgsl"), shader.as_bytes())?;
    }
    write_atomic(&dir.join("hall_of_fame.csv"), &hall_of_fame_csv(&search)?)?;
    draw_plots(&dir, metric.name(), &search, &tested)?;
    writeln!(out, "results: {}", dir.display())?;
    Ok(())
}

/// Every distinct candidate the search evaluated, best first: one CSV row each.
fn hall_of_fame_csv(search: &Search<'_, '_>) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "rank",
        "generation",
        "fitness",
        "verdict",
        "size",
        "height",
        "canonical",
        "loss",
        "infix",
    ])?;
    for (rank, e) in search.hall_of_fame().into_iter().enumerate() {
        let fitness = finite(e.fitness).map_or(String::new(), |f| f.to_string());
        w.write_record([
            (rank + 1).to_string(),
            (e.generation + 1).to_string(),
            fitness,
            verdict_name(e.verdict).to_string(),
            e.loss.len().to_string(),
            e.loss.height().to_string(),
            e.loss.unweighted().canonical().to_string(),
            e.loss.to_string(),
            e.loss.to_infix(),
        ])?;
    }
    Ok(w.into_inner()?)
}

/// The SHA-256 of `text`, in hex: a checkpoint's seal on the manifest it carries.
fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// JSON has no infinity: non-finite fitness is written as null.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// `fitness.svg` (best and median validation fitness per generation) and `meta_test.svg` (the
/// test metric during meta-testing, mean over seeds, learned vs baseline).
fn draw_plots(
    dir: &std::path::Path,
    metric: &str,
    search: &Search<'_, '_>,
    tested: &[(
        &str,
        &evomal::expr::LossExpr,
        Vec<evomal::train::meta_test::SeedResult>,
    )],
) -> anyhow::Result<()> {
    // A search where every candidate failed has no finite fitness to draw.
    if search.generations.iter().any(|g| g.best.is_finite()) {
        let per_gen = |f: fn(&evomal::search::run::Generation) -> f64| {
            search
                .generations
                .iter()
                .map(|g| ((g.index + 1) as f64, f(g)))
                .collect::<Vec<_>>()
        };
        let series = [
            Series {
                name: "best",
                points: per_gen(|g| g.best),
            },
            Series {
                name: "median",
                points: per_gen(|g| g.median),
            },
        ];
        let title = format!("validation {metric} per generation");
        plot::lines(
            &dir.join("fitness.svg"),
            &title,
            "generation",
            metric,
            &series,
        )?;
    }
    let series: Vec<Series<'_>> = tested
        .iter()
        .map(|(name, _, rows)| Series {
            name,
            points: plot::mean_curve(&rows.iter().map(|r| r.curve.as_slice()).collect::<Vec<_>>()),
        })
        .collect();
    if series
        .iter()
        .any(|s| s.points.iter().any(|p| p.1.is_finite()))
    {
        let title = format!("meta-testing: test {metric} (mean over seeds)");
        plot::lines(
            &dir.join("meta_test.svg"),
            &title,
            "training step",
            metric,
            &series,
        )?;
    }
    Ok(())
}
