//! [`Sequential`]: a stack of layers over one flat parameter vector and one flat state vector.
//! A residual block holds its body and shortcut as nested stacks; every pass recurses into
//! them, and one convolution workspace serves the whole model.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Layer, Mode, conv, dense, map, norm, pool, zip_map};
use crate::abi::*;
use crate::{Model, check_len, mix_seed as mix};

/// A stack of layers; owns the activations of the last forward pass.
pub struct Sequential {
    stack: Stack,
    /// The input of the last forward pass (backward and JVP start from it).
    x: Vec<f32>,
    ws: conv::Workspace,
    /// A copy of the state for JVP passes, which must not move the running statistics.
    state_copy: Vec<f32>,
}

/// What a layer keeps from a forward pass for backward and JVP.
enum Saved {
    None,
    Argmax(Vec<u32>),
    /// A convolution's column matrix, when the batch was one chunk.
    Cols(Vec<f32>),
    Norm(norm::Saved),
    /// Dropout's factors (0 or `1 / (1 - p)`); empty after an evaluation pass.
    Mask(Vec<f32>),
    Block(Box<Block>),
}

struct Block {
    body: Stack,
    /// `None`: the identity.
    shortcut: Option<Stack>,
}

struct Stack {
    layers: Vec<Layer>,
    /// Per-example feature count entering each layer, plus the output's.
    widths: Vec<usize>,
    /// Each layer's range in the parameter and in the state vector.
    params: Vec<std::ops::Range<usize>>,
    state: Vec<std::ops::Range<usize>>,
    /// A number per layer, unique in the whole model, that seeds its dropout masks.
    ids: Vec<u64>,
    /// Whether backward and JVP carry the input's gradient and tangent (nested stacks).
    nested: bool,
    batch: usize,
    mode: Mode,
    /// `acts[i]` is the output of layer `i`.
    acts: Vec<Vec<f32>>,
    saved: Vec<Saved>,
    /// Gradients in backward, tangents in JVP; the result ends in `scratch[0]`.
    scratch: [Vec<f32>; 2],
}

impl Stack {
    fn new(
        input_len: usize,
        layers: Vec<Layer>,
        nested: bool,
        next_id: &mut u64,
    ) -> Result<Stack, String> {
        let mut s = Stack {
            widths: vec![input_len],
            params: Vec::with_capacity(layers.len()),
            state: Vec::with_capacity(layers.len()),
            ids: Vec::with_capacity(layers.len()),
            nested,
            batch: 0,
            mode: Mode::Eval,
            acts: vec![Vec::new(); layers.len()],
            saved: Vec::with_capacity(layers.len()),
            scratch: [Vec::new(), Vec::new()],
            layers,
        };
        let (mut p, mut st) = (0, 0);
        for (i, l) in s.layers.iter().enumerate() {
            s.ids.push(*next_id);
            *next_id += 1;
            let w = s.widths[i];
            let (out, saved, np, ns) = match l {
                Layer::Residual { body, shortcut } => {
                    let block = residual(w, body, shortcut, next_id)
                        .map_err(|e| format!("layer {i}: residual block: {e}"))?;
                    let (np, ns) = block.sizes();
                    (block.body.out_len(), Saved::Block(Box::new(block)), np, ns)
                }
                _ => {
                    let out = l.output_len(w).map_err(|e| format!("layer {i}: {e}"))?;
                    let saved = match l {
                        Layer::MaxPool2d { .. } => Saved::Argmax(Vec::new()),
                        Layer::Conv2d { .. } => Saved::Cols(Vec::new()),
                        Layer::BatchNorm { .. } => Saved::Norm(norm::Saved::default()),
                        Layer::Dropout { .. } => Saved::Mask(Vec::new()),
                        _ => Saved::None,
                    };
                    (out, saved, l.own_params(), l.own_state())
                }
            };
            s.params.push(p..p + np);
            s.state.push(st..st + ns);
            s.saved.push(saved);
            s.widths.push(out);
            p += np;
            st += ns;
        }
        Ok(s)
    }

    fn n_params(&self) -> usize {
        self.params.last().map_or(0, |r| r.end)
    }

