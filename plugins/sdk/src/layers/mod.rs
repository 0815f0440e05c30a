//! CPU layers with forward, backward (vector-Jacobian) and forward-mode (Jacobian-vector)
//! passes, stacked by [`Sequential`] over one flat parameter vector and one flat state vector
//! (BatchNorm's running statistics). Activations are row-major `[batch][features]`, spatial ones
//! `[batch][channel][row][column]`. Dense layers multiply with `matrixmultiply`'s GEMM,
//! convolutions with `gemm`'s, one GEMM per chunk of the batch (im2col), or 16 of them for
//! size-keeping 3 x 3 kernels (Winograd's F(2 x 2, 3 x 3), `winograd`); the layers' threads
//! (one pool, `par`) split the products and every element-wise pass.

mod builder;
mod columns;
mod conv;
mod dense;
mod gemm;
mod norm;
mod par;
mod pool;
mod sequential;
#[cfg(test)]
mod tests;
mod winograd;

pub use builder::Builder;
pub(crate) use gemm::{Mat, Sgemm, gemm, gemm_on};
pub(crate) use par::{for_parts2, for_parts3, map, zip_map};
pub use sequential::Sequential;

use rand::Rng;

/// Weight initialisation of a dense or convolution layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio); biases 0.
    XavierUniform,
    /// U(-a, a), a = sqrt(6 / fan_in) (He et al., for ReLU); biases 0.
    HeUniform,
    /// N(0, 2 / fan_out) (He et al., "fan_out" mode, as torchvision's ResNet and VGG convs);
    /// biases 0.
    KaimingNormalFanOut,
    /// PyTorch's default for `Linear` and `Conv2d`: weights and biases U(-b, b),
    /// b = 1 / sqrt(fan_in).
    TorchDefault,
}

/// The `[channels, height, width]` shape of a spatial layer's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Geom {
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a pass runs. Training normalises with batch statistics (and updates the running ones)
/// and draws dropout masks from `seed`, so a pass repeated with the same seed is the same
/// function; evaluation uses the running statistics and no dropout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train { seed: u64 },
    Eval,
}

/// One layer of a [`Sequential`] model.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// `y = x W + b`, `W` is `inputs x outputs` row-major, then `b`.
    Dense {
        inputs: usize,
        outputs: usize,
        init: Init,
    },
    Relu,
    Tanh,
    Sigmoid,
    /// Reshapes to one feature vector per example (no data movement).
    Flatten,
    /// 2-D convolution with zero padding `pad` and stride `stride` over `[c_in, h, w]`
    /// inputs. Weights are `c_out x (c_in k k)` row-major, then `c_out` biases when `bias`.
    Conv2d {
        geom: Geom,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
        init: Init,
    },
    /// Non-overlapping `size x size` max pooling over `[c, h, w]` (stride `size`).
    MaxPool2d {
        geom: Geom,
        size: usize,
    },
    /// Non-overlapping `size x size` average pooling over `[c, h, w]` (stride `size`).
    AvgPool2d {
        geom: Geom,
        size: usize,
    },
    /// The mean of each channel: `[c, h, w] -> [c]`.
    GlobalAvgPool {
        geom: Geom,
    },
    /// Batch normalisation per channel of `[c, h, w]` (`h = w = 1` for features), PyTorch's
    /// rules: eps 1e-5, momentum 0.1, unbiased running variance. Parameters `gamma` then
    /// `beta` (`c` each); state: running mean then running variance.
    BatchNorm {
        geom: Geom,
    },
    /// Inverted dropout: in training, each activation is zeroed with probability `p` and the
    /// others scaled by `1 / (1 - p)`; the identity in evaluation.
    Dropout {
        p: f32,
    },
    /// `body(x) + shortcut(x)`, the shortcut the identity when empty (a residual block).
    Residual {
        body: Vec<Layer>,
        shortcut: Vec<Layer>,
    },
}

impl Layer {
    /// The input's shape, for the layers over images.
    pub fn geom(&self) -> Option<Geom> {
        match *self {
            Layer::Conv2d { geom, .. }
            | Layer::MaxPool2d { geom, .. }
            | Layer::AvgPool2d { geom, .. }
            | Layer::GlobalAvgPool { geom }
            | Layer::BatchNorm { geom } => Some(geom),
            _ => None,
        }
    }

    /// Parameters of a layer other than a residual block (whose count its parts give).
    fn own_params(&self) -> usize {
        match *self {
            Layer::Dense {
                inputs, outputs, ..
            } => inputs * outputs + outputs,
            Layer::Conv2d {
                geom,
                c_out,
                k,
                bias,
                ..
            } => c_out * geom.c * k * k + if bias { c_out } else { 0 },
            Layer::BatchNorm { geom } => 2 * geom.c,
            _ => 0,
        }
    }

    /// State floats of a layer other than a residual block.
    fn own_state(&self) -> usize {
        match *self {
            Layer::BatchNorm { geom } => 2 * geom.c,
            _ => 0,
        }
    }

