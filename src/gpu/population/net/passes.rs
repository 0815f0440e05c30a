//! The passes over a [`Net`] as recorded dispatches: forward (gather, then every node),
//! backward (every node in reverse, into the parameter gradient) and forward mode (the outputs'
//! derivative in a parameter direction, for the local search's JVP).

use super::{Net, Node, Pass, Source, matrix};
use crate::gpu::population::kernels::{Dims, Gemm, Op, Strides};
use crate::gpu::population::layers::{GpuLayer, ImageOp};

impl Net<'_> {
    /// Gathers `rows` rows into the batch, then runs every layer forward at `params`.
    pub fn forward(
        &self,
        rows: usize,
        source: Source<'_>,
        params: &wgpu::Buffer,
        pass: Pass,
    ) -> Vec<Op> {
        let (gpu, k) = (self.gpu, self.kernels);
        let (input_len, target_width) = (self.values[0].width, self.target_width);
        let gather = Dims {
            p: self.p as u32,
            rows: rows as u32,
            a: input_len as u32,
            b: target_width as u32,
            kind: self.own_batches as u32,
            image: source.crops.map(|c| c.image).unwrap_or_default(),
            coded: source.coded as u32,
            ..Dims::default()
        };
        let sets = if self.own_batches { self.p } else { 1 };
        let Source {
            xs,
            ys,
            coded: _,
            idx,
            counter,
            crops,
        } = source;
        // Without crops the kernel reads no words: any buffer binds.
        let words = crops.map_or(idx, |c| c.words);
        let mut ops = vec![Op::new(
            gpu,
            &k.gather,
            &[xs, ys, idx, counter, words, &self.x, &self.y],
            Some(&gather),
            sets * rows * input_len.max(target_width),
        )];
        for node in &self.nodes {
            let &Node::Layer {
                layer,
                input,
                output,
                slot,
            } = node
            else {
                if let &Node::Add { a, b, output } = node {
                    let (x, y) = (self.act(a), self.act(b));
                    let stride = self.stride(b, rows);
                    ops.push(self.combine(0, x, y, self.act(output), output, stride, rows));
                }
                continue;
            };
            let d = self.dims(layer, input, output, rows);
            let n = self.p * rows * d.b as usize;
            let (x, out) = (self.act(input), self.act(output));
            let op =
                |pipeline, buffers: &[&wgpu::Buffer]| Op::new(gpu, pipeline, buffers, Some(&d), n);
            match *layer {
                GpuLayer::Dense {
                    inputs,
                    outputs,
                    offset,
                } => {
                    let g = self.dense_product(offset, inputs, outputs, rows, d.in_stride);
                    ops.push(self.gemm(g, [x, params, params, out]));
                }
                GpuLayer::Activation { .. } => ops.push(op(&k.activation_forward, &[x, out])),
                GpuLayer::Dropout { .. } => {
                    let d = self.dropout_dims(d, slot, pass == Pass::Eval);
                    let bufs = [x, &self.keys, &self.counter, out];
                    ops.push(Op::new(gpu, &k.dropout, &bufs, Some(&d), n));
                }
                GpuLayer::Image {
                    op: kind, image, ..
                } => match kind {
                    ImageOp::Conv => {
                        let d = Dims { kind: 2, ..d };
                        ops.push(self.conv_gemm(&d, &image, [x, params, params, out]));
                    }
                    ImageOp::Pool { .. } => ops.push(op(&k.pool_forward, &[x, x, out])),
                    ImageOp::Norm => {
                        let stats = &self.norms[slot.expect("a batch norm's buffers")].0;
                        let sd = Dims {
                            kind: pass as u32,
                            ..d
                        };
                        let bufs = [x, &self.state, stats];
                        ops.push(self.per_channel(&k.norm_stats, &bufs, &sd));
                        ops.push(op(&k.norm_forward, &[x, params, stats, out]));
                    }
                },
                GpuLayer::Flatten | GpuLayer::Residual { .. } => {}
            }
        }
        ops
    }

    /// Every layer backward at `params` from `output_grad` over `rows` rows (after a training
    /// forward pass), into `grad`.
    pub fn backward(&self, rows: usize, params: &wgpu::Buffer) -> Vec<Op> {
        let (gpu, k) = (self.gpu, self.kernels);
        let mut ops = Vec::new();
        for node in self.nodes.iter().rev() {
            let (layer, input, output, slot) = match *node {
                Node::Layer {
                    layer,
                    input,
                    output,
                    slot,
                } => (layer, input, output, slot),
                Node::Fork { input, left, right } => {
                    if !self.constant(input) {
                        let (l, r) = (self.grad_of(left), self.grad_of(right));
                        let full = self.full(input, rows);
                        ops.push(self.combine(0, l, r, self.grad_of(input), input, full, rows));
                    }
                    continue;
                }
                Node::Add { a, b, output } => {
                    for branch in [a, b] {
                        if !self.constant(branch) {
                            let g = self.grad_of(output);
                            ops.push(self.combine(1, g, g, self.grad_of(branch), output, 0, rows));
                        }
                    }
                    continue;
                }
            };
            if self.constant(output) {
                continue;
            }
            let d = self.dims(layer, input, output, rows);
            let (x, g_out) = (self.act(input), self.grad_of(output));
            let g_in = (!self.constant(input)).then(|| self.grad_of(input));
            let per_input = self.p * rows * d.a as usize;
            let op = |pipeline, buffers: &[&wgpu::Buffer], n| {
                Op::new(gpu, pipeline, buffers, Some(&d), n)
            };
            match *layer {
                GpuLayer::Dense {
                    inputs,
                    outputs,
                    offset,
                } => {
                    let r = rows as u32;
                    let per_out = matrix(r * outputs, outputs);
                    let (grad_w, _) = self.weights(offset, inputs, outputs, false);
                    let dw = Gemm {
                        m: inputs,
                        n: outputs,
                        k: r,
                        // x^T: the columns of the layer's input.
                        a: Strides {
                            off: 0,
                            batch: d.in_stride,
                            row: 1,
                            col: inputs,
                        },
                        b: per_out,
                        c: grad_w,
                        ..Gemm::default()
                    };
                    ops.push(self.gemm(dw, [x, g_out, g_out, &self.grad]));
                    let n = self.p * outputs as usize;
                    ops.push(op(&k.dense_grad_bias, &[g_out, &self.grad], n));
                    if let Some(g_in) = g_in {
                        let (w_t, _) = self.weights(offset, inputs, outputs, true);
                        let dx = Gemm {
                            m: r,
                            n: inputs,
                            k: outputs,
                            a: per_out,
                            b: w_t,
                            c: matrix(r * inputs, inputs),
                            ..Gemm::default()
                        };
                        ops.push(self.gemm(dx, [g_out, params, params, g_in]));
                    }
                }
                GpuLayer::Activation { .. } => {
                    if let Some(g_in) = g_in {
                        let y = self.act(output);
                        ops.push(op(&k.activation_backward, &[y, g_out, g_in], per_input));
                    }
                }
                GpuLayer::Dropout { .. } => {
                    if let Some(g_in) = g_in {
                        let d = Dims {
                            in_stride: self.full(output, rows),
                            ..self.dropout_dims(d, slot, false)
                        };
                        let bufs = [g_out, &self.keys, &self.counter, g_in];
                        ops.push(Op::new(gpu, &k.dropout, &bufs, Some(&d), per_input));
                    }
                }
                GpuLayer::Image {
                    op: kind, image, ..
                } => match kind {
                    ImageOp::Conv => {
                        ops.extend(self.conv_grad_params(&d, &image, [x, g_out]));
                        if let Some(g_in) = g_in {
                            ops.push(self.conv_grad_input(&d, &image, [g_out, params, g_in]));
                        }
                    }
                    ImageOp::Pool { .. } => {
                        if let Some(g_in) = g_in {
                            ops.push(op(&k.pool_backward, &[x, g_out, g_in], per_input));
                        }
                    }
                    ImageOp::Norm => {
                        let (stats, red) = &self.norms[slot.expect("a batch norm's buffers")];
                        let channels = self.p * image.c as usize;
                        ops.push(self.per_channel(&k.norm_reduce, &[x, g_out, stats, red], &d));
                        ops.push(op(&k.norm_grad_params, &[red, &self.grad], 2 * channels));
                        if let Some(g_in) = g_in {
                            let bufs = [x, g_out, params, stats, red, g_in];
                            ops.push(op(&k.norm_grad_input, &bufs, per_input));
                        }
                    }
                },
                GpuLayer::Flatten | GpuLayer::Residual { .. } => {}
            }
        }
        ops
    }

    /// The forward-mode derivative of the outputs at `params` in the direction `tangent` (a
    /// parameter-shaped buffer), after a training forward pass over the same `rows`: ends in
    /// `output_grad`, the value tangents reusing the gradient buffers. Values computed from the
    /// data alone have no tangent.
    pub fn jvp(&self, rows: usize, params: &wgpu::Buffer, tangent: &wgpu::Buffer) -> Vec<Op> {
        let (gpu, k) = (self.gpu, self.kernels);
        let mut ops = Vec::new();
        for node in &self.nodes {
            let (layer, input, output, slot) = match *node {
                Node::Layer {
                    layer,
                    input,
                    output,
                    slot,
                } => (layer, input, output, slot),
                Node::Fork { input, left, right } => {
                    if !self.constant(input) {
                        let t = self.grad_of(input);
                        for branch in [left, right] {
                            ops.push(self.combine(1, t, t, self.grad_of(branch), input, 0, rows));
                        }
                    }
                    continue;
                }
                Node::Add { a, b, output } => {
                    let t_out = match self.values[output].grad {
                        Some(_) => self.grad_of(output),
                        None => continue,
                    };
                    let full = self.full(output, rows);
                    ops.push(match (self.constant(a), self.constant(b)) {
                        (false, false) => {
                            let (ta, tb) = (self.grad_of(a), self.grad_of(b));
                            self.combine(0, ta, tb, t_out, output, full, rows)
                        }
                        (false, true) => {
                            let ta = self.grad_of(a);
                            self.combine(1, ta, ta, t_out, output, 0, rows)
                        }
                        _ => {
                            let tb = self.grad_of(b);
                            self.combine(1, tb, tb, t_out, output, 0, rows)
                        }
                    });
                    continue;
                }
            };
            if self.constant(output) {
                continue;
            }
            let data = self.constant(input);
            let d = Dims {
                kind: data as u32,
                ..self.dims(layer, input, output, rows)
            };
            let n = self.p * rows * d.b as usize;
            let (x, t_out) = (self.act(input), self.grad_of(output));
            // Data has no tangent: any buffer stands in for it, unread.
            let t_in = if data { &self.x } else { self.grad_of(input) };
            let op = |pipeline, buffers: &[&wgpu::Buffer], d: &Dims| {
                Op::new(gpu, pipeline, buffers, Some(d), n)
            };
            let plain = self.dims(layer, input, output, rows);
            match *layer {
                GpuLayer::Dense {
                    inputs,
                    outputs,
                    offset,
                } => {
                    // t_out = tb + x tW (+ t_in W).
                    let g = self.dense_product(offset, inputs, outputs, rows, d.in_stride);
                    ops.push(self.gemm(g, [x, tangent, tangent, t_out]));
                    if !data {
                        let a = matrix(rows as u32 * inputs, inputs);
                        let g = Gemm { mode: 1, a, ..g };
                        ops.push(self.gemm(g, [t_in, params, params, t_out]));
                    }
                }
                GpuLayer::Activation { .. } => {
                    let y = self.act(output);
                    ops.push(op(&k.activation_backward, &[y, t_in, t_out], &plain));
                }
                GpuLayer::Dropout { .. } => {
                    let d = Dims {
                        in_stride: self.full(input, rows),
                        ..self.dropout_dims(plain, slot, false)
                    };
                    let bufs = [t_in, &self.keys, &self.counter, t_out];
                    ops.push(op(&k.dropout, &bufs, &d));
                }
                GpuLayer::Image {
                    op: kind, image, ..
                } => match kind {
                    ImageOp::Conv => {
                        // t_out = conv(x; tW) + tb (+ conv(t_in; W)).
                        let with_bias = Dims { kind: 2, ..plain };
                        let bufs = [x, tangent, tangent, t_out];
                        ops.push(self.conv_gemm(&with_bias, &image, bufs));
                        if !data {
                            let t = Dims {
                                kind: 1,
                                in_stride: self.full(input, rows),
                                ..plain
                            };
                            ops.push(self.conv_gemm(&t, &image, [t_in, params, params, t_out]));
                        }
                    }
                    ImageOp::Pool { .. } => {
                        ops.push(op(&k.pool_forward, &[x, t_in, t_out], &plain))
                    }
                    ImageOp::Norm => {
                        let (stats, red) = &self.norms[slot.expect("a batch norm's buffers")];
                        if !data {
                            let bufs = [x, t_in, stats, red];
                            ops.push(self.per_channel(&k.norm_reduce, &bufs, &d));
                        }
                        let bufs = [x, t_in, params, tangent, stats, red, t_out];
                        ops.push(op(&k.norm_jvp, &bufs, &d));
                    }
                },
                GpuLayer::Flatten | GpuLayer::Residual { .. } => {}
            }
        }
        ops
    }
}
