//! [`ExecutorHost`] on wasmer 7 (`sys`, singlepass): its configuration,
//! import glue, trap table and serialisation (what all engines share —
//! blanking, global values, host-side growth — is core's [`kit`]).
//!
//! - **Limits**: wasmer has no resource limiter and its `memory.grow`
//!   returns -1 whatever its tunables say: core's instrumentation guards
//!   every growth (and declares each memory's maximum at the limit).
//!   Memories keep wasmer's *static* style: the measured alternative, the
//!   *dynamic* style, copies the whole memory on every growth past its
//!   reservation (growing a page at a time to 64 MiB then costs minutes).
//!   Static reserves 8 GiB of address space per live memory; a store is
//!   dropped before the next instance is built.
//! - **Stack**: singlepass runs wasm on its own stack, sized per store to
//!   [`engine_stack_bytes`] of the budget (a backstop that never fires
//!   first); fuel and NaNs are core's instrumentation's.
//! - **Builds**: no pooling or `InstancePre`: a new `Store` and instance.
//! - **Per transaction**: the guest's memory is read from its definition
//!   in the instance and the host state through a shared pointer, not
//!   through wasmer's store lookups (`Guest`, `EnvPtr`): on a
//!   microsecond transaction those lookups were the driver's largest cost.
#![warn(missing_docs)]

use executor_core::instrument::engine_stack_bytes;
use executor_core::kit::{self, Books, Shared};
use executor_core::module::exports as abi_exports;
use executor_core::{
    CallError, CompiledExecutor, Error, ExecutorHost, ExecutorInstance, Export, GlobalValue, HostEnv, HostInfo,
    InstanceMode, Limits, Memories, PreparedModule, Result, host,
};
use std::ptr::NonNull;
use std::sync::Arc;
use wasmer::sys::vm::{
    MemoryError, MemoryStyle, TableStyle, VMConfig, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition,
};
use wasmer::sys::{BaseTunables, EngineBuilder, Features, NativeEngineExt, Singlepass, Tunables};
use wasmer::{
    Engine, Function, FunctionEnv, FunctionEnvMut, Global, Imports, Instance, Memory, MemoryType, Module, Pages,
    RuntimeError, Store, Table, TableType, TypedFunction, Value,
};

const NAME: &str = "wasmer";

/// wasmer's tunables with the wasm stack sized from the stack budget.
/// (Memories need no cap here: core's instrumentation declares each
/// memory's maximum at the limit, which wasmer honours.)
pub struct StackTunables {
    base: BaseTunables,
    vm: VMConfig,
}

impl Tunables for StackTunables {
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
        self.base.create_host_memory(ty, style)
    }

    /// Also notes where the instance keeps the memory's definition, for
    /// [`Guest`].
    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        at: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        DEFINITIONS.with_borrow_mut(|d| d.push(at));
        // SAFETY: forwarded unchanged.
        unsafe { self.base.create_vm_memory(ty, style, at) }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        at: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: forwarded unchanged.
        unsafe { self.base.create_vm_table(ty, style, at) }
    }
}

