//! [`ExecutorHost`] on wasmer 7 (`sys`, singlepass compiler).
//!
//! wasmer has no pooling allocator, no `InstancePre` and no resource
//! limiter, so this backend leans on what `core` does for every engine:
//!
//! - **Limits**: core's instrumentation guards every `memory.grow` and
//!   `table.grow` (wasmer's `memory.grow` returns -1 whatever its tunables
//!   say; the guard traps as `out_of_memory` first). The [`BoundedTunables`]
//!   cap every memory's declared maximum at the limit (plus core's reserved
//!   pages) and keep wasmer's *static* style. Measured alternative: the
//!   *dynamic* style reserves only what a memory needs, but copies the whole
//!   memory on every growth past its reservation — an executor growing one
//!   page at a time to 64 MiB then costs minutes (quadratic), a denial of
//!   service. The static style reserves 8 GiB of *address space* (not
//!   memory) per live memory; the driver drops a store before building the
//!   next instance, so only a handful are ever reserved at once.
//! - **Fuel, stack, NaNs**: core's instrumentation's, the same on every
//!   engine; no metering middleware (it would meter twice). Singlepass runs wasm on its own coroutine stack, whose size the
//!   tunables set per store to [`engine_stack_bytes`] of the budget — a
//!   backstop that never fires first.
//! - **Blanking**: the same in-place restore as the other backends — the
//!   pages core's dirty map marks, the exact host writes, every mutable
//!   global, and the tables only when a table instruction ran. Cost: what
//!   the transaction dirtied. Memory that grew, or a dropped segment, makes
//!   the driver rebuild (a new `Store`).
#![warn(missing_docs)]

use executor_core::instrument::{Layout, engine_stack_bytes};
use executor_core::snapshot::{ImageCache, MemoryImage, Restore};
use executor_core::{
    BackendKind, Blanked, CallError, CompiledExecutor, Error, ExecutorHost, ExecutorInstance, Export, GlobalValue,
    HostEnv, InstanceMode, Limits, PreparedModule, Result, Trap, TrapCode, host,
};
use std::ptr::NonNull;
use std::sync::Arc;
use wasmer::sys::vm::{
    MemoryError, MemoryStyle, TableStyle, VMConfig, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition,
};
use wasmer::sys::{BaseTunables, EngineBuilder, NativeEngineExt, Singlepass, Tunables};
use wasmer::{
    Engine, Function, FunctionEnv, FunctionEnvMut, Global, Instance, Memory, MemoryType, Module, Pages, RuntimeError,
    Store, Table, TableType, TypedFunction, Value, imports,
};

/// Tunables that cap every memory's maximum at the limit and size the wasm
/// stack from the stack budget.
pub struct BoundedTunables {
    base: BaseTunables,
    max_pages: Pages,
    vm: VMConfig,
}

impl BoundedTunables {
    fn bounded(&self, ty: &MemoryType) -> MemoryType {
        let mut ty = *ty;
        ty.maximum = Some(ty.maximum.map_or(self.max_pages, |m| m.min(self.max_pages)));
        ty
    }
}

impl Tunables for BoundedTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn vmconfig(&self) -> &VMConfig {
        &self.vm
    }

    fn create_host_memory(&self, ty: &MemoryType, style: &MemoryStyle) -> Result<VMMemory, MemoryError> {
        self.base.create_host_memory(&self.bounded(ty), style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        // SAFETY: forwarded unchanged but for a smaller maximum.
        unsafe { self.base.create_vm_memory(&self.bounded(ty), style, vm_definition_location) }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: forwarded unchanged.
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }
}

/// Host state of one instance.
struct StoreData {
    env: HostEnv,
    memory: Option<Memory>,
}

/// The error our imports return to make wasmer trap; what it means is in
/// the [`HostEnv`].
#[derive(Debug)]
struct HostAbort;

impl std::fmt::Display for HostAbort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("aborted by the executor host")
    }
}

impl std::error::Error for HostAbort {}

fn abort(_: executor_core::Aborted) -> RuntimeError {
    RuntimeError::user(Box::new(HostAbort))
}

