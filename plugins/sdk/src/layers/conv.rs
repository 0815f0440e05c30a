//! 2-D convolution with stride and zero padding as im2col + GEMM over a chunk of the batch at
//! once: the column matrix of a chunk is `[c_in k k, examples x ho x wo]`, so a layer is one
//! large product per chunk (threaded by [`gemm`]) instead of one small product per example.
//! When the whole batch is one chunk, the forward pass keeps its column matrix for backward and
//! JVP; a wider layer rebuilds its columns chunk by chunk from its input instead, so no layer
//! holds more than one chunk's columns.

use super::{Geom, Mat, gemm};

/// The geometry of one convolution over a batch.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    pub batch: usize,
    pub geom: Geom,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub bias: bool,
}

/// Column-matrix floats per chunk: large enough that each GEMM is efficient, small enough
/// that a wide layer at batch 128 does not need gigabytes of columns.
const COLS_BUDGET: usize = 1 << 22;

impl Shape {
    fn out_hw(&self) -> (usize, usize) {
        let Geom { h, w, .. } = self.geom;
        (
            (h + 2 * self.pad - self.k) / self.stride + 1,
            (w + 2 * self.pad - self.k) / self.stride + 1,
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

    fn n_weights(&self) -> usize {
        self.c_out * self.ckk()
    }

    /// `(first example, examples)` of each chunk of the batch.
    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        let per = (COLS_BUDGET / (self.ckk() * self.howo()).max(1)).clamp(1, self.batch.max(1));
        let batch = self.batch;
        (0..batch)
            .step_by(per)
            .map(move |b0| (b0, per.min(batch - b0)))
    }
}

/// Scratch matrices shared by the convolutions of a model (grown to the largest chunk).
#[derive(Default)]
pub(super) struct Workspace {
    cols: Vec<f32>,
    cols2: Vec<f32>,
    mat: Vec<f32>,
}

/// `cols[(ci k k + ki k + kj), (e howo + oi wo + oj)] = x[b0 + e, ci, oi s + ki - pad,
/// oj s + kj - pad]` (0 outside) for the `n` examples from `b0`.
fn im2col(x: &[f32], s: Shape, b0: usize, n: usize, cols: &mut Vec<f32>) {
    let (ho, wo) = s.out_hw();
    let Geom { c, h, w } = s.geom;
    let (howo, width) = (ho * wo, n * ho * wo);
    cols.resize(s.ckk() * width, 0.0);
    for ci in 0..c {
        for ki in 0..s.k {
            for kj in 0..s.k {
                let row = (ci * s.k + ki) * s.k + kj;
                let dst_row = &mut cols[row * width..(row + 1) * width];
                for e in 0..n {
                    let plane = &x[((b0 + e) * c + ci) * h * w..][..h * w];
                    let dst = &mut dst_row[e * howo..(e + 1) * howo];
                    for oi in 0..ho {
                        let out = &mut dst[oi * wo..(oi + 1) * wo];
                        let ii = (oi * s.stride + ki) as isize - s.pad as isize;
                        if ii < 0 || ii as usize >= h {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &plane[ii as usize * w..(ii as usize + 1) * w];
                        copy_row(src, out, kj as isize - s.pad as isize, s.stride);
                    }
                }
            }
        }
    }
}

/// `out[oj] = src[oj stride + shift]`, 0 where that falls outside `src`.
fn copy_row(src: &[f32], out: &mut [f32], shift: isize, stride: usize) {
    let w = src.len() as isize;
    // The first and one-past-last `oj` whose source column lies inside the row.
    let lo = if shift >= 0 {
        0
    } else {
        ((-shift) as usize).div_ceil(stride)
    };
    let hi = if w - shift <= 0 {
        0
    } else {
        ((w - shift) as usize).div_ceil(stride)
    };
    let lo = lo.min(out.len());
    let hi = hi.clamp(lo, out.len());
    out[..lo].fill(0.0);
    out[hi..].fill(0.0);
    let at = |oj: usize| ((oj * stride) as isize + shift) as usize;
    if lo == hi {
        return;
    }
    if stride == 1 {
        out[lo..hi].copy_from_slice(&src[at(lo)..at(hi - 1) + 1]);
    } else {
        for (oj, o) in out.iter_mut().enumerate().take(hi).skip(lo) {
            *o = src[at(oj)];
        }
    }
}

/// The adjoint of [`im2col`]: adds every column entry back onto the pixel it came from, into
/// `x_grad` for the `n` examples from `b0` (which it zeroes first).
fn col2im(cols: &[f32], s: Shape, b0: usize, n: usize, x_grad: &mut [f32]) {
    let (ho, wo) = s.out_hw();
    let Geom { c, h, w } = s.geom;
    let (howo, width) = (ho * wo, n * ho * wo);
    x_grad[b0 * c * h * w..(b0 + n) * c * h * w].fill(0.0);
    for ci in 0..c {
        for ki in 0..s.k {
            for kj in 0..s.k {
                let row = (ci * s.k + ki) * s.k + kj;
                let src_row = &cols[row * width..(row + 1) * width];
                for e in 0..n {
                    let plane = &mut x_grad[((b0 + e) * c + ci) * h * w..][..h * w];
                    let src = &src_row[e * howo..(e + 1) * howo];
                    for oi in 0..ho {
                        let ii = (oi * s.stride + ki) as isize - s.pad as isize;
                        if ii < 0 || ii as usize >= h {
                            continue;
                        }
                        let dst = &mut plane[ii as usize * w..(ii as usize + 1) * w];
                        for (oj, &v) in src[oi * wo..(oi + 1) * wo].iter().enumerate() {
                            let jj = (oj * s.stride + kj) as isize - s.pad as isize;
                            if jj >= 0 && (jj as usize) < w {
                                dst[jj as usize] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Scatters a chunk's `[c_out, n howo]` product into `out`'s `[batch][c_out][howo]` layout,
/// adding `bias[co]` (when given) to every pixel of channel `co`.
fn scatter(mat: &[f32], s: Shape, b0: usize, n: usize, bias: Option<&[f32]>, out: &mut [f32]) {
    let (howo, c_out) = (s.howo(), s.c_out);
    for co in 0..c_out {
        let b = bias.map_or(0.0, |b| b[co]);
        let row = &mat[co * n * howo..(co + 1) * n * howo];
        for e in 0..n {
            let dst = &mut out[((b0 + e) * c_out + co) * howo..][..howo];
            dst.iter_mut()
                .zip(&row[e * howo..(e + 1) * howo])
                .for_each(|(d, &v)| *d = v + b);
        }
    }
}

/// The inverse layout move of [`scatter`] (without bias): `[batch][c_out][howo]` to a
/// chunk's `[c_out, n howo]`.
fn gather(g: &[f32], s: Shape, b0: usize, n: usize, mat: &mut Vec<f32>) {
    let (howo, c_out) = (s.howo(), s.c_out);
    mat.resize(c_out * n * howo, 0.0);
    for co in 0..c_out {
        for e in 0..n {
            mat[(co * n + e) * howo..][..howo]
                .copy_from_slice(&g[((b0 + e) * c_out + co) * howo..][..howo]);
        }
    }
}

/// The columns of the `n` examples from `b0`: the kept matrix when it covers them (the whole
/// batch, one chunk), else rebuilt into `buf`.
fn columns<'a>(
    x: &[f32],
    s: Shape,
    b0: usize,
    n: usize,
    kept: &'a [f32],
    buf: &'a mut Vec<f32>,
) -> &'a [f32] {
    if n == s.batch && kept.len() == s.ckk() * n * s.howo() {
        return kept;
    }
    im2col(x, s, b0, n, buf);
    buf
}

fn split_params(p: &[f32], s: Shape) -> (&[f32], Option<&[f32]>) {
    let (w, b) = p.split_at(s.n_weights());
    (w, s.bias.then_some(b))
}

/// `keep` receives the column matrix when the batch is one chunk (and is emptied otherwise).
pub(super) fn forward(
    p: &[f32],
    x: &[f32],
    s: Shape,
    ws: &mut Workspace,
    keep: &mut Vec<f32>,
    out: &mut [f32],
) {
    let (w, b) = split_params(p, s);
    let (ckk, howo) = (s.ckk(), s.howo());
    let chunks: Vec<_> = s.chunks().collect();
    let whole = chunks.len() == 1;
    keep.clear();
    for (b0, n) in chunks {
        let cols = if whole { &mut *keep } else { &mut ws.cols };
        im2col(x, s, b0, n, cols);
        ws.mat.resize(s.c_out * n * howo, 0.0);
        gemm(
            Mat::new(w, s.c_out, ckk),
            Mat::new(cols, ckk, n * howo),
            0.0,
            &mut ws.mat,
        );
        scatter(&ws.mat, s, b0, n, b, out);
    }
}

/// Parameter gradient into `grad` (overwritten) and, when asked, the input gradient; `kept`
/// is what the forward pass kept.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    p: &[f32],
    x: &[f32],
    g: &[f32],
    s: Shape,
    ws: &mut Workspace,
    kept: &[f32],
    grad: &mut [f32],
    mut g_in: Option<&mut [f32]>,
) {
    let (ckk, howo, c_out) = (s.ckk(), s.howo(), s.c_out);
    let (w, _) = split_params(p, s);
    let (gw, gb) = grad.split_at_mut(s.n_weights());
    gb.fill(0.0);
    for (i, (b0, n)) in s.chunks().enumerate() {
        let cols = columns(x, s, b0, n, kept, &mut ws.cols);
        gather(g, s, b0, n, &mut ws.mat);
        let beta = if i == 0 { 0.0 } else { 1.0 };
        gemm(
            Mat::new(&ws.mat, c_out, n * howo),
            Mat::new(cols, ckk, n * howo).t(),
            beta,
            gw,
        );
        if s.bias {
            for (acc, row) in gb.iter_mut().zip(ws.mat.chunks_exact(n * howo)) {
                *acc += row.iter().sum::<f32>();
            }
        }
        if let Some(g_in) = g_in.as_deref_mut() {
            ws.cols2.resize(ckk * n * howo, 0.0);
            gemm(
                Mat::new(w, c_out, ckk).t(),
                Mat::new(&ws.mat, c_out, n * howo),
                0.0,
                &mut ws.cols2,
            );
            col2im(&ws.cols2, s, b0, n, g_in);
        }
    }
}

/// `t_out = tW * im2col(x) + W * im2col(t_in) + tb`.
#[allow(clippy::too_many_arguments)]
pub(super) fn jvp(
    p: &[f32],
    tp: &[f32],
    x: &[f32],
    t_in: Option<&[f32]>,
    s: Shape,
    ws: &mut Workspace,
    kept: &[f32],
    t_out: &mut [f32],
) {
    let (ckk, howo, c_out) = (s.ckk(), s.howo(), s.c_out);
    let (w, _) = split_params(p, s);
    let (tw, tb) = split_params(tp, s);
    for (b0, n) in s.chunks() {
        let cols = columns(x, s, b0, n, kept, &mut ws.cols);
        ws.mat.resize(c_out * n * howo, 0.0);
        gemm(
            Mat::new(tw, c_out, ckk),
            Mat::new(cols, ckk, n * howo),
            0.0,
            &mut ws.mat,
        );
        if let Some(t_in) = t_in {
            im2col(t_in, s, b0, n, &mut ws.cols2);
            gemm(
                Mat::new(w, c_out, ckk),
                Mat::new(&ws.cols2, ckk, n * howo),
                1.0,
                &mut ws.mat,
            );
        }
        scatter(&ws.mat, s, b0, n, tb, t_out);
    }
}
