//! Dirty tracking: how the rewritten module records what a transaction
//! wrote, so a blank restores only that ([`Tracking::Barrier`]) — or
//! records nothing, and blanks rebuild ([`Tracking::Off`]).
//!
//! # The write barrier
//!
//! After every store: `map[(addr + offset) >> 10] = 1` and
//! `summary[(addr + offset) >> 16] = 1` (1 KiB pages, 64 KiB spans; in the
//! books memory). After `memory.fill`/`memory.copy`/`memory.init`: the
//! written range's map and summary bytes, with a `memory.fill` each. A
//! store can spill at most [`super::SPILL`] bytes into the next page, so
//! restoring a marked page copies its 1 KiB plus those bytes. The host
//! remembers or marks what it writes itself (transaction payloads,
//! `state_get` output). A blank scans the summary up to the memory's
//! current size (a byte per 64 KiB), the map of each marked span and the
//! first page after it (where a group's highest mark may fall without a
//! summary mark of its own, see below), and copies back the marked pages.
//!
//! # Grouped marks
//!
//! Stores through the same base — `local.get L` with `L` unchanged, plus
//! or minus `i32.const`s — at constant offsets within a page-sized window, in
//! one straight run of code (field arithmetic writing a result limb by
//! limb, a struct filled field by field, a compiler's unrolled byte copy
//! addressing `L + 1`, `L + 2`, …), share their marks: the pages of the lowest and the highest
//! offset, marked once at the end of the run. Every store of the group
//! starts in one of those two pages, because the window is smaller than a
//! page. The run ends — and every pending group is marked — before any
//! control instruction (so on every path out: fall-through, `br*`,
//! `return`) and before `L` is written. A mark so deferred is computed from
//! `L` after all the group's stores succeeded, so from addresses the
//! engine checked; a store that traps never reaches it — which is safe only
//! because every trap discards the instance (the driver recycles after
//! every rejection, audits rebuild their instance, init and migration
//! failures drop theirs).
//!
//! # Hoisted marks
//!
//! In a loop that leaves a store's base unchanged or only steps it by
//! constants, the store is marked once on each way out of the loop instead
//! (see `super::hoist`): a copy loop then pays nothing per iteration.
//!
//! Invariants the barrier keeps (each a conformance case on every
//! backend): every page in which a store *starts* is marked; a mark is
//! computed from an address a store checked, so it never writes outside
//! the map (an unchecked address could land in the cells or flags the
//! driver reads); bulk operations mark after the operation succeeded.

use super::layout::books_arg;
use super::{DIRTY_PAGE, SUMMARY_SPAN};

/// `addr >> PAGE_SHIFT` is the dirty-map index of `addr`.
pub(super) const PAGE_SHIFT: i32 = DIRTY_PAGE.trailing_zeros() as i32;
/// `addr >> SUMMARY_SHIFT` is the summary index of `addr`.
const SUMMARY_SHIFT: i32 = SUMMARY_SPAN.trailing_zeros() as i32;
use super::body::Body;
use std::collections::HashMap;
use wasm_encoder::{BlockType, Instruction as I};
use wasmparser::Operator;

/// How an instrumented module tracks what a transaction dirtied. Part of
/// the prepared module (and of its cache key); verdicts and the blank
/// state are the same under both — only what a blank costs differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize, strum::Display)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Tracking {
    /// The write barrier: a blank restores the marked pages in place.
    /// Cost: a few instructions per store executed (what a transaction
    /// dirtied is then cheap to undo: ≈ 0.5 µs for a few pages).
    #[default]
    Barrier,
    /// Nothing is tracked: a blank rebuilds the instance from the blank
    /// snapshot (on hosts that bake, a copy-on-write mapping). Cost: a
    /// rebuild per blank (≈ 20 µs on wasmtime), nothing per store — the
    /// choice for executors whose transactions take far longer than that.
    Off,
}

/// Which value a local-derived operand is, for telling two operands apart:
/// a local's `version`-th write plus `plus` — the *first* local it was
/// copied from, so `local.set M (local.get L)` makes M's value L's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Id {
    local: u32,
    version: u32,
    plus: u32,
}

