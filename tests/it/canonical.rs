//! Canonical form on random trees: it keeps the loss's value and is a fixed point.

use evomal::expr::{LossExpr, interp, structural_hash};
use proptest::prelude::*;

use crate::strategies::{close, input, tree};

proptest! {
    #![proptest_config(crate::strategies::config(3_000))]

    #[test]
    fn canonical_form_keeps_the_value(e in tree(8), y in input(), yhat in input()) {
        let c = e.canonical();
        let at = |e: &LossExpr| interp::eval(e, y as f64, yhat as f64);
        let (a, b) = (at(&e), at(&c));
        // `sub(a, a) -> 0` ignores infinite `a`.
        if a.is_finite() && b.is_finite() {
            // Folded constants and lifted weights are rounded to f32 (relative error 6e-8 per
            // fold), which cancellation downstream can amplify. How far the value moves when
            // every weight moves by 1e-6 bounds that amplification from above.
            let slack = [1.0f32 + 1e-6, 1.0 - 1e-6]
                .map(|s| {
                    let mut p = e.clone();
                    p.set_weights(&e.weights().iter().map(|w| w * s).collect::<Vec<_>>());
                    (at(&p) - a).abs()
                })
                .into_iter()
                .fold(0.0, f64::max);
            prop_assert!(
                close(a as f32, b as f32, 1e-4) || (a - b).abs() < 1e-4 + slack,
                "{e} = {a:e} but canonical {c} = {b:e} at y={y}, yhat={yhat} (slack {slack:e})"
            );
        }
    }

    #[test]
    fn canonical_form_is_a_fixed_point(e in tree(8)) {
        let c = e.canonical();
        let cc = c.canonical();
        prop_assert_eq!(cc.to_string(), c.to_string());
        prop_assert_eq!(structural_hash(&cc), structural_hash(&c));
        prop_assert!(c.len() <= e.len() + 2, "{} grew to {}", e, c);
    }
}

#[test]
fn canonical_form_unifies_commuted_unweighted_trees() {
    let pairs = [
        (
            "add(mul(y, yhat), tanh(yhat))",
            "add(tanh(yhat), mul(yhat, y))",
        ),
        ("min(max(y, yhat), log(y))", "min(log(y), max(yhat, y))"),
        ("mul(-1, mul(-1, sub(y, yhat)))", "sub(y, yhat)"),
        ("square(mul(-1, sub(y, yhat)))", "square(abs(sub(y, yhat)))"),
    ];
    for (a, b) in pairs {
        let (a, b): (LossExpr, LossExpr) = (a.parse().unwrap(), b.parse().unwrap());
        assert_eq!(a.canonical(), b.canonical(), "{a} vs {b}");
    }
}
