//! Module checks and preparation, before any engine sees the bytes.
//!
//! [`prepare`] accepts a binary module or WAT text and either returns a
//! [`PreparedModule`] — checked against abi.md (feature set, size limits,
//! exports, imports, one memory) and rewritten so that every mutable global
//! and every table is reachable for blanking — or an [`Error`] that names the
//! feature, limit, export or import at fault. Because this runs once, in
//! core, a module is accepted or refused identically on every backend.

mod counts;
mod inspect;

pub use inspect::{Inspection, LimitUse, inspect};

use crate::host::{IMPORTS, MODULE};
use crate::{Error, Limits, Result};
use counts::check_counts;
use sha2::{Digest, Sha256};
use wasmparser::types::TypesRef;
use wasmparser::{
    CompositeInnerType, ExternalKind, FuncType, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures,
};

/// Export names starting with this are reserved for the host's own exports
/// (see [`ModuleInfo::globals`]); an executor may not use them.
pub const RESERVED_PREFIX: &str = "__executor_host_";

/// The largest memory limit supported: 2 GiB, so the instrumented memory
/// (guest plus dirty map) always stays well inside a 32-bit address space.
pub const MAX_MEMORY_LIMIT: u64 = 2 << 30;

/// The largest fuel budget accepted: the fuel cell is a signed 64-bit
/// counter that must never wrap.
pub const MAX_FUEL: u64 = 1 << 60;

/// What the engines accept in one function, checked on the instrumented
/// module — what the engines see — by parsing it again, so that a module
/// within the documented limits loads on every backend whatever the
/// instrumentation adds (and however it changes later). Each is the
/// strictest engine's figure.
pub mod engine_limits {
    /// Locals of one function, parameters and the instrumentation's
    /// temporaries included: wasmi 2.0 (`LOCAL_VARIABLES_MAX`, its
    /// translator's locals table); wasmtime and wasmer accept 50,000.
    pub const LOCALS: u64 = 30_000;
    /// Twice the locals plus the deepest operand stack of one function:
    /// wasmi 2.0 addresses its registers with 16 bits ("translation
    /// requires more registers for a function than available"); measured,
    /// it accepts exactly `2 × locals + deepest ≤ 65,535` (locals with
    /// parameters and temporaries). The others accept more.
    pub const SLOTS: u64 = 65_535;
    /// Targets of one `br_table`, the default excluded: wasmtime 48's
    /// Cranelift ("exceeds the implementation limit of 65520"); wasmer
    /// and wasmi accept at least 99,000.
    pub const BR_TABLE_TARGETS: u64 = 65_520;
    /// Bytes of one function body: wasmparser's `MAX_WASM_FUNCTION_SIZE`,
    /// which all three engines validate with.
    pub const FUNCTION_BYTES: u64 = 7_654_321;
}

/// The ABI's exports.
pub mod exports {
    /// The executor's linear memory.
    pub const MEMORY: &str = "memory";
    /// `(len: i32) -> i32`.
    pub const ALLOC: &str = "executor_alloc";
    /// `(tx_ptr: i32, tx_len: i32) -> i32`.
    pub const VALIDATE: &str = "executor_validate";
    /// `() -> ()`, optional.
    pub const INIT: &str = "executor_init";
    /// `() -> i32`, optional.
    pub const MIGRATE: &str = "executor_migrate";
    /// The module's `start` function, re-exported by the host (reserved).
    pub const START: &str = "__executor_host_start";
    /// The books memory the instrumentation adds (reserved; see
    /// [`crate::instrument::Layout`]).
    pub const BOOKS: &str = "__executor_host_books";
}

/// The WebAssembly features abi.md allows: 2.0 without SIMD.
pub fn abi_features() -> WasmFeatures {
    WasmFeatures::WASM2.difference(WasmFeatures::SIMD)
}