/// Lends the guest memory and the host state to `f`.
fn with_memory<R>(
    env: &mut FunctionEnvMut<'_, StoreData>,
    f: impl FnOnce(&mut HostEnv, &mut [u8]) -> Result<R, executor_core::Aborted>,
) -> Result<R, RuntimeError> {
    let (data, store) = env.data_and_store_mut();
    let memory = data.memory.clone().ok_or_else(|| RuntimeError::new("executor memory not attached"))?;
    let view = memory.view(&store);
    // SAFETY: no other reference to this memory's bytes exists while a host
    // function runs (the guest is suspended in the call).
    let bytes = unsafe { view.data_unchecked_mut() };
    f(&mut data.env, bytes).map_err(abort)
}

/// The wasmer backend, configured once from the [`Limits`].
pub struct WasmerHost {
    limits: Limits,
}

impl WasmerHost {
    /// A backend enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        WasmerHost { limits }
    }

    /// A new engine: singlepass, capped tunables. One per compiled module:
    /// a wasmer engine keeps the code of every module it compiled until the
    /// engine itself is dropped, so a shared engine grows by each upgrade's
    /// code forever (the leak test measured 42 MiB over 1,000 loads; with
    /// an engine per module, RSS stays flat).
    fn engine(&self) -> Engine {
        let mut engine: Engine = EngineBuilder::new(Singlepass::new()).engine().into();
        let layout = Layout::for_limit(self.limits.memory_bytes);
        let max_pages = Pages((self.limits.memory_pages() + layout.reserved_pages()).min(65536) as u32);
        let vm = VMConfig { wasm_stack_size: Some(engine_stack_bytes(self.limits.max_stack) as usize) };
        engine.set_tunables(BoundedTunables { base: BaseTunables::new(), max_pages, vm });
        engine
    }
}

/// This backend with the given limits, as `core` takes it.
pub fn host(limits: Limits) -> Arc<dyn ExecutorHost> {
    Arc::new(WasmerHost::new(limits))
}

impl ExecutorHost for WasmerHost {
    fn kind(&self) -> BackendKind {
        BackendKind::Wasmer
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn compile(&self, module: &PreparedModule) -> Result<Arc<dyn CompiledExecutor>> {
        let engine = self.engine();
        let compiled = Module::new(&engine, &module.wasm).map_err(compile_error)?;
        Ok(wrap(module, engine, compiled))
    }

    /// wasmer's version (pinned exactly in the workspace), the compiler,
    /// the target with its CPU features, and our tunables.
    fn artifact_fingerprint(&self) -> Option<String> {
        let layout = Layout::for_limit(self.limits.memory_bytes);
        // Code is compiled for this machine's CPU features: a cache copied
        // to a machine with others must miss.
        let target = wasmer::sys::Target::default();
        Some(format!(
            "wasmer {WASMER_VERSION} singlepass, {} {:?}, max pages {}, stack {}",
            target.triple(),
            target.cpu_features(),
            (self.limits.memory_pages() + layout.reserved_pages()).min(65536),
            engine_stack_bytes(self.limits.max_stack)
        ))
    }

    unsafe fn load_artifact(&self, module: &PreparedModule, artifact: &[u8]) -> Result<Arc<dyn CompiledExecutor>> {
        let engine = self.engine();
        // SAFETY: the caller guarantees these are bytes `serialize` made on
        // a host with our fingerprint; wasmer checks its own header too.
        let compiled = unsafe { Module::deserialize(&engine, artifact.to_vec()) }
            .map_err(|e| Error::Compile { backend: BackendKind::Wasmer, message: e.to_string() })?;
        Ok(wrap(module, engine, compiled))
    }
}

/// The wasmer version this backend is built against (the workspace pins it
/// with `=`; a test checks this against `Cargo.lock`). Part of the cache key.
pub const WASMER_VERSION: &str = "7.4.2";

fn compile_error(e: wasmer::CompileError) -> Error {
    Error::Compile { backend: BackendKind::Wasmer, message: e.to_string() }
}

/// The executor around a compiled (or deserialised) module and its engine.
fn wrap(module: &PreparedModule, engine: Engine, compiled: Module) -> Arc<dyn CompiledExecutor> {
    Arc::new(WasmerCompiled {
        engine,
        module: compiled,
        globals: module.info.globals.iter().map(|g| g.export.clone()).collect(),
        tables: module.info.tables.clone(),
        image: ImageCache::new(),
    })
}

struct WasmerCompiled {
    engine: Engine,
    module: Module,
    globals: Vec<String>,
    tables: Vec<String>,
    image: ImageCache,
}

/// Translates a wasmer error: our aborts and the ABI's trap codes are guest
/// outcomes; anything else is a host failure.
fn call_error(store: &mut Store, fenv: &FunctionEnv<StoreData>, e: RuntimeError) -> CallError {
    if fenv.as_ref(store).env.abort().is_some() || e.is::<HostAbort>() {
        return Trap::Aborted.into();
    }
    use wasmer_types::TrapCode as W;
    let message = e.to_string();
    let trap = match e.to_trap() {
        Some(W::UnreachableCodeReached) => Trap::Wasm(TrapCode::Unreachable),
        Some(W::HeapAccessOutOfBounds) => Trap::Wasm(TrapCode::MemoryOutOfBounds),
        Some(W::TableAccessOutOfBounds) => Trap::Wasm(TrapCode::TableOutOfBounds),
        Some(W::IndirectCallToNull) => Trap::Wasm(TrapCode::IndirectCallToNull),
        Some(W::BadSignature) => Trap::Wasm(TrapCode::BadSignature),
        Some(W::IntegerOverflow) => Trap::Wasm(TrapCode::IntegerOverflow),
        Some(W::IntegerDivisionByZero) => Trap::Wasm(TrapCode::IntegerDivisionByZero),
        Some(W::BadConversionToInteger) => Trap::Wasm(TrapCode::BadConversionToInteger),
        Some(W::StackOverflow) => Trap::StackOverflow,
        _ => return CallError::Host(format!("wasmer: {message}")),
    };
    trap.into()
}

impl CompiledExecutor for WasmerCompiled {
    fn serialize(&self) -> Option<std::result::Result<Vec<u8>, String>> {
        Some(self.module.serialize().map(|b| b.to_vec()).map_err(|e| e.to_string()))
    }

