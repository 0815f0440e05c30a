pub mod backend;
pub mod expr;
pub mod plugin;
