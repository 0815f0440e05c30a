//! The training kernels of `shaders/train/`, their uniforms, and recorded dispatches.

use std::fmt::Write;

use wgpu::util::DeviceExt;

use super::tuning::{TILINGS, Tiles, Tuning};
use crate::backend::wgsl;
use crate::expr::LossExpr;
use crate::gpu::{Binding, Gpu, GpuError};
use crate::train::optim::OptimizerConfig;

const DIMS: &str = include_str!("../../../shaders/train/dims.wgsl");
const OBJECTIVE: &str = include_str!("../../../shaders/train/objective.wgsl");
const TILED: &str = include_str!("../../../shaders/train/tiled.wgsl");
const SUM: &str = include_str!("../../../shaders/train/workgroup_sum.wgsl");

/// The shaders' `Dims` uniform (`shaders/train/dims.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Dims {
    pub p: u32,
    pub rows: u32,
    pub a: u32,
    pub b: u32,
    pub in_stride: u32,
    pub offset: u32,
    pub n_params: u32,
    pub kind: u32,
    pub image: Image,
    /// A convolution's weight gradient: the length of each chunk of its split sum, their number.
    pub chunk: u32,
    pub splits: u32,
    /// The gather's inputs are byte codes (`split.rs`).
    pub coded: u32,
    pub unused: u32,
}

/// The image part of [`Dims`]: a convolution's or a pooling's shapes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Image {
    pub c: u32,
    pub h: u32,
    pub w: u32,
    pub c_out: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad: u32,
    pub oh: u32,
    pub ow: u32,
    pub bias: u32,
    pub state_offset: u32,
    pub n_state: u32,
    /// Dropout: the rate's f32 bits, the layer's slot among the dropout layers, their number.
    pub rate: u32,
    pub slot: u32,
    pub slots: u32,
}

/// The `Gemm` uniform of `shaders/train/gemm.wgsl`: `C = (C | bias | 0) + A B` per candidate,
/// every matrix as an offset, a per-candidate stride and row and column strides.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Gemm {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    /// 0: `C = A B`; 1: `C += A B`; 2: `C = bias + A B`.
    pub mode: u32,
    pub a: Strides,
    pub b: Strides,
    pub c: Strides,
    pub bias_off: u32,
    pub bias_batch: u32,
    pub unused: [u32; 2],
}

/// Where a matrix's entry (candidate, row, column) is: `off + candidate * batch + row * row +
/// column * col`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Strides {
    pub off: u32,
    pub batch: u32,
    pub row: u32,
    pub col: u32,
}

/// The optimiser shader's `Opt` uniform (`shaders/train/optimizer.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Opt {
    total: u32,
    kind: u32,
    nesterov: u32,
    pad: u32,
    momentum: f32,
    weight_decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    pad2: [u32; 3],
}

impl Opt {
    /// The optimiser for `total` values in all candidates' parameter vectors.
    pub fn new(cfg: &OptimizerConfig, total: usize) -> Opt {
        let total = total as u32;
        match *cfg {
            OptimizerConfig::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => Opt {
                total,
                nesterov: nesterov as u32,
                momentum,
                weight_decay,
                ..Opt::default()
            },
            OptimizerConfig::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => Opt {
                total,
                kind: 1,
                beta1,
                beta2,
                eps,
                weight_decay,
                ..Opt::default()
            },
        }
    }
}

/// The hand-written kernels, compiled once per trainer.
pub struct Kernels {
    pub gather: wgpu::ComputePipeline,
    pub dense_grad_bias: wgpu::ComputePipeline,
    pub activation_forward: wgpu::ComputePipeline,
    pub activation_backward: wgpu::ComputePipeline,
    pub optimizer: wgpu::ComputePipeline,
    pub tick: wgpu::ComputePipeline,
    pub check: wgpu::ComputePipeline,
    pub inner_step: wgpu::ComputePipeline,
    pub meta_grad: wgpu::ComputePipeline,
    pub conv_grad_reduce: wgpu::ComputePipeline,
    pub pool_forward: wgpu::ComputePipeline,
    pub pool_backward: wgpu::ComputePipeline,
    pub norm_stats: wgpu::ComputePipeline,
    pub norm_forward: wgpu::ComputePipeline,
    pub norm_reduce: wgpu::ComputePipeline,
    pub norm_grad_params: wgpu::ComputePipeline,
    pub norm_grad_input: wgpu::ComputePipeline,
    pub norm_jvp: wgpu::ComputePipeline,
    pub combine: wgpu::ComputePipeline,
    pub dropout: wgpu::ComputePipeline,
    /// Products, in each of the `tiles`.
    pub gemm: [wgpu::ComputePipeline; TILINGS],
    pub conv_gemm: [wgpu::ComputePipeline; TILINGS],
    pub conv_grad_input: [wgpu::ComputePipeline; TILINGS],
    pub conv_grad_weights: [wgpu::ComputePipeline; TILINGS],
    pub tuning: Tuning,
    /// The most workgroups a dispatch has along one dimension.
    pub max_groups: u32,
    /// Each pipeline above with its name, for profiles.
    names: Vec<(wgpu::ComputePipeline, String)>,
}

