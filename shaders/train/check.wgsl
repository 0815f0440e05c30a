// Marks candidates whose batch loss is not finite at this step: status[c] holds the first such
// step (0xffffffff while none). The test is on the bits, which no compiler folds away.
@group(0) @binding(0) var<storage, read> row_loss: array<f32>;
@group(0) @binding(1) var<storage, read_write> status: array<u32>;
@group(0) @binding(2) var<storage, read> counter: array<u32>;
@group(0) @binding(3) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let c = flat(gid, groups);
    if (c >= d.p) {
        return;
    }
    var sum = 0.0;
    for (var r = 0u; r < d.rows; r++) {
        sum += row_loss[c * d.rows + r];
    }
    let finite = (bitcast<u32>(sum) & 0x7f800000u) != 0x7f800000u;
    if (!finite && status[c] == 0xffffffffu) {
        status[c] = counter[0];
    }
}
