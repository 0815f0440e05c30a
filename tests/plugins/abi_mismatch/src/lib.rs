//! Test fixture: a plugin that claims a future training ABI version.

use std::sync::OnceLock;

use evomal_sdk::abi::{ABI_VERSION, PluginDecl};
use evomal_sdk::export::{Exported, decl};
use evomal_sdk::{Model, Params, Split, Task, TaskInfo};

struct Future;

impl Task for Future {
    const NAME: &'static str = "future";
    fn load(_config: &Params) -> Result<Self, String> {
        Ok(Future)
    }
    fn info(&self) -> TaskInfo {
        TaskInfo::default()
    }
    fn model_names(&self) -> Vec<&'static str> {
        Vec::new()
    }
    fn create_model(&self, _: &str, _: &Params) -> Result<Box<dyn Model>, String> {
        Err("unreachable: the host refuses this plugin".into())
    }
    fn read_batch(&self, _: Split, _: &[u64], _: &mut [f32], _: &mut [f32]) -> Result<(), String> {
        Ok(())
    }
}

impl Exported for Future {
    fn cell() -> &'static OnceLock<(String, Result<Self, String>)> {
        static CELL: OnceLock<(String, Result<Future, String>)> = OnceLock::new();
        &CELL
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn evomal_plugin_entry() -> *const PluginDecl {
    static DECL: PluginDecl = {
        let mut d = decl::<Future>();
        d.abi_version = ABI_VERSION + 1;
        d
    };
    &DECL
}
