//! The wgpu runtime: one headless device, and helpers to create buffers and pipelines on it
//! and to read results back. [`loss`] runs a loss shader over arrays; [`population`] trains a
//! generation's candidates side by side on the device.
//!
//! Every pipeline and buffer is created once per kernel or trainer and reused; only data moves
//! per call. wgpu reports shader and validation errors asynchronously, so each creation runs
//! inside an error scope and turns what it catches into a [`GpuError`].

pub mod loss;
pub mod population;

use std::fmt;

use wgpu::util::DeviceExt;

/// Failures of the GPU runtime.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found ({0}); install a Vulkan driver (on Debian: `apt-get install mesa-vulkan-drivers`) or use --device cpu"
    )]
    NoAdapter(String),
    #[error("the GPU adapter refused a device: {0}")]
    Device(String),
    #[error("GPU pipeline `{label}` failed: {msg}")]
    Pipeline { label: String, msg: String },
    #[error("reading a GPU buffer back failed: {0}")]
    Readback(String),
    #[error("{what} needs {bytes} bytes in one buffer; this adapter allows {limit}")]
    TooLarge {
        what: String,
        bytes: u64,
        limit: u64,
    },
    #[error("the GPU trainer does not support {0}")]
    Unsupported(String),
    #[error("`{var}={value}`: {why}")]
    Setting {
        var: &'static str,
        value: String,
        why: String,
    },
}

/// Where training and loss kernels run (`--device`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The GPU when an adapter is found, else the CPU with a one-line notice.
    #[default]
    Auto,
    Cpu,
    Gpu,
}

/// How a shader declares one buffer binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    Write,
    /// `var<uniform>`
    Uniform,
}

/// Storage buffers are read and written by kernels, filled, and read back.
const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// One wgpu device and its queue.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// Bytes of its largest device-local memory heap, where the driver says.
    memory: Option<u64>,
    /// Error scopes are per device, not per thread: one creation at a time between push and pop.
    scope: std::sync::Mutex<()>,
}

/// The largest device-local memory heap of a Vulkan adapter: wgpu has no call for it.
fn device_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: the handles are only read while `adapter` (which owns them) is borrowed, and
    // vkGetPhysicalDeviceMemoryProperties needs no more than a live instance and device.
    unsafe {
        let hal = adapter.as_hal::<wgpu::hal::api::Vulkan>()?;
        let props = hal
            .shared_instance()
            .raw_instance()
            .get_physical_device_memory_properties(hal.raw_physical_device());
        props.memory_heaps[..props.memory_heap_count as usize]
            .iter()
            .filter(|h| h.flags.contains(ash::vk::MemoryHeapFlags::DEVICE_LOCAL))
            .map(|h| h.size)
            .max()
    }
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gpu({})", self.describe())
    }
}

