//! Command implementations of the binary. Each writes its report to the given writer.

pub mod bench;
pub mod export;
pub mod files;
pub mod loss;
pub mod plugin;
pub mod run;
pub mod shader;
pub mod train;
pub mod transfer;

use anyhow::anyhow;
use evomal::expr::LossExpr;
use evomal::train::Task;

pub use files::write_atomic;

/// Parses a loss expression given on the command line; the error shows where it went wrong.
pub fn parse_expr(text: &str) -> anyhow::Result<LossExpr> {
    text.parse().map_err(|e: evomal::expr::ParseError| {
        anyhow!("cannot parse the loss expression:\n{}", e.render(text))
    })
}

/// A loss given on the command line: an expression, or `@FILE` for the expression in a file —
/// its lines other than blank ones and `#` comments, joined (so a run's `best_loss.txt` is
/// reusable as it is).
pub fn loss_arg(arg: &str) -> anyhow::Result<LossExpr> {
    use anyhow::Context;
    use std::io::Read;
    let Some(path) = arg.strip_prefix('@') else {
        return parse_expr(arg);
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(evomal::manifest::MAX_MANIFEST_BYTES as u64)
                .read_to_string(&mut text)
        })
        .with_context(|| format!("reading the loss in `{path}`"))?;
    let expr: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    parse_expr(&expr.join(" ")).with_context(|| format!("the loss in `{path}`"))
}

/// A loss from wherever a command takes one: a results directory of `evomal run` (its best
/// loss), `@FILE`, or an expression.
pub fn loss_source(source: &str) -> anyhow::Result<LossExpr> {
    use anyhow::Context;
    let dir = std::path::Path::new(source);
    if !dir.is_dir() {
        return loss_arg(source);
    }
    let path = dir.join("run.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let loss = report["best"]["loss"]
        .as_str()
        .with_context(|| format!("{} holds no learned loss", path.display()))?;
    parse_expr(loss).with_context(|| format!("the best loss in {}", path.display()))
}

/// Says when a batch size (named by its manifest field) exceeds the training split: training
/// then takes the whole split each step, which is legitimate on a small table but rarely meant.
pub fn note_full_batches(task: &Task<'_>, batches: &[(&str, usize)]) {
    let n_train = task.split_size(0);
    for &(field, batch) in batches.iter().filter(|(_, b)| *b > n_train) {
        eprintln!(
            "note: {field} = {batch} is larger than the training split ({n_train} examples): every step uses the whole split"
        );
    }
}
