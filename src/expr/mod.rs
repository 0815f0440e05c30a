//! The loss IR: one symbolic loss `M(y, yhat)` as a flat, index-addressed vector of nodes.
//!
//! **Invariant (post-order, contiguous subtrees).** Children precede their parent and every
//! subtree occupies one contiguous range of the vector that ends at its root; the tree's root is
//! the last node. So a binary node at `i` has its right child at `i - 1` and its left child just
//! before the right child's subtree, and slicing out or splicing in a subtree is a range copy.
//!
//! **Weights.** Every node carries one weight `phi_i` (1.0 in an unparameterised tree). A node's
//! output is multiplied by its weight before it feeds its parent; the root has no parent, so its
//! weight never acts and a tree of `n` nodes has `n - 1` effective weights — exactly the nodes
//! `0..n-1`, since the root is last.
//!
//! This module knows nothing about backends, plugins or manifests.

mod canon;
pub mod deriv;
pub mod interp;
mod op;
mod parse;
mod print;
pub mod random;

use std::ops::Range;

pub use canon::structural_hash;
pub use op::{OPS, Op, OpInfo, PROTECT_EPS};
pub use parse::{MAX_NODES, ParseError};

/// `text` cut to its first 120 characters (with the length it had) when longer, so that error
/// messages quoting an expression stay one readable line.
pub fn abbreviate(text: &str) -> String {
    const KEEP: usize = 120;
    match text.char_indices().nth(KEEP) {
        None => text.to_string(),
        Some((cut, _)) => format!(
            "{}... ({} characters in all)",
            &text[..cut],
            text.chars().count()
        ),
    }
}

/// Index of a node in its [`LossExpr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn idx(self) -> usize {
        self.0 as usize
    }
}

/// One node: an operator and its children (the first `op.arity()` entries of `args`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub op: Op,
    args: [NodeId; 2],
}

impl Node {
    pub fn children(&self) -> &[NodeId] {
        &self.args[..self.op.arity()]
    }
}

/// A loss expression: post-order nodes plus one weight per node (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct LossExpr {
    nodes: Vec<Node>,
    weights: Vec<f32>,
}

impl LossExpr {
    /// A single terminal.
    pub fn leaf(op: Op, weight: f32) -> LossExpr {
        assert!(op.is_terminal(), "{op} is not a terminal");
        let mut e = LossExpr {
            nodes: Vec::with_capacity(1),
            weights: Vec::with_capacity(1),
        };
        e.push_node(op, &[], weight);
        e
    }

    /// `op(a)` with weight `weight` on the new root.
    pub fn unary(op: Op, weight: f32, a: &LossExpr) -> LossExpr {
        assert_eq!(op.arity(), 1, "{op} is not unary");
        let mut e = LossExpr::with_capacity(a.len() + 1);
        let a_root = e.append(a);
        e.push_node(op, &[a_root], weight);
        e
    }

    /// `op(a, b)` with weight `weight` on the new root.
    pub fn binary(op: Op, weight: f32, a: &LossExpr, b: &LossExpr) -> LossExpr {
        assert_eq!(op.arity(), 2, "{op} is not binary");
        let mut e = LossExpr::with_capacity(a.len() + b.len() + 1);
        let a_root = e.append(a);
        let b_root = e.append(b);
        e.push_node(op, &[a_root, b_root], weight);
        e
    }

    fn with_capacity(n: usize) -> LossExpr {
        LossExpr {
            nodes: Vec::with_capacity(n),
            weights: Vec::with_capacity(n),
        }
    }

    /// Appends a whole tree after the current nodes and returns its root's new id.
    fn append(&mut self, other: &LossExpr) -> NodeId {
        let offset = self.nodes.len() as u32;
        self.nodes.extend(other.nodes.iter().map(|n| {
            let mut n = *n;
            for a in &mut n.args[..n.op.arity()] {
                a.0 += offset;
            }
            n
        }));
        self.weights.extend_from_slice(&other.weights);
        NodeId(self.nodes.len() as u32 - 1)
    }

