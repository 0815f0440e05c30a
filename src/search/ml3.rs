//! ML3 (Bechtle et al. 2021), the neural baseline of METHOD.md §8: the loss is a small network
//! `2 → 50 → 50 → 1` (ReLU hidden layers, Softplus output, no biases) applied to `(yhat, y)` of
//! every output, summed over outputs and averaged over the batch like any element loss. Its
//! weights are trained by the same exact one-step unrolled differentiation as EvoMAL's local
//! search; what that needs of the network is [`LossNet::meta_contract`]: for per-element
//! coefficients `w`, the gradient of `sum_e w_e dM_e/dyhat` with respect to every weight — one
//! forward pass with a tangent in `yhat`, then one reverse pass over that directional
//! derivative, never a per-weight array per element.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::backend::jit::JitError;
use crate::plugin::{JvpMethod, PluginModel};
use crate::search::local::{LocalSearchConfig, LocalSearchError, MetaGradient, MetaWalk};
use crate::train::Task;
use crate::train::objective::ElementLoss;
use evomal_sdk::layers::standard_normal;

/// What [`ml3_search`] leaves.
#[derive(Clone, Debug)]
pub struct Ml3Result {
    pub net: LossNet,
    /// Validation task loss after the unrolled step, per meta step.
    pub trace: Vec<f32>,
    /// A meta step went non-finite; the last finite weights are kept.
    pub diverged: bool,
    pub used_fd_jvp: bool,
}

/// ML3's meta-training: Kaiming-normal weights from `seed`, then `cfg.meta_steps` meta-Adam
/// steps on the exact one-step meta-gradient, each from a fresh base-model initialisation —
/// the local search of EvoMAL, with the network's weights in place of a tree's.
pub fn ml3_search(
    task: &Task<'_>,
    model: &mut PluginModel,
    cfg: &LocalSearchConfig,
    seed: u64,
    on_step: &mut dyn FnMut(usize),
) -> Result<Ml3Result, LocalSearchError> {
    let mut meta = MetaGradient::for_network(task, cfg.clone())?;
    let (n_train, n_valid) = (task.split_size(0), task.split_size(1));
    let mut walk = MetaWalk::with_init(n_train, n_valid, LossNet::kaiming_weights, cfg, seed);
    let mut used_fd_jvp = false;
    let mut done = 0;
    while let Some(step) = walk.next_step() {
        let (val, grad, method) =
            meta.compute(model, step.phi, step.init_seed, step.train, step.valid)?;
        used_fd_jvp |= method != JvpMethod::Exact;
        walk.take(val, &grad);
        done += 1;
        on_step(done);
    }
    let (weights, trace, diverged) = walk.into_parts();
    Ok(Ml3Result {
        net: LossNet { weights },
        trace,
        diverged,
        used_fd_jvp,
    })
}

/// Hidden units per layer.
pub const HIDDEN: usize = 50;
/// Weights: `W1` (50 × 2), `W2` (50 × 50), `w3` (50), row-major, in that order.
pub const N_WEIGHTS: usize = HIDDEN * 2 + HIDDEN * HIDDEN + HIDDEN;

/// An ML3 loss network: its weights, flat (see [`N_WEIGHTS`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossNet {
    pub weights: Vec<f32>,
}

/// The file format of a saved network: `{"ml3": {"weights": [...]}}`.
#[derive(Serialize, Deserialize)]
struct Saved {
    ml3: LossNet,
}

/// Problems reading a saved network.
#[derive(Debug, thiserror::Error)]
pub enum Ml3Error {
    #[error("not an ML3 loss network: {0}")]
    Format(String),
    #[error("an ML3 loss network has {N_WEIGHTS} weights, this one has {0}")]
    Size(usize),
    #[error("weight {0} of the ML3 loss network is not a finite number")]
    NotFinite(usize),
}

/// One element's forward pass with the tangent in `yhat`, kept for the reverse pass.
struct Trace {
    h1: [f32; HIDDEN],
    dh1: [f32; HIDDEN],
    h2: [f32; HIDDEN],
    dh2: [f32; HIDDEN],
    /// The output's pre-activation and its tangent.
    a3: f32,
    da3: f32,
}