    fn instantiate(&self, env: HostEnv, _mode: InstanceMode) -> Result<Box<dyn ExecutorInstance>, CallError> {
        // wasmer has no pooling or pre-instantiation: both modes build the
        // same way, in a new store; only `Reusable` ones are snapshotted.
        let mut store = Store::new(self.engine.clone());
        let fenv = FunctionEnv::new(&mut store, StoreData { env, memory: None });
        let state_get = Function::new_typed_with_env(
            &mut store,
            &fenv,
            |mut env: FunctionEnvMut<'_, StoreData>, kp: i32, kl: i32, op: i32, oc: i32| {
                with_memory(&mut env, |host_env, mem| host::state_get(host_env, mem, kp, kl, op, oc))
            },
        );
        let deny_reason = Function::new_typed_with_env(
            &mut store,
            &fenv,
            |mut env: FunctionEnvMut<'_, StoreData>, ptr: i32, len: i32| {
                with_memory(&mut env, |host_env, mem| host::deny_reason(host_env, mem, ptr, len))
            },
        );
        let log = Function::new_typed_with_env(
            &mut store,
            &fenv,
            |mut env: FunctionEnvMut<'_, StoreData>, level: i32, ptr: i32, len: i32| {
                with_memory(&mut env, |host_env, mem| host::log(host_env, mem, level, ptr, len))
            },
        );
        let imports = imports! {
            host::MODULE => { "state_get" => state_get, "deny_reason" => deny_reason, "log" => log },
        };
        let instance = match Instance::new(&mut store, &self.module, &imports) {
            Ok(i) => i,
            // The prepared module has no start section: what wasmer reports
            // as a start trap is the data/element segment initialisation.
            Err(wasmer::InstantiationError::Start(e)) => {
                let message = e.to_string();
                return Err(match e.to_trap() {
                    Some(wasmer_types::TrapCode::HeapAccessOutOfBounds) => {
                        Trap::Wasm(TrapCode::MemoryOutOfBounds).into()
                    }
                    Some(wasmer_types::TrapCode::TableAccessOutOfBounds) => {
                        Trap::Wasm(TrapCode::TableOutOfBounds).into()
                    }
                    _ => CallError::Host(format!("wasmer: instantiation: {message}")),
                });
            }
            Err(e) => return Err(CallError::Host(format!("wasmer: {e}"))),
        };
        let host_error = |what: &str| CallError::Host(format!("prepared module lacks {what}"));
        let memory = instance
            .exports
            .get_memory(executor_core::module::exports::MEMORY)
            .map_err(|_| host_error("memory"))?
            .clone();
        fenv.as_mut(&mut store).memory = Some(memory.clone());
        let exports = &instance.exports;
        let funcs = Funcs {
            alloc: exports
                .get_typed_function(&store, Export::Alloc.name())
                .map_err(|_| host_error("executor_alloc"))?,
            validate: exports
                .get_typed_function(&store, Export::Validate.name())
                .map_err(|_| host_error("executor_validate"))?,
            init: exports.get_typed_function(&store, Export::Init.name()).ok(),
            migrate: exports.get_typed_function(&store, Export::Migrate.name()).ok(),
            start: exports.get_typed_function(&store, Export::Start.name()).ok(),
        };
        let globals = self
            .globals
            .iter()
            .map(|n| exports.get_global(n).cloned().map_err(|_| host_error(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let tables = self
            .tables
            .iter()
            .map(|n| exports.get_table(n).cloned().map_err(|_| host_error(n)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(WasmerInstance {
            store,
            fenv,
            _instance: instance,
            memory,
            funcs,
            globals,
            tables,
            image: self.image.clone(),
            blank: None,
            writes: Vec::new(),
        }))
    }
}

/// The ABI exports, typed.
struct Funcs {
    alloc: TypedFunction<i32, i32>,
    validate: TypedFunction<(i32, i32), i32>,
    init: Option<TypedFunction<(), ()>>,
    migrate: Option<TypedFunction<(), i32>>,
    start: Option<TypedFunction<(), ()>>,
}

/// The blank state of one instance.
struct BlankState {
    memory: Arc<MemoryImage>,
    globals: Vec<Value>,
    tables: Vec<Vec<Value>>,
}

struct WasmerInstance {
    store: Store,
    fenv: FunctionEnv<StoreData>,
    _instance: Instance,
    memory: Memory,
    funcs: Funcs,
    globals: Vec<Global>,
    tables: Vec<Table>,
    image: ImageCache,
    blank: Option<BlankState>,
    writes: Vec<(u32, u32)>,
}

impl WasmerInstance {
    fn bytes(&mut self) -> &mut [u8] {
        let view = self.memory.view(&self.store);
        let (ptr, len) = (view.data_ptr(), view.data_size() as usize);
        // SAFETY: the guest is not running (we hold the store mutably), the
        // memory cannot grow or move while `self` is borrowed, and the slice
        // does not outlive that borrow.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }
}

// SAFETY: a wasmer `Store` and everything in it may be sent between threads
// (wasmer's `Store` is `Send`); the instance is only ever used by one thread
// at a time through `&mut self`.
unsafe impl Send for WasmerInstance {}

impl ExecutorInstance for WasmerInstance {
    fn call(&mut self, export: Export, args: &[i32]) -> Result<Option<i32>, CallError> {
        let missing = || CallError::Host(format!("no export {} or wrong arguments", export.name()));
        let store = &mut self.store;
        let result = match (export, args) {
            (Export::Alloc, &[len]) => self.funcs.alloc.call(store, len).map(Some),
            (Export::Validate, &[ptr, len]) => self.funcs.validate.call(store, ptr, len).map(Some),
            (Export::Init, &[]) => self.funcs.init.as_ref().ok_or_else(missing)?.call(store).map(|()| None),
            (Export::Migrate, &[]) => self.funcs.migrate.as_ref().ok_or_else(missing)?.call(store).map(Some),
            (Export::Start, &[]) => self.funcs.start.as_ref().ok_or_else(missing)?.call(store).map(|()| None),
            _ => return Err(missing()),
        };
        result.map_err(|e| call_error(&mut self.store, &self.fenv, e))
    }

    fn env(&mut self) -> &mut HostEnv {
        &mut self.fenv.as_mut(&mut self.store).env
    }

    fn memory(&mut self) -> &mut [u8] {
        self.bytes()
    }

    fn mark_blank(&mut self) -> Result<(), CallError> {
        let layout = self.fenv.as_ref(&self.store).env.layout();
        let mut tables = Vec::with_capacity(self.tables.len());
        for t in &self.tables {
            let size = t.size(&self.store);
            tables.push((0..size).map(|i| t.get(&mut self.store, i).expect("index below size")).collect());
        }
        let globals = self.globals.iter().map(|g| g.get(&mut self.store)).collect();
        let image = self.image.clone();
        let memory = image.adopt(layout, self.bytes());
        self.blank = Some(BlankState { memory, globals, tables });
        Ok(())
    }

    fn blank(&mut self) -> Result<Blanked, CallError> {
        let Some(blank) = self.blank.take() else {
            return Err(CallError::Host("blank() before mark_blank()".into()));
        };
        let result = self.restore(&blank);
        self.blank = Some(blank);
        result
    }

    fn memory_size(&mut self) -> u64 {
        self.memory.view(&self.store).data_size()
    }

    fn global_values(&mut self) -> Result<Option<Vec<GlobalValue>>, CallError> {
        Ok(self
            .globals
            .iter()
            .map(|g| match g.get(&mut self.store) {
                Value::I32(v) => Some(GlobalValue::I32(v)),
                Value::I64(v) => Some(GlobalValue::I64(v)),
                Value::F32(v) => Some(GlobalValue::F32(v.to_bits())),
                Value::F64(v) => Some(GlobalValue::F64(v.to_bits())),
                _ => None,
            })
            .collect())
    }

    fn set_global_values(&mut self, values: &[GlobalValue]) -> Result<(), CallError> {
        for (g, v) in GlobalValue::pair(&self.globals, values)? {
            let v = match v {
                GlobalValue::I32(v) => Value::I32(v),
                GlobalValue::I64(v) => Value::I64(v),
                GlobalValue::F32(v) => Value::F32(f32::from_bits(v)),
                GlobalValue::F64(v) => Value::F64(f64::from_bits(v)),
            };
            g.set(&mut self.store, v).map_err(|e| CallError::Host(format!("wasmer global: {e}")))?;
        }
        Ok(())
    }

    fn grow_memory(&mut self, pages: u64) -> Result<(), CallError> {
        let pages = u32::try_from(pages).map_err(|_| CallError::Host(format!("cannot grow by {pages} pages")))?;
        self.memory
            .grow(&mut self.store, Pages(pages))
            .map(drop)
            .map_err(|e| CallError::Host(format!("wasmer grow: {e}")))
    }
}

impl WasmerInstance {
    fn restore(&mut self, blank: &BlankState) -> Result<Blanked, CallError> {
        let host = |e: RuntimeError| CallError::Host(format!("wasmer blank: {e}"));
        // A buffer kept across blanks: an allocation per blank would cost
        // as much as the restore itself.
        let mut writes = std::mem::take(&mut self.writes);
        writes.clear();
        writes.extend(self.fenv.as_mut(&mut self.store).env.take_host_writes());
        let restored = blank.memory.restore(self.bytes(), writes.iter().copied());
        self.writes = writes;
        let Restore::Done { tables_dirty, .. } = restored else {
            return Ok(Blanked::NeedsRebuild);
        };
        for (g, v) in self.globals.iter().zip(&blank.globals) {
            g.set(&mut self.store, v.clone()).map_err(host)?;
        }
        if tables_dirty {
            for (t, elems) in self.tables.iter().zip(&blank.tables) {
                if t.size(&self.store) as usize != elems.len() {
                    return Ok(Blanked::NeedsRebuild);
                }
                for (i, e) in elems.iter().enumerate() {
                    t.set(&mut self.store, i as u32, e.clone()).map_err(host)?;
                }
            }
        }
        Ok(Blanked::Restored)
    }
}
