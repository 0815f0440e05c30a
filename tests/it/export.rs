//! `evomal export`: every generated program, run by Python (tests/export/check.py), against the
//! interpreter — values, dM/dyhat and dM/dw, on a grid that holds the protected operators' edge
//! inputs. `.ci/run` installs the packages and sets EVOMAL_REQUIRE_EXPORT_TARGETS, so there a
//! missing package fails the test; elsewhere the test says which targets it could not run.

use std::path::Path;
use std::process::Command;

use evomal::backend::export::{Target, export};
use evomal::expr::random::{Method, random_tree};
use evomal::expr::{LossExpr, interp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Inputs where the operators' edge cases live: signed zeros, the 1e-7 clamp of `log` and
/// `sqrt` (below, at, above), ties, and NaN.
const EDGES: [f64; 15] = [
    0.0,
    -0.0,
    1e-8,
    -1e-8,
    1e-7,
    -1e-7,
    2e-7,
    0.5,
    -0.5,
    1.0,
    -1.0,
    2.5,
    -3.0,
    40.0,
    f64::NAN,
];

/// (name, target, the Python module it needs): LaTeX is read back by tests/export/latex_eval.py.
const TARGETS: [(&str, Target, &str); 5] = [
    ("numpy", Target::Numpy, "numpy"),
    ("pytorch", Target::Pytorch, "torch"),
    ("jax", Target::Jax, "jax"),
    ("sympy", Target::Sympy, "sympy"),
    ("latex", Target::Latex, "numpy"),
];

fn importable(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn losses() -> Vec<LossExpr> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut all: Vec<LossExpr> = [
        "mul(-1, mul(y, log(yhat)))",
        "sqrt(sub(y, yhat))",
        "aq(sub(y, yhat), tanh(yhat))",
        "add(min(y, yhat), max(square(yhat), abs(y)))",
        "add(sign(sub(yhat, y)), square(yhat))",
        "log(sqrt(abs(yhat)))",
        "mul(1, add(-1, yhat))",
        "sub(y, sub(yhat, 1))",
        "mul(add(y, yhat), sub(y, -1))",
        "aq(add(y, 1), square(sub(yhat, -1)))",
    ]
    .iter()
    .map(|t| t.parse().unwrap())
    .collect();
    for _ in 0..30 {
        let method = if rng.random_bool(0.5) {
            Method::Grow
        } else {
            Method::Full
        };
        all.push(random_tree(&mut rng, method, 1, 4));
    }
    // The hand-written ones and half the others also with unit weights, where no factor hides
    // a missing parenthesis.
    let unit: Vec<LossExpr> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 10 || i % 2 == 0)
        .map(|(_, e)| e.clone())
        .collect();
    for e in &mut all {
        let w: Vec<f32> = (0..e.len()).map(|_| rng.random_range(0.5..1.5)).collect();
        e.set_weights(&w);
    }
    all.extend(unit);
    all
}

#[test]
fn every_export_target_agrees_with_the_interpreter() {
    let required = std::env::var_os("EVOMAL_REQUIRE_EXPORT_TARGETS").is_some();
    let (ready, missing): (Vec<&(&str, Target, &str)>, Vec<_>) = TARGETS
        .iter()
        .partition(|(_, _, module)| importable(module));
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|t| t.2).collect();
        assert!(
            !required,
            "the export tests need the Python packages {names:?} (pip install numpy sympy torch 'jax[cpu]')"
        );
        eprintln!("note: export targets not checked here, for want of {names:?}");
    }
    if ready.is_empty() {
        return;
    }
    let dir = crate::scratch("export");
    let dir = dir.path();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut points: Vec<(f64, f64, bool)> = EDGES
        .iter()
        .flat_map(|&y| EDGES.iter().map(move |&yhat| (y, yhat, false)))
        .collect();
    points.extend((0..40).map(|_| {
        (
            rng.random_range(-3.0..3.0),
            rng.random_range(-3.0..3.0),
            true,
        )
    }));
    let cases: Vec<serde_json::Value> = losses()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let weights: Vec<f64> = e.weights().iter().map(|&w| f64::from(w)).collect();
            let d: Vec<interp::Derivatives> = points
                .iter()
                .map(|&(y, yhat, _)| interp::derivatives(e, &weights, y, yhat))
                .collect();
            let mut modules = serde_json::Map::new();
            for (name, target, _) in &ready {
                let ext = if *name == "latex" { "tex" } else { "py" };
                let path = dir.join(format!("loss{i}_{name}.{ext}"));
                std::fs::write(&path, export(e, *target)).unwrap();
                modules.insert(name.to_string(), path.display().to_string().into());
            }
            serde_json::json!({
                "expr": e.to_string(),
                "modules": modules,
                "weights": weights,
                "y": points.iter().map(|p| p.0).collect::<Vec<_>>(),
                "yhat": points.iter().map(|p| p.1).collect::<Vec<_>>(),
                "generic": points.iter().map(|p| p.2).collect::<Vec<_>>(),
                "loss": d.iter().map(|d| d.loss).collect::<Vec<_>>(),
                "dyhat": d.iter().map(|d| d.dyhat).collect::<Vec<_>>(),
                "dphi": d.iter().map(|d| d.dphi.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let cases_path = dir.join("cases.json");
    std::fs::write(&cases_path, serde_json::to_string(&cases).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/export/check.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg(&cases_path)
        .args(ready.iter().map(|t| t.0))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    eprintln!("{text}");
}

#[test]
fn the_cli_exports_a_runs_best_loss_and_names_what_it_writes() {
    let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .args(["export", "square(sub(y, yhat))", "--to", "latex"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "\\left(y - \\hat{y}\\right)^{2}\n"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .args(["export", "square(sub(y, yhat))", "--to", "pytorch"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("class LearnedLoss(torch.nn.Module)"),
        "{text}"
    );
    assert!(text.contains("torch.nn.Parameter"), "{text}");
}
