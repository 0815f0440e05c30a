//! The text format: round trips, infix goldens, and errors on bad input.

use evomal::expr::{LossExpr, ParseError};
use proptest::prelude::*;

use crate::strategies::tree;

proptest! {
    #![proptest_config(crate::strategies::config(2_000))]

    #[test]
    fn print_then_parse_is_identity(e in tree(10)) {
        let text = e.to_string();
        let back: LossExpr = text.parse().map_err(|err: ParseError| {
            TestCaseError::fail(err.render(&text))
        })?;
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(back.to_string(), text);
    }
}

#[test]
fn parse_accepts_spacing_signs_and_weights() {
    let e: LossExpr = " mul( +1 ,\t-0.5*log( yhat ) ) ".parse().unwrap();
    assert_eq!(e.to_string(), "mul(1, -0.5*log(yhat))");
    let e: LossExpr = "add(1e-3*y, 2.5*-1)".parse().unwrap();
    assert_eq!(e.to_string(), "add(0.001*y, 2.5*-1)");
}

#[test]
fn infix_goldens() {
    let cases = [
        ("mul(-1, mul(y, log(yhat)))", "-(y * log(yhat))"),
        ("square(sub(y, yhat))", "(y - yhat)^2"),
        ("abs(sub(y, yhat))", "|y - yhat|"),
        ("aq(y, yhat)", "y / sqrt(1 + yhat^2)"),
        ("aq(y, sub(y, yhat))", "y / sqrt(1 + (y - yhat)^2)"),
        ("sub(y, add(yhat, 1))", "y - (yhat + 1)"),
        ("add(sub(y, yhat), 1)", "y - yhat + 1"),
        ("mul(add(y, 1), sub(y, yhat))", "(y + 1) * (y - yhat)"),
        ("mul(y, mul(yhat, y))", "y * (yhat * y)"),
        ("add(0.93*log(yhat), -1)", "0.93 * log(yhat) + -1"),
        (
            "max(tanh(y), sign(sqrt(yhat)))",
            "max(tanh(y), sign(sqrt(yhat)))",
        ),
        ("square(mul(-1, yhat))", "(-yhat)^2"),
        ("0.5*square(y)", "y^2"),
        ("sub(y, 2.5*1)", "y - 2.5"),
        ("add(y, 2*-1)", "y + -2"),
        ("mul(yhat, 0.5*-1)", "yhat * (-0.5)"),
    ];
    for (text, want) in cases {
        let e: LossExpr = text.parse().unwrap();
        assert_eq!(e.to_infix(), want, "infix of {text}");
    }
}

#[test]
fn bad_input_names_the_position_and_the_problem() {
    let cases = [
        ("", "at column 1: empty expression"),
        ("   ", "at column 4: empty expression"),
        (
            "foo(y, yhat)",
            "at column 1: unknown operator `foo`; known: y, yhat, 1, -1, sign",
        ),
        ("add(y)", "at column 1: `add` takes 2 argument(s), found 1"),
        (
            "log(y, yhat)",
            "at column 1: `log` takes 1 argument(s), found 2",
        ),
        (
            "mul(y, log(yhat)",
            "at column 17: expected `,` or `)`, found end of input",
        ),
        (
            "mul(y, yhat))",
            "at column 13: expected end of input, found `)`",
        ),
        (
            "add(y, (yhat))",
            "at column 8: expected an operator, y, yhat, 1 or -1, found `(`",
        ),
        (
            "add(y, 2)",
            "at column 8: the only constant terminals are 1 and -1, found `2`",
        ),
        ("add(y, 1e999*yhat)", "at column 8: `1e999` is not a number"),
        ("y(yhat)", "at column 1: `y` takes 0 argument(s), found 1"),
        (
            "sub(y, yhat) x",
            "at column 14: expected end of input, found `x`",
        ),
    ];
    for (text, want) in cases {
        let err = text.parse::<LossExpr>().unwrap_err();
        assert!(
            err.to_string().starts_with(want),
            "{text:?}: got `{err}`, want `{want}…`"
        );
    }
    let deep = format!("{}y{}", "abs(".repeat(10_000), ")".repeat(10_000));
    let err = deep.parse::<LossExpr>().unwrap_err();
    assert!(err.to_string().contains("nesting deeper than"), "{err}");
}

#[test]
fn render_points_at_the_error() {
    let text = "mul(y, lg(yhat))";
    let err = text.parse::<LossExpr>().unwrap_err();
    let shown = err.render(text);
    assert_eq!(shown.lines().nth(1).unwrap().find('^'), Some(7), "{shown}");
}
