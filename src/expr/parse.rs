//! The prefix text format (DEAP style): `mul(-1, log(yhat))`, with optional weights written as
//! a factor in front of any subexpression: `0.93*log(yhat)`.
//!
//! Grammar: `expr := [number '*'] term`, `term := name '(' expr {',' expr} ')' | 'y' | 'yhat' |
//! '1' | '+1' | '-1'`. A bare number other than ±1 is an error (write `c*1` for a constant c).

use std::fmt;
use std::str::FromStr;

use super::{LossExpr, NodeId, Op};

/// Deeper nesting than this is refused instead of risking the parser's stack.
const MAX_NESTING: usize = 512;

/// Larger expressions are refused: GP's trees stay far below it, and every backend's cost
/// grows at least linearly (the JIT's full kernel quadratically) with the node count.
pub const MAX_NODES: usize = 100_000;

/// Why a loss expression did not parse; `pos` is a 0-based byte offset into the input, `column`
/// the 1-based character column a person counts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("at column {column}: {kind}")]
pub struct ParseError {
    pub pos: usize,
    pub column: usize,
    pub kind: ParseErrorKind,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The input is empty or only whitespace.
    #[error("empty expression; expected an operator such as add(y, yhat), or y, yhat, 1, -1")]
    Empty,
    /// A token that does not fit here.
    #[error("expected {expected}, found {found}")]
    Unexpected {
        expected: &'static str,
        found: String,
    },
    /// An identifier that names no operator.
    #[error("unknown operator `{0}`; known: {known}", known = known_names())]
    UnknownOperator(String),
    /// An operator applied to the wrong number of arguments.
    #[error("`{op}` takes {expected} argument(s), found {found}")]
    WrongArity {
        op: Op,
        expected: usize,
        found: usize,
    },
    /// A number standing alone that is not one of the terminals 1 and -1.
    #[error("the only constant terminals are 1 and -1, found `{0}` (write `{0}*1` for a scaled 1)")]
    BadConstant(String),
    /// A number that does not parse as f32, or overflows it.
    #[error("`{0}` is not a number in f32 range")]
    BadNumber(String),
    #[error("nesting deeper than {MAX_NESTING}")]
    TooDeep,
    #[error("more than {MAX_NODES} nodes")]
    TooLarge,
}

