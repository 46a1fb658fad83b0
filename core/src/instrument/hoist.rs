//! Marks hoisted out of loops: a store inside a loop, through a base that
//! the loop leaves unchanged or only steps by constants of one sign, is
//! marked once when the loop is left instead of on every iteration.
//!
//! A copy loop — `*d = *s; d += 4` until done — would otherwise pay a
//! conditional mark (a shift, a load of the map and a branch) per word: in
//! compiler-builtins' `memcpy` that was 6 % of a signature check's
//! instructions on wasmtime. Hoisted, an iteration pays nothing and each
//! way out of the loop one range mark.
//!
//! # Which stores, which loop
//!
//! A loop *steps* local `L` if every write to `L` in its body (nested
//! blocks and loops included) is `L = L + k` for a constant `k` with
//! `|k| ≤ 2^16` — spelled `local.get L; i32.const k; i32.add` (or
//! `i32.sub`, or the operands of the add the other way round) right before
//! the `local.set`/`local.tee` — and all the `k` have one sign; it leaves
//! `L` *unchanged* if it does not write it at all. A store whose address
//! is `L + c` (the grouping's analysis: `L`'s current value plus
//! constants) with offset `o` is hoisted to the outermost enclosing loop
//! that steps or leaves `L` unchanged and has at most [`MAX_EXITS`]
//! branches out of it. Stepped bases need the fuel counter (below), so
//! without metering only unchanged ones are hoisted. The loop keeps, per
//! stepped `L`, its value `L0` and the fuel counter `F0` at entry, and per
//! base the smallest and largest `c + o` of its stores (known when the
//! body has been read: the rewrite runs twice when a function hoists
//! anything).
//!
//! # The range mark
//!
//! A step costs at least its own four instructions of fuel, charged before
//! it runs, so a loop that spent `F0 - F` fuel stepped `L` at most
//! `S = (F0 - F) / 4` times, by at most `S × max|k|` in all. If `L0` plus
//! (or minus) that stays in `[0, 2^32)`, `L` never wrapped: it moved
//! monotonically from `L0` to its value `L1` when the loop is left, and
//! every store started in `[min(L0, L1) + min(c + o), max(L0, L1) + max(c +
//! o)]`, computed in `i64` — if both ends are in `[0, 2^32)`: a store whose
//! `L + c` wrapped has an `i64` address outside that interval, or traps (it
//! would address 4 GiB or more). Otherwise the whole memory is marked.
//!
//! A loop may be left before a store ran, so the interval may lie
//! anywhere, and a mark must never leave the map: an interval within one
//! page the map covers gets a conditional mark inline (a page past the
//! memory's current size is marked needlessly but harmlessly: a blank scans
//! up to that size, and a grown memory is rebuilt); anything else calls
//! [`mark_helper`], which clamps the interval to the memory's current size
//! and marks one page, two with one two-byte mark, or more with
//! `memory.fill`s of the map and the summary.
//!
//! The mark is made on every way out of the loop: after its `end`, before
//! each `br`, `br_table` or `return` that leaves it, and inside a taken
//! `br_if` that leaves it (rewritten to `if … br … end` when its target
//! takes no values; else before it). Traps skip it, which is safe because
//! every trap discards the instance (see [`super::dirty`]). Calls inside
//! the loop do not: nothing reads the map while the guest runs.
//!
//! Hoisting adds up to [`ADDED_LOCALS`] locals (beyond the pass's
//! temporaries) and only to functions well within the engines' limits on
//! locals and registers, so the module limits stay as documented.

use super::body::{Body, Temps};
use super::dirty::PAGE_SHIFT;
use std::collections::HashMap;
use wasm_encoder::{BlockType, Function, Instruction as I, ValType};
use wasmparser::Operator;

/// The most stepped bases hoisted to the loops open at one point of a
/// function (each holds two `i64` locals, `L0` and `F0`, while its loop
/// runs); stores through more keep their per-iteration marks.
pub const MAX_STEPPED: u32 = 6;
/// The most locals hoisting adds to a function: its stepped bases' entry
/// values and fuel, and one temporary.
pub const ADDED_LOCALS: u32 = 2 * MAX_STEPPED + 1;
/// The most branches out of a loop that hoists: each carries a copy of
/// the range marks, and a hostile module must not multiply its code.
pub const MAX_EXITS: u32 = 4;
/// The most bases (stepped or unchanged) one loop hoists, for the same
/// reason.
const MAX_PER_LOOP: usize = 4;
/// Instructions one base's range mark takes where a loop is left (about
/// 70: the interval, and one page inline; the rest is [`mark_helper`]'s).
const MARK_INSTRUCTIONS: usize = 80;

