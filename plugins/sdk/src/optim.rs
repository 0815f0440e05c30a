//! Optimisers over a flat parameter vector, with PyTorch's update rules (no dampening). The
//! model instance owns one; the host passes the learning rate of every step, so schedules stay
//! with the host.

use crate::abi::{OPTIMIZER_ADAM, OPTIMIZER_SGD, OptimizerDesc};
use crate::layers::{for_parts2, for_parts3};

/// Which optimiser, with its settings.
#[derive(Clone, Debug, PartialEq)]
pub enum OptimizerConfig {
    /// SGD: `g = grad + wd * p`; with momentum `b = m b + g` (`b = g` on the first step), then
    /// `g = g + m b` (Nesterov) or `g = b`; `p -= lr g`.
    Sgd {
        momentum: f32,
        nesterov: bool,
        weight_decay: f32,
    },
    /// Adam (Kingma & Ba) with bias correction; weight decay added to the gradient.
    Adam {
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    /// The settings as the ABI carries them.
    pub fn to_desc(&self) -> OptimizerDesc {
        match *self {
            OptimizerConfig::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => OptimizerDesc {
                kind: OPTIMIZER_SGD,
                nesterov: nesterov as u32,
                momentum,
                weight_decay,
                ..OptimizerDesc::default()
            },
            OptimizerConfig::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => OptimizerDesc {
                kind: OPTIMIZER_ADAM,
                beta1,
                beta2,
                eps,
                weight_decay,
                ..OptimizerDesc::default()
            },
        }
    }

    /// The settings the ABI carried, or why they name no optimiser.
    pub fn from_desc(d: &OptimizerDesc) -> Result<OptimizerConfig, String> {
        match d.kind {
            OPTIMIZER_SGD => Ok(OptimizerConfig::Sgd {
                momentum: d.momentum,
                nesterov: d.nesterov != 0,
                weight_decay: d.weight_decay,
            }),
            OPTIMIZER_ADAM => Ok(OptimizerConfig::Adam {
                beta1: d.beta1,
                beta2: d.beta2,
                eps: d.eps,
                weight_decay: d.weight_decay,
            }),
            k => Err(format!("optimizer kind {k} does not exist (0 SGD, 1 Adam)")),
        }
    }
}

/// An optimiser's state for one parameter vector.
pub struct Optimizer {
    config: OptimizerConfig,
    /// Momentum buffer (SGD) or first moment (Adam).
    m: Vec<f32>,
    /// Second moment (Adam).
    v: Vec<f32>,
    t: u32,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, n_params: usize) -> Optimizer {
        let v = match config {
            OptimizerConfig::Adam { .. } => vec![0.0; n_params],
            OptimizerConfig::Sgd { .. } => Vec::new(),
        };
        Optimizer {
            config,
            m: vec![0.0; n_params],
            v,
            t: 0,
        }
    }

    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Forgets every step taken (a fresh start with the same settings).
    pub fn reset(&mut self) {
        self.m.fill(0.0);
        self.v.fill(0.0);
        self.t = 0;
    }

    /// Floats of [`Optimizer::save`]: the moments and the step count.
    pub fn state_len(&self) -> usize {
        self.m.len() + self.v.len() + 1
    }

    /// Appends the optimiser's state to `out` (the step count as the bits of an f32).
    pub fn save(&self, out: &mut Vec<f32>) {
        out.extend_from_slice(&self.m);
        out.extend_from_slice(&self.v);
        out.push(f32::from_bits(self.t));
    }

    /// Restores what [`Optimizer::save`] wrote; `data` holds exactly [`Self::state_len`] floats.
    pub fn load(&mut self, data: &[f32]) {
        let (m, rest) = data.split_at(self.m.len());
        let (v, t) = rest.split_at(self.v.len());
        self.m.copy_from_slice(m);
        self.v.copy_from_slice(v);
        self.t = t[0].to_bits();
    }

    /// One update of `params` from `grad` with learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32], lr: f32) {
        self.t += 1;
        match self.config {
            OptimizerConfig::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                let first = self.t == 1;
                for_parts2(params, &mut self.m, 1, |at, params, m| {
                    for ((p, &g), b) in params.iter_mut().zip(&grad[at..]).zip(m) {
                        let g = g + weight_decay * *p;
                        let d = if momentum == 0.0 {
                            g
                        } else {
                            *b = if first { g } else { momentum * *b + g };
                            if nesterov { g + momentum * *b } else { *b }
                        };
                        *p -= lr * d;
                    }
                });
            }
            OptimizerConfig::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let c1 = 1.0 - beta1.powi(self.t as i32);
                let c2 = 1.0 - beta2.powi(self.t as i32);
                for_parts3(params, &mut self.m, &mut self.v, |at, params, m, v| {
                    let moments = m.iter_mut().zip(v);
                    for ((p, &g), (m, v)) in params.iter_mut().zip(&grad[at..]).zip(moments) {
                        let g = g + weight_decay * *p;
                        *m = beta1 * *m + (1.0 - beta1) * g;
                        *v = beta2 * *v + (1.0 - beta2) * g * g;
                        *p -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_nesterov_matches_pytorch_by_hand() {
        // p=1, grads 0.5 then 0.25, lr 0.1, momentum 0.9, nesterov, wd 0.01.
        let cfg = OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.01,
        };
        let mut opt = Optimizer::new(cfg, 1);
        let mut p = [1.0f32];
        opt.step(&mut p, &[0.5], 0.1);
        // g = 0.51, b = 0.51, d = 0.51 + 0.459 = 0.969
        assert!((p[0] - (1.0 - 0.0969)).abs() < 1e-6, "{}", p[0]);
        let p1 = p[0];
        opt.step(&mut p, &[0.25], 0.1);
        let g = 0.25 + 0.01 * p1;
        let b = 0.9 * 0.51 + g;
        assert!((p[0] - (p1 - 0.1 * (g + 0.9 * b))).abs() < 1e-6);
    }

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let cfg = OptimizerConfig::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let mut opt = Optimizer::new(cfg, 2);
        let mut p = [0.0f32, 0.0];
        opt.step(&mut p, &[3.0, -0.2], 0.01);
        assert!(
            (p[0] + 0.01).abs() < 1e-6 && (p[1] - 0.01).abs() < 1e-6,
            "{p:?}"
        );
    }
}
