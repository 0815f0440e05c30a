//! The model on the device: its layers as a graph of values (a residual block forks its input
//! and adds its two branches), per candidate its parameters, batch-norm state, activations and
//! gradients, laid out `[candidate][row][feature]`; and the dispatches of a forward, a backward
//! and a forward-mode pass over them.

mod passes;

use super::kernels::{Dims, Gemm, Image, Kernels, Op, Strides};
use super::layers::{GpuLayer, ImageOp, row_floats, state_len};
use super::tuning::{CHUNK_ALIGN, TILINGS};
use crate::gpu::{Gpu, GpuError};

/// Which statistics a forward pass normalises with (the batch-norm shaders' `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The batch's, moving the running ones: a training step.
    Train = 0,
    /// The running ones: evaluation.
    Eval = 1,
    /// The batch's, leaving the running ones: the local search's passes.
    Probe = 2,
}

/// A value of the graph: `width` features per example in activation buffer `act` (0: the
/// gathered data batch; a fork's branches share their input's), and its gradient (tangent in
/// forward mode) buffer unless it is computed from the data alone.
#[derive(Clone, Copy)]
struct Value {
    width: usize,
    act: usize,
    grad: Option<usize>,
}

enum Node<'l> {
    Layer {
        layer: &'l GpuLayer,
        input: usize,
        output: usize,
        /// A batch norm's statistics buffers, or a dropout's slot in the mask keys.
        slot: Option<usize>,
    },
    /// A residual block's input, read by its body (`left`) and its shortcut (`right`).
    Fork {
        input: usize,
        left: usize,
        right: usize,
    },
    /// A residual block's output.
    Add { a: usize, b: usize, output: usize },
}

/// The values and nodes of a layer list, built in order.
#[derive(Default)]
struct Graph<'l> {
    values: Vec<Value>,
    nodes: Vec<Node<'l>>,
    acts: Vec<usize>,
    grads: usize,
    /// Channels of each batch norm.
    norms: Vec<usize>,
    dropouts: usize,
}

impl<'l> Graph<'l> {
    fn value(&mut self, width: usize, act: Option<usize>, constant: bool) -> usize {
        let act = act.unwrap_or_else(|| {
            self.acts.push(width);
            self.acts.len() - 1
        });
        let grad = (!constant).then(|| {
            self.grads += 1;
            self.grads - 1
        });
        self.values.push(Value { width, act, grad });
        self.values.len() - 1
    }

    fn stack(&mut self, layers: &'l [GpuLayer], mut v: usize) -> Result<usize, GpuError> {
        for layer in layers {
            let input = self.values[v];
            let constant = input.grad.is_none();
            v = match layer {
                GpuLayer::Flatten => v,
                GpuLayer::Residual { body, shortcut } => {
                    let left = self.value(input.width, Some(input.act), constant);
                    let right = self.value(input.width, Some(input.act), constant);
                    self.nodes.push(Node::Fork {
                        input: v,
                        left,
                        right,
                    });
                    let a = self.stack(body, left)?;
                    let b = self.stack(shortcut, right)?;
                    if self.values[a].act == 0 {
                        return Err(GpuError::Unsupported(
                            "a residual block whose body does not compute".into(),
                        ));
                    }
                    let both = self.values[a].grad.is_none() && self.values[b].grad.is_none();
                    let output = self.value(self.values[a].width, None, both);
                    self.nodes.push(Node::Add { a, b, output });
                    output
                }
                _ => {
                    let (width, params, slot) = match *layer {
                        GpuLayer::Dense { outputs, .. } => (outputs, true, None),
                        GpuLayer::Activation { width, .. } => (width, false, None),
                        GpuLayer::Dropout { width, .. } => {
                            self.dropouts += 1;
                            (width, false, Some(self.dropouts - 1))
                        }
                        GpuLayer::Image {
                            op, outputs, image, ..
                        } => {
                            let norm = (op == ImageOp::Norm).then(|| {
                                self.norms.push(image.c as usize);
                                self.norms.len() - 1
                            });
                            (outputs, !matches!(op, ImageOp::Pool { .. }), norm)
                        }
                        GpuLayer::Flatten | GpuLayer::Residual { .. } => unreachable!(),
                    };
                    let output = self.value(width as usize, None, constant && !params);
                    self.nodes.push(Node::Layer {
                        layer,
                        input: v,
                        output,
                        slot,
                    });
                    output
                }
            };
        }
        Ok(v)
    }
}

