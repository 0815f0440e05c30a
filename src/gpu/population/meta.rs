//! The local search on the GPU: every candidate's one-step meta-gradient (METHOD.md §4, as
//! `search::local::MetaGradient` computes it) in the same dispatches, each candidate on its own
//! batches and base-model initialisation. The host keeps each candidate's [`MetaWalk`] (its
//! random draws and meta-Adam), so the walks are the CPU's, step for step.

use std::sync::PoisonError;
use std::time::Instant;

use rayon::prelude::*;

use super::PopulationTrainer;
use super::kernels::{self, Op, record};
use super::layers::{dropout_ids, mask_keys};
use super::net::{Net, Pass};
use crate::expr::LossExpr;
use crate::gpu::GpuError;
use crate::plugin::PluginModel;
use crate::search::local::{LocalSearchConfig, LocalSearchResult, MetaStep, MetaWalk};
use crate::train::objective::TaskKind;
use crate::train::{TrainError, pass_seed};

/// The `Meta` uniform of `shaders/train/meta_grad.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct MetaDims {
    p: u32,
    rows: u32,
    n_out: u32,
    k: u32,
    classification: u32,
    lr_eff: f32,
    pad: [u32; 2],
}

/// The `Step` uniform of `shaders/train/inner_step.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct InnerStep {
    total: u32,
    lr_eff: f32,
    weight_decay: f32,
    pad: u32,
}

/// A candidate's initialisation to draw: the seed, and where its theta0 goes.
type InitJob<'a> = (u64, &'a mut [f32]);

/// One candidate's validation task loss after the unrolled step, and dT/dphi.
pub type MetaValue = (f32, Vec<f32>);

/// Where the host's time went in meta steps: drawing base-model initialisations (those of the
/// next step overlap the device's work), and waiting for the device's results. Little waiting
/// and much drawing means the host, not the device, sets the pace.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MetaHostTime {
    pub steps: usize,
    pub init_s: f64,
    pub wait_s: f64,
}

/// The meta-gradients of a population of candidate losses, prepared once (buffers, shaders,
/// the recorded passes) and computed per meta step.
pub struct GpuMetaGradient<'t> {
    trainer: &'t PopulationTrainer<'t>,
    losses: Vec<LossExpr>,
    /// Training and validation batch sizes, weights per candidate in `meta`, and node
    /// weights per candidate in `weights`.
    bt: usize,
    bv: usize,
    k: usize,
    stride: usize,
    net: Net<'t>,
    ops: Vec<Op>,
    idx_t: wgpu::Buffer,
    idx_v: wgpu::Buffer,
    weights: wgpu::Buffer,
    row_loss_v: wgpu::Buffer,
    meta: wgpu::Buffer,
    /// The dropout layers whose masks the passes at theta1 draw, and their keys' buffer.
    dropout_ids: Vec<u32>,
    valid_keys: wgpu::Buffer,
    /// The training batches' crops (`Augment::words`), when the task crops and flips.
    crop_words: Option<wgpu::Buffer>,
    /// Host staging for the uploads.
    theta0: Vec<f32>,
    /// The next step's initialisations, drawn while the device computes this one, and per
    /// candidate the seed they were drawn from.
    theta0_next: Vec<f32>,
    next_seeds: Vec<Option<u64>>,
    keys_t: Vec<u32>,
    keys_v: Vec<u32>,
    train_idx: Vec<u32>,
    valid_idx: Vec<u32>,
    phis: Vec<f32>,
}

