//! The models of the EvoMAL papers, built from the SDK's layers for any input shape and class
//! count: LeNet-5, AllCNN-C, VGG-11, ResNet-18 (and smaller ResNets), WideResNet. Each follows
//! the usual PyTorch definition for 32x32 inputs (CIFAR); the comment on each says which and
//! how it is initialised.

use crate::{Builder, Init, Layer, Sequential};

/// LeNet-5 as the EvoMAL reference builds it: tanh, average pooling, Xavier-uniform weights and
/// zero biases. The first convolution pads a 28x28 input to 32x32, as LeCun et al. did.
pub fn lenet5(c: usize, h: usize, w: usize, classes: usize) -> Result<Sequential, String> {
    let pad = 32usize.saturating_sub(h.min(w)) / 2;
    Builder::new(c, h, w)
        .conv(6, 5, pad)
        .tanh()
        .avg_pool(2)
        .conv(16, 5, 0)
        .tanh()
        .avg_pool(2)
        .flatten()
        .dense(120)
        .tanh()
        .dense(84)
        .tanh()
        .dense(classes)
        .build()
}

/// AllCNN-C (Springenberg et al. 2015): nine convolutions and no pooling layer (stride-2
/// convolutions downsample), global average pooling over a 1x1-convolution classifier; dropout
/// 0.2 on the input and 0.5 after each downsampling, as in the paper. `width` is the first
/// stage's channel count (96 in the paper; the second stage has twice as many). PyTorch's
/// default initialisation.
pub fn allcnn_c(
    c: usize,
    h: usize,
    w: usize,
    classes: usize,
    width: usize,
) -> Result<Sequential, String> {
    let (a, b) = (width, 2 * width);
    Builder::new(c, h, w)
        .init(Init::TorchDefault)
        .dropout(0.2)
        .conv(a, 3, 1)
        .relu()
        .conv(a, 3, 1)
        .relu()
        .conv2d(a, 3, 2, 1, true)
        .relu()
        .dropout(0.5)
        .conv(b, 3, 1)
        .relu()
        .conv(b, 3, 1)
        .relu()
        .conv2d(b, 3, 2, 1, true)
        .relu()
        .dropout(0.5)
        .conv(b, 3, 1)
        .relu()
        .conv(b, 1, 0)
        .relu()
        .conv(classes, 1, 0)
        .global_avg_pool()
        .build()
}

/// VGG-11 with batch normalisation, CIFAR style (as in the widely used `pytorch-cifar`
/// definitions): configuration A's eight 3x3 convolutions, each followed by batch norm and
/// ReLU (the convolutions keep their biases, as there), five 2x2 max-poolings, and one linear
/// classifier. `width` is the first convolution's
/// channel count (64). Convolutions Kaiming-normal (fan-out), the classifier PyTorch's default.
pub fn vgg11(
    c: usize,
    h: usize,
    w: usize,
    classes: usize,
    width: usize,
) -> Result<Sequential, String> {
    const CONFIG: [usize; 13] = [1, 0, 2, 0, 4, 4, 0, 8, 8, 0, 8, 8, 0];
    let mut b = Builder::new(c, h, w).init(Init::KaimingNormalFanOut);
    for m in CONFIG {
        b = if m == 0 {
            b.max_pool(2)
        } else {
            b.conv2d(m * width, 3, 1, 1, true).batch_norm().relu()
        };
    }
    b.global_avg_pool()
        .init(Init::TorchDefault)
        .dense(classes)
        .build()
}

