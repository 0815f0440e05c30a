//! WGSL lowering: a loss expression -> a standalone compute shader for the same three outputs
//! as the JIT kernels. The hand-written part is `shaders/loss.wgsl` (bindings, entry point,
//! documentation); only the per-element body is generated, by running `expr::deriv`'s sweeps on
//! [`WgslArith`], which writes one `let` per primitive. Weights are a storage buffer, so new
//! weights need no new shader. Shaders are validated with naga.
//!
//! WGSL computes in f32 (the interpreter and the JIT in f64), so the backends agree within f32
//! tolerance, not to the bit.

use std::fmt::Write;

use super::KernelKind;
use crate::expr::LossExpr;
use crate::expr::deriv::{Arith, Outputs, Sweep};

const TEMPLATE: &str = include_str!("../../../shaders/loss.wgsl");
/// Helpers every generated shader includes.
pub const COMMON: &str = include_str!("../../../shaders/common.wgsl");

/// A shader that naga rejects (a bug in the lowering).
#[derive(Debug, thiserror::Error)]
#[error("invalid WGSL for `{expr}`:\n{msg}")]
pub struct WgslError {
    pub expr: String,
    pub msg: String,
}

/// The `let` statements computing `kind`'s outputs for `e` from `y_i`, `yhat_i` and
/// `weights`, and the values holding the outputs.
fn lower(e: &LossExpr, kind: KernelKind) -> (String, Outputs<Val>) {
    let mut a = WgslArith {
        body: String::new(),
        next: 0,
    };
    let weights: Vec<Val> = (0..e.len() as u32).map(Val::Weight).collect();
    let mut sweep = Sweep::new(Val::Y);
    let (y, yhat) = (Val::Y, Val::Yhat);
    let out = match kind {
        KernelKind::Loss => sweep.forward(&mut a, e, y, yhat, &weights, false),
        KernelKind::LossGrad => sweep.forward(&mut a, e, y, yhat, &weights, true),
        KernelKind::Full => sweep.full(&mut a, e, y, yhat, &weights),
    };
    let out = Outputs {
        loss: out.loss,
        dyhat: out.dyhat,
        dphi: out.dphi.clone(),
        d2: out.d2.clone(),
    };
    (a.body, out)
}

fn text(v: Option<Val>) -> String {
    v.map_or_else(|| "0.0".to_string(), |v| v.to_string())
}

/// A WGSL function `fn {name}(y_i: f32, yhat_i: f32, weights: array<f32, N>, e: u32) ->
/// vec2<f32>` returning the loss and dM/dyhat for `e` (`N` = its node count). The population
/// trainer puts one per candidate into a shader. With `d2_stride = Some(K)` it also stores
/// d2M/(dyhat dphi_j) for every weight `j` at `d2[e * K + j]` (a storage array the shader
/// declares), for the local search.
pub fn loss_grad_function(e: &LossExpr, name: &str, d2_stride: Option<usize>) -> String {
    let kind = match d2_stride {
        Some(_) => KernelKind::Full,
        None => KernelKind::LossGrad,
    };
    let (mut body, out) = lower(e, kind);
    if let Some(stride) = d2_stride {
        for (j, d) in out.d2.iter().enumerate() {
            let _ = writeln!(body, "    d2[e * {stride}u + {j}u] = {};", text(*d));
        }
    }
    format!(
        "fn {name}(y_i: f32, yhat_i: f32, weights: array<f32, {n}>, e: u32) -> vec2<f32> {{\n{body}    return vec2<f32>({}, {});\n}}\n",
        out.loss,
        text(out.dyhat),
        n = e.len(),
    )
}

/// The compute shader computing `kind`'s outputs for `e`.
pub fn shader(e: &LossExpr, kind: KernelKind) -> String {
    let k = e.n_weights();
    let (bindings, docs) = output_bindings(kind, k);
    let (mut body, out) = lower(e, kind);
    let _ = writeln!(body, "    loss[i] = {};", out.loss);
    if kind != KernelKind::Loss {
        let _ = writeln!(body, "    dyhat[i] = {};", text(out.dyhat));
    }
    if kind == KernelKind::Full {
        for j in 0..k {
            let _ = writeln!(body, "    dphi[i * {k}u + {j}u] = {};", text(out.dphi[j]));
            let _ = writeln!(body, "    d2[i * {k}u + {j}u] = {};", text(out.d2[j]));
        }
    }
    TEMPLATE
        .replace("{{expr}}", &e.to_string())
        .replace("{{infix}}", &e.to_infix())
        .replace("{{n_nodes}}", &format!("{} floats", e.len()))
        .replace("//{{binding_docs}}\n", &docs)
        .replace("{{bindings}}\n", &bindings)
        .replace("{{body}}\n", &body)
        + "\n"
        + COMMON
}

