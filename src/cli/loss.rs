//! `evomal loss show` and `evomal loss eval`.

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use evomal::backend::KernelKind;
use evomal::backend::jit;
use evomal::expr::interp::{self, FullBatchMut};
use evomal::expr::{LossExpr, NodeId, structural_hash};
use serde_json::json;

use super::loss_source;

#[derive(Subcommand)]
pub enum LossCommand {
    /// Print an expression's canonical form, infix rendering, height, size and weights.
    Show {
        /// The loss, e.g. 'mul(-1, mul(y, log(yhat)))' (`mse` and `ce` name the baselines),
        /// `@FILE` for the one in a file, or a results directory of `evomal run` (its best loss).
        expr: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the loss and all its derivatives at given points.
    Eval {
        /// The loss (`mse`, `ce`, an expression), `@FILE` for the one in a file, or a results
        /// directory of `evomal run`.
        expr: String,
        /// Targets, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            allow_negative_numbers = true,
            required = true
        )]
        y: Vec<f32>,
        /// Predictions, comma-separated, as many as --y.
        #[arg(
            long,
            value_delimiter = ',',
            allow_negative_numbers = true,
            required = true
        )]
        yhat: Vec<f32>,
        /// One weight per node in post-order (default: the expression's own weights).
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
        weights: Option<Vec<f32>>,
        /// Which backend computes the values.
        #[arg(long, value_enum, default_value_t = Backend::Jit)]
        backend: Backend,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Backend {
    /// Cranelift-compiled native kernel.
    Jit,
    /// The reference interpreter.
    Interp,
}

pub fn run(cmd: LossCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        LossCommand::Show { expr, json } => show(&loss_source(&expr)?, json, out),
        LossCommand::Eval {
            expr,
            y,
            yhat,
            weights,
            backend,
            json,
        } => {
            let mut e = loss_source(&expr)?;
            if y.len() != yhat.len() {
                bail!("--y has {} values but --yhat has {}", y.len(), yhat.len());
            }
            if let Some(w) = weights {
                if w.len() != e.len() {
                    bail!(
                        "--weights needs one value per node: {} nodes, {} weights given",
                        e.len(),
                        w.len()
                    );
                }
                e.set_weights(&w);
            }
            eval(&e, &y, &yhat, backend, json, out)
        }
    }
}

fn show(e: &LossExpr, as_json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let canonical = e.canonical();
    let hash = format!("{:016x}", structural_hash(&canonical));
    if as_json {
        let v = json!({
            "expr": e.to_string(),
            "canonical": canonical.to_string(),
            "infix": e.to_infix(),
            "height": e.height(),
            "size": e.len(),
            "effective_weights": e.n_weights(),
            "weights": e.weights(),
            "canonical_hash": hash,
            "contains_y_and_yhat": e.contains_y_and_yhat(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(out, "expression  {e}")?;
    writeln!(out, "canonical   {canonical}")?;
    writeln!(out, "infix       {}", e.to_infix())?;
    writeln!(out, "height      {}", e.height())?;
    writeln!(
        out,
        "size        {} nodes, {} effective weights",
        e.len(),
        e.n_weights()
    )?;
    writeln!(
        out,
        "weights     {:?} (post-order; the root's is inert)",
        e.weights()
    )?;
    writeln!(out, "hash        {hash} (of the canonical form)")?;
    let verdict = if e.contains_y_and_yhat() {
        "valid search candidate (uses y and yhat)"
    } else {
        "not a valid search candidate: a loss must use both y and yhat"
    };
    writeln!(out, "candidate   {verdict}")?;
    Ok(())
}

fn eval(
    e: &LossExpr,
    y: &[f32],
    yhat: &[f32],
    backend: Backend,
    as_json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let n = y.len();
    let k = e.n_weights();
    let (mut loss, mut dyhat) = (vec![0.0f32; n], vec![0.0f32; n]);
    let (mut dphi, mut d2) = (vec![0.0f32; n * k], vec![0.0f32; n * k]);
    let bufs = FullBatchMut {
        loss: &mut loss,
        dyhat: &mut dyhat,
        dphi: &mut dphi,
        d2: &mut d2,
    };
    match backend {
        Backend::Jit if e.len() <= jit::max_nodes(KernelKind::Full) => {
            let kernel = jit::compile(e, KernelKind::Full).context("compiling the loss")?;
            kernel.full(y, yhat, e.weights(), bufs)?;
        }
        Backend::Jit => {
            eprintln!(
                "note: {} nodes is more than the JIT's full kernel compiles quickly ({}); evaluating with the interpreter",
                e.len(),
                jit::max_nodes(KernelKind::Full)
            );
            interp::full_batch(e, y, yhat, e.weights(), bufs)
        }
        Backend::Interp => interp::full_batch(e, y, yhat, e.weights(), bufs),
    }
    let column = |v: &[f32], j: usize| (0..n).map(|i| v[i * k + j]).collect::<Vec<f32>>();
    if as_json {
        let weights: Vec<_> = (0..k)
            .map(|j| {
                json!({
                    "node": j,
                    "subtree": e.subtree(NodeId(j as u32)).to_string(),
                    "weight": e.weights()[j],
                    "dM_dphi": column(&dphi, j),
                    "d2M_dyhat_dphi": column(&d2, j),
                })
            })
            .collect();
        let v = json!({
            "expr": e.to_string(), "y": y, "yhat": yhat,
            "loss": loss, "dM_dyhat": dyhat, "weights": weights,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(out, "{e}")?;
    writeln!(
        out,
        "{:>4} {:>12} {:>12} {:>14} {:>14}",
        "i", "y", "yhat", "M", "dM/dyhat"
    )?;
    for i in 0..n {
        writeln!(
            out,
            "{i:>4} {:>12} {:>12} {:>14.7e} {:>14.7e}",
            y[i], yhat[i], loss[i], dyhat[i]
        )?;
    }
    writeln!(
        out,
        "\nper weight (node j in post-order; one value per element):"
    )?;
    for j in 0..k {
        writeln!(
            out,
            "phi_{j} = {} on {}",
            e.weights()[j],
            e.subtree(NodeId(j as u32))
        )?;
        writeln!(out, "    dM/dphi          {}", fmt_row(&column(&dphi, j)))?;
        writeln!(out, "    d2M/(dyhat dphi) {}", fmt_row(&column(&d2, j)))?;
    }
    Ok(())
}

fn fmt_row(v: &[f32]) -> String {
    v.iter()
        .map(|x| format!("{x:>14.7e}"))
        .collect::<Vec<_>>()
        .join(" ")
}
