//! [`ExecutorHost`] on wasmtime 48 (Cranelift): the fastest safe reuse.
//!
//! What all engines share is core's [`kit`]; this crate is wasmtime's
//! configuration, import and limiter glue, trap table, serialisation, and
//! its ways to build instances (like substrate's `InstantiationStrategy`):
//!
//! - **Blank**: core's restore in place (or, measured, a rebuild:
//!   [`executor_core::BlankMethod`]).
//! - **Rebuild** (recycles, blanks that cannot restore): a new `Store` and
//!   an instance from the `InstancePre` made once per executor, in a slot
//!   of the pooling allocator with copy-on-write memory images. From the
//!   first rebuild on, the executor with core's blank snapshot baked in
//!   ([`ExecutorHost::bakes_snapshots`], compiled in the background) makes
//!   instantiation *map* the blank state. Cost: the slot reset plus a
//!   mapping. *Fallback*: if the pool cannot be reserved, on-demand
//!   allocation, logged as a warning.
//! - **Fresh** (the `fresh` policy's reference): a second engine with
//!   wasmtime's defaults, `Linker::instantiate`, `executor_init` each time.
//!
//! Fuel, the stack budget and NaNs are core's instrumentation's: wasmtime's
//! fuel and NaN canonicalisation are off, its stack limit is sized by
//! [`engine_stack_bytes`] (a backstop that never fires first), and the
//! thread calling in must have that much stack free.
#![warn(missing_docs)]

use executor_core::instrument::engine_stack_bytes;
use executor_core::kit::{self, Books, Shared};
use executor_core::module::exports as abi_exports;
use executor_core::{
    CallError, CompiledExecutor, Error, ExecutorHost, ExecutorInstance, Export, GlobalValue, HostEnv, HostInfo,
    InstanceMode, Limits, Memories, PreparedModule, Result, host,
};
use std::sync::{Arc, OnceLock};
use wasmtime::{
    Caller, Config, Engine, Global, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module,
    PoolingAllocationConfig, Ref, ResourceLimiter, Store, Table, TypedFunc, Val,
};

const NAME: &str = "wasmtime";

/// Instances one engine's pool holds at once: the warm one, one being
/// built during an upgrade or audit, and headroom.
pub const POOL_INSTANCES: u32 = 8;

executor_core::store_data!(wasmtime);

impl ResourceLimiter for StoreData {
    fn memory_growing(&mut self, _: usize, desired: usize, max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.env.allows_memory(desired as u64, max.map(|m| m as u64))?)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(self.env.grow_failed("memory", 0).into())
    }

    fn table_growing(&mut self, _: usize, desired: usize, max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.env.allows_table(desired as u64, max.map(|m| m as u64))?)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(self.env.grow_failed("table", 0).into())
    }
}

/// Registers one wasmtime closure per host import of core's list.
macro_rules! register {
    ($linker:ident; $($name:ident($($arg:ident),*) -> $result:ty;)*) => {$(
        $linker.func_wrap(host::MODULE, stringify!($name), |mut caller: Caller<'_, StoreData>, $($arg: i32),*| {
            let memories = caller.data().memories.ok_or_else(|| wasmtime::Error::msg("no memory attached"))?;
            let (memories, env) = lend(memories, &mut caller);
            Ok::<$result, wasmtime::Error>(host::$name(env, memories, $($arg),*)?)
        })?;
    )*};
}

fn linker(engine: &Engine) -> wasmtime::Result<Linker<StoreData>> {
    let mut linker = Linker::new(engine);
    executor_core::for_each_import!(register!(linker;));
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
        // Unused (calls are synchronous) but must be ≥ `max_wasm_stack`.
        .async_stack_size(stack + (1 << 20))
        .cranelift_nan_canonicalization(false)
        // The ABI's feature set; core has already refused the rest.
        .wasm_simd(false)
        .wasm_relaxed_simd(false)
        .wasm_tail_call(false)
        // The books are a second memory (see `executor_core::instrument`);
        // core has refused guests with more than one.
        .wasm_multi_memory(true)
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
    info: HostInfo,
    pooling: bool,
}

