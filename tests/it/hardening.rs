//! Bad input from a careless or hurried user: each case a clean error that names the file and
//! the field (or row, or position), never a panic, an abort, a signal or a hang.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use evomal::manifest::Manifest;

fn evomal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("the evomal binary runs")
}

/// `evomal run MANIFEST --quiet --out-dir DIR`.
fn run_into(manifest: &str, dir: &Path) -> Output {
    evomal(&[
        "run",
        manifest,
        "--quiet",
        "--out-dir",
        dir.to_str().unwrap(),
    ])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A clean failure: exit status 1 (not a signal, not a panic's 101) and a message.
fn assert_clean_failure(o: &Output, expected: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "exit {:?}: {err}", o.status);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
}

/// The corpus: each file's first line is `# expect: TEXT`, the text its error must contain.
fn corpus(dir: &str) -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut cases: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let expect = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{} has no `# expect:` line", p.display()))
                .to_string();
            (p, expect)
        })
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_malformed_manifest_is_refused_with_its_field() {
    let cases = corpus("tests/data/bad_manifests");
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for (path, expect) in cases {
        let err = Manifest::load(&path)
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", path.display()))
            .to_string();
        assert!(
            err.contains(&expect) && err.contains(&path.display().to_string()),
            "{}: expected `{expect}`, got: {err}",
            path.display()
        );
    }
}

#[test]
fn the_binary_refuses_malformed_manifests_before_loading_anything() {
    for (case, expect) in [
        ("population_overflow", "must be between 2 and 10000"),
        (
            "meta_steps_huge",
            "`local_search.meta_steps` must be between",
        ),
        ("gamma_nan", "`testing.gamma` must be a positive number"),
    ] {
        let path = format!("tests/data/bad_manifests/{case}.toml");
        let dir = crate::scratch(&format!("hard-{case}"));
        let dir = dir.path();
        let o = run_into(&path, dir);
        assert_clean_failure(&o, expect);
        assert!(stderr(&o).contains(&path), "{}", stderr(&o));
    }
}

