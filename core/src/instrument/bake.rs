//! Baking: a module rewritten so that instantiating it *is* a blank state,
//! Wizer-style — memory's initial size is the snapshot's, every mutable
//! global starts at its snapshot value, and the bytes `start` and
//! `executor_init` wrote follow the module's own data segments as active
//! segments of their own (applied in order, so they win).

use crate::PreparedModule;
use crate::backend::GlobalValue;

/// `module` (prepared, instrumented) with the blank state of `memory_bytes`
/// of memory, `runs` (guest offset, bytes) and `globals` (every mutable
/// global, in [`crate::module::ModuleInfo::globals`] order) baked in.
pub(crate) fn bake(
    module: &PreparedModule,
    memory_bytes: u64,
    runs: &[(u64, Vec<u8>)],
    globals: &[GlobalValue],
) -> crate::Result<PreparedModule> {
    use wasm_encoder::{ConstExpr, reencode::Reencode};
    use wasmparser::{Parser, Payload};
    let err = |e: &dyn std::fmt::Display| crate::Error::InvalidModule(format!("baking the blank snapshot: {e}"));
    let page = crate::limits::PAGE_SIZE;
    if !memory_bytes.is_multiple_of(page) || memory_bytes / page > 65536 {
        return Err(err(&format!("a memory of {} bytes", memory_bytes)));
    }
    if globals.len() != module.info.globals.len() {
        return Err(err(&"the snapshot's globals do not match the module's"));
    }
    let values: std::collections::HashMap<u32, GlobalValue> =
        module.info.globals.iter().map(|g| g.index).zip(globals.iter().copied()).collect();
    let segment = |(start, bytes): &(u64, Vec<u8>)| -> crate::Result<(i32, Vec<u8>)> {
        let at = u32::try_from(*start).map_err(|_| err(&"a run past 4 GiB"))?;
        Ok((at as i32, bytes.clone()))
    };
    let runs = runs.iter().map(segment).collect::<crate::Result<Vec<_>>>()?;
    let mut re = wasm_encoder::reencode::RoundtripReencoder;
    let mut out = wasm_encoder::Module::new();
    let (mut global_index, mut data_seen) = (0u32, false);
    let append_runs = |s: &mut wasm_encoder::DataSection| {
        for (at, bytes) in &runs {
            s.active(0, &ConstExpr::i32_const(*at), bytes.iter().copied());
        }
    };
    let wasm = &module.wasm[..];
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| err(&e))?;
        let Some((id, range)) = payload.as_section() else { continue };
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    if matches!(import.map_err(|e| err(&e))?.ty, wasmparser::TypeRef::Global(_)) {
                        global_index += 1;
                    }
                }
                out.section(&wasm_encoder::RawSection { id, data: &wasm[range] });
            }
            Payload::MemorySection(reader) => {
                let mut s = wasm_encoder::MemorySection::new();
                for (index, m) in reader.into_iter().enumerate() {
                    let mut ty = re.memory_type(m.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
                    // The guest's memory; the books keep their size.
                    if index == 0 {
                        ty.minimum = memory_bytes / crate::limits::PAGE_SIZE;
                    }
                    s.memory(ty);
                }
                out.section(&s);
            }
            Payload::GlobalSection(reader) => {
                let mut s = wasm_encoder::GlobalSection::new();
                for g in reader {
                    let g = g.map_err(|e| err(&e))?;
                    let ty = re.global_type(g.ty).map_err(|e| err(&e))?;
                    let init = match values.get(&global_index) {
                        Some(GlobalValue::I32(v)) => ConstExpr::i32_const(*v),
                        Some(GlobalValue::I64(v)) => ConstExpr::i64_const(*v),
                        Some(GlobalValue::F32(v)) => ConstExpr::f32_const(f32::from_bits(*v).into()),
                        Some(GlobalValue::F64(v)) => ConstExpr::f64_const(f64::from_bits(*v).into()),
                        None => re.const_expr(g.init_expr).map_err(|e| err(&e))?,
                    };
                    s.global(ty, &init);
                    global_index += 1;
                }
                out.section(&s);
            }
            Payload::DataCountSection { count, .. } => {
                out.section(&wasm_encoder::DataCountSection { count: count + runs.len() as u32 });
            }
            Payload::DataSection(reader) => {
                let mut s = wasm_encoder::DataSection::new();
                re.parse_data_section(&mut s, reader).map_err(|e| err(&e))?;
                append_runs(&mut s);
                out.section(&s);
                data_seen = true;
            }
            _ => {
                out.section(&wasm_encoder::RawSection { id, data: &wasm[range] });
            }
        }
    }
    if !data_seen && !runs.is_empty() {
        // No data section (and so no data count): one after the code.
        let mut s = wasm_encoder::DataSection::new();
        append_runs(&mut s);
        out.section(&s);
    }
    let mut info = module.info.clone();
    info.start = None;
    info.has_init = false;
    Ok(PreparedModule {
        wasm: out.finish(),
        info,
        hash: module.hash,
        check_time: std::time::Duration::ZERO,
        instrument_time: std::time::Duration::ZERO,
    })
}
