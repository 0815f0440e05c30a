//! A data split on the device. Inputs with at most 256 distinct values in every feature
//! (images read from bytes, whatever their normalisation; small integer tables) go up as one
//! byte per value and a table of each feature's values: a quarter of the memory, and the same
//! floats bit for bit, which `gather.wgsl` looks up as it copies a batch.

use rayon::prelude::*;

use super::net::{Crops, Source};
use crate::gpu::Gpu;
use crate::train::{Task, TrainError};

/// Distinct values one feature may have for its split to be coded.
const CODES: usize = 256;
/// Features coded by one task (each keeps a table of `2 * CODES` slots while it works).
const FEATURES_PER_TASK: usize = 64;

/// A split's examples on the device, and its targets on the host (for the metric).
pub struct Split {
    pub n: usize,
    /// The inputs: f32s, or (`coded`) each feature's table then the byte codes, 4 a word.
    xs: wgpu::Buffer,
    ys: wgpu::Buffer,
    pub targets: Vec<f32>,
    coded: bool,
    /// Bytes of `xs` and `ys`.
    pub bytes: usize,
}

impl Split {
    /// Reads split `split` of `task` whole through the plugin and uploads it.
    pub fn upload(gpu: &Gpu, task: &Task<'_>, split: u32) -> Result<Split, TrainError> {
        let n = task.split_size(split);
        let idx: Vec<u64> = (0..n as u64).collect();
        let mut x = vec![0.0f32; n * task.input_len];
        let mut y = vec![0.0f32; n * task.target_width];
        task.plugin.read_batch(split, &idx, &mut x, &mut y)?;
        let coded = encode(&x, task.input_len);
        let xs = match &coded {
            Some(words) => gpu.buffer_with("split inputs (coded)", words)?,
            None => gpu.buffer_with("split inputs", &x)?,
        };
        let ys = gpu.buffer_with("split targets", &y)?;
        Ok(Split {
            n,
            bytes: (xs.size() + ys.size()) as usize,
            xs,
            ys,
            targets: y,
            coded: coded.is_some(),
        })
    }

    /// The rows `idx[counter]` of this split, cropped and flipped by `crops`.
    pub fn source<'b>(
        &'b self,
        idx: &'b wgpu::Buffer,
        counter: &'b wgpu::Buffer,
        crops: Option<Crops<'b>>,
    ) -> Source<'b> {
        Source {
            xs: &self.xs,
            ys: &self.ys,
            coded: self.coded,
            idx,
            counter,
            crops,
        }
    }
}

/// `x` (rows of `features` values) as `gather.wgsl` reads coded inputs: `CODES` words per
/// feature (its values' bits, in the order the rows first show them), then one byte per value,
/// little-endian in words. `None` when a feature has more than `CODES` values, or when the
/// tables would cost more than the bytes save.
fn encode(x: &[f32], features: usize) -> Option<Vec<u32>> {
    let table = features * CODES;
    let codes = x.len().div_ceil(4);
    if features == 0 || table + codes >= x.len() {
        return None;
    }
    let rows = x.len() / features;
    let parts: Vec<(Vec<u32>, Vec<u8>)> = (0..features)
        .step_by(FEATURES_PER_TASK)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|first| {
            let last = (first + FEATURES_PER_TASK).min(features);
            code_features(x, features, first..last)
        })
        .collect::<Option<_>>()?;
    let mut words = vec![0u32; table + codes];
    let (tables, bytes) = words.split_at_mut(table);
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(bytes);
    for (part, (values, part_codes)) in parts.iter().enumerate() {
        let first = part * FEATURES_PER_TASK;
        tables[first * CODES..][..values.len()].copy_from_slice(values);
        let width = part_codes.len() / rows;
        for (row, codes) in part_codes.chunks_exact(width).enumerate() {
            bytes[row * features + first..][..width].copy_from_slice(codes);
        }
    }
    Some(words)
}