/// How a loop's body writes one local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// Only `L = L + k` with `0 ≤ k ≤ kmax`.
    Up(u32),
    /// Only `L = L + k` with `-kmax ≤ k < 0`.
    Down(u32),
    /// Otherwise.
    Other,
}

impl Writes {
    fn of(k: Option<i32>) -> Self {
        match k {
            Some(k) if k.unsigned_abs() > MAX_STEP => Writes::Other,
            Some(k) if k >= 0 => Writes::Up(k.unsigned_abs()),
            Some(k) => Writes::Down(k.unsigned_abs()),
            None => Writes::Other,
        }
    }

    fn join(self, other: Self) -> Self {
        match (self, other) {
            (Writes::Up(a), Writes::Up(b)) => Writes::Up(a.max(b)),
            (Writes::Down(a), Writes::Down(b)) => Writes::Down(a.max(b)),
            _ => Writes::Other,
        }
    }
}

/// The largest step hoisting follows: the fuel bound on a base's travel
/// (`S × max|k|`) then stays far inside `i64`.
const MAX_STEP: u32 = 1 << 16;

/// One loop of a body, as hoisting sees it.
#[derive(Debug)]
struct Loop {
    /// The locals its body writes, and how.
    writes: HashMap<u32, Writes>,
    /// Branches (and `return`s) in its body that leave it.
    exits: u32,
}

/// The loops of a body, found from its operators alone.
#[derive(Debug, Default)]
pub(super) struct Loops {
    /// By the index of the `loop` operator.
    loops: HashMap<usize, Loop>,
}

/// The `k` of `L = L + k` if the `local.set L`/`local.tee L` at `i`
/// writes that.
fn step(ops: &[Operator<'_>], i: usize, local: u32) -> Option<i32> {
    let at = |back: usize| i.checked_sub(back).map(|j| &ops[j]);
    match (at(3)?, at(2)?, at(1)?) {
        (Operator::LocalGet { local_index }, Operator::I32Const { value }, Operator::I32Add)
        | (Operator::I32Const { value }, Operator::LocalGet { local_index }, Operator::I32Add)
            if *local_index == local =>
        {
            Some(*value)
        }
        (Operator::LocalGet { local_index }, Operator::I32Const { value }, Operator::I32Sub)
            if *local_index == local =>
        {
            Some(value.wrapping_neg())
        }
        _ => None,
    }
}

/// Finds the loops of a body: what each writes, how often it is left.
pub(super) fn find_loops(ops: &[Operator<'_>]) -> Loops {
    let mut found = Loops::default();
    // Open control frames: the `loop` operator's index for loops.
    let mut control: Vec<Option<usize>> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        for l in control[first_left(control.len(), op)..].iter().flatten() {
            found.loops.get_mut(l).expect("every open loop was recorded").exits += 1;
        }
        match op {
            Operator::Block { .. } | Operator::If { .. } => control.push(None),
            Operator::Loop { .. } => {
                control.push(Some(i));
                found.loops.insert(i, Loop { writes: HashMap::new(), exits: 0 });
            }
            Operator::End => {
                control.pop();
            }
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => {
                let how = Writes::of(step(ops, i, *local_index));
                for l in control.iter().flatten() {
                    let l = found.loops.get_mut(l).expect("every open loop was recorded");
                    let w = l.writes.entry(*local_index).or_insert(how);
                    *w = w.join(how);
                }
            }
            _ => {}
        }
    }
    found
}

/// The control index of the outermost frame a branch leaves, with `open`
/// frames open (not counting the function's own): frames from there on
/// are left — but a loop a branch targets is re-entered, not left, so
/// that is one past the target. `open` (nothing left) for other operators.
/// A `br_table` counts by its deepest target.
fn first_left(open: usize, op: &Operator<'_>) -> usize {
    let depth = match op {
        Operator::Br { relative_depth } | Operator::BrIf { relative_depth } => *relative_depth,
        Operator::BrTable { targets } => {
            targets.targets().filter_map(|t| t.ok()).chain([targets.default()]).max().unwrap_or(0)
        }
        Operator::Return => return 0,
        _ => return open,
    };
    open.saturating_sub(depth as usize)
}

/// A base hoisted to a loop.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The `loop` operator's index.
    anchor: usize,
    /// The base local.
    local: u32,
    /// How the loop writes it (`Up`/`Down`), or `None`: not at all.
    writes: Option<Writes>,
    /// For a stepped base: its locals `L0` and `F0` (both `i64`).
    locals: Option<(u32, u32)>,
    /// The smallest and largest `c + o` of its stores.
    lowest: i64,
    highest: i64,
}

