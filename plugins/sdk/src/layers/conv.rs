//! 2-D convolution with stride and zero padding as im2col + GEMM over a chunk of the batch at
//! once: the column matrix of a chunk is `[c_in k k, examples x ho x wo]`, so a layer is one
//! large product per chunk (threaded by [`gemm`]) instead of one small product per example.
//! When the whole batch is one chunk, the forward pass keeps its column matrix for backward and
//! JVP, and the products are split across threads; a wider layer rebuilds its columns chunk by
//! chunk from its input instead, its chunks running on all threads at once, each thread with
//! its own buffers, so no layer holds more than a chunk's columns per thread.

use super::columns::{col2im, im2col};
use super::{Geom, Mat, Sgemm, gemm, gemm_on, par, winograd};

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

#[cfg(not(test))]
pub(super) fn cols_budget() -> usize {
    COLS_BUDGET
}

#[cfg(test)]
thread_local! {
    /// Tests shrink the budget to run small layers in many chunks.
    pub(super) static TEST_COLS_BUDGET: std::cell::Cell<usize> = const { std::cell::Cell::new(COLS_BUDGET) };
}

#[cfg(test)]
pub(super) fn cols_budget() -> usize {
    TEST_COLS_BUDGET.get()
}

#[cfg(test)]
thread_local! {
    /// Tests turn Winograd's algorithm off to compare it with im2col on the same layers.
    pub(super) static TEST_WINOGRAD: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

impl Shape {
    /// Whether this convolution runs by Winograd's algorithm rather than im2col.
    fn winograd(&self) -> bool {
        #[cfg(test)]
        if !TEST_WINOGRAD.get() {
            return false;
        }
        winograd::applies(self)
    }

    pub(super) fn out_hw(&self) -> (usize, usize) {
        let Geom { h, w, .. } = self.geom;
        (
            (h + 2 * self.pad - self.k) / self.stride + 1,
            (w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }

    /// Rows of the column matrix: `c_in k k`.
    pub(super) fn ckk(&self) -> usize {
        self.geom.c * self.k * self.k
    }

    fn howo(&self) -> usize {
        let (ho, wo) = self.out_hw();
        ho * wo
    }

    fn n_weights(&self) -> usize {
        self.c_out * self.ckk()
    }

    /// Whether the whole batch's columns fit one chunk.
    fn single_chunk(&self) -> bool {
        self.chunks().nth(1).is_none()
    }

    /// `(first example, examples)` of each chunk of the batch. Beyond one chunk, their number
    /// is a multiple of the thread count, so that every thread gets as many.
    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        let batch = self.batch.max(1);
        let need = (self.ckk() * self.howo() * batch).div_ceil(cols_budget());
        let threads = par::threads();
        let count = if need <= 1 {
            1
        } else {
            need.div_ceil(threads) * threads
        };
        let per = batch.div_ceil(count.min(batch));
        let batch = self.batch;
        (0..batch)
            .step_by(per)
            .map(move |b0| (b0, per.min(batch - b0)))
    }
}

/// Scratch matrices shared by the convolutions of a model (grown to the largest chunk): one
/// set per thread.
#[derive(Default)]
pub(super) struct Workspace {
    main: Buffers,
    workers: Vec<Buffers>,
    winograd: winograd::Buffers,
}

#[derive(Default)]
struct Buffers {
    cols: Vec<f32>,
    cols2: Vec<f32>,
    mat: Vec<f32>,
    /// A chunk's weight gradient, transposed.
    wt: Vec<f32>,
    /// A thread's share of the weight and bias gradients.
    grad: Vec<f32>,
}

/// One thread's share of [`for_chunks`]: its chunks, buffers and part of the output.
type Job<'a> = (&'a [(usize, usize)], &'a mut Buffers, Option<&'a mut [f32]>);

/// Runs `f(buffers, first example, examples, part)` on every chunk of the batch: the chunks
/// in contiguous runs, one run per thread, `part` the chunk's slice of `out` (`per` floats per
/// example; `None` when `out` is). Afterwards `ws.main` and every `ws.workers` entry hold what
/// their thread left (for reductions).
fn for_chunks(
    s: Shape,
    ws: &mut Workspace,
    out: Option<&mut [f32]>,
    per: usize,
    f: impl Fn(&mut Buffers, usize, usize, Option<&mut [f32]>) + Sync,
) {
    let chunks: Vec<_> = s.chunks().collect();
    let threads = par::threads().min(chunks.len()).max(1);
    ws.workers.resize_with(threads - 1, Buffers::default);
    let bufs = std::iter::once(&mut ws.main).chain(ws.workers.iter_mut());
    let mut rest = out;
    let mut jobs = Vec::with_capacity(threads);
    for (run, buf) in chunks.chunks(chunks.len().div_ceil(threads)).zip(bufs) {
        let examples: usize = run.iter().map(|&(_, n)| n).sum();
        let part = rest.take().map(|r| {
            let (part, tail) = r.split_at_mut(examples * per);
            rest = Some(tail);
            part
        });
        jobs.push((run, buf, part));
    }
    let work = |(run, buf, mut part): Job<'_>| {
        let first = run[0].0;
        for &(b0, n) in run {
            let at = (b0 - first) * per;
            let chunk = part.as_deref_mut().map(|p| &mut p[at..at + n * per]);
            f(buf, b0, n, chunk);
        }
    };
    let work = &work;
    par::pool().scope(|scope| {
        let mut jobs = jobs.into_iter();
        let own = jobs.next();
        for job in jobs {
            scope.spawn(move |_| work(job));
        }
        if let Some(job) = own {
            work(job);
        }
    });
}

