//! Loss-kernel throughput: the interpreter, the JIT, and hand-written Rust of the same formula,
//! for kernels (b) loss + dM/dyhat and (c) everything, at 1,280 and 1,000,000 elements; and
//! JIT compile time per candidate. Run: `cargo bench --bench kernels`.
//!
//! The hand-written functions compute in f64 with f32 in/out, like the JIT. Cross-entropy's
//! kernel (c) is written out adjoint by adjoint; the height-8 tree is written once, generic over
//! a scalar, and run on a dual number (b) or a hyper-dual carrying all 20 weight directions (c).

use std::hint::black_box;
use std::ops::{Add, Mul, Sub};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use evomal::backend::KernelKind;
use evomal::backend::jit::{self, JitBatch};
use evomal::expr::LossExpr;
use evomal::expr::interp::{self, FullBatchMut};
use evomal::expr::random::{Method, random_tree};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const CE: &str = "mul(-1, mul(y, log(yhat)))";
const TREE8: &str = "tanh(max(aq(sub(sub(-1, 1), square(log(add(sub(1, y), abs(yhat))))), yhat), aq(mul(-1, 1), -1)))";
const EPS: f64 = 1e-7;

struct Bufs {
    y: Vec<f32>,
    yhat: Vec<f32>,
    loss: Vec<f32>,
    dyhat: Vec<f32>,
    dphi: Vec<f32>,
    d2: Vec<f32>,
}

impl Bufs {
    fn new(n: usize, k: usize) -> Bufs {
        Bufs {
            y: (0..n)
                .map(|i| if i % 10 == 0 { 1.0 } else { 0.0 })
                .collect(),
            yhat: (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 + 1e-4)
                .collect(),
            loss: vec![0.0; n],
            dyhat: vec![0.0; n],
            dphi: vec![0.0; n * k],
            d2: vec![0.0; n * k],
        }
    }
    fn full(&mut self) -> (&[f32], &[f32], FullBatchMut<'_>) {
        let out = FullBatchMut {
            loss: &mut self.loss,
            dyhat: &mut self.dyhat,
            dphi: &mut self.dphi,
            d2: &mut self.d2,
        };
        (&self.y, &self.yhat, out)
    }
}

// ---- hand-written cross-entropy -------------------------------------------------------------

/// `M = (w0 * -1) * (w4 * ((w1 * y) * (w3 * ln(max(|w2 * yhat|, eps)))))`.
fn ce_b(y: &[f32], yhat: &[f32], w: &[f32], loss: &mut [f32], dyhat: &mut [f32]) {
    let [w0, w1, w2, w3, w4] = [w[0], w[1], w[2], w[3], w[4]].map(f64::from);
    for i in 0..y.len() {
        let p = w2 * yhat[i] as f64;
        let (l, dl) = if p.abs() < EPS {
            (EPS.ln(), 0.0)
        } else {
            (p.abs().ln(), 1.0 / p)
        };
        let c = -w0 * w4 * w1 * y[i] as f64 * w3;
        loss[i] = (c * l) as f32;
        dyhat[i] = (c * dl * w2) as f32;
    }
}

fn ce_c(y: &[f32], yhat: &[f32], w: &[f32], out: FullBatchMut<'_>) {
    let [w0, w1, w2, w3, w4] = [w[0], w[1], w[2], w[3], w[4]].map(f64::from);
    for i in 0..y.len() {
        let (yi, yh) = (y[i] as f64, yhat[i] as f64);
        let p = w2 * yh;
        let (l, dl, d2l) = if p.abs() < EPS {
            (EPS.ln(), 0.0, 0.0)
        } else {
            (p.abs().ln(), 1.0 / p, -1.0 / (p * p))
        };
        let lw = w3 * l;
        let inner = w1 * yi * lw;
        let m4 = w4 * inner;
        out.loss[i] = (-w0 * m4) as f32;
        // dM/dyhat = -w0 w4 w1 y w3 w2 / p.
        let g = -w0 * w4 * w1 * yi * w3;
        out.dyhat[i] = (g * dl * w2) as f32;
        let row = &mut out.dphi[i * 5..i * 5 + 5];
        row[0] = -m4 as f32;
        row[1] = (-w0 * w4 * yi * lw) as f32;
        row[2] = (g * dl * yh) as f32;
        row[3] = (-w0 * w4 * w1 * yi * l) as f32;
        row[4] = (-w0 * inner) as f32;
        // The same, differentiated by yhat.
        let dldy = dl * w2;
        let row = &mut out.d2[i * 5..i * 5 + 5];
        row[0] = (-w4 * w1 * yi * w3 * dldy) as f32;
        row[1] = (-w0 * w4 * yi * w3 * dldy) as f32;
        row[2] = (g * (d2l * w2 * yh + dl)) as f32;
        row[3] = (-w0 * w4 * w1 * yi * dldy) as f32;
        row[4] = (-w0 * w1 * yi * w3 * dldy) as f32;
    }
}

