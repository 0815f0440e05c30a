//! CPU layers with forward, backward (vector-Jacobian) and forward-mode (Jacobian-vector)
//! passes, stacked by [`Sequential`] over one flat parameter vector. Activations are row-major
//! `[batch][features]`, spatial ones `[batch][channel][row][column]`. Dense layers and
//! convolutions multiply with `matrixmultiply`'s GEMM.

mod builder;
mod conv;
mod gemm;
#[cfg(test)]
mod tests;

pub use builder::Builder;
pub(crate) use gemm::{Mat, gemm};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Model;
use crate::abi::*;

/// Weight initialisation of a dense or convolution layer (biases start at zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio).
    XavierUniform,
    /// U(-a, a), a = sqrt(6 / fan_in) (He et al., for ReLU).
    HeUniform,
}

/// The `[channels, height, width]` shape of a spatial layer's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Geom {
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    /// 2-D convolution, stride 1, zero padding `pad`, over `[c_in, h, w]` inputs. Weights are
    /// `c_out x (c_in k k)` row-major, then `c_out` biases.
    Conv2d {
        geom: Geom,
        c_out: usize,
        k: usize,
        pad: usize,
        init: Init,
    },
    /// Non-overlapping `size x size` max pooling over `[c, h, w]` (stride `size`).
    MaxPool2d {
        geom: Geom,
        size: usize,
    },
    /// Non-overlapping `size x size` average pooling over `[c, h, w]` (stride `size`).
    AvgPool2d {
        geom: Geom,
        size: usize,
    },
}

impl Layer {
    fn n_params(&self) -> usize {
        match *self {
            Layer::Dense {
                inputs, outputs, ..
            } => inputs * outputs + outputs,
            Layer::Conv2d { geom, c_out, k, .. } => c_out * geom.c * k * k + c_out,
            _ => 0,
        }
    }

    /// Output features per example, or why the input width does not fit.
    fn output_len(&self, input: usize) -> Result<usize, String> {
        let expect = |want: usize, what: &str| {
            if want == input {
                Ok(())
            } else {
                Err(format!("{what} expects {want} inputs, gets {input}"))
            }
        };
        match *self {
            Layer::Dense {
                inputs, outputs, ..
            } => expect(inputs, "dense").map(|()| outputs),
            Layer::Conv2d {
                geom,
                c_out,
                k,
                pad,
                ..
            } => {
                expect(geom.len(), "conv2d")?;
                let (ho, wo) =
                    conv_out(geom, k, pad).ok_or("conv2d kernel larger than its padded input")?;
                Ok(c_out * ho * wo)
            }
            Layer::MaxPool2d { geom, size } | Layer::AvgPool2d { geom, size } => {
                expect(geom.len(), "pooling")?;
                if size == 0 || geom.h < size || geom.w < size {
                    return Err(format!(
                        "pooling window {size} does not fit {}x{}",
                        geom.h, geom.w
                    ));
                }
                Ok(geom.c * (geom.h / size) * (geom.w / size))
            }
            Layer::Relu | Layer::Tanh | Layer::Sigmoid | Layer::Flatten => Ok(input),
        }
    }

    /// `(fan_in, fan_out, weight count, init)` of a weight layer, as PyTorch counts fans.
    fn fans(&self) -> Option<(usize, usize, usize, Init)> {
        match *self {
            Layer::Dense {
                inputs,
                outputs,
                init,
            } => Some((inputs, outputs, inputs * outputs, init)),
            Layer::Conv2d {
                geom,
                c_out,
                k,
                init,
                ..
            } => Some((geom.c * k * k, c_out * k * k, c_out * geom.c * k * k, init)),
            _ => None,
        }
    }
}

fn conv_out(g: Geom, k: usize, pad: usize) -> Option<(usize, usize)> {
    let (h, w) = (g.h + 2 * pad, g.w + 2 * pad);
    (k >= 1 && h >= k && w >= k).then(|| (h - k + 1, w - k + 1))
}