/// The features of an instrumented module: the ABI's plus multi-memory,
/// for the books (see [`crate::instrument::Layout`]).
pub fn instrumented_features() -> WasmFeatures {
    abi_features() | WasmFeatures::MULTI_MEMORY
}

/// Features refused at load, with the name an error gives them; checked in
/// this order.
const FORBIDDEN: &[(&str, WasmFeatures)] = &[
    ("SIMD", WasmFeatures::SIMD.union(WasmFeatures::RELAXED_SIMD)),
    ("threads/atomics", WasmFeatures::THREADS.union(WasmFeatures::SHARED_EVERYTHING_THREADS)),
    ("tail calls", WasmFeatures::TAIL_CALL),
    ("exceptions", WasmFeatures::EXCEPTIONS.union(WasmFeatures::LEGACY_EXCEPTIONS)),
    ("GC", WasmFeatures::GC),
    ("function references", WasmFeatures::FUNCTION_REFERENCES),
    ("memory64", WasmFeatures::MEMORY64),
    ("multi-memory", WasmFeatures::MULTI_MEMORY),
    ("extended-const", WasmFeatures::EXTENDED_CONST),
    ("custom page sizes", WasmFeatures::CUSTOM_PAGE_SIZES),
    ("wide arithmetic", WasmFeatures::WIDE_ARITHMETIC),
    ("stack switching", WasmFeatures::STACK_SWITCHING),
    ("memory control", WasmFeatures::MEMORY_CONTROL),
];

/// A mutable global made reachable for blanking.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GlobalInfo {
    /// Its index in the module.
    pub index: u32,
    /// The export under which the prepared module exposes it.
    pub export: String,
}

/// What the host needs to know about a prepared module.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModuleInfo {
    /// Whether `executor_init` is exported.
    pub has_init: bool,
    /// Whether `executor_migrate` is exported.
    pub has_migrate: bool,
    /// The wasm `start` function, if any. The prepared module has no start
    /// section: it exports the function as [`exports::START`] and the driver
    /// calls it right after instantiation, so it runs with the instance's
    /// memory reachable on every engine (wasmer's imports cannot see the
    /// instance during instantiation).
    pub start: Option<u32>,
    /// Initial memory size in pages.
    pub memory_initial_pages: u64,
    /// Every mutable global, exported under a reserved name.
    pub globals: Vec<GlobalInfo>,
    /// Every table's reserved export name, by table index.
    pub tables: Vec<String>,
    /// The host imports the module uses.
    pub imports: Vec<String>,
    /// The books memory of the instrumented module.
    pub layout: crate::instrument::Layout,
    /// How the instrumented module tracks what a transaction writes: as
    /// asked, but [`Tracking::Off`](crate::instrument::Tracking::Off) for a
    /// module past the barrier's budget.
    pub tracking: crate::instrument::Tracking,
}

/// A checked module, ready for any backend to compile. Serialisable: the
/// compiled-executor cache keeps it beside the engine's code, so a warm
/// start skips the checks and the instrumentation too.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PreparedModule {
    /// The binary the engines compile (the input, rewritten).
    pub wasm: Vec<u8>,
    /// What the checks learned.
    pub info: ModuleInfo,
    /// SHA-256 of the executor as given (binary after WAT parsing).
    pub hash: [u8; 32],
    /// Time the checks took (parsing, validation, ABI checks); zero for a
    /// module loaded from the cache.
    #[serde(skip)]
    pub check_time: std::time::Duration,
    /// Time the instrumentation pass took; zero from the cache.
    #[serde(skip)]
    pub instrument_time: std::time::Duration,
}

impl PreparedModule {
    /// What its first driver and each further one may tie up under
    /// `limits` ([`Limits::memory_estimate`], [`Limits::worker_estimate`]),
    /// from the instrumented module.
    pub fn estimates(&self, limits: &Limits) -> (u64, u64) {
        let (bytes, code) = (self.wasm.len() as u64, code_bytes(&self.wasm));
        (limits.memory_estimate(bytes, code), limits.worker_estimate(bytes, code))
    }

