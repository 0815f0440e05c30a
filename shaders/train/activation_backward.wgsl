// din = dout * f'(x), with f' from the activation's output y: relu y > 0, tanh 1 - y^2,
// sigmoid y (1 - y).
@group(0) @binding(0) var<storage, read> out: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> din: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= d.p * d.rows * d.a) {
        return;
    }
    let y = out[i];
    var slope: f32;
    switch d.kind {
        case 1u: { slope = select(0.0, 1.0, y > 0.0); }
        case 2u: { slope = 1.0 - y * y; }
        default: { slope = y * (1.0 - y); }
    }
    din[i] = dout[i] * slope;
}
