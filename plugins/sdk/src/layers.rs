//! CPU layers with forward, backward (vector-Jacobian) and forward-mode (Jacobian-vector)
//! passes, stacked by [`Sequential`] over one flat parameter vector. Activations are row-major
//! `[batch][features]`. Dense layers multiply with `matrixmultiply`'s GEMM.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Model;

/// Weight initialisation of a dense layer (biases start at zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio).
    XavierUniform,
    /// U(-a, a), a = sqrt(6 / fan_in) (He et al., for ReLU).
    HeUniform,
}

/// One layer of a [`Sequential`] model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Layer {
    /// `y = x W + b`, `W` is `inputs x outputs` row-major, then `b`.
    Dense {
        inputs: usize,
        outputs: usize,
        init: Init,
    },
    Relu,
    Tanh,
    Sigmoid,
    /// Reshapes to one feature vector per example (no data movement).
    Flatten,
}

impl Layer {
    fn n_params(&self) -> usize {
        match *self {
            Layer::Dense {
                inputs, outputs, ..
            } => inputs * outputs + outputs,
            _ => 0,
        }
    }
}

/// A stack of layers; owns the activations of the last forward pass.
pub struct Sequential {
    layers: Vec<Layer>,
    /// Per-example feature count entering each layer, plus the output's.
    widths: Vec<usize>,
    /// Offset of each layer's parameters in the flat vector.
    offsets: Vec<usize>,
    n_params: usize,
    seed_salt: u64,
    batch: usize,
    /// acts[i] is the input of layer i; acts[n] the output.
    acts: Vec<Vec<f32>>,
    /// Tangents of the activations during `jvp`; gradient buffers during `backward`.
    scratch: [Vec<f32>; 2],
}

impl Sequential {
    /// A model for examples of `input_len` floats.
    pub fn new(input_len: usize, layers: Vec<Layer>) -> Result<Sequential, String> {
        let mut widths = vec![input_len];
        let mut offsets = Vec::with_capacity(layers.len());
        let mut n_params = 0;
        for (i, l) in layers.iter().enumerate() {
            let w = widths[i];
            let out = match *l {
                Layer::Dense {
                    inputs, outputs, ..
                } if inputs == w => outputs,
                Layer::Dense { inputs, .. } => {
                    return Err(format!(
                        "layer {i}: dense expects {inputs} inputs, gets {w}"
                    ));
                }
                _ => w,
            };
            offsets.push(n_params);
            n_params += l.n_params();
            widths.push(out);
        }
        Ok(Sequential {
            acts: vec![Vec::new(); layers.len() + 1],
            layers,
            widths,
            offsets,
            n_params,
            seed_salt: 0,
            batch: 0,
            scratch: [Vec::new(), Vec::new()],
        })
    }

    /// A multi-layer perceptron `input -> hidden... -> outputs` with `activation` between dense
    /// layers, Xavier-uniform initialised (the EvoMAL reference setting).
    pub fn mlp(
        input_len: usize,
        hidden: &[usize],
        outputs: usize,
        activation: Layer,
    ) -> Result<Sequential, String> {
        let mut layers = Vec::new();
        let mut w = input_len;
        for &h in hidden {
            layers.push(Layer::Dense {
                inputs: w,
                outputs: h,
                init: Init::XavierUniform,
            });
            layers.push(activation);
            w = h;
        }
        layers.push(Layer::Dense {
            inputs: w,
            outputs,
            init: Init::XavierUniform,
        });
        Sequential::new(input_len, layers)
    }

    fn params_of<'a>(&self, i: usize, params: &'a [f32]) -> &'a [f32] {
        &params[self.offsets[i]..self.offsets[i] + self.layers[i].n_params()]
    }

    fn run_forward(&mut self, params: &[f32], x: &[f32], batch: usize) {
        self.batch = batch;
        self.acts[0].clear();
        self.acts[0].extend_from_slice(x);
        for i in 0..self.layers.len() {
            let (before, after) = self.acts.split_at_mut(i + 1);
            let (input, out) = (&before[i], &mut after[0]);
            out.resize(batch * self.widths[i + 1], 0.0);
            let p = &params[self.offsets[i]..self.offsets[i] + self.layers[i].n_params()];
            match self.layers[i] {
                Layer::Dense {
                    inputs, outputs, ..
                } => dense_forward(p, input, batch, inputs, outputs, out),
                Layer::Relu => map(input, out, |v| v.max(0.0)),
                Layer::Tanh => map(input, out, f32::tanh),
                Layer::Sigmoid => map(input, out, |v| 1.0 / (1.0 + (-v).exp())),
                Layer::Flatten => out.copy_from_slice(input),
            }
        }
    }
}