    /// How many of `wanted` drivers of this executor fit in
    /// [`Limits::memory_cap`] — the first counted by
    /// [`Limits::memory_estimate`], each further one by
    /// [`Limits::worker_estimate`], both from the instrumented module — and
    /// never fewer than one: the first is checked when it loads.
    pub fn drivers_that_fit(&self, limits: &Limits, wanted: usize) -> usize {
        let (first, each) = self.estimates(limits);
        let each = each.max(1);
        let more = limits.memory_cap.saturating_sub(first) / each;
        usize::try_from(more).unwrap_or(usize::MAX).saturating_add(1).min(wanted).max(1)
    }

    /// The executor's hash as hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// Turns WAT text into a binary; passes binaries through.
fn to_binary<'a>(input: &'a [u8], limits: &Limits) -> Result<std::borrow::Cow<'a, [u8]>> {
    let max = limits.module.bytes;
    if input.len() as u64 > max {
        return Err(Error::ModuleLimit { what: "module size (bytes)", actual: input.len() as u64, limit: max });
    }
    if input.starts_with(b"\0asm") {
        return Ok(input.into());
    }
    let text =
        std::str::from_utf8(input).map_err(|_| Error::NotWasm("no `\\0asm` header and not UTF-8 WAT text".into()))?;
    let wasm = wat::parse_str(text).map_err(|e| {
        let msg = e.to_string();
        Error::NotWasm(format!("no `\\0asm` header and not valid WAT: {}", msg.lines().next().unwrap_or("")))
    })?;
    if wasm.len() as u64 > max {
        return Err(Error::ModuleLimit { what: "module size (bytes)", actual: wasm.len() as u64, limit: max });
    }
    Ok(wasm.into())
}

fn invalid(e: wasmparser::BinaryReaderError) -> Error {
    Error::InvalidModule(e.to_string())
}

fn limit(what: &'static str, actual: u64, limit: u64) -> Result<()> {
    if actual > limit { Err(Error::ModuleLimit { what, actual, limit }) } else { Ok(()) }
}

/// Validates against the ABI feature set; on failure names the forbidden
/// feature the module needs, if any.
fn validate_features(wasm: &[u8]) -> Result<wasmparser::types::Types> {
    let abi_err = match Validator::new_with_features(abi_features()).validate_all(wasm) {
        Ok(types) => return Ok(types),
        Err(e) => e,
    };
    let everything = WasmFeatures::all();
    if Validator::new_with_features(everything).validate_all(wasm).is_err() {
        return Err(invalid(abi_err));
    }
    for &(feature, flags) in FORBIDDEN {
        if Validator::new_with_features(everything.difference(flags)).validate_all(wasm).is_err() {
            return Err(Error::ForbiddenFeature { feature, detail: abi_err.message().to_owned() });
        }
    }
    Err(invalid(abi_err))
}

fn describe(ty: &FuncType) -> String {
    let list = |ts: &[ValType]| ts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    format!("func ({}) -> ({})", list(ty.params()), list(ty.results()))
}

fn is_i32s(ts: &[ValType], n: usize) -> bool {
    ts.len() == n && ts.iter().all(|t| *t == ValType::I32)
}

/// Whether the instrumentation meters fuel and stack and canonicalises
/// NaNs. Only [`Metering::On`] is safe and deterministic; `Off` exists to
/// measure what metering costs (an unmetered executor can loop forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Metering {
    /// abi.md's units, decided in the module (the default, and the only
    /// mode for executors one does not trust).
    #[default]
    On,
    /// No fuel, stack or NaN instrumentation: for benchmarks only.
    OffForBenchmarks,
}

/// How a module is prepared, beyond the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Whether fuel, stack and NaNs are metered.
    pub metering: Metering,
    /// How what a transaction writes is tracked.
    pub tracking: crate::instrument::Tracking,
}

