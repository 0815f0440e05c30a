//! MNIST handwritten digits (28x28, 10 classes) with models `lenet5` and `mlp`.
//!
//! Data: by default the 5,000-image sample shipped in `data/mnist_5k.csv.gz` (split 60/20/20
//! after one seeded shuffle). With `[task.data] data_dir = "..."` the standard IDX files
//! (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`, each optionally `.gz`): the first 50,000 training images train, the
//! last 10,000 validate, and the 10,000 test images test. Pixels are scaled to [0, 1].

use std::io::Read;
use std::path::{Path, PathBuf};

use evomal_sdk::{KIND_CLASSIFICATION, Model, Params, Sequential, Split, Task, TaskInfo};
use evomal_sdk::{data, models};

const SIDE: usize = 28;
const PIXELS: usize = SIDE * SIDE;
const CLASSES: usize = 10;
const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

struct Mnist {
    splits: data::Splits,
}

impl Task for Mnist {
    const NAME: &'static str = "mnist";

    fn load(config: &Params) -> Result<Self, String> {
        match config.path("data_dir")? {
            None => sample(),
            Some(dir) => idx(Path::new(&dir)),
        }
    }

    fn info(&self) -> TaskInfo {
        TaskInfo {
            kind: KIND_CLASSIFICATION,
            n_outputs: CLASSES as u32,
            target_width: 1,
            input_rank: 3,
            input_shape: [1, SIDE as u32, SIDE as u32, 0],
            split_sizes: self.splits.sizes(),
            ..Default::default()
        }
    }

    fn model_names(&self) -> Vec<&'static str> {
        vec!["lenet5", "mlp"]
    }

    fn create_model(&self, name: &str, params: &Params) -> Result<Box<dyn Model>, String> {
        match name {
            "lenet5" => Ok(Box::new(models::lenet5(1, SIDE, SIDE, CLASSES)?)),
            "mlp" => {
                let hidden = params.usize_list("hidden", &[1000, 1000])?;
                let act = params.activation("activation", "relu")?;
                Ok(Box::new(Sequential::mlp(PIXELS, &hidden, CLASSES, act)?))
            }
            other => Err(format!("unknown model `{other}`")),
        }
    }

    fn read_batch(
        &self,
        split: Split,
        idx: &[u64],
        x: &mut [f32],
        y: &mut [f32],
    ) -> Result<(), String> {
        self.splits.read(split, idx, x, y);
        Ok(())
    }
}

/// The shipped 5,000-image sample: 784 pixels (0..255) then the label per CSV line.
fn sample() -> Result<Mnist, String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(&include_bytes!("../data/mnist_5k.csv.gz")[..])
        .read_to_string(&mut text)
        .map_err(|e| format!("mnist_5k.csv.gz: {e}"))?;
    let rows = data::parse_rows("mnist_5k.csv", &text, PIXELS + 1)?;
    let splits = data::shuffled_splits(rows, PIXELS, 255.0, 0);
    Ok(Mnist { splits })
}

