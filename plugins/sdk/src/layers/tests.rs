use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::Model;
use crate::abi::*;

fn model(activation: Layer) -> Sequential {
    let layers = vec![
        Layer::Flatten,
        Layer::Dense {
            inputs: 6,
            outputs: 5,
            init: Init::XavierUniform,
        },
        activation.clone(),
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

const BATCH: usize = 7;

/// Strided and bias-free convolutions, batch norm (2-D and 1-D), dropout, residual blocks
/// (identity and projection shortcuts) and global pooling: `[2, 8, 8] -> 3`.
fn cnn_model() -> Sequential {
    Builder::new(2, 8, 8)
        .conv2d(4, 3, 1, 1, false)
        .batch_norm()
        .relu()
        .residual(|b| {
            b.conv2d(4, 3, 1, 1, false)
                .batch_norm()
                .tanh()
                .conv(4, 3, 1)
        })
        .residual_with(
            |b| b.conv2d(6, 3, 2, 1, false).batch_norm().sigmoid(),
            |b| b.conv2d(6, 1, 2, 0, false).batch_norm(),
        )
        .dropout(0.3)
        .global_avg_pool()
        .batch_norm()
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

/// Objective `<r, f(params)>` in f64 for finite differences (on a copy of the state).
fn objective(m: &mut Sequential, p: &[f32], st: &[f32], x: &[f32], mode: Mode, r: &[f32]) -> f64 {
    let mut out = vec![0.0; BATCH * 3];
    m.forward(p, &mut st.to_vec(), x, BATCH, mode, &mut out)
        .unwrap();
    dot(&out, r)
}

/// Backward against central differences for every parameter, JVP against a directional
/// difference and against backward (the adjoint identity), in `mode`.
fn check_derivatives(name: &str, mut m: Sequential, input_len: usize, mode: Mode, kinked: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut p = vec![0.0; m.n_params()];
    let mut st = vec![0.0; m.n_state()];
    m.init(3, &mut p, &mut st);
    // Non-zero biases so ReLU kinks are not all at the origin; running statistics away from
    // their initial values so evaluation passes are not plain affine maps.
    p.iter_mut().for_each(|v| *v += rng.random_range(-0.1..0.1));
    st.iter_mut().for_each(|v| *v += rng.random_range(0.0..0.5));
    let x = random(&mut rng, BATCH * input_len);
    let r = random(&mut rng, BATCH * 3);

    let mut out = vec![0.0; BATCH * 3];
    m.forward(&p, &mut st.clone(), &x, BATCH, mode, &mut out)
        .unwrap();
    let mut grad = vec![0.0; m.n_params()];
    m.backward(&p, &r, &mut grad).unwrap();

    let h = 1e-2f32;
    let mut checked = 0;
    for j in 0..m.n_params() {
        let (mut hi, mut lo) = (p.clone(), p.clone());
        hi[j] += h;
        lo[j] -= h;
        let fd = (objective(&mut m, &hi, &st, &x, mode, &r)
            - objective(&mut m, &lo, &st, &x, mode, &r))
            / (2.0 * h as f64);
        let tol = 3e-3 * (1.0 + fd.abs());
        if kinked && (fd - grad[j] as f64).abs() > tol {
            continue;
        }
        assert!(
            (fd - grad[j] as f64).abs() <= tol,
            "{name} param {j}: backward {} vs fd {fd}",
            grad[j]
        );
        checked += 1;
    }
    assert!(
        checked * 10 >= m.n_params() * 9,
        "{name}: only {checked} of {} checked",
        m.n_params()
    );

    let v = random(&mut rng, m.n_params());
    let mut jv = vec![0.0; BATCH * 3];
    let st_before = st.clone();
    m.jvp(&p, &st, &x, BATCH, mode, &v, &mut jv).unwrap();
    assert_eq!(st, st_before, "{name}: jvp moved the state");
    let lhs = dot(&r, &jv);
    let rhs = dot(&grad, &v);
    assert!(
        (lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()),
        "{name}: <r, Jv> {lhs} vs <J^T r, v> {rhs}"
    );
    let step = |s: f32| -> Vec<f32> { p.iter().zip(&v).map(|(&a, &b)| a + s * b).collect() };
    let h = 1e-3f32;
    let fd = (objective(&mut m, &step(h), &st, &x, mode, &r)
        - objective(&mut m, &step(-h), &st, &x, mode, &r))
        / (2.0 * h as f64);
    if !kinked {
        assert!(
            (fd - lhs).abs() <= 3e-3 * (1.0 + fd.abs()),
            "{name}: jvp {lhs} vs fd {fd}"
        );
    }
}

#[test]
fn backward_and_jvp_match_finite_differences_for_every_layer() {
    let train = Mode::Train { seed: 11 };
    for (name, act) in [
        ("tanh", Layer::Tanh),
        ("sigmoid", Layer::Sigmoid),
        ("relu", Layer::Relu),
    ] {
        // ReLU has kinks: a finite-difference step may cross one.
        check_derivatives(name, model(act.clone()), 6, Mode::Eval, name == "relu");
    }
    check_derivatives("conv", conv_model(), 72, Mode::Eval, true);
    check_derivatives("cnn train", cnn_model(), 128, train, true);
    check_derivatives("cnn eval", cnn_model(), 128, Mode::Eval, true);
}

/// A smooth model with batch norm in training mode (batch statistics) and dropout, where the
/// directional finite difference must match the JVP (no kinks to excuse a miss).
#[test]
fn batch_norm_and_dropout_jvp_is_exact_in_training() {
    let m = Builder::new(3, 4, 4)
        .conv2d(4, 3, 1, 1, false)
        .batch_norm()
        .tanh()
        .residual(|b| b.conv(4, 3, 1).batch_norm().sigmoid())
        .dropout(0.25)
        .avg_pool(2)
        .flatten()
        .batch_norm()
        .dense(3)
        .build()
        .unwrap();
    check_derivatives("smooth train", m, 48, Mode::Train { seed: 4 }, false);
}

#[test]
fn training_passes_move_running_statistics_and_evaluation_uses_them() {
    let mut m = Builder::new(2, 1, 1).batch_norm().build().unwrap();
    let (mut p, mut st) = (vec![0.0; 4], vec![0.0; 4]);
    m.init(0, &mut p, &mut st);
    assert_eq!(
        (&p[..], &st[..]),
        (&[1.0, 1.0, 0.0, 0.0][..], &[0.0, 0.0, 1.0, 1.0][..])
    );
    let x = [1.0, 10.0, 3.0, 20.0];
    let mut out = [0.0; 4];
    m.forward(&p, &mut st, &x, 2, Mode::Train { seed: 0 }, &mut out)
        .unwrap();
    // Batch statistics: channel 0 has mean 2, biased variance 1, so outputs are -1, +1.
    assert!(
        (out[0] + 1.0).abs() < 1e-4 && (out[2] - 1.0).abs() < 1e-4,
        "{out:?}"
    );
    // Running mean 0.9 * 0 + 0.1 * 2; running variance 0.9 + 0.1 * 2 (unbiased).
    assert!(
        (st[0] - 0.2).abs() < 1e-6 && (st[2] - 1.1).abs() < 1e-6,
        "{st:?}"
    );
    m.forward(&p, &mut st, &x, 2, Mode::Eval, &mut out).unwrap();
    let want = (1.0 - 0.2) / (1.1f32 + 1e-5).sqrt();
    assert!((out[0] - want).abs() < 1e-5, "{} vs {want}", out[0]);
    assert!(
        (st[0] - 0.2).abs() < 1e-6,
        "evaluation moved the statistics"
    );
}

#[test]
fn dropout_is_seeded_scaled_and_off_in_evaluation() {
    let mut m = Builder::new(1000, 1, 1).dropout(0.4).build().unwrap();
    let x = vec![1.0; 1000];
    let run = |m: &mut Sequential, mode| {
        let mut out = vec![0.0; 1000];
        m.forward(&[], &mut [], &x, 1, mode, &mut out).unwrap();
        out
    };
    let a = run(&mut m, Mode::Train { seed: 1 });
    assert_eq!(a, run(&mut m, Mode::Train { seed: 1 }));
    assert_ne!(a, run(&mut m, Mode::Train { seed: 2 }));
    let zeros = a.iter().filter(|&&v| v == 0.0).count();
    assert!((330..470).contains(&zeros), "{zeros} of 1000 dropped");
    assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.6).abs() < 1e-6));
    assert_eq!(run(&mut m, Mode::Eval), x);
}

