//! [`ExecutorHost`] on wasmi 2, the interpreter.
//!
//! - **Compilation**: eager (`CompilationMode::Eager`), so every function
//!   is translated and checked at load, never lazily in the middle of a
//!   transaction.
//! - **Host imports**: thin closures that lend the guest memory and the
//!   store's [`HostEnv`] to `core`'s implementation.
//! - **Limits**: the store's resource limiter asks `core`
//!   ([`HostEnv::memory_growing`], [`HostEnv::table_growing`]), so growth past
//!   the limits traps as `out_of_memory` instead of returning -1 (a backstop:
//!   core's instrumentation decides it first). Fuel, the stack budget and
//!   NaN canonicalisation are core's instrumentation's; wasmi's fuel is off
//!   and its recursion depth and value stack are sized from the budget so
//!   they never fire first.
//! - **Blanking** (no pooling or copy-on-write in an interpreter): restore
//!   the post-`executor_init` image in place — the memory pages core's
//!   instrumentation marked dirty ([`MemoryImage`]), every mutable global
//!   (the prepared module exports even non-exported ones), and the tables
//!   only if a table instruction ran. Cost: what the transaction dirtied,
//!   plus a scan of one byte per 4 KiB of memory; never a re-instantiation
//!   or a re-run of `executor_init`. A memory or table that grew past the
//!   image cannot shrink, and a dropped segment cannot be revived: the
//!   driver rebuilds.
#![warn(missing_docs)]

use executor_core::instrument::{cost, engine_stack_bytes};
use executor_core::snapshot::{ImageCache, MemoryImage, Restore};
use executor_core::{
    BackendKind, Blanked, CallError, CompiledExecutor, Error, ExecutorHost, ExecutorInstance, Export, GlobalValue,
    HostEnv, InstanceMode, Limits, PreparedModule, Result, Trap, TrapCode, host,
};
use std::sync::Arc;
use wasmi::ResourceLimiter;
use wasmi::{Caller, CompilationMode, Config, Engine, Global, Instance, Linker, Memory, Module, Store, Table, Val};
use wasmi_core::LimiterError;

/// Store data: the host state plus a cached memory handle.
struct StoreData {
    env: HostEnv,
    memory: Option<Memory>,
}

impl ResourceLimiter for StoreData {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        self.env.memory_growing(desired as u64).map_err(|_| LimiterError::ResourceLimiterDeniedAllocation)?;
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> Result<bool, LimiterError> {
        self.env.table_growing(desired as u64).map_err(|_| LimiterError::ResourceLimiterDeniedAllocation)?;
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn memory_grow_failed(&mut self, _error: &wasmi::errors::MemoryError) -> Result<(), LimiterError> {
        self.env.grow_failed("memory", 0);
        Err(LimiterError::ResourceLimiterDeniedAllocation)
    }

    fn table_grow_failed(&mut self, _error: &wasmi::errors::TableError) -> Result<(), LimiterError> {
        self.env.grow_failed("table", 0);
        Err(LimiterError::ResourceLimiterDeniedAllocation)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        usize::MAX
    }

    fn memories(&self) -> usize {
        1
    }
}

/// The error our import closures return to make wasmi trap; what it means
/// is in the [`HostEnv`].
#[derive(Debug)]
struct HostAbort;

impl std::fmt::Display for HostAbort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("aborted by the executor host")
    }
}

impl wasmi::errors::HostError for HostAbort {}

/// The memory handle, cached after the first lookup (imports can run during
/// `start`, before the instance is returned).
fn memory_of(caller: &mut Caller<'_, StoreData>) -> Result<Memory, wasmi::Error> {
    if let Some(m) = caller.data().memory {
        return Ok(m);
    }
    let m = caller
        .get_export(executor_core::module::exports::MEMORY)
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmi::Error::new("executor has no memory export"))?;
    caller.data_mut().memory = Some(m);
    Ok(m)
}

