//! NumPy, PyTorch, JAX and SymPy programs: a short prelude with the protected operators, the
//! weights, and one line per node.

use super::{Target, nodes, weighted};
use crate::expr::{LossExpr, Op, PROTECT_EPS};

/// The module for `target` (not LaTeX).
pub(super) fn program(e: &LossExpr, target: Target) -> String {
    let weights = e
        .weights()
        .iter()
        .map(|&w| format!("{:?}", f64::from(w)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut body = String::new();
    for (i, op, children) in nodes(e) {
        let arg = |k: usize| weighted(children[k], &format!("v{}", children[k].idx()));
        let value = match op {
            Op::Y => "y".to_string(),
            Op::Yhat => "yhat".to_string(),
            Op::One => "_const(yhat, 1.0)".to_string(),
            Op::NegOne => "_const(yhat, -1.0)".to_string(),
            Op::Sign => format!("_sign({})", arg(0)),
            Op::Square => format!("_square({})", arg(0)),
            Op::Abs => format!("_abs({})", arg(0)),
            Op::Log => format!("_log({})", arg(0)),
            Op::Sqrt => format!("_sqrt({})", arg(0)),
            Op::Tanh => format!("_tanh({})", arg(0)),
            Op::Add => format!("{} + {}", arg(0), arg(1)),
            Op::Sub => format!("{} - {}", arg(0), arg(1)),
            Op::Mul => format!("({}) * ({})", arg(0), arg(1)),
            Op::Aq => format!("_aq({}, {})", arg(0), arg(1)),
            Op::Min => format!("_min({}, {})", arg(0), arg(1)),
            Op::Max => format!("_max({}, {})", arg(0), arg(1)),
        };
        body.push_str(&format!("    v{i} = {value}\n"));
    }
    let root = e.len() - 1;
    let loss = e.to_string();
    let slope = numpy_slope(e);
    let array_ops = |xp: &str, own: &str| format!("{}\n\n{own}", ARRAY_OPS.replace("{xp}", xp));
    let prelude = match target {
        Target::Numpy => array_ops("np", NUMPY),
        Target::Pytorch => array_ops("torch", TORCH),
        Target::Jax => array_ops("jnp", JAX),
        _ => SYMPY.to_string(),
    }
    .replace("{eps}", &eps());
    match target {
        Target::Numpy => format!(
            "{header}import numpy as np\n\n{prelude}\n\nWEIGHTS = np.array([{weights}])\n\n\n\
             def learned_loss(y, yhat, w=WEIGHTS):\n    {DOC}\n{body}    return v{root}\n\n\n\
             def learned_loss_grad(y, yhat, w=WEIGHTS):\n    {GRAD_DOC}\n{slope}    return d{root}\n",
            header = header(&loss),
        ),
        Target::Pytorch => format!(
            "{header}import torch\n\n{prelude}\n\nWEIGHTS = [{weights}]\n\n\n\
             def learned_loss(y, yhat, w):\n    {DOC}\n{body}    return v{root}\n\n\n\
             class LearnedLoss(torch.nn.Module):\n    \
             \"\"\"The loss with its node weights as trainable parameters.\"\"\"\n\n    \
             def __init__(self, dtype=torch.float32):\n        super().__init__()\n        \
             self.weights = torch.nn.Parameter(torch.tensor(WEIGHTS, dtype=dtype))\n\n    \
             def forward(self, y, yhat):\n        return learned_loss(y, yhat, self.weights)\n",
            header = header(&loss),
        ),
        Target::Jax => format!(
            "{header}import jax\nimport jax.numpy as jnp\n\n{prelude}\n\nPARAMS = jnp.array([{weights}])\n\n\n\
             def learned_loss(params, y, yhat):\n    {DOC}\n    w = params\n{body}    return v{root}\n",
            header = header(&loss),
        ),
        Target::Sympy => format!(
            "{header}import sympy as sp\n\n{prelude}\n\nWEIGHTS = [{weights}]\n\
             y, yhat = sp.symbols(\"y yhat\", real=True)\n\
             W = sp.symbols(\"w0:{n}\", real=True)\n\n\n\
             def learned_loss(y, yhat, w):\n    {DOC}\n{body}    return v{root}\n\n\n\
             # The loss in the symbols y, yhat and w0.., and with the learned weights.\n\
             EXPR = learned_loss(y, yhat, W)\n\
             LOSS = learned_loss(y, yhat, [sp.Float(x) for x in WEIGHTS])\n",
            header = header(&loss),
            n = e.len(),
        ),
        Target::Latex => unreachable!("LaTeX is not a Python program"),
    }
}

/// Lines computing every node's value `v` and its slope in yhat `d` (forward mode, the
/// interpreter's rules: sign has slope 0, abs sign(x), the protected operators 0 where clamped,
/// min/max the slope of the operand they pick and 0 when unordered).
fn numpy_slope(e: &LossExpr) -> String {
    let mut out = String::new();
    for (i, op, children) in nodes(e) {
        let a = |k: usize| weighted(children[k], &format!("v{}", children[k].idx()));
        let da = |k: usize| weighted(children[k], &format!("d{}", children[k].idx()));
        let (v, d) = match op {
            Op::Y => ("y".into(), "_const(yhat, 0.0)".into()),
            Op::Yhat => ("yhat".into(), "_const(yhat, 1.0)".into()),
            Op::One => ("_const(yhat, 1.0)".into(), "_const(yhat, 0.0)".into()),
            Op::NegOne => ("_const(yhat, -1.0)".into(), "_const(yhat, 0.0)".into()),
            Op::Sign => (format!("_sign({})", a(0)), "_const(yhat, 0.0)".into()),
            Op::Square => (
                format!("_square({})", a(0)),
                format!("2.0 * ({}) * ({})", a(0), da(0)),
            ),
            Op::Abs => (
                format!("_abs({})", a(0)),
                format!("_sign({}) * ({})", a(0), da(0)),
            ),
            Op::Log => (
                format!("_log({})", a(0)),
                format!("_unclamped({}, ({}) / ({}))", a(0), da(0), a(0)),
            ),
            Op::Sqrt => (
                format!("_sqrt({})", a(0)),
                format!(
                    "_unclamped({}, _sign({}) * ({}) / (2.0 * _sqrt({})))",
                    a(0),
                    a(0),
                    da(0),
                    a(0)
                ),
            ),
            Op::Tanh => (
                format!("_tanh({})", a(0)),
                format!("(1.0 - _tanh({}) ** 2) * ({})", a(0), da(0)),
            ),
            Op::Add => (
                format!("{} + {}", a(0), a(1)),
                format!("{} + {}", da(0), da(1)),
            ),
            Op::Sub => (
                format!("{} - {}", a(0), a(1)),
                format!("{} - {}", da(0), da(1)),
            ),
            Op::Mul => (
                format!("({}) * ({})", a(0), a(1)),
                format!("({}) * ({}) + ({}) * ({})", da(0), a(1), a(0), da(1)),
            ),
            Op::Aq => (
                format!("_aq({}, {})", a(0), a(1)),
                format!("_aq_slope({}, {}, {}, {})", a(0), a(1), da(0), da(1)),
            ),
            Op::Min | Op::Max => {
                let name = op.name();
                (
                    format!("_{name}({}, {})", a(0), a(1)),
                    format!("_pick_{name}({}, {}, {}, {})", a(0), a(1), da(0), da(1)),
                )
            }
        };
        out.push_str(&format!("    v{i} = {v}\n    d{i} = {d}\n"));
    }
    out
}

fn header(loss: &str) -> String {
    format!(
        "# A loss learned by evomal, exported from its expression:\n#   {}\n\
         # Elementwise: y and yhat are targets and predictions (for classification, one-hot\n\
         # targets and softmax probabilities); evomal sums the loss over outputs and averages it\n\
         # over the batch. w[i] weighs node i's output where it feeds its parent.\n\n",
        crate::expr::abbreviate(loss)
    )
}

const DOC: &str = "\"\"\"The loss per element of y and yhat (same shape).\"\"\"";

const GRAD_DOC: &str = "\"\"\"dM/dyhat per element, as evomal computes it.\"\"\"";

fn eps() -> String {
    format!("{PROTECT_EPS:e}")
}

/// The operators NumPy, PyTorch and JAX spell alike; `{xp}` is the array module.
const ARRAY_OPS: &str = r#"EPS = {eps}


def _protect(x):
    # log and sqrt see max(|x|, EPS); below EPS their slope is 0.
    ax = {xp}.abs(x)
    return {xp}.where(ax < EPS, EPS, ax)


def _square(x):
    return x * x


def _log(x):
    return {xp}.log(_protect(x))


def _sqrt(x):
    return {xp}.sqrt(_protect(x))


def _aq(a, b):
    return a / {xp}.sqrt(1.0 + b * b)


def _min(a, b):
    # b if b < a, a if a <= b, NaN when unordered.
    return {xp}.where(b < a, b, {xp}.where(a <= b, a, a + b))


def _max(a, b):
    return {xp}.where(a < b, b, {xp}.where(b <= a, a, a + b))
"#;

const NUMPY: &str = r#"def _const(like, c):
    return np.full_like(like, c, dtype=np.result_type(like, np.float32))


def _sign(x):
    return np.where(x > 0, 1.0, np.where(x < 0, -1.0, x))


_abs = np.abs
_tanh = np.tanh


def _unclamped(x, slope):
    # The protected operators' slope is 0 where the clamp is active.
    return np.where(np.abs(x) < EPS, 0.0, slope)


def _aq_slope(a, b, da, db):
    q = np.sqrt(1.0 + b * b)
    return da / q - (a / q) * b * db / (q * q)


def _pick(b_wins, a, b, da, db):
    # The slope of the operand min/max picks; 0 when they compare unordered.
    return np.where(b_wins, db, np.where((a <= b) | (b <= a), da, 0.0))


def _pick_min(a, b, da, db):
    return _pick(b < a, a, b, da, db)


def _pick_max(a, b, da, db):
    return _pick(a < b, a, b, da, db)
"#;

const TORCH: &str = r#"def _const(like, c):
    return torch.full_like(like, c)


def _sign(x):
    # 1, -1, or x itself at 0 and NaN (torch.sign gives 0 for NaN); its gradient is 0.
    return torch.where(torch.isnan(x), x, torch.sign(x))


_abs = torch.abs
_tanh = torch.tanh
"#;

const JAX: &str = r#"def _const(like, c):
    return jnp.full_like(like, c)


_sign = jnp.sign


def _abs(x):
    # |x| with slope sign(x), 0 at 0 (jnp.abs has slope 1 there).
    return x * jax.lax.stop_gradient(jnp.sign(x))


_tanh = jnp.tanh
"#;

const SYMPY: &str = r#"EPS = sp.Float("{eps}")


def _const(like, c):
    return sp.Integer(c)


def _protect(x):
    # log and sqrt see max(|x|, EPS).
    return sp.Piecewise((EPS, sp.Abs(x) < EPS), (sp.Abs(x), True))


_sign = sp.sign
_abs = sp.Abs
_tanh = sp.tanh


def _square(x):
    return x**2


def _log(x):
    return sp.log(_protect(x))


def _sqrt(x):
    return sp.sqrt(_protect(x))


def _aq(a, b):
    return a / sp.sqrt(1 + b**2)


def _min(a, b):
    # b if b < a, a if a <= b, NaN when unordered (sp.Min has no NaN).
    return sp.Piecewise((b, b < a), (a, a <= b), (a + b, True))


def _max(a, b):
    return sp.Piecewise((b, a < b), (a, b <= a), (a + b, True))
"#;
