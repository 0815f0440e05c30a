//! The 8x8 digits classification task (scikit-learn's copy of the UCI optical digits test set:
//! 1,797 images, 10 classes) with models `mlp`, `cnn`, `lenet5` (zero-padded to 32x32) and
//! `resnet` (a small ResNet with batch norm, residual blocks and dropout: the quickest real CNN
//! to try a search on).
//!
//! Pixels (0..16) are scaled to [0, 1]. The split is 60/20/20 of one seeded shuffle (ChaCha8,
//! seed 0), the same on every machine.

use evomal_sdk::{
    Builder, Init, KIND_CLASSIFICATION, Model, Params, Sequential, Split, Task, TaskInfo,
};
use evomal_sdk::{data, models};

const PIXELS: usize = 64;
const CLASSES: usize = 10;

struct Digits {
    splits: data::Splits,
}

impl Task for Digits {
    const NAME: &'static str = "digits";

    fn load(_config: &Params) -> Result<Self, String> {
        let rows = data::parse_rows("digits.csv", include_str!("../data/digits.csv"), PIXELS + 1)?;
        Ok(Digits {
            splits: data::shuffled_splits(rows, PIXELS, 16.0, 0),
        })
    }

    fn info(&self) -> TaskInfo {
        TaskInfo {
            kind: KIND_CLASSIFICATION,
            n_outputs: CLASSES as u32,
            target_width: 1,
            input_rank: 3,
            input_shape: [1, 8, 8, 0],
            split_sizes: self.splits.sizes(),
            ..Default::default()
        }
    }

    fn model_names(&self) -> Vec<&'static str> {
        vec!["mlp", "cnn", "lenet5", "resnet"]
    }

    fn create_model(&self, name: &str, params: &Params) -> Result<Box<dyn Model>, String> {
        match name {
            "mlp" => {
                let hidden = params.usize_list("hidden", &[128])?;
                let act = params.activation("activation", "relu")?;
                Ok(Box::new(Sequential::mlp(PIXELS, &hidden, CLASSES, act)?))
            }
            // Two 3x3 convolutions with ReLU and max-pooling, then a dense read-out.
            "cnn" => Ok(Box::new(
                Builder::new(1, 8, 8)
                    .init(Init::HeUniform)
                    .conv(8, 3, 1)
                    .relu()
                    .max_pool(2)
                    .conv(16, 3, 1)
                    .relu()
                    .max_pool(2)
                    .flatten()
                    .init(Init::XavierUniform)
                    .dense(CLASSES)
                    .build()?,
            )),
            // The reference's MNIST model; the first convolution zero-pads the 8x8 images to
            // LeNet-5's 32x32.
            "lenet5" => Ok(Box::new(models::lenet5(1, 8, 8, CLASSES)?)),
            "resnet" => {
                let width = params.integer("width", 8)? as usize;
                let blocks = params.usize_list("blocks", &[1, 1])?;
                let dropout = params.number("dropout", 0.2)? as f32;
                let act = params.activation("activation", "relu")?;
                Ok(Box::new(models::resnet(
                    1, 8, 8, CLASSES, &blocks, width, dropout, act,
                )?))
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

evomal_sdk::export_task!(Digits);
