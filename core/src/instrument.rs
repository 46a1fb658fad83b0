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
//! After every store the pass adds `dirty[(addr + offset) >> 12] = 1`; after
//! `memory.fill`/`memory.copy`/`memory.init` it marks the written range with
//! one `memory.fill` of the map. A store can spill at most 7 bytes into the
//! next page, so restoring a marked page copies its 4 KiB plus 7 bytes. The
//! host marks the pages it writes itself (transaction payloads,
//! `state_get` output). Restoring is then `O(marked pages)`, plus a scan of
//! one map byte per 4 KiB of guest memory.
//!
//! # Flags
//!
//! Two exported i32 globals tell the host what else needs restoring:
//! [`TABLES_DIRTY`] is set before any table mutation (so tables are
//! restored only when touched) and [`REBUILD`] before `data.drop` and
//! `elem.drop` (dropped segments cannot be revived: the instance is
//! rebuilt).

use crate::{Error, Result};
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{ConstExpr, Function, Instruction as I, MemArg, ValType};
use wasmparser::{Operator, Parser, Payload};

/// Bytes of guest memory one dirty-map byte covers.
pub const DIRTY_PAGE: usize = 4096;
/// Most bytes a store can spill past the page its address is in.
pub const SPILL: usize = 7;
/// Export name of the tables-dirty flag.
pub const TABLES_DIRTY: &str = "__executor_host_tables_dirty";
/// Export name of the rebuild flag.
pub const REBUILD: &str = "__executor_host_rebuild";

/// Where the guest's memory starts and how large the dirty map is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes reserved below the guest's memory (`R`, whole wasm pages).
    pub reserved: usize,
}

impl Layout {
    /// The layout for guests of at most `max_guest_bytes` of memory.
    pub fn for_limit(max_guest_bytes: u64) -> Self {
        let map = (max_guest_bytes as usize).div_ceil(DIRTY_PAGE).max(1);
        Layout { reserved: map.div_ceil(65536) * 65536 }
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

/// Marks guest bytes `start..start+len` dirty (the host's own writes).
pub fn mark(dirty: &mut [u8], start: usize, len: usize) {
    if len == 0 || dirty.is_empty() {
        return;
    }
    let (first, last) = (start / DIRTY_PAGE, (start + len - 1) / DIRTY_PAGE);
    let last = last.min(dirty.len() - 1);
    dirty[first..=last].fill(1);
}

/// What the rewrite needs to know about the module.
pub(crate) struct Plan<'a> {
    pub layout: Layout,
    /// Parameter count of each defined function, in order.
    pub params: Vec<u32>,
    /// Number of globals the module defines.
    pub globals: u32,
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
    let tables_flag = plan.globals;
    let rebuild_flag = plan.globals + 1;
    let mut globals_done = false;
    let mut code = wasm_encoder::CodeSection::new();
    let mut remaining_bodies = 0u32;
    let mut defined = 0usize;

    // Our two flag globals go into the global section (made if absent),
    // which must come before the export section.
    let globals_section =
        |existing: Option<wasmparser::GlobalSectionReader<'_>>| -> Result<wasm_encoder::GlobalSection> {
            let mut s = wasm_encoder::GlobalSection::new();
            let mut re = RoundtripReencoder;
            if let Some(reader) = existing {
                for g in reader {
                    let g = g.map_err(err)?;
                    let ty = re.global_type(g.ty).map_err(err)?;
                    let init = re.const_expr(g.init_expr).map_err(err)?;
                    s.global(ty, &init);
                }
            }
            let flag = wasm_encoder::GlobalType { val_type: ValType::I32, mutable: true, shared: false };
            s.global(flag, &ConstExpr::i32_const(0));
            s.global(flag, &ConstExpr::i32_const(0));
            Ok(s)
        };

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(err)?;
        let Some((id, range)) = payload.as_section() else {
            if let Payload::CodeSectionEntry(body) = payload {
                let params = plan.params[defined];
                defined += 1;
                code.function(&rewrite_body(&body, params, r, tables_flag, rebuild_flag)?);
                remaining_bodies -= 1;
                if remaining_bodies == 0 {
                    out.section(&code);
                }
            }
            continue;
        };
        if !globals_done && id != 0 && order(id) > order(wasm_encoder::SectionId::Global as u8) {
            out.section(&globals_section(None)?);
            globals_done = true;
        }
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
            Payload::GlobalSection(reader) => {
                out.section(&globals_section(Some(reader))?);
                globals_done = true;
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
                s.export(TABLES_DIRTY, wasm_encoder::ExportKind::Global, tables_flag);
                s.export(REBUILD, wasm_encoder::ExportKind::Global, rebuild_flag);
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
            // Custom sections (names, producers) never matter to a verdict.
            Payload::CustomSection(_) => {}
            _ => {
                out.section(&wasm_encoder::RawSection { id, data: &wasm[range] });
            }
        }
    }
    if !globals_done {
        out.section(&globals_section(None)?);
    }
    Ok(out.finish())
}

