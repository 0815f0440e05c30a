//! The matrix product every layer uses: a single-threaded SGEMM from a crate, with large
//! products split by columns across the layers' threads.

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
/// into one block per thread.
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
    let threads = threads.min(n / 64).max(1);
    let c_ptr = SendPtr(c.as_mut_ptr());
    let block = |start: usize, end: usize| {
        // SAFETY: the asserts above keep every index sgemm touches inside `a.data`, `b.data`
        // and `c` (columns `start..end` of B and C are inside them); `c` is borrowed mutably for
        // this call, so it aliases neither input, and blocks cover disjoint columns of C.
        unsafe {
            let (c, b_data) = (c_ptr.at(start), b.data.as_ptr().add(start * b.col_stride));
            let (a_rs, a_cs) = (a.row_stride as isize, a.col_stride as isize);
            let (b_rs, b_cs) = (b.row_stride as isize, b.col_stride as isize);
            match lib {
                Sgemm::Gemm => gemm::gemm(
                    m,
                    end - start,
                    k,
                    c,
                    1,
                    n as isize,
                    beta != 0.0,
                    a.data.as_ptr(),
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
                    m,
                    k,
                    end - start,
                    1.0,
                    a.data.as_ptr(),
                    a_rs,
                    a_cs,
                    b_data,
                    b_rs,
                    b_cs,
                    beta,
                    c,
                    n as isize,
                    1,
                ),
            }
        }
    };
    if threads == 1 || m * k * n < PARALLEL_MIN_MACS {
        block(0, n);
        return;
    }
    let chunk = n.div_ceil(threads);
    par::pool().scope(|scope| {
        for start in (chunk..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            scope.spawn(move |_| block(start, end));
        }
        block(0, chunk.min(n));
    });
}

/// A pointer into C that threads may share: each writes only its own columns.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

// SAFETY: the threads of one `gemm` call write disjoint columns through it, and the scope ends
// before the borrow of C does.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// # Safety
    /// `col` must lie within the row-major matrix the pointer addresses.
    unsafe fn at(self, col: usize) -> *mut f32 {
        // SAFETY: guaranteed by the caller.
        unsafe { self.0.add(col) }
    }
}
