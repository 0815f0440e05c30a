//! Helpers for vendored tabular data: CSV parsing and standardisation fitted on train only.

/// A task's train, validation and test splits, each stored row-major: `width` floats per
/// example, then one target per example.
pub struct Splits {
    pub width: usize,
    pub parts: [(Vec<f32>, Vec<f32>); 3],
}

impl Splits {
    /// Examples per split, for `TaskInfo::split_sizes`.
    pub fn sizes(&self) -> [u64; 3] {
        self.parts.each_ref().map(|(_, y)| y.len() as u64)
    }

    /// Copies examples `idx` of `split` into a batch: the usual body of `Task::read_batch`.
    pub fn read(&self, split: crate::Split, idx: &[u64], x: &mut [f32], y: &mut [f32]) {
        let (xs, ys) = &self.parts[split as usize];
        let width = self.width;
        for (k, &i) in idx.iter().enumerate() {
            let i = i as usize;
            x[k * width..(k + 1) * width].copy_from_slice(&xs[i * width..(i + 1) * width]);
            y[k] = ys[i];
        }
    }
}

/// Parses a numeric CSV with one header line into rows (all as wide as the first).
pub fn parse_csv(name: &str, text: &str) -> Result<Vec<Vec<f32>>, String> {
    parse_lines(name, text.lines().enumerate().skip(1), None)
}

/// Parses a numeric CSV without a header whose rows all have `width` columns.
pub fn parse_rows(name: &str, text: &str, width: usize) -> Result<Vec<Vec<f32>>, String> {
    parse_lines(name, text.lines().enumerate(), Some(width))
}

