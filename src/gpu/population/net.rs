//! The model on the device: its layers, and per candidate its parameters, activations and
//! gradients, laid out `[candidate][row][feature]`; and the dispatches of a forward and a
//! backward pass over them.

use evomal_sdk::abi::{
    LAYER_DENSE, LAYER_FLATTEN, LAYER_RELU, LAYER_SIGMOID, LAYER_TANH, LayerDesc,
};

use super::kernels::{Dims, Kernels, Op};
use crate::gpu::{Gpu, GpuError};

/// A layer the GPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuLayer {
    Dense {
        inputs: u32,
        outputs: u32,
        offset: u32,
    },
    /// `kind` as the shaders number them: 1 relu, 2 tanh, 3 sigmoid.
    Activation {
        kind: u32,
        width: u32,
    },
    Flatten,
}

/// The plugin's layer list as the GPU runs it, or why it cannot.
pub fn gpu_layers(layers: &[LayerDesc]) -> Result<Vec<GpuLayer>, GpuError> {
    if layers.is_empty() {
        return Err(GpuError::Unsupported(
            "a model that does not describe itself as layers (build it from evomal_sdk layers)"
                .into(),
        ));
    }
    layers
        .iter()
        .map(|l| match l.kind {
            LAYER_DENSE => Ok(GpuLayer::Dense {
                inputs: l.inputs,
                outputs: l.outputs,
                offset: l.param_offset as u32,
            }),
            LAYER_RELU | LAYER_TANH | LAYER_SIGMOID => Ok(GpuLayer::Activation {
                kind: l.kind,
                width: l.inputs,
            }),
            LAYER_FLATTEN => Ok(GpuLayer::Flatten),
            other => Err(GpuError::Unsupported(format!(
                "layer kind {other} (convolutions and pooling run on the CPU only)"
            ))),
        })
        .collect()
}

/// `p` copies of the model, for batches of up to `rows` rows: one batch shared by all
/// candidates (training for fitness), or one batch each (the local search).
pub struct Net<'a> {
    gpu: &'a Gpu,
    kernels: &'a Kernels,
    layers: &'a [GpuLayer],
    p: usize,
    own_batches: bool,
    n_params: usize,
    /// Value 0 is the gathered input (shared by all candidates), value `l + 1` the output of
    /// layer `l`; `value_of[l]` is layer `l`'s input (a flatten passes its input on).
    value_of: Vec<usize>,
    widths: Vec<usize>,
    target_width: usize,
    pub x: wgpu::Buffer,
    pub y: wgpu::Buffer,
    values: Vec<wgpu::Buffer>,
    grads: Vec<wgpu::Buffer>,
    pub params: wgpu::Buffer,
    /// dL/dparams of the last backward pass.
    pub grad: wgpu::Buffer,
}

/// Where a forward pass takes its rows from: a split's inputs and targets, the index lists,
/// and the counter selecting the step's list.
pub struct Source<'b> {
    pub xs: &'b wgpu::Buffer,
    pub ys: &'b wgpu::Buffer,
    pub idx: &'b wgpu::Buffer,
    pub counter: &'b wgpu::Buffer,
}

