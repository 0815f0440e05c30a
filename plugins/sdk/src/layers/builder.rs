//! [`Builder`]: assembles a [`Sequential`] while tracking the activation shape.

use super::{Geom, Init, Layer, Sequential, conv_out};

/// Builds a [`Sequential`] while tracking the shape, so spatial layers need no hand-computed
/// geometry: `Builder::new(1, 28, 28).conv(6, 5, 2).tanh().avg_pool(2).flatten().dense(10)`.
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

    pub fn conv(mut self, c_out: usize, k: usize, pad: usize) -> Builder {
        let geom = self.shape;
        let (h, w) = conv_out(geom, k, pad).unwrap_or((0, 0));
        self.layers.push(Layer::Conv2d {
            geom,
            c_out,
            k,
            pad,
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

    pub fn flatten(mut self) -> Builder {
        self.layers.push(Layer::Flatten);
        self.shape = Geom {
            c: self.shape.len(),
            h: 1,
            w: 1,
        };
        self
    }

    pub fn dense(mut self, outputs: usize) -> Builder {
        let inputs = self.shape.len();
        self.layers.push(Layer::Dense {
            inputs,
            outputs,
            init: self.init,
        });
        self.shape = Geom {
            c: outputs,
            h: 1,
            w: 1,
        };
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