/// A value on the operand stack, as far as grouping cares: a local's value
/// (which local, which write of it) plus a constant (`i32.add`/`i32.sub`
/// of an `i32.const`, wrapping: a compiler's unrolled copy addresses
/// `base + k`), an `i32` constant, or anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// `local` (its `version`-th write) plus `plus`, wrapping — the base
    /// a group of stores is marked from; `id` the value it is.
    Local { local: u32, version: u32, plus: u32, id: Id },
    /// A conversion of a local's value that an engine with untyped
    /// registers (wasmi) may leave in the same register (`i64.extend_i32_u`,
    /// `i32.wrap_i64`, the reinterpretations; sign extension too, to be
    /// safe): never a base for grouping.
    Converted { id: Id },
    /// An `i32.const`.
    Const(u32),
    /// Anything else.
    Other,
}

impl Origin {
    /// The local value this is, converted or not.
    fn value(self) -> Option<Id> {
        match self {
            Origin::Local { id, .. } | Origin::Converted { id } => Some(id),
            Origin::Const(_) | Origin::Other => None,
        }
    }

    /// This plus the constant `k` (wrapping), if it is a local's value.
    fn plus(self, k: u32) -> Origin {
        match self {
            Origin::Local { local, version, plus, id } => Origin::Local {
                local,
                version,
                plus: plus.wrapping_add(k),
                id: Id { plus: id.plus.wrapping_add(k), ..id },
            },
            _ => Origin::Other,
        }
    }
}

/// Writes to memory (stores and bulk operations) a module may have and
/// still load with the barrier; past it, it loads with [`Tracking::Off`]
/// and its blanks rebuild. A mark is a dozen instructions after a store of
/// four: on an executor of the module limits' size the compilers' time
/// and memory are mostly marks (a million instructions of stores took
/// wasmtime 5.6 s and 485 MiB with them, 1.7 s and 134 MiB without),
/// which the load budget cannot afford. The executors measured have
/// 40–2,700; a transaction of an executor this large takes far longer
/// than a rebuild (≈ 20 µs on wasmtime).
pub const MAX_TRACKED_WRITES: u64 = 32_768;

/// Whether `op` writes guest memory — a store or a bulk write: what the
/// barrier marks, counted against [`MAX_TRACKED_WRITES`].
pub(crate) fn writes_memory(op: &Operator<'_>) -> bool {
    super::body::store_memarg(op).is_some()
        || matches!(op, Operator::MemoryFill { .. } | Operator::MemoryCopy { .. } | Operator::MemoryInit { .. })
}

/// Stores in a function above which its marks are unconditional (see
/// [`Body::mark_page`]).
pub(super) const BRANCHLESS_ABOVE: usize = 1024;

/// A callee's store recorded as its caller's: `(local, plus, offset)`, as
/// [`Body::marked_store`] takes them.
type CallerStore = (u32, u32, u64);

/// Stores through one base awaiting their marks.
#[derive(Debug, Clone, Copy)]
struct Group {
    local: u32,
    lowest: u64,
    highest: u64,
}

/// What grouping knows while a body is emitted: the operand stack's
/// origins, each local's write count, the pending groups.
#[derive(Debug, Default)]
pub(super) struct Grouping {
    stack: Vec<Origin>,
    writes: HashMap<u32, u32>,
    /// Locals last written with a value of known origin (`local.set M` of
    /// `local.get L`): while M is not written again, `local.get M` is that
    /// origin — the same value, which an engine may hold in one register.
    holds: HashMap<u32, (u32, Id)>,
    groups: Vec<Group>,
    /// Pages stores at constant addresses started in this run, distinct.
    const_pages: Vec<u32>,
    /// In unreachable code: how many blocks deep below the one it ends.
    dead: Option<u32>,
}

/// The most distinct constant-address pages a run collects before marking
/// them.
const MAX_CONST_PAGES: usize = 16;

impl Grouping {
    fn version(&self, local: u32) -> u32 {
        self.writes.get(&local).copied().unwrap_or(0)
    }
}

/// Whether an operator ends a straight run of code for grouping.
fn ends_run(op: &Operator<'_>) -> bool {
    // A segment's ends, and a block's start: a branch may target its end.
    matches!(op, Operator::Block { .. }) || super::segments::ends_segment(op)
}

