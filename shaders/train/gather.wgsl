// Copies the rows of this step's batch (or this evaluation chunk) out of a whole split. With
// `kind` 0 all candidates share one batch (`rows` indices per step, output `[row][feature]`);
// with `kind` 1 each draws its own (`p * rows` indices per step, output
// `[candidate][row][feature]`). With `pad` > 0 the images (`c x h x w`) are cropped and
// flipped on the way (the SDK's `CropFlip`): `crops` holds the padding's value per channel (4
// words, f32 bits), then a word per row laid out as `idx`: the crop's offsets dy and dx in the
// padded image (bits 0-7, 8-15) and whether the image is mirrored (bit 16). With `coded` the
// split's inputs are bytes: 256 words per feature (its values' f32 bits), then the codes, four
// to a word, lowest byte first.
@group(0) @binding(0) var<storage, read> xs: array<u32>;
@group(0) @binding(1) var<storage, read> ys: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
// counter[0]: the step (or chunk) being run
@group(0) @binding(3) var<storage, read> counter: array<u32>;
@group(0) @binding(4) var<storage, read> crops: array<u32>;
@group(0) @binding(5) var<storage, read_write> xb: array<f32>;
@group(0) @binding(6) var<storage, read_write> yb: array<f32>;
@group(0) @binding(7) var<uniform> d: Dims;

// Input `i` of the split (row * a + feature).
fn input(i: u32) -> f32 {
    if (d.coded == 0u) {
        return bitcast<f32>(xs[i]);
    }
    let code = (xs[d.a * 256u + i / 4u] >> (i % 4u * 8u)) & 0xffu;
    return bitcast<f32>(xs[i % d.a * 256u + code]);
}

// Feature `f` of the example at `row`, cropped and flipped as `word` says.
fn cropped(row: u32, f: u32, word: u32) -> f32 {
    let hw = d.h * d.w;
    let ch = f / hw;
    var col = f % d.w;
    if ((word >> 16u) == 1u) {
        col = d.w - 1u - col;
    }
    let sy = i32((f % hw) / d.w + (word & 0xffu)) - i32(d.pad);
    let sx = i32(col + ((word >> 8u) & 0xffu)) - i32(d.pad);
    if (sy < 0 || sy >= i32(d.h) || sx < 0 || sx >= i32(d.w)) {
        return bitcast<f32>(crops[ch]);
    }
    return input(row * d.a + ch * hw + u32(sy) * d.w + u32(sx));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let sets = select(1u, d.p, d.kind == 1u);
    let base = counter[0] * sets * d.rows;
    if (i < sets * d.rows * d.a) {
        let r = i / d.a;
        let row = idx[base + r];
        if (d.pad == 0u) {
            xb[i] = input(row * d.a + i % d.a);
        } else {
            xb[i] = cropped(row, i % d.a, crops[4u + base + r]);
        }
    }
    if (i < sets * d.rows * d.b) {
        let r = i / d.b;
        yb[i] = ys[idx[base + r] * d.b + i % d.b];
    }
}