#[test]
fn strided_convolution_matches_a_direct_sum() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (c, h, w, c_out, k, stride, pad) = (2, 7, 6, 3, 3, 2, 1);
    let mut m = Builder::new(c, h, w)
        .conv2d(c_out, k, stride, pad, true)
        .build()
        .unwrap();
    let p = random(&mut rng, m.n_params());
    let x = random(&mut rng, 2 * c * h * w);
    let (ho, wo) = (
        (h + 2 * pad - k) / stride + 1,
        (w + 2 * pad - k) / stride + 1,
    );
    let mut out = vec![0.0; 2 * c_out * ho * wo];
    m.forward(&p, &mut [], &x, 2, Mode::Eval, &mut out).unwrap();
    for b in 0..2 {
        for co in 0..c_out {
            for oi in 0..ho {
                for oj in 0..wo {
                    let mut want = p[c_out * c * k * k + co] as f64;
                    for ci in 0..c {
                        for ki in 0..k {
                            for kj in 0..k {
                                let ii = (oi * stride + ki) as isize - pad as isize;
                                let jj = (oj * stride + kj) as isize - pad as isize;
                                if ii < 0 || jj < 0 || ii >= h as isize || jj >= w as isize {
                                    continue;
                                }
                                let xv = x[((b * c + ci) * h + ii as usize) * w + jj as usize];
                                let wv = p[((co * c + ci) * k + ki) * k + kj];
                                want += xv as f64 * wv as f64;
                            }
                        }
                    }
                    let got = out[((b * c_out + co) * ho + oi) * wo + oj] as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "[{b},{co},{oi},{oj}] {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn backward_needs_the_forward_batch() {
    let mut m = model(Layer::Tanh);
    let p = vec![0.1; m.n_params()];
    let mut out = vec![0.0; 2 * 3];
    m.forward(&p, &mut [], &[0.5; 12], 2, Mode::Eval, &mut out)
        .unwrap();
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
    m.init(1, &mut a, &mut []);
    m.init(1, &mut b, &mut []);
    m.init(2, &mut c, &mut []);
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
    // that does not split evenly; 400 x 2000 x 6 too narrow to split by columns (by rows).
    let shapes = [(70, 301, 331), (400, 2000, 6), (3, 4, 5)];
    for (lib, (m, k, n)) in [Sgemm::Gemm, Sgemm::Matrixmultiply]
        .into_iter()
        .flat_map(|lib| shapes.map(|shape| (lib, shape)))
    {
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
        gemm(lib, Mat::new(&a, m, k), Mat::new(&b, k, n), 0.5, &mut c);
        for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
            assert!(
                (got - w).abs() < 1e-3 * (1.0 + w.abs()),
                "{lib:?} {m}x{k}x{n} [{i}]: {got} vs {w}"
            );
        }
        // Transposed operands: (B^T A^T) = (A B)^T, checked against the same naive product.
        let mut ct = vec![0.0; n * m];
        gemm(
            lib,
            Mat::new(&b, k, n).t(),
            Mat::new(&a, m, k).t(),
            0.0,
            &mut ct,
        );
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                    .sum();
                let got = ct[j * m + i];
                assert!(
                    (got as f64 - dot).abs() < 1e-3 * (1.0 + dot.abs()),
                    "{lib:?} transposed [{j},{i}]"
                );
            }
        }
    }
}

