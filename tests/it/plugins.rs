//! Task plugins through the real ABI: shipped plugins, their models' derivatives, and every
//! loading failure.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use evomal::plugin::{JvpMethod, PluginError, PluginModel, TaskPlugin};
use evomal::train::optim::OptimizerConfig;
use evomal_sdk::Mode;
use evomal_sdk::abi::ABI_VERSION;

/// Builds workspace package `pkg` (a cdylib) in this test profile and returns its library.
pub fn build_plugin(pkg: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let profile_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let release = profile_dir.ends_with("release");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", pkg]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building {pkg} failed");
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        pkg.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    profile_dir.join(file)
}

fn diabetes() -> TaskPlugin {
    TaskPlugin::load(&build_plugin("evomal-plugin-diabetes"), "{}").unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

#[test]
fn diabetes_describes_itself() {
    let p = diabetes();
    assert_eq!(p.name(), "diabetes");
    assert_eq!(p.model_names(), ["linear", "mlp"]);
    let info = p.info();
    assert_eq!(info.split_sizes, [265, 88, 89]);
    assert_eq!(p.input_len(), 10);
    // Standardised on train: the training targets have mean 0 and variance 1.
    let n = info.split_sizes[0] as usize;
    let idx: Vec<u64> = (0..n as u64).collect();
    let (mut x, mut y) = (vec![0.0; n * 10], vec![0.0; n]);
    p.read_batch(0, &idx, &mut x, &mut y).unwrap();
    let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = y.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    assert!(
        mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
        "mean {mean}, var {var}"
    );
}

/// `<r, f(theta)>` on a fixed training batch in a fixed training pass, with the parameters set
/// to `theta` by restoring a snapshot.
fn objective(m: &mut PluginModel, snap: &[f32], theta: &[f32], idx: &[u64], r: &[f32]) -> f64 {
    let mut s = snap.to_vec();
    s[..theta.len()].copy_from_slice(theta);
    m.restore(&s).unwrap();
    let mut out = vec![0.0; r.len()];
    m.forward(0, idx, Mode::Train { seed: 5 }, &mut out, None)
        .unwrap();
    dot(r, &out)
}

/// Through the ABI: the look-ahead step's `J^T g` (with `lr_eff = 1`, `theta1 = theta0 - J^T g`)
/// against directional finite differences of `<g, f(theta)>`, for every shipped model. The
/// digits CNN is left out of the comparison: its max-pooling windows over the images' blank
/// borders hold exact ties, where a central difference averages the one-sided slopes at every
/// step size (the layer tests check max-pooling on inputs without ties).
#[test]
fn every_shipped_model_back_propagates_through_the_abi() {
    let cases = [
        ("diabetes", "linear", "{}"),
        (
            "diabetes",
            "mlp",
            r#"{"hidden": [16, 8], "activation": "tanh"}"#,
        ),
        (
            "boston",
            "mlp",
            r#"{"hidden": [8], "activation": "sigmoid"}"#,
        ),
        ("digits", "mlp", r#"{"hidden": [12], "activation": "tanh"}"#),
        ("digits", "resnet", r#"{"width": 4, "activation": "tanh"}"#),
        ("mnist", "lenet5", "{}"),
        ("mnist", "mlp", r#"{"hidden": [20], "activation": "tanh"}"#),
        ("sine", "mlp", r#"{"hidden": [10, 10]}"#),
    ];
    for (task, name, params) in cases {
        let p = TaskPlugin::load(&build_plugin(&format!("evomal-plugin-{task}")), "{}").unwrap();
        let mut m = p.create_model(name, params).unwrap();
        assert!(m.has_jvp(), "{task}/{name}");
        m.init(7).unwrap();
        let snap = m.snapshot().unwrap();
        let n = m.n_params();
        let theta0 = snap[..n].to_vec();
        let idx = [0u64, 3, 9];
        let k = m.n_outputs();
        let r: Vec<f32> = (0..idx.len() * k)
            .map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.3)
            .collect();
        let mut out = vec![0.0; r.len()];
        m.forward(0, &idx, Mode::Train { seed: 5 }, &mut out, None)
            .unwrap();
        m.meta_lookahead(&r, 1.0, 0.0).unwrap();
        let theta1 = m.snapshot().unwrap()[..n].to_vec();
        let grad: Vec<f32> = theta0.iter().zip(&theta1).map(|(a, b)| a - b).collect();
        let mut checked = 0;
        for dir in 0..6 {
            let v: Vec<f32> = (0..n)
                .map(|j| (((j * 37 + dir * 3) % 11) as f32 - 5.0) * 0.02)
                .collect();
            let h = 2e-3f32;
            let mut f = |s: f32| {
                let t: Vec<f32> = theta0.iter().zip(&v).map(|(&a, &b)| a + s * b).collect();
                objective(&mut m, &snap, &t, &idx, &r)
            };
            let (fd, fd_half) = (
                (f(h) - f(-h)) / (2.0 * h as f64),
                (f(h / 2.0) - f(-h / 2.0)) / h as f64,
            );
            // Skipped across a ReLU kink, where the two differences disagree; else Richardson's
            // extrapolation removes the h^2 term (BatchNorm over a batch of 3 curves a lot).
            if (fd - fd_half).abs() > 5e-2 * (1.0 + fd.abs()) {
                continue;
            }
            let est = (4.0 * fd_half - fd) / 3.0;
            let g = dot(&grad, &v);
            assert!(
                (est - g).abs() < 1e-2 * (1.0 + est.abs()),
                "{task}/{name}: <J^T r, v> {g} vs fd {est}"
            );
            checked += 1;
        }
        assert!(
            checked >= 1,
            "{task}/{name}: every direction crossed a kink"
        );
    }
}

#[test]
fn snapshots_restore_the_whole_state_exactly() {
    let p = TaskPlugin::load(&build_plugin("evomal-plugin-digits"), "{}").unwrap();
    let mut m = p.create_model("resnet", r#"{"width": 4}"#).unwrap();
    let adam = OptimizerConfig::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 1e-4,
    };
    m.init(3).unwrap();
    m.set_optimizer(&adam).unwrap();
    let idx: Vec<u64> = (0..16).collect();
    let mut out = vec![0.0; 16 * 10];
    let mut step = |m: &mut PluginModel, seed: u64| {
        m.forward(0, &idx, Mode::Train { seed }, &mut out, None)
            .unwrap();
        let dout: Vec<f32> = out.iter().map(|v| v * 0.01).collect();
        m.step(&dout, 0.01).unwrap();
        out.clone()
    };
    for s in 0..3 {
        step(&mut m, s);
    }
    let snap = m.snapshot().unwrap();
    assert_eq!(snap.len(), m.snapshot_len());
    let (a1, a2) = (step(&mut m, 10), step(&mut m, 11));
    let after = m.snapshot().unwrap();
    m.restore(&snap).unwrap();
    assert_eq!(m.snapshot().unwrap(), snap);
    // Parameters, running statistics and Adam's moments all came back: the same two steps
    // give the same outputs and the same final state, bit for bit.
    assert_eq!((step(&mut m, 10), step(&mut m, 11)), (a1, a2));
    assert_eq!(m.snapshot().unwrap(), after);
    let err = m.restore(&snap[1..]).unwrap_err();
    assert!(err.to_string().contains("`snapshot` has"), "{err}");
}

#[test]
fn model_errors_name_the_problem() {
    let p = diabetes();
    let err = p.create_model("resnet", "{}").err().unwrap();
    assert!(matches!(err, PluginError::UnknownModel { .. }));
    assert!(
        err.to_string()
            .contains("has no model `resnet`; its models: linear, mlp"),
        "{err}"
    );
    let err = p.create_model("mlp", r#"{"hiden": [3]}"#).err().unwrap();
    assert!(
        err.to_string()
            .contains("unknown parameter `hiden` for model `mlp`"),
        "{err}"
    );
    let err = p.create_model("mlp", r#"{"hidden": [0]}"#).err().unwrap();
    assert!(
        err.to_string()
            .contains("must be a list of positive integers"),
        "{err}"
    );
    let err = p
        .read_batch(1, &[88], &mut [0.0; 10], &mut [0.0])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("index 88 is out of range for the Valid split (88 examples)"),
        "{err}"
    );
    let mut m = p.create_model("linear", "{}").unwrap();
    let err = m.step(&[0.0], 0.1).unwrap_err();
    assert!(
        err.to_string()
            .contains("`step` needs a forward pass first"),
        "{err}"
    );
    m.forward(2, &[0, 1], Mode::Eval, &mut [0.0; 2], None)
        .unwrap();
    let err = m.step(&[0.0; 3], 0.1).unwrap_err();
    assert!(
        err.to_string().contains("`dout` has 3 floats, expected 2"),
        "{err}"
    );
    let err = m
        .forward(2, &[89], Mode::Eval, &mut [0.0], None)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("index 89 is out of range for the Test split (89 examples)"),
        "{err}"
    );
}

#[test]
fn loading_failures_are_typed_and_name_the_file() {
    let err = TaskPlugin::open("no-such-task", "{}").err().unwrap();
    assert!(matches!(err, PluginError::NotFound { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("cargo build --release -p evomal-plugin-no-such-task"),
        "{err}"
    );

    let junk = std::env::temp_dir().join(format!("evomal-junk-{}.so", std::process::id()));
    std::fs::write(&junk, b"not an ELF file").unwrap();
    let err = TaskPlugin::load(&junk, "{}").err().unwrap();
    std::fs::remove_file(&junk).ok();
    assert!(matches!(err, PluginError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("evomal-junk"), "{err}");

    // A real shared library that is not an evomal plugin: the C library.
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
        "/usr/lib/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .expect("a libc.so.6 on this Linux machine");
    let err = TaskPlugin::load(&libc, "{}").err().unwrap();
    assert!(matches!(err, PluginError::NotAPlugin { .. }), "{err}");

    let err = TaskPlugin::load(&build_plugin("evomal-test-abi-mismatch"), "{}")
        .err()
        .unwrap();
    assert!(
        matches!(err, PluginError::AbiMismatch { found, .. } if found == ABI_VERSION + 1),
        "{err}"
    );
    let want = format!(
        "built for training ABI v{}, but this evomal speaks v{ABI_VERSION}",
        ABI_VERSION + 1
    );
    assert!(err.to_string().contains(&want), "{err}");
}

#[test]
fn a_panicking_plugin_is_an_error_and_the_host_goes_on() {
    let p = TaskPlugin::load(&build_plugin("evomal-test-fixtures"), "{}").unwrap();
    let mut m = p.create_model("boom", "{}").unwrap();
    let mut out = [0.0];
    for _ in 0..2 {
        let err = m.forward(0, &[0], Mode::Eval, &mut out, None).unwrap_err();
        assert!(matches!(err, PluginError::Panicked { .. }), "{err}");
        assert!(
            err.to_string().contains("panicked: forward exploded"),
            "{err}"
        );
    }
    // Other plugins, and this one's other entry points, still work.
    diabetes().create_model("linear", "{}").unwrap();
    p.read_batch(0, &[0], &mut [0.0], &mut [0.0]).unwrap();
}

/// One meta-gradient's three calls on a fixture model: the look-ahead, the pull-back at theta1
/// and the JVP at theta0.
fn meta_jvp(m: &mut PluginModel) -> (Vec<f32>, JvpMethod) {
    m.init(1).unwrap();
    let mut out = [0.0f32];
    m.forward(0, &[0], Mode::Train { seed: 0 }, &mut out, None)
        .unwrap();
    m.meta_lookahead(&[0.7], 0.1, 0.0).unwrap();
    m.forward(1, &[0], Mode::Train { seed: 1 }, &mut out, None)
        .unwrap();
    m.meta_pullback(&[-1.3]).unwrap();
    let mut jv = [0.0f32];
    let how = m.meta_jvp(&mut jv).unwrap();
    (jv.to_vec(), how)
}

#[test]
fn a_plugin_without_jvp_gets_a_finite_difference_once_announced() {
    let p = TaskPlugin::load(&build_plugin("evomal-test-fixtures"), "{}").unwrap();
    let mut m = p.create_model("no-jvp", "{}").unwrap();
    assert!(!m.has_jvp());
    let (fd, first) = meta_jvp(&mut m);
    assert_eq!(first, JvpMethod::CentralDifference { first: true });
    let (_, again) = meta_jvp(&mut m);
    assert_eq!(again, JvpMethod::CentralDifference { first: false });
    // The same model with its JVP: the difference agrees with it.
    let mut exact = p.create_model("jvp", "{}").unwrap();
    let (jv, how) = meta_jvp(&mut exact);
    assert_eq!(how, JvpMethod::Exact);
    assert!(
        (fd[0] - jv[0]).abs() < 1e-3 * (1.0 + jv[0].abs()) && jv[0] != 0.0,
        "finite difference {fd:?} vs exact {jv:?}"
    );
    let err = exact.meta_jvp(&mut [0.0]).unwrap_err();
    assert!(err.to_string().contains("needs `meta_lookahead`"), "{err}");
}

/// `evomal new-plugin` writes a crate that builds outside this repository and runs first time.
#[test]
fn a_new_plugin_builds_outside_the_repository_and_runs() {
    let dir = crate::scratch("new-plugin");
    let dir = dir.path();
    let crate_dir = dir.join("my-task");
    let evomal = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_evomal"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = evomal(&[
        "new-plugin",
        "my-task",
        "--dir",
        crate_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown = crate_dir.display();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("created {shown}\n  cd {shown}\n  cargo build --release\n  evomal run task.toml\n")
    );
    let o = evomal(&[
        "new-plugin",
        "my-task",
        "--dir",
        crate_dir.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exists and is not empty"),
        "never written over"
    );
    let o = evomal(&["new-plugin", "My Task"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a plugin name"));
    // This workspace's lock file pins the same dependency versions, so the build needs no
    // network (cargo drops what the plugin does not use).
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"),
        crate_dir.join("Cargo.lock"),
    )
    .unwrap();
    let built = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--offline"])
        .current_dir(&crate_dir)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .unwrap();
    assert!(built.success(), "the template builds");
    // From another directory: the manifest's plugin path is relative to the manifest.
    let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(dir)
        .args(["run", "my-task/task.toml", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("my-task / mlp"), "{stdout}");
    assert!(dir.join("results/task/run.json").is_file());
}