// ---- hand-written height-8 tree, generic over the scalar ------------------------------------

trait Scalar: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> {
    fn c(x: f64) -> Self;
    fn v(self) -> f64;
    /// `f(self)` given `f`, `f'` and `f''` at `self.v()`.
    fn chain(self, f: f64, df: f64, d2f: f64) -> Self;
}

fn plog<T: Scalar>(x: T) -> T {
    let a = x.v().abs();
    if a < EPS {
        T::c(EPS.ln())
    } else {
        x.chain(a.ln(), 1.0 / x.v(), -1.0 / (x.v() * x.v()))
    }
}
fn abs<T: Scalar>(x: T) -> T {
    let s = if x.v() > 0.0 {
        1.0
    } else if x.v() < 0.0 {
        -1.0
    } else {
        0.0
    };
    x.chain(x.v().abs(), s, 0.0)
}
fn tanh<T: Scalar>(x: T) -> T {
    let t = x.v().tanh();
    x.chain(t, 1.0 - t * t, -2.0 * t * (1.0 - t * t))
}
fn aq<T: Scalar>(a: T, b: T) -> T {
    // a * r(1 + b^2) with r(q) = q^(-1/2), r' = -r^3/2, r'' = 3r^5/4.
    let r = 1.0 / (1.0 + b.v() * b.v()).sqrt();
    let s = T::c(1.0) + b * b;
    a * s.chain(r, -0.5 * r * r * r, 0.75 * r * r * r * r * r)
}
fn max<T: Scalar>(a: T, b: T) -> T {
    if a.v() < b.v() { b } else { a }
}

fn tree8<T: Scalar>(y: T, yh: T, w: &[T]) -> T {
    let (one, neg) = (T::c(1.0), T::c(-1.0));
    let n2 = (neg * w[0] - one * w[1]) * w[2];
    let n5 = (one * w[3] - y * w[4]) * w[5];
    let n8 = (n5 + abs(yh * w[6]) * w[7]) * w[8];
    let n9 = plog(n8) * w[9];
    let n11 = (n2 - n9 * n9 * w[10]) * w[11];
    let n13 = aq(n11, yh * w[12]) * w[13];
    let n16 = (neg * w[14] * (one * w[15])) * w[16];
    let n18 = aq(n16, neg * w[17]) * w[18];
    tanh(max(n13, n18) * w[19])
}

/// Value and derivative in yhat.
#[derive(Clone, Copy)]
struct Dual(f64, f64);

impl Add for Dual {
    type Output = Dual;
    fn add(self, o: Dual) -> Dual {
        Dual(self.0 + o.0, self.1 + o.1)
    }
}
impl Sub for Dual {
    type Output = Dual;
    fn sub(self, o: Dual) -> Dual {
        Dual(self.0 - o.0, self.1 - o.1)
    }
}
impl Mul for Dual {
    type Output = Dual;
    fn mul(self, o: Dual) -> Dual {
        Dual(self.0 * o.0, self.1 * o.0 + self.0 * o.1)
    }
}
impl Scalar for Dual {
    fn c(x: f64) -> Dual {
        Dual(x, 0.0)
    }
    fn v(self) -> f64 {
        self.0
    }
    fn chain(self, f: f64, df: f64, _: f64) -> Dual {
        Dual(f, df * self.1)
    }
}

