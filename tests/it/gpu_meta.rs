//! The local search on the GPU against the CPU's on a real wgpu adapter (lavapipe on CI): the
//! one-step meta-gradients, the initialisations drawn ahead, and whole walks.
//!
//! Like `gpu.rs`, these tests need an adapter and fail, loudly, without one.

use evomal::expr::LossExpr;
use evomal::gpu::population::{GpuMetaGradient, PopulationTrainer};
use evomal::plugin::TaskPlugin;
use evomal::search::local::{LocalSearchConfig, MetaGradient, MetaStep, local_search};
use evomal::train::Task;

use crate::gpu::{gpu, shipped};
use crate::plugins::build_plugin;

/// The one-step meta-gradient on the GPU against `MetaGradient` on the CPU, candidate by
/// candidate, at weights away from 1 and on batches of their own.
pub fn meta_gradients_agree(p: &TaskPlugin, model: &str, params: &str, losses: &[&str]) {
    let task = Task::new(p);
    let mut m = p.create_model(model, params).unwrap();
    let cfg = crate::local_search::cfg();
    let losses: Vec<LossExpr> = losses.iter().map(|l| l.parse().unwrap()).collect();
    let trainer = PopulationTrainer::new(gpu(), &task, &m, losses.len(), 1).unwrap();
    let mut on_gpu = GpuMetaGradient::new(&trainer, &losses, &cfg).unwrap();
    let phis: Vec<Vec<f32>> = losses
        .iter()
        .enumerate()
        .map(|(c, e)| {
            (0..e.len())
                .map(|j| 1.0 + 0.3 * ((c + j) as f32 * 1.7).sin())
                .collect()
        })
        .collect();
    let train: Vec<Vec<u64>> = (0..losses.len())
        .map(|c| (0..16).map(|i| i * 5 + c as u64).collect())
        .collect();
    let valid: Vec<Vec<u64>> = (0..losses.len())
        .map(|c| (0..16).map(|i| i * 3 + c as u64).collect())
        .collect();
    let steps: Vec<Option<MetaStep<'_>>> = (0..losses.len())
        .map(|c| {
            Some(MetaStep {
                phi: &phis[c],
                train: &train[c],
                valid: &valid[c],
                init_seed: 11 + c as u64,
                next_init_seed: None,
            })
        })
        .collect();
    let got = on_gpu.compute(&mut m, &steps).unwrap();
    for (c, e) in losses.iter().enumerate() {
        let mut cpu = MetaGradient::new(&task, e, cfg.clone()).unwrap();
        let (val, grad, _) = cpu
            .compute(&mut m, &phis[c], 11 + c as u64, &train[c], &valid[c])
            .unwrap();
        let (gval, ggrad) = got[c].clone().unwrap();
        eprintln!(
            "{} {e}: validation loss cpu {val} gpu {gval}; dT/dphi cpu {grad:?} gpu {ggrad:?}",
            p.name()
        );
        assert!(
            (val - gval).abs() <= 1e-4 * val.abs().max(1.0),
            "{e}: validation loss {val} vs {gval}"
        );
        let scale = grad.iter().fold(0.0f32, |a, g| a.max(g.abs()));
        assert!(scale > 0.0, "{e}: a zero meta-gradient checks nothing");
        for (j, (a, b)) in grad.iter().zip(&ggrad).enumerate() {
            assert!(
                (a - b).abs() <= 1e-3 * scale + 1e-7,
                "{e}: dT/dphi_{j} cpu {a:e} gpu {b:e}"
            );
        }
    }
}

