//! Dense (fully connected) layers: `y = x W + b` over `[batch][features]`.

use super::{Mat, Sgemm, gemm};

pub(super) fn forward(
    p: &[f32],
    x: &[f32],
    batch: usize,
    inputs: usize,
    outputs: usize,
    out: &mut [f32],
) {
    let (w, b) = p.split_at(inputs * outputs);
    for row in out.chunks_exact_mut(outputs) {
        row.copy_from_slice(b);
    }
    gemm(
        Sgemm::Matrixmultiply,
        Mat::new(x, batch, inputs),
        Mat::new(w, inputs, outputs),
        1.0,
        out,
    );
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    p: &[f32],
    x: &[f32],
    g: &[f32],
    batch: usize,
    inputs: usize,
    outputs: usize,
    grad: &mut [f32],
    g_in: Option<&mut [f32]>,
) {
    let (gw, gb) = grad.split_at_mut(inputs * outputs);
    let g_mat = Mat::new(g, batch, outputs);
    gemm(
        Sgemm::Matrixmultiply,
        Mat::new(x, batch, inputs).t(),
        g_mat,
        0.0,
        gw,
    );
    gb.fill(0.0);
    for row in g.chunks_exact(outputs) {
        gb.iter_mut().zip(row).for_each(|(b, &v)| *b += v);
    }
    if let Some(g_in) = g_in {
        gemm(
            Sgemm::Matrixmultiply,
            g_mat,
            Mat::new(&p[..inputs * outputs], inputs, outputs).t(),
            0.0,
            g_in,
        );
    }
}

/// `t_out = t_in W + x dW + db`.
#[allow(clippy::too_many_arguments)]
pub(super) fn jvp(
    p: &[f32],
    tp: &[f32],
    x: &[f32],
    t_in: Option<&[f32]>,
    batch: usize,
    inputs: usize,
    outputs: usize,
    t_out: &mut [f32],
) {
    let (tw, tb) = tp.split_at(inputs * outputs);
    for row in t_out.chunks_exact_mut(outputs) {
        row.copy_from_slice(tb);
    }
    gemm(
        Sgemm::Matrixmultiply,
        Mat::new(x, batch, inputs),
        Mat::new(tw, inputs, outputs),
        1.0,
        t_out,
    );
    if let Some(t_in) = t_in {
        gemm(
            Sgemm::Matrixmultiply,
            Mat::new(t_in, batch, inputs),
            Mat::new(&p[..inputs * outputs], inputs, outputs),
            1.0,
            t_out,
        );
    }
}
