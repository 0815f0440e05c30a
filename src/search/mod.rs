//! The EvoMAL search: the local search that tunes a candidate's weights (`local`). The GP loop,
//! filters and fitness come here as they are built.

pub mod local;
