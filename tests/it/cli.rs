//! The binary, run as a user would.

use std::process::{Command, Output};

fn evomal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evomal"))
        .args(args)
        .output()
        .expect("the evomal binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `evomal ARGS --json` (`args` split at spaces) from the repository root: its report.
fn report(args: &str) -> serde_json::Value {
    report_with(args, &[])
}

/// [`report`] with `vars` set in evomal's environment.
fn report_with(args: &str, vars: &[(&str, &str)]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args.split(' '))
        .arg("--json")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `evomal ARGS` (split at spaces) fails, and its error says `says`.
fn refused(args: &str, says: &str) {
    let o = evomal(&args.split(' ').collect::<Vec<_>>());
    assert!(!o.status.success());
    assert!(stderr(&o).contains(says), "{}", stderr(&o));
}

/// A manifest that cannot be read is one line that names it and gives the system's reason,
/// once, from every command that reads one (`bench train` through its worker processes).
#[test]
fn a_missing_manifest_is_one_line_that_names_it() {
    let dir = crate::scratch("no-manifest");
    let path = dir.path().join("no-such.toml");
    let path = path.to_str().unwrap();
    let reason = std::fs::read(path).unwrap_err();
    let want = format!("error: cannot read manifest `{path}`: {reason}\n");
    for args in [
        vec!["run", path],
        vec!["train", "--loss", "mse", path],
        vec!["bench", "train", path],
        vec!["bench", "fitness", path],
    ] {
        let o = evomal(&args);
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(stderr(&o), want, "{args:?}");
    }
}

#[test]
fn loss_show_prints_canonical_infix_and_shape() {
    let o = evomal(&["loss", "show", "mul(mul(log(yhat), y), -1)"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for line in [
        "expression  mul(mul(log(yhat), y), -1)",
        "canonical   mul(-1, mul(y, log(yhat)))",
        "infix       log(yhat) * y * (-1)",
        "height      3",
        "size        6 nodes, 5 effective weights",
        "candidate   valid search candidate",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

#[test]
fn loss_show_json_is_machine_readable() {
    let o = evomal(&["loss", "show", "--json", "square(sub(y, yhat))"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["infix"], "(y - yhat)^2");
    assert_eq!(v["size"], 4);
    assert_eq!(v["height"], 2);
}

#[test]
fn loss_eval_gives_values_and_gradients_on_both_backends() {
    for backend in ["jit", "interp"] {
        let args = [
            "loss",
            "eval",
            "--json",
            "--backend",
            backend,
            "mul(-1, mul(y, log(yhat)))",
            "--y",
            "1,0",
            "--yhat",
            "0.3,0.7",
        ];
        let o = evomal(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let loss0 = v["loss"][0].as_f64().unwrap();
        let grad0 = v["dM_dyhat"][0].as_f64().unwrap();
        assert!(
            (loss0 - 0.3f64.ln().abs()).abs() < 1e-6,
            "{backend}: {loss0}"
        );
        assert!((grad0 + 1.0 / 0.3).abs() < 1e-5, "{backend}: {grad0}");
        assert_eq!(v["loss"][1].as_f64().unwrap(), 0.0);
        assert_eq!(v["weights"].as_array().unwrap().len(), 5);
    }
}

#[test]
fn loss_eval_accepts_negative_numbers_and_weights() {
    let args = [
        "loss",
        "eval",
        "add(y, yhat)",
        "--y",
        "-1",
        "--yhat",
        "-2",
        "--weights",
        "2,3,1",
    ];
    let o = evomal(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    // 2*(-1) + 3*(-2) = -8
    assert!(stdout(&o).contains("-8.0000000e0"), "{}", stdout(&o));
}

#[test]
fn bad_input_is_a_clear_error_and_a_failure_exit() {
    let o = evomal(&["loss", "show", "mul(y, lg(yhat))"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("at column 8: unknown operator `lg`"), "{err}");
    assert!(err.contains("       ^"), "no caret under the error:\n{err}");

    let o = evomal(&["loss", "eval", "add(y, yhat)", "--y", "1,2", "--yhat", "1"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--y has 2 values but --yhat has 1"),
        "{}",
        stderr(&o)
    );

    let o = evomal(&[
        "loss",
        "eval",
        "add(y, yhat)",
        "--y",
        "1",
        "--yhat",
        "1",
        "--weights",
        "1",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("3 nodes, 1 weights given"),
        "{}",
        stderr(&o)
    );

    let o = evomal(&["loss", "eval", "add(y, yhat)", "--y", "one", "--yhat", "1"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("invalid value 'one' for '--y"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bench_runs_and_reports_json() {
    let v = report("bench loss --elements 2000 --compile-trees 20 --expr square(sub(y,yhat))");
    let rows = v["kernels"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r["jit_elems_per_s"].as_f64().unwrap() > 0.0)
    );
    assert!(v["compile_ms"]["full"]["median"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_fitness_projects_a_search_from_two_short_timings() {
    let fitness = "bench fitness tests/data/tiny.toml --device cpu";
    crate::plugins::build_plugin("evomal-plugin-diabetes");
    let v = report(&format!("{fitness} --candidates 2 --project"));
    // tiny.toml: 10 meta steps, 300 fitness steps, 3 generations.
    let timed: Vec<(u64, u64)> = v["cpu"]["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let steps = |k: &str| t[k].as_u64().unwrap();
            assert!(t["meta_host"].is_null(), "the GPU's alone: {t}");
            (steps("meta_steps"), steps("fitness_steps"))
        })
        .collect();
    assert_eq!(timed, [(1, 2), (3, 6)]);
    let p = &v["cpu"]["projected"];
    let f = |k: &str| p[k].as_f64().unwrap();
    assert!(f("local_search_s") > 0.0 && f("fitness_s") > 0.0, "{p}");
    assert!((f("generation_s") - f("local_search_s") - f("fitness_s")).abs() < 1e-9);
    assert!((f("search_s") - 3.0 * f("generation_s")).abs() < 1e-9);
    assert!(v["gpu"].is_null());

    refused(&format!("{fitness} --gpu-only"), "--gpu-only needs a GPU");
}

#[test]
fn bench_fitness_projects_the_gpu_alone() {
    crate::plugins::build_plugin("evomal-plugin-diabetes");
    let v = report(
        "bench fitness tests/data/tiny.toml --device gpu --gpu-only --candidates 2 --project",
    );
    assert!(v["cpu"].is_null());
    let timings = v["gpu"]["timings"].as_array().unwrap();
    assert_eq!(timings.len(), 2);
    for t in timings {
        // Both candidates side by side: one device step per meta step.
        let host = &t["meta_host"];
        assert_eq!(host["device_steps"], t["meta_steps"], "{t}");
        assert!(host["init_s"].as_f64().unwrap() > 0.0, "{t}");
        assert!(host["wait_s"].as_f64().unwrap() > 0.0, "{t}");
    }
    let generation = v["gpu"]["projected"]["generation_s"].as_f64().unwrap();
    assert!(generation > 0.0, "{v}");
}

#[test]
fn bench_train_profiles_each_gpu_kernel_of_a_step() {
    crate::plugins::build_plugin("evomal-plugin-digits");
    let v = report(
        "bench train tasks/digits-cnn.toml --device gpu --steps 2 --side-by-side 2 --profile",
    );
    let rows = v["profile"].as_array().unwrap();
    let dispatches = |kernel: &str| {
        rows.iter()
            .find(|r| r["kernel"] == kernel)
            .map_or(0, |r| r["dispatches"].as_u64().unwrap())
    };
    // Once a step: the batch, the losses, the check, the update, the step counter.
    for kernel in [
        "gather",
        "objective (the losses)",
        "check",
        "optimizer",
        "tick",
    ] {
        assert_eq!(dispatches(kernel), 1, "{kernel} in {rows:?}");
    }
    // digits-cnn: two convolutions, both forward, the second one's input gradient too.
    let convs: u64 = rows
        .iter()
        .filter(|r| r["kernel"].as_str().unwrap().starts_with("conv_gemm "))
        .map(|r| r["dispatches"].as_u64().unwrap())
        .sum();
    assert_eq!(convs, 2, "{rows:?}");
    let seconds: Vec<f64> = rows
        .iter()
        .map(|r| r["seconds"].as_f64().unwrap())
        .collect();
    assert!(
        seconds.windows(2).all(|w| w[0] >= w[1]),
        "most expensive first"
    );
    assert!(
        seconds[0] > 0.0 && seconds.iter().all(|&s| s >= 0.0),
        "{seconds:?}"
    );
    // digits: 1078 training and 359 validation rows (60 % and 20 % of 1797) of 64 pixels with
    // 17 levels each, on the device as byte codes after a table of 256 words per pixel, and
    // their labels as f32s.
    let split = |rows: u64| 64 * 256 * 4 + (rows * 64).div_ceil(4) * 4 + rows * 4;
    assert_eq!(v["data_bytes"], split(1078) + split(359));

    refused(
        "bench train tasks/digits-cnn.toml --profile",
        "--profile times GPU kernels",
    );
}

#[test]
fn the_gpu_probe_prints_no_error_lines() {
    crate::plugins::build_plugin("evomal-plugin-diabetes");
    let dir = crate::scratch("probe");
    let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("XDG_RUNTIME_DIR")
        .args(["run", "tests/data/tiny.toml", "--quiet", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("error"), "{err}");
    assert!(err.lines().count() <= 1, "one notice at most:\n{err}");
}

#[test]
fn plugin_info_lists_models_with_their_settings_and_defaults() {
    crate::plugins::build_plugin("evomal-plugin-digits");
    let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["plugin", "info", "digits"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for line in [
        "task        digits (classification)",
        "input       1 x 8 x 8 floats per example",
        "splits      train 1078, valid 359, test 360",
        "model       mlp: 9610 parameters; [task.params]: activation = \"relu\", hidden = [128]",
        "model       cnn: 1898 parameters; [task.params]: none",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

/// Tile and chunk sizes set in the environment that the adapter or the kernels cannot take are
/// refused in one line that names the variable.
#[test]
fn gpu_sizes_the_adapter_cannot_take_are_refused_by_name() {
    crate::plugins::build_plugin("evomal-plugin-digits");
    for (var, value, why) in [
        (
            "EVOMAL_GPU_TILES",
            "64x64x16/4x4",
            "it takes 3 tilings, not 1",
        ),
        (
            "EVOMAL_GPU_TILES",
            "64x64x16/4x4,16x64x16/1x4,8x16x48/1x1",
            "8x16x48/1x1: its depth does not divide 64",
        ),
        (
            "EVOMAL_GPU_MIN_CHUNK",
            "0",
            "it takes a whole number from 1 to 16777216",
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env(var, value)
            .args(["bench", "train", "tasks/digits-cnn.toml", "--device", "gpu"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert_eq!(stderr(&o), format!("error: `{var}={value}`: {why}\n"));
    }
    // `run` claims its results directory before the GPU reads the settings: refused, it
    // leaves no empty directory behind.
    let scratch = crate::scratch("gpu-sizes");
    let out_dir = scratch.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("EVOMAL_GPU_MIN_CHUNK", "0")
        .args(["run", "tasks/digits-cnn.toml", "--device", "gpu", "--quiet"])
        .arg("--out-dir")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o)
            .ends_with("`EVOMAL_GPU_MIN_CHUNK=0`: it takes a whole number from 1 to 16777216\n")
    );
    assert!(!out_dir.exists());
}

/// `tests/bench/gpu_figures.py --out OUT ARGS` with this evomal.
fn gpu_figures_command(out: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/bench/gpu_figures.py"
        ))
        .arg("--out")
        .arg(out)
        .args(["--evomal", env!("CARGO_BIN_EXE_evomal")])
        .args(args);
    command
}

/// [`gpu_figures_command`]'s exit status, standard output and standard error.
fn gpu_figures(out: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = gpu_figures_command(out, args).output().unwrap();
    (o.status.code(), stdout(&o), stderr(&o))
}

/// `tests/bench/gpu_figures.py` summarises the reports of the commands it runs (the real ones,
/// on small tasks here) against the GPU targets, whole or a model at a time, and never runs
/// again what it has.
#[test]
fn the_gpu_figures_script_summarises_the_bench_reports() {
    crate::plugins::build_plugin("evomal-plugin-digits");
    let out = crate::scratch("gpu-figures");
    let out = out.path();
    let write = |file: &str, v: &serde_json::Value| {
        std::fs::write(out.join(format!("{file}.json")), v.to_string()).unwrap()
    };
    let script = |args: &[&str]| {
        let (status, text, errors) = gpu_figures(out, args);
        assert_eq!(status, Some(0), "{text}{errors}");
        text
    };
    let fitness = "bench fitness tasks/digits-mlp.toml --project --candidates";
    let gpu = report(&format!("{fitness} 3 --device gpu --gpu-only"));
    write("gpu", &gpu);
    assert!(
        script(&["--summary-only"]).contains("Not yet run: steps, profile, cpu, tune."),
        "only the GPU projection is there"
    );

    let cpu = report(&format!("{fitness} 2 --device cpu"));
    write("cpu", &cpu);
    let profiled = report(
        "bench train tasks/digits-cnn.toml --device gpu --steps 2 --side-by-side 2 --profile",
    );
    // What the stages keep a model at a time: `bench train --profile`, and
    // `pytorch_steps.py --device cuda` (there is no CUDA here).
    write("profile.partial", &serde_json::json!({ "cnn": profiled }));
    // `tune`'s reports: the same at the adapter's sizes and at other ones.
    let bench = "bench train tasks/digits-cnn.toml --device gpu --steps 2 --side-by-side 2";
    let depth8 = "64x64x8/4x4,16x64x16/1x4,8x16x16/1x1";
    let tuned = report_with(bench, &[("EVOMAL_GPU_TILES", depth8)]);
    assert_eq!(tuned["tiles"].as_array().unwrap().len(), 3);
    assert_eq!(tuned["tiles"][0], "64x64x8/4x4");
    let chunked = report_with(bench, &[("EVOMAL_GPU_MIN_CHUNK", "256")]);
    assert_eq!(chunked["min_chunk"], 256);
    let adapter = report(bench);
    write(
        "tune",
        &serde_json::json!({ "cnn adapter": adapter, "cnn depth8": tuned,
                             "cnn chunk256": chunked }),
    );
    let per_s = |r: &serde_json::Value| r["model_steps_per_s"].as_f64().unwrap();
    let tune_row = |name: &str, r: &serde_json::Value| {
        let tiles: Vec<&str> = r["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        format!(
            "| {name} | {} | {} | {:.2} ({:.2}), {:.2}x |",
            tiles.join(","),
            r["min_chunk"],
            per_s(r),
            r["steps_per_s"].as_f64().unwrap(),
            per_s(r) / per_s(&adapter)
        )
    };
    // In the order the script reads them (tune.json's keys are sorted), which breaks ties.
    let fastest = [
        ("adapter", &adapter),
        ("chunk256", &chunked),
        ("depth8", &tuned),
    ]
    .into_iter()
    .fold(("", f64::MIN), |best, (name, r)| {
        if per_s(r) > best.1 {
            (name, per_s(r))
        } else {
            best
        }
    })
    .0;
    let row = serde_json::json!({
        "model": "lenet5", "batch": 128, "device": "a GPU", "torch_device": "a CUDA GPU",
        "evomal_steps_per_s": 50.0, "side_by_side": 25, "evomal_model_steps_per_s": 200.0,
        "pytorch_steps_per_s": 100.0, "ratio": 0.5, "ratio_side_by_side": 2.0,
        "pytorch_f32_settings": { "conv": "tf32", "matmul": "ieee" },
        "pytorch_ieee_steps_per_s": 40.0, "mib_per_model": 1.5,
    });
    write(
        "steps.partial",
        &serde_json::json!({ "lenet5": { "torch": "2.x", "rows": [row] } }),
    );
    let table_row = "| lenet5 | 50.00 | 200.00 | 100.00 | 0.50 (below) | 2.00 (meets) | 40.00 | 1.25, 5.00 | 1.5 |";
    let so_far = script(&[
        "--summary-only",
        "--models",
        "lenet5,mlp",
        "--profile-models",
        "cnn",
    ]);
    assert!(so_far.contains(table_row), "{so_far}");
    assert!(so_far.contains("Not yet run: steps (mlp)."), "{so_far}");

    let text = script(&[
        "--models",
        "lenet5",
        "--profile-models",
        "cnn",
        "--tunings",
        "adapter,depth8,chunk256",
    ]);
    for skipped in [
        "steps lenet5: kept in",
        "profile cnn: kept in",
        "gpu.json is there; skipped",
        "tune.json is there; skipped",
        "cpu.json is there; skipped",
    ] {
        assert!(text.contains(skipped), "{skipped} in {text}");
    }
    for stage in ["steps", "profile"] {
        assert!(out.join(format!("{stage}.json")).exists(), "{stage} whole");
        assert!(!out.join(format!("{stage}.partial.json")).exists());
    }
    let per_s = |r: &serde_json::Value, device: &str| {
        r["candidates"].as_f64().unwrap() / r[device]["projected"]["generation_s"].as_f64().unwrap()
    };
    let ratio = per_s(&gpu, "gpu") / per_s(&cpu, "cpu");
    let met = if ratio >= 10.0 { "meets" } else { "below" };
    let host = &gpu["gpu"]["timings"][1]["meta_host"];
    let pace = match host["init_s"].as_f64().unwrap() > host["wait_s"].as_f64().unwrap() {
        true => "the host sets the pace",
        false => "the device sets the pace",
    };
    for line in [
        "- per meta step the host drew base-model initialisations for ".into(),
        format!("s for the device: {pace}"),
        format!("{ratio:.2}x; target at least 10x ({met})"),
        table_row.into(),
        "compute f32 convolutions as `tf32` and matrix products as `ieee` (`tf32`: on".into(),
        "(a software rasteriser: not a GPU figure)".into(),
        "One step of 2 cnn models side by side".into(),
        "Model-steps/s of 2 models side by side (in brackets: the steps/s of one model alone)"
            .into(),
        "| setting | tiles | chunk | cnn |".into(),
        tune_row("adapter", &adapter),
        tune_row("depth8", &tuned),
        tune_row("chunk256", &chunked),
        format!("Fastest for cnn side by side: {fastest}."),
    ] {
        assert!(text.contains(&line), "{line} in {text}");
    }
    assert!(!text.contains("Not yet run"), "{text}");
    assert_eq!(
        std::fs::read_to_string(out.join("summary.md")).unwrap(),
        text.lines()
            .filter(|l| !l.ends_with("skipped"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
}

/// A failed command does not stop `gpu_figures.py`, and at `--deadline-s` it stops the command
/// that is running (a ResNet-18 here, which takes minutes on a software rasteriser), keeps
/// nothing of it, still writes the summary and says what failed and where it stopped, with the
/// settings it ran the command with.
#[test]
fn the_gpu_figures_script_goes_on_after_a_failure_and_stops_at_its_deadline() {
    crate::plugins::build_plugin("evomal-plugin-cifar");
    let out = crate::scratch("gpu-deadline");
    let out = out.path();
    let args = [
        "--stages",
        "tune",
        "--profile-models",
        "nosuch,resnet18",
        "--tunings",
        "depth8",
        "--side-by-side",
        "1",
        "--deadline-s",
        "10",
    ];
    let (status, text, errors) = gpu_figures(out, &args);
    assert_eq!(status, Some(1), "{text}{errors}");
    let depth8 = "EVOMAL_GPU_TILES=64x64x8/4x4,16x64x16/1x4,8x16x16/1x1";
    for line in [
        format!("Stopped at the deadline (10 s) in stage tune, at `{depth8} "),
        "resnet18.toml --device gpu".into(),
        "Not yet run: steps, gpu, profile, cpu, tune.".into(),
        format!(
            "Failed in this run (their errors are in failures.log):\n- tune nosuch depth8: `{depth8} "
        ),
    ] {
        assert!(text.contains(&line), "{line} in {text}");
    }
    let mut files: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["failures.log", "summary.md"]);
    let log = std::fs::read_to_string(out.join("failures.log")).unwrap();
    assert!(log.contains("has no model `nosuch`"), "{log}");
}

/// Without a GPU adapter `gpu_figures.py` runs nothing: it says why at once instead of failing
/// every command (on a machine lent by the minute), and how to name an NVIDIA driver's manifest.
#[test]
fn the_gpu_figures_script_starts_nothing_without_an_adapter() {
    let out = crate::scratch("gpu-no-adapter");
    let out = out.path();
    let o = gpu_figures_command(out, &["--stages", "gpu,tune"])
        .env("VK_DRIVER_FILES", out.join("no_icd.json"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for line in [
        "evomal finds no GPU adapter, so there is no GPU figure to take:\nerror: no GPU adapter found",
        "name its manifest: VK_DRIVER_FILES=/path/to/nvidia_icd.json)",
    ] {
        assert!(stderr(&o).contains(line), "{line} in {}", stderr(&o));
    }
    assert_eq!(stdout(&o), "");
    assert_eq!(std::fs::read_dir(out).unwrap().count(), 0);
}

/// `mse` and `ce` name the baselines wherever a loss is taken, before a directory of that name.
#[test]
fn the_baselines_are_named_wherever_a_loss_is_taken() {
    let here = crate::scratch("baseline-names");
    std::fs::create_dir(here.path().join("mse")).unwrap();
    let evomal = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
            .current_dir(here.path())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    for (name, expr) in [
        ("mse", "square(sub(y, yhat))"),
        ("ce", "mul(-1, mul(y, log(yhat)))"),
    ] {
        for (before, after) in [
            (&["loss", "show"][..], &[][..]),
            (&["loss", "eval"], &["--y", "1,0", "--yhat", "0.3,0.7"]),
            (&["export"], &["--to", "sympy"]),
            (&["emit-shader"], &["--kind", "loss-grad"]),
        ] {
            let by_name = [before, &[name], after].concat();
            let by_expr = [before, &[expr], after].concat();
            assert_eq!(evomal(&by_name), evomal(&by_expr), "{by_name:?}");
        }
    }
}
