//! Population-parallel training on the GPU: every candidate loss of a generation trains its own
//! copy of the model, side by side in the same dispatches, on the same batches, from the same
//! initial parameters — what the search's fitness does for each candidate on the CPU.
//!
//! The model comes from the plugin as a layer list (`model_layers`, ABI v2) over its flat
//! parameter vector; dense layers and element-wise activations run in `shaders/train/`. The
//! losses are compiled into one objective shader per generation (`candidate_loss` switches on
//! the candidate). A whole run is recorded as command buffers without host round trips: the
//! batch indices and learning rates of every step are uploaded up front and a counter on the
//! device says which step is running.

use evomal_sdk::abi::{
    LAYER_DENSE, LAYER_FLATTEN, LAYER_RELU, LAYER_SIGMOID, LAYER_TANH, LayerDesc,
};
use wgpu::util::DeviceExt;

use super::{Binding, Gpu, GpuError};
use crate::backend::wgsl;
use crate::expr::LossExpr;
use crate::plugin::PluginModel;
use crate::train::objective::TaskKind;
use crate::train::optim::{OptimizerConfig, lr_at};
use crate::train::{BatchSampler, Metric, Outcome, Task, TrainConfig, TrainError};

const DIMS: &str = include_str!("../../shaders/train/dims.wgsl");
const GATHER: &str = include_str!("../../shaders/train/gather.wgsl");
const DENSE_FORWARD: &str = include_str!("../../shaders/train/dense_forward.wgsl");
const DENSE_GRAD_PARAMS: &str = include_str!("../../shaders/train/dense_grad_params.wgsl");
const DENSE_GRAD_INPUT: &str = include_str!("../../shaders/train/dense_grad_input.wgsl");
const ACTIVATION_FORWARD: &str = include_str!("../../shaders/train/activation_forward.wgsl");
const ACTIVATION_BACKWARD: &str = include_str!("../../shaders/train/activation_backward.wgsl");
const OPTIMIZER: &str = include_str!("../../shaders/train/optimizer.wgsl");
const TICK: &str = include_str!("../../shaders/train/tick.wgsl");
const CHECK: &str = include_str!("../../shaders/train/check.wgsl");
const OBJECTIVE: &str = include_str!("../../shaders/train/objective.wgsl");

/// Steps recorded into one command buffer.
const STEPS_PER_SUBMIT: usize = 50;
/// Rows per evaluation chunk (at least).
const EVAL_ROWS: usize = 256;

/// One candidate's result.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateRun {
    pub outcome: Outcome,
    /// The metric on the evaluated split; +inf unless the run finished.
    pub metric: f64,
    pub params: Vec<f32>,
}

/// A layer the GPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GpuLayer {
    Dense {
        inputs: u32,
        outputs: u32,
        offset: u32,
    },
    /// 1 relu, 2 tanh, 3 sigmoid (the shaders' `kind`).
    Activation {
        kind: u32,
        width: u32,
    },
    Flatten,
}

fn gpu_layers(layers: &[LayerDesc]) -> Result<Vec<GpuLayer>, GpuError> {
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

/// The shaders' `Dims` uniform.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    p: u32,
    rows: u32,
    a: u32,
    b: u32,
    in_stride: u32,
    offset: u32,
    n_params: u32,
    kind: u32,
}

/// The optimiser shader's `Opt` uniform.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Opt {
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

struct Kernels {
    gather: wgpu::ComputePipeline,
    dense_forward: wgpu::ComputePipeline,
    dense_grad_params: wgpu::ComputePipeline,
    dense_grad_input: wgpu::ComputePipeline,
    activation_forward: wgpu::ComputePipeline,
    activation_backward: wgpu::ComputePipeline,
    optimizer: wgpu::ComputePipeline,
    tick: wgpu::ComputePipeline,
    check: wgpu::ComputePipeline,
}

