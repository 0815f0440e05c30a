use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::expr::random::{Method, random_tree};

#[test]
fn shaders_for_random_trees_validate_with_naga() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for i in 0..600 {
        let method = if i % 2 == 0 {
            Method::Grow
        } else {
            Method::Full
        };
        let e = random_tree(&mut rng, method, 0, 6);
        for kind in [KernelKind::Loss, KernelKind::LossGrad, KernelKind::Full] {
            let src = shader(&e, kind);
            validate(&e, &src).unwrap_or_else(|err| panic!("{err}"));
        }
    }
}

#[test]
fn constant_subtrees_that_fold_to_non_finite_values_still_validate() {
    for text in [
        "add(y, log(sub(1, 1)))",
        "add(yhat, aq(1, log(sub(-1, -1))))",
        "mul(y, sqrt(mul(0*1, yhat)))",
    ] {
        let e: LossExpr = text.parse().unwrap();
        validate(&e, &shader(&e, KernelKind::Full)).unwrap_or_else(|err| panic!("{err}"));
    }
}

#[test]
fn bindings_follow_the_kind() {
    let e: LossExpr = "square(sub(y, yhat))".parse().unwrap();
    let loss = shader(&e, KernelKind::Loss);
    assert!(loss.contains("var<storage, read_write> loss") && !loss.contains("dyhat"));
    let full = shader(&e, KernelKind::Full);
    assert!(full.contains("@binding(7) var<storage, read_write> d2"));
    assert!(full.contains("dphi[i * 3u + 2u]"));
}
