//! [`Builder`]: assembles a [`Sequential`] while tracking the activation shape.

use super::{Geom, Init, Layer, Sequential, conv_out};

/// Builds a [`Sequential`] while tracking the shape, so spatial layers need no hand-computed
/// geometry: `Builder::new(1, 28, 28).conv(6, 5, 2).tanh().avg_pool(2).flatten().dense(10)`.
/// A residual block is built from the current shape by closures:
/// `b.residual(|b| b.conv(16, 3, 1).relu().conv(16, 3, 1))`.
pub struct Builder {
    input_len: usize,
    shape: Geom,
    layers: Vec<Layer>,
    init: Init,
}

impl Builder {
    pub fn new(c: usize, h: usize, w: usize) -> Builder {
        Builder {
            input_len: c * h * w,
            shape: Geom { c, h, w },
            layers: Vec::new(),
            init: Init::XavierUniform,
        }
    }

    /// The initialisation of the weight layers added from here on.
    pub fn init(mut self, init: Init) -> Builder {
        self.init = init;
        self
    }

    /// A stride-1 convolution with a bias.
    pub fn conv(self, c_out: usize, k: usize, pad: usize) -> Builder {
        self.conv2d(c_out, k, 1, pad, true)
    }

    /// A convolution with every setting; `bias = false` before a batch norm, as ResNets do.
    pub fn conv2d(
        mut self,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> Builder {
        let geom = self.shape;
        let (h, w) = conv_out(geom, k, stride, pad).unwrap_or((0, 0));
        self.layers.push(Layer::Conv2d {
            geom,
            c_out,
            k,
            stride,
            pad,
            bias,
            init: self.init,
        });
        self.shape = Geom { c: c_out, h, w };
        self
    }

    pub fn max_pool(mut self, size: usize) -> Builder {
        self.layers.push(Layer::MaxPool2d {
            geom: self.shape,
            size,
        });
        self.shape = self.pooled(size);
        self
    }

    pub fn avg_pool(mut self, size: usize) -> Builder {
        self.layers.push(Layer::AvgPool2d {
            geom: self.shape,
            size,
        });
        self.shape = self.pooled(size);
        self
    }

    fn pooled(&self, size: usize) -> Geom {
        let g = self.shape;
        Geom {
            c: g.c,
            h: g.h / size.max(1),
            w: g.w / size.max(1),
        }
    }

    /// The mean of each channel: `[c, h, w] -> [c]`.
    pub fn global_avg_pool(mut self) -> Builder {
        self.layers.push(Layer::GlobalAvgPool { geom: self.shape });
        self.shape = flat(self.shape.c);
        self
    }

    /// Batch normalisation over the current channels (or features, after `flatten`).
    pub fn batch_norm(mut self) -> Builder {
        self.layers.push(Layer::BatchNorm { geom: self.shape });
        self
    }

    pub fn dropout(self, p: f32) -> Builder {
        self.push(Layer::Dropout { p })
    }

    /// `x + body(x)`.
    pub fn residual(self, body: impl FnOnce(Builder) -> Builder) -> Builder {
        self.block(body, None::<fn(Builder) -> Builder>)
    }

    /// `shortcut(x) + body(x)` (a projection shortcut where the shape changes).
    pub fn residual_with(
        self,
        body: impl FnOnce(Builder) -> Builder,
        shortcut: impl FnOnce(Builder) -> Builder,
    ) -> Builder {
        self.block(body, Some(shortcut))
    }

    fn block(
        mut self,
        body: impl FnOnce(Builder) -> Builder,
        shortcut: Option<impl FnOnce(Builder) -> Builder>,
    ) -> Builder {
        let body = body(self.branch());
        let shortcut = shortcut
            .map(|f| f(self.branch()).layers)
            .unwrap_or_default();
        self.shape = body.shape;
        self.layers.push(Layer::Residual {
            body: body.layers,
            shortcut,
        });
        self
    }

    /// An empty builder from the current shape, for a residual block's parts.
    fn branch(&self) -> Builder {
        Builder {
            input_len: self.shape.len(),
            shape: self.shape,
            layers: Vec::new(),
            init: self.init,
        }
    }

    pub fn flatten(mut self) -> Builder {
        self.layers.push(Layer::Flatten);
        self.shape = flat(self.shape.len());
        self
    }

    pub fn dense(mut self, outputs: usize) -> Builder {
        let inputs = self.shape.len();
        self.layers.push(Layer::Dense {
            inputs,
            outputs,
            init: self.init,
        });
        self.shape = flat(outputs);
        self
    }

    pub fn relu(self) -> Builder {
        self.push(Layer::Relu)
    }

    pub fn tanh(self) -> Builder {
        self.push(Layer::Tanh)
    }

    pub fn sigmoid(self) -> Builder {
        self.push(Layer::Sigmoid)
    }

    /// Appends any layer (an activation given as a value, say).
    pub fn push(mut self, l: Layer) -> Builder {
        self.layers.push(l);
        self
    }

    /// The model; fails if a layer does not fit its input.
    pub fn build(self) -> Result<Sequential, String> {
        Sequential::new(self.input_len, self.layers)
    }
}

fn flat(features: usize) -> Geom {
    Geom {
        c: features,
        h: 1,
        w: 1,
    }
}
