// Inverted dropout with the plugin's masks: out = v * mask over `p * rows * a` values, where
// `v` is the layer's input (forward), its output gradient (backward) or its input tangent
// (forward mode). Entry i of a candidate's batch is dropped when ChaCha8 word i of the layer's
// key (block i / 16, stream 0), as `rand`'s `random::<f32>()`, is below the rate; the others are
// scaled by 1 / (1 - rate). Keys are 8 words per dropout layer (`slot` of `slots`), per step
// (`counter[0]`; `kind` 0) or per candidate (`kind` 1). The rate is 0 in evaluation.
@group(0) @binding(0) var<storage, read> v: array<f32>;
@group(0) @binding(1) var<storage, read> keys: array<u32>;
@group(0) @binding(2) var<storage, read> counter: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> d: Dims;

fn rotl(x: u32, n: u32) -> u32 {
    return (x << n) | (x >> (32u - n));
}

fn quarter(x: ptr<function, array<u32, 16>>, a: u32, b: u32, c: u32, e: u32) {
    (*x)[a] += (*x)[b];
    (*x)[e] = rotl((*x)[e] ^ (*x)[a], 16u);
    (*x)[c] += (*x)[e];
    (*x)[b] = rotl((*x)[b] ^ (*x)[c], 12u);
    (*x)[a] += (*x)[b];
    (*x)[e] = rotl((*x)[e] ^ (*x)[a], 8u);
    (*x)[c] += (*x)[e];
    (*x)[b] = rotl((*x)[b] ^ (*x)[c], 7u);
}

// Word `word` of ChaCha8 block `block` under the key at `k` in `keys`.
fn chacha8(k: u32, block: u32, word: u32) -> u32 {
    var s: array<u32, 16>;
    s[0] = 0x61707865u;
    s[1] = 0x3320646eu;
    s[2] = 0x79622d32u;
    s[3] = 0x6b206574u;
    for (var j = 0u; j < 8u; j++) {
        s[4u + j] = keys[k + j];
    }
    s[12] = block;
    var x = s;
    for (var r = 0; r < 4; r++) {
        quarter(&x, 0u, 4u, 8u, 12u);
        quarter(&x, 1u, 5u, 9u, 13u);
        quarter(&x, 2u, 6u, 10u, 14u);
        quarter(&x, 3u, 7u, 11u, 15u);
        quarter(&x, 0u, 5u, 10u, 15u);
        quarter(&x, 1u, 6u, 11u, 12u);
        quarter(&x, 2u, 7u, 8u, 13u);
        quarter(&x, 3u, 4u, 9u, 14u);
    }
    return x[word] + s[word];
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let per = d.rows * d.a;
    if (i >= d.p * per) {
        return;
    }
    let c = i / per;
    let j = i % per;
    let x = v[c * d.in_stride + j];
    let rate = bitcast<f32>(d.rate);
    if (rate == 0.0) {
        out[i] = x;
        return;
    }
    let key_set = select(counter[0], c, d.kind == 1u);
    let k = (key_set * d.slots + d.slot) * 8u;
    let draw = f32(chacha8(k, j / 16u, j % 16u) >> 8u) * (1.0 / 16777216.0);
    out[i] = select(x * (1.0 / (1.0 - rate)), 0.0, draw < rate);
}