const K8: usize = 20;

/// Value, d/dyhat, d/dw_j and d2/(dyhat dw_j) for all 20 weights.
#[derive(Clone, Copy)]
struct Hyper {
    v: f64,
    dy: f64,
    dw: [f64; K8],
    dyw: [f64; K8],
}

impl Add for Hyper {
    type Output = Hyper;
    fn add(self, o: Hyper) -> Hyper {
        Hyper {
            v: self.v + o.v,
            dy: self.dy + o.dy,
            dw: std::array::from_fn(|j| self.dw[j] + o.dw[j]),
            dyw: std::array::from_fn(|j| self.dyw[j] + o.dyw[j]),
        }
    }
}
impl Sub for Hyper {
    type Output = Hyper;
    fn sub(self, o: Hyper) -> Hyper {
        Hyper {
            v: self.v - o.v,
            dy: self.dy - o.dy,
            dw: std::array::from_fn(|j| self.dw[j] - o.dw[j]),
            dyw: std::array::from_fn(|j| self.dyw[j] - o.dyw[j]),
        }
    }
}
impl Mul for Hyper {
    type Output = Hyper;
    fn mul(self, o: Hyper) -> Hyper {
        Hyper {
            v: self.v * o.v,
            dy: self.dy * o.v + self.v * o.dy,
            dw: std::array::from_fn(|j| self.dw[j] * o.v + self.v * o.dw[j]),
            dyw: std::array::from_fn(|j| {
                self.dyw[j] * o.v + self.dw[j] * o.dy + self.dy * o.dw[j] + self.v * o.dyw[j]
            }),
        }
    }
}
impl Scalar for Hyper {
    fn c(x: f64) -> Hyper {
        Hyper {
            v: x,
            dy: 0.0,
            dw: [0.0; K8],
            dyw: [0.0; K8],
        }
    }
    fn v(self) -> f64 {
        self.v
    }
    fn chain(self, f: f64, df: f64, d2f: f64) -> Hyper {
        Hyper {
            v: f,
            dy: df * self.dy,
            dw: std::array::from_fn(|j| df * self.dw[j]),
            dyw: std::array::from_fn(|j| d2f * self.dy * self.dw[j] + df * self.dyw[j]),
        }
    }
}

fn tree8_b(y: &[f32], yhat: &[f32], w: &[f32], loss: &mut [f32], dyhat: &mut [f32]) {
    let w: Vec<Dual> = w.iter().map(|&x| Dual::c(x as f64)).collect();
    for i in 0..y.len() {
        let m = tree8(Dual::c(y[i] as f64), Dual(yhat[i] as f64, 1.0), &w);
        loss[i] = m.0 as f32;
        dyhat[i] = m.1 as f32;
    }
}

fn tree8_c(y: &[f32], yhat: &[f32], w: &[f32], out: FullBatchMut<'_>) {
    let w: Vec<Hyper> = (0..K8)
        .map(|j| {
            let mut h = Hyper::c(w[j] as f64);
            h.dw[j] = 1.0;
            h
        })
        .collect();
    for i in 0..y.len() {
        let mut yh = Hyper::c(yhat[i] as f64);
        yh.dy = 1.0;
        let m = tree8(Hyper::c(y[i] as f64), yh, &w);
        out.loss[i] = m.v as f32;
        out.dyhat[i] = m.dy as f32;
        for j in 0..K8 {
            out.dphi[i * K8 + j] = m.dw[j] as f32;
            out.d2[i * K8 + j] = m.dyw[j] as f32;
        }
    }
}

// ---- benchmarks -----------------------------------------------------------------------------

