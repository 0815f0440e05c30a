//! The JIT against the reference interpreter, output by output, on random trees and inputs.

use evomal::backend::KernelKind;
use evomal::backend::jit::JitBatch;
use evomal::expr::LossExpr;
use evomal::expr::interp::{self, FullBatchMut};
use proptest::prelude::*;

use crate::strategies::{batch, close, tree};

const TOL: f32 = 1e-5;

/// Runs all three kernels of `e` through the JIT and the interpreter and compares every output.
fn check(e: &LossExpr, y: &[f32], yhat: &[f32]) -> Result<(), TestCaseError> {
    let n = y.len();
    let k = e.n_weights();
    let w = e.weights();
    let mut jit = JitBatch::new().unwrap();
    for kind in [KernelKind::Loss, KernelKind::LossGrad, KernelKind::Full] {
        jit.add(e, kind).unwrap();
    }
    let kernels = jit.finish().unwrap();

    let mut want = Outputs::new(n, k);
    interp::full_batch(e, y, yhat, w, want.as_mut());
    let mut got = Outputs::new(n, k);

    kernels[0].loss(y, yhat, w, &mut got.loss).unwrap();
    compare(e, "loss (kernel a)", &got.loss, &want.loss)?;

    let mut dyhat = vec![0.0; n];
    got.loss.fill(0.0);
    kernels[1]
        .loss_grad(y, yhat, w, &mut got.loss, &mut dyhat)
        .unwrap();
    compare(e, "loss (kernel b)", &got.loss, &want.loss)?;
    compare(e, "dM/dyhat (kernel b)", &dyhat, &want.dyhat)?;

    kernels[2].full(y, yhat, w, got.as_mut()).unwrap();
    compare(e, "loss (kernel c)", &got.loss, &want.loss)?;
    compare(e, "dM/dyhat (kernel c)", &got.dyhat, &want.dyhat)?;
    compare(e, "dM/dphi (kernel c)", &got.dphi, &want.dphi)?;
    compare(e, "d2M/(dyhat dphi) (kernel c)", &got.d2, &want.d2)?;

    // The interpreter's own kernels agree with its plain evaluator.
    let mut plain = vec![0.0; n];
    interp::loss_batch(e, y, yhat, w, &mut plain);
    compare(e, "interpreter eval vs sweep", &plain, &want.loss)?;
    Ok(())
}

fn compare(e: &LossExpr, what: &str, got: &[f32], want: &[f32]) -> Result<(), TestCaseError> {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            close(g, w, TOL),
            "{what}[{i}] of {e}: jit {g:e}, interpreter {w:e}"
        );
    }
    Ok(())
}

struct Outputs {
    loss: Vec<f32>,
    dyhat: Vec<f32>,
    dphi: Vec<f32>,
    d2: Vec<f32>,
}

impl Outputs {
    fn new(n: usize, k: usize) -> Outputs {
        Outputs {
            loss: vec![f32::NAN; n],
            dyhat: vec![f32::NAN; n],
            dphi: vec![f32::NAN; n * k],
            d2: vec![f32::NAN; n * k],
        }
    }

    fn as_mut(&mut self) -> FullBatchMut<'_> {
        FullBatchMut {
            loss: &mut self.loss,
            dyhat: &mut self.dyhat,
            dphi: &mut self.dphi,
            d2: &mut self.d2,
        }
    }
}

proptest! {
    #![proptest_config(crate::strategies::config(10_000))]

    #[test]
    fn jit_equals_interpreter_on_random_trees(e in tree(10), (y, yhat) in batch(8)) {
        check(&e, &y, &yhat)?;
    }
}

#[test]
fn jit_equals_interpreter_on_protected_edges() {
    // Inputs that sit on every clamp, tie and sign boundary of the operator set.
    let edges = [
        0.0f32,
        -0.0,
        1e-7,
        -1e-7,
        1e-8,
        -1e-8,
        1.0,
        -1.0,
        1e6,
        -1e6,
        f32::MAX,
    ];
    let exprs = [
        "log(yhat)",
        "sqrt(yhat)",
        "sign(yhat)",
        "abs(sub(yhat, y))",
        "min(y, yhat)",
        "max(y, yhat)",
        "aq(y, yhat)",
        "tanh(mul(yhat, y))",
        "square(square(square(yhat)))",
        "sub(square(square(square(square(yhat)))), square(square(square(square(y)))))",
        "0.5*log(mul(y, yhat))",
        "max(-1*sqrt(yhat), 2*min(y, log(yhat)))",
    ];
    let (mut y, mut yhat) = (Vec::new(), Vec::new());
    for &a in &edges {
        for &b in &edges {
            y.push(a);
            yhat.push(b);
        }
    }
    for s in exprs {
        let e: LossExpr = s.parse().unwrap();
        check(&e, &y, &yhat).unwrap_or_else(|err| panic!("{s}: {err}"));
    }
}
