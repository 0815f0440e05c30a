//! `evomal export RUN_DIR|EXPR --to TARGET`: a learned loss as code for another framework.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use evomal::backend::export::{Target, export};

use super::write_atomic;

#[derive(Args)]
pub struct ExportArgs {
    /// A results directory of `evomal run` (its best loss), `@FILE`, a loss expression, or
    /// `mse` / `ce`.
    source: String,
    /// What to write.
    #[arg(long, value_enum)]
    to: To,
    /// Write here instead of standard output.
    #[arg(short, long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum To {
    /// NumPy functions `learned_loss(y, yhat, w=WEIGHTS)` and its slope in yhat,
    /// `learned_loss_grad`.
    Numpy,
    /// A PyTorch function `learned_loss(y, yhat, w)` and a module `LearnedLoss` whose node
    /// weights are trainable parameters.
    Pytorch,
    /// A JAX function `learned_loss(params, y, yhat)`, differentiable in all three.
    Jax,
    /// A SymPy expression: `EXPR` in symbolic weights, `LOSS` with the learned ones.
    Sympy,
    /// A LaTeX formula.
    Latex,
}

pub fn run(args: ExportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let loss = super::loss_source(&args.source)?;
    let target = match args.to {
        To::Numpy => Target::Numpy,
        To::Pytorch => Target::Pytorch,
        To::Jax => Target::Jax,
        To::Sympy => Target::Sympy,
        To::Latex => Target::Latex,
    };
    let mut text = export(&loss, target);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match args.out {
        Some(path) => write_atomic(&path, text.as_bytes())?,
        None => out.write_all(text.as_bytes())?,
    }
    Ok(())
}
