//! The `csv` task: any table in a CSV file, with no Rust to write. `[task.data]` says where the
//! data is and what to predict; the models are `linear` and `mlp`. See README.md for every
//! setting.
//!
//! Features are standardised with the training split's statistics (as are regression targets,
//! unless `standardize_target = false`). A two-class table is a two-output softmax by default;
//! `binary = "sigmoid"` gives one output, whose cross-entropy baseline is the binary
//! cross-entropy.

mod table;

use evomal_sdk::data::Scaler;
use evomal_sdk::{Layer, Model, Params, Sequential, Split, Task, TaskInfo};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use table::{Columns, Table, infer_classes};

struct Csv {
    kind: u32,
    n_features: usize,
    n_outputs: usize,
    target_width: usize,
    /// Per split: standardised features (row-major) and targets.
    parts: [(Vec<f32>, Vec<f32>); 3],
}

impl Task for Csv {
    const NAME: &'static str = "csv";

    fn load(config: &Params) -> Result<Self, String> {
        let targets = config
            .string_list("target")?
            .ok_or("`[task.data] target` is required: the column (or columns) to predict")?;
        let features = config.string_list("features")?;
        let columns = Columns {
            targets: &targets,
            features: features.as_deref(),
        };
        let kind = config.choice("kind", &["regression", "classification"], "")?;
        let classification = match kind.as_str() {
            "regression" => false,
            "classification" => true,
            _ => {
                return Err(
                    "`[task.data] kind` is required: \"regression\" or \"classification\"".into(),
                );
            }
        };
        if classification && targets.len() != 1 {
            return Err("classification takes one `target` column (the label)".into());
        }
        let tables = read_splits(config, &columns, classification)?;
        let classes = match config.string_list("classes")? {
            Some(c) if classification => c,
            Some(_) => return Err("`classes` applies to classification only".into()),
            None => infer_classes(&[&tables[0]]),
        };
        let binary = config.choice("binary", &["softmax", "sigmoid"], "softmax")?;
        if classification && classes.len() < 2 {
            return Err(format!(
                "a classification table needs at least two classes, found [{}]",
                classes.join(", ")
            ));
        }
        if binary == "sigmoid" && classes.len() != 2 {
            return Err(format!(
                "`binary = \"sigmoid\"` needs exactly two classes, found {}",
                classes.len()
            ));
        }
        let standardize = config.flag("standardize", true)?;
        let standardize_target = config.flag("standardize_target", true)?;

        let n_features = tables[0].features[0].len();
        let x_scaler = standardize.then(|| Scaler::fit(&tables[0].features, 0..n_features));
        let y_scaler = if !classification && standardize_target {
            let ys = tables[0].numeric_targets(&targets)?;
            let rows: Vec<Vec<f32>> = ys.chunks(targets.len()).map(<[f32]>::to_vec).collect();
            Some(Scaler::fit(&rows, 0..targets.len()))
        } else {
            None
        };
        let mut parts: [(Vec<f32>, Vec<f32>); 3] = Default::default();
        for (part, table) in parts.iter_mut().zip(&tables) {
            part.0 = table
                .features
                .iter()
                .flat_map(|r| x_scaler.as_ref().map_or_else(|| r.clone(), |s| s.apply(r)))
                .collect();
            part.1 = if classification {
                table.class_indices(&classes)?
            } else {
                let ys = table.numeric_targets(&targets)?;
                match &y_scaler {
                    Some(s) => ys.chunks(targets.len()).flat_map(|r| s.apply(r)).collect(),
                    None => ys,
                }
            };
        }
        let n_outputs = match (classification, binary.as_str()) {
            (true, "sigmoid") => 1,
            (true, _) => classes.len(),
            (false, _) => targets.len(),
        };
        Ok(Csv {
            kind: if classification {
                evomal_sdk::KIND_CLASSIFICATION
            } else {
                evomal_sdk::KIND_REGRESSION
            },
            n_features,
            n_outputs,
            target_width: if classification { 1 } else { targets.len() },
            parts,
        })
    }

    fn info(&self) -> TaskInfo {
        TaskInfo {
            kind: self.kind,
            n_outputs: self.n_outputs as u32,
            target_width: self.target_width as u32,
            input_rank: 1,
            input_shape: [self.n_features as u32, 0, 0, 0],
            split_sizes: self
                .parts
                .each_ref()
                .map(|(x, _)| (x.len() / self.n_features) as u64),
            ..Default::default()
        }
    }

