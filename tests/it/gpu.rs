//! GPU training against the CPU path on a real wgpu adapter (lavapipe on CI): populations,
//! convolutional models, meta-tests, tile and chunk sizes, and a generation's fitness
//! (`gpu_meta.rs` has the local search's side).
//!
//! These tests need an adapter and fail, loudly, without one: CI installs Mesa's software
//! Vulkan driver for them.

use std::sync::OnceLock;

use evomal::backend::KernelKind;
use evomal::backend::jit;
use evomal::expr::LossExpr;
use evomal::gp::{self, GpConfig};
use evomal::gpu::Gpu;
use evomal::gpu::population::{PopulationTrainer, Tuning};
use evomal::plugin::{PluginModel, TaskPlugin};
use evomal::train::meta_test::meta_test;
use evomal::train::optim::OptimizerConfig;
use evomal::train::{Outcome, Task, TrainConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::plugins::build_plugin;

/// The process's adapter; a missing one fails every GPU test with the reason.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new() {
        Ok(gpu) => {
            eprintln!("GPU tests run on {}", gpu.describe());
            gpu
        }
        Err(e) => panic!("\n\n*** GPU TESTS FOUND NO ADAPTER ***\n{e}\n"),
    })
}

/// A shipped plugin with its default data.
pub fn shipped(plugin: &str) -> TaskPlugin {
    TaskPlugin::load(&build_plugin(plugin), "{}").unwrap()
}

/// Trains each loss on the CPU ([`Task::train`]) and all of them side by side on the GPU, from
/// the same initial parameters and batches; returns (CPU, GPU) validation metrics and the
/// largest difference of the trained parameters relative to the largest CPU parameter.
pub fn cpu_and_gpu(
    p: &TaskPlugin,
    model: &str,
    params: &str,
    losses: &[&str],
    cfg: &TrainConfig,
) -> Vec<(f64, f64, f32)> {
    let plugin = p.name();
    let task = Task::new(p);
    let mut m = p.create_model(model, params).unwrap();
    let seed = 7;
    let mut init = vec![0.0f32; m.n_params()];
    m.initial_params(seed, &mut init).unwrap();
    let losses: Vec<LossExpr> = losses.iter().map(|l| l.parse().unwrap()).collect();
    let trainer = PopulationTrainer::new(gpu(), &task, &m, losses.len(), 1).unwrap();
    let on_gpu = trainer
        .train(&losses, &init, cfg, seed, task.metric())
        .unwrap();
    losses
        .iter()
        .zip(on_gpu)
        .map(|(e, g)| {
            let kernel = jit::compile(e, KernelKind::LossGrad).unwrap();
            m.init(seed).unwrap();
            let outcome = task
                .train(&mut m, &kernel, e.weights(), cfg, seed, &mut |_| {})
                .unwrap();
            // The GPU sums a batch's loss in f32, the CPU in f64: overflow may come a step
            // apart.
            match (&outcome, &g.outcome) {
                (Outcome::Diverged { step: a }, Outcome::Diverged { step: b }) => {
                    assert!(
                        a.abs_diff(*b) <= 1,
                        "{e}: diverged at {a} on the CPU, {b} on the GPU"
                    )
                }
                (a, b) => assert_eq!(a, b, "{e}: outcome on the CPU and on the GPU"),
            }
            let cpu = task.evaluate(&mut m, 1, task.metric()).unwrap();
            let moved = relative_difference(&m.snapshot().unwrap()[..m.n_params()], &g.params);
            eprintln!(
                "{plugin} {model} {e}: validation {} cpu {cpu:.6} gpu {:.6}; parameters differ by {moved:e}",
                task.metric().name(),
                g.metric
            );
            (cpu, g.metric, moved)
        })
        .collect()
}

/// The largest difference between `reference` and `other`, relative to the largest value of
/// `reference`.
fn relative_difference(reference: &[f32], other: &[f32]) -> f32 {
    let scale = reference.iter().fold(0.0f32, |a, x| a.max(x.abs()));
    let moved = reference
        .iter()
        .zip(other)
        .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
    moved / scale
}

pub fn sgd(steps: usize, batch: usize, lr: f32) -> TrainConfig {
    TrainConfig {
        steps,
        batch,
        lr,
        milestones: vec![steps / 2],
        gamma: 0.5,
        optimizer: OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
        },
    }
}

