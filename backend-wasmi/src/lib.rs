//! [`ExecutorHost`] on wasmi 2, the interpreter: its configuration, limiter
//! and import glue and trap table (what all engines share is core's [`kit`]).
//!
//! - **Compilation**: eager, so every function is translated and checked
//!   at load, never in the middle of a transaction; an engine per module (a
//!   wasmi engine keeps the code of every module it compiled).
//! - **Limits**: the store's limiter asks core, so growth past the limits
//!   traps as `out_of_memory` (a backstop: core's instrumentation decides
//!   first). wasmi's fuel is off; its recursion depth and value stack are
//!   sized from the stack budget so they never fire first.
#![warn(missing_docs)]

use executor_core::instrument::{cost, engine_stack_bytes};
use executor_core::kit::{self, Books, Shared};
use executor_core::module::exports as abi_exports;
use executor_core::{
    CallError, CompiledExecutor, Error, ExecutorHost, ExecutorInstance, Export, GlobalValue, HostEnv, HostInfo,
    InstanceMode, Limits, Memories, PreparedModule, Result, host,
};
use std::sync::Arc;
use wasmi::{Caller, CompilationMode, Config, Global, Linker, Memory, Module, Store, Table, TypedFunc, Val};
use wasmi_core::LimiterError;

const NAME: &str = "wasmi";

executor_core::store_data!(wasmi);

/// The limiter's refusal (core recorded why: the trap is `out_of_memory`).
const DENIED: LimiterError = LimiterError::ResourceLimiterDeniedAllocation;

impl wasmi::ResourceLimiter for StoreData {
    fn memory_growing(&mut self, _: usize, desired: usize, max: Option<usize>) -> Result<bool, LimiterError> {
        self.env.allows_memory(desired as u64, max.map(|m| m as u64)).map_err(|_| DENIED)
    }

    fn table_growing(&mut self, _: usize, desired: usize, max: Option<usize>) -> Result<bool, LimiterError> {
        self.env.allows_table(desired as u64, max.map(|m| m as u64)).map_err(|_| DENIED)
    }

    fn memory_grow_failed(&mut self, _error: &wasmi::errors::MemoryError) -> Result<(), LimiterError> {
        Err(self.env.grow_failed("memory", 0)).map_err(|_| DENIED)
    }

    fn table_grow_failed(&mut self, _error: &wasmi::errors::TableError) -> Result<(), LimiterError> {
        Err(self.env.grow_failed("table", 0)).map_err(|_| DENIED)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        usize::MAX
    }

    fn memories(&self) -> usize {
        // The guest's and the books.
        2
    }
}

/// Registers one wasmi closure per host import of core's list.
macro_rules! register {
    ($linker:ident; $($name:ident($($arg:ident),*) -> $result:ty;)*) => {$(
        $linker.func_wrap(host::MODULE, stringify!($name), |mut caller: Caller<'_, StoreData>, $($arg: i32),*| {
            let memories = caller.data().memories.ok_or_else(|| wasmi::Error::new("no memory attached"))?;
            let (memories, env) = lend(memories, &mut caller);
            host::$name(env, memories, $($arg),*).map_err(|e| wasmi::Error::new(e.to_string()))
        })?;
    )*};
}

fn linker(engine: &wasmi::Engine) -> Result<Linker<StoreData>, wasmi::Error> {
    let mut linker = Linker::new(engine);
    executor_core::for_each_import!(register!(linker;));
    Ok(linker)
}

/// The wasmi backend, configured once from the [`Limits`].
pub struct WasmiHost {
    config: Config,
    info: HostInfo,
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
            // The books are a second memory (see
            // `executor_core::instrument`); core has refused guests with
            // more than one.
            .wasm_multi_memory(true)
            .wasm_tail_call(false)
            .wasm_extended_const(false)
            .wasm_custom_page_sizes(false)
            .wasm_wide_arithmetic(false);
        WasmiHost { config, info: HostInfo { name: NAME, limits } }
    }
}

/// This backend with the given limits, as `core` takes it.
pub fn host(limits: Limits) -> Arc<dyn ExecutorHost> {
    Arc::new(WasmiHost::new(limits))
}

impl ExecutorHost for WasmiHost {
    fn info(&self) -> &HostInfo {
        &self.info
    }

    fn compile(&self, module: &PreparedModule) -> Result<Arc<dyn CompiledExecutor>> {
        let compile_error = |e: wasmi::Error| Error::Compile { backend: NAME, message: e.to_string() };
        // A shared engine grew by each upgrade's code (14 → 58 MiB over
        // 1,000 upgrades); an engine per module stays flat.
        let engine = wasmi::Engine::new(&self.config);
        let wasm = Module::new(&engine, &module.wasm[..]).map_err(compile_error)?;
        let linker = linker(&engine).map_err(compile_error)?;
        Ok(Arc::new(WasmiCompiled { engine, module: wasm, linker, shared: Shared::of(&module.info) }))
    }
}

