//! The bridge from the safe [`Task`]/[`Model`] traits to the C ABI: generic `extern "C"` shims
//! that check pointers, catch panics and report errors through the caller's `ErrBuf`.
//! [`crate::export_task!`] instantiates them for a plugin's task type.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use crate::abi::*;
use crate::instance::ModelInstance;
use crate::{Mode, Params, Split, Task, check_len};

/// The process-wide instance of a task: `export_task!` provides the cell, the defaults do the
/// rest.
pub trait Exported: Task {
    /// The task, with the configuration it was loaded with.
    fn cell() -> &'static OnceLock<(String, Result<Self, String>)>;

    /// Loads the task with `config` (JSON); a second call must bring the same configuration.
    fn configure(config: &str) -> Result<(), String> {
        let (first, res) = Self::cell().get_or_init(|| (config.to_string(), load::<Self>(config)));
        if first != config {
            return Err(format!(
                "task `{}` is already configured with {first}",
                Self::NAME
            ));
        }
        res.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    /// The task, loaded with an empty configuration if the host did not configure it.
    fn instance() -> Result<&'static Self, String> {
        let (_, res) = Self::cell().get_or_init(|| ("{}".to_string(), load::<Self>("{}")));
        res.as_ref().map_err(Clone::clone)
    }
}

fn load<T: Task>(config: &str) -> Result<T, String> {
    let params = Params::parse_for(&format!("task `{}` data", T::NAME), config)?;
    let task = T::load(&params)?;
    params.finish()?;
    Ok(task)
}

/// The declaration for task `T` (used by `export_task!` to build its static).
pub const fn decl<T: Exported>() -> PluginDecl {
    PluginDecl {
        abi_version: ABI_VERSION,
        decl_size: size_of::<PluginDecl>() as u32,
        name: T::NAME.as_ptr(),
        name_len: T::NAME.len(),
        configure: configure::<T>,
        describe: describe::<T>,
        model_names: model_names::<T>,
        model_params: model_params::<T>,
        create_model: create_model::<T>,
        drop_model: drop_model::<T>,
        model_info: model_info::<T>,
        model_layers: model_layers::<T>,
        read_batch: read_batch::<T>,
        init: init::<T>,
        set_optimizer: set_optimizer::<T>,
        forward: forward::<T>,
        step: step::<T>,
        all_finite: all_finite::<T>,
        snapshot: snapshot::<T>,
        restore: restore::<T>,
        meta_lookahead: meta_lookahead::<T>,
        meta_pullback: meta_pullback::<T>,
        meta_jvp: meta_jvp::<T>,
    }
}

/// Runs `f`, turning an error or a panic into a status code and a message in `err`.
fn guard(err: *mut ErrBuf, f: impl FnOnce() -> Result<(), String>) -> Status {
    let (status, msg) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return STATUS_OK,
        Ok(Err(msg)) => (STATUS_ERROR, msg),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".to_string());
            (STATUS_PANIC, format!("panicked: {msg}"))
        }
    };
    // SAFETY: the host passes a valid `ErrBuf` whose `ptr` has room for `cap` bytes (or null).
    if let Some(err) = unsafe { err.as_mut() } {
        let n = msg.len().min(err.cap);
        if !err.ptr.is_null() {
            // SAFETY: `n <= cap`, and `err.ptr` has `cap` writable bytes.
            unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), err.ptr, n) };
        }
        err.len = n;
    }
    status
}

/// # Safety
/// `p` must be valid for `n` reads (it may be null or dangling when `n == 0`).
unsafe fn slice<'a, T>(p: *const T, n: usize) -> Result<&'a [T], String> {
    match (p.is_null(), n) {
        (_, 0) => Ok(&[]),
        (true, _) => Err("null pointer for a non-empty buffer".into()),
        // SAFETY: the caller guarantees `n` valid elements at `p`.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(p, n) }),
    }
}

