pub mod backend;
pub mod expr;
