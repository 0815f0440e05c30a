//! 3 x 3 convolutions that keep the image size (stride 1, padding 1) by Winograd's minimal
//! filtering F(2 x 2, 3 x 3) (Lavin & Gray, 2016): each 2 x 2 block of outputs is
//! `A^T [(G w G^T) . (B^T d B)] A` for its 4 x 4 input tile `d`, so a layer becomes 16
//! independent products `[c_out, c_in] x [c_in, tiles]` with 2.25 times fewer multiply-adds
//! than im2col's, and no column matrix. The input gradient is the same convolution with the
//! kernel flipped and its channels swapped; the weight gradient is the exact adjoint of the
//! forward pass (`G^T dU G` of the products `dM V^T`). The transforms' coefficients are 0, 1
//! and 1/2, so the rounding stays that of a few additions.
//!
//! Layouts over a chunk of `n` examples, with `t = tile x n + example` (tiles in row order):
//! transformed kernels `[c_out][16][c_in]`, transformed inputs `[c_in][16][t]`, products
//! `[16][c_out][t]`, transformed output gradients `[c_out][16][t]` and the weight gradient's
//! products `[16][c_in][c_out]` — each written by the pass that splits over its leading index,
//! the products read through strided views. With the examples innermost, every transform
//! runs over `n` contiguous lanes, whatever the image size (VGG's last layers are 2 x 2).

use std::cell::RefCell;

use super::conv::{Shape, cols_budget};
use super::{Mat, Sgemm, gemm_on, par};

/// Scratch shared by the model's Winograd convolutions, grown to the largest.
#[derive(Default)]
pub(super) struct Buffers {
    u: Vec<f32>,
    u2: Vec<f32>,
    v: Vec<f32>,
    v2: Vec<f32>,
    m: Vec<f32>,
    du: Vec<f32>,
    flipped: Vec<f32>,
}

thread_local! {
    /// Each thread's scratch (a channel's examples side by side, a tile's lanes), kept between
    /// passes: training allocates no batch-sized buffer per step.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `f` with two of this thread's scratch buffers, of `a` and `b` floats (contents unspecified).
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with_borrow_mut(|s| {
        if s.len() < a + b {
            s.resize(a + b, 0.0);
        }
        let (x, y) = s[..a + b].split_at_mut(a);
        f(x, y)
    })
}

