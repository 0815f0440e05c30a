//! Batch normalisation per channel of `[batch][c][hw]` activations (PyTorch's `BatchNorm1d`
//! with `hw = 1`, `BatchNorm2d` otherwise). Training normalises with the batch's mean and
//! biased variance, and moves the running statistics by `MOMENTUM` (the unbiased variance);
//! evaluation normalises with the running statistics. Every derivative below is exact,
//! including through the batch statistics in training.

use super::par;

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

    /// The mean over channel `ch` of `f(index)`, in f64 (eight running sums per plane, so the
    /// additions do not wait on each other).
    fn mean(self, ch: usize, f: impl Fn(usize) -> f64) -> f64 {
        let mut sum = 0.0;
        for r in self.planes(ch) {
            let mut lanes = [0.0f64; 8];
            let (start, end) = (r.start, r.end);
            let whole = start + (end - start) / 8 * 8;
            for i in (start..whole).step_by(8) {
                for (j, lane) in lanes.iter_mut().enumerate() {
                    *lane += f(i + j);
                }
            }
            sum += lanes.iter().sum::<f64>() + (whole..end).map(&f).sum::<f64>();
        }
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
    let n = s.count() as f64;
    let moments: Vec<(f64, f64)> = if train {
        par::map_collect(s.c, 2 * x.len(), |ch| {
            let mean = s.mean(ch, |i| x[i] as f64);
            (mean, s.mean(ch, |i| (x[i] as f64 - mean).powi(2)))
        })
    } else {
        (0..s.c)
            .map(|ch| (state[ch] as f64, state[s.c + ch] as f64))
            .collect()
    };
    if stats == (Stats::Batch { update: true }) {
        let (rm, rv) = state.split_at_mut(s.c);
        for (ch, &(mean, var)) in moments.iter().enumerate() {
            let unbiased = if n > 1.0 { var * n / (n - 1.0) } else { var };
            rm[ch] = (1.0 - MOMENTUM) * rm[ch] + MOMENTUM * mean as f32;
            rv[ch] = (1.0 - MOMENTUM) * rv[ch] + MOMENTUM * unbiased as f32;
        }
    }
    let inv_std: Vec<f64> = moments
        .iter()
        .map(|&(_, var)| 1.0 / (var + EPS).sqrt())
        .collect();
    saved.inv_std.clear();
    saved.inv_std.extend(inv_std.iter().map(|&v| v as f32));
    par::for_parts2(out, &mut saved.xhat, s.c * s.hw, |first, out, xhat| {
        let planes = out.chunks_exact_mut(s.hw).zip(xhat.chunks_exact_mut(s.hw));
        for (k, (out, xhat)) in planes.enumerate() {
            let (ch, x) = (k % s.c, &x[(first * s.c + k) * s.hw..][..s.hw]);
            let (mean, inv_std) = (moments[ch].0, inv_std[ch]);
            for ((o, xh), &x) in out.iter_mut().zip(xhat).zip(x) {
                *xh = ((x as f64 - mean) * inv_std) as f32;
                *o = gamma[ch] * *xh + beta[ch];
            }
        }
    });
}

/// `grad` (gamma, beta) is overwritten; `g_in`, when asked, gets the input gradient.
pub(super) fn backward(
    p: &[f32],
    g: &[f32],
    s: Shape,
    saved: &Saved,
    grad: &mut [f32],
    g_in: Option<&mut [f32]>,
) {
    let (dgamma, dbeta) = grad.split_at_mut(s.c);
    let xhat = &saved.xhat;
    let means: Vec<(f64, f64)> = par::map_collect(s.c, 2 * g.len(), |ch| {
        (
            s.mean(ch, |i| g[i] as f64),
            s.mean(ch, |i| g[i] as f64 * xhat[i] as f64),
        )
    });
    let n = s.count() as f64;
    for (ch, &(mean_g, mean_gx)) in means.iter().enumerate() {
        dbeta[ch] = (mean_g * n) as f32;
        dgamma[ch] = (mean_gx * n) as f32;
    }
    let Some(g_in) = g_in else {
        return;
    };
    par::for_parts(g_in, s.c * s.hw, |first, part| {
        for (k, plane) in part.chunks_exact_mut(s.hw).enumerate() {
            let (ch, at) = (k % s.c, (first * s.c + k) * s.hw);
            let (g, xhat) = (&g[at..at + s.hw], &xhat[at..at + s.hw]);
            let scale = p[ch] as f64 * saved.inv_std[ch] as f64;
            let (mean_g, mean_gx) = means[ch];
            for ((gi_out, &gi), &xh) in plane.iter_mut().zip(g).zip(xhat) {
                let gi = gi as f64;
                *gi_out = if saved.train {
                    (scale * (gi - mean_g - xh as f64 * mean_gx)) as f32
                } else {
                    (scale * gi) as f32
                };
            }
        }
    });
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
    let means: Vec<(f64, f64)> = match t_in {
        Some(t) if saved.train => par::map_collect(s.c, 2 * t.len(), |ch| {
            (
                s.mean(ch, |i| t[i] as f64),
                s.mean(ch, |i| xhat[i] as f64 * t[i] as f64),
            )
        }),
        _ => vec![(0.0, 0.0); s.c],
    };
    par::for_parts(t_out, s.c * s.hw, |first, part| {
        for (k, plane) in part.chunks_exact_mut(s.hw).enumerate() {
            let (ch, at) = (k % s.c, (first * s.c + k) * s.hw);
            let scale = p[ch] as f64 * saved.inv_std[ch] as f64;
            let (mean_t, mean_xt) = means[ch];
            for (j, t_o) in plane.iter_mut().enumerate() {
                let i = at + j;
                let t_norm = t_in.map_or(0.0, |t| {
                    scale * (t[i] as f64 - mean_t - xhat[i] as f64 * mean_xt)
                });
                *t_o = (t_norm + tgamma[ch] as f64 * xhat[i] as f64 + tbeta[ch] as f64) as f32;
            }
        }
    });
}