thread_local! {
    /// Where wasmer put the definitions of the memories of the instance
    /// being built on this thread, in index order
    /// ([`StackTunables::create_vm_memory`] notes each; `instantiate`
    /// takes them and checks them against wasmer's own view).
    static DEFINITIONS: std::cell::RefCell<Vec<NonNull<VMMemoryDefinition>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The guest's memory, read from its definition in the instance — its
/// base and current length, which wasmer keeps up to date as it grows.
/// A `MemoryView` costs two store lookups and two dynamic calls, and
/// the guest's memory is lent about seven times per transaction (every
/// host call, the payload copy, the blank, the size check): callgrind
/// counted 440 instructions of a 10,000-instruction transaction.
#[derive(Clone, Copy)]
struct Guest(NonNull<VMMemoryDefinition>);

// SAFETY: a pointer into one instance's context, dereferenced only by
// whoever holds its store exclusively (see `Guest::bytes`).
unsafe impl Send for Guest {}

impl Guest {
    /// The definition noted for `memory` if it describes the bytes
    /// wasmer's own view of `memory` shows; else a host failure (a wasmer
    /// that builds instances differently: the pinned version is tested).
    fn find(noted: Option<NonNull<VMMemoryDefinition>>, memory: &Memory, store: &Store) -> Result<Self, CallError> {
        let view = memory.view(store);
        let noted = noted.filter(|at| {
            // SAFETY: wasmer passed this location to `create_vm_memory`
            // while building the instance `store` now holds.
            let definition = unsafe { at.as_ref() };
            definition.base == view.data_ptr() && definition.current_length as u64 == view.data_size()
        });
        noted
            .map(Guest)
            .ok_or_else(|| CallError::Host("wasmer: a memory's definition is not where it was built".into()))
    }

    /// The memory's bytes, as large as it is now.
    ///
    /// # Safety
    ///
    /// The caller must hold the store exclusively for as long as the slice
    /// lives (so no guest code runs and the memory cannot grow or move),
    /// and lend no other slice of the same memory meanwhile.
    unsafe fn bytes<'a>(self) -> &'a mut [u8] {
        // SAFETY: the definition lives in the instance, which the store
        // keeps as long as this backend's `Wasmer` lives.
        let definition = unsafe { self.0.as_ref() };
        if definition.current_length == 0 {
            return &mut [];
        }
        // SAFETY: as the caller promises; wasmer keeps `base` and
        // `current_length` describing the accessible bytes.
        unsafe { std::slice::from_raw_parts_mut(definition.base, definition.current_length) }
    }
}

/// Store data: the host state and the two memories, the guest's and the
/// books (attached right after
/// instantiation: the prepared module has no start section).
struct StoreData {
    env: EnvPtr,
    memories: Option<(Guest, Books)>,
}

/// The instance's [`HostEnv`], on the heap where both the host functions
/// (through the store data) and the instance reach it by pointer: wasmer
/// finds a `FunctionEnv`'s data by a store lookup and a type check, and
/// the driver reaches the host state about ten times per transaction
/// (callgrind: 200 instructions of a 10,000-instruction transaction).
#[derive(Clone, Copy)]
struct EnvPtr(NonNull<HostEnv>);

// SAFETY: a pointer to a `HostEnv` (which is `Send`) that one instance owns
// and only its holder of the store dereferences (see `EnvPtr::get`).
unsafe impl Send for EnvPtr {}

impl EnvPtr {
    /// The host state.
    ///
    /// # Safety
    ///
    /// The caller must hold the store exclusively for as long as the
    /// reference lives and lend no other reference to it meanwhile: the
    /// instance outside guest calls, a host function during one (the
    /// instance is then inside `call` and does not touch it). The pointer
    /// must come from a live [`EnvBox`].
    unsafe fn get<'a>(self) -> &'a mut HostEnv {
        // SAFETY: as the caller promises.
        unsafe { &mut *self.0.as_ptr() }
    }
}

/// Owns the host state behind an [`EnvPtr`]; dropped after the store
/// (field order in [`Wasmer`]), so no host function outlives it.
struct EnvBox(EnvPtr);

impl EnvBox {
    fn new(env: HostEnv) -> Self {
        EnvBox(EnvPtr(NonNull::from(Box::leak(Box::new(env)))))
    }
}

impl Drop for EnvBox {
    fn drop(&mut self) {
        // SAFETY: made by `Box::leak` in `new`, freed only here.
        drop(unsafe { Box::from_raw(self.0.0.as_ptr()) });
    }
}

/// The books of `memory` (see [`kit::Books`]: a wasmer memory view costs
/// two store lookups).
fn books_of(memory: &Memory, store: &impl wasmer::AsStoreRef) -> Books {
    let view = memory.view(store);
    // SAFETY: the books memory never grows (its maximum is its size), so
    // its bytes stay where they are while the store lives.
    unsafe { Books::new(view.data_ptr(), view.data_size() as usize) }
}

/// Adds one wasmer function per host import of core's list, lending it
/// the guest memory and the host state.
macro_rules! register {
    ($imports:ident, $store:ident, $fenv:ident; $($name:ident($($arg:ident),*) -> $result:ty;)*) => {$(
        let f = Function::new_typed_with_env(&mut $store, &$fenv, |mut env: FunctionEnvMut<'_, StoreData>, $($arg: i32),*| {
            let data = env.data_mut();
            let (guest, books) = data.memories.as_ref().ok_or_else(|| RuntimeError::new("no memory attached"))?;
            // SAFETY: no other reference to either memory's bytes exists
            // while a host function runs (the guest is suspended in the
            // call), and the two memories are distinct.
            let memories = unsafe { Memories { guest: guest.bytes(), books: books.bytes() } };
            // SAFETY: the guest is suspended in this call, and the
            // instance does not touch the host state during a call.
            let env = unsafe { data.env.get() };
            host::$name(env, memories, $($arg),*).map_err(|e| RuntimeError::user(Box::new(e)))
        });
        $imports.define(host::MODULE, stringify!($name), f);
    )*};
}

/// The wasmer backend, configured once from the [`Limits`].
pub struct WasmerHost {
    info: HostInfo,
}

