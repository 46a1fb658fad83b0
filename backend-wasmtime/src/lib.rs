//! [`ExecutorHost`] on wasmtime 48 (Cranelift): the fastest safe reuse.
//!
//! # Strategies, and what each costs
//!
//! Like substrate's `InstantiationStrategy`, the ways this backend makes an
//! instance, each with its cost:
//!
//! - **Blank (scheduled)**: restore the post-`executor_init` image in place
//!   from core's dirty map ([`MemoryImage`]): the 4 KiB pages the
//!   transaction wrote, every mutable global, the tables only if a table
//!   instruction ran. Cost grows with what the transaction dirtied (plus a
//!   scan of one map byte per 4 KiB of memory); `executor_init` never
//!   re-runs. Measured on this project's benchmark this beats re-instantiating
//!   into a pooled copy-on-write slot (≈ 0.5 µs against ≈ 10–20 µs), whose
//!   reset `madvise`s every page the previous instance touched (see the
//!   README's figures). When memory or a table grew, or a segment was
//!   dropped, the driver rebuilds instead.
//! - **Rebuild (recycle, and blanks that cannot restore)**: a new `Store`
//!   and an instance from the `InstancePre` made once per executor, in a
//!   slot of the pooling allocator with copy-on-write memory images
//!   (`memory_init_cow`). The first build runs `executor_init`; later ones
//!   instantiate the executor with core's blank snapshot baked in
//!   ([`ExecutorHost::bakes_snapshots`]: compiled once, in the background,
//!   through the cache), so the blank state is *mapped* copy-on-write —
//!   init's work is never redone or copied. Cost: the slot reset (pages the
//!   previous occupant touched) plus a mapping; until the baked executor is
//!   ready, a copy of what init wrote.
//!   *Fallback*: if the pooling allocator cannot be set up (e.g. the
//!   address space cannot be reserved), the engine uses on-demand
//!   allocation; this is logged as a warning, never silent.
//! - **Fresh (the `fresh` policy)**: the reference a host without this
//!   project gives: a second engine with wasmtime's default allocation,
//!   `Linker::instantiate` per transaction, `executor_init` every time.
//!
//! Limits: growth past the memory/table limits asks core
//! ([`HostEnv::memory_growing`]) through a `ResourceLimiter` and traps as
//! `out_of_memory` (core's instrumentation decides it first; the limiter is a
//! backstop). Fuel, the stack budget and NaN canonicalisation are core's
//! instrumentation's, the same on every engine: wasmtime's fuel and NaN
//! canonicalisation are off (they would cost twice for nothing), and its
//! native stack limit is sized by [`engine_stack_bytes`] from the budget, a
//! backstop that never fires first. The thread calling into this backend
//! must have that much stack free (the peer's main thread has 8 MiB).
#![warn(missing_docs)]

use executor_core::instrument::engine_stack_bytes;
use executor_core::snapshot::{ImageCache, MemoryImage, Restore};
use executor_core::{
    BackendKind, Blanked, CallError, CompiledExecutor, Error, ExecutorHost, ExecutorInstance, Export, GlobalValue,
    HostEnv, InstanceMode, Limits, PreparedModule, Result, Trap, TrapCode, host,
};
use std::sync::{Arc, OnceLock};
use wasmtime::{
    Caller, Config, Engine, Global, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module,
    PoolingAllocationConfig, Ref, ResourceLimiter, Store, Table, TypedFunc, Val,
};

/// Instances one engine's pool holds at once: the warm one, one being
/// built during an upgrade or audit, and headroom.
pub const POOL_INSTANCES: u32 = 8;

/// Store data: the host state plus a cached memory handle.
struct StoreData {
    env: HostEnv,
    memory: Option<Memory>,
}

