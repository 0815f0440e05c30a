//! Printing: the prefix text format (which [`LossExpr::from_str`] reads back exactly) and a
//! readable infix rendering for people.

use std::fmt::{self, Write};

use super::{LossExpr, NodeId, Op};

/// Writes the subtree at `id` in prefix form; weights other than 1 are written as `w*`.
pub(super) fn write_prefix(e: &LossExpr, id: NodeId, f: &mut impl Write) -> fmt::Result {
    let w = e.weight(id);
    if w != 1.0 {
        write!(f, "{w}*")?;
    }
    let op = e.op(id);
    f.write_str(op.name())?;
    if let [first, rest @ ..] = e.children(id) {
        f.write_char('(')?;
        write_prefix(e, *first, f)?;
        for c in rest {
            f.write_str(", ")?;
            write_prefix(e, *c, f)?;
        }
        f.write_char(')')?;
    }
    Ok(())
}

/// Binding strength of an infix form; a child binding more loosely than its slot gets parens.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Prec {
    Sum = 1,
    Product = 2,
    Negation = 3,
    Power = 4,
    Atom = 5,
}

impl LossExpr {
    /// Infix rendering: `-(y * log(yhat))`, `(y - yhat)^2`, `|yhat|`, `y / sqrt(1 + yhat^2)`.
    /// Weights other than 1 appear as a factor: `0.5 * log(yhat)`.
    pub fn to_infix(&self) -> String {
        infix(self, self.root()).0
    }
}

fn infix(e: &LossExpr, id: NodeId) -> (String, Prec) {
    let (body, prec) = infix_unweighted(e, id);
    let w = e.weight(id);
    if w == 1.0 || id == e.root() {
        return (body, prec);
    }
    // A weighted constant is the number it stands for: `2.5`, not `2.5 * 1`.
    if let Some(c) = e.op(id).constant() {
        let v = c * w as f64;
        let prec = if v < 0.0 { Prec::Negation } else { Prec::Atom };
        return (num(v), prec);
    }
    (
        format!("{} * {}", num(w as f64), paren(body, prec, Prec::Power)),
        Prec::Product,
    )
}

fn infix_unweighted(e: &LossExpr, id: NodeId) -> (String, Prec) {
    let args: Vec<(String, Prec)> = e.children(id).iter().map(|&c| infix(e, c)).collect();
    let arg = |i: usize, min: Prec| paren(args[i].0.clone(), args[i].1, min);
    let call = |name: &str| {
        (
            format!(
                "{name}({})",
                args.iter()
                    .map(|a| a.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Prec::Atom,
        )
    };
    match e.op(id) {
        Op::Y => ("y".into(), Prec::Atom),
        Op::Yhat => ("yhat".into(), Prec::Atom),
        Op::One => ("1".into(), Prec::Atom),
        Op::NegOne => ("-1".into(), Prec::Negation),
        Op::Add => (
            format!("{} + {}", arg(0, Prec::Sum), arg(1, Prec::Product)),
            Prec::Sum,
        ),
        Op::Sub => (
            format!("{} - {}", arg(0, Prec::Sum), arg(1, Prec::Product)),
            Prec::Sum,
        ),
        Op::Mul => match (e.op(e.children(id)[0]), e.weight(e.children(id)[0])) {
            (Op::NegOne, 1.0) => (format!("-{}", arg(1, Prec::Power)), Prec::Negation),
            _ => (
                format!("{} * {}", arg(0, Prec::Product), arg(1, Prec::Power)),
                Prec::Product,
            ),
        },
        Op::Aq => (
            format!(
                "{} / sqrt(1 + {}^2)",
                arg(0, Prec::Product),
                arg(1, Prec::Atom)
            ),
            Prec::Product,
        ),
        Op::Square => (format!("{}^2", arg(0, Prec::Atom)), Prec::Power),
        Op::Abs => (format!("|{}|", args[0].0), Prec::Atom),
        Op::Sign | Op::Log | Op::Sqrt | Op::Tanh | Op::Min | Op::Max => call(e.op(id).name()),
    }
}

fn paren(s: String, prec: Prec, min: Prec) -> String {
    if prec < min { format!("({s})") } else { s }
}

fn num(x: f64) -> String {
    format!("{}", x as f32)
}
