//! WGSL loss kernels on a real wgpu adapter (lavapipe on CI) against the reference
//! interpreter: every output of the full kernel on random trees.

use evomal::backend::KernelKind;
use evomal::expr::LossExpr;
use evomal::expr::deriv::{Arith, Sweep};
use evomal::expr::interp::{self, FullBatchMut};
use evomal::gpu::loss::{GpuLossKernel, LossOutputs};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use crate::gpu::gpu;
use crate::strategies::{batch, close, tree};

/// Relative tolerance against the interpreter: WGSL computes in f32 with the driver's own
/// `log`, `tanh` and `sqrt`.
const TOL: f32 = 1e-3;

/// The sweeps on f32: what an exact f32 backend computes. A value passes when it is within
/// `TOL` of this or of the f64 interpreter, or within a few times this one's own error, so f32
/// cancellation the interpreter does not suffer is not counted against the shader.
struct F32;

impl Arith for F32 {
    type V = f32;
    type C = bool;
    fn constant(&mut self, c: f64) -> f32 {
        c as f32
    }
    fn add(&mut self, a: f32, b: f32) -> f32 {
        a + b
    }
    fn sub(&mut self, a: f32, b: f32) -> f32 {
        a - b
    }
    fn mul(&mut self, a: f32, b: f32) -> f32 {
        a * b
    }
    fn div(&mut self, a: f32, b: f32) -> f32 {
        a / b
    }
    fn neg(&mut self, a: f32) -> f32 {
        -a
    }
    fn abs(&mut self, a: f32) -> f32 {
        a.abs()
    }
    fn sqrt(&mut self, a: f32) -> f32 {
        a.sqrt()
    }
    fn ln(&mut self, a: f32) -> f32 {
        a.ln()
    }
    fn tanh(&mut self, a: f32) -> f32 {
        a.tanh()
    }
    fn lt(&mut self, a: f32, b: f32) -> bool {
        a < b
    }
    fn le(&mut self, a: f32, b: f32) -> bool {
        a <= b
    }
    fn select(&mut self, c: bool, then: f32, otherwise: f32) -> f32 {
        if c { then } else { otherwise }
    }
}

fn reference(e: &LossExpr, y: &[f32], yhat: &[f32]) -> (LossOutputs, LossOutputs) {
    let (n, k) = (y.len(), e.n_weights());
    let mut wide = LossOutputs {
        loss: vec![0.0; n],
        dyhat: vec![0.0; n],
        dphi: vec![0.0; n * k],
        d2: vec![0.0; n * k],
    };
    interp::full_batch(
        e,
        y,
        yhat,
        e.weights(),
        FullBatchMut {
            loss: &mut wide.loss,
            dyhat: &mut wide.dyhat,
            dphi: &mut wide.dphi,
            d2: &mut wide.d2,
        },
    );
    let mut narrow = LossOutputs::default();
    let mut sweep = Sweep::new(0.0f32);
    for (&y, &yhat) in y.iter().zip(yhat) {
        let out = sweep.full(&mut F32, e, y, yhat, e.weights());
        narrow.loss.push(out.loss);
        narrow.dyhat.push(out.dyhat.unwrap_or(0.0));
        narrow
            .dphi
            .extend(out.dphi.iter().map(|d| d.unwrap_or(0.0)));
        narrow.d2.extend(out.d2.iter().map(|d| d.unwrap_or(0.0)));
    }
    (wide, narrow)
}

/// What a comparison found, over many trees.
#[derive(Default)]
struct Tally {
    compared: usize,
    /// Non-finite references (WGSL promises no IEEE infinities or NaNs) and masked elements.
    skipped: usize,
    mismatches: Vec<String>,
}

impl Tally {
    fn compare(&mut self, e: &LossExpr, what: &str, got: &[f32], wide: &[f32], narrow: &[f32]) {
        assert_eq!(got.len(), wide.len(), "{what} of {e}: output length");
        for (i, ((&g, &w), &f)) in got.iter().zip(wide).zip(narrow).enumerate() {
            if !w.is_finite() || !f.is_finite() {
                self.skipped += 1;
                continue;
            }
            self.compared += 1;
            // Where f32 rounding alone moves the value (the f32 sweep is off the interpreter
            // by `d`), the shader may be off by a few times that.
            let d = (f as f64 - w as f64).abs();
            let err = (g as f64 - w as f64).abs();
            if !(close(g, w, TOL) || close(g, f, TOL) || err <= 8.0 * d + 1e-5) {
                self.mismatches.push(format!(
                    "{what}[{i}] of {e}: gpu {g:e}, interpreter {w:e}, f32 sweep {f:e}"
                ));
            }
        }
    }
}

