//! The instrumentation pass: what every executor is rewritten into before
//! any engine compiles it, so that verdicts are identical on every engine
//! *by construction* and blanking costs only what a transaction dirtied.
//! Engines only run the result; none of them meters, counts stack or
//! decides a limit that a verdict depends on.
//!
//! # Memory layout
//!
//! The guest's linear memory is shifted up by `R` bytes (whole wasm pages):
//! every load and store gets `R` added to its static offset (free: it is an
//! immediate), bulk-memory operations get it added to their addresses (with
//! a check that traps `memory_out_of_bounds` exactly where the original
//! would), `memory.size`/`memory.grow` report guest pages, active data
//! segments move up by `R`. The guest therefore cannot address `[0, R)`,
//! which holds the **dirty map** (one byte per 4 KiB guest page), its
//! summary, and the host's cells and flags (see [`Layout`]).
//!
//! # Fuel (abi.md "Units")
//!
//! One unit per executed instruction of the original module, plus the extra
//! costs of [`cost`]. While wasm runs, the remaining fuel is a mutable
//! `i64` global the pass appends (a global is the cheapest counter on every
//! engine); the host sees it as a cell in the reserved region
//! ([`Layout::fuel_cell`]): it arms the cell and sets
//! [`Layout::entry_flag`], the first host-called function to run loads the
//! global from the cell, and the global is copied back to the cell around
//! every host call (and `call_indirect`, which may reach one) and when a
//! host-called function returns. So host calls charge the same counter,
//! without any engine API.
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
//! # Write barrier
//!
//! After every store the pass adds `map[(addr + offset) >> 12] = 1` and
//! `summary[(addr + offset) >> 20] = 1`; after `memory.fill`/`memory.copy`/
//! `memory.init` it marks the written range in both with one `memory.fill`
//! each. A store can spill at most 7 bytes into the next page, so restoring
//! a marked page copies its 4 KiB plus 7 bytes. The host remembers or
//! marks what it writes itself (transaction payloads, `state_get` output).
//! Restoring reads the summary (one byte per MiB of guest memory), scans
//! only the map of marked MiBs, and copies only marked pages: its cost is
//! what the transaction dirtied, whatever the memory's size.
//!
//! # Flags
//!
//! The last bytes of the reserved region tell the host what happened,
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

use crate::{Error, Result};
use std::collections::HashMap;
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{BlockType, ConstExpr, Function, Instruction as I, MemArg, ValType};
use wasmparser::{Operator, Parser, Payload, ValidPayload, Validator};

/// Bytes of guest memory one dirty-map byte covers.
pub const DIRTY_PAGE: usize = 4096;
/// Bytes of guest memory one summary byte covers (256 map bytes).
pub const SUMMARY_SPAN: usize = 1 << 20;
/// Most bytes a store can spill past the page its address is in.
pub const SPILL: usize = 7;
/// Version of the pass and its cost table: part of any key under which an
/// instrumented module is cached.
pub const VERSION: u32 = 3;
/// Locals the pass adds to every function (its temporaries).
pub const ADDED_LOCALS: u32 = 10;

/// The documented costs of abi.md's engine-independent units.
pub mod cost {
    /// Fuel per executed instruction of the original module.
    pub const INSTRUCTION: u64 = 1;
    /// Fuel per byte written by `memory.fill`/`memory.copy`/`memory.init`,
    /// and per element of `table.fill`/`table.copy`/`table.init`.
    pub const BULK_UNIT: u64 = 1;
    /// Fuel per 64 KiB page `memory.grow` asks for (the host zeroes it).
    pub const GROW_PAGE: u64 = 1024;
    /// Fuel per element `table.grow` asks for.
    pub const GROW_ELEMENT: u64 = 1;
    /// Fuel per host call (`state_get`, `deny_reason`, `log`).
    pub const HOST_CALL: u64 = 100;
    /// Fuel per byte a host call reads (key, reason, log line as kept) or
    /// writes (a `state_get` value).
    pub const HOST_BYTE: u64 = 1;
    /// Stack bytes of every frame, whatever its shape.
    pub const FRAME_BASE: u64 = 64;
    /// Stack bytes per parameter, declared local and operand-stack slot.
    pub const SLOT: u64 = 8;

