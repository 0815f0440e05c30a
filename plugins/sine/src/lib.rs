//! Synthetic sinusoid regression, the few-shot benchmark of Finn et al. (2017): one task is
//! `y = A sin(x - phi)` with amplitude `A ~ U(0.1, 5)` and phase `phi ~ U(0, pi)` drawn from
//! `[task.data] task_seed`, and inputs `x ~ U(-5, 5)`. Model `mlp` (default 40-40, ReLU).
//!
//! Settings (`[task.data]`): `task_seed` (default 0) picks the sinusoid; `n_train`, `n_valid`,
//! `n_test` (defaults 1000 / 250 / 250) the split sizes; `noise` (default 0) the standard
//! deviation of Gaussian noise added to training and validation targets.

use evomal_sdk::data;
use evomal_sdk::{KIND_REGRESSION, Layer, Model, Params, Sequential, Split, Task, TaskInfo};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Sine {
    splits: data::Splits,
}

impl Task for Sine {
    const NAME: &'static str = "sine";

    fn load(config: &Params) -> Result<Self, String> {
        let task_seed = config.integer("task_seed", 0)?;
        let sizes = [
            config.integer("n_train", 1000)?,
            config.integer("n_valid", 250)?,
            config.integer("n_test", 250)?,
        ];
        let noise = config.number("noise", 0.0)?;
        if sizes.contains(&0) {
            return Err("sine: split sizes must be at least 1".into());
        }
        let mut rng = ChaCha8Rng::seed_from_u64(task_seed);
        let amplitude = rng.random_range(0.1..5.0f64);
        let phase = rng.random_range(0.0..std::f64::consts::PI);
        let mut split = |n: u64, noisy: bool| {
            let x: Vec<f32> = (0..n).map(|_| rng.random_range(-5.0..5.0f32)).collect();
            let y = x
                .iter()
                .map(|&x| {
                    let clean = amplitude * (x as f64 - phase).sin();
                    // Box-Muller from two uniforms keeps the dependency list to `rand`.
                    let eps = if noisy && noise > 0.0 {
                        let (u1, u2) = (
                            rng.random_range(f64::EPSILON..1.0),
                            rng.random_range(0.0..1.0),
                        );
                        noise * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
                    } else {
                        0.0
                    };
                    (clean + eps) as f32
                })
                .collect();
            (x, y)
        };
        let parts = [
            split(sizes[0], true),
            split(sizes[1], true),
            split(sizes[2], false),
        ];
        Ok(Sine {
            splits: data::Splits { width: 1, parts },
        })
    }

    fn info(&self) -> TaskInfo {
        TaskInfo {
            kind: KIND_REGRESSION,
            n_outputs: 1,
            target_width: 1,
            input_rank: 1,
            input_shape: [1, 0, 0, 0],
            split_sizes: self.splits.sizes(),
            ..Default::default()
        }
    }

    fn model_names(&self) -> Vec<&'static str> {
        vec!["mlp"]
    }

    fn create_model(&self, name: &str, params: &Params) -> Result<Box<dyn Model>, String> {
        match name {
            "mlp" => {
                let hidden = params.usize_list("hidden", &[40, 40])?;
                Ok(Box::new(Sequential::mlp(1, &hidden, 1, Layer::Relu)?))
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

evomal_sdk::export_task!(Sine);
