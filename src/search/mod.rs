//! The EvoMAL search: the generation loop (`run`), the filters that screen candidates
//! (`filters`), the local search that tunes a candidate's weights (`local`), and the robust
//! selection of the loss to keep (`select`).

pub mod filters;
pub mod learned;
pub mod local;
pub mod ml3;
pub mod run;
pub mod select;
pub mod taylorglo;