/// An open control frame while a body is emitted.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// The `loop` operator's index, for loops.
    anchor: Option<usize>,
    /// Whether a branch to this frame's label carries no values.
    bare: bool,
}

/// Hoisting's state while a body is emitted.
#[derive(Debug, Default)]
pub(super) struct Hoisting {
    loops: Loops,
    control: Vec<Open>,
    slots: Vec<Slot>,
    /// The first pass: slots are found and their offsets gathered; nothing
    /// hoisting-specific is emitted.
    gathering: bool,
    /// The first of the locals hoisting adds (its `i64` temporary; then
    /// each stepped base's two).
    first_local: u32,
    /// Whether the function has room for hoisting's locals.
    allowed: bool,
    /// The instructions hoisting may still add to the function: half its
    /// own and a little, so a module of many small loops cannot multiply
    /// the engines' work.
    budget: usize,
}

impl Hoisting {
    /// The first pass over a body whose own locals and temporaries end
    /// before `first_local`.
    /// `allowed`: whether the function has room for hoisting's locals;
    /// `instructions`: how many it has.
    pub fn gather(loops: Loops, first_local: u32, allowed: bool, instructions: usize) -> Self {
        let budget = instructions / 2 + 16 * MARK_INSTRUCTIONS;
        Hoisting { loops, gathering: true, first_local, allowed, budget, ..Default::default() }
    }

    /// After the first pass: the locals the second needs (`i64`s), or
    /// `None` if nothing was hoisted (the first pass's output is final).
    pub fn finish(mut self) -> Option<(Self, u32)> {
        if self.slots.is_empty() {
            return None;
        }
        self.gathering = false;
        self.control.clear();
        let pairs = self.slots.iter().filter_map(|s| s.locals).map(|(l0, _)| (l0 - self.first_local - 1) / 2 + 1).max();
        Some((self, 1 + 2 * pairs.unwrap_or(0)))
    }

    fn temp(&self) -> u32 {
        self.first_local
    }
}

