//! Marks of a small callee's stores made by its callers: a function that
//! only writes through pointers it was passed — compiler-builtins'
//! `__multi3` (a 128-bit product written to `*out`), called a few hundred
//! thousand times per Ed25519 signature check — pays a conditional mark
//! per call; its caller, which passes `frame + 48`, can mark that page with
//! its own stores through `frame` (one group per straight run, or once per
//! loop).
//!
//! # Which callees
//!
//! A defined function qualifies if its body has no control flow and no
//! calls (so every store in it runs whenever it returns), no bulk memory,
//! table or growth operation, at most [`MAX_OPS`] operators, and if every
//! store's address is a parameter it never writes plus constants
//! (`i32.add`/`i32.sub` of an `i32.const`), within a window smaller than a
//! dirty page per parameter. The module is validated before this pass, so
//! the operand stack can be followed without a validator.
//!
//! # Two versions
//!
//! The function itself keeps its marks: the host, a table or a caller
//! whose argument is not a local's value may call it. An unmarked copy is
//! appended (after the module's functions and `hoist`'s helper; at most
//! [`MAX_CLONES`]), metered exactly like the original, so fuel and stack
//! are the same whichever runs. A call whose pointer arguments are locals'
//! current values plus constants calls the copy, and the caller records the
//! callee's lowest and highest store through each as its own stores through
//! that local ([`super::dirty`]'s grouping, or `hoist`): marked after the
//! call returned, so from addresses the callee's stores checked — a trap
//! discards the instance, as for every deferred mark.

use super::body::store_memarg;
use super::{DIRTY_PAGE, FuncSig};
use std::collections::HashMap;
use wasmparser::{FunctionBody, ModuleArity, Operator};

/// The most operators a qualifying function may have (the copies stay small).
pub const MAX_OPS: usize = 256;
/// The most copies one module gets.
pub const MAX_CLONES: usize = 64;

/// A store of a qualifying function through a parameter: `param + c`
/// (wrapping `i32` arithmetic), static offset `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Store {
    pub c: i32,
    pub offset: u64,
}

impl Store {
    fn reach(self) -> i64 {
        i64::from(self.c) + self.offset as i64
    }
}

/// A qualifying function: its unmarked copy, and per pointer parameter its
/// lowest and highest store.
#[derive(Debug, Clone)]
pub(crate) struct Callee {
    /// The copy's function index.
    pub copy: u32,
    /// `(parameter, lowest store, highest store)`.
    pub params: Vec<(u32, Store, Store)>,
}

/// The qualifying functions of a module, by function index.
#[derive(Debug, Clone, Default)]
pub(crate) struct Callees {
    pub by_func: HashMap<u32, Callee>,
    /// Defined-function indices (0-based among defined) of the originals,
    /// in the order of their copies.
    pub originals: Vec<u32>,
}

/// A value on the operand stack, as far as this pass follows it.
#[derive(Debug, Clone, Copy)]
enum Val {
    /// An unwritten parameter plus a constant.
    Param(u32, i32),
    Const(i32),
    Other,
}

/// Answers no question about the module: only the operators whose arity
/// needs none are followed.
struct NoModule;

impl ModuleArity for NoModule {
    fn sub_type_at(&self, _: u32) -> Option<&wasmparser::SubType> {
        None
    }
    fn tag_type_arity(&self, _: u32) -> Option<(u32, u32)> {
        None
    }
    fn type_index_of_function(&self, _: u32) -> Option<u32> {
        None
    }
    fn func_type_of_cont_type(&self, _: &wasmparser::ContType) -> Option<&wasmparser::FuncType> {
        None
    }
    fn sub_type_of_ref_type(&self, _: &wasmparser::RefType) -> Option<&wasmparser::SubType> {
        None
    }
    fn control_stack_height(&self) -> u32 {
        0
    }
    fn label_block(&self, _: u32) -> Option<(wasmparser::BlockType, wasmparser::FrameKind)> {
        None
    }
}