/// Tolerance: f32 sums in another order, over 200 steps. Measured on lavapipe: relative
/// differences below 1e-4.
#[test]
fn a_population_trains_on_the_gpu_as_each_candidate_does_on_the_cpu() {
    let losses = [
        "square(sub(y, yhat))",
        "abs(sub(yhat, y))",
        "add(0.7*square(sub(y, yhat)), 0.3*tanh(abs(sub(y, yhat))))",
        "aq(square(sub(y, yhat)), 0.5*yhat)",
        // Rewards large outputs: diverges.
        "mul(-1, square(square(yhat)))",
    ];
    let runs = cpu_and_gpu(
        &shipped("evomal-plugin-diabetes"),
        "mlp",
        r#"{"hidden": [32]}"#,
        &losses,
        &sgd(200, 64, 0.01),
    );
    for &(cpu, gpu, _) in &runs[..4] {
        assert!(
            (cpu - gpu).abs() <= 1e-3 * cpu,
            "validation MSE: cpu {cpu}, gpu {gpu}"
        );
    }
    assert_eq!(runs[4].1, f64::INFINITY, "a diverged candidate scores +inf");
}

#[test]
fn classification_with_adam_matches_too() {
    let losses = [
        "mul(-1, mul(y, log(yhat)))",
        "square(sub(y, yhat))",
        "mul(-1, mul(y, 0.5*log(add(yhat, 0.1*1))))",
    ];
    let cfg = TrainConfig {
        optimizer: OptimizerConfig::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        ..sgd(100, 64, 1e-3)
    };
    for (cpu, gpu, _) in cpu_and_gpu(
        &shipped("evomal-plugin-digits"),
        "mlp",
        r#"{"hidden": [64]}"#,
        &losses,
        &cfg,
    ) {
        // Error rates over 360 validation images: a step is 1/360.
        assert!(
            (cpu - gpu).abs() <= 2.0 / 360.0 + 1e-9,
            "validation error: cpu {cpu}, gpu {gpu}"
        );
    }
}

/// Convolutions (padded, strided, 1x1), max, average and global pooling, batch norm (training
/// and evaluation), residual blocks (identity and projection shortcuts) and dropout (the
/// plugin's masks, drawn again on the GPU), on the 8x8 digits: the trained parameters agree to
/// f32 rounding (measured on lavapipe: below 3e-6 of the largest; a kernel off by 1% in one
/// channel of 40 moves them 5e-5), and so do the validation errors, which use the running
/// statistics. The ResNet uses tanh: with ReLU after batch norm, where many values sit near 0,
/// a rounding difference flips an activation's slope every few tens of steps and the runs part
/// by 1e-3 at once.
#[test]
fn convolutional_models_train_on_the_gpu_as_on_the_cpu() {
    let losses = [
        "mul(-1, mul(y, log(yhat)))",
        "square(sub(y, yhat))",
        "add(mul(-1, mul(y, log(yhat))), 0.3*abs(sub(y, yhat)))",
    ];
    // LeNet-5 (on the digits padded to 32x32) and the 40-channel ResNet cost lavapipe the most
    // per step, and train 8 steps: a kernel's error shows from the first (an input gradient
    // 0.1% off in one channel moves LeNet-5's parameters 3e-5 in 8 steps). The other two train
    // 40, to show that the runs stay together.
    let models = [
        ("cnn", "{}", 40),
        ("lenet5", "{}", 8),
        (
            "resnet",
            r#"{"dropout": 0.3, "blocks": [1, 1], "activation": "tanh"}"#,
            40,
        ),
        // 40 channels: convolutions' forward, input- and weight-gradient products on the
        // 16 x 64 tiles too.
        (
            "resnet",
            r#"{"width": 40, "blocks": [1], "dropout": 0.3, "activation": "tanh"}"#,
            8,
        ),
    ];
    for (model, params, steps) in models {
        for (cpu, gpu, moved) in cpu_and_gpu(
            &shipped("evomal-plugin-digits"),
            model,
            params,
            &losses,
            &sgd(steps, 32, 0.05),
        ) {
            assert!(moved <= 1e-5, "{model}: parameters differ by {moved:e}");
            assert!(
                (cpu - gpu).abs() <= 2.0 / 360.0 + 1e-9,
                "{model}: validation error cpu {cpu}, gpu {gpu}"
            );
        }
    }
}