impl<'t> GpuMetaGradient<'t> {
    /// For the unweighted candidates `losses` (their weights come with each step).
    pub fn new(
        trainer: &'t PopulationTrainer<'t>,
        losses: &[LossExpr],
        cfg: &LocalSearchConfig,
    ) -> Result<GpuMetaGradient<'t>, GpuError> {
        assert!(
            losses.len() <= trainer.capacity,
            "more candidates than capacity"
        );
        assert_eq!(
            trainer.eval_split, 1,
            "the local search validates on the validation split"
        );
        if cfg.inner_steps != 1 {
            let what = format!("local search with inner_steps = {}", cfg.inner_steps);
            return Err(GpuError::Unsupported(what));
        }
        let (gpu, p, n_out) = (trainer.gpu, losses.len().max(1), trainer.n_out);
        let bt = cfg.batch.min(trainer.train.n).max(1);
        let bv = cfg.batch.min(trainer.eval.n).max(1);
        let k = losses
            .iter()
            .map(LossExpr::n_weights)
            .max()
            .unwrap_or(0)
            .max(1);
        let stride = kernels::weight_stride(losses);
        let classification = trainer.kind == TaskKind::Classification;
        let n_params = trainer.n_params;
        // Two copies of the population's model: at theta0 on the training batches, whose
        // activations the JVP reuses, and at theta1 on the validation batches.
        let dropout_ids = dropout_ids(&trainer.layers);
        let no_keys = vec![0u32; p * dropout_ids.len() * 8];
        let net_at = |rows: usize| {
            let zeros = vec![0.0; n_params];
            let (input_len, target_width) = (trainer.input_len, trainer.target_width);
            let (kernels, layers) = (&trainer.kernels, &trainer.layers[..]);
            Net::new(
                gpu,
                kernels,
                layers,
                p,
                true,
                rows,
                input_len,
                target_width,
                &zeros,
                &no_keys,
            )
        };
        let (net, valid_net) = (net_at(bt)?, net_at(bv)?);
        let idx_t = gpu.buffer_with("train indices", &vec![0u32; p * bt])?;
        let idx_v = gpu.buffer_with("validation indices", &vec![0u32; p * bv])?;
        let step0 = gpu.buffer_with("step 0", &[0u32])?;
        let weights = gpu.buffer("loss weights", p * stride)?;
        let task_expr = trainer.kind.baseline();
        let task_weights = gpu.buffer_with("task loss weights", &task_expr.weights().repeat(p))?;
        let probs = gpu.buffer("probabilities", p * bt * n_out)?;
        let d2 = gpu.buffer("mixed derivatives", p * bt * n_out * k)?;
        let row_loss_t = gpu.buffer("train row losses", p * bt)?;
        let row_loss_v = gpu.buffer("validation row losses", p * bv)?;
        let meta = gpu.buffer("meta-gradients", p * k)?;
        let full = kernels::objective(gpu, losses, n_out, classification, Some(k))?;
        let tasks = vec![task_expr.clone(); p];
        let task_obj = kernels::objective(gpu, &tasks, n_out, classification, None)?;