/// Checks `input` (binary or WAT) against abi.md and the limits, and
/// prepares it for the engines (metered, with the write barrier).
pub fn prepare(input: &[u8], limits: &Limits) -> Result<PreparedModule> {
    prepare_with(input, limits, Options::default())
}

/// [`prepare`] with [`Options`]: the named steps below, in order, each
/// refusing what it checks with an error naming the limit, feature, export
/// or import.
pub fn prepare_with(input: &[u8], limits: &Limits, options: Options) -> Result<PreparedModule> {
    check_settings(limits)?;
    let started = std::time::Instant::now();
    let wasm = to_binary(input, limits)?;
    check_header(&wasm)?;
    let estimate = limits.memory_estimate(wasm.len() as u64, code_bytes(&wasm));
    if estimate > limits.memory_cap {
        return Err(Error::MemoryCap { estimate, cap: limits.memory_cap });
    }
    let hash: [u8; 32] = Sha256::digest(&wasm).into();
    let counts = check_counts(&wasm, &limits.module)?;
    let types = validate_features(&wasm)?;
    let types = types.as_ref();
    check_memory_and_tables(types, limits)?;
    check_segments(&wasm, types)?;
    let mut abi = read_abi(&wasm, types, limits)?;
    abi.info.tracking = untracked_if_large(options.tracking, counts.writes);
    let mut plan = abi.plan(types, limits, options.metering);
    plan.find_callees(&wasm);
    let checked = started.elapsed();
    let wasm = crate::instrument::rewrite(&wasm, &plan)?;
    check_engine_limits(&wasm)?;
    let info = abi.info;
    Ok(PreparedModule { wasm, info, hash, check_time: checked, instrument_time: started.elapsed() - checked })
}

/// `tracking`, unless the module writes memory in more places than the
/// barrier's budget (see [`crate::instrument::dirty::MAX_TRACKED_WRITES`]):
/// then [`Tracking::Off`](crate::instrument::Tracking::Off), whatever was
/// asked — the load budget holds, blanks rebuild.
fn untracked_if_large(tracking: crate::instrument::Tracking, writes: u64) -> crate::instrument::Tracking {
    if writes > crate::instrument::dirty::MAX_TRACKED_WRITES { crate::instrument::Tracking::Off } else { tracking }
}

/// The limits themselves, before any module is read: the ones whose
/// bounds the instrumentation relies on.
fn check_settings(limits: &Limits) -> Result<()> {
    limit("configured memory limit (bytes)", limits.memory_bytes, MAX_MEMORY_LIMIT)?;
    limit("configured stack budget (bytes)", limits.max_stack, crate::instrument::MAX_STACK_BUDGET)?;
    limit("configured fuel", limits.fuel, MAX_FUEL)?;
    limit("configured init fuel", limits.init_fuel, MAX_FUEL)?;
    let locals = engine_limits::LOCALS - u64::from(crate::instrument::ADDED_LOCALS);
    limit("configured locals per function", limits.module.locals_per_function.into(), locals)
}

/// A core module of binary version 1 (not a component).
fn check_header(wasm: &[u8]) -> Result<()> {
    if wasm.len() < 8 {
        return Err(Error::NotWasm("shorter than the 8-byte header".into()));
    }
    if wasm[4..8] != [1, 0, 0, 0] {
        return Err(Error::NotWasm("not a core module of binary version 1 (a component?)".into()));
    }
    Ok(())
}

/// The size of the code section as its header declares it (0 where the
/// sections cannot be read: the validator refuses those later). Reads
/// section headers only.
fn code_bytes(wasm: &[u8]) -> u64 {
    let mut parser = Parser::new(0);
    let mut at = 0;
    loop {
        match parser.parse(&wasm[at..], true) {
            Ok(wasmparser::Chunk::Parsed { consumed, payload }) => {
                at += consumed;
                match payload {
                    Payload::CodeSectionStart { size, .. } => return u64::from(size),
                    Payload::End(_) => return 0,
                    _ => {}
                }
            }
            Ok(wasmparser::Chunk::NeedMoreData(_)) | Err(_) => return 0,
        }
    }
}

