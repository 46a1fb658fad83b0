//! The instrumentation pass: what every executor is rewritten into before
//! any engine compiles it, so that blanking costs only what a transaction
//! dirtied — on every engine alike.
//!
//! # Memory layout
//!
//! The guest's linear memory is shifted up by `R` bytes (whole wasm pages):
//! every load and store gets `R` added to its static offset (free: it is an
//! immediate), bulk-memory operations get it added to their addresses (with
//! a check that traps `memory_out_of_bounds` exactly where the original
//! would), `memory.size`/`memory.grow` report guest pages, active data
//! segments move up by `R`. The guest therefore cannot address `[0, R)`,
//! which holds the **dirty map**: one byte per 4 KiB guest page.
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
//! [`Layout::oom_flag`] just before a trap when `memory.grow` or
//! `table.grow` asks for more than the limits.
//!
//! # Growth guards
//!
//! Engines disagree on growth past a limit (wasmer returns -1 whatever its
//! tunables say; others can be made to trap), and abi.md wants
//! `out_of_memory` on every backend. So the pass checks each `memory.grow`
//! and `table.grow` request against the limits itself, in 64-bit
//! arithmetic, before the engine sees it: past the limit, it sets the OOM
//! flag and executes `unreachable`; the driver reads the flag and decides
//! `out_of_memory` — at the same instruction on every engine. Engine-side
//! limiters stay as backstops.

use crate::{Error, Result};
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{ConstExpr, Function, Instruction as I, MemArg, ValType};
use wasmparser::{Operator, Parser, Payload};

/// Bytes of guest memory one dirty-map byte covers.
pub const DIRTY_PAGE: usize = 4096;
/// Bytes of guest memory one summary byte covers (256 map bytes).
pub const SUMMARY_SPAN: usize = 1 << 20;
/// Most bytes a store can spill past the page its address is in.
pub const SPILL: usize = 7;

/// Where the guest's memory starts and where the host's bookkeeping lies
/// below it: the dirty map at 0, the summary after it, two flag bytes at
/// the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes reserved below the guest's memory (`R`, whole wasm pages).
    pub reserved: usize,
    /// Offset of the summary (the map's length).
    pub summary: usize,
}

impl Layout {
    /// No reserved region (for host functions over a plain memory).
    pub const NONE: Layout = Layout { reserved: 0, summary: 0 };