    fn model_names(&self) -> Vec<&'static str> {
        vec!["linear", "mlp"]
    }

    /// `linear`; `mlp` with `hidden` sizes (default [64, 64]) and `activation` (`relu`, `tanh`,
    /// `sigmoid`; default `relu`).
    fn create_model(&self, name: &str, params: &Params) -> Result<Box<dyn Model>, String> {
        let (f, o) = (self.n_features, self.n_outputs);
        let model = match name {
            "linear" => Sequential::mlp(f, &[], o, Layer::Relu)?,
            _ => {
                let hidden = params.usize_list("hidden", &[64, 64])?;
                let act = params.activation("activation", "relu")?;
                Sequential::mlp(f, &hidden, o, act)?
            }
        };
        Ok(Box::new(model))
    }

    fn read_batch(
        &self,
        split: Split,
        idx: &[u64],
        x: &mut [f32],
        y: &mut [f32],
    ) -> Result<(), String> {
        let (xs, ys) = &self.parts[split as usize];
        let (f, t) = (self.n_features, self.target_width);
        for (k, &i) in idx.iter().enumerate() {
            let i = i as usize;
            x[k * f..(k + 1) * f].copy_from_slice(&xs[i * f..(i + 1) * f]);
            y[k * t..(k + 1) * t].copy_from_slice(&ys[i * t..(i + 1) * t]);
        }
        Ok(())
    }
}

/// The three splits: explicit `train` / `valid` / `test` files, or one `file` split by the
/// `split` fractions (stratified by class for classification) with `split_seed`.
fn read_splits(
    config: &Params,
    columns: &Columns<'_>,
    classification: bool,
) -> Result<[Table; 3], String> {
    let file = config.path("file")?;
    let explicit = [
        config.path("train")?,
        config.path("valid")?,
        config.path("test")?,
    ];
    let fractions = config.number_list("split", &[0.6, 0.2, 0.2])?;
    let seed = config.integer("split_seed", 0)?;
    match (file, explicit) {
        (Some(file), [None, None, None]) => {
            if fractions.len() != 3
                || fractions.iter().any(|&f| f <= 0.0)
                || (fractions.iter().sum::<f64>() - 1.0).abs() > 1e-6
            {
                return Err(format!(
                    "`split` must be three positive fractions (train, validation, test) that sum to 1, found {fractions:?}"
                ));
            }
            let (table, _) = Table::read(&file, columns)?;
            Ok(split_table(&table, &fractions, seed, classification))
        }
        (None, [Some(train), Some(valid), Some(test)]) => {
            let (train, names) = Table::read(&train, columns)?;
            let read_like = |path: &std::path::Path| -> Result<Table, String> {
                let columns = Columns {
                    targets: columns.targets,
                    features: Some(&names),
                };
                Ok(Table::read(path, &columns)?.0)
            };
            Ok([train, read_like(&valid)?, read_like(&test)?])
        }
        _ => Err(
            "`[task.data]` takes either `file` (one table, split by `split`) or all three of `train`, `valid` and `test`"
                .into(),
        ),
    }
}

/// Shuffles `table` with `seed` and cuts it by `fractions`; for classification, each class
/// separately, so every split keeps the class balance.
fn split_table(table: &Table, fractions: &[f64], seed: u64, classification: bool) -> [Table; 3] {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut groups: Vec<Vec<usize>> = if classification {
        let mut labels: Vec<&str> = table.targets.iter().map(|r| r[0].as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        labels
            .iter()
            .map(|l| {
                (0..table.targets.len())
                    .filter(|&i| table.targets[i][0] == *l)
                    .collect()
            })
            .collect()
    } else {
        vec![(0..table.targets.len()).collect()]
    };
    let mut parts: [Vec<usize>; 3] = Default::default();
    for group in &mut groups {
        group.shuffle(&mut rng);
        let n = group.len() as f64;
        let n_train = (fractions[0] * n).round() as usize;
        let n_valid = ((fractions[1] * n).round() as usize).min(group.len() - n_train);
        parts[0].extend(&group[..n_train]);
        parts[1].extend(&group[n_train..n_train + n_valid]);
        parts[2].extend(&group[n_train + n_valid..]);
    }
    parts.map(|mut idx| {
        idx.shuffle(&mut rng);
        table.subset(&idx)
    })
}

evomal_sdk::export_task!(Csv);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_classification_split_keeps_every_row_and_the_class_balance() {
        let n = 50;
        let table = Table {
            name: "t".into(),
            features: (0..n).map(|i| vec![i as f32]).collect(),
            targets: (0..n).map(|i| vec![(i % 5 == 0).to_string()]).collect(),
            lines: (0..n as u64).collect(),
        };
        let parts = split_table(&table, &[0.6, 0.2, 0.2], 3, true);
        assert_eq!(parts.each_ref().map(|t| t.features.len()), [30, 10, 10]);
        for part in &parts {
            let positives = part.targets.iter().filter(|r| r[0] == "true").count();
            assert_eq!(positives * 5, part.targets.len(), "one in five everywhere");
        }
        let mut all: Vec<f32> = parts
            .iter()
            .flat_map(|t| t.features.iter().map(|r| r[0]))
            .collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, (0..n).map(|i| i as f32).collect::<Vec<_>>());
        let again = split_table(&table, &[0.6, 0.2, 0.2], 3, true);
        assert_eq!(again[0].features, parts[0].features, "seeded");
        assert_ne!(
            split_table(&table, &[0.6, 0.2, 0.2], 4, true)[0].features,
            parts[0].features
        );
    }
}