/// Exactly one memory, its initial size and every table's within the
/// limits.
fn check_memory_and_tables(types: TypesRef<'_>, limits: &Limits) -> Result<()> {
    if types.memory_count() != 1 {
        return Err(Error::Memory(format!("it has {}", types.memory_count())));
    }
    limit("initial memory (pages)", types.memory_at(0).initial, limits.memory_pages())?;
    limit("tables", types.table_count().into(), limits.module.tables.into())?;
    for t in 0..types.table_count() {
        limit("initial table elements", types.table_at(t).initial, limits.table_elements)?;
    }
    Ok(())
}

/// Every active data and element segment within the initial size of the
/// memory or table it initialises. An engine would fail instantiation (each
/// with its own error, one of them as an internal error); refused here,
/// it is the same load error on every backend. Offsets are constants: the
/// ABI admits no imported globals and no extended-const.
fn check_segments(wasm: &[u8], types: TypesRef<'_>) -> Result<()> {
    let offset = |expr: &wasmparser::ConstExpr<'_>| -> Result<Option<u64>> {
        match expr.get_operators_reader().read().map_err(invalid)? {
            wasmparser::Operator::I32Const { value } => Ok(Some(u64::from(value as u32))),
            _ => Ok(None),
        }
    };
    let check = |kind, index, what, start: u64, len: u64, target: String, size: u64| {
        let end = start + len;
        if end > size {
            return Err(Error::SegmentOutOfBounds { kind, index, what, start, end, target, size });
        }
        Ok(())
    };
    let memory_bytes = types.memory_at(0).initial * 65536;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::DataSection(s) => {
                for (index, data) in (0u32..).zip(s) {
                    let data = data.map_err(invalid)?;
                    if let wasmparser::DataKind::Active { offset_expr, .. } = &data.kind
                        && let Some(start) = offset(offset_expr)?
                    {
                        check("data", index, "bytes", start, data.data.len() as u64, "memory 0".into(), memory_bytes)?;
                    }
                }
            }
            Payload::ElementSection(s) => {
                for (index, element) in (0u32..).zip(s) {
                    let element = element.map_err(invalid)?;
                    if let wasmparser::ElementKind::Active { table_index, offset_expr } = &element.kind
                        && let Some(start) = offset(offset_expr)?
                    {
                        let table = table_index.unwrap_or(0);
                        let len = match &element.items {
                            wasmparser::ElementItems::Functions(r) => r.count(),
                            wasmparser::ElementItems::Expressions(_, r) => r.count(),
                        };
                        let size = types.table_at(table).initial;
                        check("element", index, "elements", start, len.into(), format!("table {table}"), size)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every function of the *instrumented* module within [`engine_limits`]:
/// parsed and validated again, as the engines will.
fn check_engine_limits(wasm: &[u8]) -> Result<()> {
    use engine_limits::*;
    let mut validator = wasmparser::Validator::new_with_features(instrumented_features());
    let mut allocations = wasmparser::FuncValidatorAllocations::default();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        let wasmparser::ValidPayload::Func(func, body) = validator.payload(&payload).map_err(invalid)? else {
            continue;
        };
        limit("function body size (bytes, instrumented)", body.range().len() as u64, FUNCTION_BYTES)?;
        let mut fv = func.into_validator(std::mem::take(&mut allocations));
        let mut reader = body.get_binary_reader();
        fv.read_locals(&mut reader).map_err(invalid)?;
        // (The function's own locals were checked against
        // `locals_per_function` before the rewrite, in `check_counts`.)
        let locals = u64::from(fv.len_locals());
        limit("locals per function (parameters and the instrumentation's included)", locals, LOCALS)?;
        let mut deepest = 0u64;
        let mut ops = body.get_operators_reader().map_err(invalid)?;
        while !ops.eof() {
            let (op, offset) = ops.read_with_offset().map_err(invalid)?;
            if let wasmparser::Operator::BrTable { targets } = &op {
                limit("br_table targets", targets.len().into(), BR_TABLE_TARGETS)?;
            }
            fv.op(offset, &op).map_err(invalid)?;
            deepest = deepest.max(u64::from(fv.operand_stack_height()));
        }
        limit("twice the locals plus operand stack depth of a function (instrumented)", 2 * locals + deepest, SLOTS)?;
        allocations = fv.into_allocations();
    }
    Ok(())
}

/// The function type of function `index` (validation without GC admits
/// only function types).
fn func_type(types: TypesRef<'_>, index: u32) -> FuncType {
    match &types[types.core_function_at(index)].composite_type.inner {
        CompositeInnerType::Func(f) => f.clone(),
        other => unreachable!("non-function type {other:?} after validation"),
    }
}

/// What the ABI checks learn about a module, and what the instrumentation
/// needs of it.
struct Abi {
    info: ModuleInfo,
    imported_funcs: u32,
    exported_funcs: Vec<u32>,
}

/// Imports, exports and the start function checked against abi.md.
fn read_abi(wasm: &[u8], types: TypesRef<'_>, limits: &Limits) -> Result<Abi> {
    let mut info = ModuleInfo {
        has_init: false,
        has_migrate: false,
        start: None,
        memory_initial_pages: types.memory_at(0).initial,
        globals: Vec::new(),
        tables: (0..types.table_count()).map(|t| format!("{RESERVED_PREFIX}table_{t}")).collect(),
        imports: Vec::new(),
        layout: crate::instrument::Layout::for_limit(limits.memory_bytes),
        tracking: crate::instrument::Tracking::default(),
    };
    let mut imported_funcs = 0u32;
    let mut exported_funcs = Vec::new();
    let mut seen = [false; 3]; // memory, alloc, validate
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::ImportSection(s) => {
                for imp in s.into_imports() {
                    let imp = imp.map_err(invalid)?;
                    let unknown = || Error::UnknownImport { module: imp.module.into(), name: imp.name.into() };
                    let spec =
                        IMPORTS.iter().find(|s| imp.module == MODULE && imp.name == s.name).ok_or_else(unknown)?;
                    let TypeRef::Func(_) = imp.ty else {
                        return Err(unknown());
                    };
                    let ty = func_type(types, imported_funcs);
                    imported_funcs += 1;
                    if !is_i32s(ty.params(), spec.params.len()) || !is_i32s(ty.results(), spec.results.len()) {
                        let i32s = |n: usize| vec!["i32"; n].join(", ");
                        return Err(Error::ImportType {
                            name: spec.name,
                            expected: format!("func ({}) -> ({})", i32s(spec.params.len()), i32s(spec.results.len())),
                            found: describe(&ty),
                        });
                    }
                    if !info.imports.iter().any(|i| i == spec.name) {
                        info.imports.push(spec.name.to_string());
                    }
                }
            }
            Payload::ExportSection(s) => {
                for export in s {
                    let export = export.map_err(invalid)?;
                    if export.kind == ExternalKind::Func {
                        exported_funcs.push(export.index);
                    }
                    check_export(&export, types, &mut info, &mut seen)?;
                }
            }
            Payload::StartSection { func, .. } => info.start = Some(func),
            _ => {}
        }
    }
    for (ok, name) in seen.into_iter().zip([exports::MEMORY, exports::ALLOC, exports::VALIDATE]) {
        if !ok {
            return Err(Error::MissingExport(name));
        }
    }
    // Make every mutable global and every table reachable for blanking.
    for g in 0..types.global_count() {
        if types.global_at(g).mutable {
            info.globals.push(GlobalInfo { index: g, export: format!("{RESERVED_PREFIX}global_{g}") });
        }
    }
    Ok(Abi { info, imported_funcs, exported_funcs })
}