    /// The stack bytes a frame of a function with `params` parameters,
    /// `locals` declared locals and an operand stack at most `max_stack`
    /// deep costs (capped at 1 GiB, above any budget).
    pub fn frame(params: u32, locals: u32, max_stack: u32) -> u64 {
        let slots = u64::from(params) + u64::from(locals) + u64::from(max_stack);
        (FRAME_BASE + SLOT * slots).min(1 << 30)
    }
}

/// The largest stack budget the host accepts (bytes of [`cost::frame`]).
pub const MAX_STACK_BUDGET: u64 = 512 << 10;

/// The native stack an engine is given for a stack budget of `budget`
/// model bytes: 8 native bytes per model byte — the heaviest frames
/// measured (singlepass, few slots) use about 3 — plus 512 KiB for
/// trampolines and host functions. Only the model's limit ever fires.
pub fn engine_stack_bytes(budget: u64) -> u64 {
    8 * budget + (512 << 10)
}

/// Where the guest's memory starts and where the host's bookkeeping lies
/// below it: the dirty map at 0, the summary after it, the fuel and stack
/// cells and the flag bytes at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    /// Bytes reserved below the guest's memory (`R`, whole wasm pages).
    pub reserved: usize,
    /// Offset of the summary (the map's length).
    pub summary: usize,
}

/// Bytes at the end of the reserved region for cells and flags.
const CELLS: usize = 32;

impl Layout {
    /// No reserved region (for host functions over a plain memory).
    pub const NONE: Layout = Layout { reserved: 0, summary: 0 };

    /// The layout for guests of at most `max_guest_bytes` of memory: the
    /// map, the summary, then the cells and flags, rounded up to whole wasm
    /// pages.
    pub fn for_limit(max_guest_bytes: u64) -> Self {
        let map = (max_guest_bytes as usize).div_ceil(DIRTY_PAGE);
        let summary = (max_guest_bytes as usize).div_ceil(SUMMARY_SPAN);
        Layout { reserved: (map + summary + CELLS).div_ceil(65536) * 65536, summary: map }
    }

    /// Marks guest bytes `start..start+len` dirty in the map and the
    /// summary (`region` is the reserved region, see [`Layout::split`]).
    pub fn mark(&self, region: &mut [u8], start: usize, len: usize) {
        if len == 0 || region.is_empty() {
            return;
        }
        let last = start + len - 1;
        region[start / DIRTY_PAGE..=last / DIRTY_PAGE].fill(1);
        region[self.summary + start / SUMMARY_SPAN..=self.summary + last / SUMMARY_SPAN].fill(1);
    }

    /// Address of the byte set when the instance cannot be restored in
    /// place (a data or element segment was dropped).
    pub fn rebuild_flag(&self) -> usize {
        self.reserved - 1
    }

    /// Address of the byte set when a table was mutated.
    pub fn tables_flag(&self) -> usize {
        self.reserved - 2
    }

    /// Address of the byte set, just before the guest traps, when
    /// `memory.grow` or `table.grow` asked for more than the limits allow.
    pub fn oom_flag(&self) -> usize {
        self.reserved - 3
    }

    /// Address of the byte set, just before the guest traps, when fuel ran
    /// out (by the instrumentation or a host call's charge).
    pub fn fuel_flag(&self) -> usize {
        self.reserved - 4
    }

    /// Address of the byte set, just before the guest traps, when the stack
    /// budget ran out.
    pub fn stack_flag(&self) -> usize {
        self.reserved - 5
    }

    /// Address of the byte the host sets when it arms a call: the next
    /// exported function entered loads the counters from the cells.
    pub fn entry_flag(&self) -> usize {
        self.reserved - 6
    }

    /// Address of the remaining stack budget (`i32`, little-endian).
    pub fn stack_cell(&self) -> usize {
        self.reserved - 12
    }