impl Model for Sequential {
    fn n_params(&self) -> usize {
        self.n_params
    }

    fn input_len(&self) -> usize {
        self.widths[0]
    }

    fn n_outputs(&self) -> usize {
        self.widths[self.layers.len()]
    }

    fn has_jvp(&self) -> bool {
        true
    }

    fn init(&self, seed: u64, params: &mut [f32]) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ self.seed_salt);
        params.fill(0.0);
        for (i, l) in self.layers.iter().enumerate() {
            if let Layer::Dense {
                inputs,
                outputs,
                init,
            } = *l
            {
                let a = match init {
                    Init::XavierUniform => (6.0 / (inputs + outputs) as f64).sqrt(),
                    Init::HeUniform => (6.0 / inputs as f64).sqrt(),
                } as f32;
                let w = &mut params[self.offsets[i]..self.offsets[i] + inputs * outputs];
                w.iter_mut().for_each(|v| *v = rng.random_range(-a..a));
            }
        }
    }

    fn forward(
        &mut self,
        params: &[f32],
        x: &[f32],
        batch: usize,
        out: &mut [f32],
    ) -> Result<(), String> {
        self.run_forward(params, x, batch);
        out.copy_from_slice(&self.acts[self.layers.len()]);
        Ok(())
    }

    fn backward(&mut self, params: &[f32], dout: &[f32], grad: &mut [f32]) -> Result<(), String> {
        let n = self.layers.len();
        let batch = self.batch;
        if dout.len() != batch * self.widths[n] {
            return Err(format!(
                "`dout` has {} floats, expected {} (backward follows the last forward's batch of {batch})",
                dout.len(),
                batch * self.widths[n]
            ));
        }
        let [g, g_in] = &mut self.scratch;
        g.clear();
        g.extend_from_slice(dout);
        for i in (0..n).rev() {
            let (input, output) = (&self.acts[i], &self.acts[i + 1]);
            let need_input_grad = i > 0;
            g_in.resize(batch * self.widths[i], 0.0);
            match self.layers[i] {
                Layer::Dense {
                    inputs, outputs, ..
                } => {
                    let p = &params[self.offsets[i]..self.offsets[i] + self.layers[i].n_params()];
                    let gp =
                        &mut grad[self.offsets[i]..self.offsets[i] + inputs * outputs + outputs];
                    dense_backward(
                        p,
                        input,
                        g,
                        batch,
                        inputs,
                        outputs,
                        gp,
                        need_input_grad.then_some(&mut *g_in),
                    );
                }
                Layer::Relu => zip_map(g, input, g_in, |g, x| if x > 0.0 { g } else { 0.0 }),
                Layer::Tanh => zip_map(g, output, g_in, |g, y| g * (1.0 - y * y)),
                Layer::Sigmoid => zip_map(g, output, g_in, |g, y| g * y * (1.0 - y)),
                Layer::Flatten => g_in.copy_from_slice(g),
            }
            std::mem::swap(g, g_in);
        }
        Ok(())
    }

    fn jvp(
        &mut self,
        params: &[f32],
        x: &[f32],
        batch: usize,
        tangent: &[f32],
        out: &mut [f32],
    ) -> Result<(), String> {
        self.run_forward(params, x, batch);
        let [t, t_out] = &mut self.scratch;
        // The input does not depend on the parameters.
        t.clear();
        t.resize(batch * self.widths[0], 0.0);
        for i in 0..self.layers.len() {
            let (input, output) = (&self.acts[i], &self.acts[i + 1]);
            t_out.resize(batch * self.widths[i + 1], 0.0);
            match self.layers[i] {
                Layer::Dense {
                    inputs, outputs, ..
                } => {
                    let p = self_params(&self.offsets, &self.layers, i, params);
                    let tp = self_params(&self.offsets, &self.layers, i, tangent);
                    dense_jvp(
                        p,
                        tp,
                        input,
                        (i > 0).then_some(&t[..]),
                        batch,
                        inputs,
                        outputs,
                        t_out,
                    );
                }
                Layer::Relu => zip_map(t, input, t_out, |t, x| if x > 0.0 { t } else { 0.0 }),
                Layer::Tanh => zip_map(t, output, t_out, |t, y| t * (1.0 - y * y)),
                Layer::Sigmoid => zip_map(t, output, t_out, |t, y| t * y * (1.0 - y)),
                Layer::Flatten => t_out.copy_from_slice(t),
            }
            std::mem::swap(t, t_out);
        }
        out.copy_from_slice(t);
        Ok(())
    }
}