/// `evomal train` on the GPU: each seed's initialisation, batches and dropout masks, the test
/// metric probed along the way, and the final scores, as the CPU's meta-test gives them; and
/// through the binary, the device in the results.
#[test]
fn a_meta_test_on_the_gpu_matches_the_cpus() {
    let p = TaskPlugin::load(&build_plugin("evomal-plugin-digits"), "{}").unwrap();
    let task = Task::new(&p);
    let mut m = p
        .create_model("resnet", r#"{"activation": "tanh"}"#)
        .unwrap();
    let loss: LossExpr = "mul(-1, mul(y, log(yhat)))".parse().unwrap();
    let cfg = sgd(60, 32, 0.05);
    let trainer = PopulationTrainer::new(gpu(), &task, &m, 1, 2).unwrap();
    let mut steps = 0;
    let on_gpu = trainer
        .meta_test(&mut m, &loss, &cfg, &[4, 5], task.metric(), 3, &mut |_| {
            steps += 1
        })
        .unwrap();
    assert_eq!(steps, 2 * 60);
    let trainable = evomal::search::learned::LearnedLoss::Expr(loss.clone())
        .trainable()
        .unwrap();
    let on_cpu = meta_test(&task, &mut m, &trainable, &cfg, &[4, 5], 3, &mut |_| {}).unwrap();
    // Error rates over 360 images: equal unless a rounding difference flips one image.
    let close = |a: f64, b: f64| (a - b).abs() <= 1.0 / 360.0 + 1e-9;
    for (g, c) in on_gpu.iter().zip(&on_cpu) {
        assert_eq!((g.seed, &g.outcome), (c.seed, &c.outcome));
        assert!(close(g.train.unwrap(), c.train.unwrap()), "{g:?} {c:?}");
        assert!(close(g.test.unwrap(), c.test.unwrap()), "{g:?} {c:?}");
        assert_eq!(g.curve.len(), 3);
        for (a, b) in g.curve.iter().zip(&c.curve) {
            assert!(
                a.0 == b.0 && close(a.1, b.1),
                "{:?} vs {:?}",
                g.curve,
                c.curve
            );
        }
    }
    assert_ne!(on_gpu[0].test, on_gpu[1].test, "two seeds, two runs");

    let dir = crate::scratch("gpu-train");
    let manifest = dir.path().join("cnn.toml");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks/digits-cnn.toml"),
    )
    .unwrap()
    .replace("steps = 2000", "steps = 40");
    std::fs::write(&manifest, text).unwrap();
    let out = dir.path().join("train.json");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_evomal"))
        .args([
            "train", "--quiet", "--loss", "ce", "--seeds", "0", "--device", "gpu",
        ])
        .arg(&manifest)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(report["device"].as_str().unwrap(), gpu().describe());
}

/// Candidates beyond what fits side by side train in turns, each as it would have together.
#[test]
fn candidates_in_turns_train_as_they_do_side_by_side() {
    let p = TaskPlugin::load(&build_plugin("evomal-plugin-digits"), "{}").unwrap();
    let task = Task::new(&p);
    let mut m = p.create_model("cnn", "{}").unwrap();
    let mut init = vec![0.0f32; m.n_params()];
    m.initial_params(3, &mut init).unwrap();
    let losses: Vec<LossExpr> = ["mul(-1, mul(y, log(yhat)))", "square(sub(y, yhat))"]
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    let cfg = sgd(10, 32, 0.05);
    let runs = |capacity| {
        let trainer = PopulationTrainer::new(gpu(), &task, &m, capacity, 1).unwrap();
        assert_eq!(trainer.side_by_side(&cfg), capacity);
        // Evaluation chunks of 256 rows; the model's values per row: input, two convolutions
        // with ReLU and max pooling, the read-out, and a gradient for each but the input.
        let per_row = 64 + 2 * (512 + 512 + 128 + 256 + 256 + 64 + 10);
        // The weight gradient's partial sums: the second convolution's (16 x (8 x 9 + 1)
        // parameters) over its 256 x 4 x 4 pixels in 4 chunks of 1024.
        let partials = 4 * 16 * (8 * 9 + 1);
        let floats = m.n_params() * 4 + 256 * per_row + partials;
        assert_eq!(trainer.bytes_per_candidate(&cfg), 4 * floats);
        trainer
            .train(&losses, &init, &cfg, 3, task.metric())
            .unwrap()
    };
    assert_eq!(runs(1), runs(2));
}

