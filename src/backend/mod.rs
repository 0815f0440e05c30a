//! Backends: functions from the loss IR to executable code. Each one is checked against
//! `expr::interp`, which defines the semantics.

pub mod export;
pub mod jit;
pub mod wgsl;

/// What a kernel computes per element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// (a) the loss.
    Loss,
    /// (b) the loss and `dM/dyhat`.
    LossGrad,
    /// (c) the loss, `dM/dyhat`, `dM/dphi_j` and `d2M/(dyhat dphi_j)`.
    Full,
}