impl WasmtimeHost {
    /// Engines enforcing `limits`: a pooling, copy-on-write one for warm
    /// instances (falling back to on-demand allocation, with a warning, if
    /// the pool cannot be reserved) and a default one for `fresh`.
    pub fn new(limits: Limits) -> Result<Self> {
        let engine_error = |e: wasmtime::Error| Error::HostFailure { backend: NAME, message: format!("{e:#}") };
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(POOL_INSTANCES)
            .total_memories(2 * POOL_INSTANCES)
            .total_tables(POOL_INSTANCES * limits.module.tables)
            .max_tables_per_module(limits.module.tables)
            .max_memories_per_module(2)
            .table_elements(limits.table_elements as usize)
            .max_memory_size(limits.engine_memory_slot_bytes() as usize)
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
        let info = HostInfo { name: NAME, limits };
        Ok(WasmtimeHost { engine, fresh_engine, info, pooling })
    }

    /// Whether warm instances live in the pool (false after the fallback).
    pub fn pooling(&self) -> bool {
        self.pooling
    }
}

/// This backend with the given limits, or why no wasmtime engine could be
/// created at all (not even without pooling: a broken host).
pub fn try_host(limits: Limits) -> Result<Arc<dyn ExecutorHost>> {
    Ok(Arc::new(WasmtimeHost::new(limits)?))
}

/// [`try_host`] as `core` takes a backend; panics where it fails.
pub fn host(limits: Limits) -> Arc<dyn ExecutorHost> {
    try_host(limits).unwrap_or_else(|e| panic!("cannot create a wasmtime engine: {e}"))
}

impl ExecutorHost for WasmtimeHost {
    fn info(&self) -> &HostInfo {
        &self.info
    }

    fn compile(&self, module: &PreparedModule) -> Result<Arc<dyn CompiledExecutor>> {
        let compiled = Module::new(&self.engine, &module.wasm).map_err(compile_error)?;
        self.wrap(module, compiled)
    }

    /// Copy-on-write memory images map a module's data segments: with the
    /// blank snapshot baked in, a rebuild maps the blank state.
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
    Error::Compile { backend: NAME, message: format!("{e:#}") }
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
            shared: Shared::of(&module.info),
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
    shared: Shared,
}

/// A failed call of wasmtime's, as core wants it (abort, trap or host failure).
fn call_error(store: &Store<StoreData>, e: wasmtime::Error) -> CallError {
    let trap = executor_core::trap_table!(e.downcast_ref(), wasmtime::Trap:
        UnreachableCodeReached, MemoryOutOfBounds, TableOutOfBounds, IndirectCallToNull, BadSignature,
        IntegerOverflow, IntegerDivisionByZero, BadConversionToInteger, StackOverflow, OutOfFuel);
    kit::call_error(&store.data().env, trap, || format!("wasmtime: {e:#}"))
}

impl CompiledExecutor for WasmtimeCompiled {
    fn serialize(&self) -> Option<std::result::Result<Vec<u8>, String>> {
        Some(self.pre.module().serialize().map_err(|e| format!("{e:#}")))
    }

