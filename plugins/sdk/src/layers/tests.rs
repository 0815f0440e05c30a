use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn model(activation: Layer) -> Sequential {
    let layers = vec![
        Layer::Flatten,
        Layer::Dense {
            inputs: 6,
            outputs: 5,
            init: Init::XavierUniform,
        },
        activation,
        Layer::Dense {
            inputs: 5,
            outputs: 4,
            init: Init::HeUniform,
        },
        activation,
        Layer::Dense {
            inputs: 4,
            outputs: 3,
            init: Init::XavierUniform,
        },
    ];
    Sequential::new(6, layers).unwrap()
}

/// Convolutions (padded and not), both poolings, flatten and dense: `[2, 6, 6] -> 3`.
fn conv_model() -> Sequential {
    Builder::new(2, 6, 6)
        .conv(3, 3, 1)
        .tanh()
        .max_pool(2)
        .conv(2, 2, 0)
        .sigmoid()
        .avg_pool(2)
        .flatten()
        .dense(3)
        .build()
        .unwrap()
}

fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

const BATCH: usize = 7;

/// Objective `<r, f(params)>` in f64 for finite differences.
fn objective(m: &mut Sequential, p: &[f32], x: &[f32], r: &[f32]) -> f64 {
    let mut out = vec![0.0; BATCH * 3];
    m.forward(p, x, BATCH, &mut out).unwrap();
    dot(&out, r)
}

#[test]
fn backward_and_jvp_match_finite_differences_for_every_layer() {
    let cases = [
        ("tanh", model(Layer::Tanh), 6),
        ("sigmoid", model(Layer::Sigmoid), 6),
        ("relu", model(Layer::Relu), 6),
        ("conv", conv_model(), 72),
    ];
    for (act, mut m, input_len) in cases {
        // ReLU and max-pool have kinks: a finite-difference step may cross one.
        let kinked = act == "relu" || act == "conv";
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut p = vec![0.0; m.n_params()];
        m.init(3, &mut p);
        // Non-zero biases so ReLU kinks are not all at the origin.
        p.iter_mut().for_each(|v| *v += rng.random_range(-0.1..0.1));
        let x = random(&mut rng, BATCH * input_len);
        let r = random(&mut rng, BATCH * 3);

        let mut out = vec![0.0; BATCH * 3];
        m.forward(&p, &x, BATCH, &mut out).unwrap();
        let mut grad = vec![0.0; m.n_params()];
        m.backward(&p, &r, &mut grad).unwrap();

        let h = 1e-2f32;
        let mut checked = 0;
        for j in 0..m.n_params() {
            let (mut hi, mut lo) = (p.clone(), p.clone());
            hi[j] += h;
            lo[j] -= h;
            let fd = (objective(&mut m, &hi, &x, &r) - objective(&mut m, &lo, &x, &r))
                / (2.0 * h as f64);
            let tol = 2e-3 * (1.0 + fd.abs());
            if kinked && (fd - grad[j] as f64).abs() > tol {
                continue;
            }
            assert!(
                (fd - grad[j] as f64).abs() <= tol,
                "{act} param {j}: backward {} vs fd {fd}",
                grad[j]
            );
            checked += 1;
        }
        assert!(
            checked * 10 >= m.n_params() * 9,
            "{act}: only {checked} of {} checked",
            m.n_params()
        );

        // JVP against a directional finite difference and against backward (adjoint identity).
        let v = random(&mut rng, m.n_params());
        let mut jv = vec![0.0; BATCH * 3];
        m.jvp(&p, &x, BATCH, &v, &mut jv).unwrap();
        let lhs = dot(&r, &jv);
        let rhs = dot(&grad, &v);
        assert!(
            (lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()),
            "{act}: <r, Jv> {lhs} vs <J^T r, v> {rhs}"
        );
        let step = |s: f32| -> Vec<f32> { p.iter().zip(&v).map(|(&a, &b)| a + s * b).collect() };
        let fd = (objective(&mut m, &step(h), &x, &r) - objective(&mut m, &step(-h), &x, &r))
            / (2.0 * h as f64);
        if !kinked {
            assert!(
                (fd - lhs).abs() <= 2e-3 * (1.0 + fd.abs()),
                "{act}: jvp {lhs} vs fd {fd}"
            );
        }
    }
}

