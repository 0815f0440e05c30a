//! Experiment manifests (TOML): what to train and how. Unknown keys, wrong types and invalid
//! values are errors that name the file and the field.
//!
//! Defaults live here, in the `Default` impls; they are METHOD.md's reference meta-testing
//! settings where one exists.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::gp::GpConfig;
use crate::search::filters::RejectionConfig;
use crate::search::local::LocalSearchConfig;
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
    pub search: SearchSection,
    #[serde(default)]
    pub local_search: LocalSearchSection,
    #[serde(default)]
    pub fitness: FitnessSection,
    #[serde(default)]
    pub filters: FiltersSection,
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

/// How candidates are searched (METHOD.md §3).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSection {
    pub method: SearchMethod,
    pub population: usize,
    pub generations: usize,
    pub crossover: f64,
    pub mutation: f64,
    pub elitism: f64,
    pub tournament: usize,
    pub init_min_height: usize,
    pub init_max_height: usize,
    pub max_height: usize,
    pub seed: u64,
}

impl Default for SearchSection {
    fn default() -> SearchSection {
        let gp = GpConfig::default();
        SearchSection {
            method: SearchMethod::Evomal,
            population: gp.population,
            generations: gp.generations,
            crossover: gp.crossover_rate,
            mutation: gp.mutation_rate,
            elitism: gp.elitism_rate,
            tournament: gp.tournament_size,
            init_min_height: gp.init_min_height,
            init_max_height: gp.init_max_height,
            max_height: gp.max_height,
            seed: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SearchMethod {
    /// GP with the local search of every candidate's weights.
    Evomal,
    /// GP with all weights fixed at 1.
    Gplfl,
    /// No search: meta-test the baseline loss only.
    Baseline,
}

/// The local search (METHOD.md §4).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSearchSection {
    pub meta_steps: usize,
    pub meta_lr: f32,
    pub inner_steps: usize,
}

impl Default for LocalSearchSection {
    fn default() -> LocalSearchSection {
        let d = LocalSearchConfig::default();
        LocalSearchSection {
            meta_steps: d.meta_steps,
            meta_lr: d.meta_lr,
            inner_steps: d.inner_steps,
        }
    }
}

/// Partial training that scores a candidate (METHOD.md §5); also the base SGD of the local
/// search's unrolled step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitnessSection {
    pub steps: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
}

impl Default for FitnessSection {
    fn default() -> FitnessSection {
        FitnessSection {
            steps: 500,
            batch: 128,
            lr: 0.01,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// The candidate filters (METHOD.md §5).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FiltersSection {
    pub rejection: bool,
    pub rejection_steps: usize,
    pub rejection_sample: usize,
    pub gradient_equivalence: bool,
    pub gradient_tolerance: f32,
}

impl Default for FiltersSection {
    fn default() -> FiltersSection {
        let r = RejectionConfig::default();
        FiltersSection {
            rejection: true,
            rejection_steps: r.steps,
            rejection_sample: r.sample,
            gradient_equivalence: true,
            gradient_tolerance: 1e-2,
        }
    }
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
        let g = &self.search;
        if g.population < 2 {
            return bad("search.population", "must be at least 2");
        }
        if g.generations == 0 {
            return bad("search.generations", "must be at least 1");
        }
        for (field, rate) in [
            ("search.crossover", g.crossover),
            ("search.mutation", g.mutation),
            ("search.elitism", g.elitism),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return bad(field, "must be in [0, 1]");
            }
        }
        if g.crossover + g.mutation > 1.0 {
            return bad("search.mutation", "plus search.crossover must not exceed 1");
        }
        if g.tournament == 0 {
            return bad("search.tournament", "must be at least 1");
        }
        if g.init_min_height > g.init_max_height || g.init_max_height >= g.max_height {
            return bad(
                "search.init_max_height",
                "must be at least init_min_height and below max_height",
            );
        }
        if self.local_search.inner_steps != 1 {
            return bad(
                "local_search.inner_steps",
                "must be 1: only the exact one-step local search is supported so far",
            );
        }
        if !(self.local_search.meta_lr.is_finite() && self.local_search.meta_lr > 0.0) {
            return bad("local_search.meta_lr", "must be a positive number");
        }
        let f = &self.fitness;
        if f.steps == 0 || f.batch == 0 {
            return bad("fitness.steps", "and fitness.batch must be at least 1");
        }
        if !(f.lr.is_finite() && f.lr > 0.0) {
            return bad("fitness.lr", "must be a positive number");
        }
        if !(0.0..1.0).contains(&f.momentum) {
            return bad("fitness.momentum", "must be in [0, 1)");
        }
        if self.filters.rejection_sample == 0 {
            return bad("filters.rejection_sample", "must be at least 1");
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

    pub fn gp_config(&self) -> GpConfig {
        let g = &self.search;
        GpConfig {
            population: g.population,
            generations: g.generations,
            crossover_rate: g.crossover,
            mutation_rate: g.mutation,
            elitism_rate: g.elitism,
            tournament_size: g.tournament,
            init_min_height: g.init_min_height,
            init_max_height: g.init_max_height,
            max_height: g.max_height,
            ..GpConfig::default()
        }
    }

    /// The local search, whose unrolled step uses the fitness section's SGD settings.
    pub fn local_search_config(&self) -> LocalSearchConfig {
        let f = &self.fitness;
        LocalSearchConfig {
            meta_steps: self.local_search.meta_steps,
            meta_lr: self.local_search.meta_lr,
            inner_steps: self.local_search.inner_steps,
            batch: f.batch,
            lr: f.lr,
            momentum: f.momentum,
            nesterov: f.nesterov,
            weight_decay: f.weight_decay,
        }
    }

    /// The partial training that scores a candidate.
    pub fn fitness_config(&self) -> TrainConfig {
        let f = &self.fitness;
        TrainConfig {
            steps: f.steps,
            batch: f.batch,
            lr: f.lr,
            milestones: Vec::new(),
            gamma: 1.0,
            optimizer: OptimizerConfig::Sgd {
                momentum: f.momentum,
                nesterov: f.nesterov,
                weight_decay: f.weight_decay,
            },
        }
    }

    pub fn rejection_config(&self) -> RejectionConfig {
        RejectionConfig {
            steps: self.filters.rejection_steps,
            sample: self.filters.rejection_sample,
            lr: 0.01,
        }
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