/// Position of a section id in the binary's mandated order.
fn order(id: u8) -> u8 {
    use wasm_encoder::SectionId as S;
    const ORDER: [wasm_encoder::SectionId; 13] = [
        S::Type,
        S::Import,
        S::Function,
        S::Table,
        S::Memory,
        S::Tag,
        S::Global,
        S::Export,
        S::Start,
        S::Element,
        S::DataCount,
        S::Code,
        S::Data,
    ];
    ORDER.iter().position(|s| *s as u8 == id).map_or(u8::MAX, |p| p as u8)
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

/// Marks the guest range `[local d, local d + local n)` dirty if `n > 0`.
fn mark_range(f: &mut Function, d: u32, n: u32) {
    f.instruction(&I::LocalGet(n));
    f.instruction(&I::If(wasm_encoder::BlockType::Empty));
    let page = |f: &mut Function| {
        f.instruction(&I::LocalGet(d));
        f.instruction(&I::I32Const(12));
        f.instruction(&I::I32ShrU);
    };
    page(f); // destination: first page
    f.instruction(&I::I32Const(1)); // value
    // count = ((d + n - 1) >> 12) - (d >> 12) + 1
    f.instruction(&I::LocalGet(d));
    f.instruction(&I::LocalGet(n));
    f.instruction(&I::I32Add);
    f.instruction(&I::I32Const(1));
    f.instruction(&I::I32Sub);
    f.instruction(&I::I32Const(12));
    f.instruction(&I::I32ShrU);
    page(f);
    f.instruction(&I::I32Sub);
    f.instruction(&I::I32Const(1));
    f.instruction(&I::I32Add);
    f.instruction(&I::MemoryFill(0));
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
    r: u64,
    tables_flag: u32,
    rebuild_flag: u32,
) -> Result<Function> {
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
                // dirty[(addr + offset) >> 12] = 1; no wrap: the store succeeded.
                f.instruction(&I::LocalGet(t.addr));
                if offset != 0 {
                    f.instruction(&I::I32Const(offset as u32 as i32));
                    f.instruction(&I::I32Add);
                }
                f.instruction(&I::I32Const(12));
                f.instruction(&I::I32ShrU);
                f.instruction(&I::I32Const(1));
                f.instruction(&I::I32Store8(MemArg { offset: 0, align: 0, memory_index: 0 }));
            }
            I::MemorySize(_) => {
                f.instruction(&ins);
                f.instruction(&I::I32Const((r / 65536) as i32));
                f.instruction(&I::I32Sub);
            }
            I::MemoryGrow(_) => {
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
                mark_range(&mut f, t.addr, t.len);
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
                mark_range(&mut f, t.addr, t.len);
            }
            I::TableSet(_) | I::TableFill(_) | I::TableCopy { .. } | I::TableInit { .. } | I::TableGrow(_) => {
                f.instruction(&I::I32Const(1));
                f.instruction(&I::GlobalSet(tables_flag));
                f.instruction(&ins);
            }
            I::DataDrop(_) | I::ElemDrop(_) => {
                f.instruction(&I::I32Const(1));
                f.instruction(&I::GlobalSet(rebuild_flag));
                f.instruction(&ins);
            }
            _ => {
                f.instruction(&ins);
            }
        }
    }
    Ok(f)
}