#[test]
fn backward_needs_the_forward_batch() {
    let mut m = model(Layer::Tanh);
    let p = vec![0.1; m.n_params()];
    let mut out = vec![0.0; 2 * 3];
    m.forward(&p, &[0.5; 12], 2, &mut out).unwrap();
    let mut grad = vec![0.0; m.n_params()];
    let err = m.backward(&p, &[1.0; 3], &mut grad).unwrap_err();
    assert!(err.contains("expected 6"), "{err}");
}

#[test]
fn init_is_seeded_and_biases_start_at_zero() {
    let m = Sequential::mlp(4, &[8], 2, Layer::Relu).unwrap();
    let (mut a, mut b, mut c) = (
        vec![0.0; m.n_params()],
        vec![0.0; m.n_params()],
        vec![0.0; m.n_params()],
    );
    m.init(1, &mut a);
    m.init(1, &mut b);
    m.init(2, &mut c);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let first = m.layer_params(0, &a);
    assert!(first[32..].iter().all(|&v| v == 0.0), "bias of layer 0");
    let bound = (6.0f32 / 12.0).sqrt();
    assert!(first[..32].iter().all(|v| v.abs() <= bound && *v != 0.0));
}

#[test]
fn mismatched_layer_widths_are_an_error() {
    let err = Sequential::new(
        3,
        vec![Layer::Dense {
            inputs: 4,
            outputs: 1,
            init: Init::XavierUniform,
        }],
    )
    .err();
    assert_eq!(
        err.as_deref(),
        Some("layer 0: dense expects 4 inputs, gets 3")
    );
}

#[test]
fn builder_tracks_shapes_and_rejects_what_does_not_fit() {
    let lenet = Builder::new(1, 28, 28)
        .conv(6, 5, 2)
        .tanh()
        .avg_pool(2)
        .conv(16, 5, 0)
        .tanh()
        .avg_pool(2)
        .flatten()
        .dense(120)
        .tanh()
        .dense(84)
        .tanh()
        .dense(10)
        .build()
        .unwrap();
    // LeNet-5's classic count: 156 + 2,416 + 48,120 + 10,164 + 850.
    assert_eq!(lenet.n_params(), 61_706);
    assert_eq!(lenet.n_outputs(), 10);
    let err = Builder::new(1, 4, 4).conv(2, 7, 0).build().err().unwrap();
    assert!(err.contains("layer 0"), "{err}");
    let err = Builder::new(1, 4, 4).max_pool(5).build().err().unwrap();
    assert!(err.contains("pooling window 5 does not fit 4x4"), "{err}");
}

#[test]
fn gemm_matches_a_naive_product_on_the_threaded_path_too() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    // 70 x 301 x 331 = 7 M multiply-adds: above the threading threshold, with a column count
    // that does not split evenly.
    for (m, k, n) in [(70, 301, 331), (3, 4, 5)] {
        let a = random(&mut rng, m * k);
        let b = random(&mut rng, k * n);
        let mut c = random(&mut rng, m * n);
        let mut want = c.clone();
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                    .sum();
                want[i * n + j] = (dot + 0.5 * want[i * n + j] as f64) as f32;
            }
        }
        gemm(Mat::new(&a, m, k), Mat::new(&b, k, n), 0.5, &mut c);
        for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
            assert!(
                (got - w).abs() < 1e-3 * (1.0 + w.abs()),
                "{m}x{k}x{n} [{i}]: {got} vs {w}"
            );
        }
        // Transposed operands: (B^T A^T) = (A B)^T, checked against the same naive product.
        let mut ct = vec![0.0; n * m];
        gemm(Mat::new(&b, k, n).t(), Mat::new(&a, m, k).t(), 0.0, &mut ct);
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                    .sum();
                let got = ct[j * m + i];
                assert!(
                    (got as f64 - dot).abs() < 1e-3 * (1.0 + dot.abs()),
                    "transposed [{j},{i}]"
                );
            }
        }
    }
}
