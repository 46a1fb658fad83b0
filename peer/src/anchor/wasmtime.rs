//! Plain wasmtime: `InstancePre` with the pooling allocator and
//! copy-on-write images, `consume_fuel` where the reference meters.

use super::{PlainEngine, PlainInstance, Reference, Stop, env, native_fuel};
use executor_core::host::{self, HostEnv};
use executor_core::{Export, Limits};
use wasmtime::{
    Caller, Config, Engine, Extern, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module,
    PoolingAllocationConfig, Store, TypedFunc,
};

/// The store data: the host state and the memory the imports lend it,
/// found once per instance (a lookup by name per host call cost the
/// default executor ≈ 700 instructions per transaction).
struct Data {
    env: HostEnv,
    memory: Option<Memory>,
}

struct Plain {
    pre: InstancePre<Data>,
    limits: Limits,
    fuel: bool,
}

pub(super) fn engine(reference: Reference, wasm: &[u8], limits: &Limits) -> Result<Box<dyn PlainEngine>, String> {
    let mut config = Config::new();
    config.consume_fuel(reference.fuel());
    // The engine at its best for every reference: pooled memories are
    // never moved, so compiled code need not reload their base after calls
    // (measured: 10-20 % on the benchmark executors against the defaults).
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(8).total_memories(8).total_tables(8).max_memory_size(limits.memory_bytes as usize);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool)).memory_init_cow(true);
    let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
    let module = Module::new(&engine, wasm).map_err(|e| format!("{e:#}"))?;
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
                            _ => return Err(wasmtime::Error::msg("no memory")),
                        },
                    };
                    let (bytes, data) = memory.data_and_store_mut(&mut caller);
                    Ok::<$result, wasmtime::Error>(host::$name(&mut data.env, host::Memories::plain(bytes), $($arg),*)?)
                })
                .map_err(|e| format!("{e:#}"))?;
        )*};
    }
    executor_core::for_each_import!(define!());
    let pre = linker.instantiate_pre(&module).map_err(|e| format!("{e:#}"))?;
    Ok(Box::new(Plain { pre, limits: limits.clone(), fuel: reference.fuel() }))
}

struct Instance {
    store: Store<Data>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    validate: TypedFunc<(i32, i32), i32>,
    fuel: Option<u64>,
}

fn stop(e: wasmtime::Error) -> Stop {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel | wasmtime::Trap::StackOverflow) => Stop::Exhausted,
        Some(_) => Stop::Trap,
        // A host import ended the call (its reason is in the env).
        None if e.downcast_ref::<host::Aborted>().is_some() => Stop::Trap,
        None => Stop::Failed(format!("{e:#}")),
    }
}

/// A fresh fuel budget for the next call.
fn refuel(store: &mut Store<Data>, fuel: Option<u64>) {
    if let Some(fuel) = fuel {
        store.set_fuel(fuel).expect("fuel is configured");
    }
}

impl PlainEngine for Plain {
    fn instance(&self) -> Result<Box<dyn PlainInstance>, Stop> {
        let mut store = Store::new(self.pre.module().engine(), Data { env: env(&self.limits), memory: None });
        let native = native_fuel(&self.limits);
        refuel(&mut store, self.fuel.then_some(native.init));
        let fuel = self.fuel.then_some(native.tx);
        let wasm = self.pre.instantiate(&mut store).map_err(stop)?;
        let missing = |what: &str| Stop::Failed(format!("no {what}"));
        let memory = wasm.get_memory(&mut store, "memory").ok_or_else(|| missing("memory"))?;
        store.data_mut().memory = Some(memory);
        let alloc = wasm.get_typed_func(&mut store, Export::Alloc.name()).map_err(|_| missing("executor_alloc"))?;
        let validate =
            wasm.get_typed_func(&mut store, Export::Validate.name()).map_err(|_| missing("executor_validate"))?;
        if let Ok(init) = wasm.get_typed_func::<(), ()>(&mut store, Export::Init.name()) {
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
        refuel(&mut self.store, self.fuel);
    }
}