impl Body<'_> {
    /// Whether the code being emitted is inside a loop.
    pub(super) fn in_loop(&self) -> bool {
        self.hoisting.control.iter().any(|o| o.anchor.is_some())
    }

    /// Before operator `i` is emitted (after the grouping's flush).
    pub(super) fn hoist_before(&mut self, i: usize, op: &Operator<'_>) {
        let bare = |ty: &wasmparser::BlockType, is_loop: bool| match ty {
            wasmparser::BlockType::Empty => true,
            wasmparser::BlockType::Type(_) => is_loop,
            wasmparser::BlockType::FuncType(_) => false,
        };
        match op {
            Operator::Block { blockty } | Operator::If { blockty } => {
                let open = Open { anchor: None, bare: bare(blockty, false) };
                self.hoisting.control.push(open);
            }
            Operator::Loop { blockty } => {
                if !self.hoisting.gathering {
                    // L0 = L, F0 = the fuel counter, for each stepped base.
                    let entering: Vec<Slot> = self.hoisting.slots.iter().filter(|s| s.anchor == i).copied().collect();
                    for s in entering {
                        if let Some((l0, f0)) = s.locals {
                            self.ins(I::LocalGet(s.local)).ins(I::I64ExtendI32U).ins(I::LocalSet(l0));
                            self.ins(I::LocalGet(self.t.fuel)).ins(I::LocalSet(f0));
                        }
                    }
                }
                let open = Open { anchor: Some(i), bare: bare(blockty, true) };
                self.hoisting.control.push(open);
            }
            _ => {}
        }
    }

    /// Emits a branch operator that may leave hoisting loops, with their
    /// marks; returns `false` (emitting nothing) for any other operator.
    /// `ins` is the operator as emitted (`return` is a `br`).
    pub(super) fn hoist_branch(&mut self, op: &Operator<'_>, ins: I<'_>) -> bool {
        if self.hoisting.gathering {
            return false;
        }
        let open = self.hoisting.control.len();
        if !matches!(op, Operator::Br { .. } | Operator::BrIf { .. } | Operator::BrTable { .. } | Operator::Return) {
            return false;
        }
        let first = first_left(open, op);
        let anchors: Vec<usize> = self.hoisting.control[first..].iter().filter_map(|o| o.anchor).collect();
        if !self.hoisting.slots.iter().any(|s| anchors.contains(&s.anchor)) {
            return false;
        }
        match op {
            // The target frame (`first - 1`) takes no values.
            Operator::BrIf { relative_depth } if first > 0 && self.hoisting.control[first - 1].bare => {
                self.ins(I::If(BlockType::Empty));
                self.mark_loops(&anchors);
                self.ins(I::Br(relative_depth + 1)).ins(I::End);
            }
            _ => {
                self.mark_loops(&anchors);
                self.f.instruction(&ins);
            }
        }
        true
    }

    /// After operator `i` is emitted: a loop's marks after its `end`.
    pub(super) fn hoist_after(&mut self, op: &Operator<'_>) {
        if let Operator::End = op {
            let closed = self.hoisting.control.pop();
            if let Some(Open { anchor: Some(anchor), .. }) = closed
                && !self.hoisting.gathering
            {
                self.mark_loops(&[anchor]);
            }
        }
    }

    /// Whether a store through `local`'s current value plus `c`, at offset
    /// `offset`, is hoisted (then it is emitted without a mark).
    pub(super) fn hoisted(&mut self, local: u32, c: i64, offset: u64) -> bool {
        let metering = self.plan.metering;
        let h = &mut self.hoisting;
        if !h.allowed {
            return false;
        }
        let anchor = h.control.iter().filter_map(|o| o.anchor).find(|a| {
            let l = &h.loops.loops[a];
            let hoistable = match l.writes.get(&local) {
                None => true,
                Some(Writes::Other) => false,
                // Stepped bases are bounded by the fuel counter.
                Some(_) => metering,
            };
            l.exits <= MAX_EXITS && hoistable
        });
        let Some(anchor) = anchor else { return false };
        let at = c + offset as i64;
        if let Some(s) = h.slots.iter_mut().find(|s| s.anchor == anchor && s.local == local) {
            (s.lowest, s.highest) = (s.lowest.min(at), s.highest.max(at));
            return true;
        }
        if !h.gathering || h.slots.iter().filter(|s| s.anchor == anchor).count() >= MAX_PER_LOOP {
            return false;
        }
        // A range mark after the loop's end and at each of its exits.
        let cost = (h.loops.loops[&anchor].exits as usize + 1) * MARK_INSTRUCTIONS;
        if cost > h.budget {
            return false;
        }
        let writes = h.loops.loops[&anchor].writes.get(&local).copied();
        let locals = match writes {
            None => None,
            Some(_) => {
                // A pair of locals no base of an open loop holds: a closed
                // loop's are free again (they live only while it runs).
                let open: Vec<usize> = h.control.iter().filter_map(|o| o.anchor).collect();
                let held: Vec<u32> =
                    h.slots.iter().filter(|s| open.contains(&s.anchor)).filter_map(|s| s.locals).map(|l| l.0).collect();
                let Some(l0) = (0..MAX_STEPPED).map(|i| h.first_local + 1 + 2 * i).find(|l0| !held.contains(l0)) else {
                    return false;
                };
                Some((l0, l0 + 1))
            }
        };
        h.budget -= cost;
        h.slots.push(Slot { anchor, local, writes, locals, lowest: at, highest: at });
        true
    }

    /// The range marks of every base hoisted to the loops `anchors`.
    fn mark_loops(&mut self, anchors: &[usize]) {
        let slots: Vec<Slot> = self.hoisting.slots.iter().filter(|s| anchors.contains(&s.anchor)).copied().collect();
        let (lo, hi) = (self.t.amount, self.t.i64v);
        // `+ c` on the i64 on top.
        let plus = |b: &mut Self, c: i64| {
            if c != 0 {
                b.ins(I::I64Const(c)).ins(I::I64Add);
            }
        };
        for s in slots {
            let now = |b: &mut Self, c: i64| {
                b.ins(I::LocalGet(s.local)).ins(I::I64ExtendI32U);
                plus(b, c);
            };
            let (Some((l0, f0)), Some(writes)) = (s.locals, s.writes) else {
                // Unchanged in the loop: its value now is its value then.
                now(self, s.lowest);
                self.ins(I::LocalSet(lo));
                now(self, s.highest);
                self.ins(I::LocalSet(hi));
                self.mark_interval(lo, hi);
                continue;
            };
            let (up, kmax) = match writes {
                Writes::Up(k) => (true, k),
                Writes::Down(k) => (false, k),
                Writes::Other => unreachable!("only stepped bases have locals"),
            };
            // The far end: from L now if L0 ± S × kmax is in [0, 2^32),
            // else out of range (the whole memory). S × kmax < 2^55.
            let (near, far, c_near, c_far, out) =
                if up { (lo, hi, s.lowest, s.highest, 1i64 << 32) } else { (hi, lo, s.highest, s.lowest, -1) };
            self.ins(I::LocalGet(l0));
            plus(self, c_near);
            self.ins(I::LocalSet(near));
            now(self, c_far);
            self.ins(I::I64Const(out));
            self.ins(I::LocalGet(l0));
            // S = min(F0 - F, 2^40) / (4 × INSTRUCTION)
            let fuel = self.t.fuel;
            self.ins(I::LocalGet(f0)).ins(I::LocalGet(fuel)).ins(I::I64Sub).ins(I::LocalTee(far));
            self.ins(I::I64Const(1 << 40))
                .ins(I::LocalGet(far))
                .ins(I::I64Const(1 << 40))
                .ins(I::I64LtU)
                .ins(I::Select);
            self.ins(I::I64Const(4 * super::cost::INSTRUCTION as i64)).ins(I::I64DivU);
            self.ins(I::I64Const(kmax.into())).ins(I::I64Mul);
            self.ins(if up { I::I64Add } else { I::I64Sub });
            self.ins(I::I64Const(32)).ins(I::I64ShrS).ins(I::I64Eqz);
            self.ins(I::Select).ins(I::LocalSet(far));
            self.mark_interval(lo, hi);
        }
    }

    /// Marks the pages of guest addresses `[lo, hi]` (`i64` locals; the
    /// whole memory if either is outside `[0, 2^32)`), clamped to the
    /// memory's size: one page inline, anything else by calling the
    /// module's [`mark_helper`] (rare, and kept out of line so that every
    /// way out of every loop does not carry a copy).
    fn mark_interval(&mut self, lo: u32, hi: u32) {
        let (limit, first) = (self.hoisting.temp(), self.t.len);
        // The common case first: both ends in one page the map covers (so
        // both in [0, 2^32)); anything else takes the general path. A page
        // past the memory's current size needs no mark, but one does no
        // harm: the blank scans only up to that size, and a memory that
        // grows past it is rebuilt, books and all.
        let page = |b: &mut Self, of: u32| {
            b.ins(I::LocalGet(of)).ins(I::I64Const(PAGE_SHIFT.into())).ins(I::I64ShrS);
        };
        page(self, hi);
        page(self, lo);
        self.ins(I::LocalTee(limit)).ins(I::I64Eq);
        let map_pages = self.plan.layout.map as i64;
        self.ins(I::LocalGet(limit)).ins(I::I64Const(map_pages)).ins(I::I64LtU);
        self.ins(I::I32And).ins(I::If(BlockType::Empty));
        self.ins(I::LocalGet(limit)).ins(I::I32WrapI64).ins(I::LocalSet(first));
        self.mark_page(first, false);
        self.ins(I::Else);
        let helper = self.plan.imported_funcs + self.plan.funcs.len() as u32;
        self.ins(I::LocalGet(lo)).ins(I::LocalGet(hi)).ins(I::Call(helper));
        self.ins(I::End);
    }

    /// [`Self::mark_interval`]'s general case.
    fn mark_interval_out_of_line(&mut self, lo: u32, hi: u32) {
        let (limit, first) = (self.hoisting.temp(), self.t.len);
        self.ins(I::LocalGet(lo)).ins(I::LocalGet(hi)).ins(I::I64Or).ins(I::I64Const(32)).ins(I::I64ShrU);
        self.ins(I::I64Const(0)).ins(I::I64Ne).ins(I::If(BlockType::Empty));
        self.ins(I::I64Const(0)).ins(I::LocalSet(lo)).ins(I::I64Const(u32::MAX.into())).ins(I::LocalSet(hi));
        self.ins(I::End);
        // limit = size - 1; hi = min(hi, limit); nothing if lo > hi.
        self.ins(I::MemorySize(0)).ins(I::I64ExtendI32U).ins(I::I64Const(16)).ins(I::I64Shl);
        self.ins(I::I64Const(1)).ins(I::I64Sub).ins(I::LocalSet(limit));
        self.ins(I::LocalGet(hi)).ins(I::LocalGet(limit)).ins(I::LocalGet(hi)).ins(I::LocalGet(limit)).ins(I::I64LtS);
        self.ins(I::Select).ins(I::LocalSet(hi));
        self.ins(I::LocalGet(lo)).ins(I::LocalGet(hi)).ins(I::I64LeS).ins(I::If(BlockType::Empty));
        let pages = self.t.i32v;
        // first = lo >> 10; pages = (hi >> 10) - first
        self.ins(I::LocalGet(hi)).ins(I::I64Const(PAGE_SHIFT.into())).ins(I::I64ShrU).ins(I::I32WrapI64);
        self.ins(I::LocalGet(lo)).ins(I::I64Const(PAGE_SHIFT.into())).ins(I::I64ShrU).ins(I::I32WrapI64);
        self.ins(I::LocalTee(first)).ins(I::I32Sub).ins(I::LocalTee(pages));
        self.ins(I::I32Const(1)).ins(I::I32GtU).ins(I::If(BlockType::Empty));
        // More than two pages: the byte range's fills.
        let (d, n) = (self.t.addr, self.t.src);
        self.ins(I::LocalGet(lo)).ins(I::I32WrapI64).ins(I::LocalSet(d));
        self.ins(I::LocalGet(hi)).ins(I::LocalGet(lo)).ins(I::I64Sub).ins(I::I32WrapI64);
        self.ins(I::I32Const(1)).ins(I::I32Add).ins(I::LocalSet(n));
        self.mark_range(d, n);
        self.ins(I::Else);
        self.ins(I::LocalGet(pages)).ins(I::If(BlockType::Empty));
        self.mark_page(first, true);
        self.ins(I::Else);
        self.mark_page(first, false);
        self.ins(I::End).ins(I::End).ins(I::End);
    }
}

