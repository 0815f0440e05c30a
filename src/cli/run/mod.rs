//! `evomal run MANIFEST`: one method's search (EvoMAL, GP-LFL, ML3, TaylorGLO, or none for the
//! baseline), then the meta-test of the learned loss against the baseline, with a results
//! directory. `gp.rs` and `neural.rs`/`taylor.rs` are the searches, `report.rs` the files.

mod gp;
mod ml3;
mod report;
mod taylor;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use clap::ValueEnum;
use evomal::gpu::DeviceChoice;
use evomal::manifest::{Manifest, SearchMethod};
use evomal::plugin::{PluginError, PluginModel, TaskPlugin};
use evomal::search::learned::LearnedLoss;
use evomal::train::Task;
use evomal::train::meta_test::{mean_std, meta_test};
use serde_json::{Value, json};

use super::files::{RunDir, write_atomic};
use super::train::{fmt_stats, progress, seeds_json, stats_json, steps_into};
use report::finite;
pub use report::sha256_hex;

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
    #[command(flatten)]
    options: RunOptions,
}

/// How a run executes; none of it changes the result.
#[derive(Args, Clone, Default)]
pub struct RunOptions {
    /// Worker threads for candidate evaluation (default: all cores). The result does not
    /// depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where local searches and fitness runs train: `gpu` runs each generation's candidates
    /// side by side on the GPU (any adapter, software ones included); `auto` does so on a
    /// hardware GPU when one is found and the model is a layer stack the GPU runs, else on the
    /// CPU.
    /// A resumed run keeps the choice it started with unless this is given.
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// The checkpoint file in a results directory, rewritten as the search goes.
pub const CHECKPOINT: &str = "checkpoint.json";

/// One run to do: a manifest (its path, for relative paths and names, and its text, which may
/// differ from the file's when `evomal compare` sets the method or seed), where its results go,
/// and the checkpoint it resumes from.
pub struct Job {
    pub manifest_path: PathBuf,
    pub manifest_text: String,
    pub out_dir: Option<PathBuf>,
    pub checkpoint: Option<Value>,
    pub options: RunOptions,
}

pub fn run(args: RunArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let job = match (&args.resume, &args.manifest) {
        // Its run.json, written last, marks a finished run: resuming it would only train the
        // finalists and meta-test again (hours on CIFAR) to write the same results.
        (Some(dir), _) if dir.join("run.json").is_file() => {
            writeln!(
                out,
                "the run in `{}` has finished (its run.json is written): nothing to resume",
                dir.display()
            )?;
            return Ok(());
        }
        (Some(dir), _) => resume_job(dir, args.options)?,
        (None, Some(path)) => Job {
            manifest_path: path.clone(),
            manifest_text: Manifest::read_text(path)?,
            out_dir: args.out_dir.clone(),
            checkpoint: None,
            options: args.options,
        },
        (None, None) => anyhow::bail!("give a manifest, or --resume DIR"),
    };
    run_job(job, out)
}

/// The job that resumes the run in `dir`: its manifest as it was when the run started (read
/// from the checkpoint, whose seal is checked), and the device it chose unless `options` names
/// one.
pub fn resume_job(dir: &Path, mut options: RunOptions) -> anyhow::Result<Job> {
    let path = dir.join(CHECKPOINT);
    let cp = super::read_json(&path)?;
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
    if options.device.is_none() {
        options.device = cp["device"]
            .as_str()
            .and_then(|d| DeviceChoice::from_str(d, false).ok());
    }
    Ok(Job {
        manifest_path: PathBuf::from(manifest),
        manifest_text: manifest_text.to_string(),
        out_dir: Some(dir.to_path_buf()),
        checkpoint: Some(cp),
        options,
    })
}

/// What every method's search works with.
struct Context<'a> {
    pub manifest: &'a Manifest,
    pub job: &'a Job,
    pub plugin: &'a TaskPlugin,
    pub task: &'a Task<'a>,
    pub dir: &'a Path,
    pub pool: &'a rayon::ThreadPool,
}

impl Context<'_> {
    pub fn make_model(&self) -> Result<PluginModel, PluginError> {
        self.plugin
            .create_model(&self.manifest.task.model, &self.manifest.params_json())
    }

    /// Writes the checkpoint: the manifest (sealed with its hash), the device choice, and the
    /// method's own state under `key`.
    pub fn checkpoint(&self, key: &str, state: Value) -> anyhow::Result<()> {
        let device = self
            .job
            .options
            .device
            .unwrap_or_default()
            .to_possible_value()
            .map(|v| v.get_name().to_string());
        let cp = json!({
            "manifest": self.job.manifest_path.display().to_string(),
            "manifest_text": self.job.manifest_text,
            "manifest_sha256": sha256_hex(&self.job.manifest_text),
            "device": device,
            key: state,
        });
        write_atomic(&self.dir.join(CHECKPOINT), cp.to_string().as_bytes())
    }

    /// The method's state in the checkpoint this run resumes from.
    pub fn resumed(&self, key: &str) -> Option<&Value> {
        self.job.checkpoint.as_ref().map(|cp| &cp[key])
    }
}