fn self_params<'a>(offsets: &[usize], layers: &[Layer], i: usize, v: &'a [f32]) -> &'a [f32] {
    &v[offsets[i]..offsets[i] + layers[i].n_params()]
}

impl Sequential {
    /// Mixes `salt` into every initialisation seed (models of one task that must differ).
    pub fn with_seed_salt(mut self, salt: u64) -> Sequential {
        self.seed_salt = salt;
        self
    }

    /// The parameters of layer `i` (for tests and inspection).
    pub fn layer_params<'a>(&self, i: usize, params: &'a [f32]) -> &'a [f32] {
        self.params_of(i, params)
    }
}

fn map(input: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    out.iter_mut().zip(input).for_each(|(o, &v)| *o = f(v));
}

fn zip_map(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    out.iter_mut()
        .zip(a.iter().zip(b))
        .for_each(|(o, (&a, &b))| *o = f(a, b));
}

/// A row-major matrix view for [`gemm`]: `rows x cols` with the given strides.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    fn new(data: &'a [f32], rows: usize, cols: usize) -> Mat<'a> {
        Mat {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    fn t(self) -> Mat<'a> {
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

/// `c = a b + beta c`, `c` row-major `a.rows x b.cols`.
fn gemm(a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32]) {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    assert!(
        a.fits() && b.fits() && c.len() >= a.rows * b.cols,
        "matrix views exceed their buffers"
    );
    // SAFETY: the asserts above keep every index sgemm touches inside `a.data`, `b.data` and `c`,
    // and `c` is borrowed mutably, so it aliases neither input.
    unsafe {
        matrixmultiply::sgemm(
            a.rows,
            a.cols,
            b.cols,
            1.0,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c.as_mut_ptr(),
            b.cols as isize,
            1,
        )
    }
}

fn dense_forward(
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
        Mat::new(x, batch, inputs),
        Mat::new(w, inputs, outputs),
        1.0,
        out,
    );
}

#[allow(clippy::too_many_arguments)]
fn dense_backward(
    p: &[f32],
    x: &[f32],
    g: &[f32],
    batch: usize,
    inputs: usize,
    outputs: usize,
    grad: &mut [f32],
    g_in: Option<&mut Vec<f32>>,
) {
    let (gw, gb) = grad.split_at_mut(inputs * outputs);
    let g_mat = Mat::new(g, batch, outputs);
    gemm(Mat::new(x, batch, inputs).t(), g_mat, 0.0, gw);
    gb.fill(0.0);
    for row in g.chunks_exact(outputs) {
        gb.iter_mut().zip(row).for_each(|(b, &v)| *b += v);
    }
    if let Some(g_in) = g_in {
        gemm(
            g_mat,
            Mat::new(&p[..inputs * outputs], inputs, outputs).t(),
            0.0,
            g_in,
        );
    }
}

/// `t_out = t_in W + x dW + db`.
#[allow(clippy::too_many_arguments)]
fn dense_jvp(
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
        Mat::new(x, batch, inputs),
        Mat::new(tw, inputs, outputs),
        1.0,
        t_out,
    );
    if let Some(t_in) = t_in {
        gemm(
            Mat::new(t_in, batch, inputs),
            Mat::new(&p[..inputs * outputs], inputs, outputs),
            1.0,
            t_out,
        );
    }
}

#[cfg(test)]
mod tests;
