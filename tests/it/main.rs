//! The one integration-test binary (see ARCHITECTURE.md): each module is one area.

mod backends_agree;
mod canonical;
mod cli;
mod csv;
mod derivatives;
mod export;
mod filters;
mod fuzz;
mod gpu;
mod gpu_loss;
mod gpu_meta;
mod hardening;
mod images;
mod local_search;
mod methods;
mod plugins;
mod readme_snippet;
mod run;
mod shaders;
mod strategies;
mod text;
mod train;

/// A new directory under the system's temporary one, named `evomal-NAME-…`: it goes when the
/// value is dropped, also when the test fails, so a test run leaves nothing behind.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("evomal-{name}-"))
        .tempdir()
        .expect("a temporary directory")
}
