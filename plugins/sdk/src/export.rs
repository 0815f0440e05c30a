//! The bridge from the safe [`Task`]/[`Model`] traits to the C ABI: generic `extern "C"` shims
//! that check pointers, catch panics and report errors through the caller's `ErrBuf`.
//! [`crate::export_task!`] instantiates them for a plugin's task type.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use crate::abi::*;
use crate::{Model, Params, Split, Task};

/// The process-wide instance of a task: `export_task!` provides the cell, the defaults do the
/// rest.
pub trait Instance: Task {
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
pub const fn decl<T: Instance>() -> PluginDecl {
    PluginDecl {
        abi_version: ABI_VERSION,
        decl_size: size_of::<PluginDecl>() as u32,
        name: T::NAME.as_ptr(),
        name_len: T::NAME.len(),
        configure: configure::<T>,
        describe: describe::<T>,
        model_names: model_names::<T>,
        create_model: create_model::<T>,
        drop_model,
        model_info,
        init_params,
        read_batch: read_batch::<T>,
        forward,
        backward,
        model_layers,
        jvp,
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
/// `model` must come from `create_model` and not be released yet.
unsafe fn model<'a>(model: ModelHandle) -> Result<&'a mut Box<dyn Model>, String> {
    // SAFETY: handles are `Box<Box<dyn Model>>` turned into raw pointers by `create_model`.
    unsafe { (model as *mut Box<dyn Model>).as_mut() }.ok_or_else(|| "null model handle".into())
}

fn check_len(what: &str, got: usize, want: usize) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("`{what}` has {got} floats, expected {want}"))
    }
}

unsafe extern "C" fn configure<T: Instance>(
    config: *const u8,
    len: usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: the host passes a UTF-8 buffer of `len` bytes.
        let config =
            std::str::from_utf8(unsafe { slice(config, len) }?).map_err(|e| e.to_string())?;
        T::configure(config)
    })
}

unsafe extern "C" fn describe<T: Instance>(out: *mut TaskInfo, err: *mut ErrBuf) -> Status {
    guard(err, || {
        let info = T::instance()?.info();
        // SAFETY: the host passes a valid `TaskInfo` to write.
        unsafe { out.as_mut() }
            .map(|o| *o = info)
            .ok_or("null output".into())
    })
}

unsafe extern "C" fn model_names<T: Instance>(
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        let names = T::instance()?.model_names().join(",");
        // SAFETY: `buf` has `cap` writable bytes, `len` is a valid out-pointer.
        let dst = unsafe { slice_mut(buf, cap) }?;
        let n = names.len().min(cap);
        dst[..n].copy_from_slice(&names.as_bytes()[..n]);
        // SAFETY: as above.
        unsafe { len.as_mut() }
            .map(|l| *l = names.len())
            .ok_or("null length".into())
    })
}

unsafe extern "C" fn create_model<T: Instance>(
    name: *const u8,
    name_len: usize,
    params: *const u8,
    params_len: usize,
    out: *mut ModelHandle,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: the host passes UTF-8 buffers of the given lengths.
        let name =
            std::str::from_utf8(unsafe { slice(name, name_len) }?).map_err(|e| e.to_string())?;
        // SAFETY: as above.
        let params = std::str::from_utf8(unsafe { slice(params, params_len) }?)
            .map_err(|e| e.to_string())?;
        let params = Params::parse_for(&format!("model `{name}`"), params)?;
        let m = T::instance()?.create_model(name, &params)?;
        params.finish()?;
        let handle = Box::into_raw(Box::new(m)) as *mut c_void;
        // SAFETY: `out` is a valid out-pointer from the host.
        unsafe { out.as_mut() }
            .map(|o| *o = handle)
            .ok_or("null output".into())
    })
}

unsafe extern "C" fn drop_model(model: ModelHandle) {
    if !model.is_null() {
        let _ = catch_unwind(|| {
            // SAFETY: the handle came from `create_model` and the host releases it once.
            drop(unsafe { Box::from_raw(model as *mut Box<dyn Model>) });
        });
    }
}

