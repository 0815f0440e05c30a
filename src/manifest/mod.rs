//! Experiment manifests (TOML): what to train and how. Unknown keys, wrong types and invalid
//! values are errors that name the file and the field.
//!
//! Defaults live here, in the `Default` impls; they are METHOD.md's reference meta-testing
//! settings where one exists.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::train::TrainConfig;
use crate::train::optim::OptimizerConfig;

/// Problems with a manifest file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type (the message names the line).
    #[error("manifest `{path}`: {msg}")]
    Parse { path: PathBuf, msg: String },
    /// A value of the right type that makes no sense.
    #[error("manifest `{path}`: `{field}` {msg}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        msg: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub task: TaskSection,
    #[serde(default)]
    pub testing: TestingSection,
    #[serde(default)]
    pub output: OutputSection,
    /// The file this was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSection {
    /// A plugin name (found in the build output) or a path relative to the manifest.
    pub plugin: String,
    pub model: String,
    /// Model parameters, handed to the plugin as JSON.
    #[serde(default)]
    pub params: toml::Table,
    /// Task settings (e.g. `data_dir`), handed to the plugin as JSON when it is loaded.
    #[serde(default)]
    pub data: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestingSection {
    pub steps: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    pub optimizer: OptimizerName,
    pub milestones: Vec<usize>,
    pub gamma: f32,
    pub seeds: Vec<u64>,
}

impl Default for TestingSection {
    fn default() -> TestingSection {
        TestingSection {
            steps: 10_000,
            batch: 128,
            lr: 0.01,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            optimizer: OptimizerName::Sgd,
            milestones: Vec::new(),
            gamma: 0.1,
            seeds: vec![0, 1, 2, 3, 4],
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    Sgd,
    Adam,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// Results directory, relative to the working directory.
    pub dir: PathBuf,
}

impl Default for OutputSection {
    fn default() -> OutputSection {
        OutputSection {
            dir: "results".into(),
        }
    }
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(path, &text)
    }

    /// Parses and validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let mut m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_path_buf(),
            msg: e.to_string().trim_end().to_string(),
        })?;
        m.path = path.to_path_buf();
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let t = &self.testing;
        let bad = |field, msg: &str| {
            Err(ManifestError::Invalid {
                path: self.path.clone(),
                field,
                msg: msg.to_string(),
            })
        };
        if t.steps == 0 {
            return bad("testing.steps", "must be at least 1");
        }
        if t.batch == 0 {
            return bad("testing.batch", "must be at least 1");
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad("testing.lr", "must be a positive number");
        }
        if !(0.0..1.0).contains(&t.momentum) {
            return bad("testing.momentum", "must be in [0, 1)");
        }
        if t.nesterov && t.momentum == 0.0 {
            return bad("testing.nesterov", "needs a non-zero momentum");
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return bad("testing.weight_decay", "must be zero or positive");
        }
        if !t.milestones.windows(2).all(|w| w[0] < w[1]) {
            return bad("testing.milestones", "must be strictly increasing");
        }
        if t.seeds.is_empty() {
            return bad("testing.seeds", "must list at least one seed");
        }
        Ok(())
    }

    /// The plugin to load: a name as given, or a path resolved against the manifest's folder.
    pub fn plugin(&self) -> String {
        let p = &self.task.plugin;
        if p.contains('/') || p.contains('\\') {
            let base = self.path.parent().unwrap_or(Path::new("."));
            base.join(p).display().to_string()
        } else {
            p.clone()
        }
    }

    /// The model parameters as the JSON object the plugin expects.
    pub fn params_json(&self) -> String {
        serde_json::to_string(&self.task.params).unwrap_or_else(|_| "{}".into())
    }

    /// The task settings as the JSON object the plugin expects.
    pub fn data_json(&self) -> String {
        serde_json::to_string(&self.task.data).unwrap_or_else(|_| "{}".into())
    }

    /// The meta-testing training configuration.
    pub fn testing_config(&self) -> TrainConfig {
        let t = &self.testing;
        let optimizer = match t.optimizer {
            OptimizerName::Sgd => OptimizerConfig::Sgd {
                momentum: t.momentum,
                nesterov: t.nesterov,
                weight_decay: t.weight_decay,
            },
            OptimizerName::Adam => OptimizerConfig::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: t.weight_decay,
            },
        };
        TrainConfig {
            steps: t.steps,
            batch: t.batch,
            lr: t.lr,
            milestones: t.milestones.clone(),
            gamma: t.gamma,
            optimizer,
        }
    }
}

#[cfg(test)]
mod tests;
