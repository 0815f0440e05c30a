//! Proptest strategies shared by the property tests: random loss trees, weights and inputs.

use evomal::expr::{LossExpr, Op};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::RngSeed;

/// Property-test settings: `cases` cases drawn from a fixed seed, so every CI run checks the same
/// trees and a red run is reproducible. `PROPTEST_RNG_SEED` and `PROPTEST_CASES` override both,
/// to explore beyond them.
pub fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x00e7_0a11);
    }
    config
}

/// Weights as the search produces them: mostly exactly 1 (unparameterised candidates), else
/// near 1 (freshly initialised local search) or anywhere in [-3, 3] (after meta-training).
pub fn weight() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => Just(1.0f32),
        2 => (-0.01f32..0.01).prop_map(|e| 1.0 + e),
        2 => -3.0f32..3.0,
    ]
}

/// A random tree of height at most `max_height`, with random weights.
pub fn tree(max_height: u32) -> impl Strategy<Value = LossExpr> {
    let leaf = (select(Op::TERMINALS.to_vec()), weight()).prop_map(|(op, w)| LossExpr::leaf(op, w));
    leaf.prop_recursive(max_height, 64, 2, |inner| {
        prop_oneof![
            (select(Op::UNARY.to_vec()), weight(), inner.clone())
                .prop_map(|(op, w, a)| LossExpr::unary(op, w, &a)),
            (select(Op::BINARY.to_vec()), weight(), inner.clone(), inner)
                .prop_map(|(op, w, a, b)| LossExpr::binary(op, w, &a, &b)),
        ]
    })
}

/// One input value, with the edge cases named by the issue over-represented.
pub fn input() -> impl Strategy<Value = f32> {
    prop_oneof![
        1 => Just(0.0f32),
        1 => Just(1e-8f32),
        1 => Just(-1e-8f32),
        1 => Just(1e6f32),
        1 => Just(-1e6f32),
        1 => Just(1.0f32),
        1 => Just(-1.0f32),
        4 => 0.0f32..1.0,
        4 => -10.0f32..10.0,
        2 => -1e6f32..1e6,
    ]
}

/// A batch of `(y, yhat)` pairs.
pub fn batch(max_len: usize) -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    proptest::collection::vec((input(), input()), 1..=max_len)
        .prop_map(|pairs| pairs.into_iter().unzip())
}

/// Equal within relative `tol`, or non-finite in the same way (both NaN, or the same infinity).
pub fn close(a: f32, b: f32, tol: f32) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= tol * a.abs().max(b.abs()) || (a - b).abs() < f32::MIN_POSITIVE
}
