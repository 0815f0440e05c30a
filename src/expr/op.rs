//! The operator set of METHOD.md §2, as one table.
//!
//! Everything that differs between operators and is not arithmetic (name, arity, whether it
//! commutes, whether it is a terminal) lives in [`Op::info`]. The arithmetic itself — values and
//! local derivatives — is defined once, generically, in `expr::deriv`, and the reference
//! interpreter in `expr::interp`.

use std::fmt;

/// Lower clamp of the protected `log` and `sqrt`: they see `max(|a|, EPS)`.
pub const PROTECT_EPS: f64 = 1e-7;

/// One node's operation. Terminals have arity 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    // Terminals. Their order here is the canonical order of leaves.
    Y,
    Yhat,
    One,
    NegOne,
    // Unary.
    Sign,
    Square,
    Abs,
    Log,
    Sqrt,
    Tanh,
    // Binary.
    Add,
    Sub,
    Mul,
    Aq,
    Min,
    Max,
}

/// The static facts about one operator.
#[derive(Clone, Copy, Debug)]
pub struct OpInfo {
    pub op: Op,
    /// The name in the prefix text format (`mul`, `yhat`, `-1`).
    pub name: &'static str,
    pub arity: usize,
    /// `f(a, b) == f(b, a)` for every input, so canonical form may sort the children.
    pub commutative: bool,
}

/// Every operator, terminals first; the table that parsing, printing and random generation use.
pub const OPS: [OpInfo; 16] = [
    info(Op::Y, "y", 0, false),
    info(Op::Yhat, "yhat", 0, false),
    info(Op::One, "1", 0, false),
    info(Op::NegOne, "-1", 0, false),
    info(Op::Sign, "sign", 1, false),
    info(Op::Square, "square", 1, false),
    info(Op::Abs, "abs", 1, false),
    info(Op::Log, "log", 1, false),
    info(Op::Sqrt, "sqrt", 1, false),
    info(Op::Tanh, "tanh", 1, false),
    info(Op::Add, "add", 2, true),
    info(Op::Sub, "sub", 2, false),
    info(Op::Mul, "mul", 2, true),
    info(Op::Aq, "aq", 2, false),
    info(Op::Min, "min", 2, true),
    info(Op::Max, "max", 2, true),
];

const fn info(op: Op, name: &'static str, arity: usize, commutative: bool) -> OpInfo {
    OpInfo {
        op,
        name,
        arity,
        commutative,
    }
}

impl Op {
    pub const TERMINALS: [Op; 4] = [Op::Y, Op::Yhat, Op::One, Op::NegOne];
    pub const UNARY: [Op; 6] = [Op::Sign, Op::Square, Op::Abs, Op::Log, Op::Sqrt, Op::Tanh];
    pub const BINARY: [Op; 6] = [Op::Add, Op::Sub, Op::Mul, Op::Aq, Op::Min, Op::Max];

    pub fn info(self) -> &'static OpInfo {
        // The table is in declaration order, so the discriminant is the index.
        &OPS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn arity(self) -> usize {
        self.info().arity
    }

    pub fn is_terminal(self) -> bool {
        self.arity() == 0
    }

    /// The value of a constant terminal, `None` for every other operator.
    pub fn constant(self) -> Option<f64> {
        match self {
            Op::One => Some(1.0),
            Op::NegOne => Some(-1.0),
            _ => None,
        }
    }

    /// Looks an operator up by its text name (`+1` is accepted for `1`).
    pub fn from_name(name: &str) -> Option<Op> {
        let name = if name == "+1" { "1" } else { name };
        OPS.iter().find(|i| i.name == name).map(|i| i.op)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_declaration_order() {
        for (i, row) in OPS.iter().enumerate() {
            assert_eq!(row.op as usize, i, "row {i} ({}) is out of order", row.name);
            assert_eq!(Op::from_name(row.name), Some(row.op));
        }
        let all: Vec<Op> = [&Op::TERMINALS[..], &Op::UNARY, &Op::BINARY].concat();
        assert_eq!(all.len(), OPS.len());
        for op in all {
            let expected = match op {
                _ if Op::TERMINALS.contains(&op) => 0,
                _ if Op::UNARY.contains(&op) => 1,
                _ => 2,
            };
            assert_eq!(op.arity(), expected, "{op}");
        }
    }
}
