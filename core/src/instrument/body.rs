//! The rewrite of one function body: fuel and stack metering, NaN
//! canonicalisation, growth guards and flags (dirty tracking is
//! [`super::dirty`]'s). The guest's memory accesses stay as compiled; the
//! host's cells and flags are in the books memory ([`super::Layout`]).
//!
//! # Where the fuel counter lives
//!
//! While a function runs, its remaining fuel is a *local* of that function
//! (a register for a compiler, a register slot for wasmi): a segment's
//! charge is a subtraction, not a load and store of a global — what
//! wasmtime does for its own fuel. The count crosses calls through the
//! module's fuel global: written before every call, read after it, read at
//! entry and written at every way out (one wrapping block). Host functions
//! see the count in [`super::Layout::fuel_cell`]: written before a host
//! call, read after it. A `call_indirect` may reach either, so both are
//! written before it and the smaller read after it — a wasm callee only
//! ever lowers the global, a host callee the cell. A trap leaves the count
//! unwritten; that is safe because every trap discards the instance.

use super::dirty::Grouping;
use super::hoist::{self, Hoisting, find_loops};
use super::inline::{Inlinees, Sites};
use super::layout::books_arg;
use super::segments::{Analysis, analyse, leaves};
use super::{ADDED_LOCALS, Plan, cost, err};
use crate::module::engine_limits::{LOCALS, SLOTS};
use crate::{Error, Result};
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{BlockType, Function, Instruction as I, ValType};
use wasmparser::Operator;

/// The types of [`Temps`], in the order of their indices: the counters
/// first, which nearly every function uses, so a function declares only
/// the temporaries up to the last it uses — an interpreter zeroes every
/// declared local on each call (wasmi: 0.7 M host instructions per sortmap
/// transaction for the ten, most of them unused).
const TEMP_TYPES: [ValType; ADDED_LOCALS as usize] = [
    ValType::I64, // fuel
    ValType::I32, // stack
    ValType::I32, // addr
    ValType::I32, // i32v
    ValType::I64, // i64v
    ValType::I32, // len
    ValType::I32, // src
    ValType::I64, // amount
    ValType::F32, // f32v
    ValType::F64, // f64v
];

/// Temporaries a rewritten body uses, allocated after its own locals (in
/// the order of [`TEMP_TYPES`]).
#[derive(Clone, Copy)]
pub(super) struct Temps {
    pub addr: u32,
    pub i32v: u32,
    pub i64v: u32,
    pub f32v: u32,
    pub f64v: u32,
    pub len: u32,
    pub src: u32,
    pub amount: u32,
    /// The function's fuel counter.
    pub fuel: u32,
    /// The stack budget at the function's entry.
    pub stack: u32,
}

impl Temps {
    /// The temporary for the value a store `ins` stores (any other
    /// operator: the `f64` one).
    pub(super) fn for_stored(&self, ins: &I<'_>) -> u32 {
        match ins {
            I::I32Store(_) | I::I32Store8(_) | I::I32Store16(_) => self.i32v,
            I::I64Store(_) | I::I64Store8(_) | I::I64Store16(_) | I::I64Store32(_) => self.i64v,
            I::F32Store(_) => self.f32v,
            _ => self.f64v,
        }
    }
}

/// What a fuel charge subtracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Amount {
    /// A static cost.
    Const(u64),
    /// The `i64` in the `amount` temporary.
    Temp,
}

/// Whether a float instruction may produce a NaN (and so gets its result
/// canonicalised): `Some(true)` for f64 results, `Some(false)` for f32.
fn nan_producing(op: &Operator<'_>) -> Option<bool> {
    use Operator as O;
    match op {
        O::F32Add
        | O::F32Sub
        | O::F32Mul
        | O::F32Div
        | O::F32Min
        | O::F32Max
        | O::F32Sqrt
        | O::F32Ceil
        | O::F32Floor
        | O::F32Trunc
        | O::F32Nearest
        | O::F32DemoteF64 => Some(false),
        O::F64Add
        | O::F64Sub
        | O::F64Mul
        | O::F64Div
        | O::F64Min
        | O::F64Max
        | O::F64Sqrt
        | O::F64Ceil
        | O::F64Floor
        | O::F64Trunc
        | O::F64Nearest
        | O::F64PromoteF32 => Some(true),
        _ => None,
    }
}