impl ResourceLimiter for StoreData {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.env.memory_growing(desired as u64).map_err(|_| HostAbort)?;
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(self.env.grow_failed("memory", 0)).map_err(|_| HostAbort.into())
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.env.table_growing(desired as u64).map_err(|_| HostAbort)?;
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(self.env.grow_failed("table", 0)).map_err(|_| HostAbort.into())
    }
}

/// The error our imports and limiter return to make wasmtime trap; what it
/// means is in the [`HostEnv`].
#[derive(Debug)]
struct HostAbort;

impl std::fmt::Display for HostAbort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("aborted by the executor host")
    }
}

impl std::error::Error for HostAbort {}

fn memory_of(caller: &mut Caller<'_, StoreData>) -> wasmtime::Result<Memory> {
    if let Some(m) = caller.data().memory {
        return Ok(m);
    }
    let m = caller
        .get_export(executor_core::module::exports::MEMORY)
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::Error::msg("executor has no memory export"))?;
    caller.data_mut().memory = Some(m);
    Ok(m)
}

fn linker(engine: &Engine) -> wasmtime::Result<Linker<StoreData>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(
        host::MODULE,
        "state_get",
        |mut caller: Caller<'_, StoreData>, kp: i32, kl: i32, op: i32, oc: i32| -> wasmtime::Result<i32> {
            let memory = memory_of(&mut caller)?;
            let (mem, data) = memory.data_and_store_mut(&mut caller);
            Ok(host::state_get(&mut data.env, mem, kp, kl, op, oc).map_err(|_| HostAbort)?)
        },
    )?;
    linker.func_wrap(
        host::MODULE,
        "deny_reason",
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let memory = memory_of(&mut caller)?;
            let (mem, data) = memory.data_and_store_mut(&mut caller);
            Ok(host::deny_reason(&mut data.env, mem, ptr, len).map_err(|_| HostAbort)?)
        },
    )?;
    linker.func_wrap(
        host::MODULE,
        "log",
        |mut caller: Caller<'_, StoreData>, level: i32, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let memory = memory_of(&mut caller)?;
            let (mem, data) = memory.data_and_store_mut(&mut caller);
            Ok(host::log(&mut data.env, mem, level, ptr, len).map_err(|_| HostAbort)?)
        },
    )?;
    Ok(linker)
}

/// The semantic settings every engine of this backend shares, so `fresh`
/// and warm instances give the same verdicts.
fn base_config(limits: &Limits) -> Config {
    let mut config = Config::new();
    let stack = engine_stack_bytes(limits.max_stack) as usize;
    config
        .consume_fuel(false)
        .max_wasm_stack(stack)
        // Never used (calls are synchronous), but wasmtime requires it to
        // be at least `max_wasm_stack`.
        .async_stack_size(stack + (1 << 20))
        .cranelift_nan_canonicalization(false)
        // The ABI's feature set; core has already refused the rest.
        .wasm_simd(false)
        .wasm_relaxed_simd(false)
        .wasm_tail_call(false)
        .wasm_multi_memory(false)
        .wasm_memory64(false)
        .wasm_extended_const(false)
        .wasm_function_references(false)
        .wasm_gc(false)
        .wasm_bulk_memory(true)
        .wasm_reference_types(true)
        .wasm_multi_value(true);
    config
}

/// The wasmtime engines, configured once from the [`Limits`].
pub struct WasmtimeHost {
    engine: Engine,
    fresh_engine: Engine,
    limits: Limits,
    pooling: bool,
    strategy: BlankStrategy,
}

/// How a scheduled blank is done. Both give the exact blank state; they
/// differ in cost, which `bench-blank` measures side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlankStrategy {
    /// Restore dirtied pages, globals and touched tables in place (the
    /// default). Cost: what the transaction dirtied.
    #[default]
    RestoreDirty,
    /// Drop the instance and re-instantiate from the `InstancePre` into a
    /// pooled copy-on-write slot, then re-run `executor_init`. Cost: the
    /// slot reset (`madvise`/memset of pages the previous instance touched)
    /// plus instantiation plus init — kept as a measured alternative.
    ReinstantiatePooled,
}

