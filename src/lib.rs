pub mod backend;
pub mod expr;
pub mod gp;
pub mod manifest;
pub mod plot;
pub mod plugin;
pub mod search;
pub mod train;
