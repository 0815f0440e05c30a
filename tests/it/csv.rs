//! The `csv` plugin through the binary: a table with no Rust, the two binary-classification
//! modes, and bad rows named by file, line and column.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::plugins::build_plugin;

fn evomal(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap()
}

/// `evomal train MANIFEST --loss LOSS`: the report's test metric per seed.
fn train(manifest: &Path, loss: &str, dir: &Path) -> Result<Vec<f64>, String> {
    let out = dir.join(format!("{loss}.json"));
    let o = evomal(&[
        "train",
        manifest.to_str().unwrap(),
        "--loss",
        loss,
        "--quiet",
        "--seeds",
        "0,1,2",
        "--out",
        out.to_str().unwrap(),
    ]);
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    Ok(v["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["test"].as_f64().unwrap())
        .collect())
}

fn manifest(dir: &Path, data: &str, model: &str) -> PathBuf {
    let path = dir.join("m.toml");
    let text = format!(
        "[task]\nplugin = \"csv\"\nmodel = \"{model}\"\n[task.data]\n{data}\n[testing]\nsteps = 500\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_diabetes_table_through_csv_trains_exactly_as_its_own_plugin() {
    build_plugin("evomal-plugin-csv");
    build_plugin("evomal-plugin-diabetes");
    let dir = crate::scratch("csv-diabetes");
    let dir = dir.path();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/diabetes/data");
    let m = manifest(
        dir,
        &format!(
            "train = {:?}\nvalid = {:?}\ntest = {:?}\ntarget = \"target\"\nkind = \"regression\"",
            data.join("train.csv"),
            data.join("valid.csv"),
            data.join("test.csv")
        ),
        "linear",
    );
    let own = dir.join("own.toml");
    std::fs::write(
        &own,
        "[task]\nplugin = \"diabetes\"\nmodel = \"linear\"\n[testing]\nsteps = 500\n",
    )
    .unwrap();
    let via_csv = train(&m, "mse", dir).unwrap();
    assert_eq!(via_csv, train(&own, "mse", dir).unwrap());
}

#[test]
fn two_classes_train_alike_as_a_softmax_or_a_sigmoid() {
    build_plugin("evomal-plugin-csv");
    let dir = crate::scratch("csv-binary");
    let dir = dir.path();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/csv/examples/breast_cancer.csv");
    let data = format!("file = {file:?}\ntarget = \"diagnosis\"\nkind = \"classification\"");
    let softmax = train(&manifest(dir, &data, "linear"), "ce", dir).unwrap();
    let sigmoid = manifest(dir, &format!("{data}\nbinary = \"sigmoid\""), "linear");
    let sigmoid = train(&sigmoid, "ce", dir).unwrap();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // With the one-output cross-entropy ignoring the negative examples, the sigmoid model
    // erred on 7% of the test set against 2.4% for the softmax.
    assert!(mean(&softmax) < 0.05, "{softmax:?}");
    assert!(
        (mean(&sigmoid) - mean(&softmax)).abs() < 0.02,
        "sigmoid {sigmoid:?} vs softmax {softmax:?}"
    );
}

#[test]
fn bad_rows_and_settings_are_named() {
    build_plugin("evomal-plugin-csv");
    let dir = crate::scratch("csv-bad");
    let dir = dir.path();
    let table = dir.join("t.csv");
    let rows: String = (0..40)
        .map(|i| format!("{i},{}\n", ["a", "b"][i % 2]))
        .collect();
    let cases = [
        (
            format!("x,label\n{rows}\n7,a\nseven,b\n"),
            "file = \"t.csv\"\ntarget = \"label\"\nkind = \"classification\"",
            "t.csv`, line 44, column `x`: `seven` is not a finite number",
        ),
        (
            format!("x,label\n{rows}"),
            "file = \"t.csv\"\ntarget = \"label\"\nkind = \"classification\"\nclasses = [\"a\", \"c\"]",
            "label `b` is not one of the classes [a, c]",
        ),
        (
            format!("x,label\n{rows}"),
            "file = \"t.csv\"\ntarget = \"lable\"\nkind = \"classification\"",
            "has no column `lable`; its columns: x, label",
        ),
        (
            format!("x,label\n{rows}"),
            "file = \"t.csv\"\ntarget = \"label\"",
            "`[task.data] kind` is required",
        ),
        (
            format!("x,label\n{rows}"),
            "file = \"t.csv\"\ntarget = \"label\"\nkind = \"classification\"\nsplit = [0.5, 0.5]",
            "`split` must be three positive fractions",
        ),
    ];
    for (text, data, expect) in cases {
        std::fs::write(&table, text).unwrap();
        let err = train(&manifest(dir, data, "linear"), "ce", dir).unwrap_err();
        assert!(err.contains(expect), "expected `{expect}` in: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