/// Scatters a chunk's `[c_out, n howo]` product into the chunk's `[n][c_out][howo]` outputs,
/// adding `bias[co]` (when given) to every pixel of channel `co`.
fn scatter(mat: &[f32], s: Shape, n: usize, bias: Option<&[f32]>, out: &mut [f32]) {
    let (howo, c_out) = (s.howo(), s.c_out);
    par::for_parts(&mut out[..n * c_out * howo], howo, |p0, part| {
        for (k, dst) in part.chunks_exact_mut(howo).enumerate() {
            let (e, co) = ((p0 + k) / c_out, (p0 + k) % c_out);
            let b = bias.map_or(0.0, |b| b[co]);
            let src = &mat[(co * n + e) * howo..][..howo];
            dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v + b);
        }
    });
}

/// The inverse layout move of [`scatter`] (without bias): a chunk's `[n][c_out][howo]` to
/// `[c_out, n howo]`.
fn gather(g: &[f32], s: Shape, n: usize, mat: &mut Vec<f32>) {
    let (howo, c_out) = (s.howo(), s.c_out);
    mat.resize(c_out * n * howo, 0.0);
    par::for_parts(mat, howo, |p0, part| {
        for (k, dst) in part.chunks_exact_mut(howo).enumerate() {
            let (co, e) = ((p0 + k) / n, (p0 + k) % n);
            dst.copy_from_slice(&g[(e * c_out + co) * howo..][..howo]);
        }
    });
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
    let (ckk, howo, c_out, len) = (s.ckk(), s.howo(), s.c_out, s.geom.len());
    if s.winograd() {
        keep.clear();
        winograd::forward(w, b, x, s, &mut ws.winograd, out);
        return;
    }
    if s.single_chunk() {
        // Not cleared first: im2col writes every entry, and a kept matrix of the same size
        // needs no refill with zeros.
        let mat = &mut ws.main.mat;
        im2col(x, s, s.batch, keep);
        mat.resize(c_out * s.batch * howo, 0.0);
        let cols = Mat::new(keep, ckk, s.batch * howo);
        gemm(Sgemm::Gemm, Mat::new(w, c_out, ckk), cols, 0.0, mat);
        scatter(mat, s, s.batch, b, out);
        return;
    }
    keep.clear();
    for_chunks(s, ws, Some(out), c_out * howo, |buf, b0, n, part| {
        im2col(&x[b0 * len..(b0 + n) * len], s, n, &mut buf.cols);
        buf.mat.resize(c_out * n * howo, 0.0);
        let cols = Mat::new(&buf.cols, ckk, n * howo);
        gemm_on(
            Sgemm::Gemm,
            1,
            Mat::new(w, c_out, ckk),
            cols,
            0.0,
            &mut buf.mat,
        );
        scatter(&buf.mat, s, n, b, part.expect("forward has outputs"));
    });
}

/// `dst += src^T` for `src` row-major `rows x cols`, in tiles that stay in cache.
fn add_transposed(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for c in c0..(c0 + TILE).min(cols) {
                let out = &mut dst[c * rows..][r0..(r0 + TILE).min(rows)];
                for (k, v) in out.iter_mut().enumerate() {
                    *v += src[(r0 + k) * cols + c];
                }
            }
        }
    }
}

/// One chunk's share of backward: the weight and bias gradients added into `acc`, the input's
/// into `g_in` (the chunk's part).
#[allow(clippy::too_many_arguments)]
fn backward_chunk(
    w: &[f32],
    g: &[f32],
    cols: &[f32],
    s: Shape,
    n: usize,
    threads: usize,
    buf_mat: &mut Vec<f32>,
    buf_cols: &mut Vec<f32>,
    buf_wt: &mut Vec<f32>,
    acc: &mut [f32],
    g_in: Option<&mut [f32]>,
) {
    let (ckk, howo, c_out) = (s.ckk(), s.howo(), s.c_out);
    gather(g, s, n, buf_mat);
    let (gw, gb) = acc.split_at_mut(s.n_weights());
    let g_mat = Mat::new(buf_mat, c_out, n * howo);
    // The GEMM runs this product two to three times faster with the long inner dimension
    // contiguous in both operands and the weight gradient transposed: `cols g^T`, then added
    // back transposed (`c_out ckk` floats, nothing next to the product).
    buf_wt.resize(ckk * c_out, 0.0);
    gemm_on(
        Sgemm::Gemm,
        threads,
        Mat::new(cols, ckk, n * howo),
        g_mat.t(),
        0.0,
        buf_wt,
    );
    add_transposed(buf_wt, ckk, c_out, gw);
    if s.bias {
        let sums = par::map_collect(c_out, c_out * n * howo, |co| {
            buf_mat[co * n * howo..][..n * howo].iter().sum::<f32>()
        });
        gb.iter_mut().zip(sums).for_each(|(a, b)| *a += b);
    }
    if let Some(g_in) = g_in {
        buf_cols.resize(ckk * n * howo, 0.0);
        gemm_on(
            Sgemm::Gemm,
            threads,
            Mat::new(w, c_out, ckk).t(),
            g_mat,
            0.0,
            buf_cols,
        );
        col2im(buf_cols, s, n, g_in);
    }
}