impl Kernels {
    pub fn new(gpu: &Gpu, tuning: Tuning) -> Result<Kernels, GpuError> {
        use Binding::{Read as R, Uniform as U, Write as W};
        let names = std::cell::RefCell::new(Vec::new());
        let make = |label: &str, src: &str, bindings: &[Binding]| {
            let module = gpu.module(label, &with_helpers(src))?;
            let pipeline = gpu.pipeline(label, &module, "main", bindings)?;
            names
                .borrow_mut()
                .push((pipeline.clone(), label.to_string()));
            Ok::<_, GpuError>(pipeline)
        };
        let tiles = tuning.tiles;
        // A kernel, with the source of a shared helper appended where it takes one.
        macro_rules! kernel {
            ($name:literal, $bindings:expr) => {
                make(
                    $name,
                    include_str!(concat!("../../../shaders/train/", $name, ".wgsl")),
                    &$bindings,
                )?
            };
            ($name:literal, $bindings:expr, $helper:expr) => {
                make(
                    $name,
                    &format!(
                        "{}\n{}",
                        include_str!(concat!("../../../shaders/train/", $name, ".wgsl")),
                        $helper
                    ),
                    &$bindings,
                )?
            };
        }
        // A product's kernel in every tiling.
        macro_rules! tiled {
            ($name:literal, $bindings:expr) => {{
                let src = include_str!(concat!("../../../shaders/train/", $name, ".wgsl"));
                let label = |t: &Tiles| format!("{} {t}", $name);
                [
                    make(&label(&tiles[0]), &tiles[0].shader(src, TILED), &$bindings)?,
                    make(&label(&tiles[1]), &tiles[1].shader(src, TILED), &$bindings)?,
                    make(&label(&tiles[2]), &tiles[2].shader(src, TILED), &$bindings)?,
                ]
            }};
        }
        Ok(Kernels {
            gather: kernel!("gather", [R, R, R, R, R, W, W, U]),
            dense_grad_bias: kernel!("dense_grad_bias", [R, W, U]),
            activation_forward: kernel!("activation_forward", [R, W, U]),
            activation_backward: kernel!("activation_backward", [R, R, W, U]),
            optimizer: kernel!("optimizer", [W, R, W, W, R, R, U]),
            tick: kernel!("tick", [W]),
            check: kernel!("check", [R, W, R, U]),
            inner_step: kernel!("inner_step", [R, R, W, U]),
            meta_grad: kernel!("meta_grad", [R, R, R, W, U]),
            conv_grad_reduce: kernel!("conv_grad_reduce", [R, W, U]),
            pool_forward: kernel!("pool_forward", [R, R, W, U]),
            pool_backward: kernel!("pool_backward", [R, R, W, U]),
            norm_stats: kernel!("norm_stats", [R, W, W, U], SUM),
            norm_forward: kernel!("norm_forward", [R, R, R, W, U]),
            norm_reduce: kernel!("norm_reduce", [R, R, R, W, U], SUM),
            norm_grad_params: kernel!("norm_grad_params", [R, W, U]),
            norm_grad_input: kernel!("norm_grad_input", [R, R, R, R, R, W, U]),
            norm_jvp: kernel!("norm_jvp", [R, R, R, R, R, R, W, U]),
            combine: kernel!("combine", [R, R, W, U]),
            dropout: kernel!("dropout", [R, R, R, W, U]),
            gemm: tiled!("gemm", [R, R, R, W, U]),
            conv_gemm: tiled!("conv_gemm", [R, R, R, W, U]),
            conv_grad_input: tiled!("conv_grad_input", [R, R, W, U]),
            conv_grad_weights: tiled!("conv_grad_weights", [R, R, W, U]),
            tuning,
            max_groups: gpu.limits().max_compute_workgroups_per_dimension,
            names: names.into_inner(),
        })
    }

    /// The name of `pipeline`: one of these kernels, or else a run's loss objective (the only
    /// pipelines made elsewhere).
    pub fn name(&self, pipeline: &wgpu::ComputePipeline) -> &str {
        self.names
            .iter()
            .find(|(p, _)| p == pipeline)
            .map_or("objective (the losses)", |(_, name)| name)
    }

    /// The cheapest tiling for a product of `m x n` outputs ([`Tiles::cost`]; the wider on a
    /// tie).
    pub fn tiling(&self, m: u32, n: u32) -> (usize, Tiles) {
        let mut best = 0;
        let tiles = &self.tuning.tiles;
        for (i, t) in tiles.iter().enumerate() {
            if t.cost(m, n) < tiles[best].cost(m, n) {
                best = i;
            }
        }
        (best, tiles[best])
    }
}

