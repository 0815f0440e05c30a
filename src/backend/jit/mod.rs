//! Cranelift JIT: a loss expression compiled into a native batch kernel over f32 slices.
//!
//! A kernel reads `y`, `yhat` and one weight per node (f32), computes in f64 exactly as the
//! interpreter does (libm's `ln` and `tanh` are imported symbols bound to Rust's f64 functions),
//! and writes f32 results. Three kinds, by what they write: [`KernelKind::Loss`] the loss;
//! [`KernelKind::LossGrad`] the loss and `dM/dyhat`; [`KernelKind::Full`] those plus, for every
//! effective weight `j`, `dM/dphi_j` and `d2M/(dyhat dphi_j)` (row-major, `n_weights` columns).
//! Weights are an argument, so training them never recompiles.
//!
//! Memory: Cranelift's `JITModule` leaks its code pages when dropped, so code is compiled in
//! batches ([`JitBatch`], e.g. one per GP generation) into one module, and the module's memory is
//! freed when the last [`JitKernel`] of the batch is dropped.

mod lower;

use std::sync::{Arc, Mutex};

use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, ir};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};

use super::KernelKind;
use crate::expr::LossExpr;
use crate::expr::interp::FullBatchMut;

/// Failures at the JIT boundary.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    /// Cranelift has no backend for this machine, or rejected its settings.
    #[error("Cranelift cannot target this host: {0}")]
    Host(String),
    /// Cranelift rejected the code generated for an expression (a bug in the lowering).
    #[error("Cranelift rejected the kernel for `{expr}`: {msg}")]
    Codegen { expr: String, msg: String },
    /// A kernel was called through the entry point of another kind.
    #[error("kernel compiled as {compiled:?} was called as {called:?}")]
    WrongKind {
        compiled: KernelKind,
        called: KernelKind,
    },
    /// The expression is larger than a kernel of this kind compiles in reasonable time.
    #[error(
        "a {kind:?} kernel compiles expressions of at most {max} nodes (its compile time grows faster than the size), this one has {nodes}"
    )]
    TooLarge {
        kind: KernelKind,
        nodes: usize,
        max: usize,
    },
    /// A slice passed to a kernel has the wrong length.
    #[error("`{what}` has {found} elements, expected {expected}")]
    Length {
        what: &'static str,
        expected: usize,
        found: usize,
    },
}

/// The machine-code signature shared by all kinds; unused output pointers are null.
type KernelFn = unsafe extern "C" fn(
    y: *const f32,
    yhat: *const f32,
    weights: *const f32,
    n: usize,
    loss: *mut f32,
    dyhat: *mut f32,
    dphi: *mut f32,
    d2: *mut f32,
);

extern "C" fn host_ln(x: f64) -> f64 {
    x.ln()
}

extern "C" fn host_tanh(x: f64) -> f64 {
    x.tanh()
}

/// The largest expression a kernel of `kind` compiles: Cranelift's time grows faster than
/// linearly with the function's size, and the full kernel has a derivative per weight (its code
/// grows with the square of the node count). At these sizes a kernel compiles in about a second
/// here; GP's height limit keeps search candidates far below them.
pub fn max_nodes(kind: KernelKind) -> usize {
    match kind {
        KernelKind::Loss | KernelKind::LossGrad => 4_096,
        KernelKind::Full => 1_024,
    }
}

/// Compiles many kernels into one code module, freed together.
pub struct JitBatch {
    module: JITModule,
    ctx: Context,
    fctx: FunctionBuilderContext,
    libm: lower::Libm,
    pending: Vec<(FuncId, KernelKind, usize)>,
}

