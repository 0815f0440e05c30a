//! The column matrix of a convolution (im2col) and its adjoint (col2im): `[c_in k k, examples
//! x ho x wo]`, row `(ci, ki, kj)` holding every output pixel's input at that kernel offset.
//! A convolution that keeps the image size (stride 1, padding `(k - 1) / 2`) moves whole planes
//! by one flat shift per kernel offset; any other walks row by row.

use super::conv::Shape;
use super::{Geom, par};

/// `cols[(ci k k + ki k + kj), (e howo + oi wo + oj)] = x[e, ci, oi s + ki - pad,
/// oj s + kj - pad]` (0 outside) for the `n` examples of `x`; rows split across threads.
pub(super) fn im2col(x: &[f32], s: Shape, n: usize, cols: &mut Vec<f32>) {
    let (ho, wo) = s.out_hw();
    let Geom { c, h, w } = s.geom;
    let (howo, width, kk) = (ho * wo, n * ho * wo, s.k * s.k);
    cols.resize(s.ckk() * width, 0.0);
    par::for_parts(cols, width, |r0, rows| {
        for (r, dst_row) in rows.chunks_exact_mut(width).enumerate() {
            let row = r0 + r;
            let (ci, ki, kj) = (row / kk, row / s.k % s.k, row % s.k);
            let (cut, shift) = (
                Cut::new(w, wo, kj as isize - s.pad as isize, s.stride),
                Shift::new(s, ki, kj),
            );
            for (e, dst) in dst_row.chunks_exact_mut(howo).enumerate() {
                let plane = &x[(e * c + ci) * h * w..][..h * w];
                if let Some(shift) = shift {
                    shift.copy(plane, dst);
                    continue;
                }
                for (oi, out) in dst.chunks_exact_mut(wo).enumerate() {
                    match source_row(oi, ki, s) {
                        Some(ii) => cut.copy(&plane[ii * w..(ii + 1) * w], out),
                        None => out.fill(0.0),
                    }
                }
            }
        }
    });
}

/// The input row that output row `oi` reads at kernel row `ki`, if inside the image.
fn source_row(oi: usize, ki: usize, s: Shape) -> Option<usize> {
    let ii = (oi * s.stride + ki) as isize - s.pad as isize;
    (ii >= 0 && (ii as usize) < s.geom.h).then_some(ii as usize)
}

/// Which output columns `oj` of a row read input column `oj stride + shift` inside a row of
/// the image (`lo..hi`), for one kernel column: computed once, applied to every row.
#[derive(Clone, Copy)]
struct Cut {
    lo: usize,
    hi: usize,
    shift: isize,
    stride: usize,
}

impl Cut {
    fn new(w: usize, wo: usize, shift: isize, stride: usize) -> Cut {
        let lo = if shift >= 0 {
            0
        } else {
            ((-shift) as usize).div_ceil(stride)
        };
        let hi = if w as isize - shift <= 0 {
            0
        } else {
            ((w as isize - shift) as usize).div_ceil(stride)
        };
        let lo = lo.min(wo);
        Cut {
            lo,
            hi: hi.clamp(lo, wo),
            shift,
            stride,
        }
    }

    fn at(self, oj: usize) -> usize {
        ((oj * self.stride) as isize + self.shift) as usize
    }

    /// `out[oj] = src[oj stride + shift]`, 0 where that falls outside `src`.
    #[inline]
    fn copy(self, src: &[f32], out: &mut [f32]) {
        let Cut { lo, hi, .. } = self;
        out[..lo].fill(0.0);
        out[hi..].fill(0.0);
        if lo == hi {
            return;
        }
        if self.stride == 1 {
            out[lo..hi].copy_from_slice(&src[self.at(lo)..self.at(hi - 1) + 1]);
        } else {
            for (oj, o) in out.iter_mut().enumerate().take(hi).skip(lo) {
                *o = src[self.at(oj)];
            }
        }
    }