/// A ResNet with smooth activations, batch norm in training mode, identity and projection
/// shortcuts, a strided convolution and dropout: every parameter's gradient must match (no kink
/// to excuse a miss).
#[test]
fn a_smooth_resnet_differentiates_exactly_in_training() {
    let m = crate::models::resnet(1, 8, 8, 3, &[1, 1], 4, 0.2, Layer::Tanh).unwrap();
    check_derivatives("smooth resnet", m, 64, Mode::Train { seed: 3 }, false);
}

#[test]
fn fast_tanh_is_within_seven_ulp() {
    for i in -200_000..=200_000 {
        let x = i as f32 * 6e-5;
        let (got, want) = (super::tanh(x) as f64, (x as f64).tanh());
        let err = (got - want).abs();
        assert!(
            err <= 4.5e-7 && err <= 8.0 * f32::EPSILON as f64 * want.abs(),
            "tanh({x}) = {got}, off by {err:e}"
        );
    }
    assert_eq!(super::tanh(1e-5), 1e-5);
    assert!((super::tanh(100.0) - 1.0).abs() < 1e-7 && super::tanh(-100.0) == -super::tanh(100.0));
}

/// Layers too wide for one chunk run chunk by chunk, on all threads: the same values as one
/// chunk (up to the order of the weight gradient's sums), and exact derivatives.
#[test]
fn convolutions_in_many_chunks_match_one_chunk() {
    let run = |budget: usize| {
        super::conv::TEST_COLS_BUDGET.set(budget);
        let mut m = cnn_model();
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let (mut p, mut st) = (vec![0.0; m.n_params()], vec![0.0; m.n_state()]);
        m.init(1, &mut p, &mut st);
        let x = random(&mut rng, BATCH * 128);
        let r = random(&mut rng, BATCH * 3);
        let v = random(&mut rng, m.n_params());
        let mode = Mode::Train { seed: 2 };
        let mut out = vec![0.0; BATCH * 3];
        m.forward(&p, &mut st.clone(), &x, BATCH, mode, &mut out)
            .unwrap();
        let mut grad = vec![0.0; m.n_params()];
        m.backward(&p, &r, &mut grad).unwrap();
        let mut jv = vec![0.0; BATCH * 3];
        m.jvp(&p, &st, &x, BATCH, mode, &v, &mut jv).unwrap();
        (out, grad, jv)
    };
    let whole = run(1 << 22);
    // 2 x 8 x 8 inputs with 3 x 3 kernels: 1,152 column floats per example, so 2 per chunk.
    let chunked = run(2_500);
    super::conv::TEST_COLS_BUDGET.set(1 << 22);
    for (name, a, b) in [
        ("outputs", &whole.0, &chunked.0),
        ("gradient", &whole.1, &chunked.1),
        ("jvp", &whole.2, &chunked.2),
    ] {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                "{name}[{i}]: {x} vs {y}"
            );
        }
    }
    super::conv::TEST_COLS_BUDGET.set(2_500);
    check_derivatives(
        "cnn in chunks",
        cnn_model(),
        128,
        Mode::Train { seed: 11 },
        true,
    );
    super::conv::TEST_COLS_BUDGET.set(1 << 22);
}