fn softplus(x: f32) -> f32 {
    // ln(1 + e^x) without overflow: PyTorch's threshold of 20.
    if x > 20.0 { x } else { x.exp().ln_1p() }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl LossNet {
    /// Kaiming-normal weights (PyTorch's `kaiming_normal_`: std `sqrt(2 / fan_in)`) from `seed`.
    pub fn kaiming(seed: u64) -> LossNet {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        LossNet {
            weights: Self::kaiming_weights(&mut rng),
        }
    }

    /// Kaiming-normal weights drawn from `rng`.
    pub fn kaiming_weights(rng: &mut ChaCha8Rng) -> Vec<f32> {
        let layers = [(HIDDEN * 2, 2), (HIDDEN * HIDDEN, HIDDEN), (HIDDEN, HIDDEN)];
        let mut w = Vec::with_capacity(N_WEIGHTS);
        for (n, fan_in) in layers {
            let std = (2.0 / fan_in as f64).sqrt();
            w.extend((0..n).map(|_| (std * standard_normal(rng)) as f32));
        }
        w
    }

    fn split(w: &[f32]) -> (&[f32], &[f32], &[f32]) {
        let (w1, rest) = w.split_at(HIDDEN * 2);
        let (w2, w3) = rest.split_at(HIDDEN * HIDDEN);
        (w1, w2, w3)
    }

    fn trace(w: &[f32], y: f32, yhat: f32) -> Trace {
        let (w1, w2, w3) = Self::split(w);
        let mut t = Trace {
            h1: [0.0; HIDDEN],
            dh1: [0.0; HIDDEN],
            h2: [0.0; HIDDEN],
            dh2: [0.0; HIDDEN],
            a3: 0.0,
            da3: 0.0,
        };
        for i in 0..HIDDEN {
            let z = w1[2 * i] * yhat + w1[2 * i + 1] * y;
            if z > 0.0 {
                t.h1[i] = z;
                t.dh1[i] = w1[2 * i];
            }
        }
        for i in 0..HIDDEN {
            let row = &w2[i * HIDDEN..(i + 1) * HIDDEN];
            let z: f32 = row.iter().zip(&t.h1).map(|(a, b)| a * b).sum();
            if z > 0.0 {
                t.h2[i] = z;
                t.dh2[i] = row.iter().zip(&t.dh1).map(|(a, b)| a * b).sum();
            }
        }
        t.a3 = w3.iter().zip(&t.h2).map(|(a, b)| a * b).sum();
        t.da3 = w3.iter().zip(&t.dh2).map(|(a, b)| a * b).sum();
        t
    }

    /// `M(y, yhat)` and `dM/dyhat` for one element under weights `w`.
    pub fn eval(w: &[f32], y: f32, yhat: f32) -> (f32, f32) {
        let t = Self::trace(w, y, yhat);
        (softplus(t.a3), sigmoid(t.a3) * t.da3)
    }

    /// `M` and `dM/dyhat` for every element under weights `w`.
    pub fn loss_grad_under(w: &[f32], y: &[f32], yhat: &[f32], loss: &mut [f32], grad: &mut [f32]) {
        for (((&yv, &pv), l), g) in y.iter().zip(yhat).zip(loss).zip(grad) {
            (*l, *g) = Self::eval(w, yv, pv);
        }
    }

    /// `out += d/dw sum_e coef_e dM_e/dyhat` over elements `(y_e, yhat_e)` under weights `w`
    /// (ReLU's second derivative is zero almost everywhere, as autograd takes it).
    pub fn meta_contract(w: &[f32], y: &[f32], yhat: &[f32], coef: &[f32], out: &mut [f64]) {
        let (_, w2, w3) = Self::split(w);
        let (g1, rest) = out.split_at_mut(HIDDEN * 2);
        let (g2, g3) = rest.split_at_mut(HIDDEN * HIDDEN);
        let mut g_z2 = [0.0f32; HIDDEN];
        let mut g_dz2 = [0.0f32; HIDDEN];
        for ((&yv, &pv), &c) in y.iter().zip(yhat).zip(coef) {
            if c == 0.0 {
                continue;
            }
            let t = Self::trace(w, yv, pv);
            // s = sigmoid(a3) da3; F = c s.
            let sig = sigmoid(t.a3);
            let g_da3 = c * sig;
            let g_a3 = c * sig * (1.0 - sig) * t.da3;
            for i in 0..HIDDEN {
                g3[i] += (g_da3 * t.dh2[i] + g_a3 * t.h2[i]) as f64;
                let active = t.h2[i] > 0.0;
                g_dz2[i] = if active { g_da3 * w3[i] } else { 0.0 };
                g_z2[i] = if active { g_a3 * w3[i] } else { 0.0 };
            }
            // z2 = W2 h1, dz2 = W2 dh1.
            let mut g_h1 = [0.0f32; HIDDEN];
            let mut g_dh1 = [0.0f32; HIDDEN];
            for i in 0..HIDDEN {
                let (a, b) = (g_z2[i], g_dz2[i]);
                if a == 0.0 && b == 0.0 {
                    continue;
                }
                let row = &w2[i * HIDDEN..(i + 1) * HIDDEN];
                let grow = &mut g2[i * HIDDEN..(i + 1) * HIDDEN];
                for j in 0..HIDDEN {
                    grow[j] += (a * t.h1[j] + b * t.dh1[j]) as f64;
                    g_h1[j] += a * row[j];
                    g_dh1[j] += b * row[j];
                }
            }
            // h1 = relu(W1 x), dh1 = relu'(.) W1[:, 0]; x = (yhat, y).
            for i in 0..HIDDEN {
                if t.h1[i] > 0.0 {
                    g1[2 * i] += (g_h1[i] * pv + g_dh1[i]) as f64;
                    g1[2 * i + 1] += (g_h1[i] * yv) as f64;
                }
            }
        }
    }

    /// The network as saved by `evomal run` (`best_loss.ml3.json`).
    pub fn to_json(&self) -> String {
        let saved = Saved { ml3: self.clone() };
        serde_json::to_string(&saved).expect("a network serialises")
    }

    /// Reads a saved network, checking its size and values.
    pub fn from_json(text: &str) -> Result<LossNet, Ml3Error> {
        let saved: Saved =
            serde_json::from_str(text).map_err(|e| Ml3Error::Format(e.to_string()))?;
        let net = saved.ml3;
        if net.weights.len() != N_WEIGHTS {
            return Err(Ml3Error::Size(net.weights.len()));
        }
        if let Some(i) = net.weights.iter().position(|w| !w.is_finite()) {
            return Err(Ml3Error::NotFinite(i));
        }
        Ok(net)
    }

    /// Whether `text` looks like a saved network rather than an expression.
    pub fn is_saved_network(text: &str) -> bool {
        text.trim_start().starts_with('{')
    }
}

impl ElementLoss for LossNet {
    fn loss_grad(
        &self,
        y: &[f32],
        yhat: &[f32],
        loss: &mut [f32],
        grad: &mut [f32],
    ) -> Result<(), JitError> {
        Self::loss_grad_under(&self.weights, y, yhat, loss, grad);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> LossNet {
        LossNet::kaiming(7)
    }

    #[test]
    fn kaiming_init_has_the_layer_scales() {
        let w = net().weights;
        assert_eq!(w.len(), N_WEIGHTS);
        let (w1, w2, w3) = LossNet::split(&w);
        let std =
            |v: &[f32]| (v.iter().map(|x| (x * x) as f64).sum::<f64>() / v.len() as f64).sqrt();
        assert!((std(w1) - 1.0).abs() < 0.25, "{}", std(w1));
        assert!((std(w2) - 0.2).abs() < 0.02, "{}", std(w2));
        assert!((std(w3) - 0.2).abs() < 0.06, "{}", std(w3));
        assert_eq!(LossNet::kaiming(7), net());
        assert_ne!(LossNet::kaiming(8), net());
    }

    #[test]
    fn loss_is_a_softplus_and_its_yhat_derivative_matches_finite_differences() {
        let w = net().weights;
        for &(y, p) in &[(0.3f32, -0.7f32), (1.0, 0.2), (-1.5, 2.0), (0.0, 0.9)] {
            let (m, d) = LossNet::eval(&w, y, p);
            assert!(m > 0.0);
            let h = 1e-3;
            let fd = (LossNet::eval(&w, y, p + h).0 - LossNet::eval(&w, y, p - h).0) / (2.0 * h);
            assert!((d - fd).abs() < 1e-2 * (1.0 + fd.abs()), "{d} vs {fd}");
        }
    }

    /// The contraction against central differences of `sum_e c_e dM_e/dyhat` in each weight.
    /// `dM/dyhat` jumps where a hidden ReLU switches: a weight whose differences at `h` and
    /// `h/4` disagree straddles a switch and is skipped; most must remain.
    #[test]
    fn meta_contraction_matches_finite_differences() {
        let w = net().weights;
        let y = [0.3f32, 1.0, -0.4, 0.0, 1.0];
        let p = [-0.7f32, 0.2, 0.5, 0.9, 0.05];
        let c = [0.5f32, -1.0, 0.25, 2.0, 0.0];
        let mut g = vec![0.0f64; N_WEIGHTS];
        LossNet::meta_contract(&w, &y, &p, &c, &mut g);
        let f = |w: &[f32]| -> f64 {
            y.iter()
                .zip(&p)
                .zip(&c)
                .map(|((&y, &p), &c)| c as f64 * LossNet::eval(w, y, p).1 as f64)
                .sum()
        };
        let fd = |j: usize, h: f32| {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[j] += h;
            wm[j] -= h;
            (f(&wp) - f(&wm)) / (2.0 * h as f64)
        };
        let picks: Vec<usize> = (0..N_WEIGHTS).step_by(37).chain([0, 1, 99]).collect();
        let mut checked = 0;
        for &j in &picks {
            let (wide, narrow) = (fd(j, 4e-3), fd(j, 1e-3));
            if (wide - narrow).abs() > 1e-3 + 0.05 * narrow.abs() {
                continue;
            }
            assert!(
                (g[j] - narrow).abs() < 2e-3 * (1.0 + narrow.abs()),
                "weight {j}: {} vs {narrow}",
                g[j]
            );
            checked += 1;
        }
        assert!(
            checked * 4 >= picks.len() * 3,
            "{checked} of {}",
            picks.len()
        );
        assert!(
            g.iter().any(|&v| v.abs() > 1e-3),
            "the contraction is not all zero"
        );
    }

    #[test]
    fn saved_networks_round_trip_and_bad_ones_are_refused() {
        let n = net();
        assert_eq!(LossNet::from_json(&n.to_json()).unwrap(), n);
        assert!(LossNet::is_saved_network(&n.to_json()));
        let short = r#"{"ml3": {"weights": [1.0, 2.0]}}"#;
        assert!(matches!(LossNet::from_json(short), Err(Ml3Error::Size(2))));
        assert!(matches!(
            LossNet::from_json("{\"ml3\": 3}"),
            Err(Ml3Error::Format(_))
        ));
    }
}