impl JitBatch {
    pub fn new() -> Result<JitBatch, JitError> {
        let mut flags = settings::builder();
        let host = |e: settings::SetError| JitError::Host(e.to_string());
        flags.set("opt_level", "speed").map_err(host)?;
        flags.set("use_colocated_libcalls", "false").map_err(host)?;
        flags.set("is_pic", "false").map_err(host)?;
        let isa = cranelift_native::builder()
            .map_err(|e| JitError::Host(e.to_string()))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| JitError::Host(e.to_string()))?;
        let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
        builder.symbol("evomal_ln", host_ln as *const u8);
        builder.symbol("evomal_tanh", host_tanh as *const u8);
        let mut module = JITModule::new(builder);
        let libm = lower::Libm::declare(&mut module).map_err(JitError::Host)?;
        Ok(JitBatch {
            ctx: module.make_context(),
            fctx: FunctionBuilderContext::new(),
            module,
            libm,
            pending: Vec::new(),
        })
    }

    /// Compiles one kernel; it becomes callable after [`JitBatch::finish`], at the index this
    /// returns.
    pub fn add(&mut self, e: &LossExpr, kind: KernelKind) -> Result<usize, JitError> {
        let max = max_nodes(kind);
        if e.len() > max {
            return Err(JitError::TooLarge {
                kind,
                nodes: e.len(),
                max,
            });
        }
        let codegen = |msg: String| JitError::Codegen {
            expr: crate::expr::abbreviate(&e.to_string()),
            msg,
        };
        let sig = lower::signature(&self.module);
        let name = format!("k{}", self.pending.len());
        let id = self
            .module
            .declare_function(&name, Linkage::Local, &sig)
            .map_err(|err| codegen(err.to_string()))?;
        self.ctx.func.signature = sig;
        self.ctx.func.name = ir::UserFuncName::user(0, id.as_u32());
        lower::build_kernel(
            &mut self.module,
            &mut self.ctx.func,
            &mut self.fctx,
            &self.libm,
            e,
            kind,
        );
        let res = self
            .module
            .define_function(id, &mut self.ctx)
            .map_err(|err| codegen(format!("{err:?}")));
        self.module.clear_context(&mut self.ctx);
        res?;
        self.pending.push((id, kind, e.len()));
        Ok(self.pending.len() - 1)
    }

    /// Links the batch and hands out its kernels, in the order they were added.
    pub fn finish(mut self) -> Result<Vec<JitKernel>, JitError> {
        self.module
            .finalize_definitions()
            .map_err(|e| JitError::Codegen {
                expr: "(batch)".into(),
                msg: e.to_string(),
            })?;
        let ptrs: Vec<_> = self
            .pending
            .iter()
            .map(|&(id, kind, n_nodes)| (self.module.get_finalized_function(id), kind, n_nodes))
            .collect();
        let code = Arc::new(CodeMemory(Mutex::new(Some(self.module))));
        Ok(ptrs
            .into_iter()
            .map(|(ptr, kind, n_nodes)| JitKernel {
                // SAFETY: `ptr` is a finalized function of `code`'s module, generated by
                // `lower::build_kernel` with exactly the `KernelFn` signature.
                func: unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) },
                code: Arc::clone(&code),
                kind,
                n_nodes,
            })
            .collect())
    }
}

/// Compiles a single kernel in its own module (convenient for one-off use; batch hot paths).
pub fn compile(e: &LossExpr, kind: KernelKind) -> Result<JitKernel, JitError> {
    let mut batch = JitBatch::new()?;
    batch.add(e, kind)?;
    Ok(batch
        .finish()?
        .pop()
        .expect("a batch of one kernel yields one kernel"))
}

/// Owns a finalized module; frees its code pages when the last kernel is gone.
struct CodeMemory(Mutex<Option<JITModule>>);

impl Drop for CodeMemory {
    fn drop(&mut self) {
        let module = self
            .0
            .get_mut()
            .map(Option::take)
            .unwrap_or_else(|p| p.into_inner().take());
        if let Some(module) = module {
            // SAFETY: every `JitKernel` holds an `Arc` of this value, so none is left to call
            // into the module's code once this runs.
            unsafe { module.free_memory() };
        }
    }
}

/// A compiled loss kernel; cheap to clone, callable from any thread.
#[derive(Clone)]
pub struct JitKernel {
    #[expect(
        dead_code,
        reason = "never read: holding it keeps `func`'s code pages alive"
    )]
    code: Arc<CodeMemory>,
    func: KernelFn,
    kind: KernelKind,
    n_nodes: usize,
}

impl JitKernel {
    pub fn kind(&self) -> KernelKind {
        self.kind
    }

