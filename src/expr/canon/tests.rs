use super::*;

fn canon(s: &str) -> String {
    s.parse::<LossExpr>().unwrap().canonical().to_string()
}

#[test]
fn golden_canonical_forms() {
    let cases = [
        ("mul(-1, mul(y, log(yhat)))", "mul(-1, mul(y, log(yhat)))"),
        ("mul(mul(log(yhat), y), -1)", "mul(-1, mul(y, log(yhat)))"),
        (
            "mul(-1, mul(-1, square(sub(y, yhat))))",
            "square(sub(y, yhat))",
        ),
        ("add(yhat, y)", "add(y, yhat)"),
        ("add(sub(y, y), yhat)", "yhat"),
        ("add(add(1, 1), sub(y, yhat))", "add(sub(y, yhat), 2*1)"),
        ("add(mul(1, 1), sub(y, yhat))", "add(sub(y, yhat), 1)"),
        ("abs(abs(sub(y, yhat)))", "abs(sub(y, yhat))"),
        ("square(abs(sub(y, yhat)))", "square(sub(y, yhat))"),
        ("square(mul(-1, sub(y, yhat)))", "square(sub(y, yhat))"),
        ("min(y, y)", "y"),
        ("max(yhat, y)", "max(y, yhat)"),
        ("tanh(add(y, mul(yhat, 0*1)))", "tanh(y)"),
        ("mul(2*y, yhat)", "mul(2*1, mul(y, yhat))"),
        // A constant root keeps its value through `mul(k, 1)`: the root weight is inert.
        ("log(mul(-1, -1))", "mul(0*1, 1)"),
        ("aq(sub(y, yhat), sub(1, 1))", "sub(y, yhat)"),
        ("sign(mul(-1, yhat))", "mul(-1, sign(yhat))"),
        // 0.1f32 * -10 is -1.0000000149 in f64 and exactly -1 in f32.
        ("aq(y, mul(0.1*1, -10*1))", "aq(y, -1)"),
    ];
    for (input, want) in cases {
        assert_eq!(canon(input), want, "canonical form of {input}");
    }
}

#[test]
fn equal_trees_share_a_hash_and_different_ones_do_not() {
    let h = |s: &str| structural_hash(&s.parse::<LossExpr>().unwrap().canonical());
    assert_eq!(
        h("add(mul(y, yhat), square(y))"),
        h("add(square(y), mul(yhat, y))")
    );
    assert_ne!(h("sub(y, yhat)"), h("sub(yhat, y)"));
    assert_ne!(h("add(y, 0.5*log(yhat))"), h("add(y, log(yhat))"));
    // The root's weight never acts, so it does not distinguish trees.
    assert_eq!(h("0.5*log(yhat)"), h("log(yhat)"));
}
