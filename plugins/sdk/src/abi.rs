//! The training ABI: the C-compatible contract between the `evomal` host and a task plugin.
//!
//! A plugin exports one function, [`ENTRY_SYMBOL`], returning a pointer to a static
//! [`PluginDecl`]. The host reads `abi_version` and `decl_size` before any other field and
//! refuses a plugin whose version differs from [`ABI_VERSION`].
//!
//! Rules: only POD, pointer + length pairs and [`Status`] codes cross the boundary; memory is
//! freed by whoever allocated it (a model handle is released by the plugin's `drop_model`);
//! every entry point catches panics and reports them as [`STATUS_PANIC`] with the message in the
//! caller's [`ErrBuf`]. Model handles are used by one thread at a time.

use std::ffi::c_void;

/// Bumped on every incompatible change of [`PluginDecl`] or the semantics of an entry.
/// v2: `model_layers`.
pub const ABI_VERSION: u32 = 2;

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

/// Split indices for `read_batch`.
pub const SPLIT_TRAIN: u32 = 0;
pub const SPLIT_VALID: u32 = 1;
pub const SPLIT_TEST: u32 = 2;

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
}

/// What a created model is, from `model_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ModelInfo {
    pub n_params: u64,
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

/// One layer of a model that is a plain stack, from `model_layers`: enough for the host to run
/// the model itself (on the GPU) on the same flat parameter vector.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerDesc {
    /// `LAYER_*`.
    pub kind: u32,
    /// Features per example in and out.
    pub inputs: u32,
    pub outputs: u32,
    pub reserved: u32,
    /// Where the layer's parameters start in the flat vector. Dense: `inputs x outputs` weights,
    /// row-major, then `outputs` biases; `y = x W + b`.
    pub param_offset: u64,
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
    /// Creates model `name` with `params` (a JSON object, UTF-8).
    pub create_model: unsafe extern "C" fn(
        name: *const u8,
        name_len: usize,
        params: *const u8,
        params_len: usize,
        out: *mut ModelHandle,
        err: *mut ErrBuf,
    ) -> Status,
    pub drop_model: unsafe extern "C" fn(model: ModelHandle),
    pub model_info:
        unsafe extern "C" fn(model: ModelHandle, out: *mut ModelInfo, err: *mut ErrBuf) -> Status,
    /// Fills `params` (`n` floats, host memory) with an initialisation drawn from `seed`.
    pub init_params: unsafe extern "C" fn(
        model: ModelHandle,
        seed: u64,
        params: *mut f32,
        n: usize,
        err: *mut ErrBuf,
    ) -> Status,
    /// Copies examples `idx[0..n]` of `split` into `x` (`n * prod(input_shape)` floats) and
    /// `y` (`n * target_width` floats).
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
    /// Outputs for a batch: `out` holds `batch * n_outputs` floats. Keeps what `backward` needs.
    pub forward: unsafe extern "C" fn(
        model: ModelHandle,
        params: *const f32,
        n_params: usize,
        x: *const f32,
        batch: usize,
        out: *mut f32,
        out_len: usize,
        err: *mut ErrBuf,
    ) -> Status,
    /// Vector-Jacobian product for the last `forward`: `grad = (d out / d params)^T dout`.
    pub backward: unsafe extern "C" fn(
        model: ModelHandle,
        params: *const f32,
        n_params: usize,
        dout: *const f32,
        dout_len: usize,
        grad: *mut f32,
        err: *mut ErrBuf,
    ) -> Status,
    /// Writes the model's layers, first to last, into `out` (room for `cap`) and sets `len` to
    /// their count; call again with a larger buffer when `len > cap`. `len = 0`: the model is
    /// not described as layers (the host then runs it only through `forward`/`backward`).
    pub model_layers: unsafe extern "C" fn(
        model: ModelHandle,
        out: *mut LayerDesc,
        cap: usize,
        len: *mut usize,
        err: *mut ErrBuf,
    ) -> Status,
    /// Jacobian-vector product: `out = (d out / d params) tangent` at `params` on batch `x`.
    /// Returns [`STATUS_ERROR`] with a message when the model has no JVP (`has_jvp == 0`).
    pub jvp: unsafe extern "C" fn(
        model: ModelHandle,
        params: *const f32,
        n_params: usize,
        x: *const f32,
        batch: usize,
        tangent: *const f32,
        out: *mut f32,
        out_len: usize,
        err: *mut ErrBuf,
    ) -> Status,
}

// SAFETY: a `PluginDecl` is immutable static data; `name` points to a `'static` string.
unsafe impl Sync for PluginDecl {}
