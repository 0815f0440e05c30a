//! Helpers for vendored tabular data: CSV parsing and standardisation fitted on train only.

/// Copies examples `idx` of a split stored row-major (`width` floats per example in `xs`, one
/// target each in `ys`) into a batch: the usual body of `Task::read_batch`.
pub fn copy_rows(xs: &[f32], ys: &[f32], width: usize, idx: &[u64], x: &mut [f32], y: &mut [f32]) {
    for (k, &i) in idx.iter().enumerate() {
        let i = i as usize;
        x[k * width..(k + 1) * width].copy_from_slice(&xs[i * width..(i + 1) * width]);
        y[k] = ys[i];
    }
}

/// Parses a numeric CSV with one header line into rows.
pub fn parse_csv(name: &str, text: &str) -> Result<Vec<Vec<f32>>, String> {
    let mut rows = Vec::new();
    let mut width = None;
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let row: Vec<f32> = line
            .split(',')
            .map(|c| c.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{name}, line {}: {e}", i + 1))?;
        if *width.get_or_insert(row.len()) != row.len() {
            return Err(format!(
                "{name}, line {}: {} columns, expected {width:?}",
                i + 1,
                row.len()
            ));
        }
        rows.push(row);
    }
    Ok(rows)
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
    pub n_features: usize,
    /// Per split: features (row-major) and targets.
    pub splits: [(Vec<f32>, Vec<f32>); 3],
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
        let splits = parsed.map(|rows| {
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
        Ok(Tabular { n_features, splits })
    }

    pub fn info(&self) -> crate::TaskInfo {
        let mut input_shape = [0; 4];
        input_shape[0] = self.n_features as u32;
        crate::TaskInfo {
            kind: crate::KIND_REGRESSION,
            n_outputs: 1,
            target_width: 1,
            input_rank: 1,
            input_shape,
            split_sizes: self.splits.each_ref().map(|(_, y)| y.len() as u64),
        }
    }

    pub fn read_batch(&self, split: crate::Split, idx: &[u64], x: &mut [f32], y: &mut [f32]) {
        let (xs, ys) = &self.splits[split as usize];
        copy_rows(xs, ys, self.n_features, idx, x, y);
    }

    /// The models every tabular task offers: `linear`, and `mlp` with `hidden` sizes (default:
    /// the reference's two layers of 1000) and `activation` (`relu`, `tanh`, `sigmoid`).
    pub fn create_model(
        &self,
        name: &str,
        params: &crate::Params,
    ) -> Result<Box<dyn crate::Model>, String> {
        let f = self.n_features;
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
