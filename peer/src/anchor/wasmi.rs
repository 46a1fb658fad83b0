//! Plain wasmi: the default configuration (lazy compilation, as wasmi's
//! users get it) with fuel where the reference meters, a new `Store` and
//! instance from the compiled module per fresh instance.

use super::{PlainEngine, PlainInstance, Reference, Stop, env, native_fuel};
use executor_core::host::{self, HostEnv};
use executor_core::{Export, Limits};
use wasmi::{Caller, Config, Engine, Extern, Linker, Memory, Module, Store, TypedFunc};

/// The store data: the host state and the memory the imports lend it,
/// found once per instance (a lookup by name per host call cost the
/// default executor ≈ 740 instructions per transaction).
struct Data {
    env: HostEnv,
    memory: Option<Memory>,
}

struct Plain {
    linker: Linker<Data>,
    module: Module,
    limits: Limits,
    fuel: bool,
}

pub(super) fn engine(reference: Reference, wasm: &[u8], limits: &Limits) -> Result<Box<dyn PlainEngine>, String> {
    let mut config = Config::default();
    config.consume_fuel(reference.fuel());
    let engine = Engine::new(&config);
    let module = Module::new(&engine, wasm).map_err(|e| e.to_string())?;
    let mut linker: Linker<Data> = Linker::new(&engine);
    macro_rules! define {
        ($($name:ident($($arg:ident),*) -> $result:ty;)*) => {$(
            linker
                .func_wrap(host::MODULE, stringify!($name), |mut caller: Caller<'_, Data>, $($arg: i32),*| {
                    // By name only before the instance is set up (a start function).
                    let memory = match caller.data().memory {
                        Some(memory) => memory,
                        None => match caller.get_export("memory") {
                            Some(Extern::Memory(memory)) => memory,
                            _ => return Err(wasmi::Error::new("no memory")),
                        },
                    };
                    let (bytes, data) = memory.data_and_store_mut(&mut caller);
                    host::$name(&mut data.env, host::Memories::plain(bytes), $($arg),*).map_err(|e| wasmi::Error::new(e.to_string()))
                })
                .map_err(|e| e.to_string())?;
        )*};
    }
    executor_core::for_each_import!(define!());
    Ok(Box::new(Plain { linker, module, limits: limits.clone(), fuel: reference.fuel() }))
}

struct Instance {
    store: Store<Data>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    validate: TypedFunc<(i32, i32), i32>,
    fuel: Option<u64>,
}

/// A call that did not return: out of fuel or stack, or any other trap or
/// host abort.
fn stop(e: wasmi::Error) -> Stop {
    match e.as_trap_code() {
        Some(wasmi::TrapCode::OutOfFuel | wasmi::TrapCode::StackOverflow) => Stop::Exhausted,
        _ => Stop::Trap,
    }
}

impl PlainEngine for Plain {
    fn instance(&self) -> Result<Box<dyn PlainInstance>, Stop> {
        let mut store = Store::new(self.module.engine(), Data { env: env(&self.limits), memory: None });
        let native = native_fuel(&self.limits);
        if self.fuel {
            store.set_fuel(native.init).expect("fuel is configured");
        }
        let fuel = self.fuel.then_some(native.tx);
        let instance = self.linker.instantiate_and_start(&mut store, &self.module).map_err(stop)?;
        let missing = |what: &str| Stop::Failed(format!("no {what}"));
        let memory = instance.get_memory(&store, "memory").ok_or_else(|| missing("memory"))?;
        store.data_mut().memory = Some(memory);
        let alloc = instance.get_typed_func(&store, Export::Alloc.name()).map_err(|_| missing("alloc"))?;
        let validate = instance.get_typed_func(&store, Export::Validate.name()).map_err(|_| missing("validate"))?;
        if let Ok(init) = instance.get_typed_func::<(), ()>(&store, Export::Init.name()) {
            init.call(&mut store, ()).map_err(stop)?;
        }
        Ok(Box::new(Instance { store, memory, alloc, validate, fuel }))
    }
}

impl PlainInstance for Instance {
    fn call(&mut self, export: Export, args: &[i32]) -> Result<Option<i32>, Stop> {
        match (export, args) {
            (Export::Alloc, &[len]) => self.alloc.call(&mut self.store, len).map(Some).map_err(stop),
            (Export::Validate, &[ptr, len]) => self.validate.call(&mut self.store, (ptr, len)).map(Some).map_err(stop),
            _ => Err(Stop::Failed(format!("no call of {}", export.name()))),
        }
    }

    fn memory_and_env(&mut self) -> (&mut [u8], &mut HostEnv) {
        let (bytes, data) = self.memory.data_and_store_mut(&mut self.store);
        (bytes, &mut data.env)
    }

    fn refuel(&mut self) {
        if let Some(fuel) = self.fuel {
            self.store.set_fuel(fuel).expect("fuel is configured");
        }
    }
}
