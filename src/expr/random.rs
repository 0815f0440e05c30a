//! Random trees from the operator table, as DEAP generates them (`genGrow`, `genFull`): the
//! building blocks of ramped half-and-half initialisation and of subtree mutation.
//!
//! Heights follow DEAP: a terminal has height 0. Every weight is 1.

use rand::Rng;
use rand::seq::IndexedRandom;

use super::{LossExpr, NodeId, Op};

/// How a random tree chooses between terminals and operators above its maximum depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Operators everywhere above the chosen height: every leaf sits at that height.
    Full,
    /// From depth `min_height` on, a terminal with probability terminals/(all operators).
    Grow,
}

/// A random tree with height drawn uniformly from `min_height..=max_height`.
pub fn random_tree(
    rng: &mut impl Rng,
    method: Method,
    min_height: usize,
    max_height: usize,
) -> LossExpr {
    let height = rng.random_range(min_height..=max_height);
    let mut e: Option<LossExpr> = None;
    build(rng, method, 0, min_height, height, &mut e);
    e.expect("a random tree has at least one node")
}

fn build(
    rng: &mut impl Rng,
    method: Method,
    depth: usize,
    min_height: usize,
    height: usize,
    out: &mut Option<LossExpr>,
) -> NodeId {
    let n_terminals = Op::TERMINALS.len() as f64;
    let terminal_ratio = n_terminals / (n_terminals + (Op::UNARY.len() + Op::BINARY.len()) as f64);
    let leaf = depth >= height
        || (method == Method::Grow && depth >= min_height && rng.random_bool(terminal_ratio));
    let op = if leaf {
        *Op::TERMINALS.choose(rng).expect("terminals exist")
    } else {
        let n_ops = Op::UNARY.len() + Op::BINARY.len();
        let k = rng.random_range(0..n_ops);
        if k < Op::UNARY.len() {
            Op::UNARY[k]
        } else {
            Op::BINARY[k - Op::UNARY.len()]
        }
    };
    let mut args = Vec::with_capacity(2);
    for _ in 0..op.arity() {
        args.push(build(rng, method, depth + 1, min_height, height, out));
    }
    match out {
        Some(e) => e.push_node(op, &args, 1.0),
        None => {
            *out = Some(LossExpr::leaf(op, 1.0));
            NodeId(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn heights_respect_the_bounds_and_full_trees_are_full() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..2000 {
            let e = random_tree(&mut rng, Method::Grow, 2, 6);
            assert!(e.height() <= 6, "{e}");
            let e = random_tree(&mut rng, Method::Full, 2, 4);
            let h = e.height();
            assert!((2..=4).contains(&h), "{e}");
            let leaf_depths: Vec<usize> = e
                .depths()
                .into_iter()
                .zip(e.nodes())
                .filter(|(_, n)| n.op.is_terminal())
                .map(|(d, _)| d)
                .collect();
            assert!(leaf_depths.iter().all(|&d| d == h), "{e} is not full");
        }
    }

    #[test]
    fn same_seed_same_trees() {
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..50)
                .map(|_| random_tree(&mut rng, Method::Grow, 0, 8).to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