/// The products' sizes leave training as it was: other tilings train bit for bit as the
/// adapter's (each output's sum runs in the same order), shorter chunks of a convolution's
/// weight gradient (more partial sums, in another order) to within f32 rounding.
#[test]
fn other_tile_and_chunk_sizes_train_as_the_adapters() {
    let p = shipped("evomal-plugin-digits");
    let task = Task::new(&p);
    let mut m = p.create_model("cnn", "{}").unwrap();
    let mut init = vec![0.0f32; m.n_params()];
    m.initial_params(5, &mut init).unwrap();
    let losses: Vec<LossExpr> = ["mul(-1, mul(y, log(yhat)))", "square(sub(y, yhat))"]
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    let cfg = sgd(10, 64, 0.05);
    let run = |tiles: Option<&str>, min_chunk: Option<&str>| {
        let tuning = Tuning::with(gpu().limits(), tiles, min_chunk).unwrap();
        let trainer = PopulationTrainer::with_tuning(gpu(), &task, &m, 2, 1, tuning).unwrap();
        assert_eq!(trainer.tuning(), tuning);
        let runs = trainer
            .train(&losses, &init, &cfg, 5, task.metric())
            .unwrap();
        (runs, trainer.bytes_per_candidate(&cfg))
    };
    let (adapters, bytes) = run(None, None);
    // Each tiling three times over, so that every product runs in it.
    for tiling in ["128x64x8/8x4", "32x32x16/2x2", "8x32x8/1x4"] {
        let tiles = [tiling; 3].join(",");
        assert_eq!(
            run(Some(&tiles), None),
            (adapters.clone(), bytes),
            "{tiles}"
        );
    }
    // Memory is reckoned for the evaluation's chunks of 256 rows, where the second
    // convolution's partial sums take the most room: 16 x (8 x 9 + 1) parameters' worth per
    // chunk, over 256 x 4 x 4 pixels in 4 chunks of 1024, or 64 of 64.
    let (short, more_bytes) = run(None, Some("64"));
    assert_eq!(more_bytes - bytes, 4 * (64 - 4) * 16 * (8 * 9 + 1));
    for (a, s) in adapters.iter().zip(&short) {
        let moved = relative_difference(&a.params, &s.params);
        assert!(
            moved <= 1e-5,
            "parameters differ by {moved:e} of the largest"
        );
        assert_eq!(a.outcome, s.outcome);
    }
}

