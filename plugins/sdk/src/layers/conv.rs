//! Convolution (im2col + GEMM, stride 1, zero padding) and non-overlapping pooling, per example
//! over `[c, h, w]` activations. Used by [`super::Sequential`].

use super::{Geom, Mat, gemm};

/// The geometry of one convolution over a batch.
#[derive(Clone, Copy)]
pub(super) struct Shape {
    pub batch: usize,
    pub geom: Geom,
    pub c_out: usize,
    pub k: usize,
    pub pad: usize,
}

impl Shape {
    fn out_hw(&self) -> (usize, usize) {
        (
            self.geom.h + 2 * self.pad - self.k + 1,
            self.geom.w + 2 * self.pad - self.k + 1,
        )
    }
    /// Rows of the column matrix: `c_in k k`.
    fn ckk(&self) -> usize {
        self.geom.c * self.k * self.k
    }
    fn howo(&self) -> usize {
        let (ho, wo) = self.out_hw();
        ho * wo
    }
}

/// `cols[(ci k k + ki k + kj), (oi wo + oj)] = x[ci, oi + ki - pad, oj + kj - pad]` (0 outside).
fn im2col(x: &[f32], s: Shape, cols: &mut [f32]) {
    let (ho, wo) = s.out_hw();
    let Geom { c, h, w } = s.geom;
    let mut row = 0;
    for ci in 0..c {
        for ki in 0..s.k {
            for kj in 0..s.k {
                let dst = &mut cols[row * ho * wo..(row + 1) * ho * wo];
                for oi in 0..ho {
                    let ii = (oi + ki) as isize - s.pad as isize;
                    for oj in 0..wo {
                        let jj = (oj + kj) as isize - s.pad as isize;
                        let inside = ii >= 0 && jj >= 0 && (ii as usize) < h && (jj as usize) < w;
                        dst[oi * wo + oj] = if inside {
                            x[(ci * h + ii as usize) * w + jj as usize]
                        } else {
                            0.0
                        };
                    }
                }
                row += 1;
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every column entry back onto the pixel it came from.
fn col2im(cols: &[f32], s: Shape, x: &mut [f32]) {
    let (ho, wo) = s.out_hw();
    let Geom { c, h, w } = s.geom;
    x.fill(0.0);
    let mut row = 0;
    for ci in 0..c {
        for ki in 0..s.k {
            for kj in 0..s.k {
                let src = &cols[row * ho * wo..(row + 1) * ho * wo];
                for oi in 0..ho {
                    let ii = (oi + ki) as isize - s.pad as isize;
                    if ii < 0 || ii as usize >= h {
                        continue;
                    }
                    for oj in 0..wo {
                        let jj = (oj + kj) as isize - s.pad as isize;
                        if jj >= 0 && (jj as usize) < w {
                            x[(ci * h + ii as usize) * w + jj as usize] += src[oi * wo + oj];
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// Adds bias `b[co]` to every pixel of output channel `co`.
fn fill_bias(out: &mut [f32], b: &[f32], howo: usize) {
    for (plane, &bias) in out.chunks_exact_mut(howo).zip(b) {
        plane.fill(bias);
    }
}

pub(super) fn forward(p: &[f32], x: &[f32], s: Shape, cols: &mut Vec<f32>, out: &mut [f32]) {
    let Shape {
        batch, geom, c_out, ..
    } = s;
    let (ckk, howo) = (s.ckk(), s.howo());
    let (w, b) = p.split_at(c_out * ckk);
    cols.resize(batch * ckk * howo, 0.0);
    for bi in 0..batch {
        let cols_b = &mut cols[bi * ckk * howo..(bi + 1) * ckk * howo];
        im2col(&x[bi * geom.len()..(bi + 1) * geom.len()], s, cols_b);
        let out_b = &mut out[bi * c_out * howo..(bi + 1) * c_out * howo];
        fill_bias(out_b, b, howo);
        gemm(
            Mat::new(w, c_out, ckk),
            Mat::new(cols_b, ckk, howo),
            1.0,
            out_b,
        );
    }
}

pub(super) fn backward(
    p: &[f32],
    cols: &[f32],
    g: &[f32],
    s: Shape,
    grad: &mut [f32],
    tmp: &mut Vec<f32>,
    mut g_in: Option<&mut Vec<f32>>,
) {
    let (ckk, howo, c_out) = (s.ckk(), s.howo(), s.c_out);
    let (gw, gb) = grad.split_at_mut(c_out * ckk);
    gw.fill(0.0);
    gb.fill(0.0);
    let w = &p[..c_out * ckk];
    tmp.resize(ckk * howo, 0.0);
    for bi in 0..s.batch {
        let g_b = &g[bi * c_out * howo..(bi + 1) * c_out * howo];
        let cols_b = &cols[bi * ckk * howo..(bi + 1) * ckk * howo];
        gemm(
            Mat::new(g_b, c_out, howo),
            Mat::new(cols_b, ckk, howo).t(),
            1.0,
            gw,
        );
        for (acc, plane) in gb.iter_mut().zip(g_b.chunks_exact(howo)) {
            *acc += plane.iter().sum::<f32>();
        }
        if let Some(g_in) = g_in.as_deref_mut() {
            gemm(
                Mat::new(w, c_out, ckk).t(),
                Mat::new(g_b, c_out, howo),
                0.0,
                tmp,
            );
            let n = s.geom.len();
            col2im(tmp, s, &mut g_in[bi * n..(bi + 1) * n]);
        }
    }
}

/// `t_out = tW * cols + W * im2col(t_in) + tb`.
pub(super) fn jvp(
    p: &[f32],
    tp: &[f32],
    cols: &[f32],
    t_in: Option<&[f32]>,
    s: Shape,
    tmp: &mut Vec<f32>,
    t_out: &mut [f32],
) {
    let (ckk, howo, c_out) = (s.ckk(), s.howo(), s.c_out);
    let (tw, tb) = tp.split_at(c_out * ckk);
    let w = &p[..c_out * ckk];
    tmp.resize(ckk * howo, 0.0);
    for bi in 0..s.batch {
        let out_b = &mut t_out[bi * c_out * howo..(bi + 1) * c_out * howo];
        fill_bias(out_b, tb, howo);
        let cols_b = &cols[bi * ckk * howo..(bi + 1) * ckk * howo];
        gemm(
            Mat::new(tw, c_out, ckk),
            Mat::new(cols_b, ckk, howo),
            1.0,
            out_b,
        );
        if let Some(t_in) = t_in {
            let n = s.geom.len();
            im2col(&t_in[bi * n..(bi + 1) * n], s, tmp);
            gemm(
                Mat::new(w, c_out, ckk),
                Mat::new(tmp, ckk, howo),
                1.0,
                out_b,
            );
        }
    }
}

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