/// `src` with the shared `Dims` declaration and the generated shaders' helpers.
fn with_helpers(src: &str) -> String {
    format!("{DIMS}\n{src}\n{}", wgsl::COMMON)
}

/// Floats per candidate in an objective's weights buffer: the longest loss's node count.
pub fn weight_stride(losses: &[LossExpr]) -> usize {
    losses.iter().map(LossExpr::len).max().unwrap_or(1)
}

/// The objective shader of one generation: `losses[c]` is candidate `c`'s loss, reading its
/// weights from `weight_stride(losses) * c` in the weights buffer. With `d2_stride = Some(K)` (the local
/// search) it also writes what each loss saw as yhat (binding 5) and its mixed derivatives,
/// `K` per element (binding 6); the uniform comes last.
pub fn objective(
    gpu: &Gpu,
    losses: &[LossExpr],
    n_out: usize,
    classification: bool,
    d2_stride: Option<usize>,
) -> Result<wgpu::ComputePipeline, GpuError> {
    let mut cases = String::new();
    let mut functions = String::new();
    for (c, e) in losses.iter().enumerate() {
        let args: Vec<String> = (0..e.len()).map(|j| format!("weights[w + {j}u]")).collect();
        let _ = writeln!(
            cases,
            "        case {c}u: {{\n            return loss_{c}(y_i, yhat_i, array<f32, {}>({}), e);\n        }}",
            e.len(),
            args.join(", ")
        );
        functions.push_str(&wgsl::loss_grad_function(
            e,
            &format!("loss_{c}"),
            d2_stride,
        ));
    }
    let (full_bindings, keep) = match d2_stride {
        Some(_) => (
            "@group(0) @binding(5) var<storage, read_write> probs: array<f32>;\n@group(0) @binding(6) var<storage, read_write> d2: array<f32>;",
            "    for (var j = 0u; j < N_OUT; j++) {\n        probs[o + j] = p[j];\n    }",
        ),
        None => ("", ""),
    };
    let src = OBJECTIVE
        .replace("{{n_out}}", &n_out.to_string())
        .replace("{{classification}}", &classification.to_string())
        .replace("{{stride}}", &weight_stride(losses).to_string())
        .replace("{{full_bindings}}", full_bindings)
        .replace(
            "{{dims_binding}}",
            if d2_stride.is_some() { "7" } else { "5" },
        )
        .replace("{{keep_probabilities}}", keep)
        .replace("{{cases}}\n", &cases)
        .replace("{{functions}}\n", &functions);
    let module = gpu.module("objective", &with_helpers(&src))?;
    use Binding::{Read as R, Uniform as U, Write as W};
    let bindings = match d2_stride {
        Some(_) => vec![R, R, R, W, W, W, W, U],
        None => vec![R, R, R, W, W, U],
    };
    gpu.pipeline("objective", &module, "main", &bindings)
}

/// One dispatch, ready to record: its bind group holds the buffers and a uniform (wgpu handles
/// are reference-counted, so an `Op` keeps what it uses alive).
pub struct Op {
    pipeline: wgpu::ComputePipeline,
    bind: wgpu::BindGroup,
    groups: (u32, u32, u32),
}

impl Op {
    /// `pipeline` over `buffers` then `uniform` (when given), for `n` invocations.
    pub fn new<U: bytemuck::Pod>(
        gpu: &Gpu,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
        uniform: Option<&U>,
        n: usize,
    ) -> Op {
        let (x, y) = gpu.groups(n, 64);
        Op::grid(gpu, pipeline, buffers, uniform, (x, y, 1))
    }

    /// `pipeline` over `buffers` then `uniform` (when given), on a grid of `groups` workgroups.
    pub fn grid<U: bytemuck::Pod>(
        gpu: &Gpu,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
        uniform: Option<&U>,
        groups: (u32, u32, u32),
    ) -> Op {
        let uniform = uniform.map(|u| {
            gpu.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("uniform"),
                    contents: bytemuck::bytes_of(u),
                    usage: wgpu::BufferUsages::UNIFORM,
                })
        });
        let mut all = buffers.to_vec();
        all.extend(uniform.as_ref());
        Op {
            pipeline: pipeline.clone(),
            bind: gpu.bind(pipeline, &all),
            groups,
        }
    }

    pub fn pipeline(&self) -> &wgpu::ComputePipeline {
        &self.pipeline
    }

    pub fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.dispatch_workgroups(self.groups.0, self.groups.1, self.groups.2);
    }
}

/// Submits `ops`, in order, `times` times in one command buffer. wgpu orders the dispatches
/// within the pass: each sees what the previous ones wrote.
pub fn record(gpu: &Gpu, ops: &[Op], times: usize) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for _ in 0..times {
            for op in ops {
                op.dispatch(&mut pass);
            }
        }
    }
    gpu.queue.submit([enc.finish()]);
}