fn op_kind(op: ImageOp) -> u32 {
    match op {
        ImageOp::Pool { kind } => kind,
        ImageOp::Conv | ImageOp::Norm => 0,
    }
}

/// `p` copies of the model, for batches of up to `rows` rows: one batch shared by all
/// candidates (training for fitness), or one batch each (the local search).
pub struct Net<'a> {
    gpu: &'a Gpu,
    kernels: &'a Kernels,
    p: usize,
    own_batches: bool,
    n_params: usize,
    n_state: usize,
    values: Vec<Value>,
    nodes: Vec<Node<'a>>,
    output: usize,
    target_width: usize,
    pub x: wgpu::Buffer,
    pub y: wgpu::Buffer,
    /// Activation buffers 1..; 0 stands for `x`.
    acts: Vec<wgpu::Buffer>,
    grads: Vec<wgpu::Buffer>,
    /// Per batch norm: its statistics (mean, 1/std) and its reductions, per candidate and channel.
    norms: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    dropouts: usize,
    /// The dropout layers' mask keys (`layers::mask_keys`): per step of a fitness run, indexed
    /// by `counter`, or per candidate when each has its own batches.
    pub keys: wgpu::Buffer,
    /// The step being run (a fitness run's kernels read and advance it).
    pub counter: wgpu::Buffer,
    pub params: wgpu::Buffer,
    /// Batch norms' running statistics.
    pub state: wgpu::Buffer,
    /// dL/dparams of the last backward pass.
    pub grad: wgpu::Buffer,
    /// Convolutions' weight gradients' partial sums (`split_sum`), at most `room` floats per
    /// candidate.
    partials: wgpu::Buffer,
    room: usize,
}

/// Where a forward pass takes its rows from: a split's inputs (byte codes where `coded`) and
/// targets, the index lists, the counter selecting the step's list, and how the rows are
/// cropped and flipped.
pub struct Source<'b> {
    pub xs: &'b wgpu::Buffer,
    pub ys: &'b wgpu::Buffer,
    pub coded: bool,
    pub idx: &'b wgpu::Buffer,
    pub counter: &'b wgpu::Buffer,
    pub crops: Option<Crops<'b>>,
}

/// A training split's crops and flips (`gather.wgsl`): the fill and each row's draw, laid out
/// as the index lists, and the images' `c`, `h`, `w` and `pad`.
#[derive(Clone, Copy)]
pub struct Crops<'b> {
    pub words: &'b wgpu::Buffer,
    pub image: Image,
}

