//! Pooling over `[batch][c][h][w]` activations: non-overlapping max and average windows, and
//! the global average of each channel. Every pass is split over planes across the layers'
//! threads.

use super::{Geom, par};

/// Calls `f(output index from the first plane's, window's first input index)` for every
/// pooling window of `planes`; the window is `size` rows of `size` inputs from there, rows
/// `g.w` apart.
fn windows(planes: std::ops::Range<usize>, g: Geom, size: usize, mut f: impl FnMut(usize, usize)) {
    let (ho, wo) = (g.h / size, g.w / size);
    let mut o = 0;
    for plane in planes {
        let base = plane * g.h * g.w;
        for oi in 0..ho {
            for oj in 0..wo {
                f(o, base + oi * size * g.w + oj * size);
                o += 1;
            }
        }
    }
}

/// Output entries per plane.
fn plane_out(g: Geom, size: usize) -> usize {
    (g.h / size) * (g.w / size)
}

/// Max over each window (the first maximum on ties); remembers where it was.
pub(super) fn max_pool(x: &[f32], g: Geom, size: usize, argmax: &mut Vec<u32>, out: &mut [f32]) {
    argmax.resize(out.len(), 0);
    let per = plane_out(g, size);
    par::for_parts2(out, argmax, per, |p0, out, argmax| {
        let planes = p0..p0 + out.len() / per;
        if size == 2 {
            // The common case, row by row without branches (the same first maximum on ties).
            let (ho, wo) = (g.h / 2, g.w / 2);
            let rows = out.chunks_exact_mut(wo).zip(argmax.chunks_exact_mut(wo));
            for (r, (out, argmax)) in rows.enumerate() {
                let (plane, oi) = (planes.start + r / ho, r % ho);
                let top = plane * g.h * g.w + 2 * oi * g.w;
                let (upper, lower) = (&x[top..][..2 * wo], &x[top + g.w..][..2 * wo]);
                let pairs = upper.chunks_exact(2).zip(lower.chunks_exact(2));
                for (oj, ((o, am), (u, l))) in out.iter_mut().zip(argmax).zip(pairs).enumerate() {
                    let (mut v, mut k) = (u[0], 0);
                    for (cand, at) in [(u[1], 1), (l[0], g.w), (l[1], g.w + 1)] {
                        let more = cand > v;
                        v = if more { cand } else { v };
                        k = if more { at } else { k };
                    }
                    *o = v;
                    *am = (top + 2 * oj + k) as u32;
                }
            }
            return;
        }
        windows(planes, g, size, |o, at| {
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
    });
}

pub(super) fn max_pool_backward(
    g: &[f32],
    argmax: &[u32],
    geom: Geom,
    size: usize,
    g_in: &mut [f32],
) {
    let (hw, per) = (geom.h * geom.w, plane_out(geom, size));
    par::for_parts(g_in, hw, |p0, part| {
        part.fill(0.0);
        let outs = p0 * per..(p0 * per + part.len() / hw * per);
        for (&gi, &at) in g[outs.clone()].iter().zip(&argmax[outs]) {
            part[at as usize - p0 * hw] += gi;
        }
    });
}

pub(super) fn max_pool_jvp(t_in: &[f32], argmax: &[u32], t_out: &mut [f32]) {
    par::for_parts(t_out, 1, |first, part| {
        for (t, &at) in part.iter_mut().zip(&argmax[first..]) {
            *t = t_in[at as usize];
        }
    });
}

/// Mean over each window; linear, so it is its own JVP.
pub(super) fn avg_pool(x: &[f32], g: Geom, size: usize, out: &mut [f32]) {
    let inv = 1.0 / (size * size) as f32;
    let per = plane_out(g, size);
    par::for_parts(out, per, |p0, out| {
        let planes = p0..p0 + out.len() / per;
        if size == 2 {
            // The common case, unrolled (three times faster than the general loop).
            windows(planes, g, 2, |o, at| {
                out[o] = (x[at] + x[at + 1] + x[at + g.w] + x[at + g.w + 1]) * inv
            });
            return;
        }
        windows(planes, g, size, |o, at| {
            let sum: f32 = (0..size)
                .map(|r| x[at + r * g.w..][..size].iter().sum::<f32>())
                .sum();
            out[o] = sum * inv;
        });
    });
}

pub(super) fn avg_pool_backward(g: &[f32], geom: Geom, size: usize, g_in: &mut [f32]) {
    let inv = 1.0 / (size * size) as f32;
    let (hw, per) = (geom.h * geom.w, plane_out(geom, size));
    par::for_parts(g_in, hw, |p0, part| {
        let planes = p0..p0 + part.len() / hw;
        let (g, base) = (&g[p0 * per..], p0 * hw);
        if size == 2 && geom.h.is_multiple_of(2) && geom.w.is_multiple_of(2) {
            // The windows tile the input: every entry is written once, no fill needed.
            windows(planes, geom, 2, |o, at| {
                let (v, at) = (g[o] * inv, at - base);
                part[at] = v;
                part[at + 1] = v;
                part[at + geom.w] = v;
                part[at + geom.w + 1] = v;
            });
            return;
        }
        part.fill(0.0);
        windows(planes, geom, size, |o, at| {
            for r in 0..size {
                part[at - base + r * geom.w..][..size]
                    .iter_mut()
                    .for_each(|v| *v += g[o] * inv);
            }
        });
    });
}

/// The mean of each `h x w` plane; linear, so it is its own JVP.
pub(super) fn global_avg(x: &[f32], g: Geom, out: &mut [f32]) {
    let hw = g.h * g.w;
    let inv = 1.0 / hw as f32;
    par::for_parts(out, 1, |first, part| {
        for (o, plane) in part.iter_mut().zip(x[first * hw..].chunks_exact(hw)) {
            *o = plane.iter().sum::<f32>() * inv;
        }
    });
}

pub(super) fn global_avg_backward(g: &[f32], geom: Geom, g_in: &mut [f32]) {
    let hw = geom.h * geom.w;
    let inv = 1.0 / hw as f32;
    par::for_parts(g_in, hw, |p0, part| {
        for (&gi, plane) in g[p0..].iter().zip(part.chunks_exact_mut(hw)) {
            plane.fill(gi * inv);
        }
    });
}
