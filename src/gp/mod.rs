//! Genetic programming over loss trees (METHOD.md §3): ramped half-and-half initialisation,
//! tournament selection, one-point crossover, uniform subtree mutation, the static height limit
//! with parent fallback, the y/yhat constraint repair, and elitism. Fitness is minimised; a
//! non-finite fitness counts as +inf.
//!
//! Everything draws from the one RNG it is given, so a seed fixes a whole search. This module
//! sees losses only as trees and fitnesses as numbers: no plugins, no backends.

#[cfg(test)]
mod tests;

use rand::Rng;
use rand::seq::IndexedRandom;

use crate::expr::random::{Method, random_tree};
use crate::expr::{LossExpr, NodeId, Op};

/// The GP settings; `Default` is the reference configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct GpConfig {
    pub population: usize,
    pub generations: usize,
    pub crossover_rate: f64,
    pub mutation_rate: f64,
    /// Fraction of the population carried over unchanged (at least one when positive).
    pub elitism_rate: f64,
    pub tournament_size: usize,
    pub init_min_height: usize,
    pub init_max_height: usize,
    /// Heights of the subtrees that mutation grows.
    pub mutation_min_height: usize,
    pub mutation_max_height: usize,
    /// Offspring higher than this are replaced by their parent.
    pub max_height: usize,
}

impl Default for GpConfig {
    fn default() -> GpConfig {
        GpConfig {
            population: 25,
            generations: 50,
            crossover_rate: 0.7,
            mutation_rate: 0.25,
            elitism_rate: 0.05,
            tournament_size: 4,
            init_min_height: 2,
            init_max_height: 4,
            mutation_min_height: 0,
            mutation_max_height: 2,
            max_height: 10,
        }
    }
}

impl GpConfig {
    /// How many of the best are carried over: `ceil(rate * population)` would keep 2 of 25 at
    /// the reference 5%; DEAP-style implementations round down but keep at least one.
    pub fn n_elites(&self) -> usize {
        if self.elitism_rate <= 0.0 {
            0
        } else {
            ((self.elitism_rate * self.population as f64) as usize).clamp(1, self.population)
        }
    }
}

/// Half grow, half full trees, heights uniform in the initial range, repaired to use y and yhat.
pub fn initial_population(rng: &mut impl Rng, cfg: &GpConfig) -> Vec<LossExpr> {
    (0..cfg.population)
        .map(|_| {
            let tree = half_and_half(rng, cfg.init_min_height, cfg.init_max_height);
            repair(rng, &tree)
        })
        .collect()
}

fn half_and_half(rng: &mut impl Rng, min_height: usize, max_height: usize) -> LossExpr {
    let method = if rng.random_bool(0.5) {
        Method::Grow
    } else {
        Method::Full
    };
    random_tree(rng, method, min_height, max_height)
}

/// The next generation: the elites unchanged, then offspring of tournament-selected parents by
/// crossover, mutation or reproduction. Every offspring is within the height limit and uses both
/// y and yhat.
pub fn next_generation(
    rng: &mut impl Rng,
    cfg: &GpConfig,
    population: &[LossExpr],
    fitness: &[f64],
) -> Vec<LossExpr> {
    assert_eq!(
        population.len(),
        fitness.len(),
        "one fitness per individual"
    );
    let mut next: Vec<LossExpr> = elites(fitness, cfg.n_elites())
        .into_iter()
        .map(|i| population[i].clone())
        .collect();
    while next.len() < cfg.population {
        let r: f64 = rng.random();
        let parent = &population[tournament(rng, fitness, cfg.tournament_size)];
        let child = if r < cfg.crossover_rate {
            let other = &population[tournament(rng, fitness, cfg.tournament_size)];
            let (a, b) = crossover(rng, parent, other);
            // Each child answers to its own parent for the height limit.
            next.push(within_limit(rng, a, parent, cfg.max_height));
            if next.len() == cfg.population {
                break;
            }
            within_limit(rng, b, other, cfg.max_height)
        } else if r < cfg.crossover_rate + cfg.mutation_rate {
            let child = mutate(rng, parent, cfg);
            within_limit(rng, child, parent, cfg.max_height)
        } else {
            parent.clone()
        };
        next.push(child);
    }
    next
}

