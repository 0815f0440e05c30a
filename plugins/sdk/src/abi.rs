//! The training ABI: the C-compatible contract between the `evomal` host and a task plugin.
//!
//! A plugin exports one function, [`ENTRY_SYMBOL`], returning a pointer to a static
//! [`PluginDecl`]. The host reads `abi_version` and `decl_size` before any other field and
//! refuses a plugin whose version differs from [`ABI_VERSION`].
//!
//! Since v3 a model instance is device-resident: it owns its parameters, its buffers
//! (BatchNorm's running statistics) and its optimiser state, and reads its own inputs by
//! example index. Only per-batch outputs, output gradients and targets, example indices, seeds
//! and scalar settings cross the boundary; the host runs the training loop, the loss and the
//! learning-rate schedule.
//!
//! Rules: only POD, pointer + length pairs and [`Status`] codes cross the boundary; memory is
//! freed by whoever allocated it (a model handle is released by the plugin's `drop_model`);
//! every entry point catches panics and reports them as [`STATUS_PANIC`] with the message in the
//! caller's [`ErrBuf`]. Model handles are used by one thread at a time.

use std::ffi::c_void;

/// Bumped on every incompatible change of [`PluginDecl`] or the semantics of an entry.
/// v2: `model_layers`. v3: model instances own their parameters, state and optimiser. v4:
/// `model_params` (a model's settings and their defaults). v5: [`LayerDesc`] carries the
/// geometry of convolutions and pooling, state offsets, residual blocks' parts and dropout's
/// masks, and [`TaskInfo::augments`]. v6: [`TaskInfo::crop_flip`], the SDK's augmentation.
pub const ABI_VERSION: u32 = 6;

/// The exported function that returns `*const PluginDecl`.
pub const ENTRY_SYMBOL: &str = "evomal_plugin_entry";

pub type Status = i32;
pub const STATUS_OK: Status = 0;
/// The plugin reports an error; its message is in the `ErrBuf`.
pub const STATUS_ERROR: Status = 1;
/// The plugin panicked; the panic message is in the `ErrBuf`.
pub const STATUS_PANIC: Status = 2;

/// Task kinds in [`TaskInfo::kind`].
pub const KIND_REGRESSION: u32 = 0;
pub const KIND_CLASSIFICATION: u32 = 1;

/// Split indices.
pub const SPLIT_TRAIN: u32 = 0;
pub const SPLIT_VALID: u32 = 1;
pub const SPLIT_TEST: u32 = 2;

/// Pass modes in [`Batch::mode`].
pub const MODE_EVAL: u32 = 0;
/// Batch statistics, dropout masks and (on the training split) augmentation drawn from
/// [`Batch::seed`]; the running statistics move.
pub const MODE_TRAIN: u32 = 1;

/// Optimiser kinds in [`OptimizerDesc::kind`].
pub const OPTIMIZER_SGD: u32 = 0;
pub const OPTIMIZER_ADAM: u32 = 1;

/// How `meta_jvp` computed its product.
pub const JVP_EXACT: u32 = 0;
/// A central finite difference: the model has no JVP.
pub const JVP_FINITE_DIFFERENCE: u32 = 1;

/// A host-owned buffer for an error message; the plugin writes at most `cap` bytes of UTF-8
/// and sets `len`.
#[repr(C)]
pub struct ErrBuf {
    pub ptr: *mut u8,
    pub cap: usize,
    pub len: usize,
}

/// What a task is, from `describe`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TaskInfo {
    /// [`KIND_REGRESSION`] or [`KIND_CLASSIFICATION`].
    pub kind: u32,
    /// Model outputs per example (classes for classification).
    pub n_outputs: u32,
    /// Floats per example in `read_batch`'s targets: `n_outputs` for regression, 1 (the class
    /// index) for classification.
    pub target_width: u32,
    /// Number of used entries of `input_shape`; an example has their product of floats.
    pub input_rank: u32,
    pub input_shape: [u32; 4],
    /// Examples in the train, validation and test splits.
    pub split_sizes: [u64; 3],
    /// How training passes transform their batches: [`AUGMENT_NONE`]; [`AUGMENT_OWN`], by the
    /// task's own `Task::augment` (the GPU trainer, which cannot replay it, refuses the task);
    /// or [`AUGMENT_CROP_FLIP`], by the SDK's recipe in `crop_flip` (`crate::augment`).
    pub augments: u32,
    pub crop_flip: CropFlip,
}

/// Values of [`TaskInfo::augments`].
pub const AUGMENT_NONE: u32 = 0;
pub const AUGMENT_OWN: u32 = 1;
pub const AUGMENT_CROP_FLIP: u32 = 2;

/// The SDK's crop-and-flip augmentation (`crate::augment`): a random crop of each image
/// padded by `pad` pixels of `fill` (per channel, as normalised; images of at most 4
/// channels), and with `flip` 1 a horizontal flip of half the images.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CropFlip {
    pub pad: u32,
    pub flip: u32,
    pub fill: [f32; 4],
}