/// The type of [`mark_helper`]: `[i64 i64] -> []`.
pub(super) fn mark_helper_type(types: &mut wasm_encoder::TypeSection) {
    types.ty().function([ValType::I64, ValType::I64], []);
}

/// The function the pass appends (after the module's own, under the
/// barrier) that marks the pages of guest addresses `[lo, hi]`, its two
/// `i64` parameters, in general: the whole memory if either end is outside
/// `[0, 2^32)`, nothing if the interval misses the memory, else its pages
/// (clamped to the memory's size). Not metered: its work is bounded (two
/// `memory.fill`s of the books at most) and no verdict depends on it.
pub(super) fn mark_helper(plan: &super::Plan<'_>) -> Function {
    // Locals: 0 lo, 1 hi (parameters), 2 a temporary i64, 3-6 i32s.
    let unused = u32::MAX;
    let t = Temps {
        addr: 3,
        i32v: 4,
        i64v: unused,
        f32v: unused,
        f64v: unused,
        len: 5,
        src: 6,
        amount: unused,
        fuel: unused,
        stack: unused,
    };
    let f = Function::new([(1, ValType::I64), (4, ValType::I32)]);
    let hoisting = Hoisting { first_local: 2, ..Default::default() };
    let (inlinees, sites) = (Default::default(), Default::default());
    let mut b = Body {
        f,
        t,
        plan,
        grouping: Default::default(),
        hoisting,
        unmarked: false,
        branchless_marks: false,
        locals_used: 0,
        inlinees: &inlinees,
        sites: &sites,
        frame: 0,
    };
    b.mark_interval_out_of_line(0, 1);
    b.ins(I::End);
    b.f
}
