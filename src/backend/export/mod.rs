//! Source code for other tools: a learned loss as a NumPy, PyTorch or JAX function, a SymPy
//! expression, or LaTeX. Each program mirrors `expr::interp` exactly — protected `log` and
//! `sqrt` see `max(|x|, 1e-7)`, `aq(a, b) = a / sqrt(1 + b^2)`, `sign(0) = 0`, `min`/`max` pick
//! as the interpreter does, NaN included — and tests run each one against the interpreter.

mod latex;
mod python;

pub use latex::latex;

use crate::expr::{LossExpr, NodeId, Op};

/// The targets `evomal export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Numpy,
    Pytorch,
    Jax,
    Sympy,
    Latex,
}

/// `e` as a program (or, for LaTeX, a formula) for `target`.
pub fn export(e: &LossExpr, target: Target) -> String {
    match target {
        Target::Latex => latex(e),
        python => python::program(e, python),
    }
}

/// The argument `child` feeds its parent: its value times its weight, `w[i]` in the programs.
fn weighted(child: NodeId, value: &str) -> String {
    format!("w[{}] * {value}", child.idx())
}

/// Nodes in post-order with their children, for the generators.
fn nodes(e: &LossExpr) -> impl Iterator<Item = (usize, Op, &[NodeId])> {
    (0..e.len()).map(|i| {
        let id = NodeId(i as u32);
        (i, e.op(id), e.children(id))
    })
}