    fn n_state(&self) -> usize {
        self.state.last().map_or(0, |r| r.end)
    }

    fn out_len(&self) -> usize {
        *self.widths.last().expect("widths start with the input")
    }

    /// The output of the last forward pass (the input itself for an empty stack's caller).
    fn output(&self) -> &[f32] {
        self.acts.last().map_or(&[], |a| a)
    }

    fn init(&self, rng: &mut ChaCha8Rng, params: &mut [f32], state: &mut [f32]) {
        for (i, l) in self.layers.iter().enumerate() {
            let (p, st) = (
                &mut params[self.params[i].clone()],
                &mut state[self.state[i].clone()],
            );
            match &self.saved[i] {
                Saved::Block(b) => b.split(p, st, |stack, p, st| stack.init(rng, p, st)),
                _ => l.init(rng, p, st),
            }
        }
    }

    /// Runs the stack on `x`; `update` lets training passes move the running statistics.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        ws: &mut conv::Workspace,
        params: &[f32],
        state: &mut [f32],
        update: bool,
        x: &[f32],
        batch: usize,
        mode: Mode,
    ) {
        self.batch = batch;
        self.mode = mode;
        for i in 0..self.layers.len() {
            let (before, after) = self.acts.split_at_mut(i);
            let input = if i == 0 { x } else { &before[i - 1] };
            let out = &mut after[0];
            out.resize(batch * self.widths[i + 1], 0.0);
            let p = &params[self.params[i].clone()];
            let st = &mut state[self.state[i].clone()];
            match (&self.layers[i], &mut self.saved[i]) {
                (
                    &Layer::Dense {
                        inputs, outputs, ..
                    },
                    _,
                ) => dense::forward(p, input, batch, inputs, outputs, out),
                (l @ Layer::Conv2d { .. }, Saved::Cols(keep)) => {
                    conv::forward(p, input, conv_shape(l, batch), ws, keep, out)
                }
                (&Layer::MaxPool2d { geom, size }, Saved::Argmax(am)) => {
                    pool::max_pool(input, geom, size, am, out)
                }
                (&Layer::AvgPool2d { geom, size }, _) => pool::avg_pool(input, geom, size, out),
                (&Layer::GlobalAvgPool { geom }, _) => pool::global_avg(input, geom, out),
                (l @ Layer::BatchNorm { .. }, Saved::Norm(saved)) => {
                    let stats = match mode {
                        Mode::Train { .. } => norm::Stats::Batch { update },
                        Mode::Eval => norm::Stats::Running,
                    };
                    norm::forward(p, st, input, norm_shape(l, batch), stats, saved, out)
                }
                (&Layer::Dropout { p: rate }, Saved::Mask(mask)) => match mode {
                    Mode::Train { seed } => {
                        dropout_mask(rate, mix(seed, self.ids[i]), input.len(), mask);
                        zip_map(input, mask, out, |v, m| v * m);
                    }
                    Mode::Eval => {
                        mask.clear();
                        out.copy_from_slice(input);
                    }
                },
                (Layer::Residual { .. }, Saved::Block(b)) => {
                    let Block { body, shortcut } = &mut **b;
                    let (pb, ps) = p.split_at(body.n_params());
                    let (sb, ss) = st.split_at_mut(body.n_state());
                    body.forward(ws, pb, sb, update, input, batch, mode);
                    let skip = match shortcut {
                        Some(sc) => {
                            sc.forward(ws, ps, ss, update, input, batch, mode);
                            sc.output()
                        }
                        None => input,
                    };
                    zip_map(body.output(), skip, out, |a, b| a + b);
                }
                (Layer::Relu, _) => map(input, out, |v| v.max(0.0)),
                (Layer::Tanh, _) => map(input, out, super::tanh),
                (Layer::Sigmoid, _) => map(input, out, |v| 1.0 / (1.0 + (-v).exp())),
                (Layer::Flatten, _) => out.copy_from_slice(input),
                (l, _) => unreachable!("layer {l:?} built without its saved state"),
            }
        }
    }

    /// `grad = J^T dout` for the last forward pass on `x`; a nested stack also leaves the
    /// input's gradient in `scratch[0]`.
    fn backward(
        &mut self,
        ws: &mut conv::Workspace,
        params: &[f32],
        x: &[f32],
        dout: &[f32],
        grad: &mut [f32],
    ) {
        let batch = self.batch;
        let Stack {
            layers,
            widths,
            acts,
            saved,
            scratch: [g, g_in],
            ..
        } = self;
        g.clear();
        g.extend_from_slice(dout);
        for i in (0..layers.len()).rev() {
            let input = if i == 0 { x } else { &acts[i - 1][..] };
            let output = &acts[i];
            // The top stack's input is data: its gradient is never needed.
            let want_in = i > 0 || self.nested;
            g_in.resize(batch * widths[i], 0.0);
            let p = &params[self.params[i].clone()];
            let grad = &mut grad[self.params[i].clone()];
            let gi = want_in.then_some(&mut g_in[..]);
            match (&layers[i], &mut saved[i]) {
                (
                    &Layer::Dense {
                        inputs, outputs, ..
                    },
                    _,
                ) => dense::backward(p, input, g, batch, inputs, outputs, grad, gi),
                (l @ Layer::Conv2d { .. }, Saved::Cols(kept)) => {
                    conv::backward(p, input, g, conv_shape(l, batch), ws, kept, grad, gi)
                }
                (&Layer::MaxPool2d { geom, size }, Saved::Argmax(am)) => {
                    pool::max_pool_backward(g, am, geom, size, g_in)
                }
                (&Layer::AvgPool2d { geom, size }, _) => {
                    pool::avg_pool_backward(g, geom, size, g_in)
                }
                (&Layer::GlobalAvgPool { geom }, _) => pool::global_avg_backward(g, geom, g_in),
                (l @ Layer::BatchNorm { .. }, Saved::Norm(s)) => {
                    norm::backward(p, g, norm_shape(l, batch), s, grad, gi)
                }
                (Layer::Dropout { .. }, Saved::Mask(mask)) => masked(g, mask, g_in),
                (Layer::Residual { .. }, Saved::Block(b)) => {
                    let Block { body, shortcut } = &mut **b;
                    let (pb, ps) = p.split_at(body.n_params());
                    let (gb, gs) = grad.split_at_mut(body.n_params());
                    body.backward(ws, pb, input, g, gb);
                    let skip = match shortcut {
                        Some(sc) => {
                            sc.backward(ws, ps, input, g, gs);
                            &sc.scratch[0][..]
                        }
                        None => &g[..],
                    };
                    zip_map(&body.scratch[0], skip, g_in, |a, b| a + b);
                }
                (Layer::Relu, _) => zip_map(g, input, g_in, |g, x| if x > 0.0 { g } else { 0.0 }),
                (Layer::Tanh, _) => zip_map(g, output, g_in, |g, y| g * (1.0 - y * y)),
                (Layer::Sigmoid, _) => zip_map(g, output, g_in, |g, y| g * y * (1.0 - y)),
                (Layer::Flatten, _) => g_in.copy_from_slice(g),
                (l, _) => unreachable!("layer {l:?} built without its saved state"),
            }
            std::mem::swap(g, g_in);
        }
    }

    /// `J tangent` for the last forward pass on `x` (whose own tangent is `t_x`, zero when
    /// `None`); the result ends in `scratch[0]`.
    fn jvp(
        &mut self,
        ws: &mut conv::Workspace,
        params: &[f32],
        tangent: &[f32],
        x: &[f32],
        t_x: Option<&[f32]>,
    ) {
        let batch = self.batch;
        let Stack {
            layers,
            widths,
            acts,
            saved,
            scratch: [t, t_out],
            ..
        } = self;
        t.clear();
        if let Some(tx) = t_x {
            t.extend_from_slice(tx);
        }
        // Until the first layer with parameters, the tangent is zero: `None` skips the work.
        let mut zero = t_x.is_none();
        for i in 0..layers.len() {
            let input = if i == 0 { x } else { &acts[i - 1][..] };
            let output = &acts[i];
            t_out.resize(batch * widths[i + 1], 0.0);
            let p = &params[self.params[i].clone()];
            let tp = &tangent[self.params[i].clone()];
            let t_in = (!zero).then_some(&t[..]);
            match (&layers[i], &mut saved[i]) {
                (
                    &Layer::Dense {
                        inputs, outputs, ..
                    },
                    _,
                ) => dense::jvp(p, tp, input, t_in, batch, inputs, outputs, t_out),
                (l @ Layer::Conv2d { .. }, Saved::Cols(kept)) => {
                    conv::jvp(p, tp, input, t_in, conv_shape(l, batch), ws, kept, t_out)
                }
                (l @ Layer::BatchNorm { .. }, Saved::Norm(s)) => {
                    norm::jvp(p, tp, t_in, norm_shape(l, batch), s, t_out)
                }
                (Layer::Residual { .. }, Saved::Block(b)) => {
                    let Block { body, shortcut } = &mut **b;
                    let (pb, ps) = p.split_at(body.n_params());
                    let (tb, ts) = tp.split_at(body.n_params());
                    body.jvp(ws, pb, tb, input, t_in);
                    let skip = match shortcut {
                        Some(sc) => {
                            sc.jvp(ws, ps, ts, input, t_in);
                            Some(&sc.scratch[0][..])
                        }
                        None => t_in,
                    };
                    match skip {
                        Some(skip) => zip_map(&body.scratch[0], skip, t_out, |a, b| a + b),
                        None => t_out.copy_from_slice(&body.scratch[0]),
                    }
                }
                // Layers without parameters map a zero tangent to zero.
                _ if zero => {}
                (Layer::MaxPool2d { .. }, Saved::Argmax(am)) => pool::max_pool_jvp(t, am, t_out),
                (&Layer::AvgPool2d { geom, size }, _) => pool::avg_pool(t, geom, size, t_out),
                (&Layer::GlobalAvgPool { geom }, _) => pool::global_avg(t, geom, t_out),
                (Layer::Dropout { .. }, Saved::Mask(mask)) => masked(t, mask, t_out),
                (Layer::Relu, _) => zip_map(t, input, t_out, |t, x| if x > 0.0 { t } else { 0.0 }),
                (Layer::Tanh, _) => zip_map(t, output, t_out, |t, y| t * (1.0 - y * y)),
                (Layer::Sigmoid, _) => zip_map(t, output, t_out, |t, y| t * y * (1.0 - y)),
                (Layer::Flatten, _) => t_out.copy_from_slice(t),
                (l, _) => unreachable!("layer {l:?} built without its saved state"),
            }
            if zero && self.params[i].is_empty() {
                continue;
            }
            zero = false;
            std::mem::swap(t, t_out);
        }
        if zero {
            t.clear();
            t.resize(batch * widths[layers.len()], 0.0);
        }
    }

    /// Appends the descriptions of this stack's layers, its parameters starting at `offset` and
    /// its state at `state` in the model's vectors.
    fn descs(&self, offset: u64, state: u64, out: &mut Vec<LayerDesc>) {
        for (i, l) in self.layers.iter().enumerate() {
            let mut d = LayerDesc {
                kind: match l {
                    Layer::Dense { .. } => LAYER_DENSE,
                    Layer::Relu => LAYER_RELU,
                    Layer::Tanh => LAYER_TANH,
                    Layer::Sigmoid => LAYER_SIGMOID,
                    Layer::Flatten => LAYER_FLATTEN,
                    Layer::Conv2d { .. } => LAYER_CONV2D,
                    Layer::MaxPool2d { .. } => LAYER_MAX_POOL,
                    Layer::AvgPool2d { .. } => LAYER_AVG_POOL,
                    Layer::GlobalAvgPool { .. } => LAYER_GLOBAL_AVG_POOL,
                    Layer::BatchNorm { .. } => LAYER_BATCH_NORM,
                    Layer::Dropout { .. } => LAYER_DROPOUT,
                    Layer::Residual { .. } => LAYER_RESIDUAL,
                },
                inputs: self.widths[i] as u32,
                outputs: self.widths[i + 1] as u32,
                param_offset: offset + self.params[i].start as u64,
                state_offset: state + self.state[i].start as u64,
                ..LayerDesc::default()
            };
            if let Some(g) = l.geom() {
                (d.channels, d.height, d.width) = (g.c as u32, g.h as u32, g.w as u32);
            }
            match *l {
                Layer::Conv2d {
                    c_out,
                    k,
                    stride,
                    pad,
                    bias,
                    ..
                } => {
                    (d.out_channels, d.kernel, d.stride) = (c_out as u32, k as u32, stride as u32);
                    (d.padding, d.bias) = (pad as u32, bias as u32);
                }
                Layer::MaxPool2d { size, .. } | Layer::AvgPool2d { size, .. } => {
                    (d.kernel, d.stride) = (size as u32, size as u32);
                }
                Layer::Dropout { p } => (d.id, d.rate) = (self.ids[i] as u32, p),
                _ => {}
            }
            out.push(d);
            if let Saved::Block(b) = &self.saved[i] {
                let at = out.len() - 1;
                b.body.descs(d.param_offset, d.state_offset, out);
                out[at].body = (out.len() - at - 1) as u32;
                if let Some(sc) = &b.shortcut {
                    let (p, s) = (b.body.n_params() as u64, b.body.n_state() as u64);
                    sc.descs(d.param_offset + p, d.state_offset + s, out);
                    out[at].shortcut = (out.len() - at - 1) as u32 - out[at].body;
                }
            }
        }
    }
}