    /// Pushes a node whose children are already in place; checks the post-order invariant.
    pub(crate) fn push_node(&mut self, op: Op, children: &[NodeId], weight: f32) -> NodeId {
        assert_eq!(
            children.len(),
            op.arity(),
            "{op} takes {} children",
            op.arity()
        );
        let id = NodeId(self.nodes.len() as u32);
        // Contiguity: the last child ends right before the parent, and each earlier child ends
        // right before the next one's subtree starts.
        let mut end = id.idx();
        for &c in children.iter().rev() {
            assert_eq!(c.idx() + 1, end, "child {c:?} of {op} breaks post-order");
            end = self.subtree_range(c).start;
        }
        let mut args = [NodeId(u32::MAX); 2];
        args[..children.len()].copy_from_slice(children);
        self.nodes.push(Node { op, args });
        self.weights.push(weight);
        id
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a loss expression has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn root(&self) -> NodeId {
        NodeId(self.nodes.len() as u32 - 1)
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.idx()]
    }

    pub fn op(&self, id: NodeId) -> Op {
        self.nodes[id.idx()].op
    }

    pub fn children(&self, id: NodeId) -> &[NodeId] {
        self.nodes[id.idx()].children()
    }

    /// All node weights, root included (the root's is stored but inert).
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    pub fn weight(&self, id: NodeId) -> f32 {
        self.weights[id.idx()]
    }

    /// Replaces every weight; `weights.len()` must equal `len()`.
    pub fn set_weights(&mut self, weights: &[f32]) {
        assert_eq!(weights.len(), self.len(), "one weight per node");
        self.weights.copy_from_slice(weights);
    }

    /// The same tree with every weight 1.0 (the GP's view of a candidate).
    pub fn unweighted(&self) -> LossExpr {
        LossExpr {
            nodes: self.nodes.clone(),
            weights: vec![1.0; self.len()],
        }
    }

    /// Number of weights that act: every node but the root.
    pub fn n_weights(&self) -> usize {
        self.len() - 1
    }

    /// Height of the tree; a single terminal has height 0 (DEAP's convention).
    pub fn height(&self) -> usize {
        let mut h = vec![0usize; self.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            h[i] = n
                .children()
                .iter()
                .map(|c| h[c.idx()] + 1)
                .max()
                .unwrap_or(0);
        }
        h[self.len() - 1]
    }

    /// Depth of every node (root 0), by index.
    pub fn depths(&self) -> Vec<usize> {
        let mut d = vec![0usize; self.len()];
        for i in (0..self.len()).rev() {
            for c in self.nodes[i].children() {
                d[c.idx()] = d[i] + 1;
            }
        }
        d
    }

    pub fn contains(&self, op: Op) -> bool {
        self.nodes.iter().any(|n| n.op == op)
    }

    /// Whether the tree mentions both `y` and `yhat` (METHOD.md §2's constraint on candidates).
    pub fn contains_y_and_yhat(&self) -> bool {
        self.contains(Op::Y) && self.contains(Op::Yhat)
    }

    /// The index range of the subtree rooted at `id` (it ends at `id`).
    pub fn subtree_range(&self, id: NodeId) -> Range<usize> {
        let mut start = id.idx();
        // Follow first children down to the leftmost leaf: it starts the range.
        while let Some(&first) = self.nodes[start].children().first() {
            start = first.idx();
        }
        start..id.idx() + 1
    }

    /// A copy of the subtree rooted at `id`, weights included.
    pub fn subtree(&self, id: NodeId) -> LossExpr {
        let r = self.subtree_range(id);
        let offset = r.start as u32;
        LossExpr {
            nodes: self.nodes[r.clone()]
                .iter()
                .map(|n| {
                    let mut n = *n;
                    for a in &mut n.args[..n.op.arity()] {
                        a.0 -= offset;
                    }
                    n
                })
                .collect(),
            weights: self.weights[r].to_vec(),
        }
    }

    /// This tree with the subtree at `id` replaced by `new` (weights come along with `new`).
    pub fn replace_subtree(&self, id: NodeId, new: &LossExpr) -> LossExpr {
        let r = self.subtree_range(id);
        let removed = r.len() as i64;
        let shift = new.len() as i64 - removed;
        let mut out = LossExpr::with_capacity((self.len() as i64 + shift) as usize);
        out.nodes.extend_from_slice(&self.nodes[..r.start]);
        out.weights.extend_from_slice(&self.weights[..r.start]);
        out.append(new);
        for n in &self.nodes[r.end..] {
            let mut n = *n;
            for a in &mut n.args[..n.op.arity()] {
                if a.idx() >= r.start {
                    a.0 = (a.0 as i64 + shift) as u32;
                }
            }
            out.nodes.push(n);
        }
        out.weights.extend_from_slice(&self.weights[r.end..]);
        out
    }
}

#[cfg(test)]
mod tests;
