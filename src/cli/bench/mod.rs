//! `evomal bench loss`: loss-kernel throughput and JIT compile time on this machine.

use std::io::Write;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Subcommand;
use evomal::backend::KernelKind;
use evomal::backend::jit::{self, JitBatch};
use evomal::expr::LossExpr;
use evomal::expr::interp::{self, FullBatchMut};
use evomal::expr::random::{Method, random_tree};
use evomal::gpu::loss::GpuLossKernel;
use evomal::gpu::{DeviceChoice, Gpu};
use evomal::manifest::Manifest;
use evomal::plugin::TaskPlugin;
use evomal::train::objective::{CE, MSE};
use evomal::train::{Task, TrainConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::parse_expr;

mod fitness;
mod gpu_train;
mod projection;

/// Squared error (no libm calls), cross-entropy-like, and a fixed height-8 tree drawn by
/// `random_tree(Grow, 0..=10)`.
pub const BENCH_EXPRS: [(&str, &str); 3] = [
    ("mse", MSE),
    ("ce", CE),
    (
        "tree8",
        "tanh(max(aq(sub(sub(-1, 1), square(log(add(sub(1, y), abs(yhat))))), yhat), aq(mul(-1, 1), -1)))",
    ),
];

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Training steps per second of a manifest's model (batch and optimiser from `[testing]`),
    /// on one thread and on all threads, or on the GPU alone and side by side.
    Train {
        manifest: PathBuf,
        /// Steps to time (after a fifth as many warm-up steps, 2 to 20).
        #[arg(long, default_value_t = 500)]
        steps: usize,
        /// `gpu` times the GPU population trainer (any adapter); `auto` a hardware one when
        /// there is one, else the CPU.
        #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
        device: DeviceChoice,
        /// Models trained side by side in the GPU measurement.
        #[arg(long, default_value_t = 25)]
        side_by_side: usize,
        /// Also time each GPU kernel in one step of the models side by side (timestamp
        /// queries; `--device gpu|auto`).
        #[arg(long)]
        profile: bool,
        #[arg(long)]
        json: bool,
        /// Internal: measure in this process and print one JSON line.
        #[arg(long, hide = true)]
        worker: bool,
    },
    /// Candidate fitness evaluations per second: the search's initial population trained with
    /// the manifest's `[fitness]` settings, on all CPU cores and side by side on the GPU.
    Fitness(fitness::FitnessArgs),
    /// Elements/second of the loss kernels (interpreter vs JIT) and compile time per candidate.
    Loss {
        /// Batch size.
        #[arg(long, default_value_t = 1_000_000)]
        elements: usize,
        /// Expressions to measure (default: a cross-entropy-like loss and a height-8 tree).
        #[arg(long)]
        expr: Vec<String>,
        /// Random trees (height <= 10) whose compile time is measured.
        #[arg(long, default_value_t = 500)]
        compile_trees: usize,
        /// Also time the WGSL kernels on the GPU (`auto`: when an adapter is found).
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: BenchCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Fitness(args) => fitness::bench_fitness(&args, out),
        BenchCommand::Loss {
            elements,
            expr,
            compile_trees,
            device,
            json,
        } => {
            let gpu = Gpu::choose(device)?;
            bench_loss(elements, &expr, compile_trees, gpu.as_ref(), json, out)
        }
        BenchCommand::Train {
            manifest,
            steps,
            device,
            side_by_side,
            profile,
            json,
            worker: false,
        } if device != DeviceChoice::Cpu => match Gpu::choose(device)? {
            Some(gpu) => {
                let runs = gpu_train::Runs {
                    steps,
                    side_by_side,
                    profile,
                };
                gpu_train::bench_train_gpu(&gpu, &manifest, runs, json, out)
            }
            None if profile => bail!("--profile times GPU kernels, and no GPU is used"),
            None => bench_train(&manifest, steps, json, out),
        },
        BenchCommand::Train { profile: true, .. } => {
            bail!("--profile times GPU kernels: use it with --device gpu")
        }
        BenchCommand::Train {
            manifest,
            steps,
            worker: true,
            ..
        } => {
            writeln!(out, "{}", train_steps_per_second(&manifest, steps)?)?;
            Ok(())
        }
        BenchCommand::Train {
            manifest,
            steps,
            json,
            worker: false,
            ..
        } => bench_train(&manifest, steps, json, out),
    }
}

