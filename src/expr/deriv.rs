//! Derivatives of a loss, written once over an abstract arithmetic.
//!
//! [`Arith`] is a handful of f64 primitives (add, mul, sqrt, ln, compare, select…). The sweeps
//! here express every loss output in those primitives: on [`F64`] they compute numbers (the
//! interpreter's derivatives), in the JIT they emit Cranelift instructions. So the two backends
//! share the chain rule but not the primitives, and the property tests compare them.
//!
//! Per element the sweeps produce the loss `M`, `dM/dyhat`, and for every effective weight `j`
//! (every node but the root) `dM/dphi_j` and the mixed `d2M/(dyhat dphi_j)` — the inputs of the
//! exact one-step meta-gradient (METHOD.md §4).
//!
//! Method: forward mode in `yhat` (a dual number per node), then a reverse sweep whose adjoints
//! are themselves dual numbers (forward-over-reverse), so one pass yields both `dM/dphi_j` and
//! its `yhat` derivative.
//!
//! Non-smooth points: `abs` and `sign` use the subgradient `sign(0) = 0`; the protected `log` and
//! `sqrt` have derivative 0 where the clamp `max(|a|, 1e-7)` is active (`|a| < 1e-7`); `min`/`max`
//! send the whole gradient to the left operand on a tie.

use super::{LossExpr, Op, PROTECT_EPS};

