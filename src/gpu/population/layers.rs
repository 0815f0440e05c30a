//! The plugin's layer descriptions (`model_layers`) as the layers the GPU runs, or why it
//! cannot run them.

use evomal_sdk::abi::{
    LAYER_AVG_POOL, LAYER_BATCH_NORM, LAYER_CONV2D, LAYER_DENSE, LAYER_DROPOUT, LAYER_FLATTEN,
    LAYER_GLOBAL_AVG_POOL, LAYER_MAX_POOL, LAYER_RELU, LAYER_RESIDUAL, LAYER_SIGMOID, LAYER_TANH,
    LayerDesc,
};

use super::kernels::Image;
use crate::gpu::GpuError;

/// A layer the GPU runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuLayer {
    Dense {
        inputs: u32,
        outputs: u32,
        offset: u32,
    },
    /// `kind` as the shaders number them: 1 relu, 2 tanh, 3 sigmoid.
    Activation {
        kind: u32,
        width: u32,
    },
    Flatten,
    /// Inverted dropout with the plugin's masks (`LayerDesc::id`), `rate` as f32 bits.
    Dropout {
        width: u32,
        rate: u32,
        id: u32,
    },
    /// A convolution, a pooling or a batch norm over `[c][h][w]` examples.
    Image {
        op: ImageOp,
        inputs: u32,
        outputs: u32,
        offset: u32,
        image: Image,
    },
    /// `body(x) + shortcut(x)`, the shortcut the identity when empty.
    Residual {
        body: Vec<GpuLayer>,
        shortcut: Vec<GpuLayer>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageOp {
    Conv,
    /// `kind` in the pooling shaders: 0 max, 1 average.
    Pool {
        kind: u32,
    },
    Norm,
}

/// The model's layers, or why the GPU cannot run it.
pub fn gpu_layers(layers: &[LayerDesc]) -> Result<Vec<GpuLayer>, GpuError> {
    if layers.is_empty() {
        return Err(GpuError::Unsupported(
            "a model that does not describe itself as layers (build it from evomal_sdk layers)"
                .into(),
        ));
    }
    let mut rest = layers;
    let stack = stack(&mut rest, layers.len())?;
    Ok(stack)
}

/// The next `n` descriptions of `rest` (a nested block's parts counted), consumed.
fn stack(rest: &mut &[LayerDesc], n: usize) -> Result<Vec<GpuLayer>, GpuError> {
    let bad = || GpuError::Unsupported("a residual block whose parts are not described".into());
    let mut out = Vec::new();
    let start = rest.len();
    while start - rest.len() < n {
        let (l, tail) = rest.split_first().ok_or_else(bad)?;
        *rest = tail;
        out.push(if l.kind == LAYER_RESIDUAL {
            let body = stack(rest, l.body as usize)?;
            let shortcut = stack(rest, l.shortcut as usize)?;
            if body.is_empty() {
                return Err(bad());
            }
            GpuLayer::Residual { body, shortcut }
        } else {
            layer(l)?
        });
    }
    if start - rest.len() != n {
        return Err(bad());
    }
    Ok(out)
}

fn layer(l: &LayerDesc) -> Result<GpuLayer, GpuError> {
    let image = |op, image: Image| {
        let input = image.c * image.h * image.w;
        let output = image.c_out * image.oh * image.ow;
        let empty = image.kh == 0 || image.kw == 0 || image.stride == 0;
        if empty || (input, output) != (l.inputs, l.outputs) {
            return Err(GpuError::Unsupported(format!(
                "layer kind {} whose shapes do not add up: {l:?}",
                l.kind
            )));
        }
        Ok(GpuLayer::Image {
            op,
            inputs: l.inputs,
            outputs: l.outputs,
            offset: l.param_offset as u32,
            image,
        })
    };
    let (c, h, w, k) = (l.channels, l.height, l.width, l.kernel);
    let same = Image {
        c,
        h,
        w,
        c_out: c,
        kh: 1,
        kw: 1,
        stride: 1,
        oh: h,
        ow: w,
        state_offset: l.state_offset as u32,
        ..Image::default()
    };
    let pool = |kind, (kh, kw): (u32, u32)| {
        let window = Image {
            kh,
            kw,
            stride: kh,
            oh: h.checked_div(kh).unwrap_or(0),
            ow: w.checked_div(kw).unwrap_or(0),
            ..same
        };
        image(ImageOp::Pool { kind }, window)
    };
    let conv_out = |side: u32| (side + 2 * l.padding).saturating_sub(k) / l.stride.max(1) + 1;
    match l.kind {
        LAYER_DENSE => Ok(GpuLayer::Dense {
            inputs: l.inputs,
            outputs: l.outputs,
            offset: l.param_offset as u32,
        }),
        LAYER_RELU | LAYER_TANH | LAYER_SIGMOID => Ok(GpuLayer::Activation {
            kind: l.kind,
            width: l.inputs,
        }),
        LAYER_FLATTEN => Ok(GpuLayer::Flatten),
        LAYER_CONV2D => image(
            ImageOp::Conv,
            Image {
                c_out: l.out_channels,
                kh: k,
                kw: k,
                stride: l.stride,
                pad: l.padding,
                oh: conv_out(h),
                ow: conv_out(w),
                bias: l.bias,
                ..same
            },
        ),
        LAYER_MAX_POOL => pool(0, (k, k)),
        LAYER_AVG_POOL => pool(1, (k, k)),
        LAYER_GLOBAL_AVG_POOL => pool(1, (h, w)),
        LAYER_BATCH_NORM => image(ImageOp::Norm, same),
        LAYER_DROPOUT => Ok(GpuLayer::Dropout {
            width: l.inputs,
            rate: l.rate.to_bits(),
            id: l.id,
        }),
        other => Err(GpuError::Unsupported(format!("layer kind {other}"))),
    }
}

/// State floats per candidate: past the last batch norm's running statistics.
pub fn state_len(layers: &[GpuLayer]) -> usize {
    layers
        .iter()
        .map(|l| match l {
            GpuLayer::Image {
                op: ImageOp::Norm,
                image,
                ..
            } => (image.state_offset + 2 * image.c) as usize,
            GpuLayer::Residual { body, shortcut } => state_len(body).max(state_len(shortcut)),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Floats per example row of one candidate's copy of the model: the widest value (the input,
/// a layer's output), and every value's activations and gradients together (a residual block's
/// branches have gradients of their own).
pub fn row_floats(layers: &[GpuLayer], input: usize) -> (usize, usize) {
    fn walk(layers: &[GpuLayer], width: &mut usize, widest: &mut usize, total: &mut usize) {
        for l in layers {
            match l {
                GpuLayer::Dense { outputs, .. } | GpuLayer::Image { outputs, .. } => {
                    *width = *outputs as usize
                }
                GpuLayer::Activation { width: w, .. } | GpuLayer::Dropout { width: w, .. } => {
                    *width = *w as usize
                }
                GpuLayer::Flatten => continue,
                GpuLayer::Residual { body, shortcut } => {
                    let input = *width;
                    *total += 2 * input;
                    walk(body, width, widest, total);
                    walk(shortcut, &mut input.clone(), widest, total);
                }
            }
            *widest = (*widest).max(*width);
            *total += 2 * *width;
        }
    }
    let (mut width, mut widest, mut total) = (input, input, input);
    walk(layers, &mut width, &mut widest, &mut total);
    (widest, total)
}

/// The dropout layers' numbers, in the order the graph meets them (a block's body before its
/// shortcut): slot `k` of a pass's mask keys is `ids[k]`'s.
pub fn dropout_ids(layers: &[GpuLayer]) -> Vec<u32> {
    let mut ids = Vec::new();
    for l in layers {
        match l {
            GpuLayer::Dropout { id, .. } => ids.push(*id),
            GpuLayer::Residual { body, shortcut } => {
                ids.extend(dropout_ids(body));
                ids.extend(dropout_ids(shortcut));
            }
            _ => {}
        }
    }
    ids
}

/// The ChaCha8 keys of a training pass seeded `seed`, one per dropout layer of `ids`: what the
/// plugin seeds each layer's mask generator with (`LayerDesc::id`), 8 words each.
pub fn mask_keys(ids: &[u32], seed: u64, out: &mut Vec<u32>) {
    use rand::SeedableRng;
    for &id in ids {
        let rng = rand_chacha::ChaCha8Rng::seed_from_u64(evomal_sdk::mix_seed(seed, id.into()));
        let key = rng.get_seed();
        out.extend(
            key.chunks_exact(4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
        );
    }
}
