//! [`ModelInstance`]: a [`Model`] together with its parameters, state and optimiser, reading
//! its own batches from its task — what the training ABI calls a model. It is generic over the
//! model, so a plugin author declares data and layers and gets every entry of the ABI,
//! including the exact one-step meta-gradient's primitives.

use crate::abi::{AUGMENT_CROP_FLIP, AUGMENT_OWN, JVP_EXACT, JVP_FINITE_DIFFERENCE, ModelInfo};
use crate::abi::{LayerDesc, OptimizerDesc};
use crate::augment::{AUGMENT_STREAM, CropFlip};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::{Mode, Model, Split, Task, check_len, mix_seed as mix};

/// How a training pass transforms its batch (`TaskInfo::augments`).
enum Augment {
    None,
    Own,
    CropFlip(CropFlip, [usize; 3]),
}

/// A model instance of task `T`.
pub struct ModelInstance<T: Task> {
    task: &'static T,
    model: Box<dyn Model>,
    input_len: usize,
    target_width: usize,
    split_sizes: [u64; 3],
    augment: Augment,
    params: Vec<f32>,
    state: Vec<f32>,
    grad: Vec<f32>,
    opt: Optimizer,
    /// The inputs and targets of the last forward pass.
    x: Vec<f32>,
    y: Vec<f32>,
    /// The last forward pass, while its activations are current.
    last: Option<Pass>,
    meta: Meta,
}

#[derive(Clone, Copy, Debug)]
struct Pass {
    n: usize,
    mode: Mode,
}

/// What the meta-gradient's three calls hand each other.
/// Parameters and state values a model instance may hold; it allocates several copies
/// (gradient, optimiser state, the look-ahead's theta0), so this bounds a typo such as
/// `hidden = [100000000]` before it exhausts memory.
pub const MAX_PARAMS: usize = 1 << 27;

#[derive(Default)]
struct Meta {
    /// theta0 and the training batch of the look-ahead (inputs as the model saw them).
    theta0: Vec<f32>,
    x: Vec<f32>,
    pass: Option<Pass>,
    /// `J(theta1)^T dout` once pulled back.
    v: Option<Vec<f32>>,
}