/// A stack of layers; owns the activations of the last forward pass.
pub struct Sequential {
    layers: Vec<Layer>,
    /// Per-example feature count entering each layer, plus the output's.
    widths: Vec<usize>,
    /// Offset of each layer's parameters in the flat vector.
    offsets: Vec<usize>,
    n_params: usize,
    batch: usize,
    /// acts[i] is the input of layer i; acts[n] the output.
    acts: Vec<Vec<f32>>,
    /// Per layer: im2col columns of the last forward (conv) or arg-max indices (max-pool).
    cols: Vec<Vec<f32>>,
    argmax: Vec<Vec<u32>>,
    /// Tangents of the activations during `jvp`; gradient buffers during `backward`.
    scratch: [Vec<f32>; 2],
    /// Column buffer for convolutions' backward and JVP.
    tmp_cols: Vec<f32>,
}

impl Sequential {
    /// A model for examples of `input_len` floats.
    pub fn new(input_len: usize, layers: Vec<Layer>) -> Result<Sequential, String> {
        let mut widths = vec![input_len];
        let mut offsets = Vec::with_capacity(layers.len());
        let mut n_params = 0;
        for (i, l) in layers.iter().enumerate() {
            let out = l
                .output_len(widths[i])
                .map_err(|e| format!("layer {i}: {e}"))?;
            offsets.push(n_params);
            n_params += l.n_params();
            widths.push(out);
        }
        let n = layers.len();
        Ok(Sequential {
            layers,
            widths,
            offsets,
            n_params,
            batch: 0,
            acts: vec![Vec::new(); n + 1],
            cols: vec![Vec::new(); n],
            argmax: vec![Vec::new(); n],
            scratch: [Vec::new(), Vec::new()],
            tmp_cols: Vec::new(),
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
        let mut b = Builder::new(input_len, 1, 1);
        for &h in hidden {
            b = b.dense(h).push(activation);
        }
        b.dense(outputs).build()
    }

    /// The parameters of layer `i` within a flat vector.
    pub fn layer_params<'a>(&self, i: usize, params: &'a [f32]) -> &'a [f32] {
        layer_slice(&self.offsets, &self.layers, i, params)
    }