struct WasmiCompiled {
    engine: wasmi::Engine,
    module: Module,
    linker: Linker<StoreData>,
    shared: Shared,
}

/// A failed call of wasmi's, as core wants it (abort, trap or host failure).
fn call_error(store: &Store<StoreData>, e: wasmi::Error) -> CallError {
    let trap = executor_core::trap_table!(e.as_trap_code(), wasmi::TrapCode:
        UnreachableCodeReached, MemoryOutOfBounds, TableOutOfBounds, IndirectCallToNull, BadSignature,
        IntegerOverflow, IntegerDivisionByZero, BadConversionToInteger, StackOverflow, OutOfFuel);
    kit::call_error(&store.data().env, trap, || format!("wasmi: {e}"))
}

impl CompiledExecutor for WasmiCompiled {
    fn instantiate(&self, env: HostEnv, _mode: InstanceMode) -> Result<Box<dyn ExecutorInstance>, CallError> {
        // No pooling or pre-instantiation: both modes build the same way.
        let mut store = Store::new(&self.engine, StoreData { env, memories: None });
        store.limiter(|data| data as &mut dyn wasmi::ResourceLimiter);
        let instance =
            self.linker.instantiate_and_start(&mut store, &self.module).map_err(|e| call_error(&store, e))?;
        let memory = |name| instance.get_memory(&store, name).ok_or_else(|| kit::missing(name));
        let (guest, books) = (memory(abi_exports::MEMORY)?, memory(abi_exports::BOOKS)?);
        let memories = (guest, books_of(books, &mut store));
        store.data_mut().memories = Some(memories);
        let exports = kit::Exports::find(
            instance.get_typed_func(&store, Export::Alloc.name()).ok(),
            instance.get_typed_func(&store, Export::Validate.name()).ok(),
            instance.get_typed_func(&store, Export::Migrate.name()).ok(),
            |e| instance.get_typed_func(&store, e.name()).ok(),
        )?;
        let (globals, tables) =
            self.shared.find(&mut store, |s, n| instance.get_global(&*s, n), |s, n| instance.get_table(&*s, n))?;
        Ok(kit::Instance::boxed(Wasmi { store, memories, exports, globals, tables }, &self.shared))
    }
}

/// The ABI exports as typed functions ([`kit::Exports`]).
type Exports = kit::Exports<TypedFunc<i32, i32>, TypedFunc<(i32, i32), i32>, TypedFunc<(), i32>, TypedFunc<(), ()>>;

/// One wasmi store and instance.
struct Wasmi {
    store: Store<StoreData>,
    /// The guest's memory and the books.
    memories: (Memory, Books),
    exports: Exports,
    globals: Vec<Global>,
    tables: Vec<Table>,
}

impl kit::Engine for Wasmi {
    type Value = Val;
    type Element = wasmi::Ref;

    fn call(&mut self, export: Export, args: &[i32]) -> Result<Option<i32>, CallError> {
        let (calls, store) = (&self.exports, &mut self.store);
        let called = calls.call(
            store,
            export,
            args,
            |f, s, a| f.call(s, a),
            |f, s, p, l| f.call(s, (p, l)),
            |f, s| f.call(s, ()),
            |f, s| f.call(s, ()),
        )?;
        called.map_err(|e| call_error(&self.store, e))
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
        self.memories.0.grow(&mut self.store, pages).map(drop).map_err(|e| e.to_string())
    }

    fn global(&mut self, index: usize) -> Val {
        self.globals[index].get(&self.store)
    }

    fn set_global(&mut self, index: usize, value: Val) -> Result<(), String> {
        self.globals[index].set(&mut self.store, value).map_err(|e| e.to_string())
    }

    fn table_len(&mut self, table: usize) -> u64 {
        self.tables[table].size(&self.store)
    }

    fn element(&mut self, table: usize, index: u64) -> wasmi::Ref {
        self.tables[table].get(&self.store, index).expect("index below size")
    }

    fn set_element(&mut self, table: usize, index: u64, element: wasmi::Ref) -> Result<(), String> {
        self.tables[table].set(&mut self.store, index, element).map_err(|e| e.to_string())
    }

    fn portable(value: &Val) -> Option<GlobalValue> {
        let (float, double) =
            (|f: wasmi::F32| GlobalValue::F32(f.to_bits()), |f: wasmi::F64| GlobalValue::F64(f.to_bits()));
        let numbers = [value.i32().map(GlobalValue::I32), value.i64().map(GlobalValue::I64)];
        numbers.into_iter().chain([value.f32().map(float), value.f64().map(double)]).flatten().next()
    }
}
