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
