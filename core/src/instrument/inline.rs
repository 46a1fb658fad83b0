//! Small leaf functions inlined at their direct call sites, metered exactly
//! as if they had been called.
//!
//! A call costs every engine more than its instructions: wasmi sets up a
//! frame and zeroes the callee's locals, and the pass adds the fuel
//! counter's trip through its global and the stack check's; and the call
//! stays a call on every compiler. In sortmap (a store-heavy executor that
//! sorts words) 82 % of the calls are to one 40-instruction `memcmp`, about
//! 72,000 per transaction; in sigcheck, compiler-builtins' `__multi3` is
//! called about 77,000 times per transaction.
//!
//! # Which callees
//!
//! A defined function qualifies if it is a small leaf: at most [`MAX_OPS`]
//! operators, no call of any kind, no bulk memory, growth, table or
//! segment operation (the operations the rewrite treats specially, the
//! NaN canonicalisation and stores aside), at most one result, only
//! numeric locals, and at most [`MAX_SLOTS`] parameters, locals and
//! operand-stack slots. At most [`MAX_INLINEES`] qualify per module.
//!
//! Stores need marks under the barrier: a function that stores qualifies
//! there only if its callers can mark its stores (`super::callee`: no
//! control flow, every store through a parameter it never writes), and a
//! site inlines it only where they can (its pointer arguments are locals'
//! values plus constants) — the body's stores unmarked, the caller's marks
//! after it, as for the callee's unmarked copy. Elsewhere the site stays a
//! call, so such a caller keeps the stack budget as a caller does.
//!
//! # Metered as a call
//!
//! At an inlined site the rewrite emits what the callee's own rewrite
//! would run, against the caller's counters:
//!
//! - the callee's frame check: the caller's budget at its entry is checked
//!   against the caller's frame plus the callee's ([`super::cost::frame`]
//!   of the callee's own shape) — the budget a call would have found;
//! - the callee's first segment charged and checked, as at a function's
//!   entry; then its body, its segments charged and its loops checked as
//!   in the function; its `return`s branch to the end of the inlined block.
//!
//! So fuel and stack thresholds are those of the call, to the unit, and
//! the rejection happens at the same point. A trap inside the inlined code
//! is the callee's trap: every trap discards the instance.
//!
//! # Bounded growth
//!
//! The callee's parameters and locals become locals of the caller (one set
//! per callee, reused by each of its sites: a leaf's sites never nest),
//! set from the arguments and zeroed at each site. Only callers well
//! inside the engines' limits inline ([`CALLER_ROOM`]), at most
//! [`MAX_CALLER_SLOTS`] such locals and [`MAX_ADDED_OPS`] inlined
//! operators each, [`MAX_MODULE_OPS`] in all: an engine's native frame grows by at most those slots
//! and one callee's operand stack (40 slots, 320 bytes, against the 576
//! native bytes [`super::engine_stack_bytes`] allows the smallest frame
//! that calls, 72 bytes of the model; engines use about 3 per model byte), and a hostile module cannot make the
//! rewrite blow up. The engine-stacks conformance case recurses through
//! such a frame.

use super::body::{Amount, Body, nest, store_memarg};
use super::segments::{Analysis, analyse, bulk_or_table};
use super::{Plan, cost, err};
use crate::Result;
use std::collections::HashMap;
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{BlockType, Instruction as I, ValType};
use wasmparser::{FunctionBody, Operator, Parser, ValidPayload, Validator, WasmModuleResources};

/// The most operators a qualifying function may have.
pub const MAX_OPS: usize = 64;
/// The most parameters, locals and operand-stack slots of a qualifying
/// function.
pub const MAX_SLOTS: u32 = 20;
/// The most qualifying functions per module (each keeps its analysis while
/// the module is rewritten).
pub const MAX_INLINEES: usize = 1024;
/// The most inlined locals one caller gets.
pub const MAX_CALLER_SLOTS: u32 = 20;
/// The most operators inlined into one caller.
pub const MAX_ADDED_OPS: usize = 4096;
/// The most operators inlined into the whole module: a fifth of the
/// module limit on instructions, so a module at every limit loads within
/// the load budget (`bench-load`'s "inlined calls").
pub const MAX_MODULE_OPS: usize = 200_000;
/// Callers whose parameters, locals and deepest operand stack together
/// exceed this inline nothing (far below the engines' limits).
pub const CALLER_ROOM: u64 = 1000;

