// A batched, strided matrix product tiled through workgroup memory: for every candidate b
// (workgroup z), C[m][n] = (C[m][n] | bias[n] | 0) + sum_k A[m][k] B[k][n], each matrix addressed
// as `off + b * batch + row * stride_row + col * stride_col`, so transposes and a layer's place
// in the parameter vector are strides and offsets. Dense layers' forward, input and weight
// gradients and forward-mode derivative are all such products. Each workgroup computes a
// TILE_M x TILE_N block of C, each invocation PER_M x PER_N of it, over slices of TILE_K; the
// sizes are chosen per adapter and product (`kernels::Tiles`).
struct Gemm {
    m: u32,
    n: u32,
    k: u32,
    // 0: C = A B; 1: C += A B; 2: C = bias + A B
    mode: u32,
    a_off: u32,
    a_batch: u32,
    a_m: u32,
    a_k: u32,
    b_off: u32,
    b_batch: u32,
    b_k: u32,
    b_n: u32,
    c_off: u32,
    c_batch: u32,
    c_m: u32,
    c_n: u32,
    bias_off: u32,
    bias_batch: u32,
    unused0: u32,
    unused1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> g: Gemm;

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
    let batch = wid.z;
    let row0 = wid.y * TILE_M;
    let col0 = wid.x * TILE_N;
    let me = lid.y * WG_X + lid.x;
    let a_base = g.a_off + batch * g.a_batch;
    let b_base = g.b_off + batch * g.b_batch;
    var acc: array<f32, {{acc}}>;
    for (var k0 = 0u; k0 < g.k; k0 += TILE_K) {
        for (var e = me; e < TILE_M * TILE_K; e += THREADS) {
            let mm = row0 + e / TILE_K;
            let kk = k0 + e % TILE_K;
            var v = 0.0;
            if (mm < g.m && kk < g.k) {
                v = a[a_base + mm * g.a_m + kk * g.a_k];
            }
            a_tile[e] = v;
        }
        for (var e = me; e < TILE_K * TILE_N; e += THREADS) {
            let kk = k0 + e / TILE_N;
            let nn = col0 + e % TILE_N;
            var v = 0.0;
            if (kk < g.k && nn < g.n) {
                v = b[b_base + kk * g.b_k + nn * g.b_n];
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
        let m = row0 + lid.y * PER_M + i;
        for (var j = 0u; j < PER_N; j++) {
            let n = col0 + lid.x * PER_N + j;
            if (m < g.m && n < g.n) {
                let at = g.c_off + batch * g.c_batch + m * g.c_m + n * g.c_n;
                var v = acc[i * PER_N + j];
                if (g.mode == 1u) {
                    v += c[at];
                } else if (g.mode == 2u) {
                    v += bias[g.bias_off + batch * g.bias_batch + n];
                }
                c[at] = v;
            }
        }
    }
}