/// The memory argument of `op` if it is a store to linear memory.
pub(super) fn store_memarg<'a>(op: &'a Operator<'_>) -> Option<&'a wasmparser::MemArg> {
    use Operator as O;
    match op {
        O::I32Store { memarg }
        | O::I64Store { memarg }
        | O::F32Store { memarg }
        | O::F64Store { memarg }
        | O::I32Store8 { memarg }
        | O::I32Store16 { memarg }
        | O::I64Store8 { memarg }
        | O::I64Store16 { memarg }
        | O::I64Store32 { memarg } => Some(memarg),
        _ => None,
    }
}

/// Counts the control frames `op` opens or closes into `open`.
pub(super) fn nest(open: &mut u32, op: &Operator<'_>) {
    match op {
        Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => *open += 1,
        Operator::End => *open -= 1,
        _ => {}
    }
}

/// `body`, emitted into a function without locals, with `locals`
/// declared instead.
fn with_locals(locals: Vec<(u32, ValType)>, body: Function) -> Function {
    let bytes = body.into_raw_body();
    let mut f = Function::new(locals);
    // Past the empty locals vector: one byte, its count 0.
    f.raw(bytes[1..].iter().copied());
    f
}

/// One function body being rewritten.
pub(super) struct Body<'p> {
    pub f: Function,
    pub t: Temps,
    pub plan: &'p Plan<'p>,
    /// The barrier's grouping of stores ([`super::dirty`]).
    pub grouping: Grouping,
    /// The barrier's marks hoisted out of loops ([`super::hoist`]).
    pub hoisting: Hoisting,
    /// An unmarked copy of a callee whose callers mark its stores
    /// ([`super::callee`]).
    pub unmarked: bool,
    /// Marks without a test of the map (a function of very many stores,
    /// see [`Body::mark_page`]).
    pub branchless_marks: bool,
    /// One past the highest local index the rewrite emitted (through
    /// [`Body::ins`]): which temporaries must be declared.
    pub locals_used: u32,
    /// The module's functions that may be inlined ([`super::inline`]).
    pub inlinees: &'p Inlinees<'p>,
    /// Where this function inlines them.
    pub sites: &'p Sites,
    /// This function's frame ([`cost::frame`]).
    pub frame: i32,
}