fn abort(_: executor_core::Aborted) -> wasmi::Error {
    wasmi::Error::host(HostAbort)
}

fn linker(engine: &Engine) -> Result<Linker<StoreData>, wasmi::Error> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(
        host::MODULE,
        "state_get",
        |mut caller: Caller<'_, StoreData>, kp: i32, kl: i32, op: i32, oc: i32| -> Result<i32, wasmi::Error> {
            let memory = memory_of(&mut caller)?;
            let (mem, data) = memory.data_and_store_mut(&mut caller);
            host::state_get(&mut data.env, mem, kp, kl, op, oc).map_err(abort)
        },
    )?;
    linker.func_wrap(
        host::MODULE,
        "deny_reason",
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| -> Result<(), wasmi::Error> {
            let memory = memory_of(&mut caller)?;
            let (mem, data) = memory.data_and_store_mut(&mut caller);
            host::deny_reason(&mut data.env, mem, ptr, len).map_err(abort)
        },
    )?;
    linker.func_wrap(
        host::MODULE,
        "log",
        |mut caller: Caller<'_, StoreData>, level: i32, ptr: i32, len: i32| -> Result<(), wasmi::Error> {
            let memory = memory_of(&mut caller)?;
            let (mem, data) = memory.data_and_store_mut(&mut caller);
            host::log(&mut data.env, mem, level, ptr, len).map_err(abort)
        },
    )?;
    Ok(linker)
}

/// The wasmi backend, configured once from the [`Limits`].
pub struct WasmiHost {
    config: Config,
    limits: Limits,
}

impl WasmiHost {
    /// A backend enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        let mut config = Config::default();
        config
            .compilation_mode(CompilationMode::Eager)
            .consume_fuel(false)
            // Every frame costs at least `FRAME_BASE` model bytes, so the
            // budget allows at most `max_stack / FRAME_BASE` nested calls.
            .set_max_recursion_depth((limits.max_stack / cost::FRAME_BASE) as usize + 64)
            .set_max_stack_height(engine_stack_bytes(limits.max_stack) as usize)
            // The ABI's feature set; core has already refused the rest.
            .wasm_multi_memory(false)
            .wasm_tail_call(false)
            .wasm_extended_const(false)
            .wasm_custom_page_sizes(false)
            .wasm_wide_arithmetic(false);
        WasmiHost { config, limits }
    }
}

/// This backend with the given limits, as `core` takes it.
pub fn host(limits: Limits) -> Arc<dyn ExecutorHost> {
    Arc::new(WasmiHost::new(limits))
}