        // theta0 -> the candidates' objective -> backward -> theta1 -> the validation task loss
        // -> backward (v) -> JVP at theta0 in direction v -> meta-gradients.
        let lr_eff = cfg.lr_eff();
        // The training batches' crops: the fill, then each candidate's rows, written per call.
        let crop_words = match trainer.augment {
            Some(a) => Some(gpu.buffer("crops", a.words_len(p * bt))?),
            None => None,
        };
        let train = trainer
            .train
            .source(&idx_t, &step0, trainer.crops(crop_words.as_ref()));
        let mut ops = net.forward(bt, train, &net.params, Pass::Probe);
        let full_bufs = [
            net.output(),
            &net.y,
            &weights,
            net.output_grad(),
            &row_loss_t,
            &probs,
            &d2,
        ];
        ops.push(Op::new(
            gpu,
            &full,
            &full_bufs,
            Some(&net.batch_dims(bt)),
            p * bt,
        ));
        ops.extend(net.backward(bt, &net.params));
        let step = InnerStep {
            total: (p * n_params) as u32,
            lr_eff,
            weight_decay: cfg.weight_decay,
            pad: 0,
        };
        let theta1 = &valid_net.params;
        let inner = [&net.params, &net.grad, theta1];
        let inner_step = &trainer.kernels.inner_step;
        ops.push(Op::new(gpu, inner_step, &inner, Some(&step), p * n_params));
        let valid = trainer.eval.source(&idx_v, &step0, None);
        ops.extend(valid_net.forward(bv, valid, theta1, Pass::Probe));
        let task_bufs = [
            valid_net.output(),
            &valid_net.y,
            &task_weights,
            valid_net.output_grad(),
            &row_loss_v,
        ];
        ops.push(Op::new(
            gpu,
            &task_obj,
            &task_bufs,
            Some(&valid_net.batch_dims(bv)),
            p * bv,
        ));
        ops.extend(valid_net.backward(bv, theta1));
        ops.extend(net.jvp(bt, &net.params, &valid_net.grad));
        let dims = MetaDims {
            p: p as u32,
            rows: bt as u32,
            n_out: n_out as u32,
            k: k as u32,
            classification: classification as u32,
            lr_eff,
            pad: [0; 2],
        };
        let meta_bufs = [net.output_grad(), &probs, &d2, &meta];
        ops.push(Op::new(
            gpu,
            &trainer.kernels.meta_grad,
            &meta_bufs,
            Some(&dims),
            p * k,
        ));
        Ok(GpuMetaGradient {
            trainer,
            losses: losses.to_vec(),
            bt,
            bv,
            k,
            stride,
            net,
            ops,
            idx_t,
            idx_v,
            weights,
            row_loss_v,
            meta,
            valid_keys: valid_net.keys.clone(),
            crop_words,
            keys_t: no_keys.clone(),
            keys_v: no_keys,
            dropout_ids,
            theta0: vec![0.0; p * n_params],
            theta0_next: vec![0.0; p * n_params],
            next_seeds: vec![None; p],
            train_idx: vec![0; p * bt],
            valid_idx: vec![0; p * bv],
            phis: vec![0.0; p * stride],
        })
    }

    /// For each candidate with a step: the validation task loss after the unrolled step and
    /// dT/dphi (one per node; the root's is 0), as `MetaGradient::compute` returns them. The
    /// base-model initialisations come from `model`'s `init`; those of the steps' next steps
    /// are drawn while the device computes these, and used when they come.
    pub fn compute(
        &mut self,
        model: &mut PluginModel,
        steps: &[Option<MetaStep<'_>>],
    ) -> Result<Vec<Option<MetaValue>>, TrainError> {
        assert_eq!(
            steps.len(),
            self.losses.len(),
            "one step (or none) per candidate"
        );
        let n_params = self.trainer.n_params;
        std::mem::swap(&mut self.theta0, &mut self.theta0_next);
        let drawn = std::mem::replace(&mut self.next_seeds, vec![None; steps.len()]);
        let missing = self
            .theta0
            .chunks_mut(n_params)
            .zip(steps.iter().zip(drawn))
            .filter_map(|(theta0, (s, drawn))| {
                let seed = s.as_ref()?.init_seed;
                (drawn != Some(seed)).then_some((seed, theta0))
            })
            .collect();
        let started = Instant::now();
        initialise(self.trainer, model, missing)?;
        let mut init_s = started.elapsed().as_secs_f64();
        let gpu = self.trainer.gpu;
        let (bt, bv, k, stride) = (self.bt, self.bv, self.k, self.stride);
        let slots = self.dropout_ids.len() * 8;
        for (c, s) in steps.iter().enumerate() {
            let Some(s) = s else { continue };
            fill_u32(&mut self.train_idx[c * bt..][..bt], s.train);
            fill_u32(&mut self.valid_idx[c * bv..][..bv], s.valid);
            self.phis[c * stride..][..s.phi.len()].copy_from_slice(s.phi);
            // The passes' seeds, as `MetaGradient::compute` gives them.
            for (pass, keys) in [&mut self.keys_t, &mut self.keys_v].into_iter().enumerate() {
                let mut drawn = Vec::with_capacity(slots);
                mask_keys(&self.dropout_ids, pass_seed(s.init_seed, pass), &mut drawn);
                keys[c * slots..][..slots].copy_from_slice(&drawn);
            }
        }
        if let (Some(a), Some(words)) = (self.trainer.augment, &self.crop_words) {
            let seed =
                |s: &Option<MetaStep<'_>>| s.as_ref().map_or(0, |s| pass_seed(s.init_seed, 0));
            let passes = steps.iter().map(|s| (seed(s), bt));
            gpu.queue
                .write_buffer(words, 0, bytemuck::cast_slice(&a.words(passes)));
        }
        let q = &gpu.queue;
        if slots > 0 {
            q.write_buffer(&self.net.keys, 0, bytemuck::cast_slice(&self.keys_t));
            q.write_buffer(&self.valid_keys, 0, bytemuck::cast_slice(&self.keys_v));
        }
        q.write_buffer(&self.net.params, 0, bytemuck::cast_slice(&self.theta0));
        q.write_buffer(&self.idx_t, 0, bytemuck::cast_slice(&self.train_idx));
        q.write_buffer(&self.idx_v, 0, bytemuck::cast_slice(&self.valid_idx));
        q.write_buffer(&self.weights, 0, bytemuck::cast_slice(&self.phis));
        record(gpu, &self.ops, 1);
        // The uploads above are staged, so theta0_next is free. A walk that diverges in this
        // step wastes its draw.
        let ahead = self
            .theta0_next
            .chunks_mut(n_params)
            .zip(steps)
            .filter_map(|(theta0, s)| Some((s.as_ref()?.next_init_seed?, theta0)))
            .collect();
        let started = Instant::now();
        initialise(self.trainer, model, ahead)?;
        init_s += started.elapsed().as_secs_f64();
        self.next_seeds = steps
            .iter()
            .map(|s| s.as_ref().and_then(|s| s.next_init_seed))
            .collect();
        let p = self.losses.len();
        let started = Instant::now();
        let row_losses = gpu.read(&self.row_loss_v, p * bv)?;
        let meta = gpu.read(&self.meta, p * k)?;
        let mut host = self
            .trainer
            .meta_host
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        host.steps += 1;
        host.init_s += init_s;
        host.wait_s += started.elapsed().as_secs_f64();
        drop(host);
        Ok(steps
            .iter()
            .zip(&self.losses)
            .enumerate()
            .map(|(c, (s, e))| {
                s.as_ref().map(|_| {
                    let sum: f64 = row_losses[c * bv..][..bv].iter().map(|&l| l as f64).sum();
                    let mut grad = meta[c * k..][..e.n_weights()].to_vec();
                    grad.resize(e.len(), 0.0);
                    (sum as f32 * (1.0 / bv as f32), grad)
                })
            })
            .collect())
    }
}

