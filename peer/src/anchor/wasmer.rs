//! Plain wasmer: singlepass with default tunables, the metering middleware
//! where the reference meters, a new `Store` and instance from the compiled
//! module per fresh instance.

use super::{PlainEngine, PlainInstance, Reference, Stop, env, native_fuel};
use executor_core::host::{self, HostEnv};
use executor_core::{Export, Limits};
use std::sync::Arc;
use wasmer::sys::{CompilerConfig, EngineBuilder, Singlepass};
use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, Imports, Instance as WasmerInstance, Memory, Module, RuntimeError, Store,
    TypedFunction,
};
use wasmer_middlewares::Metering;
use wasmer_middlewares::metering::{MeteringPoints, get_remaining_points, set_remaining_points};

struct Plain {
    engine: wasmer::Engine,
    module: Module,
    limits: Limits,
    fuel: bool,
}

pub(super) fn engine(reference: Reference, wasm: &[u8], limits: &Limits) -> Result<Box<dyn PlainEngine>, String> {
    let mut compiler = Singlepass::new();
    if reference.fuel() {
        compiler
            .push_middleware(Arc::new(Metering::new(native_fuel(limits).init, |_: &wasmer::wasmparser::Operator| 1)));
    }
    let engine: wasmer::Engine = EngineBuilder::new(compiler).engine().into();
    let module = Module::new(&engine, wasm).map_err(|e| e.to_string())?;
    Ok(Box::new(Plain { engine, module, limits: limits.clone(), fuel: reference.fuel() }))
}

/// The host state and the memory the imports lend it.
struct Data {
    env: HostEnv,
    memory: Option<Memory>,
}

struct Instance {
    store: Store,
    data: FunctionEnv<Data>,
    instance: WasmerInstance,
    memory: Memory,
    alloc: TypedFunction<i32, i32>,
    validate: TypedFunction<(i32, i32), i32>,
    fuel: Option<u64>,
}

/// A call that did not return: out of stack, or any other trap or host
/// abort (the middleware's fuel trap is told apart by [`Instance::stop`]).
fn stop(e: RuntimeError) -> Stop {
    match e.to_trap() {
        Some(wasmer_types::TrapCode::StackOverflow) => Stop::Exhausted,
        _ => Stop::Trap,
    }
}

impl PlainEngine for Plain {
    fn instance(&self) -> Result<Box<dyn PlainInstance>, Stop> {
        let mut store = Store::new(self.engine.clone());
        let data = FunctionEnv::new(&mut store, Data { env: env(&self.limits), memory: None });
        let mut imports = Imports::new();
        macro_rules! define {
            ($($name:ident($($arg:ident),*) -> $result:ty;)*) => {$(
                let f = Function::new_typed_with_env(&mut store, &data, |mut at: FunctionEnvMut<'_, Data>, $($arg: i32),*| {
                    let (data, store) = at.data_and_store_mut();
                    let memory = data.memory.clone().ok_or_else(|| RuntimeError::new("no memory"))?;
                    let view = memory.view(&store);
                    // SAFETY: the guest is suspended in this call: no other
                    // reference to its memory's bytes exists.
                    let bytes = unsafe { view.data_unchecked_mut() };
                    host::$name(&mut data.env, host::Memories::plain(bytes), $($arg),*).map_err(|e| RuntimeError::user(Box::new(e)))
                });
                imports.define(host::MODULE, stringify!($name), f);
            )*};
        }
        executor_core::for_each_import!(define!());
        let instance = WasmerInstance::new(&mut store, &self.module, &imports).map_err(|e| match e {
            wasmer::InstantiationError::Start(e) => stop(e),
            other => Stop::Failed(other.to_string()),
        })?;
        let missing = |what: &str| Stop::Failed(format!("no {what}"));
        let memory = instance.exports.get_memory("memory").map_err(|_| missing("memory"))?.clone();
        data.as_mut(&mut store).memory = Some(memory.clone());
        let alloc = instance.exports.get_typed_function(&store, Export::Alloc.name()).map_err(|_| missing("alloc"))?;
        let validate =
            instance.exports.get_typed_function(&store, Export::Validate.name()).map_err(|_| missing("validate"))?;
        // The middleware starts every instance with the init budget.
        let fuel = self.fuel.then(|| native_fuel(&self.limits).tx);
        let mut plain = Instance { store, data, instance, memory, alloc, validate, fuel };
        let init = plain.instance.exports.get_typed_function::<(), ()>(&plain.store, Export::Init.name());
        if let Ok(init) = init {
            init.call(&mut plain.store).map_err(|e| plain.stop(e))?;
        }
        Ok(Box::new(plain))
    }
}

impl Instance {
    /// [`stop`], with the metering middleware's exhaustion (an
    /// `unreachable` trap) told apart by the points it left.
    fn stop(&mut self, e: RuntimeError) -> Stop {
        match get_remaining_points(&mut self.store, &self.instance) {
            MeteringPoints::Exhausted if self.fuel.is_some() => Stop::Exhausted,
            _ => stop(e),
        }
    }
}

impl PlainInstance for Instance {
    fn call(&mut self, export: Export, args: &[i32]) -> Result<Option<i32>, Stop> {
        match (export, args) {
            (Export::Alloc, &[len]) => self.alloc.call(&mut self.store, len).map(Some).map_err(|e| self.stop(e)),
            (Export::Validate, &[ptr, len]) => {
                self.validate.call(&mut self.store, ptr, len).map(Some).map_err(|e| self.stop(e))
            }
            _ => Err(Stop::Failed(format!("no call of {}", export.name()))),
        }
    }

    fn memory_and_env(&mut self) -> (&mut [u8], &mut HostEnv) {
        let view = self.memory.view(&self.store);
        let (ptr, len) = (view.data_ptr(), view.data_size() as usize);
        // SAFETY: the guest is not running (the store is borrowed mutably),
        // the memory cannot grow or move meanwhile, the env is elsewhere.
        let memory = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        (memory, &mut self.data.as_mut(&mut self.store).env)
    }

    fn refuel(&mut self) {
        if let Some(fuel) = self.fuel {
            set_remaining_points(&mut self.store, &self.instance, fuel);
        }
    }
}