/// One export: reserved names refused, the ABI's exports of the right
/// kind and signature (`seen`: memory, alloc, validate).
fn check_export(
    export: &wasmparser::Export<'_>,
    types: TypesRef<'_>,
    info: &mut ModuleInfo,
    seen: &mut [bool; 3],
) -> Result<()> {
    if export.name.starts_with(RESERVED_PREFIX) {
        return Err(Error::ReservedExport(export.name.into()));
    }
    let Some(name) = abi_name(export.name) else { return Ok(()) };
    let found_kind = || format!("{:?}", export.kind).to_lowercase();
    if name == exports::MEMORY {
        if export.kind != ExternalKind::Memory {
            return Err(Error::ExportType { name, expected: "a memory", found: found_kind() });
        }
        seen[0] = true;
        return Ok(());
    }
    let (expected, params, results): (&'static str, usize, usize) = match name {
        exports::ALLOC => ("func (i32) -> (i32)", 1, 1),
        exports::VALIDATE => ("func (i32, i32) -> (i32)", 2, 1),
        exports::INIT => ("func () -> ()", 0, 0),
        _ => ("func () -> (i32)", 0, 1), // exports::MIGRATE
    };
    if export.kind != ExternalKind::Func {
        return Err(Error::ExportType { name, expected, found: found_kind() });
    }
    let ty = func_type(types, export.index);
    if !is_i32s(ty.params(), params) || !is_i32s(ty.results(), results) {
        return Err(Error::ExportType { name, expected, found: describe(&ty) });
    }
    match name {
        exports::ALLOC => seen[1] = true,
        exports::VALIDATE => seen[2] = true,
        exports::INIT => info.has_init = true,
        _ => info.has_migrate = true,
    }
    Ok(())
}

