//! evomal-sdk: everything a task plugin needs.
//!
//! A plugin is a `cdylib` that implements [`Task`] (its data and the models it offers) and
//! exports it with [`export_task!`]. Models are usually a [`Sequential`] stack of the layers in
//! [`layers`], which come with forward, backward and forward-mode (JVP) passes on the CPU.
//! [`instance::ModelInstance`] turns any [`Model`] into what the training ABI asks for (its
//! parameters, state and optimiser kept in the plugin), so a plugin author declares data and
//! layers only. The C contract with the host is in [`abi`]; plugin authors rarely need it.
//!
//! ```text
//! struct MyTask { /* data */ }
//! impl evomal_sdk::Task for MyTask { /* ... */ }
//! evomal_sdk::export_task!(MyTask);
//! ```

pub mod abi;
pub mod augment;
pub mod data;
pub mod export;
pub mod instance;
pub mod layers;
pub mod models;
pub mod optim;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

pub use abi::{KIND_CLASSIFICATION, KIND_REGRESSION, TaskInfo};
pub use layers::{Builder, Geom, Init, Layer, Mode, Sequential};

/// A seed for stream `id` of a pass seeded with `seed` (SplitMix64's finaliser): dropout
/// layers, augmentation and the host's per-step seeds draw from their own streams this way.
pub fn mix_seed(seed: u64, id: u64) -> u64 {
    let mut z = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `Ok` when a buffer named `what` has the `want` floats it must, else a message saying so.
pub(crate) fn check_len(what: &str, got: usize, want: usize) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("`{what}` has {got} floats, expected {want}"))
    }
}

/// A data split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train = 0,
    Valid = 1,
    Test = 2,
}

impl Split {
    pub fn from_index(i: u32) -> Result<Split, String> {
        match i {
            0 => Ok(Split::Train),
            1 => Ok(Split::Valid),
            2 => Ok(Split::Test),
            _ => Err(format!(
                "split {i} does not exist (0 train, 1 valid, 2 test)"
            )),
        }
    }
}

/// A task: its data and the models it can build. One instance per process, created by
/// [`Task::load`] on first use.
pub trait Task: Sized + Send + Sync + 'static {
    /// The task's name in reports (`run.json`'s `task`). Manifests find a plugin by its
    /// library's file name, `libevomal_plugin_<package suffix>.so` (docs/plugins.md).
    const NAME: &'static str;
    /// Loads the data; `config` is the manifest's `[task.data]` table (unread keys are errors).
    fn load(config: &Params) -> Result<Self, String>;
    fn info(&self) -> TaskInfo;
    fn model_names(&self) -> Vec<&'static str>;
    /// Builds model `name`; read its settings from `params` (unread keys are reported as errors).
    fn create_model(&self, name: &str, params: &Params) -> Result<Box<dyn Model>, String>;
    /// Copies the examples `idx` of `split` into `x` (row-major) and their targets into `y`.
    fn read_batch(
        &self,
        split: Split,
        idx: &[u64],
        x: &mut [f32],
        y: &mut [f32],
    ) -> Result<(), String>;

    /// Transforms a training batch `x` of `n` examples in place before a training pass,
    /// drawing from `seed` only, when [`TaskInfo::augments`] is `AUGMENT_OWN`. The default
    /// changes nothing. Random crops and flips are better asked of the SDK
    /// (`AUGMENT_CROP_FLIP`, [`augment`]): the GPU trainer replays those.
    fn augment(&self, _x: &mut [f32], _n: usize, _seed: u64) {}
}

