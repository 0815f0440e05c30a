//! The image plugin (CIFAR-10/100, SVHN) through the ABI and the binary, on synthetic files
//! written here in the CIFAR-10 binary format.

use std::path::{Path, PathBuf};
use std::process::Command;

use evomal::plugin::TaskPlugin;
use evomal_sdk::Mode;

use crate::plugins::build_plugin;

const IMAGE: usize = 3 * 32 * 32;

/// A CIFAR-10 binary tree (`cifar-10-batches-bin/` with five training files of `per_file`
/// records and a test file of `per_file`), whose class `c` images are brighter in one channel
/// and one quadrant, so a CNN can learn them.
fn cifar10(name: &str, per_file: usize) -> tempfile::TempDir {
    let dir = crate::scratch(&format!("cifar-{name}"));
    let bin = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let file = |path: &Path, offset: usize| {
        let mut bytes = Vec::new();
        for i in 0..per_file {
            let n = offset + i;
            let label = (n % 10) as u8;
            bytes.push(label);
            for p in 0..IMAGE {
                let (ch, row, col) = (p / 1024, p / 32 % 32, p % 32);
                let lit =
                    ch == label as usize % 3 && (row / 16) * 2 + col / 16 == label as usize / 3 % 4;
                let noise = (n * 31 + p * 17) % 64;
                bytes.push(if lit { 160 + noise as u8 } else { noise as u8 });
            }
        }
        std::fs::write(path, bytes).unwrap();
    };
    for i in 1..=5 {
        file(&bin.join(format!("data_batch_{i}.bin")), i * per_file);
    }
    file(&bin.join("test_batch.bin"), 0);
    dir
}

/// A private copy of the plugin: a task is configured once per loaded library, and each test
/// here configures its own.
fn plugin_copy(tag: &str) -> PathBuf {
    let built = build_plugin("evomal-plugin-cifar");
    let copy = std::env::temp_dir().join(format!(
        "libevomal_plugin_cifar_{tag}_{}.so",
        std::process::id()
    ));
    std::fs::copy(&built, &copy).unwrap();
    copy
}

fn open(tag: &str, data: serde_json::Value) -> Result<TaskPlugin, String> {
    let copy = plugin_copy(tag);
    let p = TaskPlugin::load(&copy, &data.to_string()).map_err(|e| e.to_string());
    // The loaded library stays mapped.
    std::fs::remove_file(&copy).ok();
    p
}

#[test]
fn cifar10_files_load_with_a_stratified_split_and_seeded_augmentation() {
    let dir = cifar10("load", 30);
    let dir = dir.path();
    let p = open("load", serde_json::json!({ "data_dir": dir })).unwrap();
    // 150 training images, 15 per class: 2 per class held out (10%, rounded).
    assert_eq!(p.info().split_sizes, [130, 20, 30]);
    assert_eq!(p.info().n_outputs, 10);
    let mut m = p.create_model("lenet5", "{}").unwrap();
    let idx = [0u64, 1, 2, 3];
    let pass = |m: &mut evomal::plugin::PluginModel, split, mode| {
        let mut out = vec![0.0f32; 40];
        m.forward(split, &idx, mode, &mut out, None).unwrap();
        out
    };
    let eval = pass(&mut m, 0, Mode::Eval);
    let train1 = pass(&mut m, 0, Mode::Train { seed: 1 });
    assert_eq!(train1, pass(&mut m, 0, Mode::Train { seed: 1 }));
    assert_ne!(train1, pass(&mut m, 0, Mode::Train { seed: 2 }));
    assert_ne!(train1, eval, "training passes augment training images");
    // LeNet-5 has no batch norm or dropout: only augmentation could tell the modes apart,
    // and validation images are never augmented.
    assert_eq!(
        pass(&mut m, 1, Mode::Train { seed: 1 }),
        pass(&mut m, 1, Mode::Eval)
    );
}

