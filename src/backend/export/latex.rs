//! LaTeX for papers: infix, weights as coefficients (a weight of exactly 1 is left out).

use crate::expr::{LossExpr, NodeId, Op};

/// How tightly a rendered subexpression binds, to place parentheses.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    Sum,
    Product,
    /// `x^{2}`: not a base for another exponent.
    Power,
    Atom,
}

/// `e` as a LaTeX formula (math mode, without delimiters). `\log|x|` and `\sqrt{|x|}` are the
/// protected operators: they see `max(|x|, 10^{-7})`.
pub fn latex(e: &LossExpr) -> String {
    node(e, e.root()).0
}

fn node(e: &LossExpr, id: NodeId) -> (String, Prec) {
    let arg = |k: usize| weighted(e, e.children(id)[k]);
    let group = |(s, p): (String, Prec), min: Prec| {
        if p >= min {
            s
        } else {
            format!("\\left({s}\\right)")
        }
    };
    match e.op(id) {
        Op::Y => ("y".into(), Prec::Atom),
        Op::Yhat => ("\\hat{y}".into(), Prec::Atom),
        Op::One => ("1".into(), Prec::Atom),
        Op::NegOne => ("-1".into(), Prec::Sum),
        Op::Add => (
            format!(
                "{} + {}",
                group(arg(0), Prec::Sum),
                group(arg(1), Prec::Product)
            ),
            Prec::Sum,
        ),
        Op::Sub => (
            format!(
                "{} - {}",
                group(arg(0), Prec::Sum),
                group(arg(1), Prec::Product)
            ),
            Prec::Sum,
        ),
        Op::Mul => (
            format!(
                "{} \\cdot {}",
                group(arg(0), Prec::Product),
                group(arg(1), Prec::Product)
            ),
            Prec::Product,
        ),
        Op::Aq => (
            format!(
                "\\frac{{{}}}{{\\sqrt{{1 + {}^{{2}}}}}}",
                arg(0).0,
                group(arg(1), Prec::Atom)
            ),
            Prec::Atom,
        ),
        Op::Min => (
            format!("\\min\\left({}, {}\\right)", arg(0).0, arg(1).0),
            Prec::Atom,
        ),
        Op::Max => (
            format!("\\max\\left({}, {}\\right)", arg(0).0, arg(1).0),
            Prec::Atom,
        ),
        Op::Sign => (
            format!("\\operatorname{{sign}}\\left({}\\right)", arg(0).0),
            Prec::Atom,
        ),
        Op::Square => (format!("{}^{{2}}", group(arg(0), Prec::Atom)), Prec::Power),
        Op::Abs => (format!("\\left|{}\\right|", arg(0).0), Prec::Atom),
        Op::Log => (format!("\\log\\left|{}\\right|", arg(0).0), Prec::Atom),
        Op::Sqrt => (format!("\\sqrt{{\\left|{}\\right|}}", arg(0).0), Prec::Atom),
        Op::Tanh => (format!("\\tanh\\left({}\\right)", arg(0).0), Prec::Atom),
    }
}

/// A child as its parent sees it: times its weight, unless that is exactly 1.
fn weighted(e: &LossExpr, child: NodeId) -> (String, Prec) {
    let w = e.weights()[child.idx()];
    let inner = node(e, child);
    if w == 1.0 {
        return inner;
    }
    let inner = if inner.1 >= Prec::Product {
        inner.0
    } else {
        format!("\\left({}\\right)", inner.0)
    };
    (format!("{w} \\cdot {inner}"), Prec::Product)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_coefficients_and_parentheses_follow_precedence() {
        let e: LossExpr = "mul(-1, 0.5*add(y, log(yhat)))".parse().unwrap();
        assert_eq!(
            latex(&e),
            "\\left(-1\\right) \\cdot 0.5 \\cdot \\left(y + \\log\\left|\\hat{y}\\right|\\right)"
        );
        let e: LossExpr = "aq(sub(y, yhat), square(2*yhat))".parse().unwrap();
        assert_eq!(
            latex(&e),
            "\\frac{y - \\hat{y}}{\\sqrt{1 + \\left(\\left(2 \\cdot \\hat{y}\\right)^{2}\\right)^{2}}}"
        );
    }
}