/// What a created model is, from `model_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ModelInfo {
    pub n_params: u64,
    /// Floats of a snapshot: the parameters first (laid out as `model_layers` describes
    /// them), then the state, then the optimiser's.
    pub snapshot_len: u64,
    pub n_outputs: u32,
    /// 1 when `jvp` is implemented for this model.
    pub has_jvp: u32,
}

/// Layer kinds in [`LayerDesc::kind`].
pub const LAYER_DENSE: u32 = 0;
pub const LAYER_RELU: u32 = 1;
pub const LAYER_TANH: u32 = 2;
pub const LAYER_SIGMOID: u32 = 3;
pub const LAYER_FLATTEN: u32 = 4;
pub const LAYER_CONV2D: u32 = 5;
pub const LAYER_MAX_POOL: u32 = 6;
pub const LAYER_AVG_POOL: u32 = 7;
pub const LAYER_GLOBAL_AVG_POOL: u32 = 8;
pub const LAYER_BATCH_NORM: u32 = 9;
pub const LAYER_DROPOUT: u32 = 10;
/// A residual block: `body(x) + shortcut(x)`. The next [`LayerDesc::body`] descriptions are its
/// body, then [`LayerDesc::shortcut`] its shortcut (none: the identity), with their offsets in
/// the whole model's vectors.
pub const LAYER_RESIDUAL: u32 = 11;

/// One layer of a model built from layers, from `model_layers` (in order; a residual block's
/// parts follow it): enough for the host to run the model itself (on the GPU) on the same flat
/// parameter and state vectors.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LayerDesc {
    /// `LAYER_*`.
    pub kind: u32,
    /// Features per example in and out.
    pub inputs: u32,
    pub outputs: u32,
    /// Convolution: 1 when it has biases.
    pub bias: u32,
    /// Where the layer's parameters start in the flat vector. Dense: `inputs x outputs` weights,
    /// row-major, then `outputs` biases; `y = x W + b`. Convolution: `out_channels x (channels
    /// kernel kernel)` weights, row-major, then `out_channels` biases when `bias`. Batch norm:
    /// `gamma` then `beta`, `channels` each.
    pub param_offset: u64,
    /// Where the layer's state starts in the flat state vector. Batch norm: the running mean,
    /// then the running variance, `channels` each.
    pub state_offset: u64,
    /// Convolution, pooling and batch norm: the input's channels, height and width (`[c][h][w]`
    /// per example).
    pub channels: u32,
    pub height: u32,
    pub width: u32,
    /// Convolution: output channels, kernel size, stride and zero padding on each side.
    /// Max and average pooling: `kernel` is the window's side and its stride.
    pub out_channels: u32,
    pub kernel: u32,
    pub stride: u32,
    pub padding: u32,
    /// Residual block: descriptions (not layers: a nested block counts its parts) in its body
    /// and in its shortcut.
    pub body: u32,
    pub shortcut: u32,
    /// Dropout: the layer's number in the model. A training pass seeded `s` draws the layer's
    /// mask from `ChaCha8Rng::seed_from_u64(mix_seed(s, id))`, one `random::<f32>()` per entry
    /// of the batch's input in order, dropping the entry when it is below `rate`.
    pub id: u32,
    pub rate: f32,
}

/// A batch for `forward`: examples `idx[0..n]` of `split`, in `mode`, with `seed` for what a
/// training pass draws.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Batch {
    pub split: u32,
    pub mode: u32,
    pub seed: u64,
    pub idx: *const u64,
    pub n: usize,
}

/// The optimiser a model instance steps with (PyTorch's rules, no dampening).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OptimizerDesc {
    /// `OPTIMIZER_*`.
    pub kind: u32,
    /// SGD: 1 for Nesterov momentum.
    pub nesterov: u32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// Opaque model handle, created by `create_model`, released by `drop_model`.
pub type ModelHandle = *mut c_void;

