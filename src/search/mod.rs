//! The EvoMAL search: the filters that screen candidates (`filters`) and the local search that
//! tunes a candidate's weights (`local`). The generation loop, fitness and meta-testing come
//! here as they are built.

pub mod filters;
pub mod local;
pub mod run;
