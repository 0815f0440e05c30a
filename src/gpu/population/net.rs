//! The model on the device: its layers, and per candidate its parameters, activations and
//! gradients, laid out `[candidate][row][feature]`; and the dispatches of a forward and a
//! backward pass over them.

use evomal_sdk::abi::{
    LAYER_AVG_POOL, LAYER_CONV2D, LAYER_DENSE, LAYER_FLATTEN, LAYER_GLOBAL_AVG_POOL,
    LAYER_MAX_POOL, LAYER_RELU, LAYER_SIGMOID, LAYER_TANH, LayerDesc,
};

use super::kernels::{Dims, Image, Kernels, Op};
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
    /// A convolution or a pooling over `[c][h][w]` examples.
    Image {
        op: ImageOp,
        inputs: u32,
        outputs: u32,
        offset: u32,
        image: Image,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageOp {
    Conv,
    /// `kind` in the pooling shaders: 0 max, 1 average.
    Pool {
        kind: u32,
    },
}

/// The plugin's layer list as the GPU runs it, or why it cannot.
pub fn gpu_layers(layers: &[LayerDesc]) -> Result<Vec<GpuLayer>, GpuError> {
    if layers.is_empty() {
        return Err(GpuError::Unsupported(
            "a model that does not describe itself as layers (build it from evomal_sdk layers)"
                .into(),
        ));
    }
    layers.iter().map(gpu_layer).collect()
}

fn gpu_layer(l: &LayerDesc) -> Result<GpuLayer, GpuError> {
    let image = |op, image: Image| {
        let (input, output) = (
            image.c * image.h * image.w,
            image.c_out * image.oh * image.ow,
        );
        if image.kh == 0
            || image.kw == 0
            || image.stride == 0
            || (input, output) != (l.inputs, l.outputs)
        {
            return Err(GpuError::Unsupported(format!(
                "layer kind {} whose shapes do not add up: {l:?}",
                l.kind
            )));
        }
        Ok(GpuLayer::Image {
            op,
            inputs: l.inputs,
            outputs: l.outputs,
            offset: l.param_offset as u32,
            image,
        })
    };
    let (c, h, w, k) = (l.channels, l.height, l.width, l.kernel);
    let pool = |kind, (kh, kw): (u32, u32)| {
        image(
            ImageOp::Pool { kind },
            Image {
                c,
                h,
                w,
                c_out: c,
                kh,
                kw,
                stride: kh,
                oh: h.checked_div(kh).unwrap_or(0),
                ow: w.checked_div(kw).unwrap_or(0),
                ..Image::default()
            },
        )
    };
    let conv_out = |side: u32| (side + 2 * l.padding).saturating_sub(k) / l.stride.max(1) + 1;
    match l.kind {
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
        LAYER_CONV2D => image(
            ImageOp::Conv,
            Image {
                c,
                h,
                w,
                c_out: l.out_channels,
                kh: k,
                kw: k,
                stride: l.stride,
                pad: l.padding,
                oh: conv_out(h),
                ow: conv_out(w),
                bias: l.bias,
                unused: 0,
            },
        ),
        LAYER_MAX_POOL => pool(0, (k, k)),
        LAYER_AVG_POOL => pool(1, (k, k)),
        LAYER_GLOBAL_AVG_POOL => pool(1, (h, w)),
        other => Err(GpuError::Unsupported(format!(
            "layer kind {other} (batch norm, dropout and residual blocks run on the CPU only)"
        ))),
    }
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
                GpuLayer::Image { outputs, .. } => Some(outputs),
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
        let (a, b, offset, kind, image) = match self.layers[l] {
            GpuLayer::Dense {
                inputs,
                outputs,
                offset,
            } => (inputs, outputs, offset, 0, Image::default()),
            GpuLayer::Activation { kind, width } => (width, width, 0, kind, Image::default()),
            GpuLayer::Flatten => (0, 0, 0, 0, Image::default()),
            GpuLayer::Image {
                op,
                inputs,
                outputs,
                offset,
                image,
            } => {
                let kind = match op {
                    ImageOp::Conv => 0,
                    ImageOp::Pool { kind } => kind,
                };
                (inputs, outputs, offset, kind, image)
            }
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
            image,
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
                GpuLayer::Image { op, .. } => {
                    let (pipeline, buffers) = match op {
                        ImageOp::Conv => (&k.conv_forward, [self.value(input), params]),
                        ImageOp::Pool { .. } => {
                            (&k.pool_forward, [self.value(input), self.value(input)])
                        }
                    };
                    let [a, b] = buffers;
                    ops.push(Op::new(
                        gpu,
                        pipeline,
                        &[a, b, self.value(output)],
                        Some(&d),
                        n,
                    ));
                }
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
                GpuLayer::Image {
                    op: ImageOp::Conv,
                    image,
                    ..
                } => {
                    let weights = image.c_out * image.c * image.kh * image.kw;
                    ops.push(Op::new(
                        gpu,
                        &k.conv_grad_params,
                        &[self.value(input), self.grad_of(output), &self.grad],
                        Some(&d),
                        self.p * (weights + image.bias * image.c_out) as usize,
                    ));
                    if input_grad {
                        ops.push(Op::new(
                            gpu,
                            &k.conv_grad_input,
                            &[self.grad_of(output), params, self.grad_of(input)],
                            Some(&d),
                            self.p * rows * d.a as usize,
                        ));
                    }
                }
                GpuLayer::Image { .. } if input_grad => ops.push(Op::new(
                    gpu,
                    &k.pool_backward,
                    &[self.value(input), self.grad_of(output), self.grad_of(input)],
                    Some(&d),
                    self.p * rows * d.a as usize,
                )),
                GpuLayer::Activation { .. } | GpuLayer::Image { .. } | GpuLayer::Flatten => {}
            }
        }
        ops
    }

    /// The forward-mode derivative of the outputs at `params` in the direction `tangent` (a
    /// parameter-shaped buffer), after a forward pass over the same `rows`: ends in
    /// `output_grad`, the value tangents reusing the gradient buffers. Values computed from the
    /// data alone have no tangent: their buffers are neither written nor read.
    pub fn jvp(&self, rows: usize, params: &wgpu::Buffer, tangent: &wgpu::Buffer) -> Vec<Op> {
        let (gpu, k) = (self.gpu, self.kernels);
        let mut ops = Vec::new();
        let mut constant = vec![false; self.widths.len()];
        constant[0] = true;
        for l in 0..self.layers.len() {
            let (input, output) = (self.value_of[l], self.value_of[l + 1]);
            let data = constant[input];
            let d = Dims {
                kind: data as u32,
                ..self.dims(l, rows)
            };
            let n = self.p * rows * d.b as usize;
            // Data has no tangent: any buffer stands in for it, unread.
            let tin = if data { &self.x } else { self.grad_of(input) };
            let with_params = |pipeline| {
                Op::new(
                    gpu,
                    pipeline,
                    &[
                        self.value(input),
                        tin,
                        params,
                        tangent,
                        self.grad_of(output),
                    ],
                    Some(&d),
                    n,
                )
            };
            match self.layers[l] {
                GpuLayer::Dense { .. } => ops.push(with_params(&k.dense_jvp)),
                GpuLayer::Image {
                    op: ImageOp::Conv, ..
                } => ops.push(with_params(&k.conv_jvp)),
                GpuLayer::Flatten => {}
                _ if data => constant[output] = true,
                GpuLayer::Activation { .. } => ops.push(Op::new(
                    gpu,
                    &k.activation_backward,
                    &[self.value(output), tin, self.grad_of(output)],
                    Some(&self.dims(l, rows)),
                    n,
                )),
                GpuLayer::Image { .. } => ops.push(Op::new(
                    gpu,
                    &k.pool_forward,
                    &[self.value(input), tin, self.grad_of(output)],
                    Some(&self.dims(l, rows)),
                    n,
                )),
            }
        }
        ops
    }
}