/// Numeric rows from `(index, line)` pairs, skipping blank lines; every row must have `width`
/// columns, or the first row's count when `width` is `None`. Errors name the file and line.
fn parse_lines<'a>(
    name: &str,
    lines: impl Iterator<Item = (usize, &'a str)>,
    mut width: Option<usize>,
) -> Result<Vec<Vec<f32>>, String> {
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let row: Vec<f32> = line
            .split(',')
            .map(|c| c.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{name}, line {}: {e}", i + 1))?;
        let want = *width.get_or_insert(row.len());
        if want != row.len() {
            return Err(format!(
                "{name}, line {}: {} columns, expected {want}",
                i + 1,
                row.len()
            ));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Labelled examples (`features` values, then the class label, per row) shuffled once with
/// ChaCha8 from `seed` and split 60/20/20 into (features divided by `divisor`, labels).
pub fn shuffled_splits(
    mut rows: Vec<Vec<f32>>,
    features: usize,
    divisor: f32,
    seed: u64,
) -> Splits {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    rows.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let (n_train, n_valid) = (rows.len() * 6 / 10, rows.len() * 2 / 10);
    let parts = [
        &rows[..n_train],
        &rows[n_train..n_train + n_valid],
        &rows[n_train + n_valid..],
    ];
    let parts = parts.map(|part| {
        let x = part
            .iter()
            .flat_map(|r| r[..features].iter().map(|&p| p / divisor))
            .collect();
        let y = part.iter().map(|r| r[features]).collect();
        (x, y)
    });
    Splits {
        width: features,
        parts,
    }
}

/// Per-column mean and population standard deviation (as scikit-learn's `StandardScaler`).
#[derive(Clone, Debug)]
pub struct Scaler {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Scaler {
    /// Fits on `rows`, columns `cols`.
    pub fn fit(rows: &[Vec<f32>], cols: std::ops::Range<usize>) -> Scaler {
        let n = rows.len() as f64;
        let mean: Vec<f64> = cols
            .clone()
            .map(|c| rows.iter().map(|r| r[c] as f64).sum::<f64>() / n)
            .collect();
        let std = cols
            .clone()
            .zip(&mean)
            .map(|(c, m)| {
                let var = rows.iter().map(|r| (r[c] as f64 - m).powi(2)).sum::<f64>() / n;
                if var > 0.0 { var.sqrt() } else { 1.0 }
            })
            .collect();
        Scaler { mean, std }
    }

    pub fn apply(&self, values: &[f32]) -> Vec<f32> {
        values
            .iter()
            .zip(self.mean.iter().zip(&self.std))
            .map(|(&v, (m, s))| ((v as f64 - m) / s) as f32)
            .collect()
    }
}

/// A standardised tabular regression data set: the reference protocol of METHOD.md §7 (X and y
/// standardised with statistics of the training split only).
pub struct Tabular {
    /// Standardised features and targets; `width` is the number of features.
    pub splits: Splits,
}

impl Tabular {
    /// From three CSVs (train, valid, test) whose last column is the target.
    pub fn from_csvs(name: &str, train: &str, valid: &str, test: &str) -> Result<Tabular, String> {
        let parsed = [
            parse_csv(&format!("{name}/train.csv"), train)?,
            parse_csv(&format!("{name}/valid.csv"), valid)?,
            parse_csv(&format!("{name}/test.csv"), test)?,
        ];
        let width = parsed[0]
            .first()
            .map(Vec::len)
            .ok_or(format!("{name}/train.csv is empty"))?;
        if parsed.iter().flatten().any(|r| r.len() != width) {
            return Err(format!("{name}: the splits have different column counts"));
        }
        let n_features = width - 1;
        let x_scaler = Scaler::fit(&parsed[0], 0..n_features);
        let y_scaler = Scaler::fit(&parsed[0], n_features..width);
        let parts = parsed.map(|rows| {
            let x = rows
                .iter()
                .flat_map(|r| x_scaler.apply(&r[..n_features]))
                .collect();
            let y = rows
                .iter()
                .flat_map(|r| y_scaler.apply(&r[n_features..]))
                .collect();
            (x, y)
        });
        Ok(Tabular {
            splits: Splits {
                width: n_features,
                parts,
            },
        })
    }

    pub fn info(&self) -> crate::TaskInfo {
        let mut input_shape = [0; 4];
        input_shape[0] = self.splits.width as u32;
        crate::TaskInfo {
            kind: crate::KIND_REGRESSION,
            n_outputs: 1,
            target_width: 1,
            input_rank: 1,
            input_shape,
            split_sizes: self.splits.sizes(),
            ..Default::default()
        }
    }

    pub fn read_batch(&self, split: crate::Split, idx: &[u64], x: &mut [f32], y: &mut [f32]) {
        self.splits.read(split, idx, x, y);
    }

    /// The models every tabular task offers: `linear`, and `mlp` with `hidden` sizes (default:
    /// the reference's two layers of 1000) and `activation` (`relu`, `tanh`, `sigmoid`).
    pub fn create_model(
        &self,
        name: &str,
        params: &crate::Params,
    ) -> Result<Box<dyn crate::Model>, String> {
        let f = self.splits.width;
        let model = match name {
            "linear" => crate::Sequential::mlp(f, &[], 1, crate::Layer::Relu)?,
            "mlp" => {
                let hidden = params.usize_list("hidden", &[1000, 1000])?;
                let act = params.activation("activation", "relu")?;
                crate::Sequential::mlp(f, &hidden, 1, act)?
            }
            other => return Err(format!("unknown model `{other}`")),
        };
        Ok(Box::new(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_checked_for_width_and_named_in_errors() {
        assert_eq!(
            parse_csv("t.csv", "a,b\n1,2\n\n3,4\n").unwrap(),
            [[1.0, 2.0], [3.0, 4.0]]
        );
        assert_eq!(
            parse_csv("t.csv", "a,b\n1,2\n3\n").unwrap_err(),
            "t.csv, line 3: 1 columns, expected 2"
        );
        assert_eq!(
            parse_rows("r.csv", "1,2,3\n4,5\n", 3).unwrap_err(),
            "r.csv, line 2: 2 columns, expected 3"
        );
        assert!(
            parse_rows("r.csv", "1,x\n", 2)
                .unwrap_err()
                .starts_with("r.csv, line 1: ")
        );
    }

    #[test]
    fn shuffled_splits_are_seeded_and_keep_every_example() {
        let rows: Vec<Vec<f32>> = (0..10).map(|i| vec![i as f32 * 2.0, i as f32]).collect();
        let splits = shuffled_splits(rows.clone(), 1, 2.0, 0).parts;
        assert_eq!(splits.each_ref().map(|(_, y)| y.len()), [6, 2, 2]);
        let mut labels: Vec<f32> = splits.iter().flat_map(|(_, y)| y.clone()).collect();
        let features: Vec<f32> = splits.iter().flat_map(|(x, _)| x.clone()).collect();
        let all: Vec<f32> = splits.iter().flat_map(|(_, y)| y.clone()).collect();
        assert_eq!(
            features, all,
            "features divided by the divisor stay with their labels"
        );
        labels.sort_by(f32::total_cmp);
        assert_eq!(labels, (0..10).map(|i| i as f32).collect::<Vec<_>>());
        assert_eq!(
            shuffled_splits(rows.clone(), 1, 2.0, 0).parts[0].1,
            splits[0].1
        );
        assert_ne!(shuffled_splits(rows, 1, 2.0, 1).parts[0].1, splits[0].1);
    }
}