impl WasmerHost {
    /// A backend enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        WasmerHost { info: HostInfo { name: NAME, limits } }
    }

    /// A new engine, one per compiled module: a wasmer engine keeps the code
    /// of every module it compiled until it is dropped (a shared one grew
    /// 42 MiB over 1,000 loads; one per module stays flat).
    fn engine(&self) -> Engine {
        // The books are a second memory (see `executor_core::instrument`);
        // core has refused guests with more than one.
        let mut features = Features::default();
        features.multi_memory(true);
        let mut engine: Engine = EngineBuilder::new(Singlepass::new()).set_features(Some(features)).engine().into();
        let vm = VMConfig { wasm_stack_size: Some(engine_stack_bytes(self.info.limits.max_stack) as usize) };
        engine.set_tunables(StackTunables { base: BaseTunables::new(), vm });
        engine
    }
}

/// This backend with the given limits, as `core` takes it.
pub fn host(limits: Limits) -> Arc<dyn ExecutorHost> {
    Arc::new(WasmerHost::new(limits))
}

impl ExecutorHost for WasmerHost {
    fn info(&self) -> &HostInfo {
        &self.info
    }

    fn compile(&self, module: &PreparedModule) -> Result<Arc<dyn CompiledExecutor>> {
        let engine = self.engine();
        let compiled = Module::new(&engine, &module.wasm).map_err(|e| compile_error(e.to_string()))?;
        Ok(wrap(module, engine, compiled))
    }

    /// wasmer's version (pinned exactly in the workspace), the compiler,
    /// the target with its CPU features (a cache copied to a machine with
    /// others must miss), and our tunables.
    fn artifact_fingerprint(&self) -> Option<String> {
        let (target, stack) = (wasmer::sys::Target::default(), engine_stack_bytes(self.info.limits.max_stack));
        let (triple, cpu) = (target.triple(), target.cpu_features());
        Some(format!("wasmer {WASMER_VERSION} singlepass, {triple} {cpu:?}, stack {stack}"))
    }

    unsafe fn load_artifact(&self, module: &PreparedModule, artifact: &[u8]) -> Result<Arc<dyn CompiledExecutor>> {
        let engine = self.engine();
        // SAFETY: the caller guarantees these are bytes `serialize` made on
        // a host with our fingerprint; wasmer checks its own header too.
        let compiled =
            unsafe { Module::deserialize(&engine, artifact.to_vec()) }.map_err(|e| compile_error(e.to_string()))?;
        Ok(wrap(module, engine, compiled))
    }
}

/// The wasmer version this backend is built against (the workspace pins it
/// with `=`; a test checks this against `Cargo.lock`). Part of the cache key.
pub const WASMER_VERSION: &str = "7.4.2";

fn compile_error(message: String) -> Error {
    Error::Compile { backend: NAME, message }
}

/// The executor around a compiled (or deserialised) module and its engine.
fn wrap(module: &PreparedModule, engine: Engine, compiled: Module) -> Arc<dyn CompiledExecutor> {
    Arc::new(WasmerCompiled { engine, module: compiled, shared: Shared::of(&module.info) })
}

struct WasmerCompiled {
    engine: Engine,
    module: Module,
    shared: Shared,
}

/// A failed call of wasmer's, as core wants it (abort, trap or host failure).
fn call_error(env: &HostEnv, e: RuntimeError) -> CallError {
    let trap = executor_core::trap_table!(e.clone().to_trap(), wasmer_types::TrapCode:
        UnreachableCodeReached, HeapAccessOutOfBounds, TableAccessOutOfBounds, IndirectCallToNull, BadSignature,
        IntegerOverflow, IntegerDivisionByZero, BadConversionToInteger, StackOverflow);
    kit::call_error(env, trap, || format!("wasmer: {e}"))
}

impl CompiledExecutor for WasmerCompiled {
    fn serialize(&self) -> Option<std::result::Result<Vec<u8>, String>> {
        Some(self.module.serialize().map(|b| b.to_vec()).map_err(|e| e.to_string()))
    }

    fn instantiate(&self, env: HostEnv, _mode: InstanceMode) -> Result<Box<dyn ExecutorInstance>, CallError> {
        // wasmer has no pooling or pre-instantiation: both modes build the
        // same way, in a new store; only `Reusable` ones are marked blank.
        let env = EnvBox::new(env);
        let mut store = Store::new(self.engine.clone());
        let fenv = FunctionEnv::new(&mut store, StoreData { env: env.0, memories: None });
        let mut imports = Imports::new();
        executor_core::for_each_import!(register!(imports, store, fenv;));
        DEFINITIONS.with_borrow_mut(Vec::clear);
        let instance = Instance::new(&mut store, &self.module, &imports);
        let noted = DEFINITIONS.take();
        let instance = match instance {
            Ok(i) => i,
            // The prepared module has no start section: what wasmer reports
            // as a start trap is the data/element segment initialisation.
            // SAFETY: no guest code runs; the store is ours alone.
            Err(wasmer::InstantiationError::Start(e)) => return Err(call_error(unsafe { env.0.get() }, e)),
            Err(e) => return Err(CallError::Host(format!("wasmer: {e}"))),
        };
        let found = &instance.exports;
        let memory = |name| found.get_memory(name).cloned().map_err(|_| kit::missing(name));
        // The guest's memory is memory 0 and the books memory 1, both
        // defined in the module (core's instrumentation makes it so).
        let guest = memory(abi_exports::MEMORY)?;
        let memories =
            (Guest::find(noted.first().copied(), &guest, &store)?, books_of(&memory(abi_exports::BOOKS)?, &store));
        fenv.as_mut(&mut store).memories = Some(memories);
        let exports = kit::Exports::find(
            found.get_typed_function(&store, Export::Alloc.name()).ok(),
            found.get_typed_function(&store, Export::Validate.name()).ok(),
            found.get_typed_function(&store, Export::Migrate.name()).ok(),
            |e| found.get_typed_function(&store, e.name()).ok(),
        )?;
        let (globals, tables) = self.shared.find(
            &mut (),
            |_, n| found.get_global(n).ok().cloned(),
            |_, n| found.get_table(n).ok().cloned(),
        )?;
        let engine = Wasmer { store, _instance: instance, guest, memories, exports, globals, tables, env };
        Ok(kit::Instance::boxed(engine, &self.shared))
    }
}

