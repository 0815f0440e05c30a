// Non-overlapping pooling over `[c][h][w]` inputs, windows `kh x kw` (a global average: the
// whole plane): `kind` 0 takes from `taken` the entry where `select` is largest in the window
// (the first on ties, in row-major order, as the CPU), `kind` 1 the mean of `taken`. A forward
// pass passes its input as both; a forward-mode derivative the input and its tangent.
@group(0) @binding(0) var<storage, read> select_by: array<f32>;
@group(0) @binding(1) var<storage, read> taken: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> d: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let per = d.rows * d.b;
    if (i >= d.p * per) {
        return;
    }
    let c = i / per;
    let r = (i % per) / d.b;
    let o = i % d.b;
    let plane = d.oh * d.ow;
    let ch = o / plane;
    let start = ch * d.h * d.w + ((o % plane) / d.ow) * d.kh * d.w + (o % d.ow) * d.kw;
    let x = c * d.in_stride + r * d.a + start;
    if (d.kind == 0u) {
        var best = 0u;
        for (var ky = 0u; ky < d.kh; ky++) {
            for (var kx = 0u; kx < d.kw; kx++) {
                let at = ky * d.w + kx;
                if (select_by[x + at] > select_by[x + best]) {
                    best = at;
                }
            }
        }
        out[i] = taken[x + best];
    } else {
        var acc = 0.0;
        for (var ky = 0u; ky < d.kh; ky++) {
            for (var kx = 0u; kx < d.kw; kx++) {
                acc += taken[x + ky * d.w + kx];
            }
        }
        out[i] = acc * (1.0 / f32(d.kh * d.kw));
    }
}
