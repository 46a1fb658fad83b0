//! The instrumentation pass: what every executor is rewritten into before
//! any engine compiles it, so that verdicts are identical on every engine
//! *by construction* and blanking costs only what a transaction dirtied.
//! Engines only run the result; none of them meters, counts stack or
//! decides a limit that a verdict depends on.
//!
//! # Memory layout
//!
//! The guest's linear memory stays memory 0, exactly as compiled: loads,
//! stores, bulk operations, `memory.size`, `memory.grow` and data segments
//! keep their addresses (the pass only caps the memory's maximum at the
//! limit). The host's bookkeeping — the **dirty map** (one byte per 1 KiB
//! guest page, with a summary byte per 64 KiB) and its cells and flags (see
//! [`Layout`]) — is a second
//! memory the pass appends ([`layout::BOOKS`], exported under a reserved
//! name), which the guest's own code cannot name: it was validated with
//! one memory. (Until version 9 the books lay below a guest memory shifted
//! up by a wasm page; the shift cost singlepass and wasmi 8–18 % on real
//! executors, whose accesses are cheaper with small static offsets.)
//!
//! # Rooms
//!
//! [`layout`] (the books memory), [`cost`] (the units), `segments` (the
//! first pass over a body: fuel segments, operand stack depth), `body` (the
//! rewrite of a body: metering, NaNs, guards, flags), [`dirty`] (what
//! a transaction wrote: the write barrier, or nothing), `hoist` (the
//! barrier's marks moved out of loops), `callee` (a small callee's marks
//! made by its callers), `inline` (small leaves inlined, metered as
//! calls), `bake` (a blank snapshot written into the module), and this
//! file (the module-level rewrite).
//!
//! # Fuel (abi.md "Units")
//!
//! One unit per executed instruction of the original module, plus the extra
//! costs of [`cost`]. While a function runs, the remaining fuel is a local
//! of it; between functions a mutable `i64` global the pass appends; for
//! the host a cell in the books ([`Layout::fuel_cell`]): the host
//! arms the cell and sets [`Layout::entry_flag`], the first host-called
//! function to run loads the global from the cell, and the count moves
//! between local, global and cell around every call (see `body`'s docs).
//! So host calls charge the same counter, without any engine API.
//!
//! Code is charged per *segment*, a straight run of instructions that ends
//! at a control instruction (`loop`, `if`, `else`, `end`, `br`, `br_if`,
//! `br_table`, `return`, `unreachable`; but not at the `end` of a loop or
//! of a block no branch targets, where only falling through continues):
//! each segment's length is subtracted when it is entered, so the counter
//! always holds the budget minus the units executed (exactly: a segment is
//! entered only if all of it runs, but for traps).
//!
//! The counter is *checked* — and the transaction ends as `out_of_fuel` if
//! it is negative — at every function entry, at the top of every loop
//! iteration, before every bulk operation or growth (charged by size,
//! before the work), in every host call, and when a host-called function
//! returns. Between two checks runs at most straight-line code of one
//! function body, so nothing can run long past its budget, and the verdict
//! is `out_of_fuel` exactly when the units used exceed the budget at one of
//! these points: the same points, so the same instruction, on every engine.
//! A small leaf inlined at a call site keeps its entry's check and charges
//! there (see `inline`): inlining changes no threshold.
//! Checking only there (not on every segment) halves the metering's cost
//! on an interpreter.
//!
//! # Stack (abi.md "Units")
//!
//! Each function's frame costs [`cost::frame`] bytes: a fixed part plus
//! 8 bytes per parameter, declared local and slot of its deepest operand
//! stack (as the validator measures it). Entering a function subtracts it
//! from an `i32` global (loaded from [`Layout::stack_cell`] like the fuel)
//! and ends the transaction as
//! `stack_overflow` if the cell would go negative; leaving it (its end,
//! `return` and branches to its outermost label — all rewritten to leave
//! through one wrapping block) adds it back. Engine stacks are sized far
//! above any budget ([`engine_stack_bytes`]), so they never fire first.
//!
//! # Floats
//!
//! Every float instruction that can produce a NaN (arithmetic, `min`/`max`,
//! `sqrt`, rounding, `promote`/`demote`) is followed by a select that
//! replaces any NaN with the canonical one (`0x7fc00000` /
//! `0x7ff8000000000000`): engines differ in NaN payloads and signs, and
//! bits of a NaN could otherwise reach a verdict. Sign and bit operations
//! (`abs`, `neg`, `copysign`, reinterpretations) are exact on every engine
//! and left alone.
//!
//! # What a transaction wrote
//!
//! Under [`Tracking::Barrier`] every store is followed by a mark in the
//! dirty map, and bulk operations mark their range; a blank copies back
//! only the marked pages. Under [`Tracking::Off`] nothing is marked and a
//! blank rebuilds the instance. See [`dirty`].
//!
//! # Flags
//!
//! The last bytes of the books tell the host what happened,
//! without any engine call: [`Layout::tables_flag`] is set before any table
//! mutation (so tables are restored only when touched),
//! [`Layout::rebuild_flag`] before `data.drop` and `elem.drop` (dropped
//! segments cannot be revived: the instance is rebuilt), and
//! [`Layout::oom_flag`], [`Layout::fuel_flag`] and [`Layout::stack_flag`]
//! just before the `unreachable` that ends a transaction for growth past
//! the limits, fuel or stack: the driver reads them and decides the
//! rejection, so the engine's report of the trap never matters.
//!
//! # Growth guards
//!
//! Engines disagree on growth past a limit (wasmer returns -1 whatever its
//! tunables say; others can be made to trap), and abi.md wants
//! `out_of_memory` on every backend. So the pass checks each `memory.grow`
//! and `table.grow` request against the limits itself, in 64-bit
//! arithmetic, before the engine sees it: past the limit, it sets the OOM
//! flag and executes `unreachable`. Engine-side limiters stay as backstops.
//! Each call may execute at most [`layout::MAX_GROWTHS_PER_CALL`] growth
//! operations (counted in the books; one more is `out_of_memory` too): an
//! interpreter that keeps a native frame per growth (wasmi 2) must not run
//! out of host stack.

