//! Command implementations of the binary. Each writes its report to the given writer.

pub mod bench;
pub mod files;
pub mod loss;
pub mod run;
pub mod shader;
pub mod train;
pub mod transfer;

use anyhow::anyhow;
use evomal::expr::LossExpr;

pub use files::write_atomic;

/// Parses a loss expression given on the command line; the error shows where it went wrong.
pub fn parse_expr(text: &str) -> anyhow::Result<LossExpr> {
    text.parse().map_err(|e: evomal::expr::ParseError| {
        anyhow!("cannot parse the loss expression:\n{}", e.render(text))
    })
}