/// The first `len` floats of `buf`, grown (never shrunk) to hold them: the layers share the
/// buffers, and refilling a shrunk vector's tail with zeros at every layer would cost a pass.
fn room(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// Whether `s` is a convolution this module computes.
pub(super) fn applies(s: &Shape) -> bool {
    s.k == 3 && s.stride == 1 && s.pad == 1
}

/// Tile rows and columns of an image: 2 x 2 outputs each.
fn tiles(s: &Shape) -> (usize, usize) {
    (s.geom.h.div_ceil(2), s.geom.w.div_ceil(2))
}

/// Input channels, output channels, and the floats of one example's input and output.
fn sizes(s: &Shape) -> (usize, usize, usize, usize) {
    let hw = s.geom.h * s.geom.w;
    (s.geom.c, s.c_out, s.geom.c * hw, s.c_out * hw)
}

/// `(first example, examples)` of each chunk: as many examples as keep the largest transformed
/// array within the column budget. Independent of the thread count.
fn chunks(s: &Shape) -> impl Iterator<Item = (usize, usize)> + use<> {
    let (th, tw) = tiles(s);
    let per_example = 16 * s.geom.c.max(s.c_out) * th * tw;
    let per = (cols_budget() / per_example).clamp(1, s.batch.max(1));
    let batch = s.batch;
    (0..batch)
        .step_by(per)
        .map(move |b0| (b0, per.min(batch - b0)))
}

/// `G` applied to a column or row `(a, b, c)` of a kernel.
fn g3(a: f32, b: f32, c: f32) -> [f32; 4] {
    [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]
}

/// `G^T` applied to a column or row `(a, b, c, d)` of a transformed kernel's gradient.
fn gt4(a: f32, b: f32, c: f32, d: f32) -> [f32; 3] {
    [a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d]
}

/// `G g G^T` of every 3 x 3 kernel `w[co][ci]`, into `u[co][16][ci]`.
fn kernels(w: &[f32], c_out: usize, c_in: usize, u: &mut Vec<f32>) {
    par::for_parts(room(u, c_out * 16 * c_in), 16 * c_in, |co0, part| {
        for (k, dst) in part.chunks_exact_mut(16 * c_in).enumerate() {
            let co = co0 + k;
            for ci in 0..c_in {
                let g = &w[(co * c_in + ci) * 9..][..9];
                // G down each column, then along each row of the 4 x 3 result.
                let cols: [[f32; 4]; 3] = std::array::from_fn(|j| g3(g[j], g[3 + j], g[6 + j]));
                for i in 0..4 {
                    let row = g3(cols[0][i], cols[1][i], cols[2][i]);
                    for (j, v) in row.into_iter().enumerate() {
                        dst[(4 * i + j) * c_in + ci] = v;
                    }
                }
            }
        }
    });
}

/// `dw[co][ci] = G^T dU G` from the weight gradient's products `du[16][ci][co]`.
fn kernel_grads(du: &[f32], c_out: usize, c_in: usize, dw: &mut [f32]) {
    par::for_parts(&mut dw[..c_out * c_in * 9], c_in * 9, |co0, part| {
        // Channel pairs with `co` innermost, so the sixteen reads walk `du` in order.
        for ci in 0..c_in {
            for (k, dst) in part.chunks_exact_mut(c_in * 9).enumerate() {
                let co = co0 + k;
                let at = |xi: usize| du[(xi * c_in + ci) * c_out + co];
                // G^T down each column (4 -> 3 rows), then along each row (4 -> 3 columns).
                let cols: [[f32; 3]; 4] =
                    std::array::from_fn(|j| gt4(at(j), at(4 + j), at(8 + j), at(12 + j)));
                for i in 0..3 {
                    let row = gt4(cols[0][i], cols[1][i], cols[2][i], cols[3][i]);
                    dst[ci * 9 + 3 * i..][..3].copy_from_slice(&row);
                }
            }
        }
    });
}

/// The input gradient's kernel: `w[co][ci][i][j]` as `[ci][co][2 - i][2 - j]`.
fn flip(w: &[f32], c_out: usize, c_in: usize, out: &mut Vec<f32>) {
    par::for_parts(room(out, c_out * c_in * 9), c_out * 9, |ci0, part| {
        for (k, dst) in part.chunks_exact_mut(c_out * 9).enumerate() {
            for (co, dst) in dst.chunks_exact_mut(9).enumerate() {
                let src = &w[(co * c_in + ci0 + k) * 9..][..9];
                dst.iter_mut().rev().zip(src).for_each(|(d, &v)| *d = v);
            }
        }
    });
}

/// Channel `ch` of `src` (`n` examples of `c` planes `h x w`) as `[rows][cols][n]`: the
/// examples side by side, so that every transform below runs over `n` contiguous lanes; the
/// image at row and column `border`, zeros around it.
fn block(
    src: &[f32],
    s: &Shape,
    (c, ch, n): (usize, usize, usize),
    border: usize,
    cols: usize,
    blk: &mut [f32],
) {
    let (h, w) = (s.geom.h, s.geom.w);
    blk.fill(0.0);
    // Eight examples at a time, so that each pixel's eight lanes are written together.
    for e0 in (0..n).step_by(8) {
        let lanes = (n - e0).min(8);
        for y in 0..h {
            let at = ((y + border) * cols + border) * n + e0;
            for x in 0..w {
                let dst = &mut blk[at + x * n..][..lanes];
                for (i, d) in dst.iter_mut().enumerate() {
                    *d = src[(((e0 + i) * c + ch) * h + y) * w + x];
                }
            }
        }
    }
}

/// `out[e] = f(a[e], b[e])` over a tile's lanes.
fn lanes(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    let n = out.len();
    for ((o, &x), &y) in out.iter_mut().zip(&a[..n]).zip(&b[..n]) {
        *o = f(x, y);
    }
}

/// One row or column `[a, b, c, d]` of a tile's lanes through `B^T`: the four results into
/// `out` at the offsets `at`.
fn bt([a, b, c, d]: [&[f32]; 4], out: &mut [f32], at: [usize; 4]) {
    let n = a.len();
    lanes(a, c, &mut out[at[0]..][..n], |a, c| a - c);
    lanes(b, c, &mut out[at[1]..][..n], |b, c| b + c);
    lanes(c, b, &mut out[at[2]..][..n], |c, b| c - b);
    lanes(b, d, &mut out[at[3]..][..n], |b, d| b - d);
}

/// One row or column `[a, b]` of an output gradient's tile through `A` (four results).
fn a4([a, b]: [&[f32]; 2], out: &mut [f32], at: [usize; 4]) {
    let n = a.len();
    out[at[0]..][..n].copy_from_slice(a);
    lanes(a, b, &mut out[at[1]..][..n], |a, b| a + b);
    lanes(a, b, &mut out[at[2]..][..n], |a, b| a - b);
    lanes(b, b, &mut out[at[3]..][..n], |b, _| -b);
}

/// `B^T d B` of every input tile of `x` (`n` examples of `c` planes `h x w`), into
/// `v[c][16][t]`; the image is read through a zero border.
fn inputs(x: &[f32], s: &Shape, c: usize, n: usize, v: &mut Vec<f32>) {
    tile_transforms::<4>(x, s, (c, n), 1, v, bt);
}

/// Every tile of `src` (`n` examples of `c` planes `h x w`): its `N x N` entries from the
/// image placed `border` in from a zero surround, through `f` down each column and then along
/// each row (`N` entries in, four out), into `out[c][16][t]`.
fn tile_transforms<const N: usize>(
    src: &[f32],
    s: &Shape,
    (c, n): (usize, usize),
    border: usize,
    out: &mut Vec<f32>,
    f: impl Fn([&[f32]; N], &mut [f32], [usize; 4]) + Sync,
) {
    let (th, tw) = tiles(s);
    let (cols, count) = (2 * tw + 2 * border, n * th * tw);
    let rows = 2 * th + 2 * border;
    par::for_parts(room(out, c * 16 * count), 16 * count, |c0, part| {
        with_scratch(rows * cols * n, 4 * N * n, |blk, tmp| {
            for (k, dst) in part.chunks_exact_mut(16 * count).enumerate() {
                block(src, s, (c, c0 + k, n), border, cols, blk);
                for tile in 0..th * tw {
                    let (ty, tx) = (tile / tw, tile % tw);
                    let d =
                        |i: usize, j: usize| &blk[((2 * ty + i) * cols + 2 * tx + j) * n..][..n];
                    // Down each column into tmp[i][j], then along each row into `out`.
                    for j in 0..N {
                        let at = [0, 1, 2, 3].map(|i| (N * i + j) * n);
                        f(std::array::from_fn(|i| d(i, j)), tmp, at);
                    }
                    for i in 0..4 {
                        let row = std::array::from_fn(|j| &tmp[(N * i + j) * n..][..n]);
                        f(
                            row,
                            dst,
                            [0, 1, 2, 3].map(|j| (4 * i + j) * count + tile * n),
                        );
                    }
                }
            }
        });
    });
}

/// `m[xi] = u[xi] v[xi] + beta m[xi]` for the 16 positions: `[rows, inner] x [inner, count]`
/// with `u` as `[rows][16][inner]` and `v` as `[inner][16][count]`; one product per thread
/// at a time.
fn products(
    u: &[f32],
    v: &[f32],
    rows: usize,
    inner: usize,
    count: usize,
    beta: f32,
    m: &mut [f32],
) {
    let each = rows * count;
    par::for_heavy_parts(&mut m[..16 * each], each, |xi0, part| {
        for (k, m) in part.chunks_exact_mut(each).enumerate() {
            let xi = xi0 + k;
            let a = Mat::strided(&u[xi * inner..], rows, inner, 16 * inner);
            let b = Mat::strided(&v[xi * count..], inner, count, 16 * count);
            gemm_on(Sgemm::Gemm, 1, a, b, beta, m);
        }
    });
}

/// `A^T m A` of every tile's products `m[16][c][t]`, plus `bias[co]`, into the outputs
/// (`n` examples of `c` planes `h x w`); tiles' rows and columns past the image are dropped.
/// Split over examples: each thread's lanes are its examples.
fn outputs(m: &[f32], s: &Shape, c: usize, n: usize, bias: Option<&[f32]>, out: &mut [f32]) {
    let (h, w) = (s.geom.h, s.geom.w);
    let (th, tw) = tiles(s);
    let count = n * th * tw;
    par::for_parts(&mut out[..n * c * h * w], c * h * w, |e0, part| {
        let ne = part.len() / (c * h * w);
        // The 2 x 2 outputs of every tile of one channel, `[2 th][2 tw][ne]`.
        with_scratch(4 * th * tw * ne, 8 * ne, |ys, tmp| {
            for co in 0..c {
                for tile in 0..th * tw {
                    let (ty, tx) = (tile / tw, tile % tw);
                    let at = |xi: usize| &m[(xi * c + co) * count + tile * n + e0..][..ne];
                    // A^T down each column into tmp[i][j], then along each row.
                    for j in 0..4 {
                        let [r0, r1] = two(tmp, ne, j, 4 + j);
                        let (p, q, s, u) = (at(j), at(4 + j), at(8 + j), at(12 + j));
                        for e in 0..ne {
                            r0[e] = p[e] + q[e] + s[e];
                            r1[e] = q[e] - s[e] - u[e];
                        }
                    }
                    for i in 0..2 {
                        let row = (2 * ty + i) * 2 * tw + 2 * tx;
                        let [y0, y1] = two(ys, ne, row, row + 1);
                        let t = |j: usize| &tmp[(4 * i + j) * ne..][..ne];
                        let (p, q, s, u) = (t(0), t(1), t(2), t(3));
                        for e in 0..ne {
                            y0[e] = p[e] + q[e] + s[e];
                            y1[e] = q[e] - s[e] - u[e];
                        }
                    }
                }
                let b = bias.map_or(0.0, |b| b[co]);
                // Eight examples at a time, each pixel's eight lanes read together.
                for e0 in (0..ne).step_by(8) {
                    let lanes = (ne - e0).min(8);
                    for y in 0..h {
                        for x in 0..w {
                            let src = &ys[(y * 2 * tw + x) * ne + e0..][..lanes];
                            for (i, &v) in src.iter().enumerate() {
                                part[(((e0 + i) * c + co) * h + y) * w + x] = v + b;
                            }
                        }
                    }
                }
            }
        });
    });
}

/// Rows `a` and `b` (`a < b`) of `rows` cut into rows of `len`, mutably.
fn two(rows: &mut [f32], len: usize, a: usize, b: usize) -> [&mut [f32]; 2] {
    let (lo, hi) = rows.split_at_mut(b * len);
    [&mut lo[a * len..][..len], &mut hi[..len]]
}

/// The adjoint of [`outputs`] (without bias): `A dY A^T` of every tile of the output
/// gradient `g` (zero past the image), into `dm[c][16][t]`.
fn output_grads(g: &[f32], s: &Shape, c: usize, n: usize, dm: &mut Vec<f32>) {
    tile_transforms::<2>(g, s, (c, n), 0, dm, a4);
}

/// `du[xi] += v[xi] dm[xi]^T` (`[c_in, count] x [count, c_out]`), `beta` 0 to start afresh.
fn weight_products(v: &[f32], dm: &[f32], s: &Shape, count: usize, beta: f32, du: &mut [f32]) {
    let (c_in, c_out) = (s.geom.c, s.c_out);
    let each = c_in * c_out;
    par::for_heavy_parts(&mut du[..16 * each], each, |xi0, part| {
        for (k, du) in part.chunks_exact_mut(each).enumerate() {
            let xi = xi0 + k;
            let a = Mat::strided(&v[xi * count..], c_in, count, 16 * count);
            let b = Mat::strided(&dm[xi * count..], c_out, count, 16 * count).t();
            gemm_on(Sgemm::Gemm, 1, a, b, beta, du);
        }
    });
}

/// The convolution of `x` (`n` examples) with the transformed kernels `u` (`c_out` of
/// `c_in` channels), plus `bias`: into `out`, through `v` and `m`.
#[allow(clippy::too_many_arguments)]
fn convolve(
    u: &[f32],
    x: &[f32],
    s: &Shape,
    (c_in, c_out): (usize, usize),
    n: usize,
    bias: Option<&[f32]>,
    (v, m): (&mut Vec<f32>, &mut Vec<f32>),
    out: &mut [f32],
) {
    let (th, tw) = tiles(s);
    let count = n * th * tw;
    inputs(x, s, c_in, n, v);
    products(u, v, c_out, c_in, count, 0.0, room(m, 16 * c_out * count));
    outputs(m, s, c_out, n, bias, out);
}

pub(super) fn forward(
    w: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    s: Shape,
    ws: &mut Buffers,
    out: &mut [f32],
) {
    let (c_in, c_out, len, out_len) = sizes(&s);
    kernels(w, c_out, c_in, &mut ws.u);
    for (b0, n) in chunks(&s) {
        let x = &x[b0 * len..(b0 + n) * len];
        let out = &mut out[b0 * out_len..(b0 + n) * out_len];
        convolve(
            &ws.u,
            x,
            &s,
            (c_in, c_out),
            n,
            bias,
            (&mut ws.v, &mut ws.m),
            out,
        );
    }
}

/// The weight gradient into `gw` (overwritten) and, when asked, the input gradient.
pub(super) fn backward(
    w: &[f32],
    x: &[f32],
    g: &[f32],
    s: Shape,
    ws: &mut Buffers,
    gw: &mut [f32],
    mut g_in: Option<&mut [f32]>,
) {
    let (c_in, c_out, len, out_len) = sizes(&s);
    let (th, tw) = tiles(&s);
    if g_in.is_some() {
        flip(w, c_out, c_in, &mut ws.flipped);
        kernels(&ws.flipped, c_in, c_out, &mut ws.u);
    }
    room(&mut ws.du, 16 * c_in * c_out);
    for (i, (b0, n)) in chunks(&s).enumerate() {
        let count = n * th * tw;
        let (x, g) = (
            &x[b0 * len..(b0 + n) * len],
            &g[b0 * out_len..(b0 + n) * out_len],
        );
        inputs(x, &s, c_in, n, &mut ws.v);
        output_grads(g, &s, c_out, n, &mut ws.m);
        let beta = if i == 0 { 0.0 } else { 1.0 };
        weight_products(&ws.v, &ws.m, &s, count, beta, &mut ws.du);
        if let Some(g_in) = g_in.as_deref_mut() {
            let g_in = &mut g_in[b0 * len..(b0 + n) * len];
            convolve(
                &ws.u,
                g,
                &s,
                (c_out, c_in),
                n,
                None,
                (&mut ws.v, &mut ws.m),
                g_in,
            );
        }
    }
    kernel_grads(&ws.du, c_out, c_in, gw);
}

/// `t_out = conv(tw, x) + conv(w, t_in) + tb`, summed in the transformed domain.
#[allow(clippy::too_many_arguments)]
pub(super) fn jvp(
    w: &[f32],
    tw: &[f32],
    tb: Option<&[f32]>,
    x: &[f32],
    t_in: Option<&[f32]>,
    s: Shape,
    ws: &mut Buffers,
    t_out: &mut [f32],
) {
    let (c_in, c_out, len, out_len) = sizes(&s);
    let per_example = {
        let (th, tw) = tiles(&s);
        th * tw
    };
    kernels(tw, c_out, c_in, &mut ws.u);
    if t_in.is_some() {
        kernels(w, c_out, c_in, &mut ws.u2);
    }
    for (b0, n) in chunks(&s) {
        let count = n * per_example;
        let Buffers {
            u, u2, v, v2, m, ..
        } = ws;
        inputs(&x[b0 * len..(b0 + n) * len], &s, c_in, n, v);
        products(u, v, c_out, c_in, count, 0.0, room(m, 16 * c_out * count));
        if let Some(t_in) = t_in {
            inputs(&t_in[b0 * len..(b0 + n) * len], &s, c_in, n, v2);
            products(u2, v2, c_out, c_in, count, 1.0, m);
        }
        outputs(
            m,
            &s,
            c_out,
            n,
            tb,
            &mut t_out[b0 * out_len..(b0 + n) * out_len],
        );
    }
}