/// `gb[co] += ` the sum of the output gradient `g` over channel `co`'s pixels.
fn bias_grads(g: &[f32], s: Shape, gb: &mut [f32]) {
    let (howo, c_out) = (s.howo(), s.c_out);
    let sums = par::map_collect(c_out, s.batch * c_out * howo, |co| {
        (0..s.batch)
            .map(|e| g[(e * c_out + co) * howo..][..howo].iter().sum::<f32>())
            .sum::<f32>()
    });
    gb.iter_mut().zip(sums).for_each(|(a, b)| *a += b);
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
    g_in: Option<&mut [f32]>,
) {
    let (howo, c_out, len) = (s.howo(), s.c_out, s.geom.len());
    let (w, _) = split_params(p, s);
    grad.fill(0.0);
    if s.winograd() {
        let (gw, gb) = grad.split_at_mut(s.n_weights());
        winograd::backward(w, x, g, s, &mut ws.winograd, gw, g_in);
        if s.bias {
            bias_grads(g, s, gb);
        }
        return;
    }
    if s.single_chunk() {
        let Buffers { mat, cols2, wt, .. } = &mut ws.main;
        backward_chunk(
            w,
            g,
            kept,
            s,
            s.batch,
            par::threads(),
            mat,
            cols2,
            wt,
            grad,
            g_in,
        );
        return;
    }
    let n_grad = grad.len();
    // Each thread sums its chunks' gradients into its own buffer, zeroed here (or on first use).
    for buf in std::iter::once(&mut ws.main).chain(&mut ws.workers) {
        buf.grad.clear();
        buf.grad.resize(n_grad, 0.0);
    }
    for_chunks(s, ws, g_in, len, |buf, b0, n, part| {
        let Buffers {
            cols,
            cols2,
            mat,
            wt,
            grad: acc,
        } = buf;
        acc.resize(n_grad, 0.0);
        im2col(&x[b0 * len..(b0 + n) * len], s, n, cols);
        let g = &g[b0 * c_out * howo..(b0 + n) * c_out * howo];
        backward_chunk(w, g, cols, s, n, 1, mat, cols2, wt, acc, part);
    });
    for buf in std::iter::once(&ws.main).chain(&ws.workers) {
        grad.iter_mut().zip(&buf.grad).for_each(|(a, &b)| *a += b);
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
    let (ckk, howo, c_out, len) = (s.ckk(), s.howo(), s.c_out, s.geom.len());
    let (w, _) = split_params(p, s);
    let (tw, tb) = split_params(tp, s);
    if s.winograd() {
        winograd::jvp(w, tw, tb, x, t_in, s, &mut ws.winograd, t_out);
        return;
    }
    // One chunk: `cols` its columns, `t_cols` a buffer for its tangent's.
    let chunk = |cols: &[f32],
                 t_cols: &mut Vec<f32>,
                 mat: &mut Vec<f32>,
                 b0,
                 n,
                 threads,
                 part: &mut [f32]| {
        mat.resize(c_out * n * howo, 0.0);
        let (tw, cols) = (Mat::new(tw, c_out, ckk), Mat::new(cols, ckk, n * howo));
        gemm_on(Sgemm::Gemm, threads, tw, cols, 0.0, mat);
        if let Some(t_in) = t_in {
            im2col(&t_in[b0 * len..(b0 + n) * len], s, n, t_cols);
            let t_cols = Mat::new(t_cols, ckk, n * howo);
            gemm_on(
                Sgemm::Gemm,
                threads,
                Mat::new(w, c_out, ckk),
                t_cols,
                1.0,
                mat,
            );
        }
        scatter(mat, s, n, tb, part);
    };
    if s.single_chunk() {
        let Buffers { cols2, mat, .. } = &mut ws.main;
        chunk(kept, cols2, mat, 0, s.batch, par::threads(), t_out);
        return;
    }
    for_chunks(s, ws, Some(t_out), c_out * howo, |buf, b0, n, part| {
        let Buffers {
            cols, cols2, mat, ..
        } = buf;
        im2col(&x[b0 * len..(b0 + n) * len], s, n, cols);
        chunk(cols, cols2, mat, b0, n, 1, part.expect("jvp has outputs"));
    });
}