impl ExecutorHost for WasmiHost {
    fn kind(&self) -> BackendKind {
        BackendKind::Wasmi
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn compile(&self, module: &PreparedModule) -> Result<Arc<dyn CompiledExecutor>> {
        let compile_error = |e: wasmi::Error| Error::Compile { backend: BackendKind::Wasmi, message: e.to_string() };
        // An engine per module: a wasmi engine keeps the compiled code of
        // every module it compiled until it is dropped, so a shared engine
        // grows by each upgrade forever (measured: 14 → 58 MiB over 1,000
        // upgrades of the default executor; flat with an engine per module).
        let engine = Engine::new(&self.config);
        let wasm = Module::new(&engine, &module.wasm[..]).map_err(compile_error)?;
        let linker = linker(&engine).map_err(compile_error)?;
        Ok(Arc::new(WasmiCompiled {
            engine,
            module: wasm,
            linker,
            globals: module.info.globals.iter().map(|g| g.export.clone()).collect(),
            tables: module.info.tables.clone(),
            image: ImageCache::new(),
        }))
    }
}

struct WasmiCompiled {
    engine: Engine,
    module: Module,
    linker: Linker<StoreData>,
    globals: Vec<String>,
    tables: Vec<String>,
    /// The blank memory image, shared by all instances.
    image: ImageCache,
}

/// Translates a wasmi error: our aborts and the ABI's trap codes are guest
/// outcomes; anything else is a host failure.
fn call_error(store: &Store<StoreData>, e: wasmi::Error) -> CallError {
    if store.data().env.abort().is_some() || e.downcast_ref::<HostAbort>().is_some() {
        return Trap::Aborted.into();
    }
    use wasmi::TrapCode as W;
    let trap = match e.as_trap_code() {
        Some(W::UnreachableCodeReached) => Trap::Wasm(TrapCode::Unreachable),
        Some(W::MemoryOutOfBounds) => Trap::Wasm(TrapCode::MemoryOutOfBounds),
        Some(W::TableOutOfBounds) => Trap::Wasm(TrapCode::TableOutOfBounds),
        Some(W::IndirectCallToNull) => Trap::Wasm(TrapCode::IndirectCallToNull),
        Some(W::IntegerDivisionByZero) => Trap::Wasm(TrapCode::IntegerDivisionByZero),
        Some(W::IntegerOverflow) => Trap::Wasm(TrapCode::IntegerOverflow),
        Some(W::BadConversionToInteger) => Trap::Wasm(TrapCode::BadConversionToInteger),
        Some(W::BadSignature) => Trap::Wasm(TrapCode::BadSignature),
        Some(W::StackOverflow) => Trap::StackOverflow,
        Some(W::OutOfFuel) => Trap::OutOfFuel,
        _ => return CallError::Host(format!("wasmi: {e}")),
    };
    trap.into()
}

impl CompiledExecutor for WasmiCompiled {
    fn instantiate(&self, env: HostEnv, _mode: InstanceMode) -> Result<Box<dyn ExecutorInstance>, CallError> {
        // wasmi has no pooling or pre-instantiation: both modes build the
        // same way; only `Reusable` instances are later snapshotted.
        let mut store = Store::new(&self.engine, StoreData { env, memory: None });
        store.limiter(|data| data as &mut dyn ResourceLimiter);
        let instance = match self.linker.instantiate_and_start(&mut store, &self.module) {
            Ok(i) => i,
            Err(e) => return Err(call_error(&store, e)),
        };
        let host_error = |what: &str| CallError::Host(format!("prepared module lacks {what}"));
        let memory =
            instance.get_memory(&store, executor_core::module::exports::MEMORY).ok_or_else(|| host_error("memory"))?;
        store.data_mut().memory = Some(memory);
        let func = |name: &str| instance.get_func(&store, name);
        let funcs =
            [Export::Alloc, Export::Validate, Export::Init, Export::Migrate, Export::Start].map(|e| func(e.name()));
        let globals = self
            .globals
            .iter()
            .map(|name| instance.get_global(&store, name).ok_or_else(|| host_error(name)))
            .collect::<Result<Vec<_>, _>>()?;
        let tables = self
            .tables
            .iter()
            .map(|name| instance.get_table(&store, name).ok_or_else(|| host_error(name)))
            .collect::<Result<Vec<_>, _>>()?;
        let image = self.image.clone();
        Ok(Box::new(WasmiInstance { store, _instance: instance, memory, funcs, globals, tables, image, blank: None }))
    }
}

/// The blank state of one instance.
struct BlankState {
    memory: Arc<MemoryImage>,
    globals: Vec<Val>,
    tables: Vec<Vec<wasmi::Ref>>,
}

struct WasmiInstance {
    store: Store<StoreData>,
    _instance: Instance,
    memory: Memory,
    /// Indexed like [`Export`]: alloc, validate, init, migrate, start.
    funcs: [Option<wasmi::Func>; 5],
    globals: Vec<Global>,
    tables: Vec<Table>,
    image: ImageCache,
    blank: Option<BlankState>,
}

impl ExecutorInstance for WasmiInstance {
    fn call(&mut self, export: Export, args: &[i32]) -> Result<Option<i32>, CallError> {
        let idx = match export {
            Export::Alloc => 0,
            Export::Validate => 1,
            Export::Init => 2,
            Export::Migrate => 3,
            Export::Start => 4,
        };
        let func = self.funcs[idx].ok_or_else(|| CallError::Host(format!("no export {}", export.name())))?;
        let params: Vec<Val> = args.iter().map(|a| Val::I32(*a)).collect();
        let mut results = [Val::I32(0)];
        let n_results = func.ty(&self.store).results().len();
        match func.call(&mut self.store, &params, &mut results[..n_results]) {
            Ok(()) => Ok((n_results == 1).then(|| results[0].i32()).flatten()),
            Err(e) => Err(call_error(&self.store, e)),
        }
    }