/// A UTF-8 string argument.
///
/// # Safety
/// As [`slice`].
unsafe fn text<'a>(p: *const u8, n: usize) -> Result<&'a str, String> {
    // SAFETY: the caller's guarantee, passed on.
    std::str::from_utf8(unsafe { slice(p, n) }?).map_err(|e| e.to_string())
}

/// # Safety
/// `p` must be valid for `n` writes (it may be null or dangling when `n == 0`).
unsafe fn slice_mut<'a, T>(p: *mut T, n: usize) -> Result<&'a mut [T], String> {
    match (p.is_null(), n) {
        (_, 0) => Ok(&mut []),
        (true, _) => Err("null pointer for a non-empty buffer".into()),
        // SAFETY: the caller guarantees `n` valid, unaliased elements at `p`.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts_mut(p, n) }),
    }
}

/// # Safety
/// `model` must come from `create_model::<T>` and not be released yet.
unsafe fn model<'a, T: Task>(model: ModelHandle) -> Result<&'a mut ModelInstance<T>, String> {
    // SAFETY: handles are `Box<ModelInstance<T>>` turned into raw pointers by `create_model`.
    unsafe { (model as *mut ModelInstance<T>).as_mut() }.ok_or_else(|| "null model handle".into())
}

/// # Safety
/// `p` must be null or valid for one write.
unsafe fn write<T>(p: *mut T, v: T) -> Result<(), String> {
    // SAFETY: guaranteed by the caller.
    unsafe { p.as_mut() }
        .map(|o| *o = v)
        .ok_or_else(|| "null output pointer".into())
}

unsafe extern "C" fn configure<T: Exported>(
    config: *const u8,
    len: usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: the host passes a UTF-8 buffer of `len` bytes.
        let config = unsafe { text(config, len) }?;
        T::configure(config)
    })
}

unsafe extern "C" fn describe<T: Exported>(out: *mut TaskInfo, err: *mut ErrBuf) -> Status {
    guard(err, || {
        let info = T::instance()?.info();
        // SAFETY: the host passes a valid `TaskInfo` to write.
        unsafe { out.as_mut() }
            .map(|o| *o = info)
            .ok_or("null output".into())
    })
}

unsafe extern "C" fn model_names<T: Exported>(
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        let names = T::instance()?.model_names().join(",");
        // SAFETY: the host passes `cap` writable bytes at `buf` and a valid `len`.
        unsafe { write_text(&names, buf, cap, len) }
    })
}

unsafe extern "C" fn model_params<T: Exported>(
    name: *const u8,
    name_len: usize,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: the host passes a UTF-8 buffer of the given length.
        let name = unsafe { text(name, name_len) }?;
        let params = Params::parse_for(&format!("model `{name}`"), "{}")?;
        T::instance()?.create_model(name, &params)?;
        let json = params.defaults_json();
        // SAFETY: the host passes `cap` writable bytes at `buf` and a valid `len`.
        unsafe { write_text(&json, buf, cap, len) }
    })
}

/// Copies as much of `text` as fits into `buf` and sets `len` to its full length.
///
/// # Safety
/// `buf` must have `cap` writable bytes (or be null with `cap == 0`); `len` valid or null.
unsafe fn write_text(text: &str, buf: *mut u8, cap: usize, len: *mut usize) -> Result<(), String> {
    // SAFETY: the caller guarantees `cap` writable bytes at `buf`.
    let dst = unsafe { slice_mut(buf, cap) }?;
    let n = text.len().min(cap);
    dst[..n].copy_from_slice(&text.as_bytes()[..n]);
    // SAFETY: the caller guarantees `len` is valid or null.
    unsafe { len.as_mut() }
        .map(|l| *l = text.len())
        .ok_or("null length".into())
}