impl Gpu {
    /// The first high-performance adapter of any native backend, headless.
    pub fn new() -> Result<Gpu, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::VULKAN,
            ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
        });
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        }))
        .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let adapter_limits = adapter.limits();
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: adapter_limits.max_storage_buffer_binding_size,
            max_buffer_size: adapter_limits.max_buffer_size,
            max_storage_buffers_per_shader_stage: adapter_limits
                .max_storage_buffers_per_shader_stage
                .min(16),
            max_compute_workgroups_per_dimension: adapter_limits
                .max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: adapter_limits
                .max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: adapter_limits.max_compute_workgroup_size_x,
            max_compute_workgroup_size_y: adapter_limits.max_compute_workgroup_size_y,
            max_compute_workgroup_storage_size: adapter_limits.max_compute_workgroup_storage_size,
            ..wgpu::Limits::downlevel_defaults()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("evomal"),
            // Only `bench train --profile` times kernels; where the adapter can, it may.
            required_features: adapter.features() & wgpu::Features::TIMESTAMP_QUERY,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::Device(e.to_string()))?;
        Ok(Gpu {
            device,
            queue,
            info: adapter.get_info(),
            memory: device_memory(&adapter),
            limits,
            scope: std::sync::Mutex::new(()),
        })
    }

    /// The device for `choice`: `None` means the CPU. `auto` takes a hardware adapter only (a
    /// software rasteriser is slower than the CPU path) and otherwise says once on stderr that
    /// it falls back; `gpu` takes any adapter, and without one is an error.
    pub fn choose(choice: DeviceChoice) -> Result<Option<Gpu>, GpuError> {
        match choice {
            DeviceChoice::Cpu => Ok(None),
            DeviceChoice::Gpu => Gpu::new().map(Some),
            DeviceChoice::Auto => match Gpu::new() {
                Ok(gpu) if !gpu.is_software() => Ok(Some(gpu)),
                Ok(gpu) => {
                    note_once(&format!(
                        "note: running on the CPU: the only GPU adapter is {}, a software rasteriser (--device gpu uses it anyway)",
                        gpu.describe()
                    ));
                    Ok(None)
                }
                Err(e) => {
                    note_once(&format!("note: running on the CPU: {e}"));
                    Ok(None)
                }
            },
        }
    }

    /// "name (backend, device type)", for logs and results.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Whether this is a software rasteriser (lavapipe): figures from it are not GPU figures.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The limits the device was created with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Bytes of the device's largest device-local memory heap, where the driver says (a
    /// software rasteriser's is the host's memory).
    pub fn memory(&self) -> Option<u64> {
        self.memory
    }

    /// The most f32s one storage binding holds on this device.
    pub fn max_binding_floats(&self) -> usize {
        (self.limits.max_storage_buffer_binding_size / 4) as usize
    }

    /// A storage buffer of `len` f32s (zeroed), checked against the binding limit.
    pub fn buffer(&self, what: &str, len: usize) -> Result<wgpu::Buffer, GpuError> {
        let bytes = self.storage_bytes(what, (len.max(1) * 4) as u64)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes,
            usage: STORAGE,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `data` (plain 32-bit values).
    pub fn buffer_with<T: bytemuck::Pod>(
        &self,
        what: &str,
        data: &[T],
    ) -> Result<wgpu::Buffer, GpuError> {
        if data.is_empty() {
            return self.buffer(what, 0);
        }
        self.storage_bytes(what, std::mem::size_of_val(data) as u64)?;
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(what),
                contents: bytemuck::cast_slice(data),
                usage: STORAGE,
            }))
    }

    /// `bytes`, when one storage binding can hold them.
    fn storage_bytes(&self, what: &str, bytes: u64) -> Result<u64, GpuError> {
        let limit = self.limits.max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: what.to_string(),
                bytes,
                limit,
            });
        }
        Ok(bytes)
    }

    /// A compute pipeline for entry point `entry` of `module` whose group 0 holds `bindings`
    /// at 0, 1, ... The layout is explicit because a derived one drops bindings the entry
    /// point never touches (a constant loss reads no weights), and then a fixed bind group no
    /// longer fits it.
    pub fn pipeline(
        &self,
        label: &str,
        module: &wgpu::ShaderModule,
        entry: &str,
        bindings: &[Binding],
    ) -> Result<wgpu::ComputePipeline, GpuError> {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b {
                        Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Binding::Write => wgpu::BufferBindingType::Storage { read_only: false },
                        Binding::Uniform => wgpu::BufferBindingType::Uniform,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        self.caught(label, || {
            let group = self
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(label),
                    entries: &entries,
                });
            let layout = self
                .device
                .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(label),
                    bind_group_layouts: &[Some(&group)],
                    immediate_size: 0,
                });
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(label),
                    layout: Some(&layout),
                    module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
        })
    }

    /// Compiles WGSL source.
    pub fn module(&self, label: &str, src: &str) -> Result<wgpu::ShaderModule, GpuError> {
        self.caught(label, || {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                })
        })
    }

    /// Runs `make` in a validation error scope and reports what it caught.
    fn caught<T>(&self, label: &str, make: impl FnOnce() -> T) -> Result<T, GpuError> {
        let _one_at_a_time = self.scope.lock().unwrap_or_else(|e| e.into_inner());
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let made = make();
        match pollster::block_on(scope.pop()) {
            None => Ok(made),
            Some(e) => Err(GpuError::Pipeline {
                label: label.to_string(),
                msg: e.to_string(),
            }),
        }
    }

    /// A bind group binding `buffers` in order to bindings 0, 1, ... of group 0 of `pipeline`.
    pub fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Copies the first `len` f32s of `buf` to the host (waits for the queue).
    pub fn read(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<f32>, GpuError> {
        self.read_as(buf, len)
    }

    /// Copies the first `len` u32s of `buf` to the host (waits for the queue).
    pub fn read_u32(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<u32>, GpuError> {
        self.read_as(buf, len)
    }

    fn read_as<T: bytemuck::Pod>(
        &self,
        buf: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<T>, GpuError> {
        let bytes = (len * 4) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        rx.recv()
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let out = bytemuck::cast_slice::<u8, T>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Workgroup counts for `n` invocations of `size` threads, spread over x and y when x alone
    /// would exceed the per-dimension limit. Shaders index `gid.x + gid.y * (groups.x * size)`.
    pub fn groups(&self, n: usize, size: u32) -> (u32, u32) {
        let total = n.div_ceil(size as usize).max(1) as u64;
        let max = self.limits.max_compute_workgroups_per_dimension as u64;
        if total <= max {
            (total as u32, 1)
        } else {
            (max as u32, total.div_ceil(max) as u32)
        }
    }
}

/// Prints the device note once per process: `evomal compare` chooses a device for every run.
fn note_once(note: &str) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{note}");
    }
}