impl Block {
    fn sizes(&self) -> (usize, usize) {
        let sc = self.shortcut.as_ref();
        (
            self.body.n_params() + sc.map_or(0, Stack::n_params),
            self.body.n_state() + sc.map_or(0, Stack::n_state),
        )
    }

    /// Calls `f` on the body and the shortcut with their parts of `params` and `state`.
    fn split(
        &self,
        params: &mut [f32],
        state: &mut [f32],
        mut f: impl FnMut(&Stack, &mut [f32], &mut [f32]),
    ) {
        let (pb, ps) = params.split_at_mut(self.body.n_params());
        let (sb, ss) = state.split_at_mut(self.body.n_state());
        f(&self.body, pb, sb);
        if let Some(sc) = &self.shortcut {
            f(sc, ps, ss);
        }
    }
}

fn residual(
    width: usize,
    body: &[Layer],
    shortcut: &[Layer],
    next_id: &mut u64,
) -> Result<Block, String> {
    if body.is_empty() {
        return Err("the body has no layers".into());
    }
    let body = Stack::new(width, body.to_vec(), true, next_id).map_err(|e| format!("body: {e}"))?;
    let shortcut = if shortcut.is_empty() {
        None
    } else {
        Some(
            Stack::new(width, shortcut.to_vec(), true, next_id)
                .map_err(|e| format!("shortcut: {e}"))?,
        )
    };
    let skip = shortcut.as_ref().map_or(width, Stack::out_len);
    if body.out_len() != skip {
        return Err(format!(
            "the body gives {} features per example, the shortcut {skip}",
            body.out_len()
        ));
    }
    Ok(Block { body, shortcut })
}

