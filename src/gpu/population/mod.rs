//! Population-parallel training on the GPU: every candidate loss of a generation trains its own
//! copy of the model, side by side in the same dispatches, on the same batches, from the same
//! initial parameters — what the search's fitness does for each candidate on the CPU.
//!
//! The model comes from the plugin as a layer list (`model_layers`, ABI v2) over its flat
//! parameter vector ([`net`]); dense layers and element-wise activations run in
//! `shaders/train/` ([`kernels`]). The losses are compiled into one objective shader per
//! generation, which switches on the candidate. A whole run is recorded as command buffers
//! without host round trips: the batch indices and learning rates of every step are uploaded up
//! front, and a counter on the device says which step is running.

mod kernels;
mod layers;
mod meta;
mod meta_test;
mod net;
mod profile;
mod split;
mod tuning;

pub use meta::{GpuMetaGradient, MetaHostTime};
pub use profile::KernelTime;
pub use tuning::Tuning;

use std::sync::Mutex;

use evomal_sdk::abi::{AUGMENT_CROP_FLIP, AUGMENT_NONE};
use evomal_sdk::augment::CropFlip;
use kernels::{Dims, Image, Kernels, Op, Opt, record};
use layers::{GpuLayer, dropout_ids, gpu_layers, mask_keys, row_floats, state_len};
use net::{Crops, Net, Pass, partial_floats};
use split::Split;

use super::{Gpu, GpuError};
use crate::expr::LossExpr;
use crate::plugin::PluginModel;
use crate::train::objective::TaskKind;
use crate::train::optim::lr_at;
use crate::train::{BatchSampler, Metric, Outcome, Task, TrainConfig, TrainError, pass_seed};

/// A fitness run's uploads: batch indices, learning rates, dropout mask keys and crops.
type Schedule = (wgpu::Buffer, wgpu::Buffer, Vec<u32>, Option<wgpu::Buffer>);

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

/// Models in training: the recorded step and how many steps have run.
struct Run<'n> {
    net: Net<'n>,
    ops: Vec<Op>,
    /// Per candidate: the step its loss first was not finite, or `u32::MAX`.
    status: wgpu::Buffer,
    done: usize,
    eval_rows: usize,
}

impl Run<'_> {
    /// Runs the recorded step until `steps` have run.
    fn advance(&mut self, gpu: &Gpu, steps: usize) {
        while self.done < steps {
            let n = STEPS_PER_SUBMIT.min(steps - self.done);
            record(gpu, &self.ops, n);
            self.done += n;
        }
    }
}

/// What bounds the candidates side by side on a device, in bytes.
struct Memory {
    /// One storage binding, which holds all candidates' copies of a buffer.
    binding: usize,
    /// The device's memory, where the driver says.
    device: Option<u64>,
    /// The splits uploaded for the whole run.
    data: usize,
}

impl Memory {
    /// How many candidates fit, each with `largest` bytes in its largest buffer and `each`
    /// bytes in all: as many as one binding holds of the largest, and as many as four fifths
    /// of the device's memory holds beside the data (the rest is left to the driver, the
    /// kernels and the objective's buffers).
    fn fit(&self, largest: usize, each: usize) -> usize {
        let by_binding = self.binding / largest.max(1);
        let by_memory = self.device.map_or(usize::MAX, |bytes| {
            let usable = (bytes / 5 * 4).min(usize::MAX as u64) as usize;
            usable.saturating_sub(self.data) / each.max(1)
        });
        by_binding.min(by_memory)
    }
}

/// Trains populations of candidates of one task and model on one device. The data and the
/// kernels are uploaded and compiled once; each [`PopulationTrainer::train`] makes its own
/// per-candidate buffers.
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
    /// How training batches are cropped and flipped, if they are.
    augment: Option<Augment>,
    /// Further instances of the model, kept for the trainer's life, on which the local
    /// searches draw their initialisations on every core (made as needed).
    spare_models: Mutex<Vec<PluginModel>>,
    meta_host: Mutex<MetaHostTime>,
}