/// Elements where the interpreter itself jumps under a nudge of the inputs far smaller than f32
/// rounding of intermediate values: a protected-operator clamp, a `min`/`max` or `sign` switch
/// sits there, and which branch f32 lands on is a coin toss. They are compared as NaN (skipped).
fn mask_discontinuities(e: &LossExpr, y: &[f32], yhat: &[f32], wide: &mut LossOutputs) -> usize {
    let k = e.n_weights();
    let nudge = |v: f32, s: f32| v + s * (v.abs() * 1e-5 + 1e-6);
    let mut masked = 0;
    for i in 0..y.len() {
        let at =
            |yy: f32, yh: f32| interp::derivatives(e, &widen(e.weights()), yy as f64, yh as f64);
        let base = at(y[i], yhat[i]);
        let jumps = [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)]
            .iter()
            .any(|&(sy, sh)| {
                let p = at(nudge(y[i], sy), nudge(yhat[i], sh));
                let far = |a: f64, b: f64| !close(a as f32, b as f32, 1e-2) && (a - b).abs() > 1e-4;
                far(p.loss, base.loss)
                    || far(p.dyhat, base.dyhat)
                    || p.dphi.iter().zip(&base.dphi).any(|(&a, &b)| far(a, b))
                    || p.d2.iter().zip(&base.d2).any(|(&a, &b)| far(a, b))
            });
        if jumps {
            masked += 1;
            wide.loss[i] = f32::NAN;
            wide.dyhat[i] = f32::NAN;
            wide.dphi[i * k..(i + 1) * k].fill(f32::NAN);
            wide.d2[i * k..(i + 1) * k].fill(f32::NAN);
        }
    }
    masked
}

fn widen(w: &[f32]) -> Vec<f64> {
    w.iter().map(|&v| v as f64).collect()
}

fn check(e: &LossExpr, y: &[f32], yhat: &[f32], tally: &mut Tally) {
    let (mut wide, narrow) = reference(e, y, yhat);
    mask_discontinuities(e, y, yhat, &mut wide);
    let mut full = GpuLossKernel::new(gpu(), e, KernelKind::Full).unwrap();
    let got = full.run(gpu(), y, yhat, e.weights()).unwrap();
    tally.compare(e, "loss", &got.loss, &wide.loss, &narrow.loss);
    tally.compare(e, "dM/dyhat", &got.dyhat, &wide.dyhat, &narrow.dyhat);
    tally.compare(e, "dM/dphi", &got.dphi, &wide.dphi, &narrow.dphi);
    tally.compare(e, "d2M/(dyhat dphi)", &got.d2, &wide.d2, &narrow.d2);
}

/// 2,000 random trees of height <= 8 with random weights, up to 64 inputs each with the
/// protected operators' edge cases over-represented; every output of the full kernel.
///
/// f32 against f64 leaves a residue the tolerances cannot tell from noise: a saturated
/// `tanh(y)` is exactly 1 in f32 and `abs(log(.))` switches branch there. So a few
/// mismatches in ten thousand values are allowed, and printed; a wrong lowering of any operator
/// fails thousands.
#[test]
fn wgsl_equals_the_interpreter_on_random_trees() {
    let mut runner = TestRunner::new(crate::strategies::config(2_000));
    let cases = runner.config().cases;
    let strategy = (tree(8), batch(64));
    let mut tally = Tally::default();
    for _ in 0..cases {
        let (e, (y, yhat)) = strategy.new_tree(&mut runner).unwrap().current();
        check(&e, &y, &yhat, &mut tally);
    }
    eprintln!(
        "{cases} trees: {} values compared, {} skipped, {} mismatches",
        tally.compared,
        tally.skipped,
        tally.mismatches.len()
    );
    for m in tally.mismatches.iter().take(10) {
        eprintln!("  {m}");
    }
    assert!(
        tally.compared > 50 * cases as usize,
        "too few values compared"
    );
    assert!(
        tally.mismatches.len() * 10_000 <= 5 * tally.compared,
        "{} of {} values differ (more than 5 in 10,000); first: {}",
        tally.mismatches.len(),
        tally.compared,
        tally.mismatches[0]
    );
}