/// The stores of `body` (a function with `params` parameters) through its
/// parameters, if it qualifies.
fn qualifies(body: &FunctionBody<'_>, params: u32) -> Option<Vec<(u32, Store)>> {
    let ops: Vec<Operator<'_>> = body.get_operators_reader().ok()?.into_iter().collect::<Result<_, _>>().ok()?;
    if ops.len() > MAX_OPS {
        return None;
    }
    let written: Vec<u32> = ops
        .iter()
        .filter_map(|op| match op {
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => Some(*local_index),
            _ => None,
        })
        .collect();
    let (mut stack, mut stores) = (Vec::<Val>::new(), Vec::new());
    let last = ops.len() - 1;
    for (i, op) in ops.iter().enumerate() {
        use Operator as O;
        if i == last {
            break; // the body's `end`
        }
        if let Some(memarg) = store_memarg(op) {
            if memarg.memory != 0 {
                return None;
            }
            stack.pop()?;
            match stack.pop()? {
                Val::Param(p, c) => stores.push((p, Store { c, offset: memarg.offset })),
                _ => return None,
            }
            continue;
        }
        // Control flow (a store might not run), calls, and what marks or
        // moves memory and tables of its own.
        let unfollowed = matches!(op, O::Block { .. } | O::Call { .. } | O::CallIndirect { .. })
            || super::segments::bulk_or_table(op);
        if unfollowed || super::segments::ends_segment(op) {
            return None;
        }
        let pushed = match (op, stack.len().checked_sub(2).map(|j| stack[j]), stack.last().copied()) {
            (O::LocalGet { local_index }, ..) if *local_index < params && !written.contains(local_index) => {
                Val::Param(*local_index, 0)
            }
            (O::I32Const { value }, ..) => Val::Const(*value),
            (O::I32Add, Some(Val::Param(p, c)), Some(Val::Const(k)))
            | (O::I32Add, Some(Val::Const(k)), Some(Val::Param(p, c))) => Val::Param(p, c.wrapping_add(k)),
            (O::I32Sub, Some(Val::Param(p, c)), Some(Val::Const(k))) => Val::Param(p, c.wrapping_sub(k)),
            _ => Val::Other,
        };
        let (pops, pushes) = op.operator_arity(&NoModule)?;
        stack.truncate(stack.len().checked_sub(pops as usize)?);
        stack.extend(std::iter::repeat_n(pushed, pushes as usize));
    }
    (!stores.is_empty()).then_some(stores)
}

/// Finds the qualifying functions among the defined ones (`funcs`, the
/// first at index `imported`); their copies are numbered from `first_copy`.
pub(crate) fn find(wasm: &[u8], imported: u32, funcs: &[FuncSig], first_copy: u32) -> Callees {
    let mut found = Callees::default();
    let bodies = wasmparser::Parser::new(0).parse_all(wasm).filter_map(|p| match p {
        Ok(wasmparser::Payload::CodeSectionEntry(body)) => Some(body),
        _ => None,
    });
    for (defined, body) in bodies.enumerate() {
        if found.originals.len() == MAX_CLONES {
            break;
        }
        let Some(sig) = funcs.get(defined) else { break };
        let Some(stores) = qualifies(&body, sig.params) else { continue };
        let mut params: Vec<(u32, Store, Store)> = Vec::new();
        for (p, s) in stores {
            match params.iter_mut().find(|(q, ..)| *q == p) {
                Some((_, lo, hi)) => {
                    if s.reach() < lo.reach() {
                        *lo = s;
                    }
                    if s.reach() > hi.reach() {
                        *hi = s;
                    }
                }
                None => params.push((p, s, s)),
            }
        }
        if params.iter().any(|(_, lo, hi)| hi.reach() - lo.reach() >= DIRTY_PAGE as i64) {
            continue;
        }
        let copy = first_copy + found.originals.len() as u32;
        found.by_func.insert(imported + defined as u32, Callee { copy, params });
        found.originals.push(defined as u32);
    }
    found
}
