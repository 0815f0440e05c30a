//! Where a recorded step's time goes on the device: every dispatch in a compute pass of its
//! own, timed by the pass's timestamp queries, summed per kernel. A pass per dispatch costs
//! more than the step's one pass, so the profile's total exceeds a step; the shares between
//! kernels are what it is for.

use super::kernels::{Kernels, Op};
use crate::gpu::{Gpu, GpuError};

/// One kernel's dispatches in a profiled step and their summed time.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub kernel: String,
    pub dispatches: usize,
    pub seconds: f64,
}

/// Timestamps a query set holds (`wgpu::QUERY_SET_MAX_QUERIES`).
const MAX_QUERIES: usize = 4096;

/// Runs `ops` once, each in its own timed pass, and sums the times per kernel (the most
/// expensive first).
pub fn profile(gpu: &Gpu, kernels: &Kernels, ops: &[Op]) -> Result<Vec<KernelTime>, GpuError> {
    if !gpu
        .device
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY)
    {
        return Err(GpuError::Unsupported(format!(
            "timing kernels: {} has no timestamp queries",
            gpu.describe()
        )));
    }
    // Nanoseconds per tick.
    let period = f64::from(gpu.queue.get_timestamp_period());
    let mut times: Vec<KernelTime> = Vec::new();
    for part in ops.chunks(MAX_QUERIES / 2) {
        let queries = 2 * part.len() as u32;
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: queries,
        });
        let resolved = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile timestamps"),
            size: u64::from(queries) * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for (i, op) in part.iter().enumerate() {
            let at = 2 * i as u32;
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(at),
                    end_of_pass_write_index: Some(at + 1),
                }),
            });
            op.dispatch(&mut pass);
        }
        enc.resolve_query_set(&set, 0..queries, &resolved, 0);
        gpu.queue.submit([enc.finish()]);
        let words = gpu.read_u32(&resolved, 2 * queries as usize)?;
        let ticks = |q: usize| u64::from(words[2 * q]) | u64::from(words[2 * q + 1]) << 32;
        for (i, op) in part.iter().enumerate() {
            let seconds = ticks(2 * i + 1).saturating_sub(ticks(2 * i)) as f64 * period * 1e-9;
            let kernel = kernels.name(op.pipeline());
            match times.iter_mut().find(|t| t.kernel == kernel) {
                Some(t) => {
                    t.dispatches += 1;
                    t.seconds += seconds;
                }
                None => times.push(KernelTime {
                    kernel: kernel.to_string(),
                    dispatches: 1,
                    seconds,
                }),
            }
        }
    }
    times.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    Ok(times)
}
