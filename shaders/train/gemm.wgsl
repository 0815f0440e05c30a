// A batched, strided matrix product (with `tiled.wgsl`): for every candidate,
// C[m][n] = (C[m][n] | bias[n] | 0) + sum_k A[m][k] B[k][n], each matrix addressed as
// `off + candidate * batch + row * stride_row + col * stride_col`, so transposes and a layer's
// place in the parameter vector are strides and offsets. Dense layers' forward, input and
// weight gradients and forward-mode derivative are all such products.
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

const TAPS: bool = false;

struct Tap {
    unused: u32,
}

fn tap(k: u32) -> Tap {
    return Tap(0u);
}

// Where column n of B starts.
struct Column {
    base: u32,
}

fn column(cand: u32, n: u32) -> Column {
    return Column(g.b_off + cand * g.b_batch + n * g.b_n);
}

fn shape() -> Shape {
    return Shape(g.m, g.n, g.k, max(g.k, 1u));
}

fn load_a(cand: u32, m: u32, k: u32, t: Tap) -> f32 {
    return a[g.a_off + cand * g.a_batch + m * g.a_m + k * g.a_k];
}

fn load_b(col: Column, k: u32, t: Tap) -> f32 {
    return b[col.base + k * g.b_k];
}

fn store(cand: u32, split: u32, m: u32, n: u32, sum: f32) {
    let at = g.c_off + cand * g.c_batch + m * g.c_m + n * g.c_n;
    var v = sum;
    if (g.mode == 1u) {
        v += c[at];
    } else if (g.mode == 2u) {
        v += bias[g.bias_off + cand * g.bias_batch + n];
    }
    c[at] = v;
}