impl<'a> Net<'a> {
    /// Buffers for `p` candidates starting from `init` each, with fresh running statistics
    /// (mean 0, variance 1, as the SDK's batch norm starts) and dropout's mask `keys`.
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
        keys: &[u32],
    ) -> Result<Net<'a>, GpuError> {
        let mut g = Graph::default();
        g.acts.push(input_len);
        let input = g.value(input_len, Some(0), true);
        let output = g.stack(layers, input)?;
        if g.values[output].grad.is_none() {
            return Err(GpuError::Unsupported("a model without parameters".into()));
        }
        let mut acts = Vec::new();
        for (a, &w) in g.acts.iter().enumerate().skip(1) {
            acts.push(gpu.buffer(&format!("activations {a}"), p * rows * w)?);
        }
        let mut grads = Vec::new();
        for v in &g.values {
            if v.grad.is_some() {
                grads.push(gpu.buffer("gradients", p * rows * v.width)?);
            }
        }
        let mut norms = Vec::new();
        for &c in &g.norms {
            norms.push((
                gpu.buffer("batch statistics", p * c * 2)?,
                gpu.buffer("batch-norm sums", p * c * 2)?,
            ));
        }
        let room = rows * row_floats(layers, input_len).0;
        let partials = partial_floats(layers, room, rows, p, kernels);
        let n_state = state_len(layers);
        let mut state = vec![0.0f32; n_state];
        fresh_statistics(layers, &mut state);
        let sets = if own_batches { p } else { 1 };
        Ok(Net {
            gpu,
            kernels,
            p,
            own_batches,
            n_params: init.len(),
            n_state,
            values: g.values,
            nodes: g.nodes,
            output,
            target_width,
            x: gpu.buffer("batch inputs", sets * rows * input_len)?,
            y: gpu.buffer("batch targets", sets * rows * target_width)?,
            acts,
            grads,
            norms,
            dropouts: g.dropouts,
            keys: gpu.buffer_with("dropout mask keys", keys)?,
            counter: gpu.buffer_with("step counter", &[0u32])?,
            params: gpu.buffer_with("parameters", &init.repeat(p))?,
            state: gpu.buffer_with("running statistics", &state.repeat(p))?,
            grad: gpu.buffer("parameter gradients", p * init.len())?,
            partials: gpu.buffer("partial weight gradients", p * partials.max(1))?,
            room,
        })
    }

    pub fn candidates(&self) -> usize {
        self.p
    }

    fn act(&self, v: usize) -> &wgpu::Buffer {
        match self.values[v].act {
            0 => &self.x,
            a => &self.acts[a - 1],
        }
    }

    fn grad_of(&self, v: usize) -> &wgpu::Buffer {
        &self.grads[self.values[v].grad.expect("a value with a gradient")]
    }

    fn constant(&self, v: usize) -> bool {
        self.values[v].grad.is_none()
    }

    /// The raw outputs, `[candidate][row][output]`.
    pub fn output(&self) -> &wgpu::Buffer {
        self.act(self.output)
    }

    /// dL/d(raw outputs), which the objective writes.
    pub fn output_grad(&self) -> &wgpu::Buffer {
        self.grad_of(self.output)
    }

    /// Floats of value `v` per candidate.
    fn full(&self, v: usize, rows: usize) -> u32 {
        (rows * self.values[v].width) as u32
    }

    /// Floats between two candidates' copies of value `v`: 0 for the data batch they share.
    fn stride(&self, v: usize, rows: usize) -> u32 {
        if self.values[v].act == 0 && !self.own_batches {
            0
        } else {
            self.full(v, rows)
        }
    }

    /// The shape every kernel of a layer from `input` to `output` sees over `rows` rows.
    fn dims(&self, layer: &GpuLayer, input: usize, output: usize, rows: usize) -> Dims {
        let (offset, kind, image) = match *layer {
            GpuLayer::Dense { offset, .. } => (offset, 0, Image::default()),
            GpuLayer::Dropout { rate, .. } => {
                let image = Image {
                    rate,
                    slots: self.dropouts as u32,
                    ..Image::default()
                };
                (0, self.own_batches as u32, image)
            }
            GpuLayer::Activation { kind, .. } => (0, kind, Image::default()),
            GpuLayer::Image {
                op, offset, image, ..
            } => (offset, op_kind(op), image),
            GpuLayer::Flatten | GpuLayer::Residual { .. } => (0, 0, Image::default()),
        };
        Dims {
            p: self.p as u32,
            rows: rows as u32,
            a: self.values[input].width as u32,
            b: self.values[output].width as u32,
            in_stride: self.stride(input, rows),
            offset,
            n_params: self.n_params as u32,
            kind,
            image: Image {
                n_state: self.n_state as u32,
                ..image
            },
            ..Dims::default()
        }
    }

    /// A `gemm.wgsl` product for every candidate: `c = (c | bias | 0) + a b` as `g` lays them out.
    fn gemm(&self, g: Gemm, [a, b, bias, c]: [&wgpu::Buffer; 4]) -> Op {
        let (k, t) = self.kernels.tiling(g.m, g.n);
        let groups = (
            g.n.div_ceil(t.tile_n),
            g.m.div_ceil(t.tile_m),
            self.p as u32,
        );
        Op::grid(
            self.gpu,
            &self.kernels.gemm[k],
            &[a, b, bias, c],
            Some(&g),
            groups,
        )
    }

    /// A convolution's implicit-GEMM product for every candidate, `d.kind` saying how it lands
    /// in `out` (`conv_gemm.wgsl`).
    fn conv_gemm(&self, d: &Dims, image: &Image, [x, w, bias, out]: [&wgpu::Buffer; 4]) -> Op {
        let cols = d.rows * image.oh * image.ow;
        let bufs = [x, w, bias, out];
        self.product(&self.kernels.conv_gemm, d, (image.c_out, cols, 1), &bufs)
    }

    /// A convolution's input gradient `g_in` from its output gradient `g_out`
    /// (`conv_grad_input.wgsl`).
    fn conv_grad_input(&self, d: &Dims, image: &Image, bufs: [&wgpu::Buffer; 3]) -> Op {
        let cols = d.rows * image.h * image.w;
        self.product(&self.kernels.conv_grad_input, d, (image.c, cols, 1), &bufs)
    }

    /// A convolution's parameter gradient into `grad` from its input `x` and output gradient
    /// `g_out`: the split product's partial sums, then their reduction.
    fn conv_grad_params(&self, d: &Dims, image: &Image, [x, g_out]: [&wgpu::Buffer; 2]) -> [Op; 2] {
        let (chunk, splits) = split_sum(image, d.rows as usize, self.room, self.p, self.kernels);
        let d = Dims {
            chunk,
            splits,
            ..*d
        };
        let cols = image.c * image.kh * image.kw + image.bias;
        let bufs = [x, g_out, &self.partials];
        let partials = self.product(
            &self.kernels.conv_grad_weights,
            &d,
            (image.c_out, cols, splits),
            &bufs,
        );
        let n = self.p * (image.c_out * cols) as usize;
        let reduce = Op::new(
            self.gpu,
            &self.kernels.conv_grad_reduce,
            &[&self.partials, &self.grad],
            Some(&d),
            n,
        );
        [partials, reduce]
    }

    /// A batch norm's reduction over each candidate's and channel's values, a workgroup each
    /// (`norm_stats.wgsl`, `norm_reduce.wgsl`).
    fn per_channel(
        &self,
        pipeline: &wgpu::ComputePipeline,
        bufs: &[&wgpu::Buffer],
        d: &Dims,
    ) -> Op {
        Op::grid(
            self.gpu,
            pipeline,
            bufs,
            Some(d),
            (d.image.c, self.p as u32, 1),
        )
    }

    /// A tiled product (`tiled.wgsl`) of `m x n` outputs per candidate and chunk of its sum.
    fn product(
        &self,
        pipelines: &[wgpu::ComputePipeline; TILINGS],
        d: &Dims,
        (m, n, splits): (u32, u32, u32),
        bufs: &[&wgpu::Buffer],
    ) -> Op {
        let (k, t) = self.kernels.tiling(m, n);
        let groups = (
            n.div_ceil(t.tile_n),
            m.div_ceil(t.tile_m),
            self.p as u32 * splits,
        );
        Op::grid(self.gpu, &pipelines[k], bufs, Some(d), groups)
    }

    /// A dense layer's `out = b + x W` over `rows` rows of `x`, `x_stride` floats apart per
    /// candidate (`mode` 2, the biases read from the same buffer as the weights).
    fn dense_product(
        &self,
        offset: u32,
        inputs: u32,
        outputs: u32,
        rows: usize,
        x_stride: u32,
    ) -> Gemm {
        let (w, bias_off) = self.weights(offset, inputs, outputs, false);
        let rows = rows as u32;
        Gemm {
            m: rows,
            n: outputs,
            k: inputs,
            mode: 2,
            a: Strides {
                batch: x_stride,
                ..matrix(0, inputs)
            },
            b: w,
            c: matrix(rows * outputs, outputs),
            bias_off,
            bias_batch: self.n_params as u32,
            ..Gemm::default()
        }
    }

    /// A dense layer's weights (`inputs x outputs`, row-major) in every candidate's parameters,
    /// as `B` (`transposed`: as `B^T`), and where its biases start.
    fn weights(&self, offset: u32, inputs: u32, outputs: u32, transposed: bool) -> (Strides, u32) {
        let (row, col) = if transposed {
            (1, outputs)
        } else {
            (outputs, 1)
        };
        let batch = self.n_params as u32;
        (
            Strides {
                off: offset,
                batch,
                row,
                col,
            },
            offset + inputs * outputs,
        )
    }

    /// A dropout layer's `d` with its key slot; rate 0 (the identity) in evaluation.
    fn dropout_dims(&self, d: Dims, slot: Option<usize>, eval: bool) -> Dims {
        let slot = slot.expect("a dropout's key slot") as u32;
        let rate = if eval { 0 } else { d.image.rate };
        Dims {
            image: Image {
                rate,
                slot,
                ..d.image
            },
            ..d
        }
    }

    /// `combine` of `x` and `y` into `out` (all `v`-shaped; `y` may be the data), `kind` 0 the
    /// sum, 1 a copy of `x`.
    #[allow(clippy::too_many_arguments)]
    fn combine(
        &self,
        kind: u32,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        out: &wgpu::Buffer,
        v: usize,
        y_stride: u32,
        rows: usize,
    ) -> Op {
        let d = Dims {
            p: self.p as u32,
            rows: rows as u32,
            a: self.values[v].width as u32,
            in_stride: y_stride,
            kind,
            ..Dims::default()
        };
        let n = self.p * rows * self.values[v].width;
        Op::new(self.gpu, &self.kernels.combine, &[x, y, out], Some(&d), n)
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
}

