//! evomal meta-learns loss functions with EvoMAL: genetic programming over symbolic losses,
//! whose weights are tuned by differentiating through a training step. ARCHITECTURE.md is the
//! map; the modules, in reading order:
//!
//! - [`expr`] — the loss IR (`LossExpr`), its text format, the reference interpreter, the
//!   derivatives, the canonical form, random trees.
//! - [`backend`] — code from the IR: the Cranelift JIT kernels.
//! - [`plugin`] — task plugins (data + model) behind the versioned training ABI.
//! - [`train`] — training a plugin's model with a compiled loss; metrics; meta-testing.
//! - [`gp`] — the genetic operators.
//! - [`search`] — filters, the local search, the generation loop.
//! - [`manifest`] — experiment manifests (TOML).
//! - [`plot`] — SVG plots of a run.

pub mod backend;
pub mod expr;
pub mod gp;
pub mod gpu;
pub mod manifest;
pub mod plot;
pub mod plugin;
pub mod search;
pub mod train;