impl Kernels {
    fn new(gpu: &Gpu) -> Result<Kernels, GpuError> {
        use Binding::{Read as R, Uniform as U, Write as W};
        let make = |label: &str, src: &str, bindings: &[Binding]| {
            let src = format!("{DIMS}\n{src}\n{}", wgsl::COMMON);
            let module = gpu.module(label, &src)?;
            gpu.pipeline(label, &module, "main", bindings)
        };
        Ok(Kernels {
            gather: make("gather", GATHER, &[R, R, R, R, W, W, U])?,
            dense_forward: make("dense_forward", DENSE_FORWARD, &[R, R, W, U])?,
            dense_grad_params: make("dense_grad_params", DENSE_GRAD_PARAMS, &[R, R, W, U])?,
            dense_grad_input: make("dense_grad_input", DENSE_GRAD_INPUT, &[R, R, W, U])?,
            activation_forward: make("activation_forward", ACTIVATION_FORWARD, &[R, W, U])?,
            activation_backward: make("activation_backward", ACTIVATION_BACKWARD, &[R, R, W, U])?,
            optimizer: make("optimizer", OPTIMIZER, &[W, R, W, W, R, R, U])?,
            tick: make("tick", TICK, &[W])?,
            check: make("check", CHECK, &[R, W, R, U])?,
        })
    }
}

/// A split's examples on the device, and its targets on the host (for the metric).
struct Split {
    n: usize,
    xs: wgpu::Buffer,
    ys: wgpu::Buffer,
    targets: Vec<f32>,
}

/// One recorded dispatch.
struct Op<'a> {
    pipeline: &'a wgpu::ComputePipeline,
    bind: wgpu::BindGroup,
    groups: (u32, u32),
}

/// Trains populations of candidates of one task and model on one device. Data, kernels and
/// per-candidate buffers are made once, for up to `capacity` candidates.
pub struct PopulationTrainer<'g> {
    gpu: &'g Gpu,
    kernels: Kernels,
    layers: Vec<GpuLayer>,
    kind: TaskKind,
    n_out: usize,
    input_len: usize,
    target_width: usize,
    n_params: usize,
    capacity: usize,
    train: Split,
    eval: Split,
    eval_split: u32,
}