impl Body<'_> {
    /// The rewritten body of a function with `params` parameters, whose
    /// results make the wrapping block's type `block`; `entry` if the host
    /// may call it; `unmarked` for a callee's copy whose callers mark its
    /// stores.
    pub fn rewrite<T: wasmparser::WasmModuleResources>(
        body: &wasmparser::FunctionBody<'_>,
        fv: &mut wasmparser::FuncValidator<T>,
        params: u32,
        block: BlockType,
        (entry, unmarked): (bool, bool),
        plan: &Plan<'_>,
        inlinees: &Inlinees<'_>,
    ) -> Result<Function> {
        let mut locals = Vec::new();
        let mut declared = 0u32;
        let mut reader = body.get_locals_reader().map_err(err)?;
        for _ in 0..reader.get_count() {
            let offset = reader.original_position();
            let (n, ty) = reader.read().map_err(err)?;
            fv.define_locals(offset, n, ty).map_err(err)?;
            locals.push((n, RoundtripReencoder.val_type(ty).map_err(err)?));
            declared += n;
        }
        let original = params + declared;
        if u64::from(original) + u64::from(ADDED_LOCALS) > 50_000 {
            return Err(Error::ModuleLimit {
                what: "locals per function (parameters and the host's temporaries included)",
                actual: u64::from(original + ADDED_LOCALS),
                limit: 50_000,
            });
        }
        let a = analyse(body, fv, plan.imported_funcs)?;
        // The inlined callees' locals follow the function's own, before
        // the temporaries.
        let sites = if unmarked { Sites::default() } else { inlinees.sites(&a.ops, original, a.max_stack) };
        locals.extend(sites.locals.iter().map(|&ty| (1, ty)));
        let count = original + sites.locals.len() as u32;
        let t = Temps {
            fuel: count,
            stack: count + 1,
            addr: count + 2,
            i32v: count + 3,
            i64v: count + 4,
            len: count + 5,
            src: count + 6,
            amount: count + 7,
            f32v: count + 8,
            f64v: count + 9,
        };
        // Hoisting needs to know every store of a loop before it marks
        // the loop's ways out: a first pass finds them, and only if it
        // hoisted anything does a second emit the marks.
        // Only where the engines' limits leave ample room for hoisting's
        // locals (and its marks' few operands): the module limits stay as
        // documented, counting the temporaries alone.
        let added = u64::from(count + ADDED_LOCALS + hoist::ADDED_LOCALS);
        let room = added <= LOCALS && 2 * added + u64::from(a.max_stack) + 64 <= SLOTS;
        // Marks are hoisted only under the barrier, and never in a callee's
        // unmarked copy: there the loops need not be read.
        let allowed = room && plan.tracking == super::Tracking::Barrier && !unmarked;
        let loops = if allowed { find_loops(&a.ops) } else { Default::default() };
        let first = Hoisting::gather(loops, count + ADDED_LOCALS, allowed, a.ops.len());
        let shape = (params, declared, block, entry, unmarked);
        let inline = (inlinees, &sites);
        let (f, hoisting, used) = Self::emit(&a, t, first, shape, plan, inline)?;
        let Some((hoisting, added)) = hoisting.finish() else {
            // Only the temporaries up to the last one used.
            locals.extend(TEMP_TYPES.iter().take(used.saturating_sub(count) as usize).map(|&ty| (1, ty)));
            return Ok(with_locals(locals, f));
        };
        // Hoisting's locals follow every temporary.
        locals.extend(TEMP_TYPES.map(|ty| (1, ty)));
        locals.push((added, ValType::I64));
        let (f, _, _) = Self::emit(&a, t, hoisting, shape, plan, inline)?;
        Ok(with_locals(locals, f))
    }

    /// Emits the rewritten body of `a` into a function without locals
    /// ([`with_locals`] declares them once their number is known); `shape`
    /// is the function's parameters, declared locals, wrapping block type,
    /// and whether it is an entry and an unmarked copy. Also returns one
    /// past the highest local index used.
    fn emit(
        a: &Analysis<'_>,
        t: Temps,
        hoisting: Hoisting,
        (params, declared, block, entry, unmarked): (u32, u32, BlockType, bool, bool),
        plan: &Plan<'_>,
        (inlinees, sites): (&Inlinees<'_>, &Sites),
    ) -> Result<(Function, Hoisting, u32)> {
        let f = Function::new([]);
        let frame = cost::frame(params, declared, a.max_stack) as i32;
        let stores = a.ops.iter().filter(|op| store_memarg(op).is_some()).count();
        let branchless_marks = stores > super::dirty::BRANCHLESS_ABOVE;
        let grouping = Grouping::default();
        let mut b =
            Body { f, t, plan, grouping, hoisting, unmarked, branchless_marks, locals_used: 0, inlinees, sites, frame };
        if entry {
            b.load_counters_if_armed();
        }
        // A leaf (it calls no wasm function, but for the ones it inlines)
        // only checks its frame: nothing can read the stack counter while
        // it runs. It keeps its budget at entry if an inlined callee's
        // frame is checked against it.
        let leaf = !a.calls || !a.ops.iter().enumerate().any(|(i, op)| b.calls_out(i, op));
        b.stack_enter(frame, leaf, !sites.at.is_empty());
        // The counter comes from the global charged with the first segment:
        // one operation fewer per call on an interpreter than a copy into
        // the local and then a charge of it.
        b.charge_from(I::GlobalGet(b.fuel_global()), Amount::Const(a.segments[0]), true);
        b.f.instruction(&I::Block(block));
        let last = a.ops.len() - 1;
        let mut segment = 0;
        let mut open = 0u32; // control frames open inside the wrapping block
        for (i, op) in a.ops.iter().enumerate() {
            b.before_op(op);
            if i == last {
                // The function's own `end` closes the wrapping block; every
                // way out of the function passes here.
                b.f.instruction(&I::End);
                if !leaf {
                    b.stack_leave();
                }
                if entry {
                    b.check_fuel();
                    b.fuel_to_cell();
                }
                b.fuel_to_global();
                b.f.instruction(&I::End);
                break;
            }
            b.hoist_before(i, op);
            nest(&mut open, op);
            let (effect, height) = (a.arity[i], a.heights[i]);
            match op {
                Operator::Return => {
                    if !b.hoist_branch(op, I::Br(open)) {
                        b.f.instruction(&I::Br(open));
                    }
                }
                Operator::Br { .. } | Operator::BrIf { .. } | Operator::BrTable { .. } => {
                    let ins = RoundtripReencoder.instruction(op.clone()).map_err(err)?;
                    if !b.hoist_branch(op, ins.clone()) {
                        b.f.instruction(&ins);
                    }
                }
                Operator::Call { .. } if sites.at.contains_key(&i) => b.inline(op, sites.at[&i])?,
                _ => b.op(op.clone())?,
            }
            b.after_op(op, effect, height);
            b.hoist_after(op);
            b.charge_next(a, i, &mut segment);
        }
        Ok((b.f, b.hoisting, b.locals_used))
    }

    /// After operator `i` of `a`: if it ends segment `segment`, the next
    /// one's charge (checked at a loop's top; none where the code after is
    /// unreachable). The rule of a function's own body and of an inlined
    /// one alike.
    pub(super) fn charge_next(&mut self, a: &Analysis<'_>, i: usize, segment: &mut usize) {
        if a.boundaries[i] {
            *segment += 1;
            let op = &a.ops[i];
            if !leaves(op) {
                self.charge(Amount::Const(a.segments[*segment]), matches!(op, Operator::Loop { .. }));
            }
        }
    }

    pub(super) fn ins(&mut self, i: I<'_>) -> &mut Self {
        if let I::LocalGet(l) | I::LocalSet(l) | I::LocalTee(l) = i {
            self.locals_used = self.locals_used.max(l.saturating_add(1));
        }
        self.f.instruction(&i);
        self
    }

    /// Sets a flag byte of the books.
    fn set_flag(&mut self, at: usize) {
        self.ins(I::I32Const(at as i32)).ins(I::I32Const(1));
        self.ins(I::I32Store8(books_arg(0)));
    }

    /// Counts a growth operation against the call's allowance
    /// ([`super::layout::MAX_GROWTHS_PER_CALL`], in the books' growth
    /// cell): none left sets the OOM flag and traps. Not metered, like the
    /// growth guard before it.
    fn count_growth(&mut self) {
        let cell = self.plan.layout.growth_cell() as i32;
        self.ins(I::I32Const(cell)).ins(I::I32Load(books_arg(2))).ins(I::I32Eqz);
        self.end_if(self.plan.layout.oom_flag());
        self.ins(I::I32Const(cell)).ins(I::I32Const(cell)).ins(I::I32Load(books_arg(2)));
        self.ins(I::I32Const(1)).ins(I::I32Sub).ins(I::I32Store(books_arg(2)));
    }

    /// With a condition on the stack: if true, set the flag and trap.
    pub(super) fn end_if(&mut self, flag: usize) {
        self.ins(I::If(BlockType::Empty));
        self.set_flag(flag);
        self.ins(I::Unreachable).ins(I::End);
    }

    fn fuel_global(&self) -> u32 {
        self.plan.globals
    }

    fn stack_global(&self) -> u32 {
        self.plan.globals + 1
    }

    pub(super) fn metering(&self) -> bool {
        self.plan.metering
    }

    /// At the entry of a function the host may call: if the host armed a
    /// call, load the counters' globals from their cells and clear the
    /// flag.
    fn load_counters_if_armed(&mut self) {
        if !self.metering() {
            return;
        }
        let layout = self.plan.layout;
        let flag = layout.entry_flag() as i32;
        self.ins(I::I32Const(flag)).ins(I::I32Load8U(books_arg(0)));
        self.ins(I::If(BlockType::Empty));
        self.ins(I::I32Const(flag)).ins(I::I32Const(0));
        self.ins(I::I32Store8(books_arg(0)));
        self.ins(I::I32Const(layout.fuel_cell() as i32));
        self.ins(I::I64Load(books_arg(3)));
        self.ins(I::GlobalSet(self.fuel_global()));
        self.ins(I::I32Const(layout.stack_cell() as i32));
        self.ins(I::I32Load(books_arg(2)));
        self.ins(I::GlobalSet(self.stack_global()));
        self.ins(I::End);
    }

    /// The function's counter from the module's fuel global (at entry and
    /// after a call).
    fn fuel_from_global(&mut self) {
        if self.metering() {
            let (global, fuel) = (self.fuel_global(), self.t.fuel);
            self.ins(I::GlobalGet(global)).ins(I::LocalSet(fuel));
        }
    }

    /// The module's fuel global from the function's counter (before a call
    /// and at every way out).
    fn fuel_to_global(&mut self) {
        if self.metering() {
            let (global, fuel) = (self.fuel_global(), self.t.fuel);
            self.ins(I::LocalGet(fuel)).ins(I::GlobalSet(global));
        }
    }

    /// The fuel cell from the function's counter, so the host sees it
    /// (before a host call, and when a host-called function returns).
    fn fuel_to_cell(&mut self) {
        if self.metering() {
            let (cell, fuel) = (self.plan.layout.fuel_cell() as i32, self.t.fuel);
            self.ins(I::I32Const(cell)).ins(I::LocalGet(fuel));
            self.ins(I::I64Store(books_arg(3)));
        }
    }

    /// The function's counter from the fuel cell (after a host call
    /// charged it).
    fn fuel_from_cell(&mut self) {
        if self.metering() {
            self.ins(I::I32Const(self.plan.layout.fuel_cell() as i32));
            self.ins(I::I64Load(books_arg(3)));
            self.ins(I::LocalSet(self.t.fuel));
        }
    }

    /// Subtracts `amount` from the counter; with `check`, ends the
    /// transaction as `out_of_fuel` if it is then negative.
    pub(super) fn charge(&mut self, amount: Amount, check: bool) {
        self.charge_from(I::LocalGet(self.t.fuel), amount, check);
    }

    /// [`Self::charge`] of the counter `counter` pushes (the local, or the
    /// global at a function's entry), into the local.
    fn charge_from(&mut self, counter: I<'_>, amount: Amount, check: bool) {
        if !self.metering() {
            return;
        }
        let fuel = self.t.fuel;
        let from_local = matches!(counter, I::LocalGet(l) if l == fuel);
        if amount == Amount::Const(0) {
            if !from_local {
                self.ins(counter).ins(I::LocalSet(fuel));
            }
            return;
        }
        self.ins(counter);
        match amount {
            Amount::Const(units) => self.ins(I::I64Const(units as i64)),
            Amount::Temp => self.ins(I::LocalGet(self.t.amount)),
        };
        self.ins(I::I64Sub);
        if !check {
            self.ins(I::LocalSet(fuel));
            return;
        }
        self.ins(I::LocalTee(fuel)).ins(I::I64Const(0)).ins(I::I64LtS);
        self.end_if(self.plan.layout.fuel_flag());
    }

    /// Ends the transaction as `out_of_fuel` if the counter is negative.
    fn check_fuel(&mut self) {
        if !self.metering() {
            return;
        }
        self.ins(I::LocalGet(self.t.fuel)).ins(I::I64Const(0)).ins(I::I64LtS);
        self.end_if(self.plan.layout.fuel_flag());
    }

    /// Charges `per_unit` × the unsigned `i32` in local `n`.
    fn charge_by(&mut self, n: u32, per_unit: u64) {
        if !self.metering() {
            return;
        }
        self.ins(I::LocalGet(n)).ins(I::I64ExtendI32U);
        if per_unit != 1 {
            self.ins(I::I64Const(per_unit as i64)).ins(I::I64Mul);
        }
        self.ins(I::LocalSet(self.t.amount));
        // Checked before the work is done: the amount can be gigabytes.
        self.charge(Amount::Temp, true);
    }

    /// Enters a frame of `frame` bytes: `stack_overflow` if the budget
    /// left is smaller; unless `leaf`, the budget is lowered for callees,
    /// and the budget at entry kept for [`Self::stack_leave`] (kept too
    /// with `keep`, for the frame checks of inlined callees).
    fn stack_enter(&mut self, frame: i32, leaf: bool, keep: bool) {
        if !self.metering() {
            return;
        }
        let (counter, stack) = (self.stack_global(), self.t.stack);
        self.ins(I::GlobalGet(counter));
        if !leaf || keep {
            self.ins(I::LocalTee(stack));
        }
        self.ins(I::I32Const(frame)).ins(I::I32LtS);
        self.end_if(self.plan.layout.stack_flag());
        if !leaf {
            self.ins(I::LocalGet(stack)).ins(I::I32Const(frame)).ins(I::I32Sub).ins(I::GlobalSet(counter));
        }
    }

    /// Leaves a frame: the budget is what it was at entry. Every callee
    /// gave back what it took (a trap discards the instance), so this is
    /// the counter plus the frame, for one store instead of a load, an
    /// add and a store per call.
    fn stack_leave(&mut self) {
        if !self.metering() {
            return;
        }
        let (counter, stack) = (self.stack_global(), self.t.stack);
        self.ins(I::LocalGet(stack)).ins(I::GlobalSet(counter));
    }

    /// Emits one operator of the original body, rewritten.
    pub(super) fn op(&mut self, op: Operator<'_>) -> Result<()> {
        let layout = self.plan.layout;
        let t = self.t;
        let nan = nan_producing(&op).filter(|_| self.metering());
        let mut ins = RoundtripReencoder.instruction(op).map_err(err)?;
        let value = t.for_stored(&ins);
        match &mut ins {
            I::I32Store(m)
            | I::I64Store(m)
            | I::F32Store(m)
            | I::F64Store(m)
            | I::I32Store8(m)
            | I::I32Store16(m)
            | I::I64Store8(m)
            | I::I64Store16(m)
            | I::I64Store32(m) => {
                let offset = m.offset;
                self.store(&ins, value, offset);
            }
            I::MemoryGrow(_) => {
                // delta + size > limit (in i64: no wrap) ⇒ out_of_memory;
                // then charge the pages, then grow.
                let max_pages = self.plan.memory_pages as i64;
                self.ins(I::LocalTee(t.addr)).ins(I::I64ExtendI32U);
                self.ins(I::MemorySize(0)).ins(I::I64ExtendI32U).ins(I::I64Add);
                self.ins(I::I64Const(max_pages)).ins(I::I64GtU);
                self.end_if(layout.oom_flag());
                self.charge_by(t.addr, cost::GROW_PAGE);
                self.count_growth();
                self.ins(I::LocalGet(t.addr));
                self.f.instruction(&ins);
            }
            I::MemoryFill(_) | I::MemoryInit { .. } => {
                // fill: [d, value, n]; init: [d, segment offset, n]
                self.ins(I::LocalSet(t.len)).ins(I::LocalSet(t.src)).ins(I::LocalSet(t.addr));
                self.charge_by(t.len, cost::BULK_UNIT);
                self.ins(I::LocalGet(t.addr)).ins(I::LocalGet(t.src)).ins(I::LocalGet(t.len));
                self.f.instruction(&ins);
                self.mark_range(t.addr, t.len);
            }
            I::MemoryCopy { .. } => {
                // [d, s, n]
                self.ins(I::LocalSet(t.len)).ins(I::LocalSet(t.src)).ins(I::LocalSet(t.addr));
                self.charge_by(t.len, cost::BULK_UNIT);
                self.ins(I::LocalGet(t.addr)).ins(I::LocalGet(t.src)).ins(I::LocalGet(t.len));
                self.f.instruction(&ins);
                self.mark_range(t.addr, t.len);
            }
            I::TableGrow(table) => {
                // [init, delta]: delta + size > limit ⇒ out_of_memory.
                let table = *table;
                self.ins(I::LocalTee(t.len)).ins(I::I64ExtendI32U);
                self.ins(I::TableSize(table)).ins(I::I64ExtendI32U).ins(I::I64Add);
                self.ins(I::I64Const(self.plan.table_elements as i64)).ins(I::I64GtU);
                self.end_if(layout.oom_flag());
                self.charge_by(t.len, cost::GROW_ELEMENT);
                self.count_growth();
                self.ins(I::LocalGet(t.len));
                self.set_flag(layout.tables_flag());
                self.f.instruction(&ins);
            }
            I::TableFill(_) | I::TableCopy { .. } | I::TableInit { .. } => {
                // The element count is on top.
                self.ins(I::LocalTee(t.len));
                self.charge_by(t.len, cost::BULK_UNIT);
                self.set_flag(layout.tables_flag());
                self.f.instruction(&ins);
            }
            I::TableSet(_) => {
                self.set_flag(layout.tables_flag());
                self.f.instruction(&ins);
            }
            I::DataDrop(_) | I::ElemDrop(_) => {
                self.set_flag(layout.rebuild_flag());
                self.f.instruction(&ins);
            }
            // A host function charges fuel in the cell.
            I::Call(f) if *f < self.plan.imported_funcs => {
                self.fuel_to_cell();
                self.f.instruction(&ins);
                self.fuel_from_cell();
            }
            // A wasm function reads and writes the global.
            I::Call(f) => {
                let f = *f;
                self.fuel_to_global();
                match self.callee_marks(f) {
                    // Its unmarked copy, its stores marked as the caller's.
                    Some((copy, stores)) => {
                        self.f.instruction(&I::Call(copy));
                        for (local, plus, offset) in stores {
                            self.marked_store(local, plus, offset);
                        }
                    }
                    None => {
                        self.f.instruction(&ins);
                    }
                }
                self.fuel_from_global();
            }
            // Either, through a table: both, and the smaller after (each
            // kind of callee only lowers its own).
            I::CallIndirect { .. } => {
                self.fuel_to_global();
                self.fuel_to_cell();
                self.f.instruction(&ins);
                if self.metering() {
                    self.fuel_from_cell();
                    let (fuel, lower) = (self.t.fuel, self.t.amount);
                    self.ins(I::GlobalGet(self.fuel_global())).ins(I::LocalTee(lower));
                    self.ins(I::LocalGet(fuel)).ins(I::LocalGet(lower)).ins(I::LocalGet(fuel)).ins(I::I64LtS);
                    self.ins(I::Select).ins(I::LocalSet(fuel));
                }
            }
            _ => {
                self.f.instruction(&ins);
            }
        }
        match nan {
            Some(false) => {
                self.ins(I::LocalTee(t.f32v)).ins(I::F32Const(wasm_encoder::Ieee32::new(0x7fc0_0000)));
                self.ins(I::LocalGet(t.f32v)).ins(I::LocalGet(t.f32v)).ins(I::F32Eq).ins(I::Select);
            }
            Some(true) => {
                self.ins(I::LocalTee(t.f64v)).ins(I::F64Const(wasm_encoder::Ieee64::new(0x7ff8_0000_0000_0000)));
                self.ins(I::LocalGet(t.f64v)).ins(I::LocalGet(t.f64v)).ins(I::F64Eq).ins(I::Select);
            }
            None => {}
        }
        Ok(())
    }
}
