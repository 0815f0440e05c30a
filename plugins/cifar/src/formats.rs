//! The data sets' distribution formats: the CIFAR binary versions (one label byte, or a coarse
//! and a fine one, then 3,072 bytes of red, green and blue planes per record) and SVHN's
//! cropped-digit MATLAB files (level 5 MAT-files, optionally compressed). Every error names the
//! file and what is wrong with it.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Bytes of one 32x32 RGB image, channel planes in row-major order.
pub const IMAGE: usize = 3 * 32 * 32;

/// Images (`IMAGE` bytes each, channel-first) and their labels.
#[derive(Default)]
pub struct Images {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Images {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn append(&mut self, other: Images) {
        self.pixels.extend_from_slice(&other.pixels);
        self.labels.extend_from_slice(&other.labels);
    }
}

/// Reads `path` whole, or says which file is missing and where the data set is published.
pub fn read_file(path: &Path, published: &str) -> Result<Vec<u8>, String> {
    if !path.is_file() {
        return Err(format!(
            "`{}` does not exist; download the data set from {published} and point `data_dir` at it",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The first of `names` that exists in `dir` or in `dir/sub` (the folder the archive unpacks
/// to), else the path in `dir` (whose absence the caller reports).
pub fn locate(dir: &Path, sub: &str, name: &str) -> PathBuf {
    let nested = dir.join(sub).join(name);
    if nested.is_file() {
        nested
    } else {
        dir.join(name)
    }
}

/// A CIFAR binary file: records of `label_bytes` labels then one image; the label used is the
/// last of them (CIFAR-100's fine label), and must be below `classes`.
pub fn cifar_binary(
    bytes: &[u8],
    name: &Path,
    label_bytes: usize,
    classes: usize,
) -> Result<Images, String> {
    let record = label_bytes + IMAGE;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(format!(
            "{}: {} bytes is not a whole number of {record}-byte records (truncated, or not a CIFAR binary file)",
            name.display(),
            bytes.len()
        ));
    }
    let mut out = Images::default();
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        let label = r[label_bytes - 1];
        if label as usize >= classes {
            return Err(format!(
                "{}: record {i} has label {label}, but the data set has {classes} classes",
                name.display()
            ));
        }
        out.labels.push(label);
        out.pixels.extend_from_slice(&r[label_bytes..]);
    }
    Ok(out)
}

/// SVHN's `X` (uint8, 32 x 32 x 3 x N, column-major) and `y` (labels 1..10, 10 for the digit
/// 0) from a level 5 MAT-file.
pub fn svhn_mat(bytes: &[u8], name: &Path) -> Result<Images, String> {
    let err = |what: &str| format!("{}: {what}", name.display());
    if bytes.len() < 128 || &bytes[126..128] != b"IM" {
        return Err(err(
            "not a little-endian level 5 MAT-file (SVHN's `*_32x32.mat`; a MATLAB v7.3 file must be re-saved with `-v7`)",
        ));
    }
    let (mut x, mut y) = (None, None);
    let mut at = 128;
    while at + 8 <= bytes.len() {
        let (ty, size) = (le_u32(bytes, at), le_u32(bytes, at + 4) as usize);
        let body = bytes
            .get(at + 8..at + 8 + size)
            .ok_or_else(|| err("truncated data element"))?;
        at += 8 + size.next_multiple_of(8);
        let matrix = match ty {
            MI_MATRIX => matrix(body).map_err(|e| err(&e))?,
            MI_COMPRESSED => {
                let mut inner = Vec::new();
                flate2::read::ZlibDecoder::new(body)
                    .read_to_end(&mut inner)
                    .map_err(|e| err(&format!("corrupt compressed element: {e}")))?;
                if inner.len() < 8 || le_u32(&inner, 0) != MI_MATRIX {
                    continue;
                }
                let n = (le_u32(&inner, 4) as usize).min(inner.len() - 8);
                matrix(&inner[8..8 + n]).map_err(|e| err(&e))?
            }
            _ => continue,
        };
        match matrix.name.as_str() {
            "X" => x = Some(matrix),
            "y" => y = Some(matrix),
            _ => {}
        }
    }
    let (x, y) = match (x, y) {
        (Some(x), Some(y)) => (x, y),
        _ => return Err(err("has no `X` and `y` arrays")),
    };
    if x.dims.len() != 4 || x.dims[..3] != [32, 32, 3] {
        return Err(err(&format!(
            "`X` is {:?}, expected 32 x 32 x 3 x N",
            x.dims
        )));
    }
    let n = x.dims[3];
    if y.values.len() != n || x.values.len() != n * IMAGE {
        return Err(err(&format!(
            "`X` holds {} images but `y` {} labels",
            n,
            y.values.len()
        )));
    }
    let mut out = Images {
        pixels: vec![0; n * IMAGE],
        labels: Vec::with_capacity(n),
    };
    for (i, &v) in y.values.iter().enumerate() {
        if !(1.0..=10.0).contains(&v) || v.fract() != 0.0 {
            return Err(err(&format!("label {v} of image {i} is not in 1..10")));
        }
        out.labels.push(v as u8 % 10);
    }
    // Column-major X[row, col, channel, image] to channel-first rows.
    for (k, &v) in x.values.iter().enumerate() {
        let (row, col, ch, img) = (k % 32, k / 32 % 32, k / 1024 % 3, k / IMAGE);
        out.pixels[img * IMAGE + ch * 1024 + row * 32 + col] = v as u8;
    }
    Ok(out)
}

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT32: u32 = 5;
const MI_DOUBLE: u32 = 9;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

struct Matrix {
    name: String,
    dims: Vec<usize>,
    values: Vec<f64>,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The sub-elements of a matrix: flags, dimensions, name, real part (as `u8` or `f64`).
fn matrix(body: &[u8]) -> Result<Matrix, String> {
    let mut parts = Vec::new();
    let mut at = 0;
    while at + 8 <= body.len() && parts.len() < 4 {
        let tag = le_u32(body, at);
        // The small element format packs the size into the tag's upper half.
        let (ty, size, data_at, next) = if tag >> 16 != 0 {
            let size = (tag >> 16) as usize;
            (tag & 0xffff, size, at + 4, at + 8)
        } else {
            let size = le_u32(body, at + 4) as usize;
            (tag, size, at + 8, at + 8 + size.next_multiple_of(8))
        };
        let data = body
            .get(data_at..data_at + size)
            .ok_or("truncated matrix element")?;
        parts.push((ty, data));
        at = next;
    }
    let [_, (MI_INT32, dims), (MI_INT8, name), (ty, data)] = parts[..] else {
        return Err("a matrix without flags, dimensions, name and data".into());
    };
    let dims = dims
        .chunks_exact(4)
        .map(|d| le_u32(d, 0) as usize)
        .collect();
    let values = match ty {
        MI_UINT8 => data.iter().map(|&v| v as f64).collect(),
        MI_DOUBLE => data
            .chunks_exact(8)
            .map(|d| f64::from_le_bytes(d.try_into().expect("8 bytes")))
            .collect(),
        other => return Err(format!("matrix data of MAT type {other} is not supported")),
    };
    Ok(Matrix {
        name: String::from_utf8_lossy(name).into_owned(),
        dims,
        values,
    })
}