fn conv_shape(l: &Layer, batch: usize) -> conv::Shape {
    let &Layer::Conv2d {
        geom,
        c_out,
        k,
        stride,
        pad,
        bias,
        ..
    } = l
    else {
        unreachable!("conv_shape of a {l:?}")
    };
    conv::Shape {
        batch,
        geom,
        c_out,
        k,
        stride,
        pad,
        bias,
    }
}

fn norm_shape(l: &Layer, batch: usize) -> norm::Shape {
    let &Layer::BatchNorm { geom } = l else {
        unreachable!("norm_shape of a {l:?}")
    };
    norm::Shape {
        batch,
        c: geom.c,
        hw: geom.h * geom.w,
    }
}

/// `out = a * mask`, or a copy when the mask is empty (an evaluation pass).
fn masked(a: &[f32], mask: &[f32], out: &mut [f32]) {
    if mask.is_empty() {
        out.copy_from_slice(a);
    } else {
        zip_map(a, mask, out, |v, m| v * m);
    }
}

fn dropout_mask(p: f32, seed: u64, n: usize, mask: &mut Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keep = 1.0 / (1.0 - p);
    mask.clear();
    mask.extend((0..n).map(|_| if rng.random::<f32>() < p { 0.0 } else { keep }));
}

impl Sequential {
    /// A model for examples of `input_len` floats.
    pub fn new(input_len: usize, layers: Vec<Layer>) -> Result<Sequential, String> {
        if layers.is_empty() {
            return Err("a model needs at least one layer".into());
        }
        Ok(Sequential {
            stack: Stack::new(input_len, layers, false, &mut 0)?,
            x: Vec::new(),
            ws: conv::Workspace::default(),
            state_copy: Vec::new(),
        })
    }

