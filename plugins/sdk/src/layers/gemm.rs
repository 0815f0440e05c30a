//! The matrix product every layer uses: a single-threaded SGEMM from a crate, with large
//! products split by columns (or rows) across the layers' threads.

use std::ops::Range;

use super::par;

/// Which crate multiplies. The two agree to f32 rounding, not bit for bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sgemm {
    /// `gemm` (AVX-512 kernels where the CPU has them): convolutions, whose products it runs
    /// faster in the orientations `conv` uses, two to seven times for the weight gradients.
    Gemm,
    /// `matrixmultiply`: dense layers, so that the table models' published results, taken with
    /// it, stay reproducible bit for bit.
    Matrixmultiply,
}

/// A matrix view for [`gemm`]: `rows x cols` with the given strides into `data`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows x cols` matrix.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// A `rows x cols` matrix whose rows start `row_stride` floats apart.
    pub(crate) fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Mat<'a> {
        Mat {
            row_stride,
            ..Mat::new(data, rows, cols)
        }
    }

    /// The transpose, without moving data.
    pub(crate) fn t(self) -> Mat<'a> {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// GEMMs smaller than this many multiply-adds run on one thread: spawning costs more.
const PARALLEL_MIN_MACS: usize = 1 << 22;

/// `c = a b + beta c`, `c` row-major `a.rows x b.cols`. Large products split `c`'s columns
/// (or, when there are few, its rows) into one block per thread.
pub(crate) fn gemm(lib: Sgemm, a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32]) {
    gemm_on(lib, par::threads(), a, b, beta, c)
}

/// [`gemm`] on at most `threads` threads (1 inside work that is already split across them).
pub(crate) fn gemm_on(
    lib: Sgemm,
    threads: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: &mut [f32],
) {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    assert!(
        a.fits() && b.fits() && c.len() >= a.rows * b.cols,
        "matrix views exceed their buffers"
    );
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let c_ptr = SendPtr(c.as_mut_ptr());
    // Rows `rows` and columns `cols` of C.
    let block = |rows: Range<usize>, cols: Range<usize>| {
        // SAFETY: the asserts above keep every index sgemm touches inside `a.data`, `b.data`
        // and `c` (rows `rows` of A and C, columns `cols` of B and C are inside them); `c` is
        // borrowed mutably for this call, so it aliases neither input, and blocks cover
        // disjoint parts of C.
        unsafe {
            let c = c_ptr.at(rows.start * n + cols.start);
            let a_data = a.data.as_ptr().add(rows.start * a.row_stride);
            let b_data = b.data.as_ptr().add(cols.start * b.col_stride);
            let (a_rs, a_cs) = (a.row_stride as isize, a.col_stride as isize);
            let (b_rs, b_cs) = (b.row_stride as isize, b.col_stride as isize);
            let (m, n_block) = (rows.len(), cols.len());
            match lib {
                Sgemm::Gemm => gemm::gemm(
                    m,
                    n_block,
                    k,
                    c,
                    1,
                    n as isize,
                    beta != 0.0,
                    a_data,
                    a_cs,
                    a_rs,
                    b_data,
                    b_cs,
                    b_rs,
                    beta,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                ),
                Sgemm::Matrixmultiply => matrixmultiply::sgemm(
                    m, k, n_block, 1.0, a_data, a_rs, a_cs, b_data, b_rs, b_cs, beta, c,
                    n as isize, 1,
                ),
            }
        }
    };
    let threads = threads.max(1);
    // Columns split into blocks of at least 64; a product too narrow for that (a weight
    // gradient with few output channels, a small dense layer) splits its rows instead. Either
    // way every entry of C is one thread's whole sum.
    let split = if threads == 1 || m * k * n < PARALLEL_MIN_MACS {
        None
    } else if n / 64 >= 2 {
        Some((false, threads.min(n / 64)))
    } else if m / 8 >= 2 {
        Some((true, threads.min(m / 8)))
    } else {
        None
    };
    let Some((by_rows, parts)) = split else {
        block(0..m, 0..n);
        return;
    };
    let len = if by_rows { m } else { n };
    let chunk = len.div_ceil(parts);
    let part = |start: usize| {
        let range = start..(start + chunk).min(len);
        if by_rows {
            block(range, 0..n)
        } else {
            block(0..m, range)
        }
    };
    par::pool().scope(|scope| {
        for start in (chunk..len).step_by(chunk) {
            scope.spawn(move |_| part(start));
        }
        part(0);
    });
}

/// A pointer into C that threads may share: each writes only its own block.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

// SAFETY: the threads of one `gemm` call write disjoint blocks through it, and the scope ends
// before the borrow of C does.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// # Safety
    /// `offset` must lie within the matrix the pointer addresses.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: guaranteed by the caller.
        unsafe { self.0.add(offset) }
    }
}