/// Size-keeping 3 x 3 convolutions run by Winograd's algorithm: on odd image sizes and in
/// chunks, the same outputs, gradients and JVPs as im2col to f32 rounding, and exact
/// derivatives.
#[test]
fn winograd_convolutions_match_im2col() {
    let model = || {
        Builder::new(3, 7, 5)
            .conv(4, 3, 1)
            .tanh()
            .conv2d(5, 3, 1, 1, false)
            .sigmoid()
            .conv(2, 3, 1)
            .flatten()
            .dense(3)
            .build()
            .unwrap()
    };
    let run = |winograd: bool, budget: usize| {
        super::conv::TEST_WINOGRAD.set(winograd);
        super::conv::TEST_COLS_BUDGET.set(budget);
        let mut m = model();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let p = random(&mut rng, m.n_params());
        let x = random(&mut rng, BATCH * 105);
        let r = random(&mut rng, BATCH * 3);
        let v = random(&mut rng, m.n_params());
        let mode = Mode::Train { seed: 1 };
        let mut out = vec![0.0; BATCH * 3];
        m.forward(&p, &mut [], &x, BATCH, mode, &mut out).unwrap();
        let mut grad = vec![0.0; m.n_params()];
        m.backward(&p, &r, &mut grad).unwrap();
        let mut jv = vec![0.0; BATCH * 3];
        m.jvp(&p, &[], &x, BATCH, mode, &v, &mut jv).unwrap();
        [out, grad, jv]
    };
    let im2col = run(false, 1 << 22);
    // 16 x 5 channels x 4 x 3 tiles: 960 transformed floats per example, so 2 per chunk.
    for budget in [1 << 22, 2_000] {
        let winograd = run(true, budget);
        for (name, a, b) in ["outputs", "gradient", "jvp"]
            .iter()
            .zip(&im2col)
            .zip(&winograd)
            .map(|((n, a), b)| (n, a, b))
        {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= 2e-5 * (1.0 + x.abs()),
                    "{name}[{i}] (budget {budget}): im2col {x} vs winograd {y}"
                );
            }
        }
    }
    super::conv::TEST_COLS_BUDGET.set(2_000);
    check_derivatives("winograd in chunks", model(), 105, Mode::Eval, false);
    super::conv::TEST_COLS_BUDGET.set(1 << 22);
}