/// The repaired offspring if it is low enough, else its parent (valid already: parents are
/// members of a population, and repair comes first because it can add a level).
fn within_limit(
    rng: &mut impl Rng,
    child: LossExpr,
    parent: &LossExpr,
    max_height: usize,
) -> LossExpr {
    let child = repair(rng, &child);
    if child.height() <= max_height {
        child
    } else {
        parent.clone()
    }
}

/// Indices of the `n` best (lowest) fitnesses, best first; ties keep population order.
pub fn elites(fitness: &[f64], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..fitness.len()).collect();
    idx.sort_by(|&a, &b| key(fitness[a]).total_cmp(&key(fitness[b])).then(a.cmp(&b)));
    idx.truncate(n);
    idx
}

/// Non-finite fitness is the worst possible.
fn key(f: f64) -> f64 {
    if f.is_finite() { f } else { f64::INFINITY }
}

/// The index of the best of `size` individuals drawn with replacement.
pub fn tournament(rng: &mut impl Rng, fitness: &[f64], size: usize) -> usize {
    let mut best = rng.random_range(0..fitness.len());
    for _ in 1..size {
        let i = rng.random_range(0..fitness.len());
        if key(fitness[i]) < key(fitness[best]) {
            best = i;
        }
    }
    best
}

/// One-point crossover: swaps a random non-root subtree of `a` with one of `b` (DEAP's
/// `cxOnePoint`). A single-node parent cannot cross and is returned unchanged.
pub fn crossover(rng: &mut impl Rng, a: &LossExpr, b: &LossExpr) -> (LossExpr, LossExpr) {
    if a.len() < 2 || b.len() < 2 {
        return (a.clone(), b.clone());
    }
    // Post-order puts the root last, so 0..len-1 are exactly the non-root nodes.
    let ia = NodeId(rng.random_range(0..a.len() - 1) as u32);
    let ib = NodeId(rng.random_range(0..b.len() - 1) as u32);
    (
        a.replace_subtree(ia, &b.subtree(ib)),
        b.replace_subtree(ib, &a.subtree(ia)),
    )
}

/// Uniform subtree mutation: a random node's subtree (the root's too) becomes a new
/// half-and-half tree of the mutation heights (DEAP's `mutUniform`).
pub fn mutate(rng: &mut impl Rng, e: &LossExpr, cfg: &GpConfig) -> LossExpr {
    let at = NodeId(rng.random_range(0..e.len()) as u32);
    let new = half_and_half(rng, cfg.mutation_min_height, cfg.mutation_max_height);
    e.replace_subtree(at, &new)
}

/// METHOD.md §2's constraint: a tree lacking `y` or `yhat` gets a random terminal replaced by
/// `add|sub|mul|aq` over `y` and `yhat` in random order. Valid trees come back unchanged.
pub fn repair(rng: &mut impl Rng, e: &LossExpr) -> LossExpr {
    if e.contains_y_and_yhat() {
        return e.clone();
    }
    let terminals: Vec<usize> = (0..e.len())
        .filter(|&i| e.nodes()[i].op.is_terminal())
        .collect();
    let at = NodeId(*terminals.choose(rng).expect("every tree has a terminal") as u32);
    let op = *[Op::Add, Op::Sub, Op::Mul, Op::Aq]
        .choose(rng)
        .expect("non-empty");
    let (first, second) = if rng.random_bool(0.5) {
        (Op::Y, Op::Yhat)
    } else {
        (Op::Yhat, Op::Y)
    };
    let node = LossExpr::binary(
        op,
        1.0,
        &LossExpr::leaf(first, 1.0),
        &LossExpr::leaf(second, 1.0),
    );
    e.replace_subtree(at, &node)
}