#[test]
fn models_describe_their_layers_and_the_gpu_refuses_what_it_cannot_run() {
    use evomal_sdk::abi::{LAYER_CONV2D, LAYER_DENSE, LAYER_DROPOUT, LAYER_MAX_POOL};
    let p = TaskPlugin::load(&build_plugin("evomal-plugin-digits"), "{}").unwrap();
    let task = Task::new(&p);
    let mlp = p.create_model("mlp", r#"{"hidden": [32]}"#).unwrap();
    let layers = mlp.layers().unwrap();
    let kinds: Vec<u32> = layers.iter().map(|l| l.kind).collect();
    assert_eq!(kinds.len(), 3, "{layers:?}");
    assert_eq!((kinds[0], kinds[2]), (LAYER_DENSE, LAYER_DENSE));
    assert_eq!((layers[0].inputs, layers[0].outputs), (64, 32));
    assert_eq!(layers[2].param_offset, 64 * 32 + 32);
    assert_eq!(layers[2].outputs, 10);

    let cnn = p.create_model("cnn", "{}").unwrap();
    let conv = cnn.layers().unwrap()[0];
    assert_eq!(conv.kind, LAYER_CONV2D);
    let shape = (conv.channels, conv.height, conv.width, conv.out_channels);
    assert_eq!(shape, (1, 8, 8, 8));
    let window = (conv.kernel, conv.stride, conv.padding, conv.bias);
    assert_eq!(window, (3, 1, 1, 1));
    let pool = cnn.layers().unwrap()[2];
    assert_eq!(
        (pool.kind, pool.kernel, pool.inputs),
        (LAYER_MAX_POOL, 2, 8 * 64)
    );
    // The ResNet ends in global pooling, dropout and the read-out.
    let resnet = p.create_model("resnet", r#"{"dropout": 0.25}"#).unwrap();
    let layers = resnet.layers().unwrap();
    let dropout = layers[layers.len() - 2];
    assert_eq!((dropout.kind, dropout.rate), (LAYER_DROPOUT, 0.25));
    assert!(PopulationTrainer::new(gpu(), &task, &resnet, 2, 1).is_ok());

    // A model that is not a layer stack (here: one that panics) is refused with the reason.
    let fixtures = TaskPlugin::load(&build_plugin("evomal-test-fixtures"), "{}").unwrap();
    let boom = fixtures.create_model("boom", "{}").unwrap();
    let err = PopulationTrainer::new(gpu(), &Task::new(&fixtures), &boom, 2, 1)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("does not describe itself"),
        "{err}"
    );
}

/// The fitness of a loss on the CPU, with how far it moves when the initial parameters move by
/// a relative 1e-6: losses with an unbounded slope (`sqrt` or `log` near 0) train chaotically,
/// and f32 rounding moves them as far.
fn cpu_fitness_and_spread(
    task: &Task<'_>,
    m: &mut PluginModel,
    e: &LossExpr,
    cfg: &TrainConfig,
    seed: u64,
) -> (f64, f64) {
    let kernel = jit::compile(e, KernelKind::LossGrad).unwrap();
    let mut at = |scale: f32| {
        m.init(seed).unwrap();
        let mut state = m.snapshot().unwrap();
        state[..m.n_params()].iter_mut().for_each(|p| *p *= scale);
        m.restore(&state).unwrap();
        let outcome = task
            .train(m, &kernel, e.weights(), cfg, seed, &mut |_| {})
            .unwrap();
        let f = task.evaluate(m, 1, task.metric()).unwrap();
        if outcome == Outcome::Finished && f.is_finite() {
            f
        } else {
            f64::INFINITY
        }
    };
    let f = at(1.0);
    let spread = [at(1.0 + 1e-6), at(1.0 - 1e-6)]
        .iter()
        .map(|g| (g - f).abs())
        .fold(0.0, f64::max);
    (f, spread)
}

/// A whole generation, the search's initial population, scored side by side on the GPU and one
/// by one on the CPU.
#[test]
fn a_generation_scores_the_same_on_the_gpu_as_on_the_cpu() {
    let p = TaskPlugin::load(&build_plugin("evomal-plugin-diabetes"), "{}").unwrap();
    let task = Task::new(&p);
    let mut m = p.create_model("mlp", r#"{"hidden": [32]}"#).unwrap();
    let gp = GpConfig::default();
    let population = gp::initial_population(&mut ChaCha8Rng::seed_from_u64(3), &gp);
    let cfg = TrainConfig {
        milestones: Vec::new(),
        gamma: 1.0,
        ..sgd(150, 64, 0.01)
    };
    let seed = 5;
    let mut init = vec![0.0f32; m.n_params()];
    m.initial_params(seed, &mut init).unwrap();
    let trainer = PopulationTrainer::new(gpu(), &task, &m, population.len(), 1).unwrap();
    let runs = trainer
        .train(&population, &init, &cfg, seed, task.metric())
        .unwrap();
    let (mut steady, mut chaotic) = (0, 0);
    for (e, run) in population.iter().zip(&runs) {
        let (cpu, spread) = cpu_fitness_and_spread(&task, &mut m, e, &cfg, seed);
        let gpu = run.metric;
        eprintln!("{e}: cpu {cpu:.6} (spread {spread:.1e}), gpu {gpu:.6}");
        // Where a 1e-6 nudge of the start moves the CPU's own fitness by over 1%, training is
        // chaotic (an unbounded slope such as sqrt's at 0) and the fitness is no reproducible
        // number, on any device: not compared.
        if spread > 1e-2 * cpu {
            chaotic += 1;
            continue;
        }
        // A run that overflows f32 on the GPU may still be finite (and huge) in the CPU's f64.
        let both_blown = cpu.min(gpu) > 1e10;
        let ok = both_blown || (cpu - gpu).abs() <= 1e-3 * cpu + 4.0 * spread;
        assert!(
            ok,
            "{e}: fitness {cpu} on the CPU, {gpu} on the GPU (spread {spread:e})"
        );
        steady += (cpu.is_finite() && spread <= 1e-4 * cpu) as usize;
    }
    assert!(
        steady >= 10,
        "only {steady} well-conditioned candidates: the test is too weak"
    );
    assert!(
        chaotic <= 10,
        "{chaotic} chaotic candidates of {}",
        population.len()
    );
}