#[test]
fn meta_gradients_on_the_gpu_equal_the_cpus() {
    meta_gradients_agree(
        &shipped("evomal-plugin-diabetes"),
        "mlp",
        r#"{"hidden": [16]}"#,
        &[
            "square(sub(y, yhat))",
            "add(abs(sub(y, yhat)), tanh(mul(yhat, y)))",
            "aq(sub(y, yhat), yhat)",
        ],
    );
    meta_gradients_agree(
        &shipped("evomal-plugin-digits"),
        "mlp",
        r#"{"hidden": [16]}"#,
        &[
            "mul(-1, mul(y, log(yhat)))",
            "square(sub(y, yhat))",
            "add(mul(-1, mul(y, log(yhat))), square(yhat))",
        ],
    );
    for (model, params) in [
        ("cnn", "{}"),
        ("lenet5", "{}"),
        ("resnet", r#"{"dropout": 0.3}"#),
        ("resnet", r#"{"width": 40, "blocks": [1]}"#),
    ] {
        meta_gradients_agree(
            &shipped("evomal-plugin-digits"),
            model,
            params,
            &[
                "mul(-1, mul(y, log(yhat)))",
                "add(mul(-1, mul(y, log(yhat))), square(yhat))",
            ],
        );
    }
}

/// The next step's initialisations are drawn while the device computes the current one; a
/// draw serves only the step whose seed it was drawn from (a walk that diverges leaves its
/// draw unused, and its slot may later go to another seed).
#[test]
fn initialisations_drawn_ahead_serve_only_their_own_seed() {
    let p = shipped("evomal-plugin-diabetes");
    let task = Task::new(&p);
    let mut m = p.create_model("mlp", r#"{"hidden": [16]}"#).unwrap();
    let cfg = LocalSearchConfig {
        batch: 16,
        ..LocalSearchConfig::default()
    };
    let losses: Vec<LossExpr> = ["square(sub(y, yhat))", "abs(sub(y, yhat))"]
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    let phi = [1.0f32; 4];
    let batch: Vec<u64> = (0..16).collect();
    let steps = |seeds: [u64; 2], next: [Option<u64>; 2]| -> Vec<Option<MetaStep<'_>>> {
        (0..2)
            .map(|c| {
                Some(MetaStep {
                    phi: &phi[..losses[c].len()],
                    train: &batch,
                    valid: &batch,
                    init_seed: seeds[c],
                    next_init_seed: next[c],
                })
            })
            .collect()
    };
    let trainer = PopulationTrainer::new(gpu(), &task, &m, 2, 1).unwrap();
    let fresh = GpuMetaGradient::new(&trainer, &losses, &cfg)
        .unwrap()
        .compute(&mut m, &steps([5, 6], [None; 2]))
        .unwrap();
    let mut ahead = GpuMetaGradient::new(&trainer, &losses, &cfg).unwrap();
    ahead
        .compute(&mut m, &steps([1, 2], [Some(5), Some(99)]))
        .unwrap();
    let got = ahead.compute(&mut m, &steps([5, 6], [None; 2])).unwrap();
    assert_eq!(got, fresh, "drawn ahead for candidate 0; not for 1");
    let other = GpuMetaGradient::new(&trainer, &losses, &cfg)
        .unwrap()
        .compute(&mut m, &steps([5, 99], [None; 2]))
        .unwrap();
    assert_ne!(got[1], other[1], "the seeds' initialisations differ");
}

/// Whole local searches: the same walks (traces and learned weights) on both.
#[test]
fn a_local_search_walks_the_same_on_the_gpu() {
    let p = TaskPlugin::load(&build_plugin("evomal-plugin-diabetes"), "{}").unwrap();
    let task = Task::new(&p);
    let mut m = p.create_model("mlp", r#"{"hidden": [16]}"#).unwrap();
    let cfg = LocalSearchConfig {
        meta_steps: 15,
        meta_lr: 1e-2,
        batch: 32,
        ..LocalSearchConfig::default()
    };
    let losses: Vec<LossExpr> = [
        "square(sub(y, yhat))",
        "add(square(sub(y, yhat)), abs(yhat))",
    ]
    .iter()
    .map(|l| l.parse().unwrap())
    .collect();
    let seeds = [3, 4];
    let trainer = PopulationTrainer::new(gpu(), &task, &m, 2, 1).unwrap();
    let on_gpu = trainer.local_search(&mut m, &losses, &cfg, &seeds).unwrap();
    for ((e, &seed), g) in losses.iter().zip(&seeds).zip(&on_gpu) {
        let c = local_search(&task, &mut m, e, &cfg, seed).unwrap();
        assert_eq!(c.trace.len(), g.trace.len());
        for (a, b) in c.trace.iter().zip(&g.trace) {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs(),
                "{e}: trace {:?} vs {:?}",
                c.trace,
                g.trace
            );
        }
        for (a, b) in c.loss.weights().iter().zip(g.loss.weights()) {
            assert!(
                (a - b).abs() <= 1e-4,
                "{e}: learned {} vs {}",
                c.loss,
                g.loss
            );
        }
        assert_ne!(c.loss.weights(), e.weights(), "the walk moved");
    }
}