impl<'g> PopulationTrainer<'g> {
    /// Uploads the training split and `eval_split` of `task`, for `model`'s layers.
    pub fn new(
        gpu: &'g Gpu,
        task: &Task<'_>,
        model: &PluginModel,
        capacity: usize,
        eval_split: u32,
    ) -> Result<PopulationTrainer<'g>, TrainError> {
        let layers = gpu_layers(&model.layers()?)?;
        let upload = |split: u32| -> Result<Split, TrainError> {
            let n = task.split_size(split);
            let idx: Vec<u64> = (0..n as u64).collect();
            let mut x = vec![0.0f32; n * task.input_len];
            let mut y = vec![0.0f32; n * task.target_width];
            task.plugin.read_batch(split, &idx, &mut x, &mut y)?;
            Ok(Split {
                n,
                xs: gpu.buffer_with("split inputs", &x)?,
                ys: gpu.buffer_with("split targets", &y)?,
                targets: y,
            })
        };
        Ok(PopulationTrainer {
            gpu,
            kernels: Kernels::new(gpu)?,
            layers,
            kind: task.kind,
            n_out: task.n_out,
            input_len: task.input_len,
            target_width: task.target_width,
            n_params: model.n_params(),
            capacity,
            train: upload(0)?,
            eval: upload(eval_split)?,
            eval_split,
        })
    }

    /// The split `train` scores on.
    pub fn eval_split(&self) -> u32 {
        self.eval_split
    }

    /// Trains one model per loss from `init` for `cfg.steps` steps on batches drawn from
    /// `seed` (the same for all, as [`Task::train`] draws them), then scores each on the
    /// evaluation split with `metric`.
    pub fn train(
        &self,
        losses: &[LossExpr],
        init: &[f32],
        cfg: &TrainConfig,
        seed: u64,
        metric: Metric,
    ) -> Result<Vec<CandidateRun>, GpuError> {
        assert!(
            losses.len() <= self.capacity,
            "more candidates than capacity"
        );
        assert_eq!(init.len(), self.n_params, "one initial parameter vector");
        if losses.is_empty() {
            return Ok(Vec::new());
        }
        let gpu = self.gpu;
        let p = losses.len();
        let batch = cfg.batch.min(self.train.n).max(1);
        let eval_rows = EVAL_ROWS.max(batch).min(self.eval.n.max(1));
        let rows = batch.max(eval_rows);

        // Values flowing through the network: 0 is the gathered input (shared by all
        // candidates), value l + 1 the output of layer l (a flatten reuses its input's).
        let mut value_of = vec![0usize];
        let mut widths = vec![self.input_len];
        for l in &self.layers {
            match *l {
                GpuLayer::Flatten => value_of.push(*value_of.last().expect("input")),
                GpuLayer::Dense { outputs, .. } => {
                    value_of.push(widths.len());
                    widths.push(outputs as usize);
                }
                GpuLayer::Activation { width, .. } => {
                    value_of.push(widths.len());
                    widths.push(width as usize);
                }
            }
        }
        let xb = gpu.buffer("batch inputs", rows * self.input_len)?;
        let yb = gpu.buffer("batch targets", rows * self.target_width)?;
        let mut values = vec![];
        let mut grads = vec![];
        for (v, &w) in widths.iter().enumerate().skip(1) {
            values.push(gpu.buffer(&format!("activations {v}"), p * rows * w)?);
            grads.push(gpu.buffer(&format!("gradients {v}"), p * rows * w)?);
        }
        let value = |v: usize| if v == 0 { &xb } else { &values[v - 1] };
        let grad_of = |v: usize| &grads[v - 1];

        let params: Vec<f32> = init.repeat(p);
        let params_buf = gpu.buffer_with("parameters", &params)?;
        let total = p * self.n_params;
        let grad = gpu.buffer("parameter gradients", total)?;
        let m = gpu.buffer("optimiser m", total)?;
        let v = gpu.buffer("optimiser v", total)?;
        let row_loss = gpu.buffer("row losses", p * rows)?;
        let status = gpu.buffer_with("status", &vec![u32::MAX; p])?;
        let counter = gpu.buffer_with("step counter", &[0u32])?;
        let eval_counter = gpu.buffer_with("eval counter", &[0u32])?;

        let mut sampler = BatchSampler::new(self.train.n, seed);
        let mut step_idx = vec![0u64; batch];
        let mut idx = Vec::with_capacity(cfg.steps * batch);
        let mut lr = Vec::with_capacity(cfg.steps);
        for step in 0..cfg.steps {
            sampler.next(&mut step_idx);
            idx.extend(step_idx.iter().map(|&i| i as u32));
            lr.push(lr_at(cfg.lr, &cfg.milestones, cfg.gamma, step));
        }
        let idx = gpu.buffer_with("batch indices", &idx)?;
        let lr = gpu.buffer_with("learning rates", &lr)?;
        let n_chunks = self.eval.n.div_ceil(eval_rows);
        let eval_idx: Vec<u32> = (0..n_chunks * eval_rows)
            .map(|i| if i < self.eval.n { i as u32 } else { 0 })
            .collect();
        let eval_idx = gpu.buffer_with("evaluation indices", &eval_idx)?;

        let n_params = self.n_params as u32;
        let k = &self.kernels;
        let make_op = |pipeline: &'static str, buffers: &[&wgpu::Buffer], d: Dims, n: usize| {
            let pipeline = k.named(pipeline);
            let dims = gpu
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("dims"),
                    contents: bytemuck::bytes_of(&d),
                    usage: wgpu::BufferUsages::UNIFORM,
                });
            let mut all = buffers.to_vec();
            all.push(&dims);
            Op {
                pipeline,
                bind: gpu.bind(pipeline, &all),
                groups: gpu.groups(n, 64),
            }
        };
        let dims = |rows: usize, a: usize, b: usize| Dims {
            p: p as u32,
            rows: rows as u32,
            a: a as u32,
            b: b as u32,
            n_params,
            ..Dims::default()
        };

        // Gather, then the layers forward, for `rows` rows.
        let forward = |rows: usize, split: &Split, idx: &wgpu::Buffer, counter: &wgpu::Buffer| {
            let mut ops = vec![make_op(
                "gather",
                &[&split.xs, &split.ys, idx, counter, &xb, &yb],
                dims(rows, self.input_len, self.target_width),
                rows * self.input_len.max(self.target_width),
            )];
            for (l, layer) in self.layers.iter().enumerate() {
                let (input, output) = (value_of[l], value_of[l + 1]);
                let in_stride = if input == 0 { 0 } else { rows * widths[input] };
                match *layer {
                    GpuLayer::Dense {
                        inputs,
                        outputs,
                        offset,
                    } => {
                        let d = Dims {
                            in_stride: in_stride as u32,
                            offset,
                            ..dims(rows, inputs as usize, outputs as usize)
                        };
                        ops.push(make_op(
                            "dense_forward",
                            &[value(input), &params_buf, value(output)],
                            d,
                            p * rows * outputs as usize,
                        ));
                    }
                    GpuLayer::Activation { kind, width } => {
                        let d = Dims {
                            kind,
                            ..dims(rows, width as usize, width as usize)
                        };
                        ops.push(make_op(
                            "activation_forward",
                            &[value(input), value(output)],
                            d,
                            p * rows * width as usize,
                        ));
                    }
                    GpuLayer::Flatten => {}
                }
            }
            ops
        };

        let last = *value_of.last().expect("output");
        let objective = self.objective(losses)?;
        let stride = losses.iter().map(LossExpr::len).max().unwrap_or(1);
        let mut loss_weights = vec![0.0f32; p * stride];
        for (c, e) in losses.iter().enumerate() {
            loss_weights[c * stride..c * stride + e.len()].copy_from_slice(e.weights());
        }
        let loss_weights = gpu.buffer_with("loss weights", &loss_weights)?;
        let mut step_ops = forward(batch, &self.train, &idx, &counter);
        let objective_dims = uniform_buffer(gpu, &dims(batch, self.target_width, self.n_out));
        step_ops.push(Op {
            pipeline: &objective,
            bind: gpu.bind(
                &objective,
                &[
                    value(last),
                    &yb,
                    &loss_weights,
                    grad_of(last),
                    &row_loss,
                    &objective_dims,
                ],
            ),
            groups: gpu.groups(p * batch, 64),
        });
        step_ops.push(make_op(
            "check",
            &[&row_loss, &status, &counter],
            dims(batch, 0, 0),
            p,
        ));
        for (l, layer) in self.layers.iter().enumerate().rev() {
            let (input, output) = (value_of[l], value_of[l + 1]);
            let in_stride = if input == 0 { 0 } else { batch * widths[input] };
            match *layer {
                GpuLayer::Dense {
                    inputs,
                    outputs,
                    offset,
                } => {
                    let d = Dims {
                        in_stride: in_stride as u32,
                        offset,
                        ..dims(batch, inputs as usize, outputs as usize)
                    };
                    step_ops.push(make_op(
                        "dense_grad_params",
                        &[value(input), grad_of(output), &grad],
                        d,
                        p * (inputs as usize + 1) * outputs as usize,
                    ));
                    if input != 0 {
                        step_ops.push(make_op(
                            "dense_grad_input",
                            &[grad_of(output), &params_buf, grad_of(input)],
                            d,
                            p * batch * inputs as usize,
                        ));
                    }
                }
                GpuLayer::Activation { kind, width } if input != 0 => {
                    let d = Dims {
                        kind,
                        ..dims(batch, width as usize, width as usize)
                    };
                    step_ops.push(make_op(
                        "activation_backward",
                        &[value(output), grad_of(output), grad_of(input)],
                        d,
                        p * batch * width as usize,
                    ));
                }
                GpuLayer::Activation { .. } | GpuLayer::Flatten => {}
            }
        }
        let opt = opt_uniform(&cfg.optimizer, total);
        let opt = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("optimiser"),
                contents: bytemuck::bytes_of(&opt),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        step_ops.push(Op {
            pipeline: &k.optimizer,
            bind: gpu.bind(
                &k.optimizer,
                &[&params_buf, &grad, &m, &v, &lr, &counter, &opt],
            ),
            groups: gpu.groups(total, 64),
        });
        step_ops.push(Op {
            pipeline: &k.tick,
            bind: gpu.bind(&k.tick, &[&counter]),
            groups: (1, 1),
        });

        for first in (0..cfg.steps).step_by(STEPS_PER_SUBMIT) {
            let n = STEPS_PER_SUBMIT.min(cfg.steps - first);
            record(gpu, &step_ops, n);
        }

        let status = gpu.read_u32(&status, p)?;
        let trained = gpu.read(&params_buf, total)?;
        let eval_ops = forward(eval_rows, &self.eval, &eval_idx, &eval_counter);
        let mut sums = vec![0.0f64; p];
        let mut scratch = vec![0.0f32; eval_rows * self.n_out];
        for chunk in 0..n_chunks {
            gpu.queue
                .write_buffer(&eval_counter, 0, bytemuck::bytes_of(&(chunk as u32)));
            record(gpu, &eval_ops, 1);
            let out = gpu.read(value(last), p * eval_rows * self.n_out)?;
            let start = chunk * eval_rows;
            let b = eval_rows.min(self.eval.n - start);
            let targets =
                &self.eval.targets[start * self.target_width..(start + b) * self.target_width];
            for (c, sum) in sums.iter_mut().enumerate() {
                let rows_out = &out[c * eval_rows * self.n_out..][..b * self.n_out];
                *sum += metric.sum(
                    rows_out,
                    targets,
                    self.n_out,
                    &mut scratch[..b * self.n_out],
                );
            }
        }
        Ok((0..p)
            .map(|c| {
                let params = trained[c * self.n_params..(c + 1) * self.n_params].to_vec();
                let outcome = if status[c] != u32::MAX {
                    Outcome::Diverged {
                        step: status[c] as usize,
                    }
                } else if params.iter().any(|x| !x.is_finite()) {
                    Outcome::Diverged { step: cfg.steps }
                } else {
                    Outcome::Finished
                };
                let value = sums[c] / self.eval.n as f64;
                let metric = if outcome == Outcome::Finished && value.is_finite() {
                    value
                } else {
                    f64::INFINITY
                };
                CandidateRun {
                    outcome,
                    metric,
                    params,
                }
            })
            .collect())
    }

    /// The objective shader for this generation's losses.
    fn objective(&self, losses: &[LossExpr]) -> Result<wgpu::ComputePipeline, GpuError> {
        use std::fmt::Write;
        let stride = losses.iter().map(LossExpr::len).max().unwrap_or(1);
        let mut cases = String::new();
        let mut functions = String::new();
        for (c, e) in losses.iter().enumerate() {
            let args: Vec<String> = (0..e.len()).map(|j| format!("weights[w + {j}u]")).collect();
            let _ = writeln!(
                cases,
                "        case {c}u: {{\n            return loss_{c}(y_i, yhat_i, array<f32, {}>({}));\n        }}",
                e.len(),
                args.join(", ")
            );
            functions.push_str(&wgsl::loss_grad_function(e, &format!("loss_{c}")));
        }
        let src = OBJECTIVE
            .replace("{{n_out}}", &self.n_out.to_string())
            .replace(
                "{{classification}}",
                if self.kind == TaskKind::Classification {
                    "true"
                } else {
                    "false"
                },
            )
            .replace("{{stride}}", &stride.to_string())
            .replace("{{cases}}\n", &cases)
            .replace("{{functions}}\n", &functions);
        let src = format!("{DIMS}\n{src}\n{}", wgsl::COMMON);
        let module = self.gpu.module("objective", &src)?;
        use Binding::{Read as R, Uniform as U, Write as W};
        self.gpu
            .pipeline("objective", &module, "main", &[R, R, R, W, W, U])
    }
}