use crate::{Error, Result};
use body::Body;
use std::collections::HashMap;
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{BlockType, ConstExpr, ValType};
use wasmparser::{Parser, Payload, ValidPayload, Validator};

mod bake;
mod body;
mod callee;
pub mod cost;
pub mod dirty;
mod hoist;
pub mod inline;
pub mod layout;
mod segments;

pub(crate) use bake::bake;
pub use dirty::Tracking;
pub use layout::Layout;

/// Bytes of guest memory one dirty-map byte covers: a blank copies back
/// whole pages, so smaller pages copy less of what a transaction did not
/// write (1 KiB rather than 4 KiB took a 2 µs executor's blank from two
/// 4 KiB pages of stack and statics to about 2 KiB); the summary keeps
/// the scan of the larger map short.
pub const DIRTY_PAGE: usize = 1024;
/// Bytes of guest memory one summary byte covers: 64 map bytes, eight
/// words of the blank's scan.
pub const SUMMARY_SPAN: usize = 64 * DIRTY_PAGE;
/// Most bytes a store can spill past the page its address is in.
pub const SPILL: usize = 7;
/// Version of the pass and its cost table: part of any key under which an
/// instrumented module is cached.
pub const VERSION: u32 = 16;
/// Locals the pass adds to every function (its temporaries). Hoisting
/// marks out of loops adds a few more, only where the engines' limits
/// leave ample room (see `hoist`).
pub const ADDED_LOCALS: u32 = 10;

/// The largest stack budget the host accepts (bytes of [`cost::frame`]).
pub const MAX_STACK_BUDGET: u64 = 512 << 10;

/// The native stack an engine is given for a stack budget of `budget`
/// model bytes: 8 native bytes per model byte — the heaviest frames
/// measured (singlepass, few slots) use about 3 — plus 512 KiB for
/// trampolines and host functions. Only the model's limit ever fires.
pub fn engine_stack_bytes(budget: u64) -> u64 {
    8 * budget + (512 << 10)
}

/// Native stack beyond [`engine_stack_bytes`] that a thread calling into
/// the engines keeps for the host's own frames (the driver, imports,
/// compilation on that thread).
pub const HOST_STACK_MARGIN: u64 = 2 << 20;

/// The stack a thread the host spawns to call into executors needs for a
/// stack budget of `budget` (`std`'s default of 2 MiB is too small for the
/// larger budgets).
pub fn thread_stack_bytes(budget: u64) -> usize {
    usize::try_from(engine_stack_bytes(budget) + HOST_STACK_MARGIN).unwrap_or(usize::MAX)
}

