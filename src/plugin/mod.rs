//! Task plugins: loading a `cdylib` through the training ABI (`evomal_sdk::abi`) and calling it
//! through safe handles. The only module that names `libloading`.
//!
//! A [`TaskPlugin`] keeps its library loaded for as long as it or any [`PluginModel`] created
//! from it lives. Every failure is a [`PluginError`] that names the plugin file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use evomal_sdk::Mode;
use evomal_sdk::abi::{
    ABI_VERSION, Batch, ENTRY_SYMBOL, ErrBuf, JVP_EXACT, LayerDesc, MODE_EVAL, MODE_TRAIN,
    ModelHandle, ModelInfo, PluginDecl, STATUS_OK, STATUS_PANIC, Status, TaskInfo,
};
use evomal_sdk::optim::OptimizerConfig;
use libloading::Library;

mod checks;
use checks::{TargetRule, check_inputs, check_library_file, check_task_info};

/// Failures at the plugin boundary; each names the plugin file.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PluginError {
    /// A plugin path that names nothing readable.
    #[error("plugin `{path}`: {reason}")]
    Missing { path: PathBuf, reason: String },
    /// No plugin of that name in the searched directories.
    #[error(
        "plugin `{what}` not found (looked in: {looked}); build it with `cargo build --release -p evomal-plugin-{what}` or give its path"
    )]
    NotFound { what: String, looked: String },
    /// The path names something other than a regular file (a directory, a device).
    #[error("`{path}` is {what}, not a plugin library")]
    NotAFile { path: PathBuf, what: &'static str },
    /// The file exists but is not a whole shared library (checked before the loader maps it,
    /// since mapping a truncated library can kill the process with SIGBUS).
    #[error("`{path}` is not a loadable library: {reason}")]
    Malformed { path: PathBuf, reason: String },
    /// The file exists but the dynamic loader rejected it.
    #[error("`{path}` is not a loadable library: {reason}")]
    NotLoadable { path: PathBuf, reason: String },
    /// The library has no `evomal_plugin_entry` symbol.
    #[error("`{path}` is not an evomal plugin: it exports no `{ENTRY_SYMBOL}`")]
    NotAPlugin { path: PathBuf },
    /// The plugin was built against another version of the training ABI.
    #[error(
        "`{path}` was built for training ABI v{found}, but this evomal speaks v{ABI_VERSION}: rebuild the plugin against this evomal-sdk"
    )]
    AbiMismatch { path: PathBuf, found: u32 },
    /// A model name the plugin does not offer.
    #[error("`{path}` has no model `{name}`; its models: {known}")]
    UnknownModel {
        path: PathBuf,
        name: String,
        known: String,
    },
    /// The plugin reported an error.
    #[error("`{path}`: {msg}")]
    Failed { path: PathBuf, msg: String },
    /// The plugin described its task, or returned data, that the host cannot use.
    #[error("`{path}` returned unusable data: {msg}")]
    BadData { path: PathBuf, msg: String },
    /// The plugin panicked (caught at the boundary; the host goes on).
    #[error("`{path}` {msg}")]
    Panicked { path: PathBuf, msg: String },
}

struct Loaded {
    path: PathBuf,
    decl: *const PluginDecl,
    // Declared last: dropped after everything that may point into it.
    _lib: Library,
}

// SAFETY: the declaration is immutable static data of the loaded library, and the ABI requires
// its entry points to be callable from any thread (model handles are used by one at a time).
unsafe impl Send for Loaded {}
// SAFETY: as above; `Loaded` has no interior mutability.
unsafe impl Sync for Loaded {}

impl Loaded {
    fn decl(&self) -> &PluginDecl {
        // SAFETY: `decl` points into `_lib`, which lives as long as `self`.
        unsafe { &*self.decl }
    }

    /// Calls one entry point with an error buffer and maps its status.
    fn call(&self, f: impl FnOnce(*mut ErrBuf) -> Status) -> Result<(), PluginError> {
        let mut msg = vec![0u8; 4096];
        let mut err = ErrBuf {
            ptr: msg.as_mut_ptr(),
            cap: msg.len(),
            len: 0,
        };
        let status = f(&mut err);
        if status == STATUS_OK {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&msg[..err.len.min(msg.len())]).into_owned();
        let path = self.path.clone();
        Err(if status == STATUS_PANIC {
            PluginError::Panicked { path, msg: text }
        } else {
            PluginError::Failed { path, msg: text }
        })
    }
}

