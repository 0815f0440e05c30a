use super::*;
use crate::expr::interp;

fn expr(s: &str) -> LossExpr {
    s.parse().unwrap()
}

const Y: [f32; 6] = [1.0, 0.0, 0.0, 1.0, -2.5, 3.0];
const YHAT: [f32; 6] = [0.3, 0.7, 0.0, 1e-8, 4.0, -1e6];

#[test]
fn loss_kernel_matches_interpreter() {
    let e = expr("mul(-1, mul(y, log(yhat)))");
    let k = compile(&e, KernelKind::Loss).unwrap();
    let mut out = [0.0f32; 6];
    k.loss(&Y, &YHAT, e.weights(), &mut out).unwrap();
    for i in 0..6 {
        let want = interp::eval(&e, Y[i] as f64, YHAT[i] as f64) as f32;
        assert_eq!(
            out[i].to_bits(),
            want.to_bits(),
            "element {i}: {} vs {want}",
            out[i]
        );
    }
    assert!((out[0] - 0.3f32.ln().abs()).abs() < 1e-6);
}

#[test]
fn full_kernel_matches_interpreter_derivatives() {
    let mut e = expr("add(square(sub(y, yhat)), 0.5*aq(tanh(yhat), min(y, sqrt(yhat))))");
    let w: Vec<f32> = (0..e.len()).map(|i| 1.0 + 0.1 * i as f32).collect();
    e.set_weights(&w);
    let k = compile(&e, KernelKind::Full).unwrap();
    let n = Y.len();
    let kw = e.n_weights();
    let (mut loss, mut dyhat) = (vec![0.0; n], vec![0.0; n]);
    let (mut dphi, mut d2) = (vec![0.0; n * kw], vec![0.0; n * kw]);
    let out = FullBatchMut {
        loss: &mut loss,
        dyhat: &mut dyhat,
        dphi: &mut dphi,
        d2: &mut d2,
    };
    k.full(&Y, &YHAT, &w, out).unwrap();
    let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    for i in 0..n {
        let d = interp::derivatives(&e, &w64, Y[i] as f64, YHAT[i] as f64);
        assert_eq!(loss[i], d.loss as f32);
        assert_eq!(dyhat[i], d.dyhat as f32);
        for j in 0..kw {
            assert_eq!(dphi[i * kw + j], d.dphi[j] as f32, "dphi {i} {j}");
            assert_eq!(d2[i * kw + j], d.d2[j] as f32, "d2 {i} {j}");
        }
    }
}

#[test]
fn wrong_kind_and_lengths_are_errors() {
    let e = expr("square(sub(y, yhat))");
    let k = compile(&e, KernelKind::LossGrad).unwrap();
    let mut out = [0.0f32; 6];
    let err = k.loss(&Y, &YHAT, e.weights(), &mut out).unwrap_err();
    assert!(matches!(err, JitError::WrongKind { .. }), "{err}");
    let mut short = [0.0f32; 5];
    let mut d = [0.0f32; 6];
    let err = k
        .loss_grad(&Y, &YHAT, e.weights(), &mut short, &mut d)
        .unwrap_err();
    assert_eq!(err.to_string(), "`loss` has 5 elements, expected 6");
    let err = k
        .loss_grad(&Y, &YHAT, &[1.0], &mut out, &mut d)
        .unwrap_err();
    assert_eq!(err.to_string(), "`weights` has 1 elements, expected 4");
}

#[test]
fn batch_kernels_outlive_the_batch_and_each_other() {
    let exprs = [
        "square(sub(y, yhat))",
        "abs(sub(y, yhat))",
        "mul(y, log(yhat))",
    ];
    let mut batch = JitBatch::new().unwrap();
    for s in exprs {
        batch.add(&expr(s), KernelKind::Loss).unwrap();
    }
    let mut kernels = batch.finish().unwrap();
    let last = kernels.pop().unwrap();
    drop(kernels);
    let mut out = [0.0f32; 1];
    last.loss(&[1.0], &[0.5], &[1.0; 4], &mut out).unwrap();
    assert_eq!(out[0], 0.5f32.ln());
    // Usable from another thread.
    std::thread::spawn(move || last.loss(&[1.0], &[0.5], &[1.0; 4], &mut out).unwrap())
        .join()
        .unwrap();
}