impl WasmtimeHost {
    /// Engines enforcing `limits`: a pooling, copy-on-write one for warm
    /// instances (falling back to on-demand allocation, with a warning, if
    /// the pool cannot be reserved) and a default one for `fresh`.
    pub fn new(limits: Limits) -> Result<Self> {
        let engine_error =
            |e: wasmtime::Error| Error::HostFailure { backend: BackendKind::Wasmtime, message: format!("{e:#}") };
        let layout = executor_core::instrument::Layout::for_limit(limits.memory_bytes);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(POOL_INSTANCES)
            .total_memories(POOL_INSTANCES)
            .total_tables(POOL_INSTANCES * limits.module.tables)
            .max_tables_per_module(limits.module.tables)
            .max_memories_per_module(1)
            .table_elements(limits.table_elements as usize)
            .max_memory_size(limits.memory_pages() as usize * 65536 + layout.reserved)
            .max_core_instance_size(16 << 20)
            // Reset small memories with memset (no page faults next time),
            // larger ones with madvise.
            .linear_memory_keep_resident(64 << 10)
            .table_keep_resident(16 << 10);
        let mut config = base_config(&limits);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool)).memory_init_cow(true);
        let (engine, pooling) = match Engine::new(&config) {
            Ok(engine) => (engine, true),
            Err(e) => {
                tracing::warn!(error = %e, "wasmtime pooling allocator unavailable; falling back to on-demand allocation");
                (Engine::new(&base_config(&limits)).map_err(engine_error)?, false)
            }
        };
        let fresh_engine = Engine::new(&base_config(&limits)).map_err(engine_error)?;
        Ok(WasmtimeHost { engine, fresh_engine, limits, pooling, strategy: BlankStrategy::default() })
    }

    /// The same host blanking with `strategy`.
    pub fn with_strategy(mut self, strategy: BlankStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Whether warm instances live in the pooling allocator (false after
    /// the logged fallback).
    pub fn pooling(&self) -> bool {
        self.pooling
    }
}

/// This backend with the given limits, or the error that prevented
/// creating any wasmtime engine.
pub fn try_host(limits: Limits) -> Result<Arc<dyn ExecutorHost>> {
    Ok(Arc::new(WasmtimeHost::new(limits)?))
}

/// This backend with the given limits, as `core` takes it.
///
/// # Panics
///
/// If no wasmtime engine can be created at all (not even without pooling):
/// a broken host, not anything an executor or config can cause.
pub fn host(limits: Limits) -> Arc<dyn ExecutorHost> {
    Arc::new(WasmtimeHost::new(limits).unwrap_or_else(|e| panic!("cannot create a wasmtime engine: {e}")))
}

impl ExecutorHost for WasmtimeHost {
    fn kind(&self) -> BackendKind {
        BackendKind::Wasmtime
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn compile(&self, module: &PreparedModule) -> Result<Arc<dyn CompiledExecutor>> {
        let compiled = Module::new(&self.engine, &module.wasm).map_err(compile_error)?;
        self.wrap(module, compiled)
    }

    /// Copy-on-write memory images make a module's data segments a
    /// mapping at instantiation: with the blank snapshot baked in, a
    /// rebuild maps the blank state instead of copying it.
    fn bakes_snapshots(&self) -> bool {
        true
    }

    /// The engine's own compatibility hash (wasmtime version, compiler
    /// and tunables settings) and whether the pool is in use.
    fn artifact_fingerprint(&self) -> Option<String> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        Some(format!("wasmtime compat {:016x}, pooling {}", h.finish(), self.pooling))
    }

    unsafe fn load_artifact(&self, module: &PreparedModule, artifact: &[u8]) -> Result<Arc<dyn CompiledExecutor>> {
        // SAFETY: the caller guarantees these are bytes `serialize` made
        // on an engine with our fingerprint; wasmtime checks its header.
        let compiled = unsafe { Module::deserialize(&self.engine, artifact) }.map_err(compile_error)?;
        self.wrap(module, compiled)
    }
}

fn compile_error(e: wasmtime::Error) -> Error {
    Error::Compile { backend: BackendKind::Wasmtime, message: format!("{e:#}") }
}

impl WasmtimeHost {
    /// The executor around a compiled (or deserialised) module.
    fn wrap(&self, module: &PreparedModule, compiled: Module) -> Result<Arc<dyn CompiledExecutor>> {
        let pre = linker(&self.engine).and_then(|l| l.instantiate_pre(&compiled)).map_err(compile_error)?;
        Ok(Arc::new(WasmtimeCompiled {
            pre,
            wasm: module.wasm.clone(),
            fresh_engine: self.fresh_engine.clone(),
            fresh: OnceLock::new(),
            strategy: self.strategy,
            globals: module.info.globals.iter().map(|g| g.export.clone()).collect(),
            tables: module.info.tables.clone(),
            image: ImageCache::new(),
        }))
    }
}

struct WasmtimeCompiled {
    pre: InstancePre<StoreData>,
    wasm: Vec<u8>,
    fresh_engine: Engine,
    /// The module compiled for the default engine, with its linker: made
    /// on the first `fresh` instantiation.
    fresh: OnceLock<std::result::Result<(Module, Linker<StoreData>), String>>,
    strategy: BlankStrategy,
    globals: Vec<String>,
    tables: Vec<String>,
    /// The blank memory image, shared by all instances.
    image: ImageCache,
}

/// Translates a wasmtime error: our aborts and the ABI's trap codes are
/// guest outcomes; anything else is a host failure.
fn call_error(store: &Store<StoreData>, e: wasmtime::Error) -> CallError {
    if store.data().env.abort().is_some() || e.is::<HostAbort>() {
        return Trap::Aborted.into();
    }
    use wasmtime::Trap as W;
    let trap = match e.downcast_ref::<W>() {
        Some(W::UnreachableCodeReached) => Trap::Wasm(TrapCode::Unreachable),
        Some(W::MemoryOutOfBounds) => Trap::Wasm(TrapCode::MemoryOutOfBounds),
        Some(W::TableOutOfBounds) => Trap::Wasm(TrapCode::TableOutOfBounds),
        Some(W::IndirectCallToNull) => Trap::Wasm(TrapCode::IndirectCallToNull),
        Some(W::BadSignature) => Trap::Wasm(TrapCode::BadSignature),
        Some(W::IntegerOverflow) => Trap::Wasm(TrapCode::IntegerOverflow),
        Some(W::IntegerDivisionByZero) => Trap::Wasm(TrapCode::IntegerDivisionByZero),
        Some(W::BadConversionToInteger) => Trap::Wasm(TrapCode::BadConversionToInteger),
        Some(W::StackOverflow) => Trap::StackOverflow,
        Some(W::OutOfFuel) => Trap::OutOfFuel,
        _ => return CallError::Host(format!("wasmtime: {e:#}")),
    };
    trap.into()
}

impl CompiledExecutor for WasmtimeCompiled {
    fn serialize(&self) -> Option<std::result::Result<Vec<u8>, String>> {
        Some(self.pre.module().serialize().map_err(|e| format!("{e:#}")))
    }

    fn instantiate(&self, env: HostEnv, mode: InstanceMode) -> Result<Box<dyn ExecutorInstance>, CallError> {
        let host_error = |what: &str| CallError::Host(format!("prepared module lacks {what}"));
        let (mut store, instance) = match mode {
            InstanceMode::Reusable => {
                let mut store = Store::new(self.pre.module().engine(), StoreData { env, memory: None });
                store.limiter(|data| data as &mut dyn ResourceLimiter);
                match self.pre.instantiate(&mut store) {
                    Ok(i) => (store, i),
                    Err(e) => return Err(call_error(&store, e)),
                }
            }
            InstanceMode::Fresh => {
                let fresh = self.fresh.get_or_init(|| {
                    let module = Module::new(&self.fresh_engine, &self.wasm).map_err(|e| format!("{e:#}"))?;
                    let linker = linker(&self.fresh_engine).map_err(|e| format!("{e:#}"))?;
                    Ok((module, linker))
                });
                let (module, linker) = fresh.as_ref().map_err(|e| CallError::Host(e.clone()))?;
                let mut store = Store::new(&self.fresh_engine, StoreData { env, memory: None });
                store.limiter(|data| data as &mut dyn ResourceLimiter);
                match linker.instantiate(&mut store, module) {
                    Ok(i) => (store, i),
                    Err(e) => return Err(call_error(&store, e)),
                }
            }
        };
        let memory = instance
            .get_memory(&mut store, executor_core::module::exports::MEMORY)
            .ok_or_else(|| host_error("memory"))?;
        store.data_mut().memory = Some(memory);
        // Typed handles: a call skips the dynamic signature checks and
        // `Val` boxing of `Func::call` (checked once here instead; core's
        // module checks guarantee the signatures).
        let typed_error = |e: wasmtime::Error| CallError::Host(format!("export signature: {e:#}"));
        let funcs = Funcs {
            alloc: instance.get_typed_func(&mut store, Export::Alloc.name()).map_err(typed_error)?,
            validate: instance.get_typed_func(&mut store, Export::Validate.name()).map_err(typed_error)?,
            init: instance.get_typed_func(&mut store, Export::Init.name()).ok(),
            migrate: instance.get_typed_func(&mut store, Export::Migrate.name()).ok(),
            start: instance.get_typed_func(&mut store, Export::Start.name()).ok(),
        };
        let mut global = |name: &str| instance.get_global(&mut store, name).ok_or_else(|| host_error(name));
        let globals = self.globals.iter().map(|n| global(n)).collect::<Result<Vec<_>, _>>()?;
        let tables = self
            .tables
            .iter()
            .map(|name| instance.get_table(&mut store, name).ok_or_else(|| host_error(name)))
            .collect::<Result<Vec<_>, _>>()?;
        let strategy = self.strategy;
        let image = self.image.clone();
        Ok(Box::new(WasmtimeInstance { store, memory, funcs, globals, tables, strategy, image, blank: None }))
    }
}

/// The blank state of one instance.
struct BlankState {
    memory: Arc<MemoryImage>,
    globals: Vec<Val>,
    tables: Vec<Vec<Ref>>,
}

/// The ABI exports, typed.
struct Funcs {
    alloc: TypedFunc<i32, i32>,
    validate: TypedFunc<(i32, i32), i32>,
    init: Option<TypedFunc<(), ()>>,
    migrate: Option<TypedFunc<(), i32>>,
    start: Option<TypedFunc<(), ()>>,
}

struct WasmtimeInstance {
    store: Store<StoreData>,
    memory: Memory,
    funcs: Funcs,
    globals: Vec<Global>,
    tables: Vec<Table>,
    strategy: BlankStrategy,
    image: ImageCache,
    blank: Option<BlankState>,
}

impl ExecutorInstance for WasmtimeInstance {
    fn call(&mut self, export: Export, args: &[i32]) -> Result<Option<i32>, CallError> {
        let missing = || CallError::Host(format!("no export {} or wrong arguments", export.name()));
        let store = &mut self.store;
        let result = match (export, args) {
            (Export::Alloc, &[len]) => self.funcs.alloc.call(&mut *store, len).map(Some),
            (Export::Validate, &[ptr, len]) => self.funcs.validate.call(&mut *store, (ptr, len)).map(Some),
            (Export::Init, &[]) => self.funcs.init.as_ref().ok_or_else(missing)?.call(&mut *store, ()).map(|()| None),
            (Export::Migrate, &[]) => self.funcs.migrate.as_ref().ok_or_else(missing)?.call(&mut *store, ()).map(Some),
            (Export::Start, &[]) => self.funcs.start.as_ref().ok_or_else(missing)?.call(&mut *store, ()).map(|()| None),
            _ => return Err(missing()),
        };
        result.map_err(|e| call_error(&self.store, e))
    }

    fn env(&mut self) -> &mut HostEnv {
        &mut self.store.data_mut().env
    }

    fn memory(&mut self) -> &mut [u8] {
        self.memory.data_mut(&mut self.store)
    }

    fn mark_blank(&mut self) -> Result<(), CallError> {
        let layout = self.store.data().env.layout();
        let mut tables = Vec::with_capacity(self.tables.len());
        for t in &self.tables {
            let size = t.size(&self.store);
            tables.push((0..size).map(|i| t.get(&mut self.store, i).expect("index below size")).collect());
        }
        let globals = self.globals.iter().map(|g| g.get(&mut self.store)).collect();
        let memory = self.image.adopt(layout, self.memory.data_mut(&mut self.store));
        self.blank = Some(BlankState { memory, globals, tables });
        Ok(())
    }

    fn blank(&mut self) -> Result<Blanked, CallError> {
        if self.strategy == BlankStrategy::ReinstantiatePooled {
            return Ok(Blanked::NeedsRebuild);
        }
        let blank = self.blank.as_ref().ok_or_else(|| CallError::Host("blank() before mark_blank()".into()))?;
        let host = |e: wasmtime::Error| CallError::Host(format!("wasmtime blank: {e:#}"));
        let (memory, data) = self.memory.data_and_store_mut(&mut self.store);
        let Restore::Done { tables_dirty, .. } = blank.memory.restore(memory, data.env.take_host_writes()) else {
            return Ok(Blanked::NeedsRebuild);
        };
        for (g, v) in self.globals.iter().zip(&blank.globals) {
            g.set(&mut self.store, *v).map_err(host)?;
        }
        if tables_dirty {
            for (t, elems) in self.tables.iter().zip(&blank.tables) {
                if t.size(&self.store) != elems.len() as u64 {
                    return Ok(Blanked::NeedsRebuild);
                }
                for (i, e) in elems.iter().enumerate() {
                    t.set(&mut self.store, i as u64, e.clone()).map_err(host)?;
                }
            }
        }
        Ok(Blanked::Restored)
    }

    fn memory_size(&mut self) -> u64 {
        self.memory.data_size(&self.store) as u64
    }

    fn global_values(&mut self) -> Result<Option<Vec<GlobalValue>>, CallError> {
        Ok(self
            .globals
            .iter()
            .map(|g| match g.get(&mut self.store) {
                Val::I32(v) => Some(GlobalValue::I32(v)),
                Val::I64(v) => Some(GlobalValue::I64(v)),
                Val::F32(v) => Some(GlobalValue::F32(v)),
                Val::F64(v) => Some(GlobalValue::F64(v)),
                _ => None,
            })
            .collect())
    }

    fn set_global_values(&mut self, values: &[GlobalValue]) -> Result<(), CallError> {
        for (g, v) in GlobalValue::pair(&self.globals, values)? {
            let v = match v {
                GlobalValue::I32(v) => Val::I32(v),
                GlobalValue::I64(v) => Val::I64(v),
                GlobalValue::F32(v) => Val::F32(v),
                GlobalValue::F64(v) => Val::F64(v),
            };
            g.set(&mut self.store, v).map_err(|e| CallError::Host(format!("wasmtime global: {e:#}")))?;
        }
        Ok(())
    }

    fn grow_memory(&mut self, pages: u64) -> Result<(), CallError> {
        self.memory.grow(&mut self.store, pages).map(drop).map_err(|e| CallError::Host(format!("wasmtime grow: {e:#}")))
    }
}
