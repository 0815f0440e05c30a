// Gradient of a pooling's input (windows as in `pool_forward`): max (`kind` 0) passes each
// window's gradient to the entry it took, average (`kind` 1) spreads it evenly; entries that no
// window covers (a cropped edge) get 0.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> din: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let per = d.rows * d.a;
    if (i >= d.p * per) {
        return;
    }
    let c = i / per;
    let r = (i % per) / d.a;
    let k = i % d.a;
    let ch = k / (d.h * d.w);
    let oy = ((k / d.w) % d.h) / d.kh;
    let ox = (k % d.w) / d.kw;
    if (oy >= d.oh || ox >= d.ow) {
        din[i] = 0.0;
        return;
    }
    let g = dout[(c * d.rows + r) * d.b + (ch * d.oh + oy) * d.ow + ox];
    if (d.kind == 1u) {
        din[i] = g * (1.0 / f32(d.kh * d.kw));
        return;
    }
    let x = c * d.in_stride + r * d.a + ch * d.h * d.w + oy * d.kh * d.w + ox * d.kw;
    var best = 0u;
    for (var ky = 0u; ky < d.kh; ky++) {
        for (var kx = 0u; kx < d.kw; kx++) {
            let at = ky * d.w + kx;
            if (input[x + at] > input[x + best]) {
                best = at;
            }
        }
    }
    let mine = ((k / d.w) % d.h - oy * d.kh) * d.w + (k % d.w - ox * d.kw);
    din[i] = select(0.0, g, mine == best);
}