    fn instantiate(&self, env: HostEnv, mode: InstanceMode) -> Result<Box<dyn ExecutorInstance>, CallError> {
        let (engine, fresh) = match mode {
            InstanceMode::Reusable => (self.pre.module().engine(), None),
            _ => {
                let fresh = self.fresh.get_or_init(|| {
                    let module = Module::new(&self.fresh_engine, &self.wasm).map_err(|e| format!("{e:#}"))?;
                    Ok((module, linker(&self.fresh_engine).map_err(|e| format!("{e:#}"))?))
                });
                (&self.fresh_engine, Some(fresh.as_ref().map_err(|e| CallError::Host(e.clone()))?))
            }
        };
        let mut store = Store::new(engine, StoreData { env, memories: None });
        store.limiter(|data| data as &mut dyn ResourceLimiter);
        let instance = match fresh {
            None => self.pre.instantiate(&mut store),
            Some((module, linker)) => linker.instantiate(&mut store, module),
        }
        .map_err(|e| call_error(&store, e))?;
        let mut memory = |name| instance.get_memory(&mut store, name).ok_or_else(|| kit::missing(name));
        let (guest, books) = (memory(abi_exports::MEMORY)?, memory(abi_exports::BOOKS)?);
        let memories = (guest, books_of(books, &mut store));
        store.data_mut().memories = Some(memories);
        let exports = kit::Exports::find(
            instance.get_typed_func(&mut store, Export::Alloc.name()).ok(),
            instance.get_typed_func(&mut store, Export::Validate.name()).ok(),
            instance.get_typed_func(&mut store, Export::Migrate.name()).ok(),
            |e| instance.get_typed_func(&mut store, e.name()).ok(),
        )?;
        let (globals, tables) = self.shared.find(
            &mut store,
            |s, n| instance.get_global(&mut *s, n),
            |s, n| instance.get_table(&mut *s, n),
        )?;
        let engine = Wasmtime { store, memories, exports, globals, tables };
        Ok(kit::Instance::boxed(engine, &self.shared))
    }
}

/// The ABI exports as typed functions ([`kit::Exports`]).
type Exports = kit::Exports<TypedFunc<i32, i32>, TypedFunc<(i32, i32), i32>, TypedFunc<(), i32>, TypedFunc<(), ()>>;

/// One wasmtime store and instance.
struct Wasmtime {
    store: Store<StoreData>,
    /// The guest's memory and the books.
    memories: (Memory, Books),
    exports: Exports,
    globals: Vec<Global>,
    tables: Vec<Table>,
}

impl kit::Engine for Wasmtime {
    type Value = Val;
    type Element = Ref;

    fn call(&mut self, export: Export, args: &[i32]) -> Result<Option<i32>, CallError> {
        let (exports, store) = (&self.exports, &mut self.store);
        let result = exports.call(
            store,
            export,
            args,
            |f, s, len| f.call(s, len),
            |f, s, ptr, len| f.call(s, (ptr, len)),
            |f, s| f.call(s, ()),
            |f, s| f.call(s, ()),
        )?;
        result.map_err(|e| call_error(&self.store, e))
    }

    fn memories_and_env(&mut self) -> (Memories<'_>, &mut HostEnv) {
        lend(self.memories, &mut self.store)
    }

    fn env(&mut self) -> &mut HostEnv {
        &mut self.store.data_mut().env
    }

    fn books(&mut self) -> &mut [u8] {
        // SAFETY: the store is borrowed mutably for as long as the slice.
        unsafe { self.memories.1.bytes() }
    }

    fn grow(&mut self, pages: u64) -> Result<(), String> {
        self.memories.0.grow(&mut self.store, pages).map(drop).map_err(|e| format!("{e:#}"))
    }

    fn global(&mut self, index: usize) -> Val {
        self.globals[index].get(&mut self.store)
    }

    fn set_global(&mut self, index: usize, value: Val) -> Result<(), String> {
        self.globals[index].set(&mut self.store, value).map_err(|e| format!("{e:#}"))
    }

    fn table_len(&mut self, table: usize) -> u64 {
        self.tables[table].size(&self.store)
    }

    fn element(&mut self, table: usize, index: u64) -> Ref {
        self.tables[table].get(&mut self.store, index).expect("index below size")
    }

    fn set_element(&mut self, table: usize, index: u64, element: Ref) -> Result<(), String> {
        self.tables[table].set(&mut self.store, index, element).map_err(|e| format!("{e:#}"))
    }

    fn portable(value: &Val) -> Option<GlobalValue> {
        let float = |f: f32| GlobalValue::F32(f.to_bits());
        let double = |f: f64| GlobalValue::F64(f.to_bits());
        (value.i32().map(GlobalValue::I32).or(value.i64().map(GlobalValue::I64)))
            .or(value.f32().map(float).or(value.f64().map(double)))
    }
}