/// What a method's search leaves for the meta-test and the report.
#[derive(Default)]
struct Searched {
    pub best: Option<Found>,
    /// run.json's `generations`: one object per generation.
    pub generations: Vec<Value>,
    /// Lines of the human summary, before the best loss.
    pub summary: Vec<String>,
    /// Method-specific entries of run.json (`selection`, `ml3`, `taylorglo`).
    pub details: serde_json::Map<String, Value>,
    pub plot: Option<report::FitnessPlot>,
    pub hall_of_fame: Option<Vec<u8>>,
    /// Where training ran (`cpu`, or the GPU's name).
    pub device: String,
}

/// The loss a search chose, its validation fitness, and where it was found.
struct Found {
    pub loss: LearnedLoss,
    pub fitness: f64,
    pub generation: Option<usize>,
}

pub fn run_job(job: Job, out: &mut dyn Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let manifest = Manifest::parse(&job.manifest_path, &job.manifest_text)?;
    let plugin = TaskPlugin::open(&manifest.plugin(), &manifest.data_json())?;
    let task = Task::new(&plugin);
    super::note_full_batches(
        &task,
        &[
            ("fitness.batch", manifest.fitness.batch),
            ("testing.batch", manifest.testing.batch),
        ],
    );
    let method = manifest.search.method;
    let mut model = plugin.create_model(&manifest.task.model, &manifest.params_json())?;
    if matches!(method, SearchMethod::Evomal | SearchMethod::Ml3) && !model.has_jvp() {
        eprintln!(
            "note: model `{}` of plugin `{}` offers no JVP; the local search uses central finite differences instead",
            manifest.task.model,
            plugin.name()
        );
    }
    if matches!(method, SearchMethod::Ml3 | SearchMethod::Taylorglo)
        && job.options.device == Some(DeviceChoice::Gpu)
    {
        eprintln!(
            "note: {} trains on the CPU; --device gpu applies to the GP methods (evomal, gplfl)",
            method_name(method)
        );
    }
    let stem = job
        .manifest_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let run_dir = match (&job.checkpoint, &job.out_dir) {
        (Some(_), Some(dir)) => RunDir::claim_existing(dir)?,
        (None, Some(dir)) => RunDir::claim_new(dir, true)?,
        (_, None) => RunDir::claim_new(&manifest.output.dir.join(&stem), false)?,
    };
    let dir = run_dir.path.clone();
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = job.options.threads {
        pool = pool.num_threads(n);
    }
    let pool = pool.build().context("starting the worker threads")?;
    let cx = Context {
        manifest: &manifest,
        job: &job,
        plugin: &plugin,
        task: &task,
        dir: &dir,
        pool: &pool,
    };
    let searched = match method {
        SearchMethod::Evomal | SearchMethod::Gplfl => gp::search(&cx)?,
        SearchMethod::Ml3 => ml3::search(&cx, &mut model)?,
        SearchMethod::Taylorglo => taylor::search(&cx)?,
        SearchMethod::Baseline => Searched {
            device: "cpu".into(),
            ..Searched::default()
        },
    };
    let baseline = task.kind.baseline();
    let baseline_kernel =
        evomal::backend::jit::compile(&baseline, evomal::backend::KernelKind::LossGrad)?;
    let fitness_cfg = manifest.fitness_config();
    let baseline_fitness = task.fitness(
        &mut model,
        &baseline_kernel,
        baseline.weights(),
        &fitness_cfg,
        manifest.search.seed,
        1,
    )?;

    // Meta-testing: the best loss (if the search found one) and the baseline, every seed.
    let testing = manifest.testing_config();
    let seeds = &manifest.testing.seeds;
    let mut contenders = Vec::new();
    if let Some(best) = &searched.best {
        contenders.push(("learned", best.loss.clone()));
    }
    contenders.push(("baseline", LearnedLoss::Expr(baseline.clone())));
    let bar = progress(
        contenders.len() * seeds.len() * testing.steps,
        job.options.quiet,
    );
    let mut tested = Vec::new();
    for (name, loss) in &contenders {
        bar.set_message(format!("meta-testing the {name} loss"));
        let rows = meta_test(
            &task,
            &mut model,
            &loss.trainable()?,
            &testing,
            seeds,
            20,
            &mut steps_into(&bar),
        )?;
        tested.push((*name, loss, rows));
    }
    bar.finish_and_clear();

    // Human summary.
    let metric = task.metric();
    let size = match method {
        SearchMethod::Baseline => "no search".to_string(),
        SearchMethod::Ml3 => format!(
            "ml3 search, one network, {} meta steps",
            manifest.local_search.meta_steps
        ),
        _ => format!(
            "{} search, {} x {} candidates",
            method_name(method),
            manifest.search.population,
            manifest.search.generations
        ),
    };
    writeln!(out, "{} / {}: {size}", plugin.name(), manifest.task.model)?;
    for line in &searched.summary {
        writeln!(out, "{line}")?;
    }
    match &searched.best {
        Some(b) => {
            writeln!(out, "best loss  {}", b.loss.describe())?;
            if let Some(e) = b.loss.expr() {
                writeln!(out, "  infix    {}", e.to_infix())?;
            }
            let at = b
                .generation
                .map_or(String::new(), |g| format!(" (generation {})", g + 1));
            writeln!(
                out,
                "  validation {} {:.5}{at} vs baseline {:.5}",
                metric.name(),
                b.fitness,
                baseline_fitness
            )?;
            if b.loss == LearnedLoss::Expr(baseline.clone()) {
                writeln!(
                    out,
                    "the search found no loss better than the baseline on validation: the baseline is kept"
                )?;
            } else if b.fitness >= baseline_fitness {
                writeln!(
                    out,
                    "warning: the learned loss is not better than the baseline on validation ({:.5} vs {:.5}); prefer the baseline, or search longer",
                    b.fitness, baseline_fitness
                )?;
            }
        }
        None if method != SearchMethod::Baseline => writeln!(
            out,
            "no candidate survived the search; meta-testing the baseline only"
        )?,
        None => {}
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
    const NETWORK_FILE: &str = "best_loss.ml3.json";
    let best_json = searched.best.as_ref().map(|b| match &b.loss {
        LearnedLoss::Expr(e) => json!({"loss": e.to_string(), "canonical": e.canonical().to_string(),
            "infix": e.to_infix(), "validation": finite(b.fitness), "generation": b.generation.map(|g| g + 1)}),
        LearnedLoss::Network(_) => json!({"loss": null, "network": NETWORK_FILE,
            "validation": finite(b.fitness), "generation": null}),
    });
    let mut report = json!({
        "manifest": job.manifest_path.display().to_string(),
        "manifest_sha256": sha256_hex(&job.manifest_text),
        "task": plugin.name(),
        "model": manifest.task.model,
        "method": method_name(method),
        "metric": metric.name(),
        "fitness_device": searched.device,
        "config": {"params": &manifest.task.params, "search": &manifest.search,
                   "local_search": &manifest.local_search, "fitness": &manifest.fitness,
                   "filters": &manifest.filters, "testing": &manifest.testing},
        "generations": searched.generations,
        "best": best_json,
        "baseline": {"loss": baseline.to_string(), "validation": finite(baseline_fitness)},
        "meta_test": tested.iter().map(|(name, loss, rows)| json!({
            "name": name, "loss": loss.describe(), "seeds": seeds_json(rows),
            "train": stats_json(rows.iter().filter_map(|r| r.train)), "test": stats_json(rows.iter().filter_map(|r| r.test)),
        })).collect::<Vec<_>>(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    report
        .as_object_mut()
        .expect("an object")
        .extend(searched.details.clone());
    if let Some(b) = &searched.best {
        match &b.loss {
            LearnedLoss::Expr(e) => {
                let text = format!(
                    "{}\n# canonical (unit weights): {}\n# infix: {}\n",
                    e,
                    e.unweighted().canonical(),
                    e.to_infix()
                );
                write_atomic(&dir.join("best_loss.txt"), text.as_bytes())?;
                let shader =
                    super::shader::validated_shader(e, evomal::backend::KernelKind::LossGrad)?;
                write_atomic(&dir.join("best_loss.wgsl"), shader.as_bytes())?;
            }
            LearnedLoss::Network(n) => {
                write_atomic(&dir.join(NETWORK_FILE), n.to_json().as_bytes())?;
            }
        }
    }
    if let Some(csv) = &searched.hall_of_fame {
        write_atomic(&dir.join("hall_of_fame.csv"), csv)?;
    }
    report::draw_plots(&dir, metric.name(), &searched, &tested)?;
    // run.json last: its presence marks a finished run (`evomal compare` skips those).
    write_atomic(
        &dir.join("run.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    writeln!(out, "results: {}", dir.display())?;
    Ok(())
}

/// The method as manifests and results files spell it.
pub fn method_name(method: SearchMethod) -> String {
    format!("{method:?}").to_lowercase()
}
