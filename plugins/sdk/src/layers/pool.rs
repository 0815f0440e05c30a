//! Pooling over `[batch][c][h][w]` activations: non-overlapping max and average windows, and
//! the global average of each channel.

use super::Geom;

/// Calls `f(output index, window's first input index)` for every pooling window; the window
/// is `size` rows of `size` inputs from there, rows `g.w` apart.
fn windows(batch: usize, g: Geom, size: usize, mut f: impl FnMut(usize, usize)) {
    let (ho, wo) = (g.h / size, g.w / size);
    let mut o = 0;
    for plane in 0..batch * g.c {
        let base = plane * g.h * g.w;
        for oi in 0..ho {
            for oj in 0..wo {
                f(o, base + oi * size * g.w + oj * size);
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
    windows(batch, g, size, |o, at| {
        let mut best = at;
        for r in 0..size {
            for i in at + r * g.w..at + r * g.w + size {
                if x[i] > x[best] {
                    best = i;
                }
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
    if size == 2 {
        // The common case, unrolled (three times faster than the general loop).
        windows(batch, g, 2, |o, at| {
            out[o] = (x[at] + x[at + 1] + x[at + g.w] + x[at + g.w + 1]) * inv
        });
        return;
    }
    windows(batch, g, size, |o, at| {
        let sum: f32 = (0..size)
            .map(|r| x[at + r * g.w..][..size].iter().sum::<f32>())
            .sum();
        out[o] = sum * inv;
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
    if size == 2 && geom.h.is_multiple_of(2) && geom.w.is_multiple_of(2) {
        // The windows tile the input: every entry is written once, no fill needed.
        windows(batch, geom, 2, |o, at| {
            let v = g[o] * inv;
            g_in[at] = v;
            g_in[at + 1] = v;
            g_in[at + geom.w] = v;
            g_in[at + geom.w + 1] = v;
        });
        return;
    }
    g_in.fill(0.0);
    windows(batch, geom, size, |o, at| {
        for r in 0..size {
            g_in[at + r * geom.w..][..size]
                .iter_mut()
                .for_each(|v| *v += g[o] * inv);
        }
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