/// The ABI exports as typed functions ([`kit::Exports`]).
type Exports = kit::Exports<
    TypedFunction<i32, i32>,
    TypedFunction<(i32, i32), i32>,
    TypedFunction<(), i32>,
    TypedFunction<(), ()>,
>;

/// One wasmer store and instance.
struct Wasmer {
    store: Store,
    _instance: Instance,
    /// The guest's memory and the books.
    memories: (Guest, Books),
    /// The guest's memory, to grow it.
    guest: Memory,
    exports: Exports,
    globals: Vec<Global>,
    tables: Vec<Table>,
    /// Last: dropped after the store.
    env: EnvBox,
}

// SAFETY: a wasmer `Store` and all in it may move between threads (`Store`
// is `Send`); the instance is used by one thread at a time (`&mut self`).
unsafe impl Send for Wasmer {}

impl kit::Engine for Wasmer {
    type Value = Value;
    type Element = Value;

    fn call(&mut self, export: Export, args: &[i32]) -> Result<Option<i32>, CallError> {
        let exports = &self.exports;
        let result = exports.call(
            &mut self.store,
            export,
            args,
            |f, s, a| f.call(s, a),
            |f, s, p, l| f.call(s, p, l),
            |f, s| f.call(s),
            |f, s| f.call(s),
        )?;
        result.map_err(|e| call_error(self.env(), e))
    }

    fn memories_and_env(&mut self) -> (Memories<'_>, &mut HostEnv) {
        let (guest, books) = &self.memories;
        // SAFETY: the guest is not running (we hold the store mutably), no
        // memory can grow or move while `self` is borrowed, the slices do
        // not outlive that borrow, and the two memories and the env are
        // distinct allocations.
        let memories = unsafe { Memories { guest: guest.bytes(), books: books.bytes() } };
        (memories, self.env())
    }

    fn env(&mut self) -> &mut HostEnv {
        // SAFETY: the guest is not running (we hold the store mutably) and
        // the reference does not outlive that borrow.
        unsafe { self.env.0.get() }
    }

    fn books(&mut self) -> &mut [u8] {
        // SAFETY: the guest is not running (we hold the store mutably) and
        // the slice does not outlive that borrow.
        unsafe { self.memories.1.bytes() }
    }

    fn grow(&mut self, pages: u64) -> Result<(), String> {
        let pages = u32::try_from(pages).map_err(|_| format!("cannot grow by {pages} pages"))?;
        self.guest.grow(&mut self.store, Pages(pages)).map(drop).map_err(|e| e.to_string())
    }

    fn global(&mut self, index: usize) -> Value {
        self.globals[index].get(&mut self.store)
    }

    fn set_global(&mut self, index: usize, value: Value) -> Result<(), String> {
        self.globals[index].set(&mut self.store, value).map_err(|e| e.to_string())
    }

    fn table_len(&mut self, table: usize) -> u64 {
        self.tables[table].size(&self.store).into()
    }

    fn element(&mut self, table: usize, index: u64) -> Value {
        self.tables[table].get(&mut self.store, index as u32).expect("index below size")
    }

    fn set_element(&mut self, table: usize, index: u64, element: Value) -> Result<(), String> {
        self.tables[table].set(&mut self.store, index as u32, element).map_err(|e| e.to_string())
    }

    fn portable(value: &Value) -> Option<GlobalValue> {
        Some(match *value {
            Value::I32(v) => GlobalValue::I32(v),
            Value::I64(v) => GlobalValue::I64(v),
            Value::F32(v) => GlobalValue::F32(v.to_bits()),
            Value::F64(v) => GlobalValue::F64(v.to_bits()),
            _ => return None,
        })
    }
}