unsafe extern "C" fn model_info(m: ModelHandle, out: *mut ModelInfo, err: *mut ErrBuf) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle.
        let m = unsafe { model(m) }?;
        let info = ModelInfo {
            n_params: m.n_params() as u64,
            n_outputs: m.n_outputs() as u32,
            has_jvp: m.has_jvp() as u32,
        };
        // SAFETY: `out` is a valid out-pointer.
        unsafe { out.as_mut() }
            .map(|o| *o = info)
            .ok_or("null output".into())
    })
}

unsafe extern "C" fn model_layers(
    m: ModelHandle,
    out: *mut LayerDesc,
    cap: usize,
    len: *mut usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `out` has room for `cap` entries (or is null with 0).
        let m = unsafe { model(m) }?;
        let layers = m.layers();
        // SAFETY: `len` is a valid out-pointer.
        unsafe { len.as_mut() }
            .map(|l| *l = layers.len())
            .ok_or("null length")?;
        if layers.len() <= cap && !layers.is_empty() {
            // SAFETY: as above.
            let out = unsafe { slice_mut(out, layers.len()) }?;
            out.copy_from_slice(&layers);
        }
        Ok(())
    })
}

unsafe extern "C" fn init_params(
    m: ModelHandle,
    seed: u64,
    params: *mut f32,
    n: usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle; `params` holds `n` floats.
        let (m, params) = unsafe { (model(m)?, slice_mut(params, n)?) };
        check_len("params", n, m.n_params())?;
        m.init(seed, params);
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn read_batch<T: Instance>(
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

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn forward(
    m: ModelHandle,
    params: *const f32,
    n_params: usize,
    x: *const f32,
    batch: usize,
    out: *mut f32,
    out_len: usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle and each buffer has the length passed with it.
        let m = unsafe { model(m) }?;
        check_len("params", n_params, m.n_params())?;
        check_len("out", out_len, batch * m.n_outputs())?;
        let x_len = m.input_len() * batch;
        // SAFETY: as above; `x` holds one example of `input_len` floats per batch row.
        let (params, x, out) = unsafe {
            (
                slice(params, n_params)?,
                slice(x, x_len)?,
                slice_mut(out, out_len)?,
            )
        };
        m.forward(params, x, batch, out)
    })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn backward(
    m: ModelHandle,
    params: *const f32,
    n_params: usize,
    dout: *const f32,
    dout_len: usize,
    grad: *mut f32,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle and each buffer has the length passed with it.
        let m = unsafe { model(m) }?;
        check_len("params", n_params, m.n_params())?;
        // SAFETY: as above; `grad` has one float per parameter.
        let (params, dout, grad) = unsafe {
            (
                slice(params, n_params)?,
                slice(dout, dout_len)?,
                slice_mut(grad, n_params)?,
            )
        };
        m.backward(params, dout, grad)
    })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn jvp(
    m: ModelHandle,
    params: *const f32,
    n_params: usize,
    x: *const f32,
    batch: usize,
    tangent: *const f32,
    out: *mut f32,
    out_len: usize,
    err: *mut ErrBuf,
) -> Status {
    guard(err, || {
        // SAFETY: `m` is a live handle and each buffer has the length passed with it.
        let m = unsafe { model(m) }?;
        if !m.has_jvp() {
            return Err("this model implements no JVP".into());
        }
        check_len("params", n_params, m.n_params())?;
        check_len("out", out_len, batch * m.n_outputs())?;
        let x_len = m.input_len() * batch;
        // SAFETY: as above; `tangent` has one float per parameter.
        let (params, x, tangent, out) = unsafe {
            (
                slice(params, n_params)?,
                slice(x, x_len)?,
                slice(tangent, n_params)?,
                slice_mut(out, out_len)?,
            )
        };
        m.jvp(params, x, batch, tangent, out)
    })
}

/// Exports `$task` (a type implementing [`Task`]) as this cdylib's evomal plugin.
#[macro_export]
macro_rules! export_task {
    ($task:ty) => {
        impl $crate::export::Instance for $task {
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