impl<'a> Net<'a> {
    /// Buffers for `p` candidates starting from `init` each.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &'a Gpu,
        kernels: &'a Kernels,
        layers: &'a [GpuLayer],
        p: usize,
        own_batches: bool,
        rows: usize,
        input_len: usize,
        target_width: usize,
        init: &[f32],
    ) -> Result<Net<'a>, GpuError> {
        let mut value_of = vec![0usize];
        let mut widths = vec![input_len];
        for l in layers {
            let width = match *l {
                GpuLayer::Flatten => None,
                GpuLayer::Dense { outputs, .. } => Some(outputs),
                GpuLayer::Activation { width, .. } => Some(width),
            };
            match width {
                Some(w) => {
                    value_of.push(widths.len());
                    widths.push(w as usize);
                }
                None => value_of.push(*value_of.last().expect("the input")),
            }
        }
        let mut values = Vec::new();
        let mut grads = Vec::new();
        for (v, &w) in widths.iter().enumerate().skip(1) {
            values.push(gpu.buffer(&format!("activations {v}"), p * rows * w)?);
            grads.push(gpu.buffer(&format!("gradients {v}"), p * rows * w)?);
        }
        let sets = if own_batches { p } else { 1 };
        Ok(Net {
            gpu,
            kernels,
            layers,
            p,
            own_batches,
            n_params: init.len(),
            value_of,
            widths,
            target_width,
            x: gpu.buffer("batch inputs", sets * rows * input_len)?,
            y: gpu.buffer("batch targets", sets * rows * target_width)?,
            values,
            grads,
            params: gpu.buffer_with("parameters", &init.repeat(p))?,
            grad: gpu.buffer("parameter gradients", p * init.len())?,
        })
    }

    pub fn candidates(&self) -> usize {
        self.p
    }

    fn value(&self, v: usize) -> &wgpu::Buffer {
        if v == 0 { &self.x } else { &self.values[v - 1] }
    }

    fn grad_of(&self, v: usize) -> &wgpu::Buffer {
        &self.grads[v - 1]
    }

    /// The raw outputs, `[candidate][row][output]`.
    pub fn output(&self) -> &wgpu::Buffer {
        self.value(self.output_value())
    }

    /// dL/d(raw outputs), which the objective writes.
    pub fn output_grad(&self) -> &wgpu::Buffer {
        self.grad_of(self.output_value())
    }

    fn output_value(&self) -> usize {
        *self.value_of.last().expect("the output")
    }

    /// The shape every kernel of layer `l` sees over `rows` rows.
    fn dims(&self, l: usize, rows: usize) -> Dims {
        let input = self.value_of[l];
        let (a, b, offset, kind) = match self.layers[l] {
            GpuLayer::Dense {
                inputs,
                outputs,
                offset,
            } => (inputs, outputs, offset, 0),
            GpuLayer::Activation { kind, width } => (width, width, 0, kind),
            GpuLayer::Flatten => (0, 0, 0, 0),
        };
        Dims {
            p: self.p as u32,
            rows: rows as u32,
            a,
            b,
            in_stride: if input == 0 && !self.own_batches {
                0
            } else {
                (rows * self.widths[input]) as u32
            },
            offset,
            n_params: self.n_params as u32,
            kind,
        }
    }

    /// The uniform of kernels over whole batches (the objective, the divergence check): `p`,
    /// `rows`, and `in_stride` non-zero when each candidate has its own batch.
    pub fn batch_dims(&self, rows: usize) -> Dims {
        Dims {
            p: self.p as u32,
            rows: rows as u32,
            in_stride: (self.own_batches as usize * rows * self.target_width) as u32,
            ..Dims::default()
        }
    }

    /// Gathers `rows` rows into the batch, then runs every layer forward at `params`.
    pub fn forward(&self, rows: usize, source: Source<'_>, params: &wgpu::Buffer) -> Vec<Op> {
        let (gpu, k) = (self.gpu, self.kernels);
        let (input_len, target_width) = (self.widths[0], self.target_width);
        let gather = Dims {
            p: self.p as u32,
            rows: rows as u32,
            a: input_len as u32,
            b: target_width as u32,
            kind: self.own_batches as u32,
            ..Dims::default()
        };
        let sets = if self.own_batches { self.p } else { 1 };
        let Source {
            xs,
            ys,
            idx,
            counter,
        } = source;
        let mut ops = vec![Op::new(
            gpu,
            &k.gather,
            &[xs, ys, idx, counter, &self.x, &self.y],
            Some(&gather),
            sets * rows * input_len.max(target_width),
        )];
        for l in 0..self.layers.len() {
            let (input, output) = (self.value_of[l], self.value_of[l + 1]);
            let d = self.dims(l, rows);
            let n = self.p * rows * d.b as usize;
            match self.layers[l] {
                GpuLayer::Dense { .. } => ops.push(Op::new(
                    gpu,
                    &k.dense_forward,
                    &[self.value(input), params, self.value(output)],
                    Some(&d),
                    n,
                )),
                GpuLayer::Activation { .. } => ops.push(Op::new(
                    gpu,
                    &k.activation_forward,
                    &[self.value(input), self.value(output)],
                    Some(&d),
                    n,
                )),
                GpuLayer::Flatten => {}
            }
        }
        ops
    }

    /// Every layer backward at `params` from `output_grad` over `rows` rows, into `grad`.
    pub fn backward(&self, rows: usize, params: &wgpu::Buffer) -> Vec<Op> {
        let (gpu, k) = (self.gpu, self.kernels);
        let mut ops = Vec::new();
        for l in (0..self.layers.len()).rev() {
            let (input, output) = (self.value_of[l], self.value_of[l + 1]);
            let d = self.dims(l, rows);
            // The first layer's input is data: its gradient is never needed.
            let input_grad = input != 0;
            match self.layers[l] {
                GpuLayer::Dense {
                    inputs, outputs, ..
                } => {
                    ops.push(Op::new(
                        gpu,
                        &k.dense_grad_params,
                        &[self.value(input), self.grad_of(output), &self.grad],
                        Some(&d),
                        self.p * (inputs as usize + 1) * outputs as usize,
                    ));
                    if input_grad {
                        ops.push(Op::new(
                            gpu,
                            &k.dense_grad_input,
                            &[self.grad_of(output), params, self.grad_of(input)],
                            Some(&d),
                            self.p * rows * inputs as usize,
                        ));
                    }
                }
                GpuLayer::Activation { width, .. } if input_grad => ops.push(Op::new(
                    gpu,
                    &k.activation_backward,
                    &[
                        self.value(output),
                        self.grad_of(output),
                        self.grad_of(input),
                    ],
                    Some(&d),
                    self.p * rows * width as usize,
                )),
                GpuLayer::Activation { .. } | GpuLayer::Flatten => {}
            }
        }
        ops
    }

    /// The forward-mode derivative of the outputs at `params` in the direction `tangent` (a
    /// parameter-shaped buffer), after a forward pass over the same `rows`: ends in
    /// `output_grad`, the value tangents reusing the gradient buffers.
    pub fn jvp(&self, rows: usize, params: &wgpu::Buffer, tangent: &wgpu::Buffer) -> Vec<Op> {
        let (gpu, k) = (self.gpu, self.kernels);
        let mut ops = Vec::new();
        for l in 0..self.layers.len() {
            let (input, output) = (self.value_of[l], self.value_of[l + 1]);
            let data = input == 0;
            let d = self.dims(l, rows);
            match self.layers[l] {
                GpuLayer::Dense { outputs, .. } => {
                    // Data has no tangent: any buffer stands in for it, unread.
                    let tin = if data { &self.x } else { self.grad_of(input) };
                    ops.push(Op::new(
                        gpu,
                        &k.dense_jvp,
                        &[
                            self.value(input),
                            tin,
                            params,
                            tangent,
                            self.grad_of(output),
                        ],
                        Some(&Dims {
                            kind: data as u32,
                            ..d
                        }),
                        self.p * rows * outputs as usize,
                    ));
                }
                GpuLayer::Activation { width, .. } if !data => ops.push(Op::new(
                    gpu,
                    &k.activation_backward,
                    &[
                        self.value(output),
                        self.grad_of(input),
                        self.grad_of(output),
                    ],
                    Some(&d),
                    self.p * rows * width as usize,
                )),
                GpuLayer::Activation { .. } | GpuLayer::Flatten => {}
            }
        }
        ops
    }
}