    fn env(&mut self) -> &mut HostEnv {
        &mut self.store.data_mut().env
    }

    fn memory(&mut self) -> &mut [u8] {
        self.memory.data_mut(&mut self.store)
    }

    fn mark_blank(&mut self) -> Result<(), CallError> {
        let layout = self.store.data().env.layout();
        let store = &self.store;
        let tables = self
            .tables
            .iter()
            .map(|t| (0..t.size(store)).map(|i| t.get(store, i).expect("index below size")).collect())
            .collect();
        let globals = self.globals.iter().map(|g| g.get(store)).collect();
        let memory = self.image.adopt(layout, self.memory.data_mut(&mut self.store));
        self.blank = Some(BlankState { memory, globals, tables });
        Ok(())
    }

    fn blank(&mut self) -> Result<Blanked, CallError> {
        let blank = self.blank.as_ref().ok_or_else(|| CallError::Host("blank() before mark_blank()".into()))?;
        let host = |e: &dyn std::fmt::Display| CallError::Host(format!("wasmi blank: {e}"));
        let (memory, data) = self.memory.data_and_store_mut(&mut self.store);
        let Restore::Done { tables_dirty, .. } = blank.memory.restore(memory, data.env.take_host_writes()) else {
            return Ok(Blanked::NeedsRebuild);
        };
        for (g, v) in self.globals.iter().zip(&blank.globals) {
            g.set(&mut self.store, v.clone()).map_err(|e| host(&e))?;
        }
        if tables_dirty {
            for (t, elems) in self.tables.iter().zip(&blank.tables) {
                if t.size(&self.store) != elems.len() as u64 {
                    return Ok(Blanked::NeedsRebuild);
                }
                for (i, e) in elems.iter().enumerate() {
                    t.set(&mut self.store, i as u64, *e).map_err(|e| host(&e))?;
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
            .map(|g| match g.get(&self.store) {
                Val::I32(v) => Some(GlobalValue::I32(v)),
                Val::I64(v) => Some(GlobalValue::I64(v)),
                Val::F32(v) => Some(GlobalValue::F32(v.to_bits())),
                Val::F64(v) => Some(GlobalValue::F64(v.to_bits())),
                _ => None,
            })
            .collect())
    }

    fn set_global_values(&mut self, values: &[GlobalValue]) -> Result<(), CallError> {
        for (g, v) in GlobalValue::pair(&self.globals, values)? {
            let v = match v {
                GlobalValue::I32(v) => Val::I32(v),
                GlobalValue::I64(v) => Val::I64(v),
                GlobalValue::F32(v) => Val::F32(wasmi::F32::from_bits(v)),
                GlobalValue::F64(v) => Val::F64(wasmi::F64::from_bits(v)),
            };
            g.set(&mut self.store, v).map_err(|e| CallError::Host(format!("wasmi global: {e}")))?;
        }
        Ok(())
    }

    fn grow_memory(&mut self, pages: u64) -> Result<(), CallError> {
        self.memory.grow(&mut self.store, pages).map(drop).map_err(|e| CallError::Host(format!("wasmi grow: {e}")))
    }
}
