//! The local search's exact one-step meta-gradient against finite differences, through real
//! plugins; and the meta-training loop.

use evomal::expr::LossExpr;
use evomal::plugin::TaskPlugin;
use evomal::search::local::{LocalSearchConfig, LocalSearchError, MetaGradient, local_search};
use evomal::search::ml3::{self, LossNet};
use evomal::train::Task;

use crate::plugins::build_plugin;

/// The local search's settings the meta-gradient tests share (CPU and GPU).
pub fn cfg() -> LocalSearchConfig {
    // Nesterov and weight decay on, so lr_eff = lr (1 + momentum) is exercised.
    LocalSearchConfig {
        lr: 0.05,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-4,
        batch: 16,
        ..LocalSearchConfig::default()
    }
}

/// Compares dT/dphi with central differences of T over every effective weight.
fn check(plugin: &str, model: &str, params: &str, loss: &str) {
    let p = TaskPlugin::load(&build_plugin(plugin), "{}").unwrap();
    let task = Task::new(&p);
    let mut m = p.create_model(model, params).unwrap();
    let e: LossExpr = loss.parse().unwrap();
    let mut mg = MetaGradient::new(&task, &e, cfg()).unwrap();
    let phi: Vec<f32> = (0..e.len())
        .map(|j| 1.0 + 0.3 * (j as f32 * 1.7).sin())
        .collect();
    let (train, valid): (Vec<u64>, Vec<u64>) = (
        (0..16).map(|i| i * 5).collect(),
        (0..16).map(|i| i * 3).collect(),
    );
    let (t0, grad, _) = mg.compute(&mut m, &phi, 11, &train, &valid).unwrap();
    assert!(t0.is_finite());
    assert_eq!(grad[e.len() - 1], 0.0, "the root's weight never acts");
    let h = 1e-2f32;
    let mut nonzero = 0;
    for j in 0..e.n_weights() {
        let mut at = |d: f32| {
            let mut q = phi.clone();
            q[j] += d;
            mg.compute(&mut m, &q, 11, &train, &valid).unwrap().0 as f64
        };
        let fd = (at(h) - at(-h)) / (2.0 * h as f64);
        let a = grad[j] as f64;
        assert!(
            (a - fd).abs() <= 1e-4 + 2e-2 * fd.abs(),
            "{plugin} {loss}: dT/dphi_{j} = {a:e}, finite difference {fd:e}"
        );
        nonzero += (fd.abs() > 1e-4) as usize;
    }
    assert!(
        nonzero * 2 >= e.n_weights(),
        "{plugin} {loss}: only {nonzero} weights matter; the check is too weak"
    );
}

#[test]
fn meta_gradient_matches_finite_differences_on_regression() {
    check(
        "evomal-plugin-diabetes",
        "mlp",
        r#"{"hidden": [8], "activation": "tanh"}"#,
        "add(square(sub(y, yhat)), mul(0.3*y, tanh(yhat)))",
    );
}

#[test]
fn meta_gradient_matches_finite_differences_on_classification() {
    check(
        "evomal-plugin-digits",
        "mlp",
        r#"{"hidden": [12], "activation": "tanh"}"#,
        "add(mul(-1, mul(y, log(yhat))), 0.5*square(sub(y, yhat)))",
    );
}

#[test]
fn meta_training_lowers_the_validation_loss_and_refuses_more_inner_steps() {
    let p = TaskPlugin::load(&build_plugin("evomal-plugin-diabetes"), "{}").unwrap();
    let task = Task::new(&p);
    let mut m = p.create_model("linear", "{}").unwrap();
    // With a small base learning rate one step barely moves the model; the local search should
    // learn to scale the loss up.
    let e: LossExpr = "square(sub(y, yhat))".parse().unwrap();
    let cfg = LocalSearchConfig {
        meta_steps: 60,
        meta_lr: 0.05,
        lr: 0.05,
        batch: 64,
        ..LocalSearchConfig::default()
    };
    let res = local_search(&task, &mut m, &e, &cfg, 1).unwrap();
    assert!(!res.diverged && !res.used_fd_jvp);
    assert_eq!(res.trace.len(), 60);

    // The validation loss after the unrolled step, on the same fixed cases, before and after.
    let mut mg = MetaGradient::new(&task, &e, cfg.clone()).unwrap();
    let mut mean_t = |phi: &[f32]| {
        let mut total = 0.0;
        for case in 0..8u64 {
            let train: Vec<u64> = (0..64).map(|i| (i * 4 + case) % 265).collect();
            let valid: Vec<u64> = (0..64).map(|i| (i + case * 3) % 88).collect();
            total += mg
                .compute(&mut m, phi, 100 + case, &train, &valid)
                .unwrap()
                .0;
        }
        total / 8.0
    };
    let (before, after) = (mean_t(&vec![1.0; e.len()]), mean_t(res.loss.weights()));
    eprintln!(
        "validation loss after one step: {before} with unit weights, {after} learned ({})",
        res.loss
    );
    assert!(
        after < 0.9 * before,
        "validation loss after one step: {before} with unit weights, {after} learned"
    );

    let bad = LocalSearchConfig {
        inner_steps: 2,
        ..LocalSearchConfig::default()
    };
    let err = MetaGradient::new(&task, &e, bad).err().unwrap();
    assert!(matches!(err, LocalSearchError::InnerSteps(2)));
    assert!(
        err.to_string().contains("only the exact one-step case"),
        "{err}"
    );
}