/// How a convolution's weight gradient over `rows` rows splits its sum over examples and output
/// pixels for `p` candidates: into chunks of at least the tuning's `min_chunk`, in whole
/// multiples of [`CHUNK_ALIGN`], as many as `room` floats of partial sums per candidate hold
/// and one dispatch's workgroups allow. Returns the chunks' length and number.
fn split_sum(image: &Image, rows: usize, room: usize, p: usize, kernels: &Kernels) -> (u32, u32) {
    let len = (rows as u32 * image.oh * image.ow).max(1);
    let fits = (room / partial_len(image)).min(kernels.max_groups as usize / p.max(1));
    let splits = len
        .div_ceil(kernels.tuning.min_chunk)
        .min(fits as u32)
        .max(1);
    let chunk = len.div_ceil(splits).next_multiple_of(CHUNK_ALIGN);
    (chunk, len.div_ceil(chunk))
}

/// Floats per candidate of the convolutions' partial weight gradients over batches of `rows`
/// rows with `p` candidates side by side: the most one convolution's split needs.
pub fn partial_floats(
    layers: &[GpuLayer],
    room: usize,
    rows: usize,
    p: usize,
    kernels: &Kernels,
) -> usize {
    layers
        .iter()
        .map(|l| match l {
            GpuLayer::Image {
                op: ImageOp::Conv,
                image,
                ..
            } => split_sum(image, rows, room, p, kernels).1 as usize * partial_len(image),
            GpuLayer::Residual { body, shortcut } => partial_floats(body, room, rows, p, kernels)
                .max(partial_floats(shortcut, room, rows, p, kernels)),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Floats of one chunk's partial sums of a convolution's parameter gradient: per output
/// channel, its weights and bias.
fn partial_len(image: &Image) -> usize {
    (image.c_out * (image.c * image.kh * image.kw + image.bias)) as usize
}

/// A row-major matrix of `cols` columns per candidate, `batch` floats apart.
fn matrix(batch: u32, cols: u32) -> Strides {
    Strides {
        off: 0,
        batch,
        row: cols,
        col: 1,
    }
}

/// Mean 0 and variance 1 for every batch norm's running statistics in `state`.
fn fresh_statistics(layers: &[GpuLayer], state: &mut [f32]) {
    for l in layers {
        match l {
            GpuLayer::Image {
                op: ImageOp::Norm,
                image,
                ..
            } => {
                let (at, c) = (image.state_offset as usize, image.c as usize);
                state[at..at + c].fill(0.0);
                state[at + c..at + 2 * c].fill(1.0);
            }
            GpuLayer::Residual { body, shortcut } => {
                fresh_statistics(body, state);
                fresh_statistics(shortcut, state);
            }
            _ => {}
        }
    }
}