/// The GPU crops and flips training images as the CPU does, image for image (the SDK's
/// `CropFlip`, replayed in the gather kernel): a population trained with augmentation ends
/// with the CPU's parameters, and the local search's meta-gradients (whose training pass
/// augments too) agree.
#[test]
fn the_gpu_crops_and_flips_as_the_cpu_does() {
    use evomal_sdk::abi::AUGMENT_CROP_FLIP;
    let dir = cifar10("gpu", 100);
    let dir = dir.path();
    let p = open("gpu", serde_json::json!({ "data_dir": dir })).unwrap();
    assert_eq!(p.info().augments, AUGMENT_CROP_FLIP);
    assert_eq!((p.info().crop_flip.pad, p.info().crop_flip.flip), (4, 1));
    let mlp = r#"{"hidden": [16]}"#;
    let losses = ["mul(-1, mul(y, log(yhat)))", "square(sub(y, yhat))"];
    let cfg = crate::gpu::sgd(30, 16, 0.05);
    for (cpu, gpu, moved) in crate::gpu::cpu_and_gpu(&p, "mlp", mlp, &losses, &cfg) {
        assert!(moved <= 1e-4, "parameters differ by {moved:e}");
        // 50 validation images: one may fall on the other side of a boundary.
        assert!(
            (cpu - gpu).abs() <= 1.0 / 50.0 + 1e-9,
            "cpu {cpu}, gpu {gpu}"
        );
    }
    crate::gpu_meta::meta_gradients_agree(&p, "mlp", mlp, &losses);
}

#[test]
fn missing_and_malformed_files_are_errors_that_name_them() {
    let err = open("nodir", serde_json::json!({})).err().unwrap();
    assert!(err.contains("`[task.data] data_dir` is required"), "{err}");
    assert!(err.contains("cs.toronto.edu"), "{err}");

    let dir = cifar10("bad", 3);

    let dir = dir.path();
    let err = open(
        "badkey",
        serde_json::json!({ "data_dir": dir, "datset": "svhn" }),
    )
    .err()
    .unwrap();
    assert!(err.contains("unknown parameter `datset`"), "{err}");
    let bin = dir.join("cifar-10-batches-bin");
    std::fs::remove_file(bin.join("data_batch_3.bin")).unwrap();
    let err = open("missing", serde_json::json!({ "data_dir": dir }))
        .err()
        .unwrap();
    assert!(err.contains("data_batch_3.bin` does not exist"), "{err}");
    assert!(err.contains("CIFAR-10 binary version"), "{err}");

    std::fs::write(bin.join("data_batch_3.bin"), vec![1u8; 3073 * 2 + 10]).unwrap();
    let err = open("truncated", serde_json::json!({ "data_dir": dir }))
        .err()
        .unwrap();
    assert!(
        err.contains("data_batch_3.bin: 6156 bytes is not a whole number of 3073-byte records"),
        "{err}"
    );
}

/// `evomal train` on a small ResNet-18 (batch norm, residual blocks, augmentation) learns the
/// synthetic classes.
#[test]
fn evomal_train_learns_synthetic_cifar_with_a_small_resnet() {
    build_plugin("evomal-plugin-cifar");
    let dir = cifar10("train", 60);
    let dir = dir.path();
    let manifest = dir.join("cifar.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"[task]
plugin = "cifar"
model = "resnet18"
[task.params]
width = 4
blocks = [1, 1]
[task.data]
data_dir = "{}"
[testing]
steps = 150
batch = 32
lr = 0.05
momentum = 0.9
nesterov = true
weight_decay = 5e-4
seeds = [0]
"#,
            dir.display()
        ),
    )
    .unwrap();
    let out = dir.join("result.json");
    let o = Command::new(env!("CARGO_BIN_EXE_evomal"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "train",
            manifest.to_str().unwrap(),
            "--loss",
            "ce",
            "--quiet",
        ])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let test = json["test"]["mean"].as_f64().unwrap();
    // Chance is 0.9 error.
    assert!(test < 0.5, "test error {test}");
}