unsafe extern "C" fn create_model<T: Exported>(
    name: *const u8,
    name_len: usize,
    params: *const u8,
    params_len: usize,
    seed: u64,
    out: *mut ModelHandle,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: the host passes UTF-8 buffers of the given lengths.
        let name = unsafe { text(name, name_len) }?;
        // SAFETY: as above.
        let params = unsafe { text(params, params_len) }?;
        let params = Params::parse_for(&format!("model `{name}`"), params)?;
        let task = T::instance()?;
        let m = task.create_model(name, &params)?;
        params.finish()?;
        let inst = ModelInstance::new(task, m, seed).map_err(|e| format!("model `{name}`: {e}"))?;
        let handle = Box::into_raw(Box::new(inst)) as *mut c_void;
        // SAFETY: `out` is a valid out-pointer from the host.
        unsafe { write(out, handle) }
    })
}

unsafe extern "C" fn drop_model<T: Exported>(model: ModelHandle) {
    if !model.is_null() {
        let _ = catch_unwind(|| {
            // SAFETY: the handle came from `create_model::<T>` and the host releases it once.
            drop(unsafe { Box::from_raw(model as *mut ModelInstance<T>) });
        });
    }
}

unsafe extern "C" fn model_info<T: Exported>(
    m: ModelHandle,
    out: *mut ModelInfo,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `out` a valid out-pointer.
        unsafe { write(out, model::<T>(m)?.info()) }
    })
}

unsafe extern "C" fn model_layers<T: Exported>(
    m: ModelHandle,
    out: *mut LayerDesc,
    cap: usize,
    len: *mut usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `out` has room for `cap` entries (or is null with 0).
        let layers = unsafe { model::<T>(m) }?.layers();
        // SAFETY: `len` is a valid out-pointer.
        unsafe { write(len, layers.len()) }?;
        if layers.len() <= cap && !layers.is_empty() {
            // SAFETY: as above.
            let out = unsafe { slice_mut(out, layers.len()) }?;
            out.copy_from_slice(&layers);
        }
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn read_batch<T: Exported>(
    split: u32,
    idx: *const u64,
    n: usize,
    x: *mut f32,
    x_len: usize,
    y: *mut f32,
    y_len: usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        let task = T::instance()?;
        let split = Split::from_index(split)?;
        // SAFETY: the host passes buffers of the given lengths.
        let (idx, x, y) = unsafe { (slice(idx, n)?, slice_mut(x, x_len)?, slice_mut(y, y_len)?) };
        let info = task.info();
        let per_x: usize = info.input_shape[..info.input_rank as usize]
            .iter()
            .map(|&d| d as usize)
            .product();
        check_len("x", x_len, n * per_x)?;
        check_len("y", y_len, n * info.target_width as usize)?;
        let size = info.split_sizes[split as usize];
        if let Some(&bad) = idx.iter().find(|&&i| i >= size) {
            return Err(format!(
                "index {bad} is out of range for the {split:?} split ({size} examples)"
            ));
        }
        task.read_batch(split, idx, x, y)
    })
}

unsafe extern "C" fn init<T: Exported>(m: ModelHandle, seed: u64, err: *mut ErrBuf) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle.
        unsafe { model::<T>(m) }?.init(seed);
        Ok(())
    })
}

unsafe extern "C" fn set_optimizer<T: Exported>(
    m: ModelHandle,
    opt: *const OptimizerDesc,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `opt` points to one descriptor.
        let (m, opt) = unsafe { (model::<T>(m)?, opt.as_ref()) };
        m.set_optimizer(opt.ok_or("null optimizer")?)
    })
}

