//! Canonical form: one representative for trees that are obviously equal, and a cheap
//! structural hash of it, so the search can skip candidates it has already evaluated.
//!
//! The rewrite is bottom-up and preserves the value of the loss everywhere it is finite (it
//! ignores that `sub(a, a)` is NaN where `a` is infinite, and folded constants are rounded to
//! f32). Rules:
//! - constant subtrees (no `y`, no `yhat`) fold into one weighted constant leaf;
//! - constant factors and signs are lifted into weights: `mul(k, a)` becomes `a` weighted by
//!   `k`, `mul(w0*a, w1*b)` becomes `(w0*w1)*mul(a, b)`, and likewise for the linear left
//!   argument of `aq`, `abs` (by `|w|`), `square` (by `w^2`) and `sign` (by `sign(w)`);
//! - identities: `add(a, 0)`, `sub(a, 0)`, `sub(0, a)`, `aq(a, 0)`, `mul(a, 0)`, `sub(a, a)`,
//!   `add(a, a)`, `min(a, a)`, `max(a, a)`, `abs(abs a)`, `abs(square a)`, `square(abs a)`,
//!   `sign(sign a)`;
//! - children of `add`, `mul`, `min` and `max` are sorted by a fixed structural order.
//!
//! The root's weight never acts, so a factor lifted to the root is written back as
//! `mul(k, ...)` (`mul(-1, ...)` for `k = -1`).

use std::cmp::Ordering;

use super::interp::apply;
use super::{LossExpr, NodeId, Op};

impl LossExpr {
    /// The canonical representative of this tree (see the module docs).
    pub fn canonical(&self) -> LossExpr {
        let n = self.len();
        let mut done: Vec<LossExpr> = Vec::with_capacity(n);
        for i in 0..n {
            let id = NodeId(i as u32);
            // The root is canonicalised as if it fed a parent with weight 1.
            let w = if i + 1 == n { 1.0 } else { self.weight(id) };
            let kids: Vec<&LossExpr> = self.children(id).iter().map(|c| &done[c.idx()]).collect();
            let c = rewrite(self.op(id), w, &kids);
            done.push(c);
        }
        let top = done.pop().expect("a tree has a root");
        match top.root_weight() {
            1.0 => top,
            // Zero times anything finite: the loss is the constant 0.
            0.0 => LossExpr::binary(Op::Mul, 1.0, &constant(0.0), &constant(1.0)),
            k => LossExpr::binary(Op::Mul, 1.0, &constant(k as f64), &reweighted(&top, 1.0)),
        }
    }

    fn root_weight(&self) -> f32 {
        self.weight(self.root())
    }

    /// Total order used to sort commutative children: post-order nodes, then weights.
    fn structural_cmp(&self, other: &LossExpr) -> Ordering {
        let key = |e: &LossExpr| {
            e.nodes()
                .iter()
                .zip(e.weights())
                .map(|(n, w)| (n.op, w.to_bits()))
                .collect::<Vec<_>>()
        };
        key(self).cmp(&key(other))
    }
}

/// FNV-1a over the post-order (operator, weight) sequence. Equal trees hash equal; hash the
/// [`LossExpr::canonical`] form to identify obviously equal trees.
pub fn structural_hash(e: &LossExpr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (n, w) in e.nodes().iter().zip(e.weights()) {
        eat(&[n.op as u8]);
        eat(&w.to_bits().to_le_bytes());
    }
    h
}

