//! Reading a CSV table into features and targets: columns by header name, numeric features,
//! targets as numbers (regression) or class names (classification). Errors name the file, the
//! line and the column.

use std::path::Path;

/// One CSV file's rows: the chosen feature columns as numbers, and the target cells as text.
pub struct Table {
    /// The file, for messages.
    pub name: String,
    pub features: Vec<Vec<f32>>,
    pub targets: Vec<Vec<String>>,
    /// The 1-based line of each row, for messages.
    pub lines: Vec<u64>,
}

/// Which columns to read.
pub struct Columns<'a> {
    pub targets: &'a [String],
    /// `None`: every column that is not a target.
    pub features: Option<&'a [String]>,
}

impl Table {
    /// Reads `path`; the header names the columns. Returns the table and its feature names.
    pub fn read(path: &Path, columns: &Columns<'_>) -> Result<(Table, Vec<String>), String> {
        let name = path.display().to_string();
        let text = std::fs::read(path).map_err(|e| format!("cannot read `{name}`: {e}"))?;
        // The csv crate's own line count skips blank lines; count them from byte offsets.
        let newlines: Vec<usize> = text
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        // A record's position is where the reader began it, before any blank lines it skipped.
        let line_at = |byte: u64| {
            let start = (byte as usize..text.len())
                .find(|&b| !matches!(text[b], b'\n' | b'\r'))
                .unwrap_or(text.len());
            newlines.partition_point(|&n| n < start) as u64 + 1
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_slice());
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| format!("`{name}`: {e}"))?
            .iter()
            .map(str::to_string)
            .collect();
        if header.is_empty() {
            return Err(format!(
                "`{name}` is empty: its first line names the columns"
            ));
        }
        let find = |col: &String| {
            header.iter().position(|h| h == col).ok_or_else(|| {
                format!(
                    "`{name}` has no column `{col}`; its columns: {}",
                    header.join(", ")
                )
            })
        };
        let target_idx = columns
            .targets
            .iter()
            .map(find)
            .collect::<Result<Vec<_>, _>>()?;
        let feature_names: Vec<String> = match columns.features {
            Some(f) => f.to_vec(),
            None => header
                .iter()
                .filter(|h| !columns.targets.contains(h))
                .cloned()
                .collect(),
        };
        if feature_names.is_empty() {
            return Err(format!(
                "`{name}` has no feature columns besides the targets"
            ));
        }
        let feature_idx = feature_names
            .iter()
            .map(find)
            .collect::<Result<Vec<_>, _>>()?;
        let mut table = Table {
            name: name.clone(),
            features: Vec::new(),
            targets: Vec::new(),
            lines: Vec::new(),
        };
        for record in reader.records() {
            let record = record.map_err(|e| format!("`{name}`: {e}"))?;
            let line = record.position().map_or(0, |p| line_at(p.byte()));
            if record.iter().all(str::is_empty) {
                continue;
            }
            let cell = |i: usize| record.get(i).unwrap_or("");
            let row = feature_idx
                .iter()
                .map(|&i| {
                    cell(i)
                        .parse::<f32>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| {
                            format!(
                                "`{name}`, line {line}, column `{}`: `{}` is not a finite number",
                                header[i],
                                cell(i)
                            )
                        })
                })
                .collect::<Result<Vec<f32>, _>>()?;
            table.features.push(row);
            table
                .targets
                .push(target_idx.iter().map(|&i| cell(i).to_string()).collect());
            table.lines.push(line);
        }
        if table.features.is_empty() {
            return Err(format!("`{name}` has no data rows"));
        }
        Ok((table, feature_names))
    }

    /// The rows `idx` of this table, in that order.
    pub fn subset(&self, idx: &[usize]) -> Table {
        Table {
            name: self.name.clone(),
            features: idx.iter().map(|&i| self.features[i].clone()).collect(),
            targets: idx.iter().map(|&i| self.targets[i].clone()).collect(),
            lines: idx.iter().map(|&i| self.lines[i]).collect(),
        }
    }

    /// The numeric targets (regression), every cell checked.
    pub fn numeric_targets(&self, target_names: &[String]) -> Result<Vec<f32>, String> {
        let mut out = Vec::with_capacity(self.targets.len() * target_names.len());
        for (row, line) in self.targets.iter().zip(&self.lines) {
            for (cell, col) in row.iter().zip(target_names) {
                let v = cell.parse::<f32>().ok().filter(|v| v.is_finite());
                out.push(v.ok_or_else(|| {
                    format!(
                        "`{}`, line {line}, column `{col}`: `{cell}` is not a finite number",
                        self.name
                    )
                })?);
            }
        }
        Ok(out)
    }

    /// The class index of every row (classification), every label checked against `classes`.
    pub fn class_indices(&self, classes: &[String]) -> Result<Vec<f32>, String> {
        self.targets
            .iter()
            .zip(&self.lines)
            .map(|(row, line)| {
                classes
                    .iter()
                    .position(|c| *c == row[0])
                    .map(|i| i as f32)
                    .ok_or_else(|| {
                        format!(
                            "`{}`, line {line}: label `{}` is not one of the classes [{}]",
                            self.name,
                            row[0],
                            classes.join(", ")
                        )
                    })
            })
            .collect()
    }
}