/// The features `range` of every row coded: their tables (`CODES` words each) and their codes,
/// row by row; `None` when one has more than `CODES` values.
fn code_features(
    x: &[f32],
    features: usize,
    range: std::ops::Range<usize>,
) -> Option<(Vec<u32>, Vec<u8>)> {
    let mut tables: Vec<Table> = range.clone().map(|_| Table::new()).collect();
    let mut codes = Vec::with_capacity(x.len() / features * range.len());
    for row in x.chunks_exact(features) {
        for (value, table) in row[range.clone()].iter().zip(&mut tables) {
            codes.push(table.code(value.to_bits())?);
        }
    }
    let mut values = vec![0u32; range.len() * CODES];
    for (table, out) in tables.iter().zip(values.chunks_exact_mut(CODES)) {
        out[..table.values.len()].copy_from_slice(&table.values);
    }
    Some((values, codes))
}

/// One feature's values so far and their codes: an open-addressed hash of f32 bits, never more
/// than half full.
struct Table {
    /// (bits, code + 1), or code 0 where a slot is empty.
    slots: Vec<(u32, u16)>,
    values: Vec<u32>,
}

impl Table {
    const SLOTS: usize = 2 * CODES;

    fn new() -> Table {
        Table {
            slots: vec![(0, 0); Self::SLOTS],
            values: Vec::with_capacity(CODES),
        }
    }

    /// The code of `bits`, a new one if unseen; `None` past `CODES` values.
    fn code(&mut self, bits: u32) -> Option<u8> {
        let mut slot = (bits.wrapping_mul(0x9e37_79b1) >> 23) as usize;
        loop {
            let (key, code) = self.slots[slot];
            if code == 0 {
                if self.values.len() == CODES {
                    return None;
                }
                self.values.push(bits);
                self.slots[slot] = (bits, self.values.len() as u16);
                return Some((self.values.len() - 1) as u8);
            }
            if key == bits {
                return Some((code - 1) as u8);
            }
            slot = (slot + 1) % Self::SLOTS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `gather.wgsl` reads at input `i` of coded `words` with `features` features.
    fn decode(words: &[u32], features: usize, i: usize) -> f32 {
        let code = words[features * CODES + i / 4] >> (i % 4 * 8) & 0xff;
        f32::from_bits(words[i % features * CODES + code as usize])
    }

    /// Normalised "pixels": feature `f` of row `r` is level `(r * 7 + f * 13) % levels`
    /// scaled and shifted per feature, so every feature has its own `levels` values.
    fn pixels(rows: usize, features: usize, levels: usize) -> Vec<f32> {
        (0..rows * features)
            .map(|i| {
                let (r, f) = (i / features, i % features);
                let byte = ((r * 7 + f * 13) % levels) as f32;
                (byte / 255.0 - 0.1 * f as f32) / (0.2 + 0.01 * f as f32)
            })
            .collect()
    }

    #[test]
    fn coded_inputs_decode_to_the_same_bits() {
        // Three tasks' worth of features, the last one short.
        let features = 2 * FEATURES_PER_TASK + 5;
        // Room for two more values in each feature: a negative zero and a NaN.
        let mut x = pixels(600, features, 254);
        x[17] = -0.0;
        x[18] = f32::NAN;
        let words = encode(&x, features).expect("every feature has at most 256 values");
        assert_eq!(words.len(), features * CODES + (x.len()).div_ceil(4));
        for (i, v) in x.iter().enumerate() {
            assert_eq!(
                decode(&words, features, i).to_bits(),
                v.to_bits(),
                "input {i}"
            );
        }
    }

    #[test]
    fn a_feature_with_257_values_or_a_small_split_stays_f32() {
        let features = 3;
        let mut x = pixels(1000, features, 256);
        assert!(encode(&x, features).is_some());
        x[999 * features + 1] = 1e6;
        assert_eq!(encode(&x, features), None, "feature 1 has a 257th value");
        // 300 rows of 3072 features: tables of 3 MiB to save 2.6.
        assert_eq!(encode(&pixels(300, 3072, 256), 3072), None);
        assert!(encode(&pixels(400, 3072, 256), 3072).is_some());
    }
}