/// The signature of a defined function, as the rewrite needs it.
pub(crate) struct FuncSig {
    /// Parameter count.
    pub params: u32,
    /// Result types.
    pub results: Vec<wasmparser::ValType>,
}

/// What the rewrite needs to know about the module.
pub(crate) struct Plan<'a> {
    pub layout: Layout,
    /// The memory limit in guest pages.
    pub memory_pages: u64,
    /// The most elements a table may have.
    pub table_elements: u64,
    /// Each defined function's signature, in order.
    pub funcs: Vec<FuncSig>,
    /// Extra exports: (name, kind, index).
    pub exports: Vec<(&'a str, wasm_encoder::ExportKind, u32)>,
    /// Whether to meter fuel and stack and canonicalise NaNs (see
    /// [`crate::module::Metering`]).
    pub metering: bool,
    /// How what a transaction writes is tracked.
    pub tracking: Tracking,
    /// Imported functions (all host imports).
    pub imported_funcs: u32,
    /// Globals of the module (the pass appends its two counters after them).
    pub globals: u32,
    /// Defined functions (0-based among defined) the host may call: every
    /// exported function and the start function.
    pub entries: std::collections::HashSet<u32>,
    /// Functions whose stores their callers mark (see `callee`); set by
    /// [`Plan::find_callees`].
    pub(crate) callees: callee::Callees,
}

impl Plan<'_> {
    /// Finds the functions of `wasm` whose stores their callers can mark
    /// (under the barrier only: their copies follow `hoist`'s helper).
    pub(crate) fn find_callees(&mut self, wasm: &[u8]) {
        if self.tracking == Tracking::Barrier && !self.funcs.is_empty() {
            let first_copy = self.imported_funcs + self.funcs.len() as u32 + 1;
            self.callees = callee::find(wasm, self.imported_funcs, &self.funcs, first_copy);
        }
    }
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::InvalidModule(format!("instrumentation: {e}"))
}