/// A loaded task plugin.
#[derive(Clone)]
pub struct TaskPlugin {
    inner: Arc<Loaded>,
    name: String,
    info: TaskInfo,
    models: Vec<String>,
}

impl TaskPlugin {
    /// Loads a plugin by path, or by task name from the build output (see [`find`]), and
    /// configures its task with `config_json` (a JSON object; `{}` for the defaults).
    pub fn open(name_or_path: &str, config_json: &str) -> Result<TaskPlugin, PluginError> {
        TaskPlugin::load(&find(name_or_path)?, config_json)
    }

    /// Loads the plugin file at `path`, checking the ABI version before anything else, then
    /// configures its task with `config_json`.
    pub fn load(path: &Path, config_json: &str) -> Result<TaskPlugin, PluginError> {
        let path = path.to_path_buf();
        check_library_file(&path)?;
        // SAFETY: loading runs the library's initialisers; we load only files the user names as
        // plugins, and evomal plugins have no initialisers beyond Rust's.
        let lib = unsafe { Library::new(&path) }.map_err(|e| PluginError::NotLoadable {
            path: path.clone(),
            reason: with_sources(&e),
        })?;
        // SAFETY: the symbol, if present, has the ABI's entry signature (checked by name, which
        // is versioned by the declaration it returns).
        let entry = unsafe {
            lib.get::<unsafe extern "C" fn() -> *const PluginDecl>(ENTRY_SYMBOL.as_bytes())
        }
        .map_err(|_| PluginError::NotAPlugin { path: path.clone() })?;
        // SAFETY: calling the entry has no preconditions; it returns a pointer to a static.
        let decl = unsafe { entry() };
        if decl.is_null() {
            return Err(PluginError::NotAPlugin { path });
        }
        // SAFETY: every ABI version starts with `abi_version: u32, decl_size: u32`; read only
        // those until both match.
        let (found, size) = unsafe { (*(decl as *const u32), *(decl as *const u32).add(1)) };
        if found != ABI_VERSION || size as usize != size_of::<PluginDecl>() {
            return Err(PluginError::AbiMismatch { path, found });
        }
        let inner = Arc::new(Loaded {
            path,
            decl,
            _lib: lib,
        });
        let d = inner.decl();
        // SAFETY: `name` is a static UTF-8 string of `name_len` bytes in the library.
        let name_bytes = unsafe { std::slice::from_raw_parts(d.name, d.name_len) };
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        // SAFETY: `configure` reads a UTF-8 buffer of the given length.
        inner.call(|err| unsafe { (d.configure)(config_json.as_ptr(), config_json.len(), err) })?;
        let mut info = TaskInfo::default();
        // SAFETY: `describe` writes one `TaskInfo`.
        inner.call(|err| unsafe { (d.describe)(&mut info, err) })?;
        check_task_info(&info).map_err(|msg| PluginError::BadData {
            path: inner.path.clone(),
            msg,
        })?;
        let models = model_names(&inner)?;
        Ok(TaskPlugin {
            inner,
            name,
            info,
            models,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn info(&self) -> &TaskInfo {
        &self.info
    }

    pub fn model_names(&self) -> &[String] {
        &self.models
    }

    /// Floats per input example.
    pub fn input_len(&self) -> usize {
        self.info.input_shape[..self.info.input_rank as usize]
            .iter()
            .map(|&d| d as usize)
            .product()
    }

    /// Creates model `name` with `params_json` (a JSON object), initialised from seed 0.
    pub fn create_model(&self, name: &str, params_json: &str) -> Result<PluginModel, PluginError> {
        if !self.models.iter().any(|m| m == name) {
            return Err(PluginError::UnknownModel {
                path: self.inner.path.clone(),
                name: name.to_string(),
                known: self.models.join(", "),
            });
        }
        new_model(&self.inner, name, params_json, TargetRule::of(&self.info))
    }

    /// The settings model `name` reads from `[task.params]`, with their defaults (a JSON
    /// object; `null` where a setting has no default).
    pub fn model_params(&self, name: &str) -> Result<String, PluginError> {
        let d = self.inner.decl();
        let mut buf = vec![0u8; 1024];
        loop {
            let mut len = 0usize;
            let (p, cap) = (buf.as_mut_ptr(), buf.len());
            // SAFETY: `name` is valid for its length; `buf` has `cap` writable bytes; `len` is
            // an out-pointer.
            self.inner.call(|err| unsafe {
                (d.model_params)(name.as_ptr(), name.len(), p, cap, &mut len, err)
            })?;
            if len <= buf.len() {
                return Ok(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
            buf.resize(len, 0);
        }
    }

    /// Copies examples `idx` of split `split` (0 train, 1 valid, 2 test) into `x` and `y`.
    pub fn read_batch(
        &self,
        split: u32,
        idx: &[u64],
        x: &mut [f32],
        y: &mut [f32],
    ) -> Result<(), PluginError> {
        let d = self.inner.decl();
        self.inner.call(|err| {
            // SAFETY: each buffer is valid for the length passed with it.
            unsafe {
                (d.read_batch)(
                    split,
                    idx.as_ptr(),
                    idx.len(),
                    x.as_mut_ptr(),
                    x.len(),
                    y.as_mut_ptr(),
                    y.len(),
                    err,
                )
            }
        })?;
        check_inputs(split, idx, x)
            .and_then(|()| TargetRule::of(&self.info).check(split, idx, y))
            .map_err(|msg| PluginError::BadData {
                path: self.inner.path.clone(),
                msg,
            })
    }
}

/// `e` and its chain of sources: libloading's own message is only "dlopen failed", the
/// loader's reason is its source.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text = format!("{text}: {cause}");
        next = cause.source();
    }
    text
}

fn model_names(inner: &Loaded) -> Result<Vec<String>, PluginError> {
    let d = inner.decl();
    let mut buf = vec![0u8; 256];
    loop {
        let mut len = 0usize;
        // SAFETY: `buf` has `buf.len()` writable bytes; `len` is an out-pointer.
        inner.call(|err| unsafe { (d.model_names)(buf.as_mut_ptr(), buf.len(), &mut len, err) })?;
        if len <= buf.len() {
            let names = String::from_utf8_lossy(&buf[..len]);
            return Ok(names
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect());
        }
        buf.resize(len, 0);
    }
}

/// Creates model `name` of `plugin` with `params_json`, initialised from seed 0.
fn new_model(
    plugin: &Arc<Loaded>,
    name: &str,
    params_json: &str,
    targets: TargetRule,
) -> Result<PluginModel, PluginError> {
    let d = plugin.decl();
    let mut handle: ModelHandle = std::ptr::null_mut();
    plugin.call(|err| {
        // SAFETY: both strings are valid for their lengths; `handle` is an out-pointer.
        unsafe {
            (d.create_model)(
                name.as_ptr(),
                name.len(),
                params_json.as_ptr(),
                params_json.len(),
                0,
                &mut handle,
                err,
            )
        }
    })?;
    // Owned from here on, so an error below still releases the handle.
    let mut model = PluginModel {
        plugin: Arc::clone(plugin),
        handle,
        info: ModelInfo::default(),
        name: name.to_string(),
        params_json: params_json.to_string(),
        targets,
        announced_fd: false,
    };
    let mut info = ModelInfo::default();
    // SAFETY: `handle` is live; `info` is an out-pointer.
    plugin.call(|err| unsafe { (d.model_info)(handle, &mut info, err) })?;
    model.info = info;
    Ok(model)
}

/// A model instance in a plugin (since ABI v3): it owns its parameters, state and optimiser, and
/// reads its own inputs; released through the plugin when dropped.
pub struct PluginModel {
    plugin: Arc<Loaded>,
    handle: ModelHandle,
    /// What it was created as, for [`PluginModel::sibling`].
    name: String,
    params_json: String,
    info: ModelInfo,
    /// What the task's targets must be; checked on every batch that returns them.
    targets: TargetRule,
    /// Whether a finite-difference JVP was reported already.
    announced_fd: bool,
}

/// How [`PluginModel::meta_jvp`] computed its Jacobian-vector product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JvpMethod {
    /// The model's own JVP.
    Exact,
    /// A central finite difference, since the model has no JVP; `first` is true the first
    /// time for this model, so the caller can say so once.
    CentralDifference { first: bool },
}

// SAFETY: the SDK requires models to be `Send`; a `PluginModel` is not `Sync`, so one thread at
// a time uses the handle, as the ABI demands.
unsafe impl Send for PluginModel {}

impl PluginModel {
    /// Another instance of this model (the same plugin, name and settings), initialised from
    /// seed 0: for hosts that use several at once.
    pub fn sibling(&self) -> Result<PluginModel, PluginError> {
        new_model(&self.plugin, &self.name, &self.params_json, self.targets)
    }

    pub fn n_params(&self) -> usize {
        self.info.n_params as usize
    }

    /// Floats of [`PluginModel::snapshot`].
    pub fn snapshot_len(&self) -> usize {
        self.info.snapshot_len as usize
    }

    pub fn n_outputs(&self) -> usize {
        self.info.n_outputs as usize
    }

    pub fn has_jvp(&self) -> bool {
        self.info.has_jvp != 0
    }

    /// Calls one entry point on this model's handle.
    fn call(
        &self,
        f: impl FnOnce(&PluginDecl, ModelHandle, *mut ErrBuf) -> Status,
    ) -> Result<(), PluginError> {
        let (d, h) = (self.plugin.decl(), self.handle);
        self.plugin.call(|err| f(d, h, err))
    }

    /// The model as a stack of layers (empty when the plugin does not describe it so).
    pub fn layers(&self) -> Result<Vec<LayerDesc>, PluginError> {
        let mut layers = vec![LayerDesc::default(); 16];
        loop {
            let mut len = 0usize;
            let cap = layers.len();
            let out = layers.as_mut_ptr();
            // SAFETY: the handle is live; `layers` has room for `cap` entries; `len` is an
            // out-pointer.
            self.call(|d, h, err| unsafe { (d.model_layers)(h, out, cap, &mut len, err) })?;
            if len <= cap {
                layers.truncate(len);
                return Ok(layers);
            }
            layers.resize(len, LayerDesc::default());
        }
    }

    /// Fresh parameters and state from `seed`; the optimiser's state starts afresh.
    pub fn init(&mut self, seed: u64) -> Result<(), PluginError> {
        // SAFETY: the handle is live.
        self.call(|d, h, err| unsafe { (d.init)(h, seed, err) })
    }

    /// The optimiser the model steps with (its state starts afresh).
    pub fn set_optimizer(&mut self, cfg: &OptimizerConfig) -> Result<(), PluginError> {
        let desc = cfg.to_desc();
        // SAFETY: the handle is live; `desc` outlives the call.
        self.call(|d, h, err| unsafe { (d.set_optimizer)(h, &desc, err) })?;
        // The optimiser's state, and so the snapshot's length, depends on the optimiser.
        let mut info = ModelInfo::default();
        // SAFETY: the handle is live; `info` is an out-pointer.
        self.call(|d, h, err| unsafe { (d.model_info)(h, &mut info, err) })?;
        self.info = info;
        Ok(())
    }

    /// Outputs for examples `idx` of `split` (0 train, 1 valid, 2 test) in `mode`; `targets`,
    /// when given, receives their targets.
    pub fn forward(
        &mut self,
        split: u32,
        idx: &[u64],
        mode: Mode,
        out: &mut [f32],
        targets: Option<&mut [f32]>,
    ) -> Result<(), PluginError> {
        let (mode, seed) = match mode {
            Mode::Train { seed } => (MODE_TRAIN, seed),
            Mode::Eval => (MODE_EVAL, 0),
        };
        let batch = Batch {
            split,
            mode,
            seed,
            idx: idx.as_ptr(),
            n: idx.len(),
        };
        let mut targets = targets;
        let (t_ptr, t_len) = match targets.as_deref_mut() {
            Some(t) => (t.as_mut_ptr(), t.len()),
            None => (std::ptr::null_mut(), 0),
        };
        let (o_ptr, o_len) = (out.as_mut_ptr(), out.len());
        // SAFETY: the handle is live; `batch.idx` holds `n` indices; `out` and `targets` are
        // valid for the lengths passed (targets null when not wanted).
        self.call(|d, h, err| unsafe { (d.forward)(h, &batch, o_ptr, o_len, t_ptr, t_len, err) })?;
        match targets {
            Some(t) => self
                .targets
                .check(split, idx, t)
                .map_err(|msg| PluginError::BadData {
                    path: self.plugin.path.clone(),
                    msg,
                }),
            None => Ok(()),
        }
    }

    /// Back-propagates `dout` through the last forward pass and steps the optimiser.
    pub fn step(&mut self, dout: &[f32], lr: f32) -> Result<(), PluginError> {
        // SAFETY: the handle is live; `dout` is valid for its length.
        self.call(|d, h, err| unsafe { (d.step)(h, dout.as_ptr(), dout.len(), lr, err) })
    }

    /// Whether every parameter and state value is finite.
    pub fn all_finite(&self) -> Result<bool, PluginError> {
        let mut ok = 0u32;
        // SAFETY: the handle is live; `ok` is an out-pointer.
        self.call(|d, h, err| unsafe { (d.all_finite)(h, &mut ok, err) })?;
        Ok(ok != 0)
    }

    /// The whole state: parameters first, then buffers and the optimiser's state.
    pub fn snapshot(&self) -> Result<Vec<f32>, PluginError> {
        let mut buf = vec![0.0f32; self.snapshot_len()];
        let (p, n) = (buf.as_mut_ptr(), buf.len());
        // SAFETY: the handle is live; `buf` holds `n` floats.
        self.call(|d, h, err| unsafe { (d.snapshot)(h, p, n, err) })?;
        Ok(buf)
    }

    pub fn restore(&mut self, snapshot: &[f32]) -> Result<(), PluginError> {
        // SAFETY: the handle is live; `snapshot` is valid for its length.
        self.call(|d, h, err| unsafe { (d.restore)(h, snapshot.as_ptr(), snapshot.len(), err) })
    }

    /// The parameters `init(seed)` gives, into `params` (for hosts that train the model
    /// themselves).
    pub fn initial_params(&mut self, seed: u64, params: &mut [f32]) -> Result<(), PluginError> {
        self.init(seed)?;
        let all = self.snapshot()?;
        params.copy_from_slice(&all[..self.n_params()]);
        Ok(())
    }

    /// After a training forward pass at theta0 whose loss gradient is `dout`: keeps theta0 and
    /// moves to `theta1 = theta0 - lr_eff (J^T dout + wd theta0)`.
    pub fn meta_lookahead(
        &mut self,
        dout: &[f32],
        lr_eff: f32,
        wd: f32,
    ) -> Result<(), PluginError> {
        // SAFETY: the handle is live; `dout` is valid for its length.
        self.call(|d, h, err| unsafe {
            (d.meta_lookahead)(h, dout.as_ptr(), dout.len(), lr_eff, wd, err)
        })
    }

    /// After a forward pass at theta1: `v = J(theta1)^T dout`, kept in the model.
    pub fn meta_pullback(&mut self, dout: &[f32]) -> Result<(), PluginError> {
        // SAFETY: the handle is live; `dout` is valid for its length.
        self.call(|d, h, err| unsafe { (d.meta_pullback)(h, dout.as_ptr(), dout.len(), err) })
    }

    /// Back at theta0: `out = J(theta0) v` on the look-ahead's training batch.
    pub fn meta_jvp(&mut self, out: &mut [f32]) -> Result<JvpMethod, PluginError> {
        let mut method = JVP_EXACT;
        let (p, n) = (out.as_mut_ptr(), out.len());
        // SAFETY: the handle is live; `out` holds `n` floats; `method` is an out-pointer.
        self.call(|d, h, err| unsafe { (d.meta_jvp)(h, p, n, &mut method, err) })?;
        if method == JVP_EXACT {
            return Ok(JvpMethod::Exact);
        }
        let first = !self.announced_fd;
        self.announced_fd = true;
        Ok(JvpMethod::CentralDifference { first })
    }
}

impl Drop for PluginModel {
    fn drop(&mut self) {
        // SAFETY: the handle came from this plugin's `create_model` and is released once.
        unsafe { (self.plugin.decl().drop_model)(self.handle) }
    }
}

/// The library file of the plugin named `name_or_path`: a path as given, or
/// `<prefix>evomal_plugin_<name><suffix>` in `$EVOMAL_PLUGIN_DIR`, next to the running binary,
/// or in `target/release` and `target/debug` under the current directory.
pub fn find(name_or_path: &str) -> Result<PathBuf, PluginError> {
    let as_path = Path::new(name_or_path);
    if name_or_path.contains(std::path::MAIN_SEPARATOR)
        || name_or_path.ends_with(std::env::consts::DLL_SUFFIX)
    {
        return Ok(as_path.to_path_buf());
    }
    let file = format!(
        "{}evomal_plugin_{}{}",
        std::env::consts::DLL_PREFIX,
        name_or_path.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("EVOMAL_PLUGIN_DIR") {
        dirs.push(dir.into());
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.to_path_buf());
        // Test binaries live in `target/<profile>/deps`.
        if let Some(up) = dir.parent() {
            dirs.push(up.to_path_buf());
        }
    }
    dirs.push("target/release".into());
    dirs.push("target/debug".into());
    dirs.iter()
        .map(|d| d.join(&file))
        .find(|p| p.is_file())
        .ok_or_else(|| PluginError::NotFound {
            what: name_or_path.to_string(),
            looked: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}