/// A qualifying function, ready to be emitted at a site.
pub(super) struct Inlinee<'w> {
    /// Its first pass: operators, segments.
    pub a: Analysis<'w>,
    /// Its parameter count.
    pub params: u32,
    /// The types of its parameters, then of its declared locals.
    pub locals: Vec<ValType>,
    /// The declared locals a read may find unwritten: zeroed at each
    /// site, as a call starts them ([`read_unwritten`]).
    pub zero: Vec<u32>,
    /// Its frame's stack cost ([`cost::frame`]).
    pub frame: u64,
    /// The type of the block it becomes (its result, if any).
    pub block: BlockType,
    /// It stores under the barrier: a site inlines it only where the
    /// caller can mark its stores (`Body::callee_marks`), and calls it
    /// elsewhere.
    pub marked: bool,
}

/// The qualifying functions of a module, by function index.
#[derive(Default)]
pub(super) struct Inlinees<'w> {
    pub by_func: HashMap<u32, Inlinee<'w>>,
    /// Operators inlined so far, against [`MAX_MODULE_OPS`] (callers are
    /// rewritten in order, so the same module inlines the same sites).
    pub inlined: std::cell::Cell<usize>,
}

/// Where one caller inlines: by operator index, the callee and the first
/// of its locals; and the types of the locals this adds.
#[derive(Default)]
pub(super) struct Sites {
    pub at: HashMap<usize, (u32, u32)>,
    pub locals: Vec<ValType>,
}

/// Whether an operator keeps a function from qualifying (a store only
/// unless `stores`).
fn disqualifies(op: &Operator<'_>, stores: bool) -> bool {
    use Operator as O;
    (!stores && store_memarg(op).is_some())
        || matches!(op, O::Call { .. } | O::CallIndirect { .. } | O::ReturnCall { .. } | O::ReturnCallIndirect { .. })
        || bulk_or_table(op)
}

/// Whether `body`'s operators alone let it qualify, stores allowed if
/// `stores` (read without validation: the module is validated before this
/// pass).
fn candidate(body: &FunctionBody<'_>, stores: bool) -> bool {
    let Ok(reader) = body.get_operators_reader() else { return false };
    let mut n = 0;
    for op in reader {
        n += 1;
        match op {
            Ok(op) if n <= MAX_OPS && !disqualifies(&op, stores) => {}
            _ => return false,
        }
    }
    true
}

/// Finds the qualifying functions among `wasm`'s defined ones.
pub(super) fn find<'w>(wasm: &'w [u8], plan: &Plan<'_>) -> Result<Inlinees<'w>> {
    let mut found = Inlinees::default();
    let mut validator = Validator::new_with_features(crate::module::abi_features());
    let mut allocs = wasmparser::FuncValidatorAllocations::default();
    let mut defined = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(err)?;
        let ValidPayload::Func(func, body) = validator.payload(&payload).map_err(err)? else { continue };
        let Some(sig) = plan.funcs.get(defined) else { break };
        let index = plan.imported_funcs + defined as u32;
        defined += 1;
        if found.by_func.len() == MAX_INLINEES {
            break;
        }
        let block = match sig.results.as_slice() {
            [] => BlockType::Empty,
            [one] => BlockType::Result(RoundtripReencoder.val_type(*one).map_err(err)?),
            _ => continue,
        };
        // Stores need no marks without the barrier; under it, only those
        // of a function whose callers can mark them (see `super::callee`).
        let stores = plan.tracking != super::Tracking::Barrier || plan.callees.by_func.contains_key(&index);
        if !candidate(&body, stores) {
            continue;
        }
        let mut fv = func.into_validator(std::mem::take(&mut allocs));
        let mut locals: Vec<ValType> = Vec::new();
        let resources = fv.resources();
        let ty = resources.type_id_of_function(index).map(|id| resources.sub_type_at_id(id).unwrap_func().params());
        for &p in ty.unwrap_or_default() {
            locals.push(RoundtripReencoder.val_type(p).map_err(err)?);
        }
        let mut reader = body.get_locals_reader().map_err(err)?;
        let mut fits = true;
        for _ in 0..reader.get_count() {
            let offset = reader.original_position();
            let (n, ty) = reader.read().map_err(err)?;
            fv.define_locals(offset, n, ty).map_err(err)?;
            fits &= locals.len() + n as usize <= MAX_SLOTS as usize;
            if fits {
                locals.extend(std::iter::repeat_n(RoundtripReencoder.val_type(ty).map_err(err)?, n as usize));
            }
        }
        let numeric = locals.iter().all(|t| matches!(t, ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64));
        if !fits || !numeric || locals.len() < sig.params as usize {
            allocs = fv.into_allocations();
            continue;
        }
        let a = analyse(&body, &mut fv, plan.imported_funcs)?;
        allocs = fv.into_allocations();
        if locals.len() as u32 + a.max_stack > MAX_SLOTS {
            continue;
        }
        let declared = locals.len() as u32 - sig.params;
        let frame = cost::frame(sig.params, declared, a.max_stack);
        let zero = read_unwritten(&a.ops, sig.params, locals.len());
        let marked = plan.tracking == super::Tracking::Barrier && a.ops.iter().any(|op| store_memarg(op).is_some());
        found.by_func.insert(index, Inlinee { a, params: sig.params, locals, zero, frame, block, marked });
    }
    Ok(found)
}