/// The training split's crops and flips (`TaskInfo::crop_flip`), replayed on the device as the
/// SDK draws them on the CPU.
#[derive(Clone, Copy)]
struct Augment {
    recipe: CropFlip,
    shape: [usize; 3],
}

impl Augment {
    /// The words `gather.wgsl` reads: the fill per channel, then each pass's draws for its
    /// rows, passes given as (seed, rows) in the order of the index lists.
    fn words(&self, passes: impl IntoIterator<Item = (u64, usize)>) -> Vec<u32> {
        let mut words: Vec<u32> = self.recipe.fill.iter().map(|f| f.to_bits()).collect();
        for (seed, rows) in passes {
            words.extend(
                self.recipe
                    .draws(seed, rows)
                    .map(|d| d.dy | d.dx << 8 | u32::from(d.mirror) << 16),
            );
        }
        words
    }

    /// How many words `words` gives for passes of `rows` rows in all.
    fn words_len(&self, rows: usize) -> usize {
        self.recipe.fill.len() + rows
    }

    /// The images' shape and padding, as `gather.wgsl` reads them.
    fn image(&self) -> Image {
        let [c, h, w] = self.shape.map(|v| v as u32);
        Image {
            c,
            h,
            w,
            pad: self.recipe.pad,
            ..Image::default()
        }
    }
}

