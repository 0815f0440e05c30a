//! Finite-difference checks of every derivative the interpreter (and so the JIT) produces.

use evomal::expr::LossExpr;
use evomal::expr::interp::{self, Derivatives};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use crate::strategies::tree;

/// Central difference of `f` at `x`, or `None` where `f` is not smooth at the scale of the step:
/// at a kink (a tie in `min`/`max`, an active clamp, `abs` at 0) the one-sided slopes differ,
/// and at a jump (`sign` at 0) the estimate scales with 1/h. There the analytic derivative
/// follows the documented subgradient and finite differences cannot check it.
fn central(mut f: impl FnMut(f64) -> f64, x: f64) -> Option<f64> {
    let h = 1e-6 * x.abs().max(1.0);
    let (lo, mid, hi) = (f(x - h), f(x), f(x + h));
    let (left, right) = ((mid - lo) / h, (hi - mid) / h);
    let c = (hi - lo) / (2.0 * h);
    let c2 = (f(x + 2.0 * h) - f(x - 2.0 * h)) / (4.0 * h);
    let tol = 2e-4 * (1.0 + c.abs());
    let smooth = c.is_finite() && (left - right).abs() <= tol && (c - c2).abs() <= tol;
    smooth.then_some(c)
}

fn agrees(analytic: f64, fd: f64) -> bool {
    (analytic - fd).abs() <= 1e-4 * (1.0 + analytic.abs().max(fd.abs()))
}

#[derive(Default)]
struct Tally {
    checked: usize,
    skipped: usize,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, what: &str, e: &LossExpr, at: (f64, f64), analytic: f64, fd: Option<f64>) {
        match fd {
            None => self.skipped += 1,
            Some(fd) => {
                self.checked += 1;
                if !agrees(analytic, fd) {
                    self.failures.push(format!(
                        "{what} of {e} at {at:?}: analytic {analytic:e}, fd {fd:e}"
                    ));
                }
            }
        }
    }
}

#[test]
fn every_derivative_matches_finite_differences() {
    let mut runner = TestRunner::deterministic();
    let trees = tree(6);
    let mut tally = Tally::default();
    let mut rng_point = 0u64;
    for _ in 0..3000 {
        let e = trees.new_tree(&mut runner).unwrap().current();
        if e.len() < 2 {
            continue;
        }
        let w: Vec<f64> = e.weights().iter().map(|&x| x as f64).collect();
        // A deterministic spread of points in general position (no ties, no clamps).
        rng_point = rng_point
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let y = ((rng_point >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0;
        let yhat = ((rng_point >> 3 & 0xffff) as f64 / 65536.0) * 3.0 - 1.5;
        let d: Derivatives = interp::derivatives(&e, &w, y, yhat);
        if !d.loss.is_finite() || d.loss.abs() > 1e6 {
            continue;
        }
        let mut scratch = Vec::new();
        let m = |yh: f64, wts: &[f64], s: &mut Vec<f64>| interp::eval_weighted(&e, wts, y, yh, s);
        let fd = central(|t| m(t, &w, &mut scratch), yhat);
        tally.record("dM/dyhat", &e, (y, yhat), d.dyhat, fd);
        for j in 0..e.n_weights() {
            let with_wj = |t: f64| {
                let mut w2 = w.clone();
                w2[j] = t;
                w2
            };
            let fd = central(|t| m(yhat, &with_wj(t), &mut Vec::new()), w[j]);
            tally.record(&format!("dM/dphi_{j}"), &e, (y, yhat), d.dphi[j], fd);
            let fd = central(
                |t| interp::derivatives(&e, &with_wj(t), y, yhat).dyhat,
                w[j],
            );
            tally.record(&format!("d2M/(dyhat dphi_{j})"), &e, (y, yhat), d.d2[j], fd);
        }
    }
    assert!(
        tally.failures.is_empty(),
        "{} of {} checks failed, e.g.:\n{}",
        tally.failures.len(),
        tally.checked,
        tally.failures[..tally.failures.len().min(10)].join("\n")
    );
    // The check must not pass by skipping: most points are smooth.
    assert!(
        tally.checked > 20_000,
        "only {} derivatives checked",
        tally.checked
    );
    assert!(
        tally.skipped * 5 < tally.checked,
        "{} skipped vs {} checked",
        tally.skipped,
        tally.checked
    );
}

#[test]
fn subgradient_conventions_at_kinks() {
    let d = |s: &str, y: f64, yhat: f64| {
        let e: LossExpr = s.parse().unwrap();
        interp::derivatives(&e, &vec![1.0; e.len()], y, yhat)
    };
    // sign(0) = 0 is abs's derivative at 0.
    assert_eq!(d("abs(sub(yhat, y))", 1.0, 1.0).dyhat, 0.0);
    // Ties in min/max send the gradient to the left operand.
    assert_eq!(d("min(yhat, y)", 2.0, 2.0).dyhat, 1.0);
    assert_eq!(d("min(y, yhat)", 2.0, 2.0).dyhat, 0.0);
    assert_eq!(d("max(yhat, y)", 2.0, 2.0).dyhat, 1.0);
    // The protected clamp has zero slope where it is active.
    assert_eq!(d("log(yhat)", 0.0, 1e-8).dyhat, 0.0);
    assert_eq!(d("sqrt(yhat)", 0.0, -1e-8).dyhat, 0.0);
    assert_eq!(d("log(yhat)", 0.0, -0.5).dyhat, -2.0);
    assert_eq!(d("sqrt(yhat)", 0.0, -4.0).dyhat, -0.25);
}
