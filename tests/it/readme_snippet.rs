//! The README's host-side wgpu example, compiled and run here; `readme_shows_this_code` keeps
//! the two identical.

// README-BEGIN
/// Runs a `--kind loss-grad` shader from `evomal emit-shader` over `y` and `yhat` with the
/// loss's node `weights`; returns the per-element loss and dM/dyhat.
pub fn run_loss_shader(
    wgsl: &str,
    y: &[f32],
    yhat: &[f32],
    weights: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    use wgpu::util::DeviceExt;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default())).unwrap();

    let storage = |data: &[f32]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
    };
    let n = y.len();
    let (y, yhat, weights) = (storage(y), storage(yhat), storage(weights));
    let (loss, dyhat) = (storage(&vec![0.0; n]), storage(&vec![0.0; n]));
    let params = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&[n as u32, 0, 0, 0]),
        usage: wgpu::BufferUsages::UNIFORM,
    });

    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(wgsl.into()),
    });
    // `layout: None` derives the bindings from the shader (a loss that never reads its weights,
    // such as a constant, needs an explicit layout instead).
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let buffers = [&y, &yhat, &weights, &params, &loss, &dyhat];
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });

    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (2 * n * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(n.div_ceil(64) as u32, 1, 1); // workgroups of 64
    }
    encoder.copy_buffer_to_buffer(&loss, 0, &staging, 0, (n * 4) as u64);
    encoder.copy_buffer_to_buffer(&dyhat, 0, &staging, (n * 4) as u64, (n * 4) as u64);
    queue.submit([encoder.finish()]);

    staging.map_async(wgpu::MapMode::Read, .., |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let out: Vec<f32> = bytemuck::cast_slice(&staging.get_mapped_range(..).unwrap()).to_vec();
    (out[..n].to_vec(), out[n..].to_vec())
}
// README-END

#[test]
fn the_readme_example_computes_the_loss() {
    use evomal::backend::{KernelKind, wgsl};
    use evomal::expr::{LossExpr, interp};
    let _adapter_or_loud_failure = crate::gpu::gpu();
    let e: LossExpr = "mul(-1, mul(y, 0.8*log(yhat)))".parse().unwrap();
    let src = wgsl::shader(&e, KernelKind::LossGrad);
    let y = [1.0f32, 0.0, 1.0, 0.0, 1.0];
    let yhat = [0.9f32, 0.1, 0.5, 0.3, 1e-9];
    let (loss, dyhat) = run_loss_shader(&src, &y, &yhat, e.weights());
    let mut want = (vec![0.0; 5], vec![0.0; 5]);
    interp::loss_grad_batch(&e, &y, &yhat, e.weights(), &mut want.0, &mut want.1);
    for i in 0..5 {
        assert!(
            (loss[i] - want.0[i]).abs() <= 1e-5 * want.0[i].abs().max(1.0),
            "{i}"
        );
        assert!(
            (dyhat[i] - want.1[i]).abs() <= 1e-4 * want.1[i].abs().max(1.0),
            "{i}"
        );
    }
}

#[test]
fn readme_shows_this_code() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let me = std::fs::read_to_string(format!("{root}/tests/it/readme_snippet.rs")).unwrap();
    let between = |s: &str| {
        let start = s.find("// README-BEGIN\n").expect("begin marker") + "// README-BEGIN\n".len();
        let end = s.find("// README-END").expect("end marker");
        s[start..end].to_string()
    };
    assert!(
        readme.contains(&between(&me)),
        "README.md's wgpu example differs from tests/it/readme_snippet.rs: copy the code between the markers into the README"
    );
}
