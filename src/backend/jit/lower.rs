//! Expression -> CLIF: one function with a counted loop over the elements. The arithmetic of
//! each element is emitted by running `expr::deriv`'s sweeps on [`ClifArith`], whose "values"
//! are Cranelift SSA values.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    AbiParam, BlockArg, FuncRef, Function, InstBuilder, MemFlagsData, Signature, Value, types,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};

use super::KernelKind;
use crate::expr::LossExpr;
use crate::expr::deriv::{Arith, Sweep};

/// The imported libm functions, declared once per module.
pub(super) struct Libm {
    ln: FuncId,
    tanh: FuncId,
}

impl Libm {
    pub(super) fn declare(module: &mut JITModule) -> Result<Libm, String> {
        let mut sig = module.make_signature();
        sig.params.push(AbiParam::new(types::F64));
        sig.returns.push(AbiParam::new(types::F64));
        let mut import = |name| {
            module
                .declare_function(name, Linkage::Import, &sig)
                .map_err(|e| e.to_string())
        };
        Ok(Libm {
            ln: import("evomal_ln")?,
            tanh: import("evomal_tanh")?,
        })
    }
}

/// `(y, yhat, weights, n, loss, dyhat, dphi, d2)`, matching `super::KernelFn`.
pub(super) fn signature(module: &JITModule) -> Signature {
    let ptr = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    for _ in 0..8 {
        sig.params.push(AbiParam::new(ptr));
    }
    sig
}

pub(super) fn build_kernel(
    module: &mut JITModule,
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    libm: &Libm,
    e: &LossExpr,
    kind: KernelKind,
) {
    let ptr = module.target_config().pointer_type();
    let ln = module.declare_func_in_func(libm.ln, func);
    let tanh = module.declare_func_in_func(libm.tanh, func);
    let mut b = FunctionBuilder::new(func, fctx);
    let mem = MemFlagsData::trusted();

    let entry = b.create_block();
    let header = b.create_block();
    let body = b.create_block();
    let exit = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.append_block_param(header, ptr);

    // Entry: load and widen the weights once; they are loop invariants.
    b.switch_to_block(entry);
    let [
        y_ptr,
        yhat_ptr,
        w_ptr,
        n,
        loss_ptr,
        dyhat_ptr,
        dphi_ptr,
        d2_ptr,
    ] = <[Value; 8]>::try_from(b.block_params(entry)).expect("eight parameters");
    let weights: Vec<Value> = (0..e.len())
        .map(|j| {
            let w = b.ins().load(types::F32, mem, w_ptr, (4 * j) as i32);
            b.ins().fpromote(types::F64, w)
        })
        .collect();
    let zero = b.ins().iconst(ptr, 0);
    b.ins().jump(header, &[BlockArg::Value(zero)]);

    // Header: i < n ?
    b.switch_to_block(header);
    let i = b.block_params(header)[0];
    let more = b.ins().icmp(IntCC::UnsignedLessThan, i, n);
    b.ins().brif(more, body, &[], exit, &[]);

    // Body: one element.
    b.switch_to_block(body);
    let off = b.ins().ishl_imm_u(i, 2);
    let load = |b: &mut FunctionBuilder, base: Value| {
        let addr = b.ins().iadd(base, off);
        let x = b.ins().load(types::F32, mem, addr, 0);
        b.ins().fpromote(types::F64, x)
    };
    let y = load(&mut b, y_ptr);
    let yhat = load(&mut b, yhat_ptr);
    let store = |b: &mut FunctionBuilder, base: Value, byte_off: Value, at: i32, x: Value| {
        let x = b.ins().fdemote(types::F32, x);
        let addr = b.ins().iadd(base, byte_off);
        b.ins().store(mem, x, addr, at);
    };
    {
        let mut a = ClifArith {
            b: &mut b,
            ln,
            tanh,
        };
        let mut sweep = Sweep::new(y);
        let out = match kind {
            KernelKind::Loss => sweep.forward(&mut a, e, y, yhat, &weights, false),
            KernelKind::LossGrad => sweep.forward(&mut a, e, y, yhat, &weights, true),
            KernelKind::Full => sweep.full(&mut a, e, y, yhat, &weights),
        };
        let or_zero = |a: &mut ClifArith, x: Option<Value>| x.unwrap_or_else(|| a.constant(0.0));
        let loss = out.loss;
        store(a.b, loss_ptr, off, 0, loss);
        if kind != KernelKind::Loss {
            let d = or_zero(&mut a, out.dyhat);
            store(a.b, dyhat_ptr, off, 0, d);
        }
        if kind == KernelKind::Full {
            let k = e.n_weights();
            let row = a.b.ins().imul_imm_s(i, (4 * k) as i64);
            for j in 0..k {
                let dphi = or_zero(&mut a, out.dphi[j]);
                store(a.b, dphi_ptr, row, (4 * j) as i32, dphi);
                let d2 = or_zero(&mut a, out.d2[j]);
                store(a.b, d2_ptr, row, (4 * j) as i32, d2);
            }
        }
    }
    let next = b.ins().iadd_imm_s(i, 1);
    b.ins().jump(header, &[BlockArg::Value(next)]);

    b.switch_to_block(exit);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(module.target_config());
}

/// [`Arith`] that emits f64 Cranelift instructions into the current block.
struct ClifArith<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    ln: FuncRef,
    tanh: FuncRef,
}

impl ClifArith<'_, '_> {
    fn call(&mut self, f: FuncRef, x: Value) -> Value {
        let inst = self.b.ins().call(f, &[x]);
        self.b.inst_results(inst)[0]
    }
}

impl Arith for ClifArith<'_, '_> {
    type V = Value;
    type C = Value;
    fn constant(&mut self, c: f64) -> Value {
        self.b.ins().f64const(c)
    }
    fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }
    fn neg(&mut self, a: Value) -> Value {
        self.b.ins().fneg(a)
    }
    fn abs(&mut self, a: Value) -> Value {
        self.b.ins().fabs(a)
    }
    fn sqrt(&mut self, a: Value) -> Value {
        self.b.ins().sqrt(a)
    }
    fn ln(&mut self, a: Value) -> Value {
        self.call(self.ln, a)
    }
    fn tanh(&mut self, a: Value) -> Value {
        self.call(self.tanh, a)
    }
    fn lt(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(FloatCC::LessThan, a, b)
    }
    fn le(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(FloatCC::LessThanOrEqual, a, b)
    }
    fn select(&mut self, c: Value, then: Value, otherwise: Value) -> Value {
        self.b.ins().select(c, then, otherwise)
    }
}
