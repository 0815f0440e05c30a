// The tile loop of every matrix product (`gemm`, `conv_gemm`, `conv_grad_input`,
// `conv_grad_weights`): out[m][n] = sum_k A[m][k] B[k][n]. The kernel it is appended to says
// what the product is: `shape()`; `tap(k)`, what entry k of the sum means (a convolution's
// window tap, an example's pixel), worked out once per workgroup when `TAPS`; `column(cand, n)`,
// what column n means, worked out once per invocation; `load_a` and `load_b` (called for
// entries inside the product only) and `store` (each output once). Workgroup (x, y) computes a
// TILE_M x TILE_N block, each invocation PER_M x PER_N of it, over slices of TILE_K; workgroup
// z is a candidate and, when the sum is split into chunks of `shape().chunk` (split-K: a long
// sum shared among workgroups), which chunk: `store` then receives that chunk's partial sum.
// The sizes are chosen per adapter and product (`kernels::Tiles`); the invocations divide
// TILE_N and TILE_K, so each loads B from one column and A at one offset into the slice.
// An invocation's PER_M x PER_N outputs are WG_Y rows and WG_X columns apart, not adjacent:
// neighbouring invocations then read neighbouring words of the tiles (no shared-memory bank
// conflicts on hardware GPUs) and store neighbouring outputs.
struct Shape {
    m: u32,
    n: u32,
    k: u32,
    chunk: u32,
}

const TILE_M: u32 = {{tile_m}}u;
const TILE_N: u32 = {{tile_n}}u;
const TILE_K: u32 = {{tile_k}}u;
const PER_M: u32 = {{per_m}}u;
const PER_N: u32 = {{per_n}}u;
const WG_X: u32 = TILE_N / PER_N;
const WG_Y: u32 = TILE_M / PER_M;
const THREADS: u32 = WG_X * WG_Y;

var<workgroup> a_tile: array<f32, {{a_tile}}>;
var<workgroup> b_tile: array<f32, {{b_tile}}>;
var<workgroup> taps: array<Tap, TILE_K>;

@compute @workgroup_size({{wg_x}}, {{wg_y}}, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let s = shape();
    let splits = (s.k + s.chunk - 1u) / s.chunk;
    let cand = wid.z / splits;
    let split = wid.z % splits;
    let k_begin = split * s.chunk;
    let k_end = min(s.k, k_begin + s.chunk);
    let row0 = wid.y * TILE_M;
    let col0 = wid.x * TILE_N;
    let me = lid.y * WG_X + lid.x;
    let n_mine = col0 + me % TILE_N;
    let col = column(cand, n_mine);
    var acc: array<f32, {{acc}}>;
    for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        if (TAPS) {
            if (me < TILE_K) {
                taps[me] = tap(k0 + me);
            }
            workgroupBarrier();
        }
        for (var e = me; e < TILE_M * TILE_K; e += THREADS) {
            let m = row0 + e / TILE_K;
            let k = k0 + e % TILE_K;
            var v = 0.0;
            if (m < s.m && k < k_end) {
                v = load_a(cand, m, k, taps[e % TILE_K]);
            }
            a_tile[e] = v;
        }
        for (var e = me; e < TILE_K * TILE_N; e += THREADS) {
            let k = k0 + e / TILE_N;
            var v = 0.0;
            if (k < k_end && n_mine < s.n) {
                v = load_b(col, k, taps[e / TILE_N]);
            }
            b_tile[e] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            for (var i = 0u; i < PER_M; i++) {
                let av = a_tile[(lid.y + i * WG_Y) * TILE_K + kk];
                for (var j = 0u; j < PER_N; j++) {
                    acc[i * PER_N + j] += av * b_tile[kk * TILE_N + lid.x + j * WG_X];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < PER_M; i++) {
        let m = row0 + lid.y + i * WG_Y;
        for (var j = 0u; j < PER_N; j++) {
            let n = col0 + lid.x + j * WG_X;
            if (m < s.m && n < s.n) {
                store(cand, split, m, n, acc[i * PER_N + j]);
            }
        }
    }
}