/// The distinct labels of `tables`' first target, sorted: numerically when every label is a
/// number, else as text.
pub fn infer_classes(tables: &[&Table]) -> Vec<String> {
    let mut labels: Vec<String> = tables
        .iter()
        .flat_map(|t| t.targets.iter().map(|r| r[0].clone()))
        .collect();
    labels.sort();
    labels.dedup();
    if labels.iter().all(|l| l.parse::<f64>().is_ok()) {
        labels.sort_by(|a, b| {
            let (a, b) = (
                a.parse::<f64>().unwrap_or(0.0),
                b.parse::<f64>().unwrap_or(0.0),
            );
            a.total_cmp(&b)
        });
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("evomal-csv-")
            .tempdir()
            .unwrap()
    }

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn columns(target: &str) -> Vec<String> {
        vec![target.to_string()]
    }

    #[test]
    fn columns_are_found_by_name_and_bad_cells_named_by_line() {
        let t = columns("y");
        let cols = Columns {
            targets: &t,
            features: None,
        };
        let dir = scratch();
        let path = file(&dir, "ok.csv", "a,y,b\n1,cat,2\n\n\"3\",dog,4\n");
        let (table, names) = Table::read(&path, &cols).unwrap();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(table.features, [[1.0, 2.0], [3.0, 4.0]]);
        assert_eq!(table.lines, [2, 4]);
        let classes = infer_classes(&[&table]);
        assert_eq!(classes, ["cat", "dog"]);
        assert_eq!(table.class_indices(&classes).unwrap(), [0.0, 1.0]);
        let err = table.class_indices(&columns("cat")).unwrap_err();
        assert!(
            err.ends_with("line 4: label `dog` is not one of the classes [cat]"),
            "{err}"
        );

        let empty = file(&dir, "empty.csv", "");
        let err = Table::read(&empty, &cols).err().unwrap();
        assert!(
            err.ends_with("empty.csv` is empty: its first line names the columns"),
            "{err}"
        );

        let path = file(&dir, "bad.csv", "a,y\n1,0\nx,1\n");
        let err = Table::read(&path, &cols).err().unwrap();
        assert!(
            err.ends_with("bad.csv`, line 3, column `a`: `x` is not a finite number"),
            "{err}"
        );
        let err = Table::read(
            &path,
            &Columns {
                targets: &columns("z"),
                features: None,
            },
        )
        .err()
        .unwrap();
        assert!(
            err.contains("has no column `z`; its columns: a, y"),
            "{err}"
        );
        let path = file(&dir, "nan.csv", "a,y\nnan,0\n");
        assert!(Table::read(&path, &cols).is_err());
    }

    #[test]
    fn numeric_labels_sort_as_numbers() {
        let t = columns("y");
        let cols = Columns {
            targets: &t,
            features: None,
        };
        let dir = scratch();
        let path = file(&dir, "num.csv", "a,y\n1,10\n2,9\n3,10\n");
        let (table, _) = Table::read(&path, &cols).unwrap();
        assert_eq!(infer_classes(&[&table]), ["9", "10"]);
        assert_eq!(table.numeric_targets(&t).unwrap(), [10.0, 9.0, 10.0]);
    }
}
