//! The reference's other methods end to end (ML3, TaylorGLO) and `evomal compare`.

use std::path::Path;
use std::process::{Command, Output};

use crate::plugins::build_plugin;
use crate::run::tiny_manifest;

fn evomal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap()
}

/// run.json without its timings (each on a line of its own).
fn timeless(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("run.json"))
        .unwrap()
        .lines()
        .map(|l| l.split("\"seconds\": ").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn run(manifest: &Path, out: &Path) -> String {
    ok(&evomal(&[
        "run",
        manifest.to_str().unwrap(),
        "--quiet",
        "--out-dir",
        out.to_str().unwrap(),
    ]))
}

#[test]
fn ml3_saves_its_network_which_trains_again_to_the_same_result() {
    build_plugin("evomal-plugin-diabetes");
    let dir = crate::scratch("methods-ml3");
    let dir = dir.path();
    let m = tiny_manifest(dir, &[("method = \"evomal\"", "method = \"ml3\"")]);
    let out = dir.join("run");
    let stdout = run(&m, &out);
    assert!(stdout.contains("ML3: 10 meta steps"), "{stdout}");
    let r = report(&out);
    assert_eq!(r["method"], "ml3");
    assert_eq!(r["best"]["network"], "best_loss.ml3.json");
    assert_eq!(r["ml3"]["trace"].as_array().unwrap().len(), 10);
    assert!(out.join("fitness.svg").is_file());
    let learned = &r["meta_test"][0];
    assert_eq!(learned["name"], "learned");

    // The saved network, trained again from the same seed, gives the same test metric.
    let net = format!("@{}", out.join("best_loss.ml3.json").display());
    let again = dir.join("again.json");
    ok(&evomal(&[
        "train",
        m.to_str().unwrap(),
        "--loss",
        &net,
        "--quiet",
        "--out",
        again.to_str().unwrap(),
    ]));
    let again: serde_json::Value = serde_json::from_slice(&std::fs::read(&again).unwrap()).unwrap();
    assert_eq!(again["seeds"][0]["test"], learned["seeds"][0]["test"]);
    // The run directory names it too (transfer reads it from there).
    let t = dir.join("transfer.json");
    ok(&evomal(&[
        "transfer",
        out.to_str().unwrap(),
        m.to_str().unwrap(),
        "--quiet",
        "--out",
        t.to_str().unwrap(),
    ]));

    // A network has no expression to export.
    let o = evomal(&["export", out.to_str().unwrap(), "--to", "numpy"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is an ML3 loss network"));
    // A damaged network file is refused with its reason.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"ml3": {"weights": [1.0, 2.0]}}"#).unwrap();
    let o = evomal(&[
        "train",
        m.to_str().unwrap(),
        "--loss",
        &format!("@{}", bad.display()),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("has 2"));
}

#[test]
fn taylorglo_is_deterministic_for_a_seed_and_resumes_by_replay() {
    build_plugin("evomal-plugin-diabetes");
    let dir = crate::scratch("methods-taylorglo");
    let dir = dir.path();
    let m = tiny_manifest(dir, &[("method = \"evomal\"", "method = \"taylorglo\"")]);
    let (a, b) = (dir.join("a"), dir.join("b"));
    let stdout = run(&m, &a);
    assert!(
        stdout.contains("TaylorGLO: 3 CMA-ES generations of 8, 24 points scored"),
        "{stdout}"
    );
    run(&m, &b);
    assert_eq!(timeless(&a), timeless(&b), "two runs of one seed differ");
    let r = report(&a);
    assert_eq!(r["taylorglo"]["params"].as_array().unwrap().len(), 8);
    assert_eq!(r["generations"].as_array().unwrap().len(), 3);
    // The learned loss is an expression, so everything that takes one takes it.
    ok(&evomal(&["export", a.to_str().unwrap(), "--to", "sympy"]));
    assert!(a.join("best_loss.wgsl").is_file());

    // A run whose every point is in the checkpoint replays CMA-ES without training.
    let c = dir.join("c");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::copy(a.join("checkpoint.json"), c.join("checkpoint.json")).unwrap();
    ok(&evomal(&[
        "run",
        "--quiet",
        "--resume",
        c.to_str().unwrap(),
    ]));
    assert_eq!(timeless(&a), timeless(&c), "the replay differs");

    // Another search seed samples other points.
    let m2 = tiny_manifest(
        &dir.join("seed1"),
        &[
            ("method = \"evomal\"", "method = \"taylorglo\""),
            ("seed = 0", "seed = 1"),
        ],
    );
    let d = dir.join("d");
    run(&m2, &d);
    assert_ne!(report(&d)["taylorglo"]["params"], r["taylorglo"]["params"]);
}

#[test]
fn compare_tabulates_two_methods_on_two_seeds_and_skips_finished_runs() {
    build_plugin("evomal-plugin-diabetes");
    let dir = crate::scratch("methods-compare");
    let dir = dir.path();
    let m = tiny_manifest(dir, &[]);
    let out = dir.join("cmp");
    let args = [
        "compare",
        m.to_str().unwrap(),
        "--methods",
        "gplfl,ml3",
        "--search-seeds",
        "0..2",
        "--quiet",
        "--out-dir",
        out.to_str().unwrap(),
    ];
    let first = ok(&evomal(&args));
    for want in [
        "| method | search seeds | test mse",
        "| gplfl | 2 |",
        "| ml3 | 2 |",
        "| gplfl | 1 |",
        "| ml3 | 0 |",
        "ML3 network",
    ] {
        assert!(first.contains(want), "`{want}` missing from\n{first}");
    }
    for f in ["compare.csv", "compare.json", "compare.md", "compare.svg"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let csv = std::fs::read_to_string(out.join("compare.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 4);
    for m in json["methods"].as_array().unwrap() {
        assert!(m["ms_per_candidate"].as_f64().unwrap() > 0.0, "{m}");
    }
    // Each run is an ordinary run directory with the method and seed it was given.
    let r = report(&out.join("ml3/seed-1"));
    assert_eq!(r["method"], "ml3");
    assert_eq!(r["config"]["search"]["seed"], 1);
    assert_eq!(
        json["runs"][3]["test_mean"].as_f64().unwrap(),
        r["meta_test"][0]["test"]["mean"].as_f64().unwrap()
    );

    // Again: every run is finished, so nothing runs and the table is the same.
    let stamp = std::fs::metadata(out.join("gplfl/seed-0/run.json"))
        .unwrap()
        .modified()
        .unwrap();
    let second = ok(&evomal(&args));
    assert_eq!(first, second);
    let after = std::fs::metadata(out.join("gplfl/seed-0/run.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(stamp, after, "a finished run was run again");

    // A run without its run.json (interrupted after its last checkpoint) is resumed, to the
    // result it had.
    let before = timeless(&out.join("gplfl/seed-1"));
    std::fs::remove_file(out.join("gplfl/seed-1/run.json")).unwrap();
    let again = ok(&evomal(&args));
    assert_eq!(timeless(&out.join("gplfl/seed-1")), before);
    // The same table bar the resumed run's seconds.
    let cells = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("| gplfl | 1 |"))
            .map(|l| l.split(" | ").take(4).collect::<Vec<_>>().join(" | "))
            .collect()
    };
    assert_eq!(cells(&again), cells(&first));
    assert_eq!(cells(&first).len(), 1);

    // A changed manifest does not pass off the old runs as its own.
    let changed = std::fs::read_to_string(&m)
        .unwrap()
        .replace("steps = 300", "steps = 301");
    std::fs::write(&m, changed).unwrap();
    let o = evomal(&args);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("holds a run of another manifest"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let o = evomal(&["compare", m.to_str().unwrap(), "--methods", "gplfl,ml4"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown method `ml4`"));
}