#[test]
fn a_manifest_over_the_size_limit_is_refused_unread() {
    let dir = crate::scratch("hard-big-manifest");
    let dir = dir.path();
    let path = dir.join("big.toml");
    let comment = format!("# {}\n", "x".repeat(2 << 20));
    std::fs::write(
        &path,
        format!("{comment}[task]\nplugin = \"diabetes\"\nmodel = \"linear\"\n"),
    )
    .unwrap();
    let err = Manifest::load(&path).unwrap_err().to_string();
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
    let err = Manifest::load(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn every_damaged_or_contradicting_checkpoint_is_refused() {
    crate::plugins::build_plugin("evomal-plugin-diabetes");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad_checkpoints");
    let mut n = 0;
    for case in std::fs::read_dir(&root).unwrap() {
        let case = case.unwrap().path();
        let expect = std::fs::read_to_string(case.join("expect.txt")).unwrap();
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let dir = crate::scratch(&format!("hard-cp-{name}"));
        let dir = dir.path();
        copy_dir(&case, dir);
        let o = evomal(&["run", "--quiet", "--resume", dir.to_str().unwrap()]);
        assert_clean_failure(&o, expect.trim());
        assert!(
            stderr(&o).contains(&dir.join("checkpoint.json").display().to_string()),
            "{name}: the checkpoint is named: {}",
            stderr(&o)
        );
        assert!(
            !dir.join("run.json").exists(),
            "{name}: nothing was written"
        );
        n += 1;
    }
    assert!(n >= 10, "{n} cases");
}

#[test]
fn a_results_directory_serves_one_run_at_a_time_and_is_never_overwritten() {
    crate::plugins::build_plugin("evomal-plugin-diabetes");
    let dir = crate::scratch("hard-busy");
    let dir = dir.path();
    // Another run holds the directory (this test, through the same advisory lock).
    let lock = std::fs::File::create(dir.join(".evomal.lock")).unwrap();
    lock.try_lock().unwrap();
    let o = run_into("tests/data/tiny.toml", dir);
    assert_clean_failure(&o, "is in use by another evomal run");
    drop(lock);

    let o = run_into("tests/data/tiny.toml", dir);
    assert!(o.status.success(), "{}", stderr(&o));
    // This tiny search finds nothing better than MSE on validation: the selection keeps the
    // baseline, and says so.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(
            "the search found no loss better than the baseline on validation: the baseline is kept"
        ),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let first = std::fs::read(dir.join("run.json")).unwrap();
    let o = run_into("tests/data/tiny.toml", dir);
    assert_clean_failure(&o, "already holds a run (its checkpoint.json)");
    assert_eq!(std::fs::read(dir.join("run.json")).unwrap(), first);

    let o = evomal(&[
        "run",
        "--resume",
        dir.to_str().unwrap(),
        "--out-dir",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(2), "a usage error: {}", stderr(&o));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `tests/data/tiny.toml` on the fixtures plugin with `data` as its `[task.data]`.
fn fixtures_manifest(dir: &Path, data: &str) -> PathBuf {
    let lib = crate::plugins::build_plugin("evomal-test-fixtures");
    let plugin = format!("plugin = {:?}", lib.display().to_string());
    let data = format!("[task.data]\n{data}\n");
    crate::run::tiny_manifest(
        dir,
        &[
            ("plugin = \"diabetes\"", &plugin),
            ("model = \"mlp\"", "model = \"jvp\""),
            ("[task.params]\nhidden = [32]\n", &data),
        ],
    )
}

#[test]
fn a_careless_plugin_cannot_crash_the_host() {
    let cases = [
        (
            "kind = \"classification\"\nlabel = \"2\"",
            "training split, example 0: label 2 is not a class index (0 to 1)",
        ),
        (
            "kind = \"classification\"\nlabel = \"-1\"",
            "label -1 is not a class index",
        ),
        (
            "kind = \"classification\"\nlabel = \"0.5\"",
            "label 0.5 is not a class index",
        ),
        (
            "label = \"nan\"",
            "training split, example 0: target NaN is not a finite number",
        ),
        ("valid = 0", "its validation split is empty"),
        ("train = 0", "its training split is empty"),
    ];
    for (i, (data, expect)) in cases.into_iter().enumerate() {
        let dir = crate::scratch(&format!("hard-careless-{i}"));
        let dir = dir.path();
        let manifest = fixtures_manifest(dir, data);
        let out = dir.join("out");
        let o = run_into(manifest.to_str().unwrap(), &out);
        assert_clean_failure(&o, expect);
        assert!(
            stderr(&o).contains("returned unusable data"),
            "{}",
            stderr(&o)
        );
        assert!(!out.exists(), "the failed run leaves no results directory");
    }
}

/// Augmentation the GPU cannot replay is left to the CPU with the reason; crops and flips of
/// examples that are not images are refused on any device.
#[test]
fn augmentation_a_device_cannot_take_is_refused_with_the_reason() {
    let cases = [
        (
            "own",
            "gpu",
            "transforms its training batches its own way (the GPU replays the SDK's crops and flips only",
        ),
        (
            "crop-flip",
            "cpu",
            "crop-and-flip augmentation needs images of 1 to 4 channels",
        ),
    ];
    for (augments, device, expect) in cases {
        let dir = crate::scratch(&format!("hard-augments-{augments}"));
        let dir = dir.path();
        let manifest = fixtures_manifest(dir, &format!("augments = {augments:?}"));
        let out = dir.join("train.json");
        let o = evomal(&[
            "train",
            manifest.to_str().unwrap(),
            "--loss",
            "mse",
            "--device",
            device,
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_clean_failure(&o, expect);
    }
    // With its own augmentation the CPU trains it.
    let dir = crate::scratch("hard-augments-own-cpu");
    let dir = dir.path();
    let manifest = fixtures_manifest(dir, "augments = \"own\"");
    let out = dir.join("train.json");
    let args = [
        "train",
        manifest.to_str().unwrap(),
        "--loss",
        "mse",
        "--device",
        "cpu",
    ];
    let o = evomal(&[&args[..], &["--quiet", "--out", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn broken_plugin_files_are_errors_not_signals() {
    let lib = crate::plugins::build_plugin("evomal-plugin-diabetes");
    let bytes = std::fs::read(&lib).unwrap();
    let dir = crate::scratch("hard-broken-plugins");
    let dir = dir.path();
    let mut cases = Vec::new();
    for cut in [4096, 300_000, bytes.len() / 2] {
        let path = dir.join(format!("trunc{cut}.so"));
        std::fs::write(&path, &bytes[..cut.min(bytes.len())]).unwrap();
        cases.push((path, "is not a loadable library"));
    }
    let text = dir.join("text.so");
    std::fs::write(&text, "not a library\n").unwrap();
    cases.push((text, "not a shared library"));
    cases.push((dir.to_path_buf(), "is a directory, not a plugin library"));
    cases.push((
        PathBuf::from("/dev/null"),
        "is a device, FIFO or socket, not a plugin library",
    ));
    cases.push((dir.join("absent.so"), "No such file or directory"));
    for (path, expect) in cases {
        let err = evomal::plugin::TaskPlugin::load(&path, "{}")
            .err()
            .unwrap_or_else(|| panic!("{} loaded", path.display()))
            .to_string();
        assert!(
            err.contains(expect)
                && err.contains(&path.display().to_string())
                && !err.contains("cargo build"),
            "{}: {err}",
            path.display()
        );
    }
}

#[test]
fn a_model_too_large_to_allocate_is_refused_by_name() {
    crate::plugins::build_plugin("evomal-plugin-diabetes");
    let dir = crate::scratch("hard-huge-model");
    let dir = dir.path();
    let manifest = crate::run::tiny_manifest(dir, &[("hidden = [32]", "hidden = [100000000]")]);
    let out = dir.join("out");
    let o = run_into(manifest.to_str().unwrap(), &out);
    assert_clean_failure(&o, "the model has 1200000001 parameters");
    assert!(
        stderr(&o).contains("holds at most 134217728"),
        "{}",
        stderr(&o)
    );
}

/// A balanced tree of `height` with leaves y and yhat, without spaces.
fn balanced(height: u32, leaf: &str) -> String {
    match height {
        0 => leaf.to_string(),
        h => format!("add({},{})", balanced(h - 1, "y"), balanced(h - 1, "yhat")),
    }
}

#[test]
fn long_expressions_are_shown_in_a_window_and_big_ones_still_evaluate() {
    // 5,000-deep nesting: refused at depth 512, the message one short line.
    let deep = format!("{}yhat{}", "abs(".repeat(5_000), ")".repeat(5_000));
    let o = evomal(&["loss", "show", &deep]);
    assert_clean_failure(&o, "nesting deeper than 512");
    assert!(
        stderr(&o).len() < 600,
        "{} bytes: {}",
        stderr(&o).len(),
        stderr(&o)
    );

    // Columns count characters: the ideographic space before `mul` is 3 bytes, 1 column.
    let o = evomal(&["loss", "show", "\u{3000}mul(y, lg(yhat))"]);
    assert_clean_failure(&o, "at column 9: unknown operator `lg`");
    assert!(
        stderr(&o).contains(&format!("\n{}^", " ".repeat(8))),
        "{}",
        stderr(&o)
    );

    // Over 10,000 nodes: the JIT's full kernel would take minutes, the interpreter answers.
    let big = format!("add({},{})", balanced(12, "y"), balanced(11, "y"));
    let e: evomal::expr::LossExpr = big.parse().unwrap();
    assert!(e.len() > 10_000, "{} nodes", e.len());
    let o = evomal(&["loss", "eval", &big, "--y", "1,2", "--yhat", "0.5,3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("evaluating with the interpreter"),
        "{}",
        stderr(&o)
    );
    let shown = evomal(&["loss", "show", &big]);
    assert!(shown.status.success(), "{}", stderr(&shown));
}

#[test]
fn train_refuses_a_baseline_of_the_wrong_kind_and_a_loss_without_yhat() {
    crate::plugins::build_plugin("evomal-plugin-diabetes");
    let dir = crate::scratch("hard-train-loss");
    let dir = dir.path();
    let out = dir.join("r.json");
    for (loss, expect) in [
        (
            "ce",
            "`--loss ce` is the classification baseline, but `diabetes` is a regression task",
        ),
        ("square(y)", "the loss `square(y)` does not use yhat"),
    ] {
        let o = evomal(&[
            "train",
            "tests/data/tiny.toml",
            "--loss",
            loss,
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_clean_failure(&o, expect);
        assert!(!out.exists());
    }
}

#[test]
fn outputs_replace_regular_files_only_and_name_the_users_path() {
    let dir = crate::scratch("hard-outputs");
    let dir = dir.path();
    let taken = dir.join("taken");
    std::fs::create_dir(&taken).unwrap();
    let targets = [
        (taken.clone(), "is a directory, not a regular file"),
        (
            PathBuf::from("/dev/full"),
            "is a device, not a regular file",
        ),
    ];
    for (target, expect) in targets {
        let o = evomal(&[
            "emit-shader",
            "square(sub(y, yhat))",
            "-o",
            target.to_str().unwrap(),
        ]);
        assert_clean_failure(&o, expect);
        assert!(
            stderr(&o).contains(&format!("`{}`", target.display())),
            "{}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains(".tmp"), "{}", stderr(&o));
    }
    let file = dir.join("loss.wgsl");
    let o = evomal(&[
        "emit-shader",
        "square(sub(y, yhat))",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporaries left: {names:?}");
}

/// The commands that take a finished run's directory (`export`, `emit-shader`, `transfer`,
/// `loss`, `train --loss`), given an unfinished run, another directory or a file, say which.
#[test]
fn commands_that_read_a_run_name_what_they_were_given_instead() {
    let dir = crate::scratch("hard-not-a-run");
    let dir = dir.path();
    let unfinished = dir.join("unfinished");
    std::fs::create_dir(&unfinished).unwrap();
    std::fs::write(unfinished.join("checkpoint.json"), "{}").unwrap();
    let (unfinished, other) = (unfinished.to_str().unwrap(), dir.to_str().unwrap());
    let resume = format!(
        "the run in `{unfinished}` has not finished (it holds a checkpoint.json, but no run.json yet): finish it with `evomal run --resume {unfinished}`"
    );
    let no_run = format!("`{other}` holds no run.json: it is not the results directory");
    for (source, expect) in [(unfinished, &resume), (other, &no_run)] {
        for args in [
            vec!["export", source, "--to", "numpy"],
            vec!["emit-shader", source],
            vec!["transfer", source, "tasks/quick.toml"],
            vec!["loss", "show", source],
            vec!["train", "tests/data/tiny.toml", "--loss", source],
        ] {
            assert_clean_failure(&evomal(&args), expect);
        }
    }
    // A path that is no directory is taken for an expression, and the error says both.
    let missing = format!("{other}/missing");
    assert_clean_failure(
        &evomal(&["loss", "show", &missing]),
        &format!("`{missing}` is no directory, nor a loss: cannot parse the loss expression"),
    );
    let o = evomal(&["transfer", "tasks/quick.toml", "tasks/quick.toml"]);
    assert_clean_failure(
        &o,
        "`tasks/quick.toml` is not a directory: a results directory of `evomal run` is wanted",
    );
}
