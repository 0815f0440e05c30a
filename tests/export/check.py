"""Runs the programs `evomal export` wrote and compares them with evomal's interpreter.

Usage: check.py CASES_JSON TARGET...  (targets: numpy pytorch jax sympy latex)
Each case names its modules (one per target), its weights, and the interpreter's loss,
dM/dyhat and dM/dphi at a grid of (y, yhat) points that includes the protected operators'
edge inputs (0, -0, values at and around the 1e-7 clamp, NaN). LaTeX is read back as
mathematics by latex_eval.py. Exits 1 with a message on the first mismatch.
"""

import importlib.util
import json
import math
import sys

import numpy as np


def load(path):
    spec = importlib.util.spec_from_file_location("exported", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def arr(values):
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def close(got, want, rtol, what, atol=1e-12):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    both_nan = np.isnan(got) & np.isnan(want)
    ok = both_nan | np.isclose(got, want, rtol=rtol, atol=atol)
    if not ok.all():
        i = int(np.argmin(ok))
        raise AssertionError(f"{what}: element {i}: got {got.flat[i]!r}, want {want.flat[i]!r}")


def check_numpy(case, y, yhat, w):
    m = load(case["modules"]["numpy"])
    np.seterr(all="ignore")
    close(m.learned_loss(y, yhat, w), arr(case["loss"]), 1e-9, "numpy loss")
    close(m.learned_loss(y, yhat), arr(case["loss"]), 1e-9, "numpy loss, default weights")
    mask, dyhat, _ = finite_mask(case)
    with np.errstate(all="ignore"):
        got = m.learned_loss_grad(y, yhat, w)
    close(np.broadcast_to(got, y.shape)[mask], dyhat[mask], 1e-7, "numpy dM/dyhat")


def finite_mask(case):
    loss = arr(case["loss"])
    dyhat = arr(case["dyhat"])
    dphi = np.array([arr(d) for d in case["dphi"]]).reshape(len(loss), -1)
    return np.isfinite(loss) & np.isfinite(dyhat) & np.isfinite(dphi).all(axis=1), dyhat, dphi


def check_pytorch(case, y, yhat, w):
    import torch

    m = load(case["modules"]["pytorch"])
    mask, dyhat, dphi = finite_mask(case)
    yt = torch.tensor(y)
    yh = torch.tensor(yhat, requires_grad=True)
    module = m.LearnedLoss(dtype=torch.float64)
    with torch.no_grad():
        module.weights.copy_(torch.tensor(w))
    close(module(yt, yh).detach().numpy(), arr(case["loss"]), 1e-9, "pytorch loss")
    # Gradients on the points where the interpreter's are finite only: elsewhere 0 * NaN
    # would poison the weights' gradients, which sum over points.
    yh = torch.tensor(yhat[mask], requires_grad=True)
    module(torch.tensor(y[mask]), yh).sum().backward()
    gyhat = yh.grad if yh.grad is not None else torch.zeros_like(yh)  # a loss without yhat
    close(gyhat.numpy(), dyhat[mask], 1e-7, "pytorch dM/dyhat")
    k = dphi.shape[1]
    close(module.weights.grad.numpy()[:k], dphi[mask].sum(axis=0), 1e-7, "pytorch dM/dw")


def check_jax(case, y, yhat, w):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    m = load(case["modules"]["jax"])
    mask, dyhat, dphi = finite_mask(case)
    loss = m.learned_loss(jnp.array(w), jnp.array(y), jnp.array(yhat))
    close(np.asarray(loss), arr(case["loss"]), 1e-9, "jax loss")

    def total(params, yh):
        return jnp.sum(m.learned_loss(params, jnp.array(y[mask]), yh))

    gw, gyhat = jax.grad(total, argnums=(0, 1))(jnp.array(w), jnp.array(yhat[mask]))
    close(np.asarray(gyhat), dyhat[mask], 1e-7, "jax dM/dyhat")
    k = dphi.shape[1]
    close(np.asarray(gw)[:k], dphi[mask].sum(axis=0), 1e-7, "jax dM/dw")


def check_sympy(case, y, yhat, w):
    import sympy as sp

    m = load(case["modules"]["sympy"])
    # Point by point with `math`: SymPy's Piecewise can hold constant conditions, which its
    # NumPy printer cannot vectorise.
    f = sp.lambdify((m.y, m.yhat), m.LOSS, "math")

    def values(ys, yhats):
        return np.array([float(f(a, b)) for a, b in zip(ys, yhats)], dtype=np.float64)

    # SymPy reasons over the reals and rewrites the protected operators' branches as it
    # simplifies (its printed code may take log(0) at an edge input): the generic points only.
    # The edge inputs are checked on the other targets.
    generic = np.array(case["generic"], dtype=bool)
    mask, dyhat, _ = finite_mask(case)
    sel = generic & mask
    close(values(y[sel], yhat[sel]), arr(case["loss"])[sel], 1e-9, "sympy loss")
    # The slope of SymPy's function, by central differences.
    h = 1e-6
    slope = (values(y[sel], yhat[sel] + h) - values(y[sel], yhat[sel] - h)) / (2 * h)
    close(slope, dyhat[sel], 1e-5, "sympy dM/dyhat")


def check_latex(case, y, yhat, w):
    from latex_eval import Formula

    # The formula prints each weight as its shortest f32 decimal: values agree to ~1e-7.
    formula = Formula(open(case["modules"]["latex"]).read())
    generic = np.array(case["generic"], dtype=bool)
    got = [formula.evaluate(a, b) for a, b in zip(y[generic], yhat[generic])]
    close(got, arr(case["loss"])[generic], 1e-5, "latex, read as mathematics", atol=1e-6)


CHECKS = {
    "numpy": check_numpy,
    "pytorch": check_pytorch,
    "jax": check_jax,
    "sympy": check_sympy,
    "latex": check_latex,
}


def main():
    cases = json.load(open(sys.argv[1]))
    targets = sys.argv[2:]
    for case in cases:
        y, yhat = arr(case["y"]), arr(case["yhat"])
        w = np.array(case["weights"], dtype=np.float64)
        for t in targets:
            try:
                CHECKS[t](case, y, yhat, w)
            except Exception as e:  # noqa: BLE001 - report which case and target failed
                print(f"{t}: `{case['expr']}`: {type(e).__name__}: {e}")
                sys.exit(1)
    print(f"{len(cases)} losses agree with the interpreter on {', '.join(targets)}")


if __name__ == "__main__":
    main()