    /// Kernel (a): `loss[i] = M(y[i], yhat[i])` under `weights` (one per node).
    pub fn loss(
        &self,
        y: &[f32],
        yhat: &[f32],
        weights: &[f32],
        loss: &mut [f32],
    ) -> Result<(), JitError> {
        self.check(
            KernelKind::Loss,
            y,
            yhat,
            weights,
            &[("loss", loss.len())],
            None,
        )?;
        // SAFETY: `check` verified the kind and every length; kind (a) writes only `loss`.
        unsafe { self.call(y, yhat, weights, loss.as_mut_ptr(), null(), null(), null()) };
        Ok(())
    }

    /// Kernel (b): the loss and `dM/dyhat`.
    pub fn loss_grad(
        &self,
        y: &[f32],
        yhat: &[f32],
        weights: &[f32],
        loss: &mut [f32],
        dyhat: &mut [f32],
    ) -> Result<(), JitError> {
        let outs = [("loss", loss.len()), ("dyhat", dyhat.len())];
        self.check(KernelKind::LossGrad, y, yhat, weights, &outs, None)?;
        // SAFETY: `check` verified the kind and every length; kind (b) writes `loss`, `dyhat`.
        unsafe {
            self.call(
                y,
                yhat,
                weights,
                loss.as_mut_ptr(),
                dyhat.as_mut_ptr(),
                null(),
                null(),
            )
        };
        Ok(())
    }

    /// Kernel (c): everything, with `dphi`/`d2` row-major `[element][weight]`.
    pub fn full(
        &self,
        y: &[f32],
        yhat: &[f32],
        weights: &[f32],
        out: FullBatchMut<'_>,
    ) -> Result<(), JitError> {
        let outs = [("loss", out.loss.len()), ("dyhat", out.dyhat.len())];
        let per_weight = [("dphi", out.dphi.len()), ("d2", out.d2.len())];
        self.check(KernelKind::Full, y, yhat, weights, &outs, Some(&per_weight))?;
        // SAFETY: `check` verified the kind and every length, so each of the four outputs holds
        // what kind (c) writes.
        unsafe {
            self.call(
                y,
                yhat,
                weights,
                out.loss.as_mut_ptr(),
                out.dyhat.as_mut_ptr(),
                out.dphi.as_mut_ptr(),
                out.d2.as_mut_ptr(),
            )
        };
        Ok(())
    }

    fn check(
        &self,
        called: KernelKind,
        y: &[f32],
        yhat: &[f32],
        weights: &[f32],
        outs: &[(&'static str, usize)],
        per_weight: Option<&[(&'static str, usize)]>,
    ) -> Result<(), JitError> {
        if called != self.kind {
            return Err(JitError::WrongKind {
                compiled: self.kind,
                called,
            });
        }
        let n = y.len();
        let k = self.n_nodes - 1;
        let per_weight = per_weight
            .unwrap_or(&[])
            .iter()
            .map(|&(w, len)| (w, len, n * k));
        let expected = [
            ("yhat", yhat.len(), n),
            ("weights", weights.len(), self.n_nodes),
        ]
        .into_iter()
        .chain(outs.iter().map(|&(w, len)| (w, len, n)))
        .chain(per_weight);
        for (what, found, expected) in expected {
            if found != expected {
                return Err(JitError::Length {
                    what,
                    expected,
                    found,
                });
            }
        }
        Ok(())
    }

    /// # Safety
    /// Every non-null output must hold what this kernel's kind writes for `y.len()` elements.
    #[allow(clippy::too_many_arguments)]
    unsafe fn call(
        &self,
        y: &[f32],
        yhat: &[f32],
        weights: &[f32],
        loss: *mut f32,
        dyhat: *mut f32,
        dphi: *mut f32,
        d2: *mut f32,
    ) {
        // SAFETY: the caller guarantees the outputs; the inputs are slices of the checked
        // lengths, and `self.code` keeps the function's memory alive for the call.
        unsafe {
            (self.func)(
                y.as_ptr(),
                yhat.as_ptr(),
                weights.as_ptr(),
                y.len(),
                loss,
                dyhat,
                dphi,
                d2,
            )
        }
    }
}

fn null() -> *mut f32 {
    std::ptr::null_mut()
}

#[cfg(test)]
mod tests;
