// A convolution as a matrix product tiled through workgroup memory (implicit GEMM: the input's
// columns are gathered into the tile, never stored): for every candidate (workgroup z),
// out[r][co][pix] = (out | b[co] | 0) + sum_k W[co][k] X[k][r, pix], k = (ci, ky, kx) over the
// window of output pixel pix of example r, zero outside the image. `kind` 0 writes the product,
// 1 adds it, 2 adds the biases from `bias` (at the layer's offset, after the weights). The
// forward pass is one product; the forward-mode derivative two (x with tW and tb, then t_in
// with W). Tiles as in `gemm.wgsl`.
@group(0) @binding(0) var<storage, read> input: array<f32>;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> d: Dims;

const TILE_M: u32 = {{tile_m}}u;
const TILE_N: u32 = {{tile_n}}u;
const TILE_K: u32 = {{tile_k}}u;
const PER_M: u32 = {{per_m}}u;
const PER_N: u32 = {{per_n}}u;
const WG_X: u32 = TILE_N / PER_N;
const THREADS: u32 = WG_X * (TILE_M / PER_M);

var<workgroup> a_tile: array<f32, {{a_tile}}>;
var<workgroup> b_tile: array<f32, {{b_tile}}>;

@compute @workgroup_size({{wg_x}}, {{wg_y}}, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.z;
    let row0 = wid.y * TILE_M;
    let col0 = wid.x * TILE_N;
    let me = lid.y * WG_X + lid.x;
    let taps = d.kh * d.kw;
    let depth = d.c * taps;
    let plane = d.oh * d.ow;
    let cols = d.rows * plane;
    let w_base = c * d.n_params + d.offset;
    var acc: array<f32, {{acc}}>;
    for (var k0 = 0u; k0 < depth; k0 += TILE_K) {
        for (var e = me; e < TILE_M * TILE_K; e += THREADS) {
            let co = row0 + e / TILE_K;
            let k = k0 + e % TILE_K;
            var v = 0.0;
            if (co < d.c_out && k < depth) {
                v = weights[w_base + co * depth + k];
            }
            a_tile[e] = v;
        }
        for (var e = me; e < TILE_K * TILE_N; e += THREADS) {
            let k = k0 + e / TILE_N;
            let n = col0 + e % TILE_N;
            var v = 0.0;
            if (k < depth && n < cols) {
                let r = n / plane;
                let pix = n % plane;
                let ci = k / taps;
                let iy = i32((pix / d.ow) * d.stride + (k % taps) / d.kw) - i32(d.pad);
                let ix = i32((pix % d.ow) * d.stride + k % d.kw) - i32(d.pad);
                if (iy >= 0 && iy < i32(d.h) && ix >= 0 && ix < i32(d.w)) {
                    v = input[c * d.in_stride + r * d.a + (ci * d.h + u32(iy)) * d.w + u32(ix)];
                }
            }
            b_tile[e] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            for (var i = 0u; i < PER_M; i++) {
                let av = a_tile[(lid.y * PER_M + i) * TILE_K + kk];
                for (var j = 0u; j < PER_N; j++) {
                    acc[i * PER_N + j] += av * b_tile[kk * TILE_N + lid.x * PER_N + j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < PER_M; i++) {
        let co = row0 + lid.y * PER_M + i;
        for (var j = 0u; j < PER_N; j++) {
            let n = col0 + lid.x * PER_N + j;
            if (co < d.c_out && n < cols) {
                let at = (c * d.rows + n / plane) * d.b + co * plane + n % plane;
                var v = acc[i * PER_N + j];
                if (d.kind == 1u) {
                    v += out[at];
                } else if (d.kind == 2u && d.bias == 1u) {
                    v += bias[w_base + d.c_out * depth + co];
                }
                out[at] = v;
            }
        }
    }
}
