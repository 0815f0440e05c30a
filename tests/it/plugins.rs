//! Task plugins through the real ABI: shipped plugins, their models' derivatives, and every
//! loading failure.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use evomal::plugin::{JvpMethod, PluginError, TaskPlugin};
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

#[test]
fn every_shipped_model_has_consistent_backward_and_jvp() {
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
        ("digits", "cnn", "{}"),
        ("mnist", "lenet5", "{}"),
        ("mnist", "mlp", r#"{"hidden": [20], "activation": "tanh"}"#),
        ("sine", "mlp", r#"{"hidden": [10, 10]}"#),
    ];
    for (task, name, params) in cases {
        let p = TaskPlugin::load(&build_plugin(&format!("evomal-plugin-{task}")), "{}").unwrap();
        let mut m = p.create_model(name, params).unwrap();
        assert!(m.has_jvp(), "{task}/{name}");
        let n = m.n_params();
        let mut theta = vec![0.0; n];
        m.init(7, &mut theta).unwrap();
        let batch = 3;
        let (d, k) = (p.input_len(), m.n_outputs());
        let (mut x, mut y) = (vec![0.0; batch * d], vec![0.0; batch]);
        p.read_batch(0, &[0, 3, 9], &mut x, &mut y).unwrap();
        let mut out = vec![0.0; batch * k];
        m.forward(&theta, &x, batch, &mut out).unwrap();
        let r: Vec<f32> = (0..batch * k)
            .map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.3)
            .collect();
        let mut grad = vec![0.0; n];
        m.backward(&theta, &r, &mut grad).unwrap();
        let v: Vec<f32> = (0..n).map(|j| ((j * 37 % 11) as f32 - 5.0) * 0.1).collect();
        let mut jv = vec![0.0; batch * k];
        m.jvp(&theta, &x, batch, &v, &mut jv).unwrap();
        let (lhs, rhs) = (dot(&r, &jv), dot(&grad, &v));
        assert!(
            (lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()),
            "{task}/{name}: <r,Jv> {lhs} vs <J^T r,v> {rhs}"
        );
        // Directional finite difference of <r, f(theta)> (skipped across a ReLU or max-pool kink).
        let h = 1e-2f32;
        let mut f = |s: f32| {
            let t: Vec<f32> = theta.iter().zip(&v).map(|(&a, &b)| a + s * b).collect();
            m.forward(&t, &x, batch, &mut out).unwrap();
            dot(&r, &out)
        };
        let (fd, fd_half) = (
            (f(h) - f(-h)) / (2.0 * h as f64),
            (f(h / 2.0) - f(-h / 2.0)) / h as f64,
        );
        if (fd - fd_half).abs() < 1e-3 * (1.0 + fd.abs()) {
            assert!(
                (fd - lhs).abs() < 2e-3 * (1.0 + fd.abs()),
                "{task}/{name}: jvp {lhs} vs fd {fd}"
            );
        }
    }
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
    let err = m.forward(&[0.0; 3], &[0.0; 10], 1, &mut [0.0]).unwrap_err();
    assert!(
        err.to_string()
            .contains("`params` has 3 floats, expected 11"),
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
    assert!(matches!(err, PluginError::NotLoadable { .. }), "{err}");
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
        let err = m.forward(&[0.0], &[1.0], 1, &mut out).unwrap_err();
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

#[test]
fn a_plugin_without_jvp_gets_a_finite_difference_once_announced() {
    let p = TaskPlugin::load(&build_plugin("evomal-test-fixtures"), "{}").unwrap();
    let mut m = p.create_model("no-jvp", "{}").unwrap();
    assert!(!m.has_jvp());
    let mut theta = vec![0.0; m.n_params()];
    m.init(1, &mut theta).unwrap();
    let x = [0.3f32, -1.2, 2.0];
    let v: Vec<f32> = (0..theta.len()).map(|j| (j as f32 * 0.7).sin()).collect();
    let r = [1.0f32, -0.5, 0.25];
    let mut out = [0.0f32; 3];
    m.forward(&theta, &x, 3, &mut out).unwrap();
    let mut grad = vec![0.0; theta.len()];
    m.backward(&theta, &r, &mut grad).unwrap();
    let mut jv = [0.0f32; 3];
    let first = m.jvp_or_fd(&theta, &x, 3, &v, &mut jv).unwrap();
    assert_eq!(first, JvpMethod::CentralDifference { first: true });
    let (lhs, rhs) = (dot(&r, &jv), dot(&grad, &v));
    assert!(
        (lhs - rhs).abs() < 1e-3 * (1.0 + rhs.abs()),
        "fd <r,Jv> {lhs} vs <J^T r,v> {rhs}"
    );
    let again = m.jvp_or_fd(&theta, &x, 3, &v, &mut jv).unwrap();
    assert_eq!(again, JvpMethod::CentralDifference { first: false });
    // A model with a JVP uses it.
    let mut lin = diabetes().create_model("linear", "{}").unwrap();
    let mut th = vec![0.1; lin.n_params()];
    lin.init(0, &mut th).unwrap();
    let mut o = [0.0f32; 1];
    assert_eq!(
        lin.jvp_or_fd(&th, &[0.5; 10], 1, &[1.0; 11], &mut o)
            .unwrap(),
        JvpMethod::Exact
    );
}
