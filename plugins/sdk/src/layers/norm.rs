//! Batch normalisation per channel of `[batch][c][hw]` activations (PyTorch's `BatchNorm1d`
//! with `hw = 1`, `BatchNorm2d` otherwise). Training normalises with the batch's mean and
//! biased variance, and moves the running statistics by `MOMENTUM` (the unbiased variance);
//! evaluation normalises with the running statistics. Every derivative below is exact,
//! including through the batch statistics in training.

const EPS: f64 = 1e-5;
const MOMENTUM: f32 = 0.1;

/// What a forward pass keeps for backward and JVP.
#[derive(Default)]
pub(super) struct Saved {
    /// `x_hat = (x - mean) * inv_std`, laid out like the input.
    xhat: Vec<f32>,
    inv_std: Vec<f32>,
    /// Whether the batch statistics were used (their derivatives then count).
    train: bool,
}

#[derive(Clone, Copy)]
pub(super) struct Shape {
    pub batch: usize,
    pub c: usize,
    pub hw: usize,
}

impl Shape {
    /// The planes of channel `ch`: one `hw`-long run per example.
    fn planes(self, ch: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        (0..self.batch).map(move |b| {
            let start = (b * self.c + ch) * self.hw;
            start..start + self.hw
        })
    }

    fn count(self) -> usize {
        self.batch * self.hw
    }

    /// The mean over channel `ch` of `f(index)`, in f64.
    fn mean(self, ch: usize, f: impl Fn(usize) -> f64) -> f64 {
        let sum: f64 = self.planes(ch).flat_map(|r| r.map(&f)).sum();
        sum / self.count() as f64
    }
}

/// Which statistics a forward pass normalises with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Stats {
    /// The running ones (evaluation).
    Running,
    /// The batch's, moving the running ones when `update` (a training pass that counts).
    Batch { update: bool },
}

/// `p` is `gamma` then `beta`; `state` the running mean then the running variance.
pub(super) fn forward(
    p: &[f32],
    state: &mut [f32],
    x: &[f32],
    s: Shape,
    stats: Stats,
    saved: &mut Saved,
    out: &mut [f32],
) {
    let train = stats != Stats::Running;
    let (gamma, beta) = p.split_at(s.c);
    saved.train = train;
    saved.xhat.resize(x.len(), 0.0);
    saved.inv_std.resize(s.c, 0.0);
    let n = s.count() as f64;
    for ch in 0..s.c {
        let (mean, var) = if train {
            let mean = s.mean(ch, |i| x[i] as f64);
            let var = s.mean(ch, |i| (x[i] as f64 - mean).powi(2));
            if stats == (Stats::Batch { update: true }) {
                let (rm, rv) = state.split_at_mut(s.c);
                let unbiased = if n > 1.0 { var * n / (n - 1.0) } else { var };
                rm[ch] = (1.0 - MOMENTUM) * rm[ch] + MOMENTUM * mean as f32;
                rv[ch] = (1.0 - MOMENTUM) * rv[ch] + MOMENTUM * unbiased as f32;
            }
            (mean, var)
        } else {
            (state[ch] as f64, state[s.c + ch] as f64)
        };
        let inv_std = 1.0 / (var + EPS).sqrt();
        saved.inv_std[ch] = inv_std as f32;
        for r in s.planes(ch) {
            for i in r {
                let xh = ((x[i] as f64 - mean) * inv_std) as f32;
                saved.xhat[i] = xh;
                out[i] = gamma[ch] * xh + beta[ch];
            }
        }
    }
}

/// `grad` (gamma, beta) is overwritten; `g_in`, when asked, gets the input gradient.
pub(super) fn backward(
    p: &[f32],
    g: &[f32],
    s: Shape,
    saved: &Saved,
    grad: &mut [f32],
    mut g_in: Option<&mut [f32]>,
) {
    let (dgamma, dbeta) = grad.split_at_mut(s.c);
    let xhat = &saved.xhat;
    for ch in 0..s.c {
        let mean_g = s.mean(ch, |i| g[i] as f64);
        let mean_gx = s.mean(ch, |i| g[i] as f64 * xhat[i] as f64);
        let n = s.count() as f64;
        dbeta[ch] = (mean_g * n) as f32;
        dgamma[ch] = (mean_gx * n) as f32;
        let Some(g_in) = g_in.as_deref_mut() else {
            continue;
        };
        let scale = p[ch] as f64 * saved.inv_std[ch] as f64;
        for r in s.planes(ch) {
            for i in r {
                let gi = g[i] as f64;
                g_in[i] = if saved.train {
                    (scale * (gi - mean_g - xhat[i] as f64 * mean_gx)) as f32
                } else {
                    (scale * gi) as f32
                };
            }
        }
    }
}

/// `t_out = gamma * t_xhat + t_gamma * x_hat + t_beta`, with `t_xhat` through the batch
/// statistics in training.
pub(super) fn jvp(
    p: &[f32],
    tp: &[f32],
    t_in: Option<&[f32]>,
    s: Shape,
    saved: &Saved,
    t_out: &mut [f32],
) {
    let (tgamma, tbeta) = tp.split_at(s.c);
    let xhat = &saved.xhat;
    for ch in 0..s.c {
        let scale = p[ch] as f64 * saved.inv_std[ch] as f64;
        let (mean_t, mean_xt) = match t_in {
            Some(t) if saved.train => (
                s.mean(ch, |i| t[i] as f64),
                s.mean(ch, |i| xhat[i] as f64 * t[i] as f64),
            ),
            _ => (0.0, 0.0),
        };
        for r in s.planes(ch) {
            for i in r {
                let t_norm = t_in.map_or(0.0, |t| {
                    scale * (t[i] as f64 - mean_t - xhat[i] as f64 * mean_xt)
                });
                t_out[i] = (t_norm + tgamma[ch] as f64 * xhat[i] as f64 + tbeta[ch] as f64) as f32;
            }
        }
    }
}