fn known_names() -> String {
    super::OPS
        .iter()
        .map(|i| i.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for LossExpr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<LossExpr, ParseError> {
        parse(s).map_err(|mut e| {
            e.column = s[..e.pos.min(s.len())].chars().count() + 1;
            e
        })
    }
}

fn parse(s: &str) -> Result<LossExpr, ParseError> {
    let mut p = Parser {
        src: s,
        pos: 0,
        out: None,
    };
    p.skip_ws();
    if p.pos == s.len() {
        return Err(p.err(ParseErrorKind::Empty));
    }
    p.expr(0)?;
    p.skip_ws();
    if p.pos != s.len() {
        return Err(p.unexpected("end of input"));
    }
    Ok(p.out.expect("a parsed expression has nodes"))
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    /// Nodes in post-order, built as children finish parsing.
    out: Option<LossExpr>,
}

impl Parser<'_> {
    fn expr(&mut self, depth: usize) -> Result<NodeId, ParseError> {
        if depth > MAX_NESTING {
            return Err(self.err(ParseErrorKind::TooDeep));
        }
        self.skip_ws();
        let start = self.pos;
        if let Some(num) = self.number() {
            let num = num.to_owned();
            self.skip_ws();
            if self.eat('*') {
                // A literal that overflows f32 is a mistake, unlike an explicit `inf`.
                let weight = num
                    .parse::<f32>()
                    .ok()
                    .filter(|w| w.is_finite() || num.contains("inf") || num.contains("NaN"))
                    .ok_or_else(|| ParseError::at(start, ParseErrorKind::BadNumber(num)))?;
                return self.term(depth, weight);
            }
            // Not a weight: the number is the term itself.
            self.pos = start;
        }
        self.term(depth, 1.0)
    }

    fn term(&mut self, depth: usize, weight: f32) -> Result<NodeId, ParseError> {
        self.skip_ws();
        let start = self.pos;
        if let Some(num) = self.number() {
            let op = match num.parse::<f64>() {
                Ok(1.0) => Op::One,
                Ok(-1.0) => Op::NegOne,
                _ => {
                    return Err(ParseError::at(
                        start,
                        ParseErrorKind::BadConstant(num.into()),
                    ));
                }
            };
            return self.push(op, &[], weight);
        }
        let name = self.ident();
        if name.is_empty() {
            return Err(self.unexpected("an operator, y, yhat, 1 or -1"));
        }
        let op = Op::from_name(name)
            .ok_or_else(|| ParseError::at(start, ParseErrorKind::UnknownOperator(name.into())))?;
        self.skip_ws();
        let mut args: Vec<NodeId> = Vec::with_capacity(2);
        if self.eat('(') {
            loop {
                args.push(self.expr(depth + 1)?);
                self.skip_ws();
                if self.eat(',') {
                    continue;
                }
                if self.eat(')') {
                    break;
                }
                return Err(self.unexpected("`,` or `)`"));
            }
        }
        if args.len() != op.arity() {
            let kind = ParseErrorKind::WrongArity {
                op,
                expected: op.arity(),
                found: args.len(),
            };
            return Err(ParseError::at(start, kind));
        }
        self.push(op, &args, weight)
    }

    fn push(&mut self, op: Op, args: &[NodeId], weight: f32) -> Result<NodeId, ParseError> {
        Ok(match &mut self.out {
            Some(e) if e.len() >= MAX_NODES => return Err(self.err(ParseErrorKind::TooLarge)),
            Some(e) => e.push_node(op, args, weight),
            None => {
                self.out = Some(LossExpr::leaf(op, weight));
                NodeId(0)
            }
        })
    }

    /// A signed decimal or `inf`/`NaN` literal, if one starts here.
    fn number(&mut self) -> Option<&str> {
        let rest = &self.src[self.pos..];
        let unsigned = rest.strip_prefix(['+', '-']).unwrap_or(rest);
        let sign_len = rest.len() - unsigned.len();
        let body_len = if unsigned.starts_with("inf") || unsigned.starts_with("NaN") {
            3
        } else {
            let mut len = 0;
            let bytes = unsigned.as_bytes();
            let mut seen_digit = false;
            while len < bytes.len() {
                let c = bytes[len];
                let exp_sign =
                    len > 0 && matches!(c, b'+' | b'-') && matches!(bytes[len - 1], b'e' | b'E');
                if c.is_ascii_digit() {
                    seen_digit = true;
                } else if !(c == b'.' || exp_sign || (seen_digit && matches!(c, b'e' | b'E'))) {
                    break;
                }
                len += 1;
            }
            if !seen_digit {
                return None;
            }
            len
        };
        let tok = &rest[..sign_len + body_len];
        self.pos += tok.len();
        Some(tok)
    }

    fn ident(&mut self) -> &str {
        let rest = &self.src[self.pos..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn eat(&mut self, c: char) -> bool {
        if self.src[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        let rest = &self.src[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn err(&self, kind: ParseErrorKind) -> ParseError {
        ParseError::at(self.pos, kind)
    }

    fn unexpected(&self, expected: &'static str) -> ParseError {
        let found = match self.src[self.pos..].chars().next() {
            Some(c) => format!("`{c}`"),
            None => "end of input".to_string(),
        };
        self.err(ParseErrorKind::Unexpected { expected, found })
    }
}

/// Characters of the input shown around a parse error.
const RENDER_WIDTH: usize = 100;

impl ParseError {
    fn at(pos: usize, kind: ParseErrorKind) -> ParseError {
        // `LossExpr::from_str` sets the column once the whole input is known.
        ParseError {
            pos,
            column: pos + 1,
            kind,
        }
    }

    /// The input (at most [`RENDER_WIDTH`] characters of it, around the error) with a caret
    /// under the error's position, for terminal output.
    pub fn render(&self, src: &str) -> String {
        let chars: Vec<char> = src
            .chars()
            .map(|c| if c.is_whitespace() { ' ' } else { c })
            .collect();
        let at = (self.column - 1).min(chars.len());
        let start = at.saturating_sub(RENDER_WIDTH / 2);
        let end = (start + RENDER_WIDTH).min(chars.len());
        let start = end.saturating_sub(RENDER_WIDTH).min(start);
        let (open, close) = (
            if start > 0 { "..." } else { "" },
            if end < chars.len() { "..." } else { "" },
        );
        let shown: String = chars[start..end].iter().collect();
        let indent = open.len() + at - start;
        format!("{open}{shown}{close}\n{}^ {self}", " ".repeat(indent))
    }
}

impl fmt::Display for LossExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::print::write_prefix(self, self.root(), f)
    }
}