impl PopulationTrainer<'_> {
    /// The host's time in the meta steps since the last call.
    pub fn take_meta_host_time(&self) -> MetaHostTime {
        let mut host = self
            .meta_host
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut host)
    }

    /// Tunes the weights of every loss in `losses` (unweighted candidates) as
    /// [`crate::search::local::local_search`] does, candidate `c` drawing from `seeds[c]`;
    /// `model` provides the base-model initialisations. The JVP is always exact here.
    pub fn local_search(
        &self,
        model: &mut PluginModel,
        losses: &[LossExpr],
        cfg: &LocalSearchConfig,
        seeds: &[u64],
    ) -> Result<Vec<LocalSearchResult>, TrainError> {
        assert_eq!(losses.len(), seeds.len(), "one seed per candidate");
        let together = self.side_by_side_rows(cfg.batch);
        let mut results = Vec::with_capacity(losses.len());
        for (losses, seeds) in losses.chunks(together).zip(seeds.chunks(together)) {
            results.extend(self.local_search_together(model, losses, cfg, seeds)?);
        }
        Ok(results)
    }

    fn local_search_together(
        &self,
        model: &mut PluginModel,
        losses: &[LossExpr],
        cfg: &LocalSearchConfig,
        seeds: &[u64],
    ) -> Result<Vec<LocalSearchResult>, TrainError> {
        let mut meta = GpuMetaGradient::new(self, losses, cfg)?;
        let (n_train, n_valid) = (self.train.n, self.eval.n);
        let mut walks: Vec<MetaWalk> = losses
            .iter()
            .zip(seeds)
            .map(|(e, &seed)| MetaWalk::new(n_train, n_valid, e, cfg, seed))
            .collect();
        loop {
            let steps: Vec<Option<MetaStep<'_>>> =
                walks.iter_mut().map(MetaWalk::next_step).collect();
            if steps.iter().all(Option::is_none) {
                break;
            }
            let results = meta.compute(model, &steps)?;
            drop(steps);
            for (walk, r) in walks.iter_mut().zip(results) {
                if let Some((val, grad)) = r {
                    walk.take(val, &grad);
                }
            }
        }
        Ok(walks
            .into_iter()
            .zip(losses)
            .map(|(w, e)| w.finish(e, false))
            .collect())
    }
}

/// The initialisations `jobs` from `model`'s `init`, on all cores, one model instance each (a
/// ResNet-18's takes about 0.4 s: one after another, a population's would keep the device
/// waiting at every meta step).
fn initialise(
    trainer: &PopulationTrainer<'_>,
    model: &mut PluginModel,
    jobs: Vec<InitJob<'_>>,
) -> Result<(), TrainError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let workers = rayon::current_num_threads().min(jobs.len()).max(1);
    let mut spare = trainer
        .spare_models
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    while spare.len() + 1 < workers {
        spare.push(model.sibling()?);
    }
    let mut groups: Vec<(&mut PluginModel, Vec<InitJob<'_>>)> = std::iter::once(model)
        .chain(spare.iter_mut())
        .take(workers)
        .map(|m| (m, Vec::new()))
        .collect();
    for (i, job) in jobs.into_iter().enumerate() {
        groups[i % workers].1.push(job);
    }
    groups.into_par_iter().try_for_each(|(model, jobs)| {
        jobs.into_iter()
            .try_for_each(|(seed, theta0)| model.initial_params(seed, theta0))
    })?;
    Ok(())
}

fn fill_u32(out: &mut [u32], idx: &[u64]) {
    out.iter_mut().zip(idx).for_each(|(o, &i)| *o = i as u32);
}
