//! `evomal run` end to end on the shipped quick manifest.

use std::path::Path;
use std::process::{Command, Output};

use evomal::expr::LossExpr;

use crate::plugins::build_plugin;

fn run(manifest: &str, dir: &Path) -> Output {
    run_with(manifest, dir, &[])
}

/// `evomal run --quiet --resume DIR`.
fn resume(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--quiet", "--resume", dir.to_str().unwrap()])
        .output()
        .unwrap()
}

fn run_with(manifest: &str, dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            manifest,
            "--quiet",
            "--out-dir",
            dir.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap()
}

/// `tests/data/tiny.toml` with each `(from, to)` edit applied, written as `dir/m.toml`.
pub fn tiny_manifest(dir: &Path, edits: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.toml"))
            .unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "tiny.toml has no `{from}`");
        text = text.replace(from, to);
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("m.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn quick_manifest_runs_end_to_end_and_beats_its_baseline_on_validation() {
    build_plugin("evomal-plugin-diabetes");
    let dir = crate::scratch("run-quick");
    let dir = dir.path();
    let o = run("tasks/quick.toml", dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    let generations = report["generations"].as_array().unwrap();
    assert_eq!(generations.len(), 20);
    for g in generations {
        let total: u64 = g["counts"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(total, 25, "every candidate is counted once: {g}");
    }
    // The best-so-far never gets worse.
    let best: Vec<f64> = generations
        .iter()
        .filter_map(|g| g["best"].as_f64())
        .collect();
    let learned = report["best"]["validation"].as_f64().unwrap();
    assert!(best.iter().all(|&b| b >= learned));
    let baseline = report["baseline"]["validation"].as_f64().unwrap();
    assert!(
        learned < baseline,
        "learned {learned} vs baseline {baseline}"
    );
    assert_eq!(report["meta_test"].as_array().unwrap().len(), 2);
    assert_eq!(report["meta_test"][0]["seeds"].as_array().unwrap().len(), 3);

    for (svg, labels) in [
        ("fitness.svg", ["best", "median"]),
        ("meta_test.svg", ["learned", "baseline"]),
    ] {
        let text = std::fs::read_to_string(dir.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && labels.iter().all(|l| text.contains(l)),
            "{svg}"
        );
    }
    let curve = report["meta_test"][0]["seeds"][0]["curve"]
        .as_array()
        .unwrap();
    assert_eq!(
        curve.len(),
        20,
        "the test metric at 20 points of meta-testing"
    );
    let shader = std::fs::read_to_string(dir.join("best_loss.wgsl")).unwrap();
    assert!(
        shader.contains("dyhat[i] ="),
        "the training shader (loss and gradient)"
    );
    let text = std::fs::read_to_string(dir.join("best_loss.txt")).unwrap();
    let first: LossExpr = text.lines().next().unwrap().parse().unwrap();
    assert_eq!(first.to_string(), report["best"]["loss"].as_str().unwrap());
    // best_loss.txt, comments and all, is a loss `evomal train` takes.
    let reused = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "train",
            "tasks/quick.toml",
            "--quiet",
            "--seeds",
            "0",
            "--out",
        ])
        .arg(dir.join("reused.json"))
        .arg("--loss")
        .arg(format!("@{}", dir.join("best_loss.txt").display()))
        .output()
        .unwrap();
    assert!(
        reused.status.success(),
        "{}",
        String::from_utf8_lossy(&reused.stderr)
    );
    assert!(String::from_utf8_lossy(&reused.stdout).contains(&first.to_string()));

    // The configuration as the manifest wrote it, structured.
    let config = &report["config"];
    assert_eq!(config["search"]["population"], 25);
    assert_eq!(config["fitness"]["lr"].to_string(), "0.01");
    assert_eq!(config["fitness"]["weight_decay"].to_string(), "0.0005");
    assert_eq!(config["params"]["hidden"], serde_json::json!([32]));

    // Every distinct candidate, best first; the first is the best loss.
    let mut hall = csv::Reader::from_path(dir.join("hall_of_fame.csv")).unwrap();
    assert_eq!(
        hall.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "rank",
            "generation",
            "fitness",
            "verdict",
            "size",
            "height",
            "canonical",
            "loss",
            "infix"
        ]
    );
    let rows: Vec<csv::StringRecord> = hall.records().map(Result::unwrap).collect();
    let total: u64 = generations
        .iter()
        .map(|g| g["counts"]["evaluated"].as_u64().unwrap())
        .sum();
    assert!(
        rows.len() as u64 >= total,
        "{} rows, {total} evaluated",
        rows.len()
    );
    assert_eq!(&rows[0][7], report["best"]["loss"].as_str().unwrap());
    let fitness: Vec<f64> = rows.iter().filter_map(|r| r[2].parse().ok()).collect();
    assert!(fitness.windows(2).all(|w| w[0] <= w[1]), "sorted");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("best loss") && stdout.contains("meta-testing"),
        "{stdout}"
    );

    // Same seed, same search, whatever the number of worker threads.
    let again = crate::scratch("run-quick-again");
    let again = again.path();
    assert!(
        run_with("tasks/quick.toml", again, &["--threads", "1"])
            .status
            .success()
    );
    let threes = crate::scratch("run-quick-three");
    let threes = threes.path();
    assert!(
        run_with("tasks/quick.toml", threes, &["--threads", "3"])
            .status
            .success()
    );
    let report3: serde_json::Value =
        serde_json::from_slice(&std::fs::read(threes.join("run.json")).unwrap()).unwrap();
    assert_eq!(report3["best"], report["best"]);
    assert_eq!(report3["generations"].as_array().map(|g| g.len()), Some(20));
    let report2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(again.join("run.json")).unwrap()).unwrap();
    assert_eq!(report2["best"], report["best"]);
    assert_eq!(
        report2["meta_test"][0]["test"],
        report["meta_test"][0]["test"]
    );
    // The learned loss transfers to another task; a directory without a run is a clear error.
    build_plugin("evomal-plugin-sine");
    let target = dir.join("sine.toml");
    std::fs::write(
        &target,
        "[task]\nplugin = \"sine\"\nmodel = \"mlp\"\n[testing]\nsteps = 300\nseeds = [0, 1]\n",
    )
    .unwrap();
    let transfer = |from: &Path| {
        Command::new(env!("CARGO_BIN_EXE_evomal"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "transfer",
                from.to_str().unwrap(),
                target.to_str().unwrap(),
                "--quiet",
            ])
            .output()
            .unwrap()
    };
    let o = transfer(dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("transfer-sine.json")).unwrap()).unwrap();
    assert_eq!(t["meta_test"][0]["loss"], report["best"]["loss"]);
    assert_eq!(t["to"]["task"], "sine");
    assert_eq!(t["meta_test"][1]["seeds"].as_array().unwrap().len(), 2);
    let o = transfer(crate::scratch("no-run").path());
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("run.json"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn search_settings_are_validated_with_the_field_named() {
    let dir = crate::scratch("run-bad");
    let dir = dir.path();
    let cases = [
        ("[search]\npopulation = -5\n", "population"),
        (
            "[search]\npopulation = 0\n",
            "`search.population` must be between 2 and 10000, found 0",
        ),
        ("[search]\npopulaton = 10\n", "unknown field `populaton`"),
        (
            "[search]\nmethod = \"random\"\n",
            "unknown variant `random`, expected one of `evomal`, `gplfl`, `ml3`, `taylorglo`, `baseline`",
        ),
        (
            "[local_search]\ninner_steps = 3\n",
            "`local_search.inner_steps` must be 1",
        ),
        (
            "[search]\ncrossover = 0.8\nmutation = 0.3\n",
            "`search.mutation` plus search.crossover must not exceed 1",
        ),
    ];
    for (i, (section, want)) in cases.iter().enumerate() {
        let path = dir.join(format!("m{i}.toml"));
        std::fs::write(
            &path,
            format!("[task]\nplugin = \"diabetes\"\nmodel = \"linear\"\n{section}"),
        )
        .unwrap();
        let o = run(path.to_str().unwrap(), &dir.join("out"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want),
            "{section:?}: {err}"
        );
        assert!(
            err.contains(&format!("m{i}.toml")),
            "the file is named: {err}"
        );
    }
}

#[test]
fn a_killed_run_resumes_to_the_same_result() {
    build_plugin("evomal-plugin-diabetes");
    let killed = crate::scratch("run-killed");
    let killed = killed.path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "tasks/quick.toml",
            "--quiet",
            "--out-dir",
            killed.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the third generation's checkpoint, then kill -9.
    let checkpoint = killed.join("checkpoint.json");
    let generations_done = || -> usize {
        std::fs::read(&checkpoint)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["search"]["generations"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while generations_done() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = generations_done();
    assert!(at_kill >= 3, "no checkpoint before the deadline");
    eprintln!("killed after {at_kill} of 20 generations");
    assert!(
        !killed.join("run.json").exists() || at_kill == 20,
        "the run finished before the kill"
    );

    let o = resume(killed);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let whole = crate::scratch("run-whole");
    let whole = whole.path();
    assert!(run("tasks/quick.toml", whole).status.success());
    // Byte for byte the same report, bar the timings (each on a line of its own).
    let read = |d: &Path| -> String {
        std::fs::read_to_string(d.join("run.json"))
            .unwrap()
            .lines()
            .map(|l| l.split("\"seconds\": ").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        read(killed),
        read(whole),
        "killed after {at_kill} generations"
    );
}

#[test]
fn every_shipped_manifest_loads() {
    let mut n = 0;
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            evomal::manifest::Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} manifests");
}

#[test]
fn a_search_where_every_candidate_is_rejected_still_finishes() {
    let lib = build_plugin("evomal-test-fixtures");
    let dir = crate::scratch("run-all-rejected");
    let dir = dir.path();
    // Every prediction is right from the start (input 0 gives output 0, class 0), so no loss can
    // improve the error rate: every candidate is rejected.
    let manifest = dir.join("m.toml");
    let text = format!(
        "[task]\nplugin = {:?}\nmodel = \"linear\"\n[task.data]\nkind = \"classification\"\n\
         label = \"0\"\ninput = \"0\"\n[search]\npopulation = 4\ngenerations = 2\n\
         [testing]\nsteps = 50\nseeds = [0]\n",
        lib.display().to_string()
    );
    std::fs::write(&manifest, text).unwrap();
    let o = run(manifest.to_str().unwrap(), &dir.join("out"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/run.json")).unwrap()).unwrap();
    assert!(report["best"].is_null());
    assert_eq!(report["generations"][0]["counts"]["rejected"], 4);
    assert_eq!(
        report["meta_test"].as_array().unwrap().len(),
        1,
        "the baseline alone"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("no candidate survived"));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("note: fitness.batch = 128 is larger than the training split (1 examples)"),
        "batch sizes beyond the data are not clamped silently"
    );
}

#[test]
fn a_model_without_jvp_is_searched_with_finite_differences_and_says_so_once() {
    let lib = build_plugin("evomal-test-fixtures");
    let dir = crate::scratch("run-no-jvp");
    let dir = dir.path();
    let manifest = dir.join("m.toml");
    let text = format!(
        "[task]\nplugin = {:?}\nmodel = \"no-jvp\"\n[search]\npopulation = 4\ngenerations = 2\n\
         [local_search]\nmeta_steps = 3\n[fitness]\nsteps = 5\n[filters]\nrejection = false\n\
         [testing]\nsteps = 5\nseeds = [0]\n",
        lib.display().to_string()
    );
    std::fs::write(&manifest, text).unwrap();
    let o = run(manifest.to_str().unwrap(), &dir.join("out"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("offers no JVP").count(), 1, "{err}");
}

/// `--device gpu` trains the fitness runs on the adapter (lavapipe on CI), records it, and a
/// resumed run stays there; `auto` leaves a software adapter alone and says so; a model the GPU
/// cannot run is a clear error under `gpu`.
#[test]
fn the_device_is_chosen_recorded_and_kept_on_resume() {
    build_plugin("evomal-plugin-diabetes");
    build_plugin("evomal-plugin-digits");
    let dir = crate::scratch("run-device");
    let dir = dir.path();
    let manifest = dir.join("tiny.toml");
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks/quick.toml"))
            .unwrap()
            .replace("population = 25", "population = 8")
            .replace("generations = 20", "generations = 2")
            .replace("meta_steps = 100", "meta_steps = 10")
            .replace("steps = 3000", "steps = 100")
            .replace("seeds = [0, 1, 2]", "seeds = [0]");
    std::fs::write(&manifest, text).unwrap();
    let out = dir.join("out");
    let o = run_with(manifest.to_str().unwrap(), &out, &["--device", "gpu"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap()
    };
    let device = read()["fitness_device"].as_str().unwrap().to_string();
    assert_ne!(device, "cpu");
    let cp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("checkpoint.json")).unwrap()).unwrap();
    assert_eq!(cp["device"], "gpu");
    std::fs::remove_file(out.join("run.json")).unwrap();
    let o = resume(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read()["fitness_device"].as_str().unwrap(), device);

    let auto = run_with(manifest.to_str().unwrap(), &dir.join("auto"), &[]);
    let stderr = String::from_utf8_lossy(&auto.stderr);
    assert!(auto.status.success(), "{stderr}");
    if device.contains("Cpu") {
        assert!(stderr.contains("software rasteriser"), "{stderr}");
    }

    // A ResNet (batch norm, residual blocks, dropout) searches on the GPU end to end; a model
    // that does not describe its layers is refused with the reason.
    let resnet = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks/digits-cnn.toml"),
    )
    .unwrap()
    .replace("model = \"cnn\"", "model = \"resnet\"")
    .replace("population = 25", "population = 4")
    .replace("generations = 50", "generations = 1")
    .replace("meta_steps = 250", "meta_steps = 3")
    .replace("steps = 500", "steps = 20")
    .replace("rejection_steps = 100", "rejection_steps = 10")
    .replace("steps = 2000", "steps = 20")
    .replace("seeds = [0, 1, 2]", "seeds = [0]");
    std::fs::write(dir.join("resnet.toml"), &resnet).unwrap();
    let o = run_with(
        dir.join("resnet.toml").to_str().unwrap(),
        &dir.join("resnet"),
        &["--device", "gpu"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("resnet/run.json")).unwrap()).unwrap();
    assert_eq!(report["fitness_device"].as_str().unwrap(), device);
    let lib = build_plugin("evomal-test-fixtures");
    let opaque = format!(
        "[task]\nplugin = {:?}\nmodel = \"no-jvp\"\n[search]\npopulation = 4\ngenerations = 1\n",
        lib.display().to_string()
    );
    std::fs::write(dir.join("opaque.toml"), opaque).unwrap();
    let o = run_with(
        dir.join("opaque.toml").to_str().unwrap(),
        &dir.join("opaque"),
        &["--device", "gpu"],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("the GPU trainer does not support")
            && stderr.contains("does not describe itself"),
        "{stderr}"
    );
}

/// `robust_selection = true`, trained as the fitness is and without the baseline: the best
/// distinct candidates are trained again and the best mean is kept, with every run in run.json.
#[test]
fn robust_selection_keeps_the_best_mean_of_the_finalists() {
    build_plugin("evomal-plugin-diabetes");
    let dir = crate::scratch("run-robust");
    let dir = dir.path();
    let manifest = tiny_manifest(
        dir,
        &[(
            "seed = 0\n",
            "seed = 0\nrobust_selection = true\nrobust_candidates = 3\nrobust_training = \"fitness\"\nrobust_baseline = false\n",
        )],
    );
    let o = run(manifest.to_str().unwrap(), &dir.join("out"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/run.json")).unwrap()).unwrap();
    let finalists = report["selection"]["candidates"].as_array().unwrap();
    assert_eq!(finalists.len(), 3);
    let means: Vec<f64> = finalists
        .iter()
        .map(|c| c["mean"].as_f64().unwrap())
        .collect();
    for c in finalists {
        let runs: Vec<f64> = c["fitness"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_f64().unwrap())
            .collect();
        assert_eq!(runs.len(), 4, "the search's seed and three more");
        assert_eq!(
            runs[0],
            c["search_fitness"].as_f64().unwrap(),
            "the first run repeats the search's"
        );
        let mean = runs.iter().sum::<f64>() / 4.0;
        assert!((mean - c["mean"].as_f64().unwrap()).abs() < 1e-12);
    }
    let chosen = report["selection"]["chosen"].as_u64().unwrap() as usize;
    assert!(means.iter().all(|&m| m >= means[chosen]));
    assert_eq!(finalists[chosen]["loss"], report["best"]["loss"]);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("robust selection: 3 finalists trained 4 times each")
    );
}

/// The default selection: finalists trained as in the meta-test, the baseline among them; the
/// chosen one has the least mean, and when it is the baseline the run hands back the baseline.
#[test]
fn the_default_selection_scores_the_baseline_too_and_keeps_it_when_nothing_beats_it() {
    build_plugin("evomal-plugin-diabetes");
    for (seed, name) in [(0, "default-0"), (1, "default-1"), (2, "default-2")] {
        let dir = crate::scratch(&format!("run-{name}"));
        let dir = dir.path();
        let manifest = tiny_manifest(dir, &[("seed = 0\n", &format!("seed = {seed}\n"))]);
        let o = run(manifest.to_str().unwrap(), &dir.join("out"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("out/run.json")).unwrap()).unwrap();
        let finalists = report["selection"]["candidates"].as_array().unwrap();
        let baseline: Vec<&serde_json::Value> =
            finalists.iter().filter(|c| c["baseline"] == true).collect();
        assert_eq!(baseline.len(), 1, "the baseline is a finalist");
        assert_eq!(baseline[0]["loss"], report["baseline"]["loss"]);
        assert!(baseline[0]["generation"].is_null());
        assert_eq!(
            baseline[0]["search_fitness"], report["baseline"]["validation"],
            "the baseline's search fitness is the one the report gives"
        );
        let means: Vec<f64> = finalists
            .iter()
            .map(|c| c["mean"].as_f64().unwrap_or(f64::INFINITY))
            .collect();
        let chosen = report["selection"]["chosen"].as_u64().unwrap() as usize;
        assert!(means.iter().all(|&m| m >= means[chosen]), "{means:?}");
        assert_eq!(finalists[chosen]["loss"], report["best"]["loss"]);
        if finalists[chosen]["baseline"] == true {
            assert!(
                stdout.contains("kept the baseline: no candidate's mean beat it"),
                "{stdout}"
            );
            assert!(stdout.contains("the baseline is kept"), "{stdout}");
        } else {
            assert!(means[chosen] <= means[finalists.len() - 1]);
        }
    }
}

/// `robust_selection = false` keeps the reference's choice: the best single fitness of the
/// search, and no re-scoring.
#[test]
fn without_robust_selection_the_best_single_fitness_is_kept() {
    build_plugin("evomal-plugin-diabetes");
    let dir = crate::scratch("run-no-robust");
    let dir = dir.path();
    let manifest = tiny_manifest(
        dir,
        &[("seed = 0\n", "seed = 0\nrobust_selection = false\n")],
    );
    let o = run(manifest.to_str().unwrap(), &dir.join("out"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/run.json")).unwrap()).unwrap();
    assert!(report["selection"].is_null());
    let best_of_generations = report["generations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["best"].as_f64())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(
        report["best"]["validation"].as_f64().unwrap(),
        best_of_generations
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("robust selection"));
}

/// Resuming a finished run changes nothing and trains nothing: it says the run has finished.
#[test]
fn a_finished_run_is_not_resumed() {
    build_plugin("evomal-plugin-diabetes");
    let dir = crate::scratch("run-finished");
    let out = dir.path().join("out");
    assert!(run("tests/data/tiny.toml", &out).status.success());
    let before = std::fs::read(out.join("run.json")).unwrap();
    let o = resume(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!(
            "the run in `{}` has finished (its run.json is written): nothing to resume\n",
            out.display()
        )
    );
    assert_eq!(std::fs::read(out.join("run.json")).unwrap(), before);
    // `loss` takes the run's directory for its best loss, as `export` does.
    let best = std::fs::read_to_string(out.join("best_loss.txt")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .args(["loss", "show", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown = String::from_utf8_lossy(&o.stdout).into_owned();
    let first = best.lines().next().unwrap();
    assert_eq!(
        shown.lines().next(),
        Some(format!("expression  {first}").as_str())
    );
}