    /// The adjoint of [`Cut::copy`]: `dst[oj stride + shift] += src[oj]` where that is inside.
    #[inline]
    fn add(self, src: &[f32], dst: &mut [f32]) {
        let Cut { lo, hi, .. } = self;
        if lo == hi {
            return;
        }
        if self.stride == 1 {
            let dst = &mut dst[self.at(lo)..self.at(hi - 1) + 1];
            dst.iter_mut().zip(&src[lo..hi]).for_each(|(d, &v)| *d += v);
        } else {
            for (oj, &v) in src.iter().enumerate().take(hi).skip(lo) {
                dst[self.at(oj)] += v;
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every column entry back onto the pixel it came from, into
/// `x_grad` (the `n` examples' part, which it overwrites); examples split across threads. The
/// entries of `cols` that im2col leaves 0 may be zeroed (they carry no pixel).
pub(super) fn col2im(cols: &mut [f32], s: Shape, n: usize, x_grad: &mut [f32]) {
    let (ho, wo) = s.out_hw();
    let Geom { c, h, w } = s.geom;
    let (howo, width) = (ho * wo, n * ho * wo);
    if Shift::new(s, 0, 0).is_some() {
        // A shifted plane is added whole, so the entries that wrap around a row must add 0.
        par::for_parts(cols, width, |r0, rows| {
            for (r, row) in rows.chunks_exact_mut(width).enumerate() {
                let (ki, kj) = ((r0 + r) / s.k % s.k, (r0 + r) % s.k);
                let wrapped = Shift::new(s, ki, kj).map_or(0..0, Shift::wrapped);
                for line in row.chunks_exact_mut(w) {
                    line[wrapped.clone()].fill(0.0);
                }
            }
        });
    }
    let cols = &*cols;
    par::for_parts(x_grad, c * h * w, |e0, part| {
        part.fill(0.0);
        for (de, example) in part.chunks_exact_mut(c * h * w).enumerate() {
            let e = e0 + de;
            for (ci, plane) in example.chunks_exact_mut(h * w).enumerate() {
                for ki in 0..s.k {
                    for kj in 0..s.k {
                        let row = (ci * s.k + ki) * s.k + kj;
                        let src = &cols[row * width + e * howo..][..howo];
                        if let Some(shift) = Shift::new(s, ki, kj) {
                            shift.add(src, plane);
                            continue;
                        }
                        let cut = Cut::new(w, wo, kj as isize - s.pad as isize, s.stride);
                        for (oi, src) in src.chunks_exact(wo).enumerate() {
                            if let Some(ii) = source_row(oi, ki, s) {
                                cut.add(src, &mut plane[ii * w..(ii + 1) * w]);
                            }
                        }
                    }
                }
            }
        }
    });
}

/// For a convolution that keeps the image size, one kernel offset `(ki, kj)`: output pixel `t`
/// (flat in its plane) reads input pixel `t + shift`, for the output rows `lo..hi` that lie
/// inside the image, except the columns that wrap around a row (see [`Shift::wrapped`]).
#[derive(Clone, Copy)]
struct Shift {
    shift: isize,
    lo: usize,
    hi: usize,
    /// The kernel column's offset from the centre: its sign says which side wraps.
    col: isize,
    w: usize,
    hw: usize,
}

impl Shift {
    /// `None` unless the convolution keeps the size (stride 1, padding `(k - 1) / 2`).
    fn new(s: Shape, ki: usize, kj: usize) -> Option<Shift> {
        if s.stride != 1 || 2 * s.pad + 1 != s.k {
            return None;
        }
        let Geom { h, w, .. } = s.geom;
        let (dr, dc) = (ki as isize - s.pad as isize, kj as isize - s.pad as isize);
        let lo = (-dr).clamp(0, h as isize);
        let hi = (h as isize - dr).clamp(lo, h as isize);
        Some(Shift {
            shift: dr * w as isize + dc,
            lo: lo as usize,
            hi: hi as usize,
            col: dc,
            w,
            hw: h * w,
        })
    }

    /// The flat output range `t0..t1` of rows `lo..hi` whose sources lie inside the plane (what
    /// falls outside it wraps around a row too).
    fn span(self) -> (usize, usize) {
        let hw = self.hw as isize;
        let t0 = ((self.lo * self.w) as isize).max(-self.shift).min(hw);
        let t1 = ((self.hi * self.w) as isize).min(hw - self.shift).max(t0);
        (t0 as usize, t1 as usize)
    }

    /// The columns of every row whose source lies in the row before or after.
    fn wrapped(self) -> std::ops::Range<usize> {
        let n = (self.col.unsigned_abs()).min(self.w);
        if self.col < 0 {
            0..n
        } else {
            self.w - n..self.w
        }
    }

    /// One plane's row of the column matrix: `dst[t] = src[t + shift]`, 0 outside the image.
    fn copy(self, src: &[f32], dst: &mut [f32]) {
        let (t0, t1) = self.span();
        dst[..t0].fill(0.0);
        dst[t1..].fill(0.0);
        if t0 == t1 {
            return;
        }
        let from = (t0 as isize + self.shift) as usize;
        dst[t0..t1].copy_from_slice(&src[from..from + (t1 - t0)]);
        if self.col != 0 {
            for row in dst[self.lo * self.w..self.hi * self.w].chunks_exact_mut(self.w) {
                row[self.wrapped()].fill(0.0);
            }
        }
    }

    /// The adjoint of [`Shift::copy`], `dst[t + shift] += src[t]`, for a `src` whose wrapped
    /// entries are 0.
    fn add(self, src: &[f32], dst: &mut [f32]) {
        let (t0, t1) = self.span();
        if t0 == t1 {
            return;
        }
        let from = (t0 as isize + self.shift) as usize;
        dst[from..from + (t1 - t0)]
            .iter_mut()
            .zip(&src[t0..t1])
            .for_each(|(d, &v)| *d += v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `<im2col(x), C> = <x, col2im(C)>` and im2col against its definition, for size-keeping
    /// convolutions (the shifted planes, tiny images among them) and others.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        let geoms = [
            (2, 5, 4, 3, 1, 1),
            (1, 3, 2, 5, 1, 2),
            (2, 1, 1, 3, 1, 1),
            (2, 7, 6, 3, 2, 1),
            (1, 6, 6, 5, 1, 0),
            (3, 4, 5, 1, 1, 0),
        ];
        for (c, h, w, k, stride, pad) in geoms {
            let s = Shape {
                batch: 3,
                geom: Geom { c, h, w },
                c_out: 1,
                k,
                stride,
                pad,
                bias: false,
            };
            let n = 3;
            let x: Vec<f32> = (0..n * c * h * w)
                .map(|i| ((i * 7919) % 13) as f32 - 6.0)
                .collect();
            let mut cols = Vec::new();
            im2col(&x, s, n, &mut cols);
            let (ho, wo) = s.out_hw();
            for (row, line) in cols.chunks_exact(n * ho * wo).enumerate() {
                let (ci, ki, kj) = (row / (k * k), row / k % k, row % k);
                for (t, &got) in line.iter().enumerate() {
                    let (e, oi, oj) = (t / (ho * wo), t / wo % ho, t % wo);
                    let ii = (oi * stride + ki) as isize - pad as isize;
                    let jj = (oj * stride + kj) as isize - pad as isize;
                    let inside = ii >= 0 && jj >= 0 && ii < h as isize && jj < w as isize;
                    let want = if inside {
                        x[((e * c + ci) * h + ii as usize) * w + jj as usize]
                    } else {
                        0.0
                    };
                    assert_eq!(
                        got,
                        want,
                        "{:?} row {row} entry {t}",
                        (c, h, w, k, stride, pad)
                    );
                }
            }
            let mut cg: Vec<f32> = (0..cols.len())
                .map(|i| ((i * 104729) % 11) as f32 - 5.0)
                .collect();
            let lhs: f64 = cols
                .iter()
                .zip(&cg)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let mut xg = vec![f32::NAN; x.len()];
            col2im(&mut cg, s, n, &mut xg);
            let rhs: f64 = x.iter().zip(&xg).map(|(&a, &b)| a as f64 * b as f64).sum();
            assert_eq!(lhs, rhs, "{:?}", (c, h, w, k, stride, pad));
        }
    }
}
