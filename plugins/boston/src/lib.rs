//! The Boston housing regression task (506 x 13) with models `linear`
//! and `mlp`, on the reference 60/20/20 split vendored in `data/`.

use evomal_sdk::data::Tabular;
use evomal_sdk::{Model, Params, Split, Task, TaskInfo};

struct Boston(Tabular);

impl Task for Boston {
    const NAME: &'static str = "boston";

    fn load(_config: &Params) -> Result<Self, String> {
        Tabular::from_csvs(
            "boston",
            include_str!("../data/train.csv"),
            include_str!("../data/valid.csv"),
            include_str!("../data/test.csv"),
        )
        .map(Boston)
    }

    fn info(&self) -> TaskInfo {
        self.0.info()
    }

    fn model_names(&self) -> Vec<&'static str> {
        vec!["linear", "mlp"]
    }

    fn create_model(&self, name: &str, params: &Params) -> Result<Box<dyn Model>, String> {
        self.0.create_model(name, params)
    }

    fn read_batch(
        &self,
        split: Split,
        idx: &[u64],
        x: &mut [f32],
        y: &mut [f32],
    ) -> Result<(), String> {
        self.0.read_batch(split, idx, x, y);
        Ok(())
    }
}

evomal_sdk::export_task!(Boston);