    fn run_forward(&mut self, params: &[f32], x: &[f32], batch: usize) {
        self.batch = batch;
        self.acts[0].clear();
        self.acts[0].extend_from_slice(x);
        for i in 0..self.layers.len() {
            let (before, after) = self.acts.split_at_mut(i + 1);
            let (input, out) = (&before[i], &mut after[0]);
            out.resize(batch * self.widths[i + 1], 0.0);
            let p = layer_slice(&self.offsets, &self.layers, i, params);
            match self.layers[i] {
                Layer::Dense {
                    inputs, outputs, ..
                } => dense_forward(p, input, batch, inputs, outputs, out),
                Layer::Conv2d {
                    geom,
                    c_out,
                    k,
                    pad,
                    ..
                } => {
                    let s = conv::Shape {
                        batch,
                        geom,
                        c_out,
                        k,
                        pad,
                    };
                    conv::forward(p, input, s, &mut self.cols[i], out)
                }
                Layer::MaxPool2d { geom, size } => {
                    conv::max_pool(input, batch, geom, size, &mut self.argmax[i], out)
                }
                Layer::AvgPool2d { geom, size } => conv::avg_pool(input, batch, geom, size, out),
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

    fn layers(&self) -> Vec<LayerDesc> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerDesc {
                kind: match l {
                    Layer::Dense { .. } => LAYER_DENSE,
                    Layer::Relu => LAYER_RELU,
                    Layer::Tanh => LAYER_TANH,
                    Layer::Sigmoid => LAYER_SIGMOID,
                    Layer::Flatten => LAYER_FLATTEN,
                    Layer::Conv2d { .. } => LAYER_CONV2D,
                    Layer::MaxPool2d { .. } => LAYER_MAX_POOL,
                    Layer::AvgPool2d { .. } => LAYER_AVG_POOL,
                },
                inputs: self.widths[i] as u32,
                outputs: self.widths[i + 1] as u32,
                reserved: 0,
                param_offset: self.offsets[i] as u64,
            })
            .collect()
    }

    fn init(&self, seed: u64, params: &mut [f32]) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        params.fill(0.0);
        for (i, l) in self.layers.iter().enumerate() {
            let Some((fan_in, fan_out, n, init)) = l.fans() else {
                continue;
            };
            let a = match init {
                Init::XavierUniform => (6.0 / (fan_in + fan_out) as f64).sqrt(),
                Init::HeUniform => (6.0 / fan_in as f64).sqrt(),
            } as f32;
            let w = &mut params[self.offsets[i]..self.offsets[i] + n];
            w.iter_mut().for_each(|v| *v = rng.random_range(-a..a));
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
            // The first layer's input is data: its gradient is never needed.
            let need_input_grad = i > 0;
            g_in.resize(batch * self.widths[i], 0.0);
            let p = layer_slice(&self.offsets, &self.layers, i, params);
            let range = self.offsets[i]..self.offsets[i] + self.layers[i].n_params();
            match self.layers[i] {
                Layer::Dense {
                    inputs, outputs, ..
                } => {
                    let g_in = need_input_grad.then_some(&mut *g_in);
                    dense_backward(p, input, g, batch, inputs, outputs, &mut grad[range], g_in);
                }
                Layer::Conv2d {
                    geom,
                    c_out,
                    k,
                    pad,
                    ..
                } => {
                    let s = conv::Shape {
                        batch,
                        geom,
                        c_out,
                        k,
                        pad,
                    };
                    let g_in = need_input_grad.then_some(&mut *g_in);
                    conv::backward(
                        p,
                        &self.cols[i],
                        g,
                        s,
                        &mut grad[range],
                        &mut self.tmp_cols,
                        g_in,
                    );
                }
                Layer::MaxPool2d { .. } => conv::max_pool_backward(g, &self.argmax[i], g_in),
                Layer::AvgPool2d { geom, size } => {
                    conv::avg_pool_backward(g, batch, geom, size, g_in)
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
            let p = layer_slice(&self.offsets, &self.layers, i, params);
            let tp = layer_slice(&self.offsets, &self.layers, i, tangent);
            let t_in = (i > 0).then_some(&t[..]);
            match self.layers[i] {
                Layer::Dense {
                    inputs, outputs, ..
                } => dense_jvp(p, tp, input, t_in, batch, inputs, outputs, t_out),
                Layer::Conv2d {
                    geom,
                    c_out,
                    k,
                    pad,
                    ..
                } => {
                    let s = conv::Shape {
                        batch,
                        geom,
                        c_out,
                        k,
                        pad,
                    };
                    conv::jvp(p, tp, &self.cols[i], t_in, s, &mut self.tmp_cols, t_out);
                }
                Layer::MaxPool2d { .. } => conv::max_pool_jvp(t, &self.argmax[i], t_out),
                Layer::AvgPool2d { geom, size } => conv::avg_pool(t, batch, geom, size, t_out),
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

/// Layer `i`'s part of a parameter-shaped vector.
fn layer_slice<'a>(offsets: &[usize], layers: &[Layer], i: usize, v: &'a [f32]) -> &'a [f32] {
    &v[offsets[i]..offsets[i] + layers[i].n_params()]
}

fn map(input: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    out.iter_mut().zip(input).for_each(|(o, &v)| *o = f(v));
}

fn zip_map(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    out.iter_mut()
        .zip(a.iter().zip(b))
        .for_each(|(o, (&a, &b))| *o = f(a, b));
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