/// A control frame, as [`read_unwritten`] follows it.
struct Frame {
    /// Branches to it go back to its start.
    is_loop: bool,
    /// An `if` without `else` yet: its end is also reached with the
    /// locals written at its start.
    open_if: bool,
    /// The locals written when it was entered.
    entry: Vec<bool>,
    /// The locals written on every way to its end seen so far (`None`:
    /// none yet).
    out: Option<Vec<bool>>,
}

/// Joins `state` into the locals written on every way to a label.
fn join(out: &mut Option<Vec<bool>>, state: &[bool]) {
    match out {
        Some(o) => o.iter_mut().zip(state).for_each(|(o, s)| *o &= *s),
        None => *out = Some(state.to_vec()),
    }
}

/// The declared locals (indices from `params` to `total`) of a body some
/// read of which may run before any write on its path — structured
/// definite assignment: what is written on every way to a label is
/// written after it. A loop's start needs no second pass: every way back
/// to it came through its entry, and writes only accumulate along a path.
pub(super) fn read_unwritten(ops: &[Operator<'_>], params: u32, total: usize) -> Vec<u32> {
    let mut written: Vec<bool> = (0..total).map(|l| l < params as usize).collect();
    let mut unwritten_read = vec![false; total];
    let mut reachable = true;
    let mut frames = vec![Frame { is_loop: false, open_if: false, entry: written.clone(), out: None }];
    for op in ops {
        let depth = |d: u32, frames: &[Frame]| frames.len().checked_sub(1 + d as usize);
        let branch = |d: u32, frames: &mut Vec<Frame>, state: &[bool]| {
            if let Some(i) = depth(d, frames)
                && !frames[i].is_loop
            {
                join(&mut frames[i].out, state);
            }
        };
        match *op {
            Operator::LocalGet { local_index } if reachable => {
                if let Some(w) = written.get(local_index as usize)
                    && !w
                {
                    unwritten_read[local_index as usize] = true;
                }
            }
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => {
                if let Some(w) = written.get_mut(local_index as usize) {
                    *w = true;
                }
            }
            Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => frames.push(Frame {
                is_loop: matches!(op, Operator::Loop { .. }),
                open_if: matches!(op, Operator::If { .. }),
                entry: written.clone(),
                out: None,
            }),
            Operator::Else => {
                if let Some(f) = frames.last_mut() {
                    if reachable {
                        join(&mut f.out, &written);
                    }
                    f.open_if = false;
                    written.clone_from(&f.entry);
                    // The `else` arm is reachable if the `if` was.
                    reachable = true;
                }
            }
            Operator::End => {
                let Some(mut f) = frames.pop() else { break };
                if f.is_loop {
                    // Only falling through reaches a loop's end.
                } else {
                    if reachable {
                        join(&mut f.out, &written);
                    }
                    if f.open_if {
                        join(&mut f.out, &f.entry);
                    }
                    match f.out {
                        Some(out) => {
                            written = out;
                            reachable = true;
                        }
                        None => reachable = false,
                    }
                }
            }
            Operator::Br { relative_depth } if reachable => {
                branch(relative_depth, &mut frames, &written);
                reachable = false;
            }
            Operator::BrIf { relative_depth } if reachable => branch(relative_depth, &mut frames, &written),
            Operator::BrTable { ref targets } if reachable => {
                for d in targets.targets().flatten().chain([targets.default()]) {
                    branch(d, &mut frames, &written);
                }
                reachable = false;
            }
            Operator::Return | Operator::Unreachable => reachable = false,
            _ => {}
        }
    }
    (params..total as u32).filter(|&l| unwritten_read[l as usize]).collect()
}

impl Inlinees<'_> {
    /// The sites at which a caller whose first free local is `first_local`
    /// and whose operand stack is at most `max_stack` deep inlines, among
    /// `ops`.
    pub fn sites(&self, ops: &[Operator<'_>], first_local: u32, max_stack: u32) -> Sites {
        let mut sites = Sites::default();
        if self.by_func.is_empty() || u64::from(first_local) + u64::from(max_stack) > CALLER_ROOM {
            return sites;
        }
        let (mut bases, mut added) = (HashMap::new(), 0);
        for (i, op) in ops.iter().enumerate() {
            let Operator::Call { function_index } = *op else { continue };
            let Some(callee) = self.by_func.get(&function_index) else { continue };
            if added + callee.a.ops.len() > MAX_ADDED_OPS.min(MAX_MODULE_OPS - self.inlined.get()) {
                break;
            }
            let base = match bases.get(&function_index) {
                Some(base) => *base,
                None => {
                    if sites.locals.len() + callee.locals.len() > MAX_CALLER_SLOTS as usize {
                        continue;
                    }
                    let base = first_local + sites.locals.len() as u32;
                    sites.locals.extend_from_slice(&callee.locals);
                    bases.insert(function_index, base);
                    base
                }
            };
            added += callee.a.ops.len();
            sites.at.insert(i, (function_index, base));
        }
        self.inlined.set(self.inlined.get() + added);
        sites
    }
}

impl Body<'_> {
    /// Whether operator `i`, `op`, calls a wasm function (one it does not
    /// inline).
    pub(super) fn calls_out(&self, i: usize, op: &Operator<'_>) -> bool {
        match op {
            Operator::Call { function_index } => {
                *function_index >= self.plan.imported_funcs
                    && self.sites.at.get(&i).is_none_or(|(f, _)| self.inlinees.by_func.get(f).is_none_or(|c| c.marked))
            }
            Operator::CallIndirect { .. } => true,
            _ => false,
        }
    }

    /// Emits the call `op` of `callee`, whose locals start at `base`,
    /// inlined (its arguments on the operand stack) — or, for a callee
    /// whose stores this caller cannot mark, as a call.
    pub(super) fn inline(&mut self, op: &Operator<'_>, (callee, base): (u32, u32)) -> Result<()> {
        let inlinees = self.inlinees;
        let Some(c) = inlinees.by_func.get(&callee) else { return Err(err("no inlinee")) };
        // Marked as the caller's own stores once the inlined body ran (a
        // trap discards the instance).
        let marks = match c.marked {
            false => Vec::new(),
            true => match self.callee_marks(callee) {
                Some((_, marks)) => marks,
                None => return self.op(op.clone()),
            },
        };
        // The callee's frame check and its entry's charge: the budget it
        // would have found is the caller's at entry less the caller's frame.
        if self.metering() {
            let total = i64::from(self.frame) + c.frame as i64;
            let total = i32::try_from(total).map_err(|_| err("an inlined frame past the stack model"))?;
            self.ins(I::LocalGet(self.t.stack)).ins(I::I32Const(total)).ins(I::I32LtS);
            self.end_if(self.plan.layout.stack_flag());
        }
        self.charge(Amount::Const(c.a.segments[0]), true);
        for p in (0..c.params).rev() {
            self.ins(I::LocalSet(base + p));
        }
        // A call's declared locals start at zero: those it may read so.
        for &k in &c.zero {
            match c.locals[k as usize] {
                ValType::I32 => self.ins(I::I32Const(0)),
                ValType::I64 => self.ins(I::I64Const(0)),
                ValType::F32 => self.ins(I::F32Const(0.0.into())),
                _ => self.ins(I::F64Const(0.0.into())),
            };
            self.ins(I::LocalSet(base + k));
        }
        self.f.instruction(&I::Block(c.block));
        let (last, mut segment, mut open) = (c.a.ops.len() - 1, 0, 0u32);
        for (j, op) in c.a.ops.iter().enumerate() {
            if j == last {
                self.f.instruction(&I::End);
                break;
            }
            nest(&mut open, op);
            match *op {
                Operator::Return => {
                    self.f.instruction(&I::Br(open));
                }
                Operator::LocalGet { local_index } => {
                    self.ins(I::LocalGet(base + local_index));
                }
                Operator::LocalSet { local_index } => {
                    self.ins(I::LocalSet(base + local_index));
                }
                Operator::LocalTee { local_index } => {
                    self.ins(I::LocalTee(base + local_index));
                }
                // Unmarked (see above); the value through a temporary, as
                // the barrier's own stores do (wasmi 2.0 cannot translate
                // some stores of a value that is also their address).
                _ if store_memarg(op).is_some() => {
                    let ins = RoundtripReencoder.instruction(op.clone()).map_err(err)?;
                    let value = self.t.for_stored(&ins);
                    self.ins(I::LocalSet(value)).ins(I::LocalGet(value));
                    self.f.instruction(&ins);
                }
                _ => self.op(op.clone())?,
            }
            self.charge_next(&c.a, j, &mut segment);
        }
        for (local, plus, offset) in marks {
            self.marked_store(local, plus, offset);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::read_unwritten;
    use wasmparser::{Operator, Parser, Payload};

    /// The declared locals the one function of `func` (text) may read
    /// unwritten.
    fn zeroed(func: &str) -> Vec<u32> {
        let wasm = wat::parse_str(format!("(module {func})")).expect("valid text");
        for p in Parser::new(0).parse_all(&wasm) {
            if let Payload::CodeSectionEntry(body) = p.expect("valid") {
                let params = 1;
                let declared: u32 = body.get_locals_reader().unwrap().into_iter().map(|l| l.unwrap().0).sum();
                let ops: Vec<Operator<'_>> =
                    body.get_operators_reader().unwrap().into_iter().map(|o| o.unwrap()).collect();
                return read_unwritten(&ops, params, (params + declared) as usize);
            }
        }
        unreachable!("one function")
    }

    #[test]
    fn only_locals_a_path_reads_before_writing_are_zeroed() {
        // Written before the read on every path, through branches out of a
        // loop (compiler-builtins' `memcmp`, as in sortmap).
        let memcmp = "(func (param i32) (result i32) (local i32 i32)
            (local.set 1 (i32.const 0))
            (block $out
              (block $diff
                (loop $next
                  (br_if $diff (i32.ne (local.tee 2 (local.get 0)) (i32.const 7)))
                  (br_if $out (local.get 0))
                  (br $next)))
              (local.set 1 (local.get 2)))
            (local.get 1))";
        assert_eq!(zeroed(memcmp), Vec::<u32>::new());
        // Written on one arm only.
        assert_eq!(
            zeroed(
                "(func (param i32) (result i32) (local i32)
            (if (local.get 0) (then (local.set 1 (i32.const 5)))) (local.get 1))"
            ),
            [1]
        );
        // On both arms: written.
        assert_eq!(
            zeroed(
                "(func (param i32) (result i32) (local i32)
            (if (local.get 0) (then (local.set 1 (i32.const 5))) (else (local.set 1 (i32.const 6))))
            (local.get 1))"
            ),
            Vec::<u32>::new()
        );
        // A branch past the write.
        assert_eq!(
            zeroed(
                "(func (param i32) (result i32) (local i32)
            (block (br_if 0 (local.get 0)) (local.set 1 (i32.const 5))) (local.get 1))"
            ),
            [1]
        );
        // Read in a loop before this iteration writes it: the last one's.
        assert_eq!(
            zeroed(
                "(func (param i32) (result i32) (local i32 i32)
            (loop (local.set 2 (local.get 1)) (local.set 1 (i32.const 5)) (br_if 0 (local.get 0)))
            (local.get 2))"
            ),
            [1]
        );
        // Read after the loop, written in it: every way out wrote it.
        assert_eq!(
            zeroed(
                "(func (param i32) (result i32) (local i32)
            (loop (local.set 1 (i32.const 5)) (br_if 0 (local.get 0))) (local.get 1))"
            ),
            Vec::<u32>::new()
        );
        // Dead code reads nothing; a read in a `br_table` target is checked.
        assert_eq!(
            zeroed(
                "(func (param i32) (result i32) (local i32 i32)
            (block (block (br_table 0 1 (local.get 0))) (local.set 2 (i32.const 1)) (return (local.get 1)))
            (local.get 2))"
            ),
            [1, 2]
        );
    }
}
