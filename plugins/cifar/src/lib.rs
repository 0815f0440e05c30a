//! CIFAR-10, CIFAR-100 and SVHN (cropped digits), read from their distribution files, with the
//! CNNs of the EvoMAL papers.
//!
//! `[task.data]`: `data_dir` (required: the folder with the files, or the folder the archive
//! unpacked into), `dataset = "cifar10" | "cifar100" | "svhn"` (default `cifar10`),
//! `validation` (the fraction of the official training set held out, stratified; default 0.1),
//! `split_seed` (default 0), `augment` (random crop with 4-pixel padding; default true), `flip`
//! (horizontal flips while augmenting; default true, false for SVHN's digits), `train_limit` and
//! `test_limit` (use only the first images of each official set, for quick runs).

mod formats;
mod images;

use std::path::Path;

use evomal_sdk::abi::{AUGMENT_CROP_FLIP, AUGMENT_NONE};
use evomal_sdk::models;
use evomal_sdk::{KIND_CLASSIFICATION, Layer, Model, Params, Sequential, Split, Task, TaskInfo};

use formats::{IMAGE, Images, cifar_binary, svhn_mat};
use images::Store;

struct Dataset {
    name: &'static str,
    classes: usize,
    published: &'static str,
}

const CIFAR10: Dataset = Dataset {
    name: "cifar10",
    classes: 10,
    published: "https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-10 binary version)",
};
const CIFAR100: Dataset = Dataset {
    name: "cifar100",
    classes: 100,
    published: "https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-100 binary version)",
};
const SVHN: Dataset = Dataset {
    name: "svhn",
    classes: 10,
    published: "http://ufldl.stanford.edu/housenumbers/ (format 2, cropped digits)",
};

struct Cifar {
    dataset: &'static Dataset,
    store: Store,
    augment: bool,
}

impl Task for Cifar {
    const NAME: &'static str = "cifar";

    fn load(config: &Params) -> Result<Self, String> {
        let dataset = match config
            .choice("dataset", &["cifar10", "cifar100", "svhn"], "cifar10")?
            .as_str()
        {
            "cifar100" => &CIFAR100,
            "svhn" => &SVHN,
            _ => &CIFAR10,
        };
        let dir = config.path("data_dir")?.ok_or_else(|| {
            format!(
                "`[task.data] data_dir` is required: the folder with the {} files, from {}",
                dataset.name, dataset.published
            )
        })?;
        let validation = config.number("validation", 0.1)?;
        if !(0.0..1.0).contains(&validation) {
            return Err(format!(
                "`validation` must be in [0, 1), found {validation}"
            ));
        }
        let seed = config.integer("split_seed", 0)?;
        let augment = config.flag("augment", true)?;
        let flip = config.flag("flip", dataset.name != "svhn")?;
        let limit = |key| -> Result<usize, String> {
            Ok(config.integer(key, u64::MAX)?.min(usize::MAX as u64) as usize)
        };
        let (train_limit, test_limit) = (limit("train_limit")?, limit("test_limit")?);
        let (mut train, mut test) = read(dataset, Path::new(&dir))?;
        truncate(&mut train, train_limit);
        truncate(&mut test, test_limit);
        let store = Store::new(train, test, dataset.classes, validation, seed, flip)?;
        Ok(Cifar {
            dataset,
            store,
            augment,
        })
    }

    fn info(&self) -> TaskInfo {
        TaskInfo {
            kind: KIND_CLASSIFICATION,
            n_outputs: self.dataset.classes as u32,
            target_width: 1,
            input_rank: 3,
            input_shape: [3, 32, 32, 0],
            split_sizes: self.store.sizes(),
            augments: if self.augment {
                AUGMENT_CROP_FLIP
            } else {
                AUGMENT_NONE
            },
            crop_flip: self.store.crop_flip(),
        }
    }

    fn model_names(&self) -> Vec<&'static str> {
        vec!["lenet5", "allcnnc", "vgg11", "resnet18", "wrn", "mlp"]
    }

    fn create_model(&self, name: &str, params: &Params) -> Result<Box<dyn Model>, String> {
        let k = self.dataset.classes;
        let width = |default| -> Result<usize, String> {
            Ok(params.integer("width", default)?.max(1) as usize)
        };
        let model = match name {
            "lenet5" => models::lenet5(3, 32, 32, k)?,
            "allcnnc" => models::allcnn_c(3, 32, 32, k, width(96)?)?,
            "vgg11" => models::vgg11(3, 32, 32, k, width(64)?)?,
            "resnet18" => {
                let blocks = params.usize_list("blocks", &[2, 2, 2, 2])?;
                models::resnet(3, 32, 32, k, &blocks, width(64)?, 0.0, Layer::Relu)?
            }
            "wrn" => {
                let depth = params.integer("depth", 16)? as usize;
                let widen = params.integer("widen", 4)? as usize;
                let dropout = params.number("dropout", 0.0)? as f32;
                models::wide_resnet(3, 32, 32, k, depth, widen, dropout)?
            }
            "mlp" => {
                let hidden = params.usize_list("hidden", &[1000, 1000])?;
                let act = params.activation("activation", "relu")?;
                Sequential::mlp(IMAGE, &hidden, k, act)?
            }
            other => return Err(format!("unknown model `{other}`")),
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
        self.store.read(split as usize, idx, x, y);
        Ok(())
    }
}

/// The official training and test sets of `d` in `dir`.
fn read(d: &Dataset, dir: &Path) -> Result<(Images, Images), String> {
    let file = |sub: &str, name: &str| {
        let path = formats::locate(dir, sub, name);
        formats::read_file(&path, d.published).map(|bytes| (bytes, path))
    };
    match d.name {
        "svhn" => {
            let set = |name| -> Result<Images, String> {
                let (bytes, path) = file("", name)?;
                svhn_mat(&bytes, &path)
            };
            Ok((set("train_32x32.mat")?, set("test_32x32.mat")?))
        }
        "cifar100" => {
            let set = |name| -> Result<Images, String> {
                let (bytes, path) = file("cifar-100-binary", name)?;
                cifar_binary(&bytes, &path, 2, 100)
            };
            Ok((set("train.bin")?, set("test.bin")?))
        }
        _ => {
            let set = |name: &str| -> Result<Images, String> {
                let (bytes, path) = file("cifar-10-batches-bin", name)?;
                cifar_binary(&bytes, &path, 1, 10)
            };
            let mut train = Images::default();
            for i in 1..=5 {
                train.append(set(&format!("data_batch_{i}.bin"))?);
            }
            Ok((train, set("test_batch.bin")?))
        }
    }
}

fn truncate(set: &mut Images, n: usize) {
    if n < set.len() {
        set.labels.truncate(n);
        set.pixels.truncate(n * IMAGE);
    }
}

evomal_sdk::export_task!(Cifar);

#[cfg(test)]
mod tests;