/// The plugin's declaration: version header first, then the entry points.
#[repr(C)]
pub struct PluginDecl {
    pub abi_version: u32,
    /// `size_of::<PluginDecl>()` as the plugin was built.
    pub decl_size: u32,
    /// The task's name, UTF-8, static.
    pub name: *const u8,
    pub name_len: usize,
    /// Loads the task's data with `config` (a JSON object: the manifest's `[task.data]`). The
    /// host calls it once, before any other entry; a task is configured once per process.
    pub configure:
        unsafe extern "C" fn(config: *const u8, config_len: usize, err: *mut ErrBuf) -> Status,
    pub describe: unsafe extern "C" fn(out: *mut TaskInfo, err: *mut ErrBuf) -> Status,
    /// Writes the model names, comma-separated, into `buf` (at most `cap` bytes), sets `len`
    /// to the full length (call again with a larger buffer when `len > cap`).
    pub model_names:
        unsafe extern "C" fn(buf: *mut u8, cap: usize, len: *mut usize, err: *mut ErrBuf) -> Status,
    /// Writes the settings model `name` reads from `[task.params]`, with their defaults, as a
    /// JSON object (`{"hidden": [64, 64], ...}`; `null` where there is no default) into `buf`
    /// (at most `cap` bytes); sets `len` as `model_names` does.
    pub model_params: unsafe extern "C" fn(
        name: *const u8,
        name_len: usize,
        buf: *mut u8,
        cap: usize,
        len: *mut usize,
        err: *mut ErrBuf,
    ) -> Status,
    /// Creates model `name` with `params` (a JSON object, UTF-8), initialised from `seed`,
    /// with plain SGD (lr from `step`) as its optimiser.
    pub create_model: unsafe extern "C" fn(
        name: *const u8,
        name_len: usize,
        params: *const u8,
        params_len: usize,
        seed: u64,
        out: *mut ModelHandle,
        err: *mut ErrBuf,
    ) -> Status,
    pub drop_model: unsafe extern "C" fn(model: ModelHandle),
    pub model_info:
        unsafe extern "C" fn(model: ModelHandle, out: *mut ModelInfo, err: *mut ErrBuf) -> Status,
    /// Writes the model's layers, first to last, into `out` (room for `cap`) and sets `len` to
    /// their count; call again with a larger buffer when `len > cap`. `len = 0`: the model is
    /// not described as layers (the host then cannot run it itself).
    pub model_layers: unsafe extern "C" fn(
        model: ModelHandle,
        out: *mut LayerDesc,
        cap: usize,
        len: *mut usize,
        err: *mut ErrBuf,
    ) -> Status,
    /// Copies examples `idx[0..n]` of `split` into `x` (`n * prod(input_shape)` floats) and
    /// `y` (`n * target_width` floats), untransformed: for hosts that run the model themselves.
    pub read_batch: unsafe extern "C" fn(
        split: u32,
        idx: *const u64,
        n: usize,
        x: *mut f32,
        x_len: usize,
        y: *mut f32,
        y_len: usize,
        err: *mut ErrBuf,
    ) -> Status,
    /// Re-initialises parameters and state from `seed` and clears the optimiser's state.
    pub init: unsafe extern "C" fn(model: ModelHandle, seed: u64, err: *mut ErrBuf) -> Status,
    /// Sets the optimiser (its state starts afresh).
    pub set_optimizer: unsafe extern "C" fn(
        model: ModelHandle,
        opt: *const OptimizerDesc,
        err: *mut ErrBuf,
    ) -> Status,
    /// Runs `batch` through the model: `out` gets `n * n_outputs` floats, `targets` (null, or
    /// `n * target_width` floats) the batch's targets. Keeps what `step` and the meta entries
    /// need.
    pub forward: unsafe extern "C" fn(
        model: ModelHandle,
        batch: *const Batch,
        out: *mut f32,
        out_len: usize,
        targets: *mut f32,
        targets_len: usize,
        err: *mut ErrBuf,
    ) -> Status,
    /// Back-propagates `dout` (the gradient of the loss with respect to the last forward's
    /// outputs) and takes one optimiser step with learning rate `lr`.
    pub step: unsafe extern "C" fn(
        model: ModelHandle,
        dout: *const f32,
        dout_len: usize,
        lr: f32,
        err: *mut ErrBuf,
    ) -> Status,
    /// Sets `out` to 1 when every parameter and state value is finite, else 0.
    pub all_finite:
        unsafe extern "C" fn(model: ModelHandle, out: *mut u32, err: *mut ErrBuf) -> Status,
    /// Copies the whole state (`snapshot_len` floats) into `buf`.
    pub snapshot: unsafe extern "C" fn(
        model: ModelHandle,
        buf: *mut f32,
        len: usize,
        err: *mut ErrBuf,
    ) -> Status,
    /// Restores a state that `snapshot` wrote.
    pub restore: unsafe extern "C" fn(
        model: ModelHandle,
        buf: *const f32,
        len: usize,
        err: *mut ErrBuf,
    ) -> Status,
    /// The exact one-step meta-gradient, first part. After a training-mode `forward` at
    /// parameters theta0 whose loss gradient is `g` (`dout`): keeps theta0 and sets the
    /// parameters to the look-ahead `theta1 = theta0 - lr_eff (J^T g + weight_decay theta0)`.
    pub meta_lookahead: unsafe extern "C" fn(
        model: ModelHandle,
        dout: *const f32,
        dout_len: usize,
        lr_eff: f32,
        weight_decay: f32,
        err: *mut ErrBuf,
    ) -> Status,
    /// Second part: after a `forward` at theta1 (a validation batch), pulls `dout` (the task
    /// loss's output gradient) back to the parameters, `v = J(theta1)^T dout`.
    pub meta_pullback: unsafe extern "C" fn(
        model: ModelHandle,
        dout: *const f32,
        dout_len: usize,
        err: *mut ErrBuf,
    ) -> Status,
    /// Third part: restores theta0 and writes `J(theta0) v` on the look-ahead's training
    /// batch (same examples, mode and seed) into `out`; `method` gets `JVP_*`.
    pub meta_jvp: unsafe extern "C" fn(
        model: ModelHandle,
        out: *mut f32,
        out_len: usize,
        method: *mut u32,
        err: *mut ErrBuf,
    ) -> Status,
}

// SAFETY: a `PluginDecl` is immutable static data; `name` points to a `'static` string.
unsafe impl Sync for PluginDecl {}