/// Canonical `w * op(kids)`, where every kid is canonical already.
fn rewrite(op: Op, w: f32, kids: &[&LossExpr]) -> LossExpr {
    if op.is_terminal() {
        return match op.constant() {
            Some(c) => constant(w as f64 * c),
            None => LossExpr::leaf(op, w),
        };
    }
    let consts: Vec<Option<f64>> = kids.iter().map(|k| const_value(k)).collect();
    if consts.iter().all(Option::is_some) {
        let a = consts[0].unwrap_or_default();
        let b = consts.get(1).copied().flatten().unwrap_or_default();
        return constant(w as f64 * apply(op, a, b));
    }
    let w64 = w as f64;
    match (op, kids, consts.as_slice()) {
        (Op::Add, [a, b], _) if a == b => scaled(a, w * 2.0),
        (Op::Add, [a, _], [_, Some(0.0)]) | (Op::Add, [_, a], [Some(0.0), _]) => scaled(a, w),
        (Op::Sub, [a, b], _) if a == b => constant(0.0),
        (Op::Sub, [a, _], [_, Some(0.0)]) => scaled(a, w),
        (Op::Sub, [_, b], [Some(0.0), _]) => scaled(b, -w),
        (Op::Mul, _, [Some(0.0), _] | [_, Some(0.0)]) => constant(0.0),
        (Op::Mul, [_, b], [Some(k), None]) => scaled(b, (w64 * k) as f32),
        (Op::Mul, [a, _], [None, Some(k)]) => scaled(a, (w64 * k) as f32),
        (Op::Mul, [a, b], _) => {
            let factor = w * a.root_weight() * b.root_weight();
            sorted(Op::Mul, factor, &reweighted(a, 1.0), &reweighted(b, 1.0))
        }
        (Op::Aq, [a, _], [_, Some(0.0)]) => scaled(a, w),
        (Op::Aq, [a, b], _) => {
            LossExpr::binary(Op::Aq, w * a.root_weight(), &reweighted(a, 1.0), b)
        }
        (Op::Min | Op::Max, [a, b], _) if a == b => scaled(a, w),
        (Op::Add | Op::Min | Op::Max, [a, b], _) => sorted(op, w, a, b),
        (Op::Abs, [a], _) => {
            let factor = w * a.root_weight().abs();
            match a.op(a.root()) {
                Op::Abs | Op::Square => reweighted(a, factor),
                _ => LossExpr::unary(Op::Abs, factor, &reweighted(a, 1.0)),
            }
        }
        (Op::Square, [a], _) => {
            let factor = w * a.root_weight() * a.root_weight();
            let inner = match a.op(a.root()) {
                // square(|x|) = square(x); x's own weight is lifted too.
                Op::Abs => a.subtree(a.children(a.root())[0]),
                _ => reweighted(a, 1.0),
            };
            let inner_w = inner.root_weight();
            LossExpr::unary(
                Op::Square,
                factor * inner_w * inner_w,
                &reweighted(&inner, 1.0),
            )
        }
        (Op::Sign, [a], _) => {
            let s = apply(Op::Sign, a.root_weight() as f64, 0.0) as f32;
            match a.op(a.root()) {
                Op::Sign => reweighted(a, w * s),
                _ => LossExpr::unary(Op::Sign, w * s, &reweighted(a, 1.0)),
            }
        }
        _ => rebuild(op, w, kids),
    }
}

/// A constant leaf of value `c` rounded to f32: `-1` for -1, else `1` weighted by `c`.
///
/// The test is on the rounded value: a product like `0.1f32 * -10` is not -1 in f64 but is in
/// f32, and canonicalising `-1*1` again gives `-1`, so testing `c` itself breaks idempotence.
fn constant(c: f64) -> LossExpr {
    let c = c as f32;
    if c == -1.0 {
        LossExpr::leaf(Op::NegOne, 1.0)
    } else {
        LossExpr::leaf(Op::One, c)
    }
}

/// The value a canonical constant leaf feeds its parent, or `None` for a non-constant tree.
fn const_value(e: &LossExpr) -> Option<f64> {
    if e.len() != 1 {
        return None;
    }
    e.op(e.root())
        .constant()
        .map(|c| c * e.root_weight() as f64)
}

/// `e` with its root weight replaced.
fn reweighted(e: &LossExpr, w: f32) -> LossExpr {
    let mut e = e.clone();
    let root = e.root().idx();
    e.weights[root] = w;
    e
}

/// `e` with its root weight multiplied by `factor`.
fn scaled(e: &LossExpr, factor: f32) -> LossExpr {
    reweighted(e, factor * e.root_weight())
}

fn sorted(op: Op, w: f32, a: &LossExpr, b: &LossExpr) -> LossExpr {
    match a.structural_cmp(b) {
        Ordering::Greater => LossExpr::binary(op, w, b, a),
        _ => LossExpr::binary(op, w, a, b),
    }
}

fn rebuild(op: Op, w: f32, kids: &[&LossExpr]) -> LossExpr {
    match kids {
        [a] => LossExpr::unary(op, w, a),
        [a, b] => LossExpr::binary(op, w, a, b),
        _ => unreachable!("only operators with arguments are rebuilt"),
    }
}

#[cfg(test)]
mod tests;