impl Body<'_> {
    /// Before `op` is emitted: marks every pending group at the end of a
    /// run, and a local's group before the local is written.
    pub(super) fn before_op(&mut self, op: &Operator<'_>) {
        if ends_run(op) {
            self.flush(None);
        }
        if let Operator::LocalSet { local_index } | Operator::LocalTee { local_index } = *op {
            self.flush(Some(local_index));
            *self.grouping.writes.entry(local_index).or_default() += 1;
        }
    }

    /// After `op` (taking `pops` operands, pushing `pushes` results,
    /// leaving the stack `height` deep): what is on the operand stack.
    pub(super) fn after_op(&mut self, op: &Operator<'_>, (pops, pushes): (u32, u32), height: u32) {
        let g = &mut self.grouping;
        // Unreachable code (after `br`, `br_table`, `return`, `unreachable`
        // until its block ends) pops from a polymorphic stack: an operand
        // there may be no value the model recorded — an entry left from the
        // enclosing code, of any type (a local's `f64` taken for a store's
        // address). Nothing there is grouped or traced: its stores get
        // their own marks (never run), from operands the validator typed.
        if let Some(depth) = g.dead {
            g.dead = match op {
                Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => Some(depth + 1),
                Operator::End | Operator::Else if depth == 0 => None,
                Operator::End => Some(depth - 1),
                _ => Some(depth),
            };
            g.stack.clear();
            g.stack.resize(height as usize, Origin::Other);
            return;
        }
        let top = |depth: usize| g.stack.len().checked_sub(depth).map_or(Origin::Other, |i| g.stack[i]);
        let version = |local: u32| g.version(local);
        // The value local M holds: the one it was last set from, while M
        // is not written again, else M's own.
        let held = |local: u32| match g.holds.get(&local) {
            Some((v, id)) if *v == version(local) => *id,
            _ => Id { local, version: version(local), plus: 0 },
        };
        let own = |local: u32, id: Id| Origin::Local { local, version: version(local), plus: 0, id };
        let pushed = match (op, top(2), top(1)) {
            (&Operator::LocalGet { local_index }, ..) => own(local_index, held(local_index)),
            (&Operator::LocalTee { local_index }, _, input) => own(
                local_index,
                input.value().unwrap_or(Id { local: local_index, version: version(local_index), plus: 0 }),
            ),
            (&Operator::I32Const { value }, ..) => Origin::Const(value as u32),
            (Operator::I32Add, base @ Origin::Local { .. }, Origin::Const(k))
            | (Operator::I32Add, Origin::Const(k), base @ Origin::Local { .. }) => base.plus(k),
            (Operator::I32Sub, base @ Origin::Local { .. }, Origin::Const(k)) => base.plus(k.wrapping_neg()),
            (
                Operator::I64ExtendI32U
                | Operator::I64ExtendI32S
                | Operator::I32WrapI64
                | Operator::F32ReinterpretI32
                | Operator::I32ReinterpretF32
                | Operator::F64ReinterpretI64
                | Operator::I64ReinterpretF64,
                _,
                input,
            ) => input.value().map_or(Origin::Other, |id| Origin::Converted { id }),
            _ => Origin::Other,
        };
        // A local set (or teed) from a local's value holds that value.
        if let Operator::LocalSet { local_index } | Operator::LocalTee { local_index } = *op {
            match top(1).value() {
                Some(id) => g.holds.insert(local_index, (g.version(local_index), id)),
                None => g.holds.remove(&local_index),
            };
        }
        g.stack.truncate(g.stack.len().saturating_sub(pops as usize));
        g.stack.extend(std::iter::repeat_n(pushed, pushes as usize));
        g.stack.resize(height as usize, Origin::Other);
        if super::segments::leaves(op) {
            g.dead = Some(0);
            g.stack.fill(Origin::Other);
        }
    }

    /// Marks the pending groups (all, or `local`'s): the pages of each
    /// group's lowest and highest offset.
    fn flush(&mut self, local: Option<u32>) {
        if local.is_none() {
            // Stores at constant addresses: their pages, known statically.
            for page in std::mem::take(&mut self.grouping.const_pages) {
                let p = self.t.len;
                self.ins(I::I32Const(page as i32)).ins(I::LocalSet(p));
                self.mark_page(p, false);
            }
        }
        if self.grouping.groups.is_empty() {
            return;
        }
        let (flushed, kept): (Vec<Group>, Vec<Group>) =
            self.grouping.groups.drain(..).partition(|g| local.is_none_or(|l| g.local == l));
        self.grouping.groups = kept;
        for group in flushed {
            // The highest page is the lowest's or the next (the window is
            // less than a page): one 2-byte mark covers both, at the cost
            // of copying the next page back when the group did not reach
            // it. It rides on the lowest page's summary mark: a blank scans
            // the first page after every marked span.
            let both = group.highest != group.lowest;
            self.mark_at(group.local, group.lowest, both);
        }
    }

    /// `map[p] = 1` (and `map[p + 1] = 1` with `two_pages`) and
    /// `summary[p >> 6] = 1` for `p = ((local + offset) mod 2^32) >> 10`,
    /// skipped when the map already says so: a loop writing through a
    /// page then pays a load and a branch per iteration instead of two
    /// stores. (Every set map byte has its summary, or follows a marked
    /// span, so the skip loses nothing. Past the map's end the second byte
    /// is the summary's first: a mark of span 0, never out of the books.)
    fn mark_at(&mut self, local: u32, offset: u64, two_pages: bool) {
        let p = self.t.len;
        self.ins(I::LocalGet(local));
        if offset != 0 {
            self.ins(I::I32Const(offset as u32 as i32)).ins(I::I32Add);
        }
        self.ins(I::I32Const(PAGE_SHIFT)).ins(I::I32ShrU).ins(I::LocalSet(p));
        self.mark_page(p, two_pages);
    }

    /// `map[p] = 1` (and `map[p + 1] = 1` with `two_pages`) and
    /// `summary[p >> 6] = 1` for the page index in local `p`, unless the
    /// map already says so (see [`Self::mark_at`]).
    ///
    /// Outside loops, and in a function with more than [`BRANCHLESS_ABOVE`]
    /// stores, the mark is unconditional (two stores, no branch): the test
    /// pays where a mark repeats, and a branch per store made compilers
    /// need far more memory — wasmtime 286 MiB for a function of 33,000
    /// stores (the load budget's *one big function*), 102 MiB without.
    pub(super) fn mark_page(&mut self, p: u32, two_pages: bool) {
        let (load, store, set) = if two_pages {
            (I::I32Load16U(books_arg(0)), I::I32Store16(books_arg(0)), 0x0101)
        } else {
            (I::I32Load8U(books_arg(0)), I::I32Store8(books_arg(0)), 1)
        };
        let tested = !self.branchless_marks && self.in_loop();
        if tested {
            self.ins(I::LocalGet(p)).ins(load).ins(I::I32Const(set)).ins(I::I32Ne).ins(I::If(BlockType::Empty));
        }
        self.ins(I::LocalGet(p)).ins(I::I32Const(set)).ins(store);
        self.ins(I::LocalGet(p)).ins(I::I32Const(SUMMARY_SHIFT - PAGE_SHIFT)).ins(I::I32ShrU).ins(I::I32Const(1));
        let summary = self.plan.layout.map as u64;
        self.ins(I::I32Store8(wasm_encoder::MemArg { offset: summary, ..books_arg(0) }));
        if tested {
            self.ins(I::End);
        }
    }

    /// Joins a store at `offset` through `local` to its group (a new one
    /// if it does not fit the window).
    fn group(&mut self, local: u32, offset: u64) {
        let window = DIRTY_PAGE as u64;
        let g = &mut self.grouping;
        match g.groups.iter_mut().find(|group| group.local == local) {
            Some(group) => {
                let (lowest, highest) = (group.lowest.min(offset), group.highest.max(offset));
                if highest - lowest >= window {
                    self.flush(Some(local));
                    self.grouping.groups.push(Group { local, lowest: offset, highest: offset });
                } else {
                    (group.lowest, group.highest) = (lowest, highest);
                }
            }
            None => g.groups.push(Group { local, lowest: offset, highest: offset }),
        }
    }

    /// A store of the original module, rewritten: with the barrier,
    /// grouped or followed by its own mark. `value` is the temporary of the
    /// stored type; `offset` the store's own.
    pub(super) fn store(&mut self, store: &I<'_>, value: u32, offset: u64) {
        let g = &self.grouping;
        let at = |depth: usize| g.stack.len().checked_sub(depth).map_or(Origin::Other, |i| g.stack[i]);
        let (address, stored) = (at(2), at(1));
        // wasmi 2.0.0 panics translating a store whose address and value
        // are one just-computed value (`local.tee L; local.get L;
        // i32.store16`, or `…; i64.extend_i32_u; i64.store32` — conversions
        // that keep the bits keep its register) with a large offset: route
        // the value through a temporary, as the per-store barrier does
        // anyway.
        let same = address.value().is_some() && address.value() == stored.value();
        // An unmarked callee copy's stores are all through its parameters:
        // its callers mark them (see `super::callee`).
        if self.plan.tracking != Tracking::Barrier || self.unmarked {
            if same {
                self.ins(I::LocalSet(value)).ins(I::LocalGet(value));
            }
            self.f.instruction(store);
            return;
        }
        if let Origin::Local { local, version, plus, .. } = address
            && version == g.version(local)
            && !same
        {
            self.f.instruction(store);
            self.marked_store(local, plus, offset);
            return;
        }
        // A constant address: its page is known; marked once per run (the
        // store succeeded, so the page is in the memory and the map).
        if let Origin::Const(k) = address {
            self.f.instruction(store);
            let page = ((u64::from(k) + offset) >> PAGE_SHIFT) as u32;
            if !self.grouping.const_pages.contains(&page) {
                if self.grouping.const_pages.len() == MAX_CONST_PAGES {
                    self.flush(None);
                }
                self.grouping.const_pages.push(page);
            }
            return;
        }
        let addr = self.t.addr;
        self.ins(I::LocalSet(value)).ins(I::LocalTee(addr)).ins(I::LocalGet(value));
        self.f.instruction(store);
        // The address the store checked (no wrap: the store succeeded).
        self.mark_at(addr, offset, false);
    }

    /// Records a store at `(local + plus) mod 2^32 + offset` that
    /// succeeded (`local` unwritten since): grouped with the run's other
    /// stores through `local`, or hoisted out of the loops around it.
    pub(super) fn marked_store(&mut self, local: u32, plus: u32, offset: u64) {
        // In a loop that leaves `local` unchanged or only steps it,
        // marked when the loop is left (see `super::hoist`).
        if self.hoisted(local, i64::from(plus as i32), offset) {
            return;
        }
        // The store's address is `(local + plus) mod 2^32 + offset`;
        // once it succeeded (below 4 GiB), that is
        // `(local + plus + offset) mod 2^32`, which the mark computes.
        self.group(local, u64::from(plus) + offset);
    }

    /// For a call of `f`: if `f`'s stores can be marked by this caller
    /// (see `super::callee`) — each pointer argument a local's current
    /// value plus a constant — its unmarked copy and those stores as the
    /// caller's, `(local, plus, offset)`.
    pub(super) fn callee_marks(&self, f: u32) -> Option<(u32, Vec<CallerStore>)> {
        if self.plan.tracking != Tracking::Barrier || self.unmarked {
            return None;
        }
        let callee = self.plan.callees.by_func.get(&f)?;
        let params = self.plan.funcs.get((f - self.plan.imported_funcs) as usize)?.params as usize;
        let g = &self.grouping;
        let first = g.stack.len().checked_sub(params)?;
        let mut stores = Vec::new();
        for (p, lowest, highest) in &callee.params {
            let Origin::Local { local, version, plus, .. } = g.stack[first + *p as usize] else { return None };
            if version != g.version(local) {
                return None;
            }
            for s in [lowest, highest] {
                stores.push((local, plus.wrapping_add(s.c as u32), s.offset));
            }
        }
        Some((callee.copy, stores))
    }

    /// Marks the guest range `[local d, local d + local n)` dirty, if
    /// `n > 0` — after the bulk operation that wrote it succeeded.
    pub(super) fn mark_range(&mut self, d: u32, n: u32) {
        if self.plan.tracking != Tracking::Barrier {
            return;
        }
        self.ins(I::LocalGet(n)).ins(I::If(BlockType::Empty));
        // For the map and then the summary (at `base`, by `shift`):
        // fill(base + (d >> shift), 1, ((d + n - 1) >> shift) - (d >> shift) + 1)
        let summary = self.plan.layout.map as i32;
        for (shift, base) in [(PAGE_SHIFT, 0), (SUMMARY_SHIFT, summary)] {
            let first = |b: &mut Self| {
                b.ins(I::LocalGet(d)).ins(I::I32Const(shift)).ins(I::I32ShrU);
            };
            first(self);
            if base != 0 {
                self.ins(I::I32Const(base)).ins(I::I32Add);
            }
            self.ins(I::I32Const(1));
            self.ins(I::LocalGet(d)).ins(I::LocalGet(n)).ins(I::I32Add).ins(I::I32Const(1)).ins(I::I32Sub);
            self.ins(I::I32Const(shift)).ins(I::I32ShrU);
            first(self);
            self.ins(I::I32Sub).ins(I::I32Const(1)).ins(I::I32Add);
            self.ins(I::MemoryFill(super::layout::BOOKS));
        }
        self.ins(I::End);
    }
}