type HandB = fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32]);
type HandC = fn(&[f32], &[f32], &[f32], FullBatchMut<'_>);

fn kernels(c: &mut Criterion) {
    let cases: [(&str, &str, HandB, HandC); 2] =
        [("ce", CE, ce_b, ce_c), ("tree8", TREE8, tree8_b, tree8_c)];
    for (name, text, hand_b, hand_c) in cases {
        let e: LossExpr = text.parse().unwrap();
        let w = e.weights().to_vec();
        let k = e.n_weights();
        let jit_b = jit::compile(&e, KernelKind::LossGrad).unwrap();
        let jit_c = jit::compile(&e, KernelKind::Full).unwrap();
        check_hand_written(&e, hand_b, hand_c);
        for n in [1_280usize, 1_000_000] {
            let mut g = c.benchmark_group(format!("{name}/b"));
            g.throughput(Throughput::Elements(n as u64)).sample_size(10);
            let mut b = Bufs::new(n, k);
            g.bench_function(BenchmarkId::new("interp", n), |bn| {
                bn.iter(|| {
                    interp::loss_grad_batch(&e, &b.y, &b.yhat, &w, &mut b.loss, &mut b.dyhat)
                })
            });
            g.bench_function(BenchmarkId::new("jit", n), |bn| {
                bn.iter(|| {
                    jit_b
                        .loss_grad(&b.y, &b.yhat, &w, &mut b.loss, &mut b.dyhat)
                        .unwrap()
                })
            });
            g.bench_function(BenchmarkId::new("hand", n), |bn| {
                bn.iter(|| hand_b(&b.y, &b.yhat, &w, &mut b.loss, &mut b.dyhat))
            });
            g.finish();
            let mut g = c.benchmark_group(format!("{name}/c"));
            g.throughput(Throughput::Elements(n as u64)).sample_size(10);
            g.bench_function(BenchmarkId::new("interp", n), |bn| {
                bn.iter(|| {
                    let (y, yhat, out) = b.full();
                    interp::full_batch(&e, y, yhat, &w, out)
                })
            });
            g.bench_function(BenchmarkId::new("jit", n), |bn| {
                bn.iter(|| {
                    let (y, yhat, out) = b.full();
                    jit_c.full(y, yhat, &w, out).unwrap()
                })
            });
            g.bench_function(BenchmarkId::new("hand", n), |bn| {
                bn.iter(|| {
                    let (y, yhat, out) = b.full();
                    hand_c(y, yhat, &w, out)
                })
            });
            g.finish();
        }
    }
}

/// The hand-written functions must compute what the JIT computes, or the comparison is void.
fn check_hand_written(e: &LossExpr, hand_b: HandB, hand_c: HandC) {
    let mut want = Bufs::new(257, e.n_weights());
    let mut got = Bufs::new(257, e.n_weights());
    let w = e.weights().to_vec();
    let (y, yhat, out) = want.full();
    interp::full_batch(e, y, yhat, &w, out);
    let (y, yhat, out) = got.full();
    hand_c(y, yhat, &w, out);
    let close = |a: &[f32], b: &[f32], what: &str| {
        for (i, (x, z)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - z).abs() <= 1e-4 * (1.0 + x.abs()),
                "{e}: hand-written {what}[{i}] {z} vs {x}"
            );
        }
    };
    close(&want.loss, &got.loss, "loss");
    close(&want.dyhat, &got.dyhat, "dyhat");
    close(&want.dphi, &got.dphi, "dphi");
    close(&want.d2, &got.d2, "d2");
    got.loss.fill(0.0);
    got.dyhat.fill(0.0);
    hand_b(&got.y, &got.yhat, &w, &mut got.loss, &mut got.dyhat);
    close(&want.loss, &got.loss, "loss (b)");
    close(&want.dyhat, &got.dyhat, "dyhat (b)");
}

fn compile(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(2023);
    let texts: Vec<String> = (0..200)
        .map(|_| random_tree(&mut rng, Method::Grow, 0, 10).to_string())
        .collect();
    let mut g = c.benchmark_group("compile");
    g.throughput(Throughput::Elements(texts.len() as u64))
        .sample_size(10);
    for (label, kind) in [
        ("loss_grad", KernelKind::LossGrad),
        ("full", KernelKind::Full),
    ] {
        g.bench_function(BenchmarkId::new("parse_to_callable_batch", label), |bn| {
            bn.iter(|| {
                let mut batch = JitBatch::new().unwrap();
                for t in &texts {
                    batch.add(&t.parse().unwrap(), kind).unwrap();
                }
                black_box(batch.finish().unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, kernels, compile);
criterion_main!(benches);