/// Every element-wise pass split across the threads gives the serial pass's values bit for
/// bit, and the derivatives stay exact.
#[test]
fn passes_split_across_threads_equal_the_serial_ones() {
    let run = |par_min: usize, m: fn() -> Sequential, input_len: usize| {
        super::par::TEST_PAR_MIN.set(par_min);
        let mut m = m();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (mut p, mut st) = (vec![0.0; m.n_params()], vec![0.0; m.n_state()]);
        m.init(1, &mut p, &mut st);
        let x = random(&mut rng, BATCH * input_len);
        let r = random(&mut rng, BATCH * 3);
        let v = random(&mut rng, m.n_params());
        let mut passes = Vec::new();
        for mode in [Mode::Train { seed: 2 }, Mode::Eval] {
            let mut out = vec![0.0; BATCH * 3];
            let mut state = st.clone();
            m.forward(&p, &mut state, &x, BATCH, mode, &mut out)
                .unwrap();
            let mut grad = vec![0.0; m.n_params()];
            m.backward(&p, &r, &mut grad).unwrap();
            let mut jv = vec![0.0; BATCH * 3];
            m.jvp(&p, &st, &x, BATCH, mode, &v, &mut jv).unwrap();
            passes.extend([out, state, grad, jv]);
        }
        super::par::TEST_PAR_MIN.set(1 << 15);
        passes
    };
    for (name, model, input_len) in [
        ("cnn", cnn_model as fn() -> Sequential, 128),
        ("conv", conv_model, 72),
    ] {
        let (serial, split) = (run(usize::MAX, model, input_len), run(1, model, input_len));
        for (k, (a, b)) in serial.iter().zip(&split).enumerate() {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a), bits(b), "{name}: pass {k} differs when split");
        }
    }
    super::par::TEST_PAR_MIN.set(1);
    check_derivatives(
        "cnn split",
        cnn_model(),
        128,
        Mode::Train { seed: 11 },
        true,
    );
    check_derivatives("conv split", conv_model(), 72, Mode::Eval, true);
    super::par::TEST_PAR_MIN.set(1 << 15);
}

/// A residual model's descriptions: each block followed by its body and shortcut, and the
/// parameter and state ranges of the described layers tiling the model's vectors in order.
#[test]
fn descriptions_cover_residual_blocks_and_tile_the_vectors() {
    let m = crate::models::resnet(1, 8, 8, 10, &[1, 1], 4, 0.0, Layer::Relu).unwrap();
    let descs = m.layers();
    let (mut params, mut state) = (0u64, 0u64);
    for d in &descs {
        let (np, ns) = match d.kind {
            LAYER_CONV2D => (
                (d.out_channels * d.channels * d.kernel * d.kernel) as u64,
                0,
            ),
            LAYER_BATCH_NORM => (2 * d.channels as u64, 2 * d.channels as u64),
            LAYER_DENSE => ((d.inputs * d.outputs + d.outputs) as u64, 0),
            _ => (0, 0),
        };
        if np > 0 {
            assert_eq!(d.param_offset, params, "{d:?}");
        }
        if ns > 0 {
            assert_eq!(d.state_offset, state, "{d:?}");
        }
        (params, state) = (params + np, state + ns);
    }
    assert_eq!((params, state), (m.n_params() as u64, m.n_state() as u64));
    let blocks: Vec<(usize, u32, u32)> = descs
        .iter()
        .enumerate()
        .filter(|(_, d)| d.kind == LAYER_RESIDUAL)
        .map(|(i, d)| (i, d.body, d.shortcut))
        .collect();
    // Stem (conv, bn, relu), then an identity block and a projection block, each with a
    // five-layer body and the second a two-layer shortcut, each followed by a relu.
    assert_eq!(blocks, [(3, 5, 0), (10, 5, 2)]);
    let stride = &descs[11];
    assert_eq!(
        (stride.kind, stride.stride, stride.padding),
        (LAYER_CONV2D, 2, 1)
    );
    assert_eq!((stride.height, stride.width, stride.channels), (8, 8, 4));
}
