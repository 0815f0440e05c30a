//! `evomal emit-shader (EXPR | RUN_DIR) [-o FILE] [--kind ...]`: a learned loss as a standalone,
//! validated WGSL compute shader.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use evomal::backend::{KernelKind, wgsl};
use evomal::expr::LossExpr;

use super::write_atomic;

#[derive(Args)]
pub struct ShaderArgs {
    /// A loss expression (`mse` and `ce` name the baselines), `@FILE` for the one in a file, or
    /// a results directory of `evomal run` (its best loss).
    source: String,
    /// Write the shader here instead of standard output.
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// What the shader computes per element.
    #[arg(long, value_enum, default_value_t = Kind::LossGrad)]
    kind: Kind,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    /// The loss.
    Loss,
    /// The loss and dM/dyhat (what training needs).
    LossGrad,
    /// Also dM/dphi and d2M/(dyhat dphi) for every weight (what the local search needs).
    Full,
}

pub fn run(args: ShaderArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let loss = super::loss_source(&args.source)?;
    let kind = match args.kind {
        Kind::Loss => KernelKind::Loss,
        Kind::LossGrad => KernelKind::LossGrad,
        Kind::Full => KernelKind::Full,
    };
    let src = validated_shader(&loss, kind)?;
    match args.out {
        Some(path) => write_atomic(&path, src.as_bytes())?,
        None => out.write_all(src.as_bytes())?,
    }
    Ok(())
}

/// The shader for `loss`, checked by naga before anyone sees it.
pub fn validated_shader(loss: &LossExpr, kind: KernelKind) -> anyhow::Result<String> {
    let src = wgsl::shader(loss, kind);
    wgsl::validate(loss, &src)?;
    Ok(src)
}
