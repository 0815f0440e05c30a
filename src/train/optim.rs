//! The optimisers live with the model (`evomal_sdk::optim`); the host keeps the schedule.

pub use evomal_sdk::optim::{Optimizer, OptimizerConfig};

/// Multi-step schedule: `lr * gamma^k`, `k` = milestones at or before `step` (0-based).
pub fn lr_at(lr: f32, milestones: &[usize], gamma: f32, step: usize) -> f32 {
    let k = milestones.iter().filter(|&&m| m <= step).count();
    lr * gamma.powi(k as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistep_schedule() {
        assert_eq!(lr_at(1.0, &[10, 20], 0.1, 9), 1.0);
        assert!((lr_at(1.0, &[10, 20], 0.1, 10) - 0.1).abs() < 1e-7);
        assert!((lr_at(1.0, &[10, 20], 0.1, 25) - 0.01).abs() < 1e-7);
    }
}