fn bench_loss(
    elements: usize,
    expr: &[String],
    compile_trees: usize,
    gpu: Option<&Gpu>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let exprs: Vec<(String, LossExpr)> = if expr.is_empty() {
        BENCH_EXPRS
            .iter()
            .map(|(name, text)| Ok((name.to_string(), parse_expr(text)?)))
            .collect::<anyhow::Result<_>>()?
    } else {
        expr.iter()
            .map(|t| Ok((evomal::expr::abbreviate(t), super::loss_arg(t)?)))
            .collect::<anyhow::Result<_>>()?
    };
    let (y, yhat) = inputs(elements);
    let mut rows = Vec::new();
    if !json {
        writeln!(
            out,
            "loss kernels, {elements} elements, one thread (elements/second, best of 3)"
        )?;
        if let Some(gpu) = gpu {
            let caveat = if gpu.is_software() {
                " (a software rasteriser: not GPU figures)"
            } else {
                ""
            };
            writeln!(
                out,
                "wgsl on {}{caveat}: with host transfers, and resident on the device",
                gpu.describe()
            )?;
        }
        writeln!(
            out,
            "{:<8} {:<6} {:>14} {:>14} {:>8} {:>14} {:>14}",
            "expr", "kernel", "interpreter", "jit", "speedup", "wgsl+copy", "wgsl resident"
        )?;
    }
    for (name, e) in &exprs {
        let mut o = Outputs::new(elements, e);
        for kind in [KernelKind::LossGrad, KernelKind::Full] {
            let interp_rate = elements as f64
                / best_of_3(|| run_interp(e, kind, &y, &yhat, &mut o)).as_secs_f64();
            let kernel = jit::compile(e, kind)?;
            let jit_rate = elements as f64
                / best_of_3(|| run_jit(&kernel, e, &y, &yhat, &mut o)).as_secs_f64();
            let label = if kind == KernelKind::Full {
                "(c)"
            } else {
                "(b)"
            };
            let (copy_rate, resident_rate) = match gpu {
                Some(gpu) => wgsl_rates(gpu, e, kind, &y, &yhat)?,
                None => (f64::NAN, f64::NAN),
            };
            if !json {
                writeln!(
                    out,
                    "{name:<8} {label:<6} {interp_rate:>14.3e} {jit_rate:>14.3e} {:>7.1}x {copy_rate:>14.3e} {resident_rate:>14.3e}",
                    jit_rate / interp_rate
                )?;
            }
            let finite = |x: f64| x.is_finite().then_some(x);
            rows.push(json!({"expr": name, "kernel": label, "interp_elems_per_s": interp_rate, "jit_elems_per_s": jit_rate,
                "wgsl_elems_per_s": finite(copy_rate), "wgsl_resident_elems_per_s": finite(resident_rate)}));
        }
    }
    let compile = compile_times(compile_trees)?;
    if json {
        let device = gpu.map(|g| json!({"name": g.describe(), "software": g.is_software()}));
        let v =
            json!({"elements": elements, "device": device, "kernels": rows, "compile_ms": compile});
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(
            out,
            "\ncompile time per candidate (parse -> callable), {compile_trees} random trees of height <= 10:"
        )?;
        for (kind, stats) in compile.as_object().into_iter().flatten() {
            let ms = |key: &str| stats[key].as_f64().unwrap_or(f64::NAN);
            writeln!(
                out,
                "  {kind:<9} median {:.3} ms, p90 {:.3} ms, max {:.3} ms",
                ms("median"),
                ms("p90"),
                ms("max")
            )?;
        }
    }
    Ok(())
}