    /// Address of the remaining fuel (`i64`, little-endian, 8-aligned).
    pub fn fuel_cell(&self) -> usize {
        self.reserved - 24
    }

    /// Whether the instrumentation's growth guard ended the last call
    /// (`memory` is the whole linear memory).
    pub fn out_of_memory(&self, memory: &[u8]) -> bool {
        self.flag(memory, self.oom_flag())
    }

    /// What the reserved region says ended the last call, if anything
    /// (`memory` is the whole linear memory).
    pub fn ended(&self, memory: &[u8]) -> Option<crate::RejectionKind> {
        use crate::RejectionKind as K;
        [(self.oom_flag(), K::OutOfMemory), (self.fuel_flag(), K::OutOfFuel), (self.stack_flag(), K::StackOverflow)]
            .into_iter()
            .find(|(at, _)| self.flag(memory, *at))
            .map(|(_, kind)| kind)
    }

    fn flag(&self, memory: &[u8], at: usize) -> bool {
        self.reserved > 0 && memory.get(at).is_some_and(|f| *f != 0)
    }

    /// Arms the next calls: `fuel` units and `stack` bytes of budget, the
    /// end flags cleared (`memory` is the whole linear memory).
    pub fn arm(&self, memory: &mut [u8], fuel: u64, stack: u64) {
        if self.reserved == 0 {
            return;
        }
        let fuel = fuel.min(i64::MAX as u64 / 2);
        let stack = stack.min(MAX_STACK_BUDGET) as u32;
        memory[self.fuel_cell()..self.fuel_cell() + 8].copy_from_slice(&fuel.to_le_bytes());
        memory[self.stack_cell()..self.stack_cell() + 4].copy_from_slice(&stack.to_le_bytes());
        for at in [self.oom_flag(), self.fuel_flag(), self.stack_flag()] {
            memory[at] = 0;
        }
        memory[self.entry_flag()] = 1;
    }

    /// Fuel left (`memory` is the whole linear memory).
    pub fn fuel_left(&self, memory: &[u8]) -> u64 {
        if self.reserved == 0 {
            return u64::MAX;
        }
        let at = self.fuel_cell();
        i64::from_le_bytes(memory[at..at + 8].try_into().expect("8 bytes")).max(0) as u64
    }

    /// Subtracts `units` of fuel for work the host does; `false` (with the
    /// fuel flag set and no fuel left) if there was not enough.
    pub fn charge(&self, memory: &mut [u8], units: u64) -> bool {
        if self.reserved == 0 {
            return true;
        }
        let left = self.fuel_left(memory);
        let at = self.fuel_cell();
        let enough = left >= units;
        let after = if enough { left - units } else { 0 };
        memory[at..at + 8].copy_from_slice(&after.to_le_bytes());
        if !enough {
            memory[self.fuel_flag()] = 1;
        }
        enough
    }

    /// Reserved wasm pages.
    pub fn reserved_pages(&self) -> u64 {
        (self.reserved / 65536) as u64
    }

    /// Splits a whole linear memory into the dirty map and the guest's view.
    pub fn split<'a>(&self, memory: &'a mut [u8]) -> (&'a mut [u8], &'a mut [u8]) {
        memory.split_at_mut(self.reserved.min(memory.len()))
    }

    /// The guest's view of a whole linear memory.
    pub fn guest<'a>(&self, memory: &'a [u8]) -> &'a [u8] {
        &memory[self.reserved.min(memory.len())..]
    }
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
    /// Imported functions (all host imports).
    pub imported_funcs: u32,
    /// Globals of the module (the pass appends its two counters after them).
    pub globals: u32,
    /// Defined functions (0-based among defined) the host may call: every
    /// exported function and the start function.
    pub entries: std::collections::HashSet<u32>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::InvalidModule(format!("instrumentation: {e}"))
}

