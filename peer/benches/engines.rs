//! Criterion micro-benchmarks of every compiled-in backend: the costs that
//! make up a transaction under each persistence policy.
//!
//! ```sh
//! cargo bench -p peer --bench engines            # all
//! cargo bench -p peer --bench engines -- blank/  # one group
//! ```
//!
//! Groups (each benchmark is named `<group>/<backend>[/<parameter>]`):
//! - `compile`: check + instrument + engine compile of the default executor
//!   (what a cold load or an upgrade pays, without a cache);
//! - `instantiate`: a reusable instance of the compiled default executor,
//!   data segments applied, no `executor_init`;
//! - `instantiate_init`: the same plus `executor_init` and the blank-state
//!   snapshot — a `fresh` transaction's fixed cost;
//! - `warm_call`: a transaction of the empty-validate executor on a warm
//!   instance (the floor every policy pays);
//! - `blank_pages`: one blank after a transaction dirtied N 4 KiB pages of
//!   a 4 MiB memory — should grow with N;
//! - `blank_memory`: one blank after a transaction dirtied 4 pages, memory
//!   of M MiB — should not grow with M.
//!
//! `cargo test` runs each benchmark once (criterion's test mode), so they
//! keep compiling and working.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use executor_core::{
    Blanked, CompiledExecutor, Driver, DriverConfig, ExecutorHost, ExecutorInstance, Export, HostEnv, InstanceMode,
    Limits, PersistencePolicy, Phase, PreparedModule, SharedState, module,
};
use peer::backends;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const EMPTY: &str = include_str!("../../executors/bench/empty.wat");

/// Every compiled-in backend with its host under the default limits.
fn hosts() -> Vec<(&'static str, Arc<dyn ExecutorHost>)> {
    backends::factories().into_iter().map(|(name, make)| (name, make(Limits::default()))).collect()
}

fn prepare(host: &dyn ExecutorHost, executor: &[u8]) -> (PreparedModule, Arc<dyn CompiledExecutor>) {
    let prepared = module::prepare(executor, host.limits()).expect("a valid executor");
    let compiled = host.compile(&prepared).expect("it compiles");
    (prepared, compiled)
}

/// An instance after `executor_init`, its blank state recorded — as the
/// driver builds one for a reusable policy.
fn build(
    host: &dyn ExecutorHost,
    prepared: &PreparedModule,
    compiled: &Arc<dyn CompiledExecutor>,
) -> Box<dyn ExecutorInstance> {
    let limits = host.limits();
    let layout = prepared.info.layout;
    let mut env = HostEnv::new(limits, layout);
    env.begin(Phase::Init, None);
    let mut instance = compiled.instantiate(env, InstanceMode::Reusable).expect("instantiates");
    if prepared.info.has_init {
        layout.arm(instance.books(), limits.init_fuel, limits.max_stack);
        instance.call(Export::Init, &[]).expect("executor_init runs");
    }
    instance.env().end();
    instance.mark_blank().expect("snapshot");
    instance
}

/// Runs one transaction (no payload) on `instance`, as the driver would.
fn transaction(host: &dyn ExecutorHost, prepared: &PreparedModule, instance: &mut Box<dyn ExecutorInstance>) {
    let state: SharedState = Arc::new(BTreeMap::<Vec<u8>, Vec<u8>>::new());
    instance.env().begin(Phase::Validate, Some(state));
    prepared.info.layout.arm(instance.books(), host.limits().fuel, host.limits().max_stack);
    let verdict = instance.call(Export::Validate, &[0, 0]).expect("validates");
    assert_eq!(verdict, Some(0), "the benchmark executor approves");
    instance.env().end();
}

/// An executor that dirties `pages` 4 KiB pages (one byte each) per
/// transaction, in a memory of `mib` MiB.
fn dirtying(pages: u32, mib: u32) -> Vec<u8> {
    assert!(pages * 4096 <= mib << 20, "the pages fit the memory");
    let wat = format!(
        r#"(module
          (memory (export "memory") {wasm_pages})
          (global $n (mut i32) (i32.const 0))
          (func (export "executor_alloc") (param i32) (result i32) (i32.const 0))
          (func (export "executor_validate") (param i32 i32) (result i32)
            (local $p i32)
            (global.set $n (i32.add (global.get $n) (i32.const 1)))
            (block $done
              (loop $next
                (br_if $done (i32.ge_u (local.get $p) (i32.const {end})))
                (i32.store8 (local.get $p) (global.get $n))
                (local.set $p (i32.add (local.get $p) (i32.const 4096)))
                (br $next)))
            (i32.const 0)))"#,
        wasm_pages = mib * 16,
        end = pages * 4096,
    );
    wat::parse_str(wat).expect("valid WAT")
}

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for (name, host) in hosts() {
        group.bench_function(name, |b| b.iter(|| black_box(prepare(&*host, peer::DEFAULT_EXECUTOR))));
    }
    group.finish();
}

fn instantiate(c: &mut Criterion) {
    let mut group = c.benchmark_group("instantiate");
    for (name, host) in hosts() {
        let (prepared, compiled) = prepare(&*host, peer::DEFAULT_EXECUTOR);
        group.bench_function(name, |b| {
            b.iter(|| {
                let env = HostEnv::new(host.limits(), prepared.info.layout);
                black_box(compiled.instantiate(env, InstanceMode::Reusable).expect("instantiates"))
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("instantiate_init");
    for (name, host) in hosts() {
        let (prepared, compiled) = prepare(&*host, peer::DEFAULT_EXECUTOR);
        group.bench_function(name, |b| b.iter(|| black_box(build(&*host, &prepared, &compiled))));
    }
    group.finish();
}

fn warm_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("warm_call");
    for (name, host) in hosts() {
        let config = DriverConfig { policy: PersistencePolicy::UntilCrash, ..Default::default() };
        let mut driver = Driver::new(host, EMPTY.as_bytes(), config).expect("loads");
        let state: SharedState = Arc::new(BTreeMap::<Vec<u8>, Vec<u8>>::new());
        group.bench_function(name, |b| {
            b.iter(|| black_box(driver.validate(&[1], state.clone()).expect("no host failure")))
        });
    }
    group.finish();
}

/// Times only the blanks: each iteration runs a transaction (untimed),
/// then one blank (timed).
fn time_blanks(host: &dyn ExecutorHost, executor: &[u8], iters: u64) -> Duration {
    let (prepared, compiled) = prepare(host, executor);
    let mut instance = build(host, &prepared, &compiled);
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        transaction(host, &prepared, &mut instance);
        let started = Instant::now();
        let blanked = instance.blank().expect("no host failure");
        total += started.elapsed();
        assert_eq!(blanked, Blanked::Restored, "a transaction that did not grow memory is blanked in place");
    }
    total
}

fn blank(c: &mut Criterion) {
    let mut group = c.benchmark_group("blank_pages");
    for (name, host) in hosts() {
        for pages in [1, 4, 16, 64, 256] {
            let executor = dirtying(pages, 4);
            group.bench_with_input(BenchmarkId::new(name, pages), &executor, |b, executor| {
                b.iter_custom(|iters| time_blanks(&*host, executor, iters))
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("blank_memory");
    for (name, host) in hosts() {
        for mib in [1, 4, 16, 64] {
            let executor = dirtying(4, mib);
            group.bench_with_input(BenchmarkId::new(name, format!("{mib}MiB")), &executor, |b, executor| {
                b.iter_custom(|iters| time_blanks(&*host, executor, iters))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, compile, instantiate, warm_call, blank);
criterion_main!(benches);