/// Elements/second of `e`'s WGSL kernel: uploading inputs and reading outputs back (best of
/// 3), and dispatching on data already on the device (10 dispatches, after a warm-up).
fn wgsl_rates(
    gpu: &Gpu,
    e: &LossExpr,
    kind: KernelKind,
    y: &[f32],
    yhat: &[f32],
) -> anyhow::Result<(f64, f64)> {
    let n = y.len();
    let mut kernel = GpuLossKernel::new(gpu, e, kind)?;
    kernel.run(gpu, y, yhat, e.weights())?;
    let mut failed = None;
    let copy = best_of_3(|| {
        if let Err(err) = kernel.run(gpu, y, yhat, e.weights()) {
            failed = Some(err);
        }
    });
    if let Some(err) = failed {
        return Err(err.into());
    }
    let reps = 10;
    let started = Instant::now();
    kernel.run_resident(gpu, n, reps)?;
    let resident = started.elapsed().as_secs_f64() / reps as f64;
    Ok((n as f64 / copy.as_secs_f64(), n as f64 / resident))
}

/// Deterministic inputs spread over a classification-like range.
fn inputs(n: usize) -> (Vec<f32>, Vec<f32>) {
    let y = (0..n)
        .map(|i| if i % 10 == 0 { 1.0 } else { 0.0 })
        .collect();
    let yhat = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 + 1e-4)
        .collect();
    (y, yhat)
}

fn best_of_3(mut f: impl FnMut()) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Output buffers, allocated once outside the timed region.
struct Outputs {
    loss: Vec<f32>,
    dyhat: Vec<f32>,
    dphi: Vec<f32>,
    d2: Vec<f32>,
}

impl Outputs {
    fn new(n: usize, e: &LossExpr) -> Outputs {
        let k = e.n_weights();
        Outputs {
            loss: vec![0.0; n],
            dyhat: vec![0.0; n],
            dphi: vec![0.0; n * k],
            d2: vec![0.0; n * k],
        }
    }

    fn full(&mut self) -> FullBatchMut<'_> {
        FullBatchMut {
            loss: &mut self.loss,
            dyhat: &mut self.dyhat,
            dphi: &mut self.dphi,
            d2: &mut self.d2,
        }
    }
}

fn run_interp(e: &LossExpr, kind: KernelKind, y: &[f32], yhat: &[f32], o: &mut Outputs) {
    if kind == KernelKind::LossGrad {
        interp::loss_grad_batch(e, y, yhat, e.weights(), &mut o.loss, &mut o.dyhat);
    } else {
        interp::full_batch(e, y, yhat, e.weights(), o.full());
    }
}

fn run_jit(kernel: &jit::JitKernel, e: &LossExpr, y: &[f32], yhat: &[f32], o: &mut Outputs) {
    let res = if kernel.kind() == KernelKind::LossGrad {
        kernel.loss_grad(y, yhat, e.weights(), &mut o.loss, &mut o.dyhat)
    } else {
        kernel.full(y, yhat, e.weights(), o.full())
    };
    res.expect("buffers are sized for the kernel");
}

/// Median and p90 of parse + compile + link per tree, each kind compiled in batches of 50
/// (as a generation would be) and timed per tree.
fn compile_times(n_trees: usize) -> anyhow::Result<serde_json::Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(2023);
    let texts: Vec<String> = (0..n_trees)
        .map(|_| random_tree(&mut rng, Method::Grow, 0, 10).to_string())
        .collect();
    let mut res = serde_json::Map::new();
    for (label, kind) in [
        ("loss", KernelKind::Loss),
        ("loss_grad", KernelKind::LossGrad),
        ("full", KernelKind::Full),
    ] {
        let mut ms = Vec::with_capacity(n_trees);
        for chunk in texts.chunks(50) {
            let mut batch = JitBatch::new()?;
            for text in chunk {
                let t = Instant::now();
                let e = parse_expr(text)?;
                batch.add(&e, kind)?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            // Linking is per batch; spread it over the batch's trees.
            let t = Instant::now();
            let kernels = batch.finish()?;
            let link = t.elapsed().as_secs_f64() * 1e3 / kernels.len().max(1) as f64;
            let start = ms.len() - chunk.len();
            ms[start..].iter_mut().for_each(|m| *m += link);
        }
        ms.sort_by(f64::total_cmp);
        let q = |p: f64| ms[((ms.len() - 1) as f64 * p) as usize];
        res.insert(
            label.into(),
            json!({"median": q(0.5), "p90": q(0.9), "max": q(1.0)}),
        );
    }
    Ok(res.into())
}

