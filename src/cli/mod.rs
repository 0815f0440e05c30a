//! Command implementations of the binary. Each writes its report to the given writer.

pub mod bench;
pub mod compare;
pub mod export;
pub mod files;
pub mod loss;
pub mod plugin;
pub mod run;
pub mod shader;
pub mod train;
pub mod transfer;

use anyhow::{Context, anyhow};
use evomal::expr::LossExpr;
use evomal::search::learned::LearnedLoss;
use evomal::search::ml3::LossNet;
use evomal::train::Task;

pub use files::write_atomic;

/// Parses a loss expression given on the command line; the error shows where it went wrong.
pub fn parse_expr(text: &str) -> anyhow::Result<LossExpr> {
    text.parse().map_err(|e: evomal::expr::ParseError| {
        anyhow!("cannot parse the loss expression:\n{}", e.render(text))
    })
}

/// A loss given on the command line: an expression, `mse` or `ce`, or `@FILE` for the
/// expression in a file — its lines other than blank ones and `#` comments, joined (so a run's
/// `best_loss.txt` is reusable as it is).
pub fn loss_arg(arg: &str) -> anyhow::Result<LossExpr> {
    expression(learned_arg(arg)?, arg)
}

/// [`loss_arg`], where a file may also hold an ML3 loss network (a run's `best_loss.ml3.json`).
pub fn learned_arg(arg: &str) -> anyhow::Result<LearnedLoss> {
    if let Some(expr) = baseline_named(arg) {
        return Ok(LearnedLoss::Expr(parse_expr(expr)?));
    }
    let Some(path) = arg.strip_prefix('@') else {
        return Ok(LearnedLoss::Expr(parse_expr(arg)?));
    };
    let text = read_limited(std::path::Path::new(path))
        .with_context(|| format!("reading the loss in `{path}`"))?;
    if LossNet::is_saved_network(&text) {
        let net = LossNet::from_json(&text).with_context(|| format!("the loss in `{path}`"))?;
        return Ok(LearnedLoss::Network(net));
    }
    let expr: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let e = parse_expr(&expr.join(" ")).with_context(|| format!("the loss in `{path}`"))?;
    Ok(LearnedLoss::Expr(e))
}

/// The baselines by name: `mse` and `ce` (cross-entropy).
fn baseline_named(name: &str) -> Option<&'static str> {
    use evomal::train::objective::{CE, MSE};
    match name {
        "mse" => Some(MSE),
        "ce" => Some(CE),
        _ => None,
    }
}

/// A JSON file of evomal's (run.json, a checkpoint); the error names the file.
pub fn read_json(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn read_limited(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(evomal::manifest::MAX_MANIFEST_BYTES as u64)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// A loss from wherever a command takes one: a results directory of `evomal run` (its best
/// loss), `@FILE`, an expression, or `mse` / `ce` (names before directories).
pub fn loss_source(source: &str) -> anyhow::Result<LossExpr> {
    expression(learned_source(source)?, source)
}

/// [`loss_source`], ML3 networks included.
pub fn learned_source(source: &str) -> anyhow::Result<LearnedLoss> {
    let dir = std::path::Path::new(source);
    if !dir.is_dir() || baseline_named(source).is_some() {
        let loss = learned_arg(source);
        let a_path = !source.starts_with('@')
            && source.contains(std::path::MAIN_SEPARATOR)
            && !source.contains('(');
        return match a_path {
            true => loss.with_context(|| format!("`{source}` is no directory, nor a loss")),
            false => loss,
        };
    }
    learned_in_run(dir, &run_report(dir)?)
}

/// The run.json of the results directory `dir`, or what `dir` holds instead.
pub fn run_report(dir: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let path = dir.join("run.json");
    if !dir.is_dir() {
        anyhow::bail!(
            "`{}` is not a directory: a results directory of `evomal run` is wanted",
            dir.display()
        );
    }
    if !path.exists() {
        if dir.join("checkpoint.json").is_file() {
            anyhow::bail!(
                "the run in `{0}` has not finished (it holds a checkpoint.json, but no run.json yet): finish it with `evomal run --resume {0}`",
                dir.display()
            );
        }
        anyhow::bail!(
            "`{}` holds no run.json: it is not the results directory of an `evomal run`",
            dir.display()
        );
    }
    read_json(&path)
}

/// The learned loss of the run in `dir`, whose run.json is `report`.
pub fn learned_in_run(
    dir: &std::path::Path,
    report: &serde_json::Value,
) -> anyhow::Result<LearnedLoss> {
    let path = dir.join("run.json");
    if let Some(file) = report["best"]["network"].as_str() {
        let net_path = dir.join(file);
        let text =
            read_limited(&net_path).with_context(|| format!("reading {}", net_path.display()))?;
        let net = LossNet::from_json(&text).with_context(|| format!("{}", net_path.display()))?;
        return Ok(LearnedLoss::Network(net));
    }
    let loss = report["best"]["loss"].as_str().with_context(|| {
        format!(
            "{} holds no learned loss (did every candidate fail?)",
            path.display()
        )
    })?;
    let e = parse_expr(loss).with_context(|| format!("the best loss in {}", path.display()))?;
    Ok(LearnedLoss::Expr(e))
}

/// The expression of a loss named by `source`, or why a network has none.
fn expression(loss: LearnedLoss, source: &str) -> anyhow::Result<LossExpr> {
    match loss {
        LearnedLoss::Expr(e) => Ok(e),
        LearnedLoss::Network(_) => anyhow::bail!(
            "the loss in `{source}` is an ML3 loss network, not an expression: it can be trained with (`evomal train --loss @FILE`), but not printed, exported or compiled to a shader"
        ),
    }
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
