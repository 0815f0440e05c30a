//! A loss shader from `backend::wgsl` running over host arrays: the GPU twin of a
//! [`crate::backend::jit::JitKernel`]. The pipeline is built once; buffers grow to the largest
//! batch seen and are reused, and new weights are a buffer write, not a new shader.

use wgpu::util::DeviceExt;

use super::{Binding, Gpu, GpuError};
use crate::backend::{KernelKind, wgsl};
use crate::expr::LossExpr;

/// The shader's workgroup size (`shaders/loss.wgsl`).
const WORKGROUP: u32 = 64;

/// What a loss shader computed, per element (`dphi` and `d2` are `n x n_weights`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossOutputs {
    pub loss: Vec<f32>,
    pub dyhat: Vec<f32>,
    pub dphi: Vec<f32>,
    pub d2: Vec<f32>,
}

pub struct GpuLossKernel {
    kind: KernelKind,
    n_nodes: usize,
    n_weights: usize,
    pipeline: wgpu::ComputePipeline,
    params: wgpu::Buffer,
    weights: wgpu::Buffer,
    arrays: Option<Arrays>,
}

/// Input and output buffers for up to `cap` elements, and their bind group.
struct Arrays {
    cap: usize,
    y: wgpu::Buffer,
    yhat: wgpu::Buffer,
    outs: Vec<wgpu::Buffer>,
    bind: wgpu::BindGroup,
}

impl GpuLossKernel {
    pub fn new(gpu: &Gpu, e: &LossExpr, kind: KernelKind) -> Result<GpuLossKernel, GpuError> {
        let src = wgsl::shader(e, kind);
        let module = gpu.module("loss", &src)?;
        let mut bindings = vec![
            Binding::Read,
            Binding::Read,
            Binding::Read,
            Binding::Uniform,
        ];
        let outputs = match kind {
            KernelKind::Loss => 1,
            KernelKind::LossGrad => 2,
            KernelKind::Full => 4,
        };
        bindings.extend([Binding::Write].repeat(outputs));
        let pipeline = gpu.pipeline("loss", &module, "main", &bindings)?;
        let params = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("loss params"),
                contents: &[0u8; 16],
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });
        Ok(GpuLossKernel {
            kind,
            n_nodes: e.len(),
            n_weights: e.n_weights(),
            pipeline,
            params,
            weights: gpu.buffer_with("loss weights", e.weights())?,
            arrays: None,
        })
    }

    /// Elements one dispatch covers: the shader indexes with `gid.x` only.
    fn chunk(&self, gpu: &Gpu) -> usize {
        gpu.limits.max_compute_workgroups_per_dimension as usize * WORKGROUP as usize
    }

    /// The kernel's outputs on `y`, `yhat` under `weights` (one per node).
    pub fn run(
        &mut self,
        gpu: &Gpu,
        y: &[f32],
        yhat: &[f32],
        weights: &[f32],
    ) -> Result<LossOutputs, GpuError> {
        assert_eq!(y.len(), yhat.len(), "one target per prediction");
        assert_eq!(weights.len(), self.n_nodes, "one weight per node");
        gpu.queue
            .write_buffer(&self.weights, 0, bytemuck::cast_slice(weights));
        let mut all = LossOutputs::default();
        let chunk = self.chunk(gpu);
        for start in (0..y.len()).step_by(chunk) {
            let end = (start + chunk).min(y.len());
            let n = end - start;
            self.reserve(gpu, n)?;
            let a = self.arrays.as_ref().expect("reserved");
            gpu.queue
                .write_buffer(&a.y, 0, bytemuck::cast_slice(&y[start..end]));
            gpu.queue
                .write_buffer(&a.yhat, 0, bytemuck::cast_slice(&yhat[start..end]));
            self.dispatch(gpu, n, 1);
            let a = self.arrays.as_ref().expect("reserved");
            let k = self.n_weights;
            let widths = [1, 1, k, k];
            let targets = [&mut all.loss, &mut all.dyhat, &mut all.dphi, &mut all.d2];
            for ((buf, width), target) in a.outs.iter().zip(widths).zip(targets) {
                target.extend(gpu.read(buf, n * width)?);
            }
        }
        Ok(all)
    }

    /// Runs the kernel `reps` times on the first `n` elements already on the device (whatever
    /// they hold) and waits: the device's own throughput, without transfers.
    pub fn run_resident(&mut self, gpu: &Gpu, n: usize, reps: usize) -> Result<(), GpuError> {
        let n = n.min(self.chunk(gpu));
        self.reserve(gpu, n)?;
        self.dispatch(gpu, n, reps);
        gpu.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        Ok(())
    }

    fn dispatch(&self, gpu: &Gpu, n: usize, reps: usize) {
        let a = self.arrays.as_ref().expect("reserved");
        gpu.queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&[n as u32, 0, 0, 0]));
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &a.bind, &[]);
            for _ in 0..reps {
                pass.dispatch_workgroups(n.div_ceil(WORKGROUP as usize) as u32, 1, 1);
            }
        }
        gpu.queue.submit([enc.finish()]);
    }

    /// Makes the arrays hold at least `n` elements.
    fn reserve(&mut self, gpu: &Gpu, n: usize) -> Result<(), GpuError> {
        if self.arrays.as_ref().is_some_and(|a| a.cap >= n) {
            return Ok(());
        }
        let cap = n.next_power_of_two();
        let k = self.n_weights;
        let mut outs = vec![gpu.buffer("loss", cap)?];
        if self.kind != KernelKind::Loss {
            outs.push(gpu.buffer("dyhat", cap)?);
        }
        if self.kind == KernelKind::Full {
            outs.push(gpu.buffer("dphi", cap * k)?);
            outs.push(gpu.buffer("d2", cap * k)?);
        }
        let y = gpu.buffer("y", cap)?;
        let yhat = gpu.buffer("yhat", cap)?;
        let mut bound = vec![&y, &yhat, &self.weights, &self.params];
        bound.extend(outs.iter());
        let bind = gpu.bind(&self.pipeline, &bound);
        self.arrays = Some(Arrays {
            cap,
            y,
            yhat,
            outs,
            bind,
        });
        Ok(())
    }
}