/// Runs the `--worker` measurement in child processes with 1 and with all GEMM threads.
fn bench_train(
    manifest: &Path,
    steps: usize,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for threads in [1, all] {
        let child = Command::new(std::env::current_exe()?)
            .args(["bench", "train", "--worker", "--steps", &steps.to_string()])
            .arg(manifest)
            .env("EVOMAL_MODEL_THREADS", threads.to_string())
            .output()
            .context("running the benchmark worker")?;
        if !child.status.success() {
            // The worker's error, without the `error: ` that `main` puts before it again.
            let err = String::from_utf8_lossy(&child.stderr);
            let err = err.trim();
            bail!("{}", err.strip_prefix("error: ").unwrap_or(err));
        }
        let mut row: serde_json::Value =
            serde_json::from_slice(&child.stdout).context("reading the worker's report")?;
        row["threads"] = threads.into();
        rows.push(row);
        if all == 1 {
            break;
        }
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let first = &rows[0];
    writeln!(
        out,
        "{} / {}: {} parameters, batch {}, {} timed steps",
        first["task"].as_str().unwrap_or("?"),
        first["model"].as_str().unwrap_or("?"),
        first["n_params"],
        first["batch"],
        steps
    )?;
    for r in &rows {
        writeln!(
            out,
            "  {:>2} thread(s): {:>10.3} steps/s  (~{:.1} GFLOP/s if dense: 6 x batch x params per step)",
            r["threads"],
            r["steps_per_s"].as_f64().unwrap_or(f64::NAN),
            r["gflops_estimate"].as_f64().unwrap_or(f64::NAN)
        )?;
    }
    Ok(())
}

/// Times `steps` training steps (after a warm-up) with the task's baseline loss.
fn train_steps_per_second(manifest: &Path, steps: usize) -> anyhow::Result<String> {
    let manifest = Manifest::load(manifest)?;
    let plugin = TaskPlugin::open(&manifest.plugin(), &manifest.data_json())?;
    let task = Task::new(&plugin);
    let loss = task.kind.baseline();
    let kernel = jit::compile(&loss, KernelKind::LossGrad)?;
    let mut model = plugin.create_model(&manifest.task.model, &manifest.params_json())?;
    let n_params = model.n_params();
    let cfg = manifest.testing_config();
    let mut run = |steps: usize, seed: u64| {
        let cfg = TrainConfig {
            steps,
            ..cfg.clone()
        };
        let w = loss.weights();
        model.init(seed)?;
        task.train(&mut model, &kernel, w, &cfg, seed, &mut |_| {})
    };
    // A fifth of the timed steps (2 to 20): enough to fault in every buffer, short for models
    // that take seconds a step.
    run((steps / 5).clamp(2, 20), 0)?;
    let t = Instant::now();
    run(steps, 1)?;
    let rate = steps as f64 / t.elapsed().as_secs_f64();
    let batch = cfg.batch.min(task.split_size(0));
    Ok(json!({
        "task": plugin.name(),
        "model": manifest.task.model,
        "n_params": n_params,
        "batch": batch,
        "steps_per_s": rate,
        "gflops_estimate": rate * 6.0 * batch as f64 * n_params as f64 / 1e9,
    })
    .to_string())
}