impl Kernels {
    fn named(&self, name: &str) -> &wgpu::ComputePipeline {
        match name {
            "gather" => &self.gather,
            "dense_forward" => &self.dense_forward,
            "dense_grad_params" => &self.dense_grad_params,
            "dense_grad_input" => &self.dense_grad_input,
            "activation_forward" => &self.activation_forward,
            "activation_backward" => &self.activation_backward,
            "check" => &self.check,
            other => unreachable!("no kernel `{other}`"),
        }
    }
}

fn uniform_buffer(gpu: &Gpu, d: &Dims) -> wgpu::Buffer {
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("dims"),
            contents: bytemuck::bytes_of(d),
            usage: wgpu::BufferUsages::UNIFORM,
        })
}

fn opt_uniform(cfg: &OptimizerConfig, total: usize) -> Opt {
    match *cfg {
        OptimizerConfig::Sgd {
            momentum,
            nesterov,
            weight_decay,
        } => Opt {
            total: total as u32,
            kind: 0,
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
            total: total as u32,
            kind: 1,
            beta1,
            beta2,
            eps,
            weight_decay,
            ..Opt::default()
        },
    }
}

/// Submits `ops`, in order, `times` times in one command buffer.
fn record(gpu: &Gpu, ops: &[Op<'_>], times: usize) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for _ in 0..times {
            for op in ops {
                pass.set_pipeline(op.pipeline);
                pass.set_bind_group(0, &op.bind, &[]);
                pass.dispatch_workgroups(op.groups.0, op.groups.1, 1);
            }
        }
    }
    gpu.queue.submit([enc.finish()]);
}