unsafe extern "C" fn forward<T: Exported>(
    m: ModelHandle,
    batch: *const Batch,
    out: *mut f32,
    out_len: usize,
    targets: *mut f32,
    targets_len: usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `batch` points to one descriptor whose `idx` holds `n`
        // indices; `out` and `targets` (null when not wanted) have the lengths passed.
        let (m, b) = unsafe { (model::<T>(m)?, batch.as_ref().ok_or("null batch")?) };
        // SAFETY: as above.
        let (idx, out) = unsafe { (slice(b.idx, b.n)?, slice_mut(out, out_len)?) };
        let targets = if targets.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { slice_mut(targets, targets_len) }?)
        };
        let mode = match b.mode {
            MODE_EVAL => Mode::Eval,
            MODE_TRAIN => Mode::Train { seed: b.seed },
            k => return Err(format!("pass mode {k} does not exist (0 eval, 1 train)")),
        };
        m.forward(Split::from_index(b.split)?, idx, mode, out, targets)
    })
}

unsafe extern "C" fn step<T: Exported>(
    m: ModelHandle,
    dout: *const f32,
    dout_len: usize,
    lr: f32,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `dout` holds `dout_len` floats.
        let (m, dout) = unsafe { (model::<T>(m)?, slice(dout, dout_len)?) };
        m.step(dout, lr)
    })
}

unsafe extern "C" fn all_finite<T: Exported>(
    m: ModelHandle,
    out: *mut u32,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `out` a valid out-pointer.
        unsafe { write(out, model::<T>(m)?.all_finite() as u32) }
    })
}

unsafe extern "C" fn snapshot<T: Exported>(
    m: ModelHandle,
    buf: *mut f32,
    len: usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `buf` holds `len` floats.
        let (m, buf) = unsafe { (model::<T>(m)?, slice_mut(buf, len)?) };
        m.snapshot(buf)
    })
}

unsafe extern "C" fn restore<T: Exported>(
    m: ModelHandle,
    buf: *const f32,
    len: usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `buf` holds `len` floats.
        let (m, buf) = unsafe { (model::<T>(m)?, slice(buf, len)?) };
        m.restore(buf)
    })
}

unsafe extern "C" fn meta_lookahead<T: Exported>(
    m: ModelHandle,
    dout: *const f32,
    dout_len: usize,
    lr_eff: f32,
    weight_decay: f32,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `dout` holds `dout_len` floats.
        let (m, dout) = unsafe { (model::<T>(m)?, slice(dout, dout_len)?) };
        m.meta_lookahead(dout, lr_eff, weight_decay)
    })
}

unsafe extern "C" fn meta_pullback<T: Exported>(
    m: ModelHandle,
    dout: *const f32,
    dout_len: usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `dout` holds `dout_len` floats.
        let (m, dout) = unsafe { (model::<T>(m)?, slice(dout, dout_len)?) };
        m.meta_pullback(dout)
    })
}

unsafe extern "C" fn meta_jvp<T: Exported>(
    m: ModelHandle,
    out: *mut f32,
    out_len: usize,
    method: *mut u32,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `out` holds `out_len` floats; `method` an out-pointer.
        let (m, out) = unsafe { (model::<T>(m)?, slice_mut(out, out_len)?) };
        let how = m.meta_jvp(out)?;
        // SAFETY: as above.
        unsafe { write(method, how) }
    })
}

/// Exports `$task` (a type implementing [`Task`]) as this cdylib's evomal plugin.
#[macro_export]
macro_rules! export_task {
    ($task:ty) => {
        impl $crate::export::Exported for $task {
            fn cell() -> &'static ::std::sync::OnceLock<(
                ::std::string::String,
                ::std::result::Result<$task, ::std::string::String>,
            )> {
                static CELL: ::std::sync::OnceLock<(
                    ::std::string::String,
                    ::std::result::Result<$task, ::std::string::String>,
                )> = ::std::sync::OnceLock::new();
                &CELL
            }
        }

        /// The plugin entry point: see `evomal_sdk::abi`.
        #[unsafe(no_mangle)]
        pub extern "C" fn evomal_plugin_entry() -> *const $crate::abi::PluginDecl {
            static DECL: $crate::abi::PluginDecl = $crate::export::decl::<$task>();
            &DECL
        }
    };
}
