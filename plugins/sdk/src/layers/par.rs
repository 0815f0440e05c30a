//! The layers' worker threads: one rayon pool per plugin, `EVOMAL_MODEL_THREADS` wide (else
//! every core), which runs the GEMM blocks, the convolution chunks and the element-wise passes.
//! Every split is over outputs, never inside a sum, so results do not depend on the thread
//! count.

use std::sync::OnceLock;

use rayon::prelude::*;

/// Below this many entries an element-wise pass stays on the calling thread: handing it to the
/// pool costs more than it saves.
const PAR_MIN: usize = 1 << 15;

#[cfg(not(test))]
fn par_min() -> usize {
    PAR_MIN
}

#[cfg(test)]
thread_local! {
    /// Tests lower the threshold to split the small layers they check.
    pub(super) static TEST_PAR_MIN: std::cell::Cell<usize> = const { std::cell::Cell::new(PAR_MIN) };
}

#[cfg(test)]
fn par_min() -> usize {
    TEST_PAR_MIN.get()
}

/// Threads the layers use: `EVOMAL_MODEL_THREADS`, else every available core.
pub(crate) fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("EVOMAL_MODEL_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// The pool, built on first use.
pub(crate) fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads())
            .thread_name(|i| format!("evomal-model-{i}"))
            .build()
            .unwrap_or_else(|e| panic!("cannot start the model's worker threads: {e}"))
    })
}

/// Runs `f(first unit, part)` over `out` cut into one contiguous part of whole `unit`s per
/// thread (on the calling thread when `out` is small). `unit` is the length that must not be
/// split, e.g. one example's features.
pub(crate) fn for_parts<T: Send>(out: &mut [T], unit: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    split(out, unit, par_min(), f)
}

/// [`for_parts`] for units that are each a lot of work whatever their length (a matrix
/// product's output): split whenever there are two or more.
pub(crate) fn for_heavy_parts<T: Send>(
    out: &mut [T],
    unit: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    split(out, unit, 0, f)
}

fn split<T: Send>(out: &mut [T], unit: usize, min_len: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let units = out.len() / unit.max(1);
    let threads = threads().min(units);
    if threads <= 1 || out.len() < min_len {
        f(0, out);
        return;
    }
    let per = units.div_ceil(threads) * unit;
    pool().install(|| {
        out.par_chunks_mut(per)
            .enumerate()
            .for_each(|(i, part)| f(i * per / unit, part))
    });
}

/// [`for_parts`] over two arrays of the same length cut at the same places.
pub(crate) fn for_parts2<A: Send, B: Send>(
    a: &mut [A],
    b: &mut [B],
    unit: usize,
    f: impl Fn(usize, &mut [A], &mut [B]) + Sync,
) {
    assert_eq!(a.len(), b.len(), "arrays cut together have one length");
    let units = a.len() / unit.max(1);
    let threads = threads().min(units);
    if threads <= 1 || a.len() < par_min() {
        f(0, a, b);
        return;
    }
    let per = units.div_ceil(threads) * unit;
    pool().install(|| {
        a.par_chunks_mut(per)
            .zip(b.par_chunks_mut(per))
            .enumerate()
            .for_each(|(i, (a, b))| f(i * per / unit, a, b))
    });
}

/// [`for_parts`] over three arrays of the same length cut at the same places.
pub(crate) fn for_parts3<A: Send, B: Send, C: Send>(
    a: &mut [A],
    b: &mut [B],
    c: &mut [C],
    f: impl Fn(usize, &mut [A], &mut [B], &mut [C]) + Sync,
) {
    assert!(
        a.len() == b.len() && b.len() == c.len(),
        "arrays cut together have one length"
    );
    let threads = threads().min(a.len());
    if threads <= 1 || a.len() < par_min() {
        f(0, a, b, c);
        return;
    }
    let per = a.len().div_ceil(threads);
    pool().install(|| {
        a.par_chunks_mut(per)
            .zip(b.par_chunks_mut(per))
            .zip(c.par_chunks_mut(per))
            .enumerate()
            .for_each(|(i, ((a, b), c))| f(i * per, a, b, c))
    });
}

/// `(0..n).map(f).collect()`, the items computed in parallel when there are `work` floats or
/// more to read in all.
pub(crate) fn map_collect<T: Send>(n: usize, work: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if threads() <= 1 || work < par_min() {
        return (0..n).map(f).collect();
    }
    pool().install(|| (0..n).into_par_iter().map(&f).collect())
}

/// `out[i] = f(a[i])`, in parallel for long arrays.
pub(crate) fn map(a: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    for_parts(out, 1, |at, part| {
        let a = &a[at..at + part.len()];
        part.iter_mut().zip(a).for_each(|(o, &v)| *o = f(v));
    });
}

/// `out[i] = f(a[i], b[i])`, in parallel for long arrays.
pub(crate) fn zip_map(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    for_parts(out, 1, |at, part| {
        let (a, b) = (&a[at..at + part.len()], &b[at..at + part.len()]);
        part.iter_mut()
            .zip(a.iter().zip(b))
            .for_each(|(o, (&x, &y))| *o = f(x, y));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_unit_once_in_order() {
        let mut out = vec![0.0f32; 3 * 40_000 + 3];
        for_parts(&mut out, 3, |first, part| {
            assert_eq!(part.len() % 3, 0);
            for (k, v) in part.iter_mut().enumerate() {
                *v = (first * 3 + k) as f32;
            }
        });
        assert!(out.iter().enumerate().all(|(i, &v)| v == i as f32));
        let squares = map_collect(100, usize::MAX, |i| i * i);
        assert_eq!(squares, (0..100).map(|i| i * i).collect::<Vec<_>>());
    }
}