    /// Output features per example, or why the input width does not fit. Residual blocks are
    /// checked by [`Sequential::new`].
    fn output_len(&self, input: usize) -> Result<usize, String> {
        let expect = |want: usize, what: &str| {
            if want == input {
                Ok(())
            } else {
                Err(format!("{what} expects {want} inputs, gets {input}"))
            }
        };
        match *self {
            Layer::Dense {
                inputs, outputs, ..
            } => expect(inputs, "dense").map(|()| outputs),
            Layer::Conv2d {
                geom,
                c_out,
                k,
                stride,
                pad,
                ..
            } => {
                expect(geom.len(), "conv2d")?;
                let (ho, wo) = conv_out(geom, k, stride, pad)
                    .ok_or("conv2d kernel larger than its padded input, or stride 0")?;
                Ok(c_out * ho * wo)
            }
            Layer::MaxPool2d { geom, size } | Layer::AvgPool2d { geom, size } => {
                expect(geom.len(), "pooling")?;
                if size == 0 || geom.h < size || geom.w < size {
                    return Err(format!(
                        "pooling window {size} does not fit {}x{}",
                        geom.h, geom.w
                    ));
                }
                Ok(geom.c * (geom.h / size) * (geom.w / size))
            }
            Layer::GlobalAvgPool { geom } => expect(geom.len(), "global pooling").map(|()| geom.c),
            Layer::BatchNorm { geom } => expect(geom.len(), "batch norm").map(|()| input),
            Layer::Dropout { p } => {
                if (0.0..1.0).contains(&p) {
                    Ok(input)
                } else {
                    Err(format!("dropout probability {p} is not in [0, 1)"))
                }
            }
            Layer::Relu | Layer::Tanh | Layer::Sigmoid | Layer::Flatten => Ok(input),
            Layer::Residual { .. } => unreachable!("a residual block's width comes from its parts"),
        }
    }

    /// `(fan_in, fan_out, weight count, has bias, init)` of a weight layer, as PyTorch counts
    /// fans.
    fn fans(&self) -> Option<(usize, usize, usize, bool, Init)> {
        match *self {
            Layer::Dense {
                inputs,
                outputs,
                init,
            } => Some((inputs, outputs, inputs * outputs, true, init)),
            Layer::Conv2d {
                geom,
                c_out,
                k,
                bias,
                init,
                ..
            } => Some((
                geom.c * k * k,
                c_out * k * k,
                c_out * geom.c * k * k,
                bias,
                init,
            )),
            _ => None,
        }
    }

    /// Draws this layer's initial parameters and state (a residual block's come from its
    /// parts). Xavier and He draw the weights only, in order, so models built before the other
    /// schemes existed start where they did.
    fn init(&self, rng: &mut impl Rng, params: &mut [f32], state: &mut [f32]) {
        if let Layer::BatchNorm { geom } = *self {
            let c = geom.c;
            params[..c].fill(1.0);
            params[c..].fill(0.0);
            state[..c].fill(0.0);
            state[c..].fill(1.0);
            return;
        }
        let Some((fan_in, fan_out, n, bias, init)) = self.fans() else {
            return;
        };
        let (w, b) = params.split_at_mut(n);
        b.fill(0.0);
        match init {
            Init::XavierUniform => fill_uniform(rng, (6.0 / (fan_in + fan_out) as f64).sqrt(), w),
            Init::HeUniform => fill_uniform(rng, (6.0 / fan_in as f64).sqrt(), w),
            Init::KaimingNormalFanOut => {
                let std = (2.0 / fan_out as f64).sqrt();
                w.iter_mut()
                    .for_each(|p| *p = (std * standard_normal(rng)) as f32);
            }
            Init::TorchDefault => {
                let a = 1.0 / (fan_in as f64).sqrt();
                fill_uniform(rng, a, w);
                if bias {
                    fill_uniform(rng, a, b);
                }
            }
        }
    }
}

fn fill_uniform(rng: &mut impl Rng, a: f64, v: &mut [f32]) {
    let a = a as f32;
    v.iter_mut().for_each(|p| *p = rng.random_range(-a..a));
}

/// One draw of N(0, 1) (Box–Muller on two uniform draws).
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The output size of a convolution, `None` when the kernel does not fit or the stride is 0.
fn conv_out(g: Geom, k: usize, stride: usize, pad: usize) -> Option<(usize, usize)> {
    let (h, w) = (g.h + 2 * pad, g.w + 2 * pad);
    (k >= 1 && stride >= 1 && h >= k && w >= k)
        .then(|| ((h - k) / stride + 1, (w - k) / stride + 1))
}

/// `tanh` as a rational function (Eigen's `generic_fast_tanh_float`): within 7 ulp (4.4e-7) of
/// the exact value, and branch-free, so loops over it vectorise; libm's `tanhf` made a quarter
/// of a LeNet-5 training step.
pub fn tanh(x: f32) -> f32 {
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    let c = x.clamp(-7.905_311, 7.905_311);
    let x2 = c * c;
    let p = c
        * (A[0] + x2 * (A[1] + x2 * (A[2] + x2 * (A[3] + x2 * (A[4] + x2 * (A[5] + x2 * A[6]))))));
    let q = B[0] + x2 * (B[1] + x2 * (B[2] + x2 * B[3]));
    // Below 4e-4 the rational form loses relative accuracy; tanh(x) = x there in f32.
    if x.abs() < 4e-4 { x } else { p / q }
}