/// The v3 meta-gradient through batch norm (batch statistics at theta0 and at theta1), residual
/// blocks, a strided convolution and dropout (the same masks in the look-ahead and the JVP).
#[test]
fn meta_gradient_matches_finite_differences_on_a_resnet_with_batch_norm() {
    check(
        "evomal-plugin-digits",
        "resnet",
        r#"{"width": 4, "activation": "tanh", "dropout": 0.2}"#,
        "add(mul(-1, mul(y, log(yhat))), 0.5*square(sub(y, yhat)))",
    );
}

/// ML3's meta-gradient (through the network's contraction) against central differences of the
/// validation loss over a spread of the network's weights. `dM/dyhat` jumps where a hidden
/// ReLU switches, so a difference that straddles a switch is no derivative: a weight whose
/// forward and backward differences, or whose differences at `h` and `h/4`, disagree is
/// skipped, and most must remain.
fn check_ml3(plugin: &str, config: &str, model: &str, params: &str) {
    let p = TaskPlugin::load(&build_plugin(plugin), config).unwrap();
    let task = Task::new(&p);
    let mut m = p.create_model(model, params).unwrap();
    let mut mg = MetaGradient::for_network(&task, cfg()).unwrap();
    let phi = LossNet::kaiming(3).weights;
    let (train, valid): (Vec<u64>, Vec<u64>) = (
        (0..16).map(|i| i * 5).collect(),
        (0..16).map(|i| i * 3).collect(),
    );
    let (t0, grad, _) = mg.compute(&mut m, &phi, 11, &train, &valid).unwrap();
    assert!(t0.is_finite());
    let (mut checked, mut nonzero) = (0, 0);
    let picks: Vec<usize> = (0..ml3::N_WEIGHTS).step_by(53).collect();
    for &j in &picks {
        let mut at = |d: f32| {
            let mut q = phi.clone();
            q[j] += d;
            mg.compute(&mut m, &q, 11, &train, &valid).unwrap().0 as f64
        };
        let (h, t0) = (1e-2f32, at(0.0));
        let (up, down) = (at(h), at(-h));
        let (forward, backward) = ((up - t0) / h as f64, (t0 - down) / h as f64);
        let narrow = (at(h / 4.0) - at(-h / 4.0)) / (h as f64 / 2.0);
        let wide = (up - down) / (2.0 * h as f64);
        let agree = |a: f64, b: f64| (a - b).abs() <= 1e-5 + 0.1 * b.abs().max(a.abs());
        if !(agree(forward, backward) && agree(wide, narrow)) {
            continue;
        }
        let a = grad[j] as f64;
        assert!(
            (a - narrow).abs() <= 2e-5 + 5e-2 * narrow.abs(),
            "{plugin} ML3: dT/dphi_{j} = {a:e}, finite difference {narrow:e}"
        );
        checked += 1;
        nonzero += (narrow.abs() > 1e-5) as usize;
    }
    assert!(
        checked * 3 >= picks.len() * 2 && nonzero >= 10,
        "{plugin} ML3: {checked} of {} weights checked, {nonzero} of them non-zero: too weak",
        picks.len()
    );
}

#[test]
fn ml3_meta_gradient_matches_finite_differences_on_regression() {
    check_ml3(
        "evomal-plugin-diabetes",
        "{}",
        "mlp",
        r#"{"hidden": [8], "activation": "tanh"}"#,
    );
}

#[test]
fn ml3_meta_gradient_matches_finite_differences_on_classification() {
    check_ml3(
        "evomal-plugin-digits",
        "{}",
        "mlp",
        r#"{"hidden": [12], "activation": "tanh"}"#,
    );
}

/// A one-output classifier: the loss sees both classes of the softmax over `(0, z)`, and the
/// meta-gradient goes back through that map's transpose.
#[test]
fn ml3_meta_gradient_matches_finite_differences_on_a_one_output_classifier() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plugins/csv/examples/breast_cancer.csv");
    let config = serde_json::json!({
        "file": file, "target": "diagnosis", "kind": "classification", "binary": "sigmoid",
    });
    check_ml3(
        "evomal-plugin-csv",
        &config.to_string(),
        "mlp",
        r#"{"hidden": [8], "activation": "tanh"}"#,
    );
}
