//! What a search hands on: a loss expression (EvoMAL, GP-LFL, TaylorGLO) or an ML3 loss
//! network, and its trainable form.

use crate::backend::KernelKind;
use crate::backend::jit::{self, JitError, JitKernel};
use crate::expr::{LossExpr, Op};
use crate::search::ml3::LossNet;
use crate::train::objective::{ElementLoss, Weighted};

/// A learned (or given) loss.
#[derive(Clone, Debug, PartialEq)]
pub enum LearnedLoss {
    Expr(LossExpr),
    Network(LossNet),
}

/// A loss ready to train with: a compiled kernel under its weights, or a network.
pub enum Trainable {
    Kernel {
        kernel: JitKernel,
        weights: Vec<f32>,
    },
    Network(LossNet),
}

impl LearnedLoss {
    /// One line for people: the expression's prefix text, or what the network is.
    pub fn describe(&self) -> String {
        match self {
            LearnedLoss::Expr(e) => e.to_string(),
            LearnedLoss::Network(n) => format!(
                "ML3 loss network (2-{h}-{h}-1, {} weights)",
                n.weights.len(),
                h = crate::search::ml3::HIDDEN
            ),
        }
    }

    /// The expression, if the loss is one.
    pub fn expr(&self) -> Option<&LossExpr> {
        match self {
            LearnedLoss::Expr(e) => Some(e),
            LearnedLoss::Network(_) => None,
        }
    }

    /// Whether the loss depends on the prediction at all (a network always may).
    pub fn uses_yhat(&self) -> bool {
        match self {
            LearnedLoss::Expr(e) => e.contains(Op::Yhat),
            LearnedLoss::Network(_) => true,
        }
    }

    pub fn trainable(&self) -> Result<Trainable, JitError> {
        Ok(match self {
            LearnedLoss::Expr(e) => Trainable::Kernel {
                kernel: jit::compile(e, KernelKind::LossGrad)?,
                weights: e.weights().to_vec(),
            },
            LearnedLoss::Network(n) => Trainable::Network(n.clone()),
        })
    }
}

impl ElementLoss for Trainable {
    fn loss_grad(
        &self,
        y: &[f32],
        yhat: &[f32],
        loss: &mut [f32],
        grad: &mut [f32],
    ) -> Result<(), JitError> {
        match self {
            Trainable::Kernel { kernel, weights } => {
                Weighted { kernel, weights }.loss_grad(y, yhat, loss, grad)
            }
            Trainable::Network(n) => n.loss_grad(y, yhat, loss, grad),
        }
    }
}
