//! The size limits that need only counts — functions, types, locals,
//! instructions, nesting, globals, exports, segments — checked in one pass
//! before validation: what bounds the engines' compilation cost (README,
//! *Load budget*).

use super::{invalid, limit};
use crate::Result;
use wasmparser::{Parser, Payload, TypeRef};

/// What a module uses of each count limit: totals, and the largest per
/// function (`peer check` shows them beside the limits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Functions, imported and defined.
    pub functions: u64,
    /// Declared function types.
    pub types: u64,
    /// Globals (defined).
    pub globals: u64,
    /// Exports.
    pub exports: u64,
    /// The larger of the data and element segment counts.
    pub segments: u64,
    /// Tables, imported and defined.
    pub tables: u64,
    /// The most locals of one function, parameters included.
    pub locals_per_function: u64,
    /// Locals of all functions, parameters included.
    pub locals: u64,
    /// The most instructions of one function.
    pub instructions_per_function: u64,
    /// Instructions of all functions.
    pub instructions: u64,
    /// The deepest control nesting of one function.
    pub nesting_depth: u64,
    /// Writes to memory in all functions: stores and bulk memory
    /// operations — what the write barrier marks (no limit of its own:
    /// past [`crate::instrument::dirty::MAX_TRACKED_WRITES`] a module loads
    /// without the barrier).
    pub writes: u64,
}

/// The size limits that need only counts, checked first, cheaply, so an
/// oversized module is refused before the validator spends time on it.
pub(super) fn check_counts(wasm: &[u8], m: &crate::ModuleLimits) -> Result<Counts> {
    let mut c = Counts::default();
    let mut params: Vec<u64> = Vec::new();
    let mut signatures: Vec<u32> = Vec::new();
    let mut bodies = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::TypeSection(s) => {
                for group in s {
                    for ty in group.map_err(invalid)?.into_types() {
                        c.types += 1;
                        limit("types", c.types, m.types.into())?;
                        let n = match &ty.composite_type.inner {
                            wasmparser::CompositeInnerType::Func(f) => f.params().len() as u64,
                            _ => 0,
                        };
                        params.push(n);
                    }
                }
            }
            Payload::FunctionSection(s) => {
                c.functions += u64::from(s.count());
                limit("functions", c.functions, m.functions.into())?;
                for ty in s {
                    signatures.push(ty.map_err(invalid)?);
                }
            }
            Payload::ImportSection(s) => {
                for imp in s.into_imports() {
                    match imp.map_err(invalid)?.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => c.functions += 1,
                        TypeRef::Table(_) => c.tables += 1,
                        _ => {}
                    }
                }
            }
            Payload::TableSection(s) => c.tables += u64::from(s.count()),
            Payload::GlobalSection(s) => {
                c.globals = s.count().into();
                limit("globals", c.globals, m.globals.into())?;
            }
            Payload::ExportSection(s) => {
                c.exports = s.count().into();
                limit("exports", c.exports, m.exports.into())?;
            }
            Payload::DataSection(s) => {
                c.segments = c.segments.max(s.count().into());
                limit("data segments", s.count().into(), m.segments.into())?;
            }
            Payload::ElementSection(s) => {
                c.segments = c.segments.max(s.count().into());
                limit("element segments", s.count().into(), m.segments.into())?;
            }
            Payload::CodeSectionEntry(body) => {
                // Parameters count as locals: the engines allocate both.
                let ty = signatures.get(bodies).copied();
                bodies += 1;
                let mut locals = ty.and_then(|t| params.get(t as usize)).copied().unwrap_or(0);
                for l in body.get_locals_reader().map_err(invalid)? {
                    locals += u64::from(l.map_err(invalid)?.0);
                    limit("locals per function (parameters included)", locals, m.locals_per_function.into())?;
                }
                c.locals_per_function = c.locals_per_function.max(locals);
                c.locals += locals;
                limit("locals", c.locals, m.locals)?;
                let (count, depth, writes) = count_instructions(&body, m)?;
                c.writes += writes;
                limit("control nesting depth", depth, m.nesting_depth.into())?;
                limit("instructions per function", count, m.instructions_per_function.into())?;
                c.nesting_depth = c.nesting_depth.max(depth);
                c.instructions_per_function = c.instructions_per_function.max(count);
                c.instructions += count;
                limit("instructions", c.instructions, m.instructions)?;
            }
            _ => {}
        }
    }
    limit("functions", c.functions, m.functions.into())?;
    Ok(c)
}

/// The instructions of a function body (`end` included), its deepest
/// control nesting (the body itself is level 1) and its writes to memory,
/// stopping early past either limit.
fn count_instructions(body: &wasmparser::FunctionBody<'_>, m: &crate::ModuleLimits) -> Result<(u64, u64, u64)> {
    use wasmparser::Operator;
    let (mut count, mut depth, mut deepest, mut writes) = (0u64, 1u64, 1u64, 0u64);
    let mut reader = body.get_operators_reader().map_err(invalid)?;
    while !reader.eof() {
        let op = reader.read().map_err(invalid)?;
        match op {
            Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            Operator::End => depth = depth.saturating_sub(1),
            _ => {}
        }
        writes += u64::from(crate::instrument::dirty::writes_memory(&op));
        count += 1;
        if count > u64::from(m.instructions_per_function) || deepest > u64::from(m.nesting_depth) {
            break;
        }
    }
    Ok((count, deepest, writes))
}