/// A CIFAR ResNet with basic blocks (He et al. 2016; `pytorch-cifar`'s ResNet-18 for
/// `blocks = [2, 2, 2, 2]`, `width = 64`): a 3x3 stem, stages of `blocks[i]` residual blocks
/// with `width * 2^i` channels (stride 2 from the second stage, with a 1x1 projection
/// shortcut), global average pooling, a linear classifier; `dropout` before the classifier
/// (0 for the standard model) and `act` as the activation (ReLU for the standard model).
/// Convolutions have no bias and are Kaiming-normal (fan-out); the classifier has PyTorch's
/// default initialisation.
#[allow(clippy::too_many_arguments)]
pub fn resnet(
    c: usize,
    h: usize,
    w: usize,
    classes: usize,
    blocks: &[usize],
    width: usize,
    dropout: f32,
    act: Layer,
) -> Result<Sequential, String> {
    let mut b = Builder::new(c, h, w)
        .init(Init::KaimingNormalFanOut)
        .conv2d(width, 3, 1, 1, false)
        .batch_norm()
        .push(act.clone());
    let mut channels = width;
    for (stage, &n) in blocks.iter().enumerate() {
        let planes = width << stage;
        for i in 0..n {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let body = |b: Builder| {
                b.conv2d(planes, 3, stride, 1, false)
                    .batch_norm()
                    .push(act.clone())
                    .conv2d(planes, 3, 1, 1, false)
                    .batch_norm()
            };
            b = if stride == 1 && planes == channels {
                b.residual(body)
            } else {
                b.residual_with(body, |b| b.conv2d(planes, 1, stride, 0, false).batch_norm())
            }
            .push(act.clone());
            channels = planes;
        }
    }
    b = b.global_avg_pool();
    if dropout > 0.0 {
        b = b.dropout(dropout);
    }
    b.init(Init::TorchDefault).dense(classes).build()
}

/// ResNet-18 for 32x32 inputs.
pub fn resnet18(c: usize, h: usize, w: usize, classes: usize) -> Result<Sequential, String> {
    resnet(c, h, w, classes, &[2, 2, 2, 2], 64, 0.0, Layer::Relu)
}

/// WideResNet-`depth`-`k` (Zagoruyko & Komodakis 2016): pre-activation basic blocks in three
/// stages of `16k`, `32k`, `64k` channels, `(depth - 4) / 6` blocks each, dropout `dropout`
/// between a block's convolutions, then batch norm, ReLU, global pooling and a linear
/// classifier. Where a block changes shape its batch norm and ReLU run before the split, so
/// the 1x1 projection shortcut sees the activated input, as in the authors' code.
pub fn wide_resnet(
    c: usize,
    h: usize,
    w: usize,
    classes: usize,
    depth: usize,
    k: usize,
    dropout: f32,
) -> Result<Sequential, String> {
    if depth < 10 || !(depth - 4).is_multiple_of(6) {
        return Err(format!(
            "a WideResNet's depth is 6n + 4 with n >= 1, not {depth}"
        ));
    }
    let n = (depth - 4) / 6;
    let mut b = Builder::new(c, h, w)
        .init(Init::KaimingNormalFanOut)
        .conv2d(16, 3, 1, 1, false);
    let mut channels = 16;
    for stage in 0..3 {
        let planes = (16 << stage) * k;
        for i in 0..n {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let tail = |b: Builder| {
                let b = b.conv2d(planes, 3, stride, 1, false).batch_norm().relu();
                let b = if dropout > 0.0 { b.dropout(dropout) } else { b };
                b.conv2d(planes, 3, 1, 1, false)
            };
            b = if stride == 1 && planes == channels {
                b.residual(|b| tail(b.batch_norm().relu()))
            } else {
                b.batch_norm()
                    .relu()
                    .residual_with(tail, |b| b.conv2d(planes, 1, stride, 0, false))
            };
            channels = planes;
        }
    }
    b.batch_norm()
        .relu()
        .global_avg_pool()
        .init(Init::TorchDefault)
        .dense(classes)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Model;

    /// Parameter counts of the PyTorch definitions (`sum(p.numel() for p in m.parameters())`).
    #[test]
    fn parameter_counts_match_the_pytorch_definitions() {
        assert_eq!(lenet5(1, 28, 28, 10).unwrap().n_params(), 61_706);
        assert_eq!(resnet18(3, 32, 32, 10).unwrap().n_params(), 11_173_962);
        assert_eq!(vgg11(3, 32, 32, 10, 64).unwrap().n_params(), 9_231_114);
        assert_eq!(
            wide_resnet(3, 32, 32, 10, 16, 4, 0.0).unwrap().n_params(),
            2_748_890
        );
        assert_eq!(allcnn_c(3, 32, 32, 10, 96).unwrap().n_params(), 1_369_738);
    }
}
