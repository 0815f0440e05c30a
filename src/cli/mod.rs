//! Command implementations of the binary. Each writes its report to the given writer.

pub mod bench;
pub mod loss;
pub mod run;
pub mod shader;
pub mod train;
pub mod transfer;

use anyhow::anyhow;
use evomal::expr::LossExpr;

/// Parses a loss expression given on the command line; the error shows where it went wrong.
pub fn parse_expr(text: &str) -> anyhow::Result<LossExpr> {
    text.parse().map_err(|e: evomal::expr::ParseError| {
        anyhow!("cannot parse the loss expression:\n{}", e.render(text))
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees half a
/// file; creates the parent directory.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