    /// The layout for guests of at most `max_guest_bytes` of memory: the
    /// map, the summary, then the three flag bytes, rounded up to whole wasm
    /// pages.
    pub fn for_limit(max_guest_bytes: u64) -> Self {
        let map = (max_guest_bytes as usize).div_ceil(DIRTY_PAGE);
        let summary = (max_guest_bytes as usize).div_ceil(SUMMARY_SPAN);
        Layout { reserved: (map + summary + 3).div_ceil(65536) * 65536, summary: map }
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

    /// Address of the byte set when a table was mutated.
    pub fn tables_flag(&self) -> usize {
        self.reserved - 2
    }

    /// Address of the byte set when the instance cannot be restored in
    /// place (a data or element segment was dropped).
    pub fn rebuild_flag(&self) -> usize {
        self.reserved - 1
    }

    /// Address of the byte set, just before the guest traps, when
    /// `memory.grow` or `table.grow` asked for more than the limits allow.
    pub fn oom_flag(&self) -> usize {
        self.reserved - 3
    }

    /// Whether the instrumentation's growth guard ended the last call
    /// (`memory` is the whole linear memory).
    pub fn out_of_memory(&self, memory: &[u8]) -> bool {
        self.reserved > 0 && memory.get(self.oom_flag()).is_some_and(|f| *f != 0)
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

/// What the rewrite needs to know about the module.
pub(crate) struct Plan<'a> {
    pub layout: Layout,
    /// The memory limit in guest pages.
    pub memory_pages: u64,
    /// The most elements a table may have.
    pub table_elements: u64,
    /// Parameter count of each defined function, in order.
    pub params: Vec<u32>,
    /// Extra exports: (name, kind, index).
    pub exports: Vec<(&'a str, wasm_encoder::ExportKind, u32)>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::InvalidModule(format!("instrumentation: {e}"))
}

/// Rewrites a checked module per the module docs. Returns the new binary.
pub(crate) fn rewrite(wasm: &[u8], plan: &Plan<'_>) -> Result<Vec<u8>> {
    let r = plan.layout.reserved as u64;
    let mut re = RoundtripReencoder;
    let mut out = wasm_encoder::Module::new();
    let tables_flag = plan.layout.tables_flag() as i32;
    let rebuild_flag = plan.layout.rebuild_flag() as i32;
    let mut code = wasm_encoder::CodeSection::new();
    let mut remaining_bodies = 0u32;
    let mut defined = 0usize;

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(err)?;
        let Some((id, range)) = payload.as_section() else {
            if let Payload::CodeSectionEntry(body) = payload {
                let params = plan.params[defined];
                defined += 1;
                code.function(&rewrite_body(&body, params, plan, tables_flag, rebuild_flag)?);
                remaining_bodies -= 1;
                if remaining_bodies == 0 {
                    out.section(&code);
                }
            }
            continue;
        };
        match payload {
            Payload::MemorySection(reader) => {
                let mut s = wasm_encoder::MemorySection::new();
                for m in reader {
                    let mut ty = re.memory_type(m.map_err(err)?).map_err(err)?;
                    ty.minimum += plan.layout.reserved_pages();
                    ty.maximum = ty.maximum.map(|m| (m + plan.layout.reserved_pages()).min(65536));
                    s.memory(ty);
                }
                out.section(&s);
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
struct Temps {
    addr: u32,
    i32v: u32,
    i64v: u32,
    f32v: u32,
    f64v: u32,
    len: u32,
    src: u32,
}

/// Emits code that traps with `memory_out_of_bounds` on every engine, then
/// makes the stack polymorphic.
fn trap_oob(f: &mut Function) {
    f.instruction(&I::I32Const(0));
    f.instruction(&I::I32Load8U(MemArg { offset: u32::MAX as u64, align: 0, memory_index: 0 }));
    f.instruction(&I::Unreachable);
}

/// With a condition on the stack: if true, set the OOM flag and trap.
fn guard_trap(f: &mut Function, oom_flag: i32) {
    f.instruction(&I::If(wasm_encoder::BlockType::Empty));
    set_flag(f, oom_flag);
    f.instruction(&I::Unreachable);
    f.instruction(&I::End);
}

/// Sets a flag byte of the reserved region.
fn set_flag(f: &mut Function, at: i32) {
    f.instruction(&I::I32Const(at));
    f.instruction(&I::I32Const(1));
    f.instruction(&I::I32Store8(MemArg { offset: 0, align: 0, memory_index: 0 }));
}

/// Marks the guest range `[local d, local d + local n)` dirty, in the map
/// (at 0) and the summary (at `summary`), if `n > 0`.
fn mark_range(f: &mut Function, d: u32, n: u32, summary: i32) {
    f.instruction(&I::LocalGet(n));
    f.instruction(&I::If(wasm_encoder::BlockType::Empty));
    for (shift, base) in [(12, 0), (20, summary)] {
        let first = |f: &mut Function| {
            f.instruction(&I::LocalGet(d));
            f.instruction(&I::I32Const(shift));
            f.instruction(&I::I32ShrU);
        };
        first(f);
        if base != 0 {
            f.instruction(&I::I32Const(base));
            f.instruction(&I::I32Add);
        }
        f.instruction(&I::I32Const(1)); // value
        // count = ((d + n - 1) >> shift) - (d >> shift) + 1
        f.instruction(&I::LocalGet(d));
        f.instruction(&I::LocalGet(n));
        f.instruction(&I::I32Add);
        f.instruction(&I::I32Const(1));
        f.instruction(&I::I32Sub);
        f.instruction(&I::I32Const(shift));
        f.instruction(&I::I32ShrU);
        first(f);
        f.instruction(&I::I32Sub);
        f.instruction(&I::I32Const(1));
        f.instruction(&I::I32Add);
        f.instruction(&I::MemoryFill(0));
    }
    f.instruction(&I::End);
}

/// Replaces local `x` (a guest address on the stack top, already stored in
/// it) by `x + R`, trapping out of bounds where the sum would wrap.
fn shift_addr(f: &mut Function, x: u32, r: u64) {
    f.instruction(&I::LocalGet(x));
    f.instruction(&I::I32Const((u32::MAX as u64 - r) as u32 as i32));
    f.instruction(&I::I32GtU);
    f.instruction(&I::If(wasm_encoder::BlockType::Empty));
    trap_oob(f);
    f.instruction(&I::End);
    f.instruction(&I::LocalGet(x));
    f.instruction(&I::I32Const(r as u32 as i32));
    f.instruction(&I::I32Add);
}

fn rewrite_body(
    body: &wasmparser::FunctionBody<'_>,
    params: u32,
    plan: &Plan<'_>,
    tables_flag: i32,
    rebuild_flag: i32,
) -> Result<Function> {
    let layout = plan.layout;
    let r = layout.reserved as u64;
    let oom_flag = layout.oom_flag() as i32;
    let max_memory_pages = (plan.memory_pages + layout.reserved_pages()) as i64;
    let max_table = plan.table_elements as i64;
    let summary = layout.summary;
    let mut locals = Vec::new();
    let mut count = params;
    for l in body.get_locals_reader().map_err(err)? {
        let (n, ty) = l.map_err(err)?;
        locals.push((n, RoundtripReencoder.val_type(ty).map_err(err)?));
        count += n;
    }
    let t = Temps {
        addr: count,
        i32v: count + 1,
        i64v: count + 2,
        f32v: count + 3,
        f64v: count + 4,
        len: count + 5,
        src: count + 6,
    };
    locals.extend([(2, ValType::I32), (1, ValType::I64), (1, ValType::F32), (1, ValType::F64), (2, ValType::I32)]);
    let mut f = Function::new(locals);
    let mut reader = body.get_operators_reader().map_err(err)?;
    let mut re = RoundtripReencoder;
    let fits = |m: &MemArg| m.offset + r <= u32::MAX as u64;
    while !reader.eof() {
        let op = reader.read().map_err(err)?;
        let mut ins = re.instruction(op).map_err(err)?;
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
                    f.instruction(&ins);
                } else {
                    f.instruction(&I::Drop);
                    trap_oob(&mut f);
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
                    f.instruction(&I::Drop);
                    f.instruction(&I::Drop);
                    trap_oob(&mut f);
                    continue;
                }
                m.offset += r;
                f.instruction(&I::LocalSet(value));
                f.instruction(&I::LocalTee(t.addr));
                f.instruction(&I::LocalGet(value));
                f.instruction(&ins);
                // a = addr + offset (no wrap: the store succeeded);
                // map[a >> 12] = 1; summary[a >> 20] = 1.
                f.instruction(&I::LocalGet(t.addr));
                if offset != 0 {
                    f.instruction(&I::I32Const(offset as u32 as i32));
                    f.instruction(&I::I32Add);
                }
                f.instruction(&I::LocalTee(t.src));
                f.instruction(&I::I32Const(12));
                f.instruction(&I::I32ShrU);
                f.instruction(&I::I32Const(1));
                f.instruction(&I::I32Store8(MemArg { offset: 0, align: 0, memory_index: 0 }));
                f.instruction(&I::LocalGet(t.src));
                f.instruction(&I::I32Const(20));
                f.instruction(&I::I32ShrU);
                f.instruction(&I::I32Const(1));
                f.instruction(&I::I32Store8(MemArg { offset: summary as u64, align: 0, memory_index: 0 }));
            }
            I::MemorySize(_) => {
                f.instruction(&ins);
                f.instruction(&I::I32Const((r / 65536) as i32));
                f.instruction(&I::I32Sub);
            }
            I::MemoryGrow(_) => {
                // delta + size > limit (in i64: no wrap) ⇒ out_of_memory.
                f.instruction(&I::LocalTee(t.addr));
                f.instruction(&I::I64ExtendI32U);
                f.instruction(&I::MemorySize(0));
                f.instruction(&I::I64ExtendI32U);
                f.instruction(&I::I64Add);
                f.instruction(&I::I64Const(max_memory_pages));
                f.instruction(&I::I64GtU);
                guard_trap(&mut f, oom_flag);
                f.instruction(&I::LocalGet(t.addr));
                f.instruction(&ins);
                f.instruction(&I::LocalTee(t.addr));
                f.instruction(&I::I32Const(-1));
                f.instruction(&I::I32Eq);
                f.instruction(&I::If(wasm_encoder::BlockType::Result(ValType::I32)));
                f.instruction(&I::I32Const(-1));
                f.instruction(&I::Else);
                f.instruction(&I::LocalGet(t.addr));
                f.instruction(&I::I32Const((r / 65536) as i32));
                f.instruction(&I::I32Sub);
                f.instruction(&I::End);
            }
            I::MemoryFill(_) | I::MemoryInit { .. } => {
                // fill: [d, value, n]; init: [d, segment offset, n]
                f.instruction(&I::LocalSet(t.len));
                f.instruction(&I::LocalSet(t.src));
                f.instruction(&I::LocalSet(t.addr));
                shift_addr(&mut f, t.addr, r);
                f.instruction(&I::LocalGet(t.src));
                f.instruction(&I::LocalGet(t.len));
                f.instruction(&ins);
                mark_range(&mut f, t.addr, t.len, summary as i32);
            }
            I::MemoryCopy { .. } => {
                // [d, s, n]
                f.instruction(&I::LocalSet(t.len));
                f.instruction(&I::LocalSet(t.src));
                f.instruction(&I::LocalSet(t.addr));
                shift_addr(&mut f, t.addr, r);
                shift_addr(&mut f, t.src, r);
                f.instruction(&I::LocalGet(t.len));
                f.instruction(&ins);
                mark_range(&mut f, t.addr, t.len, summary as i32);
            }
            I::TableGrow(table) => {
                // [init, delta]: delta + size > limit ⇒ out_of_memory.
                let table = *table;
                f.instruction(&I::LocalTee(t.len));
                f.instruction(&I::I64ExtendI32U);
                f.instruction(&I::TableSize(table));
                f.instruction(&I::I64ExtendI32U);
                f.instruction(&I::I64Add);
                f.instruction(&I::I64Const(max_table));
                f.instruction(&I::I64GtU);
                guard_trap(&mut f, oom_flag);
                f.instruction(&I::LocalGet(t.len));
                set_flag(&mut f, tables_flag);
                f.instruction(&ins);
            }
            I::TableSet(_) | I::TableFill(_) | I::TableCopy { .. } | I::TableInit { .. } => {
                set_flag(&mut f, tables_flag);
                f.instruction(&ins);
            }
            I::DataDrop(_) | I::ElemDrop(_) => {
                set_flag(&mut f, rebuild_flag);
                f.instruction(&ins);
            }
            _ => {
                f.instruction(&ins);
            }
        }
    }
    Ok(f)
}
