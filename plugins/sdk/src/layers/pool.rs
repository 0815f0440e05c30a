//! Pooling over `[batch][c][h][w]` activations: non-overlapping max and average windows, and
//! the global average of each channel.

use super::Geom;

/// Visits every pooling window: `f(output index, input indices of the window)`.
fn windows(
    batch: usize,
    g: Geom,
    size: usize,
    mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>),
) {
    let (ho, wo) = (g.h / size, g.w / size);
    let mut o = 0;
    for plane in 0..batch * g.c {
        for oi in 0..ho {
            for oj in 0..wo {
                let base = plane * g.h * g.w;
                let mut it = (0..size * size)
                    .map(|t| base + (oi * size + t / size) * g.w + oj * size + t % size);
                f(o, &mut it);
                o += 1;
            }
        }
    }
}

/// Max over each window (the first maximum on ties); remembers where it was.
pub(super) fn max_pool(
    x: &[f32],
    batch: usize,
    g: Geom,
    size: usize,
    argmax: &mut Vec<u32>,
    out: &mut [f32],
) {
    argmax.resize(out.len(), 0);
    windows(batch, g, size, |o, idx| {
        let mut best = usize::MAX;
        for i in idx {
            if best == usize::MAX || x[i] > x[best] {
                best = i;
            }
        }
        out[o] = x[best];
        argmax[o] = best as u32;
    });
}

pub(super) fn max_pool_backward(g: &[f32], argmax: &[u32], g_in: &mut [f32]) {
    g_in.fill(0.0);
    for (&gi, &at) in g.iter().zip(argmax) {
        g_in[at as usize] += gi;
    }
}

pub(super) fn max_pool_jvp(t_in: &[f32], argmax: &[u32], t_out: &mut [f32]) {
    for (t, &at) in t_out.iter_mut().zip(argmax) {
        *t = t_in[at as usize];
    }
}

/// Mean over each window; linear, so it is its own JVP.
pub(super) fn avg_pool(x: &[f32], batch: usize, g: Geom, size: usize, out: &mut [f32]) {
    let inv = 1.0 / (size * size) as f32;
    windows(batch, g, size, |o, idx| {
        out[o] = idx.map(|i| x[i]).sum::<f32>() * inv
    });
}

pub(super) fn avg_pool_backward(
    g: &[f32],
    batch: usize,
    geom: Geom,
    size: usize,
    g_in: &mut [f32],
) {
    let inv = 1.0 / (size * size) as f32;
    g_in.fill(0.0);
    windows(batch, geom, size, |o, idx| {
        idx.for_each(|i| g_in[i] += g[o] * inv)
    });
}

/// The mean of each `h x w` plane; linear, so it is its own JVP.
pub(super) fn global_avg(x: &[f32], g: Geom, out: &mut [f32]) {
    let hw = g.h * g.w;
    let inv = 1.0 / hw as f32;
    for (o, plane) in out.iter_mut().zip(x.chunks_exact(hw)) {
        *o = plane.iter().sum::<f32>() * inv;
    }
}

pub(super) fn global_avg_backward(g: &[f32], geom: Geom, g_in: &mut [f32]) {
    let hw = geom.h * geom.w;
    let inv = 1.0 / hw as f32;
    for (&gi, plane) in g.iter().zip(g_in.chunks_exact_mut(hw)) {
        plane.fill(gi * inv);
    }
}
