//! Backends: functions from the loss IR to executable code. Each one is checked against
//! `expr::interp`, which defines the semantics.

pub mod jit;