/// Rewrites a checked module per the module docs. Returns the new binary.
pub(crate) fn rewrite(wasm: &[u8], plan: &Plan<'_>) -> Result<Vec<u8>> {
    let r = plan.layout.reserved as u64;
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
                let mut fv = func.into_validator(std::mem::take(&mut allocs));
                let block = match sig.results.as_slice() {
                    [] => BlockType::Empty,
                    [one] => BlockType::Result(re.val_type(*one).map_err(err)?),
                    many => BlockType::FunctionType(
                        *wrapper_types.get(many).ok_or_else(|| err("no wrapper type for a multi-value function"))?,
                    ),
                };
                let entry = plan.entries.contains(&(defined as u32 - 1));
                code.function(&Body::rewrite(&body, &mut fv, sig.params, block, entry, plan)?);
                allocs = fv.into_allocations();
                remaining_bodies -= 1;
                if remaining_bodies == 0 {
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
                out.section(&s);
            }
            Payload::MemorySection(reader) => {
                let mut s = wasm_encoder::MemorySection::new();
                for m in reader {
                    let mut ty = re.memory_type(m.map_err(err)?).map_err(err)?;
                    // Every engine's own allocator caps the memory at the
                    // limit too (a backstop: the growth guard fires first).
                    let reserved = plan.layout.reserved_pages();
                    ty.minimum += reserved;
                    ty.maximum = Some((ty.maximum.unwrap_or(u64::MAX).min(plan.memory_pages) + reserved).min(65536));
                    s.memory(ty);
                }
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
            Payload::DataSection(reader) => {
                let mut s = wasm_encoder::DataSection::new();
                for d in reader {
                    let d = d.map_err(err)?;
                    match d.kind {
                        wasmparser::DataKind::Passive => {
                            s.passive(d.data.iter().copied());
                        }
                        wasmparser::DataKind::Active { memory_index, offset_expr } => {
                            let mut ops = offset_expr.get_operators_reader();
                            let Operator::I32Const { value } = ops.read().map_err(err)? else {
                                return Err(err("data segment offset is not an i32.const"));
                            };
                            // Past the address space: stays out of bounds, as in the original.
                            let shifted = (value as u32 as u64 + r).min(u32::MAX as u64) as u32;
                            s.active(memory_index, &ConstExpr::i32_const(shifted as i32), d.data.iter().copied());
                        }
                    }
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

/// Temporaries a rewritten body uses, allocated after its own locals.
#[derive(Clone, Copy)]
struct Temps {
    addr: u32,
    i32v: u32,
    i64v: u32,
    f32v: u32,
    f64v: u32,
    len: u32,
    src: u32,
    amount: u32,
    fuel: u32,
    stack: u32,
}

/// Whether an operator ends a fuel segment (see the module docs).
fn ends_segment(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Else
            | Operator::End
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::Return
            | Operator::Unreachable
    )
}

/// Whether the code right after an operator is unreachable (so charging it
/// would be wasted code).
fn leaves(op: &Operator<'_>) -> bool {
    matches!(op, Operator::Br { .. } | Operator::BrTable { .. } | Operator::Return | Operator::Unreachable)
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

/// Whether an operator opens a loop (whose header checks fuel).
enum OpKind {
    Loop,
    Other,
}

/// An open control frame, as the segment analysis sees it.
enum Frame {
    /// A `block`, and whether a branch targets its label.
    Block { targeted: bool },
    /// A `loop` (branches go to its start).
    Loop,
    /// An `if` (its `end` is reached from two paths).
    If,
}

/// What a fuel charge subtracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Amount {
    /// A static cost.
    Const(u64),
    /// The `i64` in the `amount` temporary.
    Temp,
}

/// One function body being rewritten.
struct Body<'p> {
    f: Function,
    t: Temps,
    layout: Layout,
    plan: &'p Plan<'p>,
}

impl Body<'_> {
    fn rewrite<T: wasmparser::WasmModuleResources>(
        body: &wasmparser::FunctionBody<'_>,
        fv: &mut wasmparser::FuncValidator<T>,
        params: u32,
        block: BlockType,
        entry: bool,
        plan: &Plan<'_>,
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
        let count = params + declared;
        if u64::from(count) + u64::from(ADDED_LOCALS) > 50_000 {
            return Err(Error::ModuleLimit {
                what: "locals per function (parameters and the host's temporaries included)",
                actual: u64::from(count + ADDED_LOCALS),
                limit: 50_000,
            });
        }
        let t = Temps {
            addr: count,
            i32v: count + 1,
            i64v: count + 2,
            f32v: count + 3,
            f64v: count + 4,
            len: count + 5,
            src: count + 6,
            amount: count + 7,
            fuel: count + 8,
            stack: count + 9,
        };
        locals.extend([
            (2, ValType::I32),
            (1, ValType::I64),
            (1, ValType::F32),
            (1, ValType::F64),
            (2, ValType::I32),
            (2, ValType::I64),
            (1, ValType::I32),
        ]);

        // First pass: the operators, the deepest operand stack, the
        // segments' lengths.
        let mut ops = Vec::new();
        let mut max_stack = 0u32;
        let mut segments = vec![0u64];
        let mut boundaries = Vec::new();
        let mut frames: Vec<Frame> = Vec::new();
        let mut reader = body.get_operators_reader().map_err(err)?;
        while !reader.eof() {
            let offset = reader.original_position();
            let op = reader.read().map_err(err)?;
            fv.op(offset, &op).map_err(err)?;
            max_stack = max_stack.max(fv.operand_stack_height());
            *segments.last_mut().expect("never empty") += cost::INSTRUCTION;
            let mut target = |depth: u32| {
                if let Some(Frame::Block { targeted }) =
                    frames.len().checked_sub(1 + depth as usize).map(|i| &mut frames[i])
                {
                    *targeted = true;
                }
            };
            let boundary = match &op {
                Operator::Block { .. } => {
                    frames.push(Frame::Block { targeted: false });
                    false
                }
                Operator::Loop { .. } => {
                    frames.push(Frame::Loop);
                    true
                }
                Operator::If { .. } => {
                    frames.push(Frame::If);
                    true
                }
                // Code after the `end` of a loop, or of a block no branch
                // targets, is reached only by falling through from the
                // segment before it: one segment (exact, and fewer charges).
                Operator::End => !matches!(frames.pop(), Some(Frame::Loop | Frame::Block { targeted: false })),
                Operator::Br { relative_depth } | Operator::BrIf { relative_depth } => {
                    target(*relative_depth);
                    true
                }
                Operator::BrTable { targets } => {
                    for t in targets.targets() {
                        target(t.map_err(err)?);
                    }
                    target(targets.default());
                    true
                }
                op => ends_segment(op),
            };
            if boundary {
                segments.push(0);
            }
            boundaries.push(boundary);
            ops.push(op);
        }
        let frame = cost::frame(params, declared, max_stack) as i32;

        // Second pass: emit.
        let mut b = Body { f: Function::new(locals), t, layout: plan.layout, plan };
        if entry {
            b.load_counters_if_armed();
        }
        b.stack_enter(frame);
        b.charge(Amount::Const(segments[0]), true);
        b.f.instruction(&I::Block(block));
        let last = ops.len() - 1;
        let mut segment = 0;
        let mut open = 0u32; // control frames open inside the wrapping block
        for (i, op) in ops.into_iter().enumerate() {
            if i == last {
                // The function's own `end` closes the wrapping block; every
                // way out of the function passes here.
                b.f.instruction(&I::End);
                b.stack_leave(frame);
                if entry {
                    b.check_fuel();
                    b.spill_fuel();
                }
                b.f.instruction(&I::End);
                break;
            }
            match op {
                Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => open += 1,
                Operator::End => open -= 1,
                _ => {}
            }
            let boundary = boundaries[i];
            let dead_after = leaves(&op);
            let op_kind = if matches!(op, Operator::Loop { .. }) { OpKind::Loop } else { OpKind::Other };
            if let Operator::Return = op {
                b.f.instruction(&I::Br(open));
            } else {
                b.op(op)?;
            }
            if boundary {
                segment += 1;
                if !dead_after {
                    let loop_header = matches!(op_kind, OpKind::Loop);
                    b.charge(Amount::Const(segments[segment]), loop_header);
                }
            }
        }
        Ok(b.f)
    }

    fn ins(&mut self, i: I<'_>) -> &mut Self {
        self.f.instruction(&i);
        self
    }

    /// Sets a flag byte of the reserved region.
    fn set_flag(&mut self, at: usize) {
        self.ins(I::I32Const(at as i32)).ins(I::I32Const(1));
        self.ins(I::I32Store8(MemArg { offset: 0, align: 0, memory_index: 0 }));
    }

    /// With a condition on the stack: if true, set the flag and trap.
    fn end_if(&mut self, flag: usize) {
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

    /// At the entry of a function the host may call: if the host armed a
    /// call, load the counters from their cells and clear the flag.
    fn load_counters_if_armed(&mut self) {
        if !self.plan.metering {
            return;
        }
        let flag = self.layout.entry_flag() as i32;
        self.ins(I::I32Const(flag)).ins(I::I32Load8U(MemArg { offset: 0, align: 0, memory_index: 0 }));
        self.ins(I::If(BlockType::Empty));
        self.ins(I::I32Const(flag)).ins(I::I32Const(0));
        self.ins(I::I32Store8(MemArg { offset: 0, align: 0, memory_index: 0 }));
        self.reload_fuel();
        self.ins(I::I32Const(self.layout.stack_cell() as i32));
        self.ins(I::I32Load(MemArg { offset: 0, align: 2, memory_index: 0 }));
        self.ins(I::GlobalSet(self.stack_global()));
        self.ins(I::End);
    }

    /// Copies the fuel counter to its cell (before a host call, and when a
    /// host-called function returns), so the host sees and charges it.
    fn spill_fuel(&mut self) {
        if !self.plan.metering {
            return;
        }
        let (cell, counter) = (self.layout.fuel_cell() as i32, self.fuel_global());
        self.ins(I::I32Const(cell)).ins(I::GlobalGet(counter));
        self.ins(I::I64Store(MemArg { offset: 0, align: 3, memory_index: 0 }));
    }

    /// Loads the fuel counter from its cell (after a host call charged it).
    fn reload_fuel(&mut self) {
        if !self.plan.metering {
            return;
        }
        self.ins(I::I32Const(self.layout.fuel_cell() as i32));
        self.ins(I::I64Load(MemArg { offset: 0, align: 3, memory_index: 0 }));
        self.ins(I::GlobalSet(self.fuel_global()));
    }

    /// Subtracts `amount` from the fuel counter; with `check`, ends the
    /// transaction as `out_of_fuel` if the counter is then negative.
    fn charge(&mut self, amount: Amount, check: bool) {
        if !self.plan.metering || amount == Amount::Const(0) {
            return;
        }
        let (counter, fuel) = (self.fuel_global(), self.t.fuel);
        self.ins(I::GlobalGet(counter));
        match amount {
            Amount::Const(units) => self.ins(I::I64Const(units as i64)),
            Amount::Temp => self.ins(I::LocalGet(self.t.amount)),
        };
        self.ins(I::I64Sub);
        if !check {
            self.ins(I::GlobalSet(counter));
            return;
        }
        self.ins(I::LocalTee(fuel)).ins(I::I64Const(0)).ins(I::I64LtS);
        self.end_if(self.layout.fuel_flag());
        self.ins(I::LocalGet(fuel)).ins(I::GlobalSet(counter));
    }

    /// Ends the transaction as `out_of_fuel` if the counter is negative.
    fn check_fuel(&mut self) {
        if !self.plan.metering {
            return;
        }
        self.ins(I::GlobalGet(self.fuel_global())).ins(I::I64Const(0)).ins(I::I64LtS);
        self.end_if(self.layout.fuel_flag());
    }

    /// Charges `per_unit` × the unsigned `i32` in local `n`.
    fn charge_by(&mut self, n: u32, per_unit: u64) {
        if !self.plan.metering {
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

    fn stack_enter(&mut self, frame: i32) {
        if !self.plan.metering {
            return;
        }
        let (counter, stack) = (self.stack_global(), self.t.stack);
        self.ins(I::GlobalGet(counter)).ins(I::I32Const(frame)).ins(I::I32Sub).ins(I::LocalTee(stack));
        self.ins(I::I32Const(0)).ins(I::I32LtS);
        self.end_if(self.layout.stack_flag());
        self.ins(I::LocalGet(stack)).ins(I::GlobalSet(counter));
    }

    fn stack_leave(&mut self, frame: i32) {
        if !self.plan.metering {
            return;
        }
        let counter = self.stack_global();
        self.ins(I::GlobalGet(counter)).ins(I::I32Const(frame)).ins(I::I32Add).ins(I::GlobalSet(counter));
    }

    /// Emits code that traps with `memory_out_of_bounds` on every engine,
    /// then makes the stack polymorphic.
    fn trap_oob(&mut self) {
        self.ins(I::I32Const(0));
        self.ins(I::I32Load8U(MemArg { offset: u32::MAX as u64, align: 0, memory_index: 0 }));
        self.ins(I::Unreachable);
    }

    /// Marks the guest range `[local d, local d + local n)` dirty, in the
    /// map (at 0) and the summary, if `n > 0`.
    fn mark_range(&mut self, d: u32, n: u32) {
        let summary = self.layout.summary as i32;
        self.ins(I::LocalGet(n)).ins(I::If(BlockType::Empty));
        for (shift, base) in [(12, 0), (20, summary)] {
            let first = |b: &mut Self| {
                b.ins(I::LocalGet(d)).ins(I::I32Const(shift)).ins(I::I32ShrU);
            };
            first(self);
            if base != 0 {
                self.ins(I::I32Const(base)).ins(I::I32Add);
            }
            self.ins(I::I32Const(1)); // value
            // count = ((d + n - 1) >> shift) - (d >> shift) + 1
            self.ins(I::LocalGet(d)).ins(I::LocalGet(n)).ins(I::I32Add).ins(I::I32Const(1)).ins(I::I32Sub);
            self.ins(I::I32Const(shift)).ins(I::I32ShrU);
            first(self);
            self.ins(I::I32Sub).ins(I::I32Const(1)).ins(I::I32Add);
            self.ins(I::MemoryFill(0));
        }
        self.ins(I::End);
    }

    /// Replaces local `x` (a guest address) by `x + R` on the stack,
    /// trapping out of bounds where the sum would wrap.
    fn shift_addr(&mut self, x: u32) {
        let r = self.layout.reserved as u64;
        self.ins(I::LocalGet(x)).ins(I::I32Const((u32::MAX as u64 - r) as u32 as i32)).ins(I::I32GtU);
        self.ins(I::If(BlockType::Empty));
        self.trap_oob();
        self.ins(I::End);
        self.ins(I::LocalGet(x)).ins(I::I32Const(r as u32 as i32)).ins(I::I32Add);
    }

    /// Emits one operator of the original body, rewritten.
    fn op(&mut self, op: Operator<'_>) -> Result<()> {
        let layout = self.layout;
        let r = layout.reserved as u64;
        let t = self.t;
        let nan = nan_producing(&op).filter(|_| self.plan.metering);
        let mut ins = RoundtripReencoder.instruction(op).map_err(err)?;
        let fits = |m: &MemArg| m.offset + r <= u32::MAX as u64;
        let value = match ins {
            I::I32Store(_) | I::I32Store8(_) | I::I32Store16(_) => t.i32v,
            I::I64Store(_) | I::I64Store8(_) | I::I64Store16(_) | I::I64Store32(_) => t.i64v,
            I::F32Store(_) => t.f32v,
            _ => t.f64v,
        };
        match &mut ins {
            I::I32Load(m)
            | I::I64Load(m)
            | I::F32Load(m)
            | I::F64Load(m)
            | I::I32Load8S(m)
            | I::I32Load8U(m)
            | I::I32Load16S(m)
            | I::I32Load16U(m)
            | I::I64Load8S(m)
            | I::I64Load8U(m)
            | I::I64Load16S(m)
            | I::I64Load16U(m)
            | I::I64Load32S(m)
            | I::I64Load32U(m) => {
                if fits(m) {
                    m.offset += r;
                    self.f.instruction(&ins);
                } else {
                    self.ins(I::Drop);
                    self.trap_oob();
                }
            }
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
                if !fits(m) {
                    self.ins(I::Drop).ins(I::Drop);
                    self.trap_oob();
                    return Ok(());
                }
                m.offset += r;
                self.ins(I::LocalSet(value)).ins(I::LocalTee(t.addr)).ins(I::LocalGet(value));
                self.f.instruction(&ins);
                // a = addr + offset (no wrap: the store succeeded);
                // map[a >> 12] = 1; summary[a >> 20] = 1.
                self.ins(I::LocalGet(t.addr));
                if offset != 0 {
                    self.ins(I::I32Const(offset as u32 as i32)).ins(I::I32Add);
                }
                self.ins(I::LocalTee(t.src)).ins(I::I32Const(12)).ins(I::I32ShrU).ins(I::I32Const(1));
                self.ins(I::I32Store8(MemArg { offset: 0, align: 0, memory_index: 0 }));
                self.ins(I::LocalGet(t.src)).ins(I::I32Const(20)).ins(I::I32ShrU).ins(I::I32Const(1));
                self.ins(I::I32Store8(MemArg { offset: layout.summary as u64, align: 0, memory_index: 0 }));
            }
            I::MemorySize(_) => {
                self.f.instruction(&ins);
                self.ins(I::I32Const((r / 65536) as i32)).ins(I::I32Sub);
            }
            I::MemoryGrow(_) => {
                // delta + size > limit (in i64: no wrap) ⇒ out_of_memory;
                // then charge the pages, then grow.
                let max_pages = (self.plan.memory_pages + layout.reserved_pages()) as i64;
                self.ins(I::LocalTee(t.addr)).ins(I::I64ExtendI32U);
                self.ins(I::MemorySize(0)).ins(I::I64ExtendI32U).ins(I::I64Add);
                self.ins(I::I64Const(max_pages)).ins(I::I64GtU);
                self.end_if(layout.oom_flag());
                self.charge_by(t.addr, cost::GROW_PAGE);
                self.ins(I::LocalGet(t.addr));
                self.f.instruction(&ins);
                self.ins(I::LocalTee(t.addr)).ins(I::I32Const(-1)).ins(I::I32Eq);
                self.ins(I::If(BlockType::Result(ValType::I32)));
                self.ins(I::I32Const(-1));
                self.ins(I::Else);
                self.ins(I::LocalGet(t.addr)).ins(I::I32Const((r / 65536) as i32)).ins(I::I32Sub);
                self.ins(I::End);
            }
            I::MemoryFill(_) | I::MemoryInit { .. } => {
                // fill: [d, value, n]; init: [d, segment offset, n]
                self.ins(I::LocalSet(t.len)).ins(I::LocalSet(t.src)).ins(I::LocalSet(t.addr));
                self.charge_by(t.len, cost::BULK_UNIT);
                self.shift_addr(t.addr);
                self.ins(I::LocalGet(t.src)).ins(I::LocalGet(t.len));
                self.f.instruction(&ins);
                self.mark_range(t.addr, t.len);
            }
            I::MemoryCopy { .. } => {
                // [d, s, n]
                self.ins(I::LocalSet(t.len)).ins(I::LocalSet(t.src)).ins(I::LocalSet(t.addr));
                self.charge_by(t.len, cost::BULK_UNIT);
                self.shift_addr(t.addr);
                self.shift_addr(t.src);
                self.ins(I::LocalGet(t.len));
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
            // A host function may charge fuel: it sees the cell. An
            // indirect call may reach one through a table.
            I::Call(f) if *f < self.plan.imported_funcs => {
                self.spill_fuel();
                self.f.instruction(&ins);
                self.reload_fuel();
            }
            I::CallIndirect { .. } => {
                self.spill_fuel();
                self.f.instruction(&ins);
                self.reload_fuel();
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