/// Rewrites a checked module per the module docs. Returns the new binary.
pub(crate) fn rewrite(wasm: &[u8], plan: &Plan<'_>) -> Result<Vec<u8>> {
    let mut re = RoundtripReencoder;
    let mut out = wasm_encoder::Module::new();
    let mut validator = Validator::new_with_features(crate::module::abi_features());
    let mut allocs = wasmparser::FuncValidatorAllocations::default();
    let mut code = wasm_encoder::CodeSection::new();
    let mut remaining_bodies = 0u32;
    let mut defined = 0usize;
    // Block types `[] -> results` for functions with several results: the
    // wrapping block needs one; they are appended to the type section.
    let mut wrapper_types: HashMap<Vec<wasmparser::ValType>, u32> = HashMap::new();
    // The fuel and stack counters are globals while wasm runs (cheaper than
    // memory on every engine); appended to the global section, or in one of
    // their own right after the memory section.
    let has_globals = Parser::new(0).parse_all(wasm).any(|p| matches!(p, Ok(Payload::GlobalSection(_))));
    // The barrier's out-of-line range mark (see `hoist`), after the
    // module's own functions (so their indices stay), if it has any.
    let helper = plan.tracking == Tracking::Barrier && !plan.funcs.is_empty();
    let mut helper_type = 0;
    // The bodies of the callees' copies, rewritten after the module's own.
    let mut copies = HashMap::new();
    // Small leaves inlined at their call sites (see `inline`).
    let inlinees = inline::find(wasm, plan)?;
    let counters = |s: &mut wasm_encoder::GlobalSection| {
        let ty = |val_type| wasm_encoder::GlobalType { val_type, mutable: true, shared: false };
        s.global(ty(ValType::I64), &ConstExpr::i64_const(0));
        s.global(ty(ValType::I32), &ConstExpr::i32_const(0));
    };

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(err)?;
        let valid = validator.payload(&payload).map_err(err)?;
        let Some((id, range)) = payload.as_section() else {
            if let ValidPayload::Func(func, body) = valid {
                let sig = &plan.funcs[defined];
                defined += 1;
                let block = match sig.results.as_slice() {
                    [] => BlockType::Empty,
                    [one] => BlockType::Result(re.val_type(*one).map_err(err)?),
                    many => BlockType::FunctionType(
                        *wrapper_types.get(many).ok_or_else(|| err("no wrapper type for a multi-value function"))?,
                    ),
                };
                let index = defined as u32 - 1;
                let entry = plan.entries.contains(&index);
                if plan.callees.originals.contains(&index) {
                    let again = wasmparser::FuncToValidate {
                        resources: func.resources.clone(),
                        index: func.index,
                        ty: func.ty,
                        features: func.features,
                    };
                    copies.insert(index, (again, body.clone(), sig.params, block));
                }
                let mut fv = func.into_validator(std::mem::take(&mut allocs));
                code.function(&Body::rewrite(&body, &mut fv, sig.params, block, (entry, false), plan, &inlinees)?);
                allocs = fv.into_allocations();
                remaining_bodies -= 1;
                if remaining_bodies == 0 {
                    if helper {
                        code.function(&hoist::mark_helper(plan));
                        for original in &plan.callees.originals {
                            let (func, body, params, block) = copies.remove(original).ok_or_else(|| err("no copy"))?;
                            let mut fv = func.into_validator(std::mem::take(&mut allocs));
                            let unmarked = (false, true);
                            code.function(&Body::rewrite(&body, &mut fv, params, block, unmarked, plan, &inlinees)?);
                            allocs = fv.into_allocations();
                        }
                    }
                    out.section(&code);
                }
            }
            continue;
        };
        match payload {
            Payload::TypeSection(reader) => {
                let mut s = wasm_encoder::TypeSection::new();
                let mut count = reader.count();
                re.parse_type_section(&mut s, reader).map_err(err)?;
                for f in plan.funcs.iter().filter(|f| f.results.len() > 1) {
                    if !wrapper_types.contains_key(&f.results) {
                        let results = f.results.iter().map(|t| re.val_type(*t)).collect::<Result<Vec<_>, _>>();
                        s.ty().function([], results.map_err(err)?);
                        wrapper_types.insert(f.results.clone(), count);
                        count += 1;
                    }
                }
                if helper {
                    hoist::mark_helper_type(&mut s);
                    helper_type = count;
                }
                out.section(&s);
            }
            Payload::FunctionSection(reader) => {
                let mut s = wasm_encoder::FunctionSection::new();
                let types = reader.into_iter().collect::<Result<Vec<u32>, _>>().map_err(err)?;
                for ty in &types {
                    s.function(*ty);
                }
                if helper {
                    s.function(helper_type);
                    // The callees' unmarked copies, in order (see `callee`).
                    for &original in &plan.callees.originals {
                        s.function(types[original as usize]);
                    }
                }
                out.section(&s);
            }
            Payload::MemorySection(reader) => {
                let mut s = wasm_encoder::MemorySection::new();
                for m in reader {
                    let mut ty = re.memory_type(m.map_err(err)?).map_err(err)?;
                    // Every engine's own allocator caps the memory at the
                    // limit too (a backstop: the growth guard fires first).
                    ty.maximum = Some(ty.maximum.unwrap_or(u64::MAX).min(plan.memory_pages).min(65536));
                    s.memory(ty);
                }
                // The books, after the guest's one memory: index `BOOKS`.
                let pages = plan.layout.books_pages();
                s.memory(wasm_encoder::MemoryType {
                    minimum: pages,
                    maximum: Some(pages),
                    memory64: false,
                    shared: false,
                    page_size_log2: None,
                });
                out.section(&s);
                if !has_globals {
                    let mut g = wasm_encoder::GlobalSection::new();
                    counters(&mut g);
                    out.section(&g);
                }
            }
            Payload::GlobalSection(reader) => {
                let mut g = wasm_encoder::GlobalSection::new();
                re.parse_global_section(&mut g, reader).map_err(err)?;
                counters(&mut g);
                out.section(&g);
            }
            Payload::ExportSection(reader) => {
                let mut s = wasm_encoder::ExportSection::new();
                for e in reader {
                    let e = e.map_err(err)?;
                    s.export(e.name, e.kind.into(), e.index);
                }
                for (name, kind, index) in &plan.exports {
                    s.export(name, *kind, *index);
                }
                out.section(&s);
            }
            Payload::CodeSectionStart { count, .. } => {
                remaining_bodies = count;
                if count == 0 {
                    out.section(&code);
                }
            }
            // Custom sections (names, producers) never matter to a verdict;
            // the start function is exported instead (see `ModuleInfo::start`).
            Payload::CustomSection(_) | Payload::StartSection { .. } => {}
            _ => {
                out.section(&wasm_encoder::RawSection { id, data: &wasm[range] });
            }
        }
    }
    Ok(out.finish())
}