/// A model as functions of a flat `f32` parameter vector and a flat state vector (BatchNorm's
/// running statistics), both owned by whoever runs it ([`instance::ModelInstance`] for the
/// host).
pub trait Model: Send {
    fn n_params(&self) -> usize;
    /// Floats of state that are not parameters (running statistics); 0 by default.
    fn n_state(&self) -> usize {
        0
    }
    /// Floats per input example.
    fn input_len(&self) -> usize;
    fn n_outputs(&self) -> usize;
    fn has_jvp(&self) -> bool {
        false
    }
    /// Initial parameters and state drawn from `seed`.
    fn init(&self, seed: u64, params: &mut [f32], state: &mut [f32]);
    /// The model as a stack of layers over its parameter vector, for hosts that run it
    /// themselves (the GPU trainer); empty when it is not one. [`Sequential`] describes itself.
    fn layers(&self) -> Vec<abi::LayerDesc> {
        Vec::new()
    }
    /// Outputs for a batch in `mode`; keeps what `backward` needs. A training pass may update
    /// `state`.
    fn forward(
        &mut self,
        params: &[f32],
        state: &mut [f32],
        x: &[f32],
        batch: usize,
        mode: Mode,
        out: &mut [f32],
    ) -> Result<(), String>;
    /// `grad = J^T dout` for the last `forward` (overwriting `grad`).
    fn backward(&mut self, params: &[f32], dout: &[f32], grad: &mut [f32]) -> Result<(), String>;
    /// `out = J tangent` at `params` on batch `x` in `mode` (a training pass with the same seed
    /// as a `forward` is the same function); leaves `state` as it is.
    #[allow(clippy::too_many_arguments)]
    fn jvp(
        &mut self,
        _params: &[f32],
        _state: &[f32],
        _x: &[f32],
        _batch: usize,
        _mode: Mode,
        _tangent: &[f32],
        _out: &mut [f32],
    ) -> Result<(), String> {
        Err("this model implements no JVP".into())
    }
}

/// The key under which the host passes a task's settings the folder of the manifest they came
/// from; [`Params::path`] resolves relative paths against it.
pub const BASE_DIR_KEY: &str = "$base_dir";

/// Settings from the manifest (a JSON object): a model's `[task.params]` or a task's
/// `[task.data]`. Keys that no getter asked for are reported as unknown afterwards.
pub struct Params {
    /// What the settings belong to, for messages ("model `mlp`").
    owner: String,
    map: serde_json::Map<String, serde_json::Value>,
    read: RefCell<BTreeSet<String>>,
    /// Each key a getter asked for, with its default (`null`: none).
    defaults: RefCell<BTreeMap<String, serde_json::Value>>,
}