fn output_bindings(kind: KernelKind, k: usize) -> (String, String) {
    let mut outs = vec![(4, "loss", "the loss")];
    if kind != KernelKind::Loss {
        outs.push((5, "dyhat", "dM/dyhat"));
    }
    let per_weight = format!("n x {k} row-major: d2M/(dyhat dphi_j)");
    let dphi_doc = format!("n x {k} row-major: dM/dphi_j, j over all nodes but the root");
    if kind == KernelKind::Full {
        outs.push((6, "dphi", dphi_doc.as_str()));
        outs.push((7, "d2", per_weight.as_str()));
    }
    let mut bindings = String::new();
    let mut docs = String::new();
    for (b, name, doc) in outs {
        let _ = writeln!(
            bindings,
            "@group(0) @binding({b}) var<storage, read_write> {name}: array<f32>;"
        );
        let _ = writeln!(docs, "//   {b}  {name:<8} storage, read_write  {doc}");
    }
    (bindings, docs)
}

/// Parses and validates `src` with naga.
pub fn validate(e: &LossExpr, src: &str) -> Result<(), WgslError> {
    let err = |msg: String| WgslError {
        expr: e.to_string(),
        msg,
    };
    let module = naga::front::wgsl::parse_str(src).map_err(|p| err(p.emit_to_string(src)))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .map_err(|v| err(v.emit_to_string(src)))?;
    Ok(())
}

/// A WGSL value: a `let` binding, an input, or a weight.
#[derive(Clone, Copy, Debug)]
enum Val {
    Let(u32),
    Y,
    Yhat,
    Weight(u32),
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Let(n) => write!(f, "v{n}"),
            Val::Y => f.write_str("y_i"),
            Val::Yhat => f.write_str("yhat_i"),
            Val::Weight(j) => write!(f, "weights[{j}]"),
        }
    }
}

/// [`Arith`] that writes WGSL, one `let` per primitive.
struct WgslArith {
    body: String,
    next: u32,
}

impl WgslArith {
    fn bind(&mut self, expr: String) -> Val {
        let v = Val::Let(self.next);
        self.next += 1;
        let _ = writeln!(self.body, "    let {v} = {expr};");
        v
    }
}

impl Arith for WgslArith {
    type V = Val;
    type C = Val;
    fn constant(&mut self, c: f64) -> Val {
        // A `let` is evaluated at run time, so even a constant subtree that divides by zero is
        // never folded (and rejected) by the shader compiler.
        self.bind(format!("{:?}", c as f32))
    }
    fn add(&mut self, a: Val, b: Val) -> Val {
        self.bind(format!("{a} + {b}"))
    }
    fn sub(&mut self, a: Val, b: Val) -> Val {
        self.bind(format!("{a} - {b}"))
    }
    fn mul(&mut self, a: Val, b: Val) -> Val {
        self.bind(format!("{a} * {b}"))
    }
    fn div(&mut self, a: Val, b: Val) -> Val {
        self.bind(format!("{a} / {b}"))
    }
    fn neg(&mut self, a: Val) -> Val {
        self.bind(format!("-{a}"))
    }
    fn abs(&mut self, a: Val) -> Val {
        self.bind(format!("abs({a})"))
    }
    fn sqrt(&mut self, a: Val) -> Val {
        self.bind(format!("sqrt({a})"))
    }
    fn ln(&mut self, a: Val) -> Val {
        self.bind(format!("log({a})"))
    }
    fn tanh(&mut self, a: Val) -> Val {
        self.bind(format!("evomal_tanh({a})"))
    }
    fn tanh_slope(&mut self, x: Val, _t: Val) -> Val {
        self.bind(format!("evomal_tanh_slope({x})"))
    }
    fn lt(&mut self, a: Val, b: Val) -> Val {
        self.bind(format!("{a} < {b}"))
    }
    fn le(&mut self, a: Val, b: Val) -> Val {
        self.bind(format!("{a} <= {b}"))
    }
    fn select(&mut self, c: Val, then: Val, otherwise: Val) -> Val {
        // WGSL's select takes (false value, true value, condition).
        self.bind(format!("select({otherwise}, {then}, {c})"))
    }
}

#[cfg(test)]
mod tests;