impl Abi {
    /// What the instrumentation pass needs: the layout, the limits it
    /// guards, each defined function's signature, the reserved exports,
    /// and which functions the host may call.
    fn plan(&self, types: TypesRef<'_>, limits: &Limits, metering: Metering) -> crate::instrument::Plan<'_> {
        let (info, imported_funcs) = (&self.info, self.imported_funcs);
        let defined = types.function_count() - imported_funcs;
        crate::instrument::Plan {
            layout: info.layout,
            memory_pages: limits.memory_pages(),
            table_elements: limits.table_elements,
            funcs: (0..defined)
                .map(|i| {
                    let ty = func_type(types, imported_funcs + i);
                    crate::instrument::FuncSig { params: ty.params().len() as u32, results: ty.results().to_vec() }
                })
                .collect(),
            exports: info
                .globals
                .iter()
                .map(|g| (g.export.as_str(), wasm_encoder::ExportKind::Global, g.index))
                .chain(
                    info.tables
                        .iter()
                        .enumerate()
                        .map(|(t, n)| (n.as_str(), wasm_encoder::ExportKind::Table, t as u32)),
                )
                .chain(info.start.map(|f| (exports::START, wasm_encoder::ExportKind::Func, f)))
                .chain([(exports::BOOKS, wasm_encoder::ExportKind::Memory, crate::instrument::layout::BOOKS)])
                .collect(),
            metering: metering == Metering::On,
            tracking: info.tracking,
            imported_funcs,
            globals: types.global_count(),
            entries: self
                .exported_funcs
                .iter()
                .chain(info.start.iter())
                .filter_map(|f| f.checked_sub(imported_funcs))
                .collect(),
            callees: Default::default(),
        }
    }
}

/// The ABI's name for an export, if it is one of the ABI's.
fn abi_name(name: &str) -> Option<&'static str> {
    [exports::MEMORY, exports::ALLOC, exports::VALIDATE, exports::INIT, exports::MIGRATE]
        .into_iter()
        .find(|n| *n == name)
}