impl Params {
    pub fn parse_for(owner: &str, json: &str) -> Result<Params, String> {
        let map = match serde_json::from_str(if json.trim().is_empty() { "{}" } else { json }) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => return Err(format!("settings of {owner} must be a table")),
            Err(e) => return Err(format!("settings of {owner}: {e}")),
        };
        Ok(Params {
            owner: owner.to_string(),
            map,
            read: RefCell::default(),
            defaults: RefCell::default(),
        })
    }

    /// A list of positive integers, e.g. `hidden = [1000, 1000]`.
    pub fn usize_list(&self, key: &str, default: &[usize]) -> Result<Vec<usize>, String> {
        self.ask(key, serde_json::json!(default));
        let Some(v) = self.map.get(key) else {
            return Ok(default.to_vec());
        };
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_u64().filter(|&n| n > 0).map(|n| n as usize))
                    .collect()
            })
            .ok_or_else(|| {
                format!(
                    "parameter `{key}` of {} must be a list of positive integers",
                    self.owner
                )
            })
    }

    /// A string among `choices`.
    pub fn choice(&self, key: &str, choices: &[&str], default: &str) -> Result<String, String> {
        self.ask(key, serde_json::json!(default));
        let Some(v) = self.map.get(key) else {
            return Ok(default.to_string());
        };
        match v.as_str() {
            Some(s) if choices.contains(&s) => Ok(s.to_string()),
            _ => Err(format!(
                "parameter `{key}` of {} must be one of {choices:?}, found {v}",
                self.owner
            )),
        }
    }

    /// The hidden-layer activation `key` (`relu`, `tanh` or `sigmoid`) as a layer.
    pub fn activation(&self, key: &str, default: &str) -> Result<Layer, String> {
        Ok(
            match self
                .choice(key, &["relu", "tanh", "sigmoid"], default)?
                .as_str()
            {
                "tanh" => Layer::Tanh,
                "sigmoid" => Layer::Sigmoid,
                _ => Layer::Relu,
            },
        )
    }

    /// A non-negative integer.
    pub fn integer(&self, key: &str, default: u64) -> Result<u64, String> {
        self.ask(key, serde_json::json!(default));
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| {
                format!(
                    "parameter `{key}` of {} must be a non-negative integer, found {v}",
                    self.owner
                )
            }),
        }
    }

    /// A boolean.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, String> {
        self.ask(key, serde_json::json!(default));
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| {
                format!(
                    "parameter `{key}` of {} must be true or false, found {v}",
                    self.owner
                )
            }),
        }
    }

    /// A finite number.
    pub fn number(&self, key: &str, default: f64) -> Result<f64, String> {
        self.ask(key, serde_json::json!(default));
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                format!(
                    "parameter `{key}` of {} must be a number, found {v}",
                    self.owner
                )
            }),
        }
    }

    /// An optional string, e.g. a data directory.
    pub fn string(&self, key: &str) -> Result<Option<String>, String> {
        self.ask(key, serde_json::Value::Null);
        match self.map.get(key) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(format!(
                "parameter `{key}` of {} must be a string, found {v}",
                self.owner
            )),
        }
    }

    /// A path: relative paths resolve against the folder of the manifest that gave it (the
    /// host passes that folder as [`BASE_DIR_KEY`]), so a manifest works from any directory.
    pub fn path(&self, key: &str) -> Result<Option<std::path::PathBuf>, String> {
        Ok(self.string(key)?.map(|p| self.resolve(&p)))
    }

    /// `path` against the manifest's folder, when it is relative and the host gave the folder.
    pub fn resolve(&self, path: &str) -> std::path::PathBuf {
        let path = std::path::Path::new(path);
        match self.map.get(BASE_DIR_KEY).and_then(|v| v.as_str()) {
            Some(base) if path.is_relative() => std::path::Path::new(base).join(path),
            _ => path.to_path_buf(),
        }
    }

    /// A list of strings (a single string is a list of one).
    pub fn string_list(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        self.ask(key, serde_json::Value::Null);
        let bad = || {
            format!(
                "parameter `{key}` of {} must be a string or a list of strings",
                self.owner
            )
        };
        match self.map.get(key) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(bad),
            Some(_) => Err(bad()),
        }
    }

    /// A list of finite numbers.
    pub fn number_list(&self, key: &str, default: &[f64]) -> Result<Vec<f64>, String> {
        self.ask(key, serde_json::json!(default));
        let Some(v) = self.map.get(key) else {
            return Ok(default.to_vec());
        };
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_f64().filter(|x| x.is_finite()))
                    .collect()
            })
            .ok_or_else(|| {
                format!(
                    "parameter `{key}` of {} must be a list of numbers, found {v}",
                    self.owner
                )
            })
    }

    /// Notes that a getter read `key` (with `default`).
    fn ask(&self, key: &str, default: serde_json::Value) {
        self.read.borrow_mut().insert(key.to_string());
        self.defaults
            .borrow_mut()
            .entry(key.to_string())
            .or_insert(default);
    }

    /// Every key the getters asked for, with its default, as a JSON object.
    pub fn defaults_json(&self) -> String {
        serde_json::to_string(&*self.defaults.borrow()).unwrap_or_else(|_| "{}".into())
    }

    /// Fails on keys no getter asked for (the host's own keys, which start with `$`, aside).
    pub fn finish(&self) -> Result<(), String> {
        let read = self.read.borrow();
        let Some(k) = self
            .map
            .keys()
            .find(|k| !read.contains(*k) && !k.starts_with('$'))
        else {
            return Ok(());
        };
        let known = if read.is_empty() {
            "it takes none".to_string()
        } else {
            format!(
                "known: {}",
                read.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        Err(format!(
            "unknown parameter `{k}` for {} ({known})",
            self.owner
        ))
    }
}
