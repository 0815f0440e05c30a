//! The rejection protocol and gradient equivalence through a real plugin.

use evomal::backend::KernelKind;
use evomal::backend::jit;
use evomal::expr::LossExpr;
use evomal::plugin::TaskPlugin;
use evomal::search::filters::{RejectionConfig, rejection_protocol};
use evomal::train::Task;

use crate::plugins::build_plugin;

fn run(plugin: &str, model: &str, loss: &str) -> evomal::search::filters::Rejection {
    let p = TaskPlugin::load(&build_plugin(plugin), "{}").unwrap();
    let task = Task::new(&p);
    let mut m = p.create_model(model, "{}").unwrap();
    let e: LossExpr = loss.parse().unwrap();
    let k = jit::compile(&e, KernelKind::LossGrad).unwrap();
    rejection_protocol(
        &task,
        &mut m,
        &k,
        e.weights(),
        &RejectionConfig::default(),
        0,
    )
    .unwrap()
}

#[test]
fn rejects_negated_mse_and_accepts_mse() {
    let mse = run("evomal-plugin-diabetes", "linear", "square(sub(y, yhat))");
    assert!(mse.accepted(), "{mse:?}");
    assert!(
        mse.after < 0.01 * mse.before,
        "{} -> {}",
        mse.before,
        mse.after
    );
    let neg = run(
        "evomal-plugin-diabetes",
        "linear",
        "mul(-1, square(sub(y, yhat)))",
    );
    assert!(!neg.accepted(), "{neg:?}");
    assert!(neg.after > neg.before);
}

#[test]
fn classification_uses_the_error_rate_of_the_free_logits() {
    let ce = run("evomal-plugin-digits", "mlp", "mul(-1, mul(y, log(yhat)))");
    assert!(ce.accepted() && ce.after == 0.0, "{ce:?}");
    // Rewarding the wrong classes makes things worse.
    let wrong = run("evomal-plugin-digits", "mlp", "mul(y, log(yhat))");
    assert!(!wrong.accepted(), "{wrong:?}");
}

#[test]
fn equivalent_losses_share_a_fingerprint_and_different_ones_do_not() {
    let a = run("evomal-plugin-diabetes", "linear", "square(sub(y, yhat))");
    let b = run("evomal-plugin-diabetes", "linear", "square(sub(yhat, y))");
    let c = run("evomal-plugin-diabetes", "linear", "abs(sub(y, yhat))");
    let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-2);
    assert_eq!(a.grad_norms.len(), 100);
    assert!(close(&a.grad_norms, &b.grad_norms));
    assert!(!close(&a.grad_norms, &c.grad_norms));
}