/// The primitives every loss output is built from (IEEE f64 semantics).
pub trait Arith {
    type V: Copy;
    type C: Copy;
    fn constant(&mut self, c: f64) -> Self::V;
    fn add(&mut self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(&mut self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(&mut self, a: Self::V, b: Self::V) -> Self::V;
    fn div(&mut self, a: Self::V, b: Self::V) -> Self::V;
    fn neg(&mut self, a: Self::V) -> Self::V;
    fn abs(&mut self, a: Self::V) -> Self::V;
    fn sqrt(&mut self, a: Self::V) -> Self::V;
    fn ln(&mut self, a: Self::V) -> Self::V;
    fn tanh(&mut self, a: Self::V) -> Self::V;
    /// `tanh'(x) = 1 - tanh(x)^2`, given `t = tanh(x)`. A backend whose arithmetic is too
    /// narrow for the cancellation near saturation computes it from `x` instead.
    fn tanh_slope(&mut self, x: Self::V, t: Self::V) -> Self::V {
        let _ = x;
        let one = self.constant(1.0);
        let t2 = self.mul(t, t);
        self.sub(one, t2)
    }
    /// `a < b`; false when either is NaN.
    fn lt(&mut self, a: Self::V, b: Self::V) -> Self::C;
    /// `a <= b`; false when either is NaN.
    fn le(&mut self, a: Self::V, b: Self::V) -> Self::C;
    fn select(&mut self, c: Self::C, then: Self::V, otherwise: Self::V) -> Self::V;
}

/// Plain f64 arithmetic: running the sweeps on it computes numbers.
pub struct F64;

impl Arith for F64 {
    type V = f64;
    type C = bool;
    fn constant(&mut self, c: f64) -> f64 {
        c
    }
    fn add(&mut self, a: f64, b: f64) -> f64 {
        a + b
    }
    fn sub(&mut self, a: f64, b: f64) -> f64 {
        a - b
    }
    fn mul(&mut self, a: f64, b: f64) -> f64 {
        a * b
    }
    fn div(&mut self, a: f64, b: f64) -> f64 {
        a / b
    }
    fn neg(&mut self, a: f64) -> f64 {
        -a
    }
    fn abs(&mut self, a: f64) -> f64 {
        a.abs()
    }
    fn sqrt(&mut self, a: f64) -> f64 {
        a.sqrt()
    }
    fn ln(&mut self, a: f64) -> f64 {
        a.ln()
    }
    fn tanh(&mut self, a: f64) -> f64 {
        a.tanh()
    }
    fn lt(&mut self, a: f64, b: f64) -> bool {
        a < b
    }
    fn le(&mut self, a: f64, b: f64) -> bool {
        a <= b
    }
    fn select(&mut self, c: bool, then: f64, otherwise: f64) -> f64 {
        if c { then } else { otherwise }
    }
}

/// A value and its derivative with respect to `yhat`; `d == None` means exactly zero, which
/// keeps `y`-only subtrees free of derivative code.
#[derive(Clone, Copy)]
pub struct Dual<V> {
    pub v: V,
    pub d: Option<V>,
}

/// What one sweep computes for one element.
pub struct Outputs<V> {
    pub loss: V,
    /// `dM/dyhat`; `None` when it is exactly zero (no `yhat`, or not asked for).
    pub dyhat: Option<V>,
    /// `dM/dphi_j` and `d2M/(dyhat dphi_j)` for `j` in `0..n_weights`; `None` is exactly zero.
    /// Empty after [`Sweep::forward`].
    pub dphi: Vec<Option<V>>,
    pub d2: Vec<Option<V>>,
}

/// Scratch space for the sweeps, reused from one element to the next.
pub struct Sweep<V> {
    unweighted: Vec<Dual<V>>,
    fed: Vec<Dual<V>>,
    adj: Vec<Option<Dual<V>>>,
    out: Outputs<V>,
}

impl<V: Copy> Sweep<V> {
    pub fn new(zero: V) -> Sweep<V> {
        Sweep {
            unweighted: Vec::new(),
            fed: Vec::new(),
            adj: Vec::new(),
            out: Outputs {
                loss: zero,
                dyhat: None,
                dphi: Vec::new(),
                d2: Vec::new(),
            },
        }
    }

    /// Forward mode only: the loss, and `dM/dyhat` when `with_dyhat`. `weights` holds one value
    /// per node (the root's is ignored).
    pub fn forward<A: Arith<V = V>>(
        &mut self,
        a: &mut A,
        e: &LossExpr,
        y: V,
        yhat: V,
        weights: &[V],
        with_dyhat: bool,
    ) -> &Outputs<V> {
        self.forward_nodes(a, e, y, yhat, weights, with_dyhat);
        let root = self.unweighted[e.root().idx()];
        self.out.loss = root.v;
        self.out.dyhat = root.d;
        self.out.dphi.clear();
        self.out.d2.clear();
        &self.out
    }

    /// Everything: loss, `dM/dyhat`, `dM/dphi_j` and `d2M/(dyhat dphi_j)`.
    pub fn full<A: Arith<V = V>>(
        &mut self,
        a: &mut A,
        e: &LossExpr,
        y: V,
        yhat: V,
        weights: &[V],
    ) -> &Outputs<V> {
        self.forward_nodes(a, e, y, yhat, weights, true);
        let n = e.len();
        let root = n - 1;
        self.adj.clear();
        self.adj.resize(n, None);
        self.out.dphi.clear();
        self.out.dphi.resize(n - 1, None);
        self.out.d2.clear();
        self.out.d2.resize(n - 1, None);
        // Parents come after children, so a node's adjoint is complete when the reverse walk
        // reaches it. adj[i] = dM/d(value node i feeds its parent), a dual in yhat.
        for i in (0..n).rev() {
            // g = dM/d(unweighted output of node i).
            let g = if i == root {
                dconst(a, 1.0)
            } else {
                let Some(adj_i) = self.adj[i] else { continue };
                let dw = dmul(a, adj_i, self.unweighted[i]);
                self.out.dphi[i] = Some(dw.v);
                self.out.d2[i] = dw.d;
                dscale(a, adj_i, weights[i])
            };
            let node = e.nodes()[i];
            if node.op.is_terminal() {
                continue;
            }
            let (args, arity) = child_values(&self.fed, &node);
            let partials = local_partials(a, node.op, &args[..arity], self.unweighted[i]);
            for (c, p) in node.children().iter().zip(partials) {
                let Some(p) = p else { continue };
                let contrib = dmul(a, g, p);
                self.adj[c.idx()] = Some(match self.adj[c.idx()] {
                    Some(prev) => dadd(a, prev, contrib),
                    None => contrib,
                });
            }
        }
        let out = self.unweighted[root];
        self.out.loss = out.v;
        self.out.dyhat = out.d;
        &self.out
    }

    /// Every node's unweighted output and the value it feeds its parent (`weight * output`).
    fn forward_nodes<A: Arith<V = V>>(
        &mut self,
        a: &mut A,
        e: &LossExpr,
        y: V,
        yhat: V,
        weights: &[V],
        with_dyhat: bool,
    ) {
        let n = e.len();
        self.unweighted.clear();
        self.fed.clear();
        for (i, node) in e.nodes().iter().enumerate() {
            let u = match node.op {
                Op::Y => Dual { v: y, d: None },
                Op::Yhat => Dual {
                    v: yhat,
                    d: with_dyhat.then(|| a.constant(1.0)),
                },
                Op::One | Op::NegOne => dconst(a, node.op.constant().unwrap_or_default()),
                op => {
                    let (args, arity) = child_values(&self.fed, node);
                    op_value(a, op, &args[..arity])
                }
            };
            self.unweighted.push(u);
            let fed = if i + 1 == n {
                u
            } else {
                dscale(a, u, weights[i])
            };
            self.fed.push(fed);
        }
    }
}

/// The fed values of a unary or binary node's children, padded to two (the first `arity` count).
fn child_values<V: Copy>(fed: &[Dual<V>], node: &super::Node) -> ([Dual<V>; 2], usize) {
    match *node.children() {
        [a] => ([fed[a.idx()]; 2], 1),
        [a, b] => ([fed[a.idx()], fed[b.idx()]], 2),
        _ => unreachable!("only called for unary and binary nodes"),
    }
}

/// The value of a non-`y`/`yhat` operator on dual arguments.
fn op_value<A: Arith>(a: &mut A, op: Op, x: &[Dual<A::V>]) -> Dual<A::V> {
    match op {
        Op::Y | Op::Yhat | Op::One | Op::NegOne => {
            unreachable!("terminals are bound by the caller")
        }
        Op::Add => dadd(a, x[0], x[1]),
        Op::Sub => dsub(a, x[0], x[1]),
        Op::Mul => dmul(a, x[0], x[1]),
        Op::Aq => {
            let q = aq_denominator(a, x[1]);
            ddiv(a, x[0], q)
        }
        Op::Min => {
            // b < a -> b; a <= b (ties) -> a; unordered -> NaN.
            let b_wins = a.lt(x[1].v, x[0].v);
            let a_wins = a.le(x[0].v, x[1].v);
            let nan = nan_of(a, x[0], x[1]);
            let inner = dselect(a, a_wins, x[0], nan);
            dselect(a, b_wins, x[1], inner)
        }
        Op::Max => {
            // a < b -> b; b <= a (ties) -> a; unordered -> NaN.
            let b_wins = a.lt(x[0].v, x[1].v);
            let a_wins = a.le(x[1].v, x[0].v);
            let nan = nan_of(a, x[0], x[1]);
            let inner = dselect(a, a_wins, x[0], nan);
            dselect(a, b_wins, x[1], inner)
        }
        Op::Sign => Dual {
            v: sign(a, x[0].v),
            d: None,
        },
        Op::Square => dmul(a, x[0], x[0]),
        Op::Abs => {
            let s = sign(a, x[0].v);
            Dual {
                v: a.abs(x[0].v),
                d: x[0].d.map(|d| a.mul(d, s)),
            }
        }
        Op::Log => {
            let m = clamp_abs(a, x[0]);
            let v = a.ln(m.v);
            Dual {
                v,
                d: m.d.map(|d| a.div(d, m.v)),
            }
        }
        Op::Sqrt => {
            let m = clamp_abs(a, x[0]);
            dsqrt(a, m)
        }
        Op::Tanh => {
            let t = a.tanh(x[0].v);
            let d = x[0].d.map(|d| {
                let slope = a.tanh_slope(x[0].v, t);
                a.mul(d, slope)
            });
            Dual { v: t, d }
        }
    }
}

/// `d op / d arg_k` for each argument, as duals in yhat; `None` is exactly zero. `u` is the
/// operator's own (unweighted) output, reused where it appears in its derivative.
fn local_partials<A: Arith>(
    a: &mut A,
    op: Op,
    x: &[Dual<A::V>],
    u: Dual<A::V>,
) -> [Option<Dual<A::V>>; 2] {
    match op {
        Op::Y | Op::Yhat | Op::One | Op::NegOne => [None, None],
        Op::Add => [Some(dconst(a, 1.0)), Some(dconst(a, 1.0))],
        Op::Sub => [Some(dconst(a, 1.0)), Some(dconst(a, -1.0))],
        Op::Mul => [Some(x[1]), Some(x[0])],
        Op::Aq => {
            // u = a / q with q = sqrt(1 + b^2): du/da = 1/q, du/db = -u*b / q^2.
            let q = aq_denominator(a, x[1]);
            let one = dconst(a, 1.0);
            let da = ddiv(a, one, q);
            let ub = dmul(a, u, x[1]);
            let q2 = dmul(a, q, q);
            let ratio = ddiv(a, ub, q2);
            let db = dneg(a, ratio);
            [Some(da), Some(db)]
        }
        Op::Min | Op::Max => {
            let b_wins = if op == Op::Min {
                a.lt(x[1].v, x[0].v)
            } else {
                a.lt(x[0].v, x[1].v)
            };
            let zero = a.constant(0.0);
            let one = a.constant(1.0);
            let da = a.select(b_wins, zero, one);
            let db = a.select(b_wins, one, zero);
            [Some(Dual { v: da, d: None }), Some(Dual { v: db, d: None })]
        }
        Op::Sign => [None, None],
        Op::Square => {
            let two = a.constant(2.0);
            [Some(dscale(a, x[0], two)), None]
        }
        Op::Abs => [
            Some(Dual {
                v: sign(a, x[0].v),
                d: None,
            }),
            None,
        ],
        Op::Log => {
            // d ln|a| / da = 1/a where the clamp is inactive.
            let one = dconst(a, 1.0);
            let inv = ddiv(a, one, x[0]);
            [Some(unless_clamped(a, x[0], inv)), None]
        }
        Op::Sqrt => {
            // d sqrt|a| / da = sign(a) / (2 sqrt|a|) = (sign(a)/2) / u where the clamp is inactive.
            let s = sign(a, x[0].v);
            let half = a.constant(0.5);
            let num = Dual {
                v: a.mul(s, half),
                d: None,
            };
            let slope = ddiv(a, num, u);
            [Some(unless_clamped(a, x[0], slope)), None]
        }
        Op::Tanh => {
            // 1 - u^2, its value through `tanh_slope`.
            let u2 = dmul(a, u, u);
            let slope = Dual {
                v: a.tanh_slope(x[0].v, u.v),
                d: u2.d.map(|d| a.neg(d)),
            };
            [Some(slope), None]
        }
    }
}

/// `sign(x)`: 1, -1, or `x` itself for ±0 and NaN.
fn sign<A: Arith>(a: &mut A, x: A::V) -> A::V {
    let zero = a.constant(0.0);
    let one = a.constant(1.0);
    let minus_one = a.constant(-1.0);
    let pos = a.lt(zero, x);
    let neg = a.lt(x, zero);
    let inner = a.select(neg, minus_one, x);
    a.select(pos, one, inner)
}

/// `max(|x|, EPS)` as the protected operators see it: `EPS` (derivative 0) where `|x| < EPS`.
fn clamp_abs<A: Arith>(a: &mut A, x: Dual<A::V>) -> Dual<A::V> {
    let s = sign(a, x.v);
    let ax = Dual {
        v: a.abs(x.v),
        d: x.d.map(|d| a.mul(d, s)),
    };
    let eps = a.constant(PROTECT_EPS);
    let clamped = a.lt(ax.v, eps);
    let eps = Dual { v: eps, d: None };
    dselect(a, clamped, eps, ax)
}

/// `slope`, or exactly 0 where the protected clamp on `x` is active.
fn unless_clamped<A: Arith>(a: &mut A, x: Dual<A::V>, slope: Dual<A::V>) -> Dual<A::V> {
    let ax = a.abs(x.v);
    let eps = a.constant(PROTECT_EPS);
    let clamped = a.lt(ax, eps);
    let zero = dconst(a, 0.0);
    dselect(a, clamped, zero, slope)
}

/// `sqrt(1 + b^2)`, the analytic quotient's denominator.
fn aq_denominator<A: Arith>(a: &mut A, b: Dual<A::V>) -> Dual<A::V> {
    let one = dconst(a, 1.0);
    let b2 = dmul(a, b, b);
    let s = dadd(a, one, b2);
    dsqrt(a, s)
}

/// NaN when `min`/`max` compare unordered: `x + y` is NaN exactly then.
fn nan_of<A: Arith>(a: &mut A, x: Dual<A::V>, y: Dual<A::V>) -> Dual<A::V> {
    Dual {
        v: a.add(x.v, y.v),
        d: None,
    }
}

fn dconst<A: Arith>(a: &mut A, c: f64) -> Dual<A::V> {
    Dual {
        v: a.constant(c),
        d: None,
    }
}

fn dadd<A: Arith>(a: &mut A, x: Dual<A::V>, y: Dual<A::V>) -> Dual<A::V> {
    let v = a.add(x.v, y.v);
    let d = match (x.d, y.d) {
        (Some(p), Some(q)) => Some(a.add(p, q)),
        (p, None) => p,
        (None, q) => q,
    };
    Dual { v, d }
}

fn dsub<A: Arith>(a: &mut A, x: Dual<A::V>, y: Dual<A::V>) -> Dual<A::V> {
    let v = a.sub(x.v, y.v);
    let d = match (x.d, y.d) {
        (Some(p), Some(q)) => Some(a.sub(p, q)),
        (p, None) => p,
        (None, Some(q)) => Some(a.neg(q)),
    };
    Dual { v, d }
}

fn dneg<A: Arith>(a: &mut A, x: Dual<A::V>) -> Dual<A::V> {
    Dual {
        v: a.neg(x.v),
        d: x.d.map(|d| a.neg(d)),
    }
}

fn dmul<A: Arith>(a: &mut A, x: Dual<A::V>, y: Dual<A::V>) -> Dual<A::V> {
    let v = a.mul(x.v, y.v);
    let xd = x.d.map(|d| a.mul(d, y.v));
    let yd = y.d.map(|d| a.mul(x.v, d));
    let d = match (xd, yd) {
        (Some(p), Some(q)) => Some(a.add(p, q)),
        (p, None) => p,
        (None, q) => q,
    };
    Dual { v, d }
}

/// `x * w` for a `w` that does not depend on yhat.
fn dscale<A: Arith>(a: &mut A, x: Dual<A::V>, w: A::V) -> Dual<A::V> {
    Dual {
        v: a.mul(x.v, w),
        d: x.d.map(|d| a.mul(d, w)),
    }
}

fn ddiv<A: Arith>(a: &mut A, x: Dual<A::V>, y: Dual<A::V>) -> Dual<A::V> {
    let v = a.div(x.v, y.v);
    // (x/y)' = (x' - v y') / y
    let num = match (x.d, y.d) {
        (xd, None) => xd,
        (xd, Some(yd)) => {
            let vyd = a.mul(v, yd);
            Some(match xd {
                Some(xd) => a.sub(xd, vyd),
                None => a.neg(vyd),
            })
        }
    };
    Dual {
        v,
        d: num.map(|n| a.div(n, y.v)),
    }
}

fn dsqrt<A: Arith>(a: &mut A, x: Dual<A::V>) -> Dual<A::V> {
    let v = a.sqrt(x.v);
    let d = x.d.map(|d| {
        let two = a.constant(2.0);
        let den = a.mul(two, v);
        a.div(d, den)
    });
    Dual { v, d }
}

fn dselect<A: Arith>(a: &mut A, c: A::C, t: Dual<A::V>, f: Dual<A::V>) -> Dual<A::V> {
    let v = a.select(c, t.v, f.v);
    let d = match (t.d, f.d) {
        (None, None) => None,
        (td, fd) => {
            let zero = a.constant(0.0);
            let td = td.unwrap_or(zero);
            let fd = fd.unwrap_or(zero);
            Some(a.select(c, td, fd))
        }
    };
    Dual { v, d }
}
