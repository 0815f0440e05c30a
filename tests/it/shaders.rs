//! Emitted WGSL: golden files for the reference losses (regenerate with `UPDATE_EXPECT=1`), and
//! `evomal emit-shader` as a user runs it.

use std::path::Path;
use std::process::Command;

use evomal::backend::{KernelKind, wgsl};
use evomal::expr::LossExpr;

fn check_golden(name: &str, expr: &str, kind: KernelKind) {
    let e: LossExpr = expr.parse().unwrap();
    let src = wgsl::shader(&e, kind);
    wgsl::validate(&e, &src).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &src).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_EXPECT=1", path.display()));
    assert_eq!(
        src, want,
        "{name} changed: review the diff, then UPDATE_EXPECT=1"
    );
}

#[test]
fn golden_shaders_of_the_reference_losses() {
    check_golden(
        "mse_loss_grad.wgsl",
        "square(sub(y, yhat))",
        KernelKind::LossGrad,
    );
    check_golden(
        "ce_full.wgsl",
        "mul(-1, mul(y, log(yhat)))",
        KernelKind::Full,
    );
}

#[test]
fn emit_shader_writes_a_valid_shader() {
    let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .args(["emit-shader", "0.5*square(sub(y, yhat))", "--kind", "full"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let src = String::from_utf8(o.stdout).unwrap();
    assert!(
        src.contains("@compute @workgroup_size(64)") && src.contains("d2[i * 3u + 2u]"),
        "{src}"
    );
    let e: LossExpr = "0.5*square(sub(y, yhat))".parse().unwrap();
    wgsl::validate(&e, &src).unwrap();

    let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .args(["emit-shader", "sqaure(y)"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown operator `sqaure`"));
}