impl<T: Task> ModelInstance<T> {
    /// `model` of `task`, initialised from `seed`, with plain SGD.
    pub fn new(task: &'static T, model: Box<dyn Model>, seed: u64) -> Result<Self, String> {
        let info = task.info();
        let input_len: usize = info.input_shape[..info.input_rank as usize]
            .iter()
            .map(|&d| d as usize)
            .product();
        if model.input_len() != input_len {
            return Err(format!(
                "the model takes {} inputs per example, but the task's examples have {input_len}",
                model.input_len()
            ));
        }
        if model.n_outputs() != info.n_outputs as usize {
            return Err(format!(
                "the model has {} outputs, but the task asks for {}",
                model.n_outputs(),
                info.n_outputs
            ));
        }
        let n = model.n_params();
        if n.saturating_add(model.n_state()) > MAX_PARAMS {
            return Err(format!(
                "the model has {n} parameters and {} state values; a model instance holds at most {MAX_PARAMS} (512 MiB of f32 per copy: it keeps several)",
                model.n_state()
            ));
        }
        let augment = match info.augments {
            AUGMENT_OWN => Augment::Own,
            AUGMENT_CROP_FLIP => Augment::CropFlip(info.crop_flip, CropFlip::shape(&info)?),
            _ => Augment::None,
        };
        let sgd = OptimizerConfig::Sgd {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        };
        let mut inst = ModelInstance {
            task,
            input_len,
            target_width: info.target_width as usize,
            split_sizes: info.split_sizes,
            augment,
            params: vec![0.0; n],
            state: vec![0.0; model.n_state()],
            grad: vec![0.0; n],
            opt: Optimizer::new(sgd, n),
            x: Vec::new(),
            y: Vec::new(),
            last: None,
            meta: Meta::default(),
            model,
        };
        inst.init(seed);
        Ok(inst)
    }

    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            n_params: self.params.len() as u64,
            snapshot_len: self.snapshot_len() as u64,
            n_outputs: self.model.n_outputs() as u32,
            has_jvp: self.model.has_jvp() as u32,
        }
    }

    pub fn layers(&self) -> Vec<LayerDesc> {
        self.model.layers()
    }

    /// The parameters as they stand.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    pub fn init(&mut self, seed: u64) {
        self.model.init(seed, &mut self.params, &mut self.state);
        self.opt.reset();
        self.last = None;
        self.meta = Meta::default();
    }

    pub fn set_optimizer(&mut self, d: &OptimizerDesc) -> Result<(), String> {
        self.opt = Optimizer::new(OptimizerConfig::from_desc(d)?, self.params.len());
        Ok(())
    }

    /// Runs examples `idx` of `split` through the model in `mode`; `targets`, when given, gets
    /// their targets.
    pub fn forward(
        &mut self,
        split: Split,
        idx: &[u64],
        mode: Mode,
        out: &mut [f32],
        targets: Option<&mut [f32]>,
    ) -> Result<(), String> {
        let n = idx.len();
        let size = self.split_sizes[split as usize];
        if let Some(&bad) = idx.iter().find(|&&i| i >= size) {
            return Err(format!(
                "index {bad} is out of range for the {split:?} split ({size} examples)"
            ));
        }
        check_len("out", out.len(), n * self.model.n_outputs())?;
        self.last = None;
        self.x.resize(n * self.input_len, 0.0);
        self.y.resize(n * self.target_width, 0.0);
        self.task.read_batch(split, idx, &mut self.x, &mut self.y)?;
        if let (Mode::Train { seed }, Split::Train) = (mode, split) {
            match self.augment {
                Augment::None => {}
                Augment::Own => self.task.augment(&mut self.x, n, mix(seed, AUGMENT_STREAM)),
                Augment::CropFlip(recipe, shape) => recipe.apply(&mut self.x, n, shape, seed),
            }
        }
        self.model
            .forward(&self.params, &mut self.state, &self.x, n, mode, out)?;
        if let Some(t) = targets {
            check_len("targets", t.len(), self.y.len())?;
            t.copy_from_slice(&self.y);
        }
        self.last = Some(Pass { n, mode });
        Ok(())
    }

    /// Back-propagates `dout` through the last forward pass and steps the optimiser.
    pub fn step(&mut self, dout: &[f32], lr: f32) -> Result<(), String> {
        self.backward(dout, "step")?;
        self.opt.step(&mut self.params, &self.grad, lr);
        Ok(())
    }

    /// `grad = J^T dout` for the last forward pass, which it uses up.
    fn backward(&mut self, dout: &[f32], what: &str) -> Result<Pass, String> {
        let pass = self
            .last
            .take()
            .ok_or_else(|| format!("`{what}` needs a forward pass first"))?;
        check_len("dout", dout.len(), pass.n * self.model.n_outputs())?;
        self.model.backward(&self.params, dout, &mut self.grad)?;
        Ok(pass)
    }

    pub fn all_finite(&self) -> bool {
        self.params.iter().chain(&self.state).all(|v| v.is_finite())
    }

    pub fn snapshot_len(&self) -> usize {
        self.params.len() + self.state.len() + self.opt.state_len()
    }

    /// Parameters, state, then the optimiser's state.
    pub fn snapshot(&self, buf: &mut [f32]) -> Result<(), String> {
        check_len("snapshot", buf.len(), self.snapshot_len())?;
        let mut all = Vec::with_capacity(buf.len());
        all.extend_from_slice(&self.params);
        all.extend_from_slice(&self.state);
        self.opt.save(&mut all);
        buf.copy_from_slice(&all);
        Ok(())
    }

    pub fn restore(&mut self, buf: &[f32]) -> Result<(), String> {
        check_len("snapshot", buf.len(), self.snapshot_len())?;
        let (p, rest) = buf.split_at(self.params.len());
        let (s, o) = rest.split_at(self.state.len());
        self.params.copy_from_slice(p);
        self.state.copy_from_slice(s);
        self.opt.load(o);
        self.last = None;
        self.meta = Meta::default();
        Ok(())
    }

    /// From the last (training) forward pass at theta0 and its loss gradient `dout`: keeps
    /// theta0 and the batch, and moves to `theta1 = theta0 - lr_eff (J^T dout + wd theta0)`.
    pub fn meta_lookahead(&mut self, dout: &[f32], lr_eff: f32, wd: f32) -> Result<(), String> {
        let pass = self.backward(dout, "meta_lookahead")?;
        let m = &mut self.meta;
        m.theta0.clear();
        m.theta0.extend_from_slice(&self.params);
        std::mem::swap(&mut m.x, &mut self.x);
        m.pass = Some(pass);
        m.v = None;
        for ((p, &p0), &g) in self.params.iter_mut().zip(&m.theta0).zip(&self.grad) {
            *p = p0 - lr_eff * (g + wd * p0);
        }
        Ok(())
    }

    /// After a forward pass at theta1: `v = J(theta1)^T dout`.
    pub fn meta_pullback(&mut self, dout: &[f32]) -> Result<(), String> {
        if self.meta.pass.is_none() {
            return Err("`meta_pullback` needs `meta_lookahead` first".into());
        }
        self.backward(dout, "meta_pullback")?;
        self.meta.v = Some(self.grad.clone());
        Ok(())
    }

    /// Restores theta0 and writes `J(theta0) v` on the look-ahead's batch; returns `JVP_*`.
    pub fn meta_jvp(&mut self, out: &mut [f32]) -> Result<u32, String> {
        let (Some(pass), Some(v)) = (self.meta.pass, self.meta.v.take()) else {
            return Err("`meta_jvp` needs `meta_lookahead` and `meta_pullback` first".into());
        };
        check_len("out", out.len(), pass.n * self.model.n_outputs())?;
        self.meta.pass = None;
        self.last = None;
        self.params.copy_from_slice(&self.meta.theta0);
        let (x, n, mode) = (&self.meta.x, pass.n, pass.mode);
        if self.model.has_jvp() {
            self.model
                .jvp(&self.params, &self.state, x, n, mode, &v, out)?;
            return Ok(JVP_EXACT);
        }
        // `(f(p + h v) - f(p - h v)) / 2h`, h = 1e-3 (1 + max|p|) / max|v|, on a copy of the
        // state so the running statistics stay where they were.
        let max_abs = |a: &[f32]| a.iter().fold(0.0f32, |m, &b| m.max(b.abs()));
        let v_max = max_abs(&v);
        if v_max == 0.0 {
            out.fill(0.0);
            return Ok(JVP_FINITE_DIFFERENCE);
        }
        let h = 1e-3 * (1.0 + max_abs(&self.params)) / v_max;
        let mut lo = vec![0.0f32; out.len()];
        for (sign, dst) in [(1.0f32, &mut *out), (-1.0, &mut lo[..])] {
            let shifted: Vec<f32> = self
                .params
                .iter()
                .zip(&v)
                .map(|(&p, &t)| p + sign * h * t)
                .collect();
            let mut state = self.state.clone();
            self.model.forward(&shifted, &mut state, x, n, mode, dst)?;
        }
        out.iter_mut()
            .zip(&lo)
            .for_each(|(o, &l)| *o = (*o - l) / (2.0 * h));
        Ok(JVP_FINITE_DIFFERENCE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Params, Sequential, TaskInfo};

    /// 40 examples of 3 features, a regression target each.
    struct Toy;

    impl Task for Toy {
        const NAME: &'static str = "toy";
        fn load(_: &Params) -> Result<Self, String> {
            Ok(Toy)
        }
        fn info(&self) -> TaskInfo {
            TaskInfo {
                kind: crate::KIND_REGRESSION,
                n_outputs: 2,
                target_width: 2,
                input_rank: 1,
                input_shape: [3, 0, 0, 0],
                split_sizes: [40, 10, 10],
                ..TaskInfo::default()
            }
        }
        fn model_names(&self) -> Vec<&'static str> {
            vec!["mlp"]
        }
        fn create_model(&self, _: &str, _: &Params) -> Result<Box<dyn Model>, String> {
            Ok(Box::new(Sequential::mlp(3, &[5], 2, crate::Layer::Tanh)?))
        }
        fn read_batch(
            &self,
            _: Split,
            idx: &[u64],
            x: &mut [f32],
            y: &mut [f32],
        ) -> Result<(), String> {
            for (k, &i) in idx.iter().enumerate() {
                let t = i as f32;
                x[3 * k..3 * k + 3].copy_from_slice(&[(t * 0.3).sin(), (t * 0.7).cos(), t / 40.0]);
                y[2 * k..2 * k + 2].copy_from_slice(&[(t * 0.2).sin(), t / 20.0 - 1.0]);
            }
            Ok(())
        }
    }

    /// The instance trains exactly as the v2 host did: the host kept the flat parameters, called
    /// the model's forward and backward, and stepped its own optimiser.
    #[test]
    fn an_instance_trains_bit_for_bit_as_the_flat_parameter_loop() {
        let task: &'static Toy = Box::leak(Box::new(Toy));
        let configs = [
            OptimizerConfig::Sgd {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 5e-4,
            },
            OptimizerConfig::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 1e-4,
            },
        ];
        for (kind, cfg) in configs.into_iter().enumerate() {
            let desc = cfg.to_desc();
            let mut inst = ModelInstance::new(
                task,
                task.create_model("mlp", &Params::parse_for("t", "{}").unwrap())
                    .unwrap(),
                4,
            )
            .unwrap();
            inst.set_optimizer(&desc).unwrap();

            let mut flat = Sequential::mlp(3, &[5], 2, crate::Layer::Tanh).unwrap();
            let mut params = vec![0.0; flat.n_params()];
            flat.init(4, &mut params, &mut []);
            let mut opt = Optimizer::new(cfg, params.len());
            let mut grad = vec![0.0; params.len()];
            let (mut x, mut y) = (vec![0.0; 8 * 3], vec![0.0; 8 * 2]);
            let (mut out_a, mut out_b) = (vec![0.0; 16], vec![0.0; 16]);
            for step in 0..25u64 {
                let idx: Vec<u64> = (0..8).map(|k| (step * 8 + k * 5) % 40).collect();
                let lr = 0.05 / (1.0 + step as f32);
                let mut t = vec![0.0; 16];
                inst.forward(
                    Split::Train,
                    &idx,
                    Mode::Train { seed: step },
                    &mut out_a,
                    Some(&mut t),
                )
                .unwrap();
                let dout: Vec<f32> = out_a.iter().zip(&t).map(|(o, t)| (o - t) / 8.0).collect();
                inst.step(&dout, lr).unwrap();

                task.read_batch(Split::Train, &idx, &mut x, &mut y).unwrap();
                assert_eq!(t, y, "targets");
                flat.forward(
                    &params,
                    &mut [],
                    &x,
                    8,
                    Mode::Train { seed: step },
                    &mut out_b,
                )
                .unwrap();
                assert_eq!(out_a, out_b, "optimizer {kind}, step {step}: outputs");
                flat.backward(&params, &dout, &mut grad).unwrap();
                opt.step(&mut params, &grad, lr);
            }
            assert_eq!(inst.params(), &params[..], "optimizer {kind}: parameters");
        }
    }
}
