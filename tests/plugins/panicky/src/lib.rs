//! Test fixture: a plugin whose model panics in `forward`.

use evomal_sdk::{Model, Params, Split, Task, TaskInfo};

struct Panicky;

struct Boom;

impl Model for Boom {
    fn n_params(&self) -> usize {
        1
    }
    fn input_len(&self) -> usize {
        1
    }
    fn n_outputs(&self) -> usize {
        1
    }
    fn init(&self, _: u64, params: &mut [f32]) {
        params.fill(0.0);
    }
    fn forward(&mut self, _: &[f32], _: &[f32], _: usize, _: &mut [f32]) -> Result<(), String> {
        panic!("forward exploded")
    }
    fn backward(&mut self, _: &[f32], _: &[f32], _: &mut [f32]) -> Result<(), String> {
        Ok(())
    }
}

impl Task for Panicky {
    const NAME: &'static str = "panicky";
    fn load() -> Result<Self, String> {
        Ok(Panicky)
    }
    fn info(&self) -> TaskInfo {
        TaskInfo {
            kind: evomal_sdk::KIND_REGRESSION,
            n_outputs: 1,
            target_width: 1,
            input_rank: 1,
            input_shape: [1, 0, 0, 0],
            split_sizes: [1, 1, 1],
        }
    }
    fn model_names(&self) -> Vec<&'static str> {
        vec!["boom"]
    }
    fn create_model(&self, _: &str, _: &Params) -> Result<Box<dyn Model>, String> {
        Ok(Box::new(Boom))
    }
    fn read_batch(&self, _: Split, _: &[u64], x: &mut [f32], y: &mut [f32]) -> Result<(), String> {
        x.fill(1.0);
        y.fill(1.0);
        Ok(())
    }
}

evomal_sdk::export_task!(Panicky);