/// The standard IDX files in `dir`.
fn idx(dir: &Path) -> Result<Mnist, String> {
    // The bytes of file `name` (or of `name.gz`, unpacked), and its path for errors.
    let read = |name: &str| -> Result<(Vec<u8>, String), String> {
        let plain = dir.join(name);
        let gz = PathBuf::from(format!("{}.gz", plain.display()));
        if plain.is_file() {
            let shown = plain.display().to_string();
            let bytes = std::fs::read(&plain).map_err(|e| format!("`{shown}`: {e}"))?;
            Ok((bytes, shown))
        } else if gz.is_file() {
            let shown = gz.display().to_string();
            let mut out = Vec::new();
            let file = std::fs::File::open(&gz).map_err(|e| format!("`{shown}`: {e}"))?;
            flate2::read::GzDecoder::new(file)
                .read_to_end(&mut out)
                .map_err(|e| format!("`{shown}`: {e}"))?;
            Ok((out, shown))
        } else {
            Err(format!(
                "MNIST data_dir `{}` has no `{name}` (nor `{name}.gz`); it needs the four standard files: {}",
                dir.display(),
                IDX_FILES.join(", ")
            ))
        }
    };
    let images_in = |name| read(name).and_then(|(b, shown)| images(&b, &shown));
    let labels_in = |name| read(name).and_then(|(b, shown)| labels(&b, &shown));
    let train_x = images_in(IDX_FILES[0])?;
    let train_y = labels_in(IDX_FILES[1])?;
    let test_x = images_in(IDX_FILES[2])?;
    let test_y = labels_in(IDX_FILES[3])?;
    if train_x.len() != train_y.len() * PIXELS || test_x.len() != test_y.len() * PIXELS {
        return Err("MNIST image and label files disagree on the number of examples".into());
    }
    let n_valid = 10_000.min(train_y.len() / 6);
    let n_train = train_y.len() - n_valid;
    let (tx, vx) = train_x.split_at(n_train * PIXELS);
    let (ty, vy) = train_y.split_at(n_train);
    let parts = [
        (tx.to_vec(), ty.to_vec()),
        (vx.to_vec(), vy.to_vec()),
        (test_x, test_y),
    ];
    Ok(Mnist {
        splits: data::Splits {
            width: PIXELS,
            parts,
        },
    })
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Why `b` does not begin as an IDX file of this `magic` does, if it does not.
fn idx_header(b: &[u8], shown: &str, magic: u32, header: usize, what: &str) -> Result<(), String> {
    if b.len() < header {
        return Err(format!(
            "`{shown}`: not an IDX {what} file: {} bytes, shorter than its {header}-byte header",
            b.len()
        ));
    }
    if be_u32(b, 0) != magic {
        return Err(format!(
            "`{shown}`: not an IDX {what} file: it begins 0x{:08x}, not 0x{magic:08x}",
            be_u32(b, 0)
        ));
    }
    Ok(())
}

fn images(b: &[u8], shown: &str) -> Result<Vec<f32>, String> {
    idx_header(b, shown, 0x0803, 16, "image")?;
    let (n, rows, cols) = (
        be_u32(b, 4) as usize,
        be_u32(b, 8) as usize,
        be_u32(b, 12) as usize,
    );
    if (rows, cols) != (SIDE, SIDE) || b.len() != 16 + n * PIXELS {
        return Err(format!(
            "`{shown}`: expected {n} images of 28x28, found {rows}x{cols} and {} bytes (cut short?)",
            b.len()
        ));
    }
    Ok(b[16..].iter().map(|&p| p as f32 / 255.0).collect())
}

fn labels(b: &[u8], shown: &str) -> Result<Vec<f32>, String> {
    idx_header(b, shown, 0x0801, 8, "label")?;
    let n = be_u32(b, 4) as usize;
    if b.len() != 8 + n {
        return Err(format!(
            "`{shown}`: its header says {n} labels, but it holds {} (cut short?)",
            b.len() - 8
        ));
    }
    b[8..]
        .iter()
        .map(|&l| {
            if (l as usize) < CLASSES {
                Ok(l as f32)
            } else {
                Err(format!("`{shown}`: label {l} is not a digit"))
            }
        })
        .collect()
}

evomal_sdk::export_task!(Mnist);

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// IDX files for `n` training and `m` test images (pixel value `i % 256`, label `i % 10`),
    /// gzipped when `gz`.
    fn write_idx(dir: &Path, n: usize, m: usize, gz: bool) {
        std::fs::create_dir_all(dir).unwrap();
        let put = |name: &str, bytes: Vec<u8>| {
            if gz {
                let f = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
                let mut z = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
                z.write_all(&bytes).unwrap();
                z.finish().unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        };
        for (i, count) in [(0, n), (2, m)] {
            let mut img = vec![0, 0, 8, 3];
            for d in [count as u32, 28, 28] {
                img.extend_from_slice(&d.to_be_bytes());
            }
            img.extend((0..count * PIXELS).map(|p| (p / PIXELS % 256) as u8));
            put(IDX_FILES[i], img);
            let mut lab = vec![0, 0, 8, 1];
            lab.extend_from_slice(&(count as u32).to_be_bytes());
            lab.extend((0..count).map(|k| (k % 10) as u8));
            put(IDX_FILES[i + 1], lab);
        }
    }

    #[test]
    fn idx_files_plain_or_gzipped_load_and_bad_ones_are_named() {
        let base = tempfile::Builder::new()
            .prefix("evomal-mnist-idx-")
            .tempdir()
            .unwrap();
        let base = base.path();
        for gz in [false, true] {
            let dir = base.join(if gz { "gz" } else { "plain" });
            write_idx(&dir, 70, 20, gz);
            let m = idx(&dir).unwrap();
            // The last sixth of the training images (at most 10,000) validate.
            assert_eq!(m.splits.sizes(), [59, 11, 20]);
            let (mut x, mut y) = (vec![0.0; PIXELS], [0.0]);
            m.splits.read(Split::Valid, &[0], &mut x, &mut y);
            assert_eq!((x[0], y[0]), (59.0 / 255.0, 9.0));
        }
        let dir = base.join("plain");
        let labels = dir.join(IDX_FILES[1]);
        let mut bad = std::fs::read(&labels).unwrap();
        bad[8] = 10;
        std::fs::write(&labels, &bad).unwrap();
        let err = idx(&dir).err().unwrap();
        assert!(err.contains("label 10 is not a digit"), "{err}");
        std::fs::write(&labels, &bad[..20]).unwrap();
        let err = idx(&dir).err().unwrap();
        let shown = labels.display();
        assert_eq!(
            err,
            format!("`{shown}`: its header says 70 labels, but it holds 12 (cut short?)")
        );
        std::fs::write(&labels, b"junk").unwrap();
        let err = idx(&dir).err().unwrap();
        assert_eq!(
            err,
            format!("`{shown}`: not an IDX label file: 4 bytes, shorter than its 8-byte header")
        );
        std::fs::write(&labels, b"junk and more").unwrap();
        let err = idx(&dir).err().unwrap();
        assert_eq!(
            err,
            format!("`{shown}`: not an IDX label file: it begins 0x6a756e6b, not 0x00000801")
        );
        let images = dir.join(IDX_FILES[0]);
        let img = std::fs::read(&images).unwrap();
        std::fs::write(&images, &img[..1000]).unwrap();
        let err = idx(&dir).err().unwrap();
        assert!(
            err.contains("train-images-idx3-ubyte`: expected 70 images of 28x28"),
            "{err}"
        );
    }
}