    /// A multi-layer perceptron `input -> hidden... -> outputs` with `activation` between dense
    /// layers, Xavier-uniform initialised (the EvoMAL reference setting).
    pub fn mlp(
        input_len: usize,
        hidden: &[usize],
        outputs: usize,
        activation: Layer,
    ) -> Result<Sequential, String> {
        let mut b = super::Builder::new(input_len, 1, 1);
        for &h in hidden {
            b = b.dense(h).push(activation.clone());
        }
        b.dense(outputs).build()
    }

    /// The parameters of layer `i` within a flat vector.
    pub fn layer_params<'a>(&self, i: usize, params: &'a [f32]) -> &'a [f32] {
        &params[self.stack.params[i].clone()]
    }
}

impl Model for Sequential {
    fn n_params(&self) -> usize {
        self.stack.n_params()
    }

    fn n_state(&self) -> usize {
        self.stack.n_state()
    }

    fn input_len(&self) -> usize {
        self.stack.widths[0]
    }

    fn n_outputs(&self) -> usize {
        self.stack.out_len()
    }

    fn has_jvp(&self) -> bool {
        true
    }

    fn layers(&self) -> Vec<LayerDesc> {
        let mut out = Vec::new();
        self.stack.descs(0, 0, &mut out);
        out
    }