impl<'g> PopulationTrainer<'g> {
    /// Uploads the training split and `eval_split` of `task`, for up to `capacity` copies of
    /// `model` side by side (more candidates train in turns), with the products' sizes the
    /// adapter's limits and the environment choose ([`Tuning::from_env`]).
    pub fn new(
        gpu: &'g Gpu,
        task: &Task<'_>,
        model: &PluginModel,
        capacity: usize,
        eval_split: u32,
    ) -> Result<PopulationTrainer<'g>, TrainError> {
        let tuning = Tuning::from_env(gpu.limits())?;
        Self::with_tuning(gpu, task, model, capacity, eval_split, tuning)
    }

    /// [`Self::new`] with the products at these sizes.
    pub fn with_tuning(
        gpu: &'g Gpu,
        task: &Task<'_>,
        model: &PluginModel,
        capacity: usize,
        eval_split: u32,
        tuning: Tuning,
    ) -> Result<PopulationTrainer<'g>, TrainError> {
        if task.kind.loss_width(task.n_out) != task.n_out {
            return Err(GpuError::Unsupported(
                "one-output classifiers (give the model two outputs, one per class)".into(),
            )
            .into());
        }
        let info = task.plugin.info();
        let augment = match info.augments {
            AUGMENT_NONE => None,
            AUGMENT_CROP_FLIP => Some(Augment {
                recipe: info.crop_flip,
                shape: CropFlip::shape(info).map_err(GpuError::Unsupported)?,
            }),
            _ => {
                return Err(GpuError::Unsupported(
                    "a task that transforms its training batches its own way (the GPU replays \
                     the SDK's crops and flips only; train on the CPU)"
                        .into(),
                )
                .into());
            }
        };
        let layers = gpu_layers(&model.layers()?)?;
        let (train, eval) = (
            Split::upload(gpu, task, 0)?,
            Split::upload(gpu, task, eval_split)?,
        );
        Ok(PopulationTrainer {
            gpu,
            kernels: Kernels::new(gpu, tuning)?,
            layers,
            kind: task.kind,
            n_out: task.n_out,
            input_len: task.input_len,
            target_width: task.target_width,
            n_params: model.n_params(),
            capacity,
            augment,
            train,
            eval,
            eval_split,
            spare_models: Mutex::new(Vec::new()),
            meta_host: Mutex::new(MetaHostTime::default()),
        })
    }

    /// The products' sizes.
    pub fn tuning(&self) -> Tuning {
        self.kernels.tuning
    }

    /// Bytes of the training and evaluation splits on the device.
    pub fn data_bytes(&self) -> usize {
        self.train.bytes + self.eval.bytes
    }

    /// One candidate's device memory in a fitness run with `cfg`: its parameters, their
    /// gradient and two optimiser moments, running statistics, every value's activations and
    /// gradients, and its convolutions' partial weight gradients.
    pub fn bytes_per_candidate(&self, cfg: &TrainConfig) -> usize {
        let (batch, eval_rows) = self.rows(cfg);
        self.bytes_for_rows(batch.max(eval_rows))
    }

    fn bytes_for_rows(&self, rows: usize) -> usize {
        let (widest, per_row) = row_floats(&self.layers, self.input_len);
        let partials = partial_floats(&self.layers, rows * widest, rows, 1, &self.kernels);
        4 * (4 * self.n_params + state_len(&self.layers) + rows * per_row + partials)
    }

    /// Candidates trained in the same dispatches in a fitness run with `cfg`: up to the
    /// capacity, as many as the device's memory holds (`fit`). More train in turns.
    pub fn side_by_side(&self, cfg: &TrainConfig) -> usize {
        let (batch, eval_rows) = self.rows(cfg);
        self.side_by_side_rows(batch.max(eval_rows))
    }

    fn side_by_side_rows(&self, rows: usize) -> usize {
        let (widest, _) = row_floats(&self.layers, self.input_len);
        let memory = Memory {
            binding: 4 * self.gpu.max_binding_floats(),
            device: self.gpu.memory(),
            data: self.data_bytes(),
        };
        let largest = 4 * (rows * widest).max(self.n_params);
        memory
            .fit(largest, self.bytes_for_rows(rows))
            .clamp(1, self.capacity.max(1))
    }

    /// The batch and evaluation rows of a fitness run with `cfg`.
    fn rows(&self, cfg: &TrainConfig) -> (usize, usize) {
        let batch = cfg.batch.min(self.train.n).max(1);
        (batch, EVAL_ROWS.max(batch).min(self.eval.n.max(1)))
    }

    /// Trains one model per loss from `init` for `cfg.steps` steps on batches drawn from
    /// `seed` (the same for all, as [`Task::train`] draws them), then scores each on the
    /// evaluation split with `metric`; [`Self::side_by_side`] at a time.
    pub fn train(
        &self,
        losses: &[LossExpr],
        init: &[f32],
        cfg: &TrainConfig,
        seed: u64,
        metric: Metric,
    ) -> Result<Vec<CandidateRun>, GpuError> {
        assert_eq!(init.len(), self.n_params, "one initial parameter vector");
        let (batch, eval_rows) = self.rows(cfg);
        let mut runs = Vec::with_capacity(losses.len());
        for part in losses.chunks(self.side_by_side_rows(batch.max(eval_rows))) {
            runs.extend(self.train_together(part, init, cfg, seed, metric)?);
        }
        Ok(runs)
    }

    /// Where the time of one training step of `losses.len()` models side by side goes, per
    /// kernel: the step after `cfg.steps - 1` steps of `cfg` (so that every buffer is warm).
    pub fn profile_step(
        &self,
        losses: &[LossExpr],
        init: &[f32],
        cfg: &TrainConfig,
    ) -> Result<Vec<KernelTime>, GpuError> {
        assert!(cfg.steps >= 1, "a step to profile");
        let mut run = self.prepare(losses, init, cfg, 1)?;
        run.advance(self.gpu, cfg.steps - 1);
        profile::profile(self.gpu, &self.kernels, &run.ops)
    }

    fn train_together(
        &self,
        losses: &[LossExpr],
        init: &[f32],
        cfg: &TrainConfig,
        seed: u64,
        metric: Metric,
    ) -> Result<Vec<CandidateRun>, GpuError> {
        let mut run = self.prepare(losses, init, cfg, seed)?;
        run.advance(self.gpu, cfg.steps);
        let outcomes = self.outcomes(&run, cfg)?;
        let metrics = self.evaluate(&run.net, &self.eval, run.eval_rows, metric)?;
        Ok(outcomes
            .into_iter()
            .zip(metrics)
            .map(|((outcome, params), metric)| {
                let finished = outcome == Outcome::Finished && metric.is_finite();
                CandidateRun {
                    outcome,
                    metric: if finished { metric } else { f64::INFINITY },
                    params,
                }
            })
            .collect())
    }

    /// One model per loss, from `init`, ready to train with `cfg` on batches drawn from `seed`.
    fn prepare(
        &self,
        losses: &[LossExpr],
        init: &[f32],
        cfg: &TrainConfig,
        seed: u64,
    ) -> Result<Run<'_>, GpuError> {
        let (gpu, p) = (self.gpu, losses.len());
        let (batch, eval_rows) = self.rows(cfg);
        let (idx, lr, keys, crops) = self.schedule(cfg, batch, seed)?;
        let net = Net::new(
            gpu,
            &self.kernels,
            &self.layers,
            p,
            false,
            batch.max(eval_rows),
            self.input_len,
            self.target_width,
            init,
            &keys,
        )?;
        let status = gpu.buffer_with("status", &vec![u32::MAX; p])?;
        let step = &net.counter;
        let stride = kernels::weight_stride(losses);
        let classification = self.kind == TaskKind::Classification;
        let objective = kernels::objective(gpu, losses, self.n_out, classification, None)?;
        let mut loss_weights = vec![0.0f32; p * stride];
        for (c, e) in losses.iter().enumerate() {
            loss_weights[c * stride..][..e.len()].copy_from_slice(e.weights());
        }
        let loss_weights = gpu.buffer_with("loss weights", &loss_weights)?;
        let row_loss = gpu.buffer("row losses", p * batch)?;
        let total = p * self.n_params;
        let (m, v) = (
            gpu.buffer("moment 1", total)?,
            gpu.buffer("moment 2", total)?,
        );
        let batch_dims = net.batch_dims(batch);

        let train = self.train.source(&idx, step, self.crops(crops.as_ref()));
        let mut ops = net.forward(batch, train, &net.params, Pass::Train);
        ops.push(Op::new(
            gpu,
            &objective,
            &[
                net.output(),
                &net.y,
                &loss_weights,
                net.output_grad(),
                &row_loss,
            ],
            Some(&batch_dims),
            p * batch,
        ));
        let k = &self.kernels;
        let check = [&row_loss, &status, step];
        ops.push(Op::new(gpu, &k.check, &check, Some(&batch_dims), p));
        ops.extend(net.backward(batch, &net.params));
        let opt = Opt::new(&cfg.optimizer, total);
        let optimizer = [&net.params, &net.grad, &m, &v, &lr, step];
        ops.push(Op::new(gpu, &k.optimizer, &optimizer, Some(&opt), total));
        ops.push(Op::new::<Dims>(gpu, &k.tick, &[step], None, 1));
        Ok(Run {
            net,
            ops,
            status,
            done: 0,
            eval_rows,
        })
    }

    /// Each candidate's outcome and parameters after `run`'s steps of `cfg`.
    fn outcomes(
        &self,
        run: &Run<'_>,
        cfg: &TrainConfig,
    ) -> Result<Vec<(Outcome, Vec<f32>)>, GpuError> {
        let p = run.net.candidates();
        let status = self.gpu.read_u32(&run.status, p)?;
        let params = self.gpu.read(&run.net.params, p * self.n_params)?;
        Ok((0..p)
            .map(|c| {
                let params = params[c * self.n_params..][..self.n_params].to_vec();
                let outcome = if status[c] != u32::MAX {
                    Outcome::Diverged {
                        step: status[c] as usize,
                    }
                } else if params.iter().any(|x| !x.is_finite()) {
                    Outcome::Diverged { step: cfg.steps }
                } else {
                    Outcome::Finished
                };
                (outcome, params)
            })
            .collect())
    }

    /// Every step's batch indices (drawn as [`Task::train`] draws them) and learning rate, and
    /// the dropout masks' keys and the crops of its pass (seeded as [`Task::train`] seeds it).
    fn schedule(&self, cfg: &TrainConfig, batch: usize, seed: u64) -> Result<Schedule, GpuError> {
        let mut sampler = BatchSampler::new(self.train.n, seed);
        let mut step_idx = vec![0u64; batch];
        let mut idx = Vec::with_capacity(cfg.steps * batch);
        let mut lr = Vec::with_capacity(cfg.steps);
        let ids = dropout_ids(&self.layers);
        let mut keys = Vec::with_capacity(cfg.steps * ids.len() * 8);
        for step in 0..cfg.steps {
            sampler.next(&mut step_idx);
            idx.extend(step_idx.iter().map(|&i| i as u32));
            lr.push(lr_at(cfg.lr, &cfg.milestones, cfg.gamma, step));
            mask_keys(&ids, pass_seed(seed, step), &mut keys);
        }
        let crops = self.augment.map(|a| {
            let words = a.words((0..cfg.steps).map(|step| (pass_seed(seed, step), batch)));
            self.gpu.buffer_with("crops", &words)
        });
        Ok((
            self.gpu.buffer_with("batch indices", &idx)?,
            self.gpu.buffer_with("learning rates", &lr)?,
            keys,
            crops.transpose()?,
        ))
    }

    /// The training split's crops with `words` drawn for its passes.
    fn crops<'b>(&self, words: Option<&'b wgpu::Buffer>) -> Option<Crops<'b>> {
        Some(Crops {
            words: words?,
            image: self.augment?.image(),
        })
    }

    /// `metric` of every candidate over `eval` (a split), in chunks of `rows`.
    fn evaluate(
        &self,
        net: &Net<'_>,
        eval: &Split,
        rows: usize,
        metric: Metric,
    ) -> Result<Vec<f64>, GpuError> {
        let gpu = self.gpu;
        let chunks = eval.n.div_ceil(rows);
        // The last chunk is padded with example 0; its rows are not scored.
        let idx: Vec<u32> = (0..chunks * rows)
            .map(|i| if i < eval.n { i as u32 } else { 0 })
            .collect();
        let idx = gpu.buffer_with("evaluation indices", &idx)?;
        let chunk = gpu.buffer_with("evaluation chunk", &[0u32])?;
        let ops = net.forward(
            rows,
            eval.source(&idx, &chunk, None),
            &net.params,
            Pass::Eval,
        );
        let p = net.candidates();
        let mut sums = vec![0.0f64; p];
        let mut scratch = vec![0.0f32; rows * self.n_out];
        for c in 0..chunks {
            gpu.queue
                .write_buffer(&chunk, 0, bytemuck::bytes_of(&(c as u32)));
            record(gpu, &ops, 1);
            let out = gpu.read(net.output(), p * rows * self.n_out)?;
            let (start, b) = (c * rows, rows.min(eval.n - c * rows));
            let targets = &eval.targets[start * self.target_width..][..b * self.target_width];
            for (k, sum) in sums.iter_mut().enumerate() {
                let outputs = &out[k * rows * self.n_out..][..b * self.n_out];
                let scratch = &mut scratch[..b * self.n_out];
                *sum += metric.sum(outputs, targets, self.n_out, scratch);
            }
        }
        Ok(sums.into_iter().map(|s| s / eval.n as f64).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::Memory;

    #[test]
    fn candidates_side_by_side_fit_the_binding_and_the_memory() {
        const MIB: usize = 1 << 20;
        let memory = |device: Option<u64>| Memory {
            binding: 128 * MIB,
            device,
            data: 100 * MIB,
        };
        // Small models: the binding bounds them (10 MiB of 128 in the largest buffer).
        assert_eq!(memory(None).fit(10 * MIB, 40 * MIB), 12);
        assert_eq!(memory(Some(80 << 30)).fit(10 * MIB, 40 * MIB), 12);
        // A large one: four fifths of 8 GiB less the data, 1 GiB each.
        let gib = 1 << 30;
        assert_eq!(memory(Some(8 * gib as u64)).fit(MIB, gib), 6);
        // Nothing fits: the caller still trains one at a time.
        assert_eq!(memory(Some(MIB as u64)).fit(MIB, gib), 0);
    }
}
