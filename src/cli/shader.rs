//! `evomal emit-shader (EXPR | RUN_DIR) [-o FILE] [--kind ...]`: a learned loss as a standalone,
//! validated WGSL compute shader.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use evomal::backend::{KernelKind, wgsl};
use evomal::expr::LossExpr;

use super::{parse_expr, write_atomic};

#[derive(Args)]
pub struct ShaderArgs {
    /// A loss expression, `@FILE` for the one in a file, or a results directory of
    /// `evomal run` (its best loss).
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
    let loss = if Path::new(&args.source).is_dir() {
        best_loss(Path::new(&args.source))?
    } else {
        super::loss_arg(&args.source)?
    };
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

fn best_loss(dir: &Path) -> anyhow::Result<LossExpr> {
    let path = dir.join("run.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let loss = report["best"]["loss"]
        .as_str()
        .with_context(|| format!("{} holds no learned loss", path.display()))?;
    parse_expr(loss)
}