    fn init(&self, seed: u64, params: &mut [f32], state: &mut [f32]) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        params.fill(0.0);
        self.stack.init(&mut rng, params, state);
    }

    fn forward(
        &mut self,
        params: &[f32],
        state: &mut [f32],
        x: &[f32],
        batch: usize,
        mode: Mode,
        out: &mut [f32],
    ) -> Result<(), String> {
        check_len("state", state.len(), self.n_state())?;
        self.x.clear();
        self.x.extend_from_slice(x);
        let train = matches!(mode, Mode::Train { .. });
        let Sequential { stack, x, ws, .. } = self;
        stack.forward(ws, params, state, train, x, batch, mode);
        out.copy_from_slice(stack.output());
        Ok(())
    }

    fn backward(&mut self, params: &[f32], dout: &[f32], grad: &mut [f32]) -> Result<(), String> {
        let want = self.stack.batch * self.n_outputs();
        if dout.len() != want {
            return Err(format!(
                "`dout` has {} floats, expected {want} (backward follows the last forward's batch of {})",
                dout.len(),
                self.stack.batch
            ));
        }
        let Sequential { stack, x, ws, .. } = self;
        stack.backward(ws, params, x, dout, grad);
        Ok(())
    }

    fn jvp(
        &mut self,
        params: &[f32],
        state: &[f32],
        x: &[f32],
        batch: usize,
        mode: Mode,
        tangent: &[f32],
        out: &mut [f32],
    ) -> Result<(), String> {
        check_len("state", state.len(), self.n_state())?;
        self.x.clear();
        self.x.extend_from_slice(x);
        self.state_copy.clear();
        self.state_copy.extend_from_slice(state);
        let Sequential {
            stack,
            x,
            ws,
            state_copy,
        } = self;
        stack.forward(ws, params, state_copy, false, x, batch, mode);
        stack.jvp(ws, params, tangent, x, None);
        out.copy_from_slice(&stack.scratch[0]);
        Ok(())
    }
}
