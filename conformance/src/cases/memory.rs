//! Linear memory as the guest sees it: sizes, growth, bounds, and the growth guards at the limits.

use super::*;
use executor_core::instrument::layout::MAX_GROWTHS_PER_CALL;

/// Memory sizes, growth results, data segments and every out-of-bounds
/// edge behave exactly as in the uninstrumented module (core adds a second
/// memory for its books and rewrites every store and bulk operation).
pub fn memory_semantics(factory: HostFactory) {
    let mut d = load(factory, fixtures::MEMORY_OPS.as_bytes(), every_tx(1), Limits::default());
    let oob = rejected(Rejection::Trap(executor_core::TrapCode::MemoryOutOfBounds));
    let expected = [
        A,
        oob.clone(),
        oob.clone(),
        oob.clone(),
        oob.clone(),
        oob.clone(),
        oob.clone(),
        oob.clone(),
        A,
        A,
        oob.clone(),
        oob,
    ];
    for (byte, expected) in expected.iter().enumerate() {
        assert_eq!(run_bytes(&mut d, &[byte as u8, 0]), vec![expected.clone(), A], "memory_ops case {byte}");
    }
}

/// `memory.grow` and `table.grow` past the limits are stopped by core's
/// instrumentation, not by the engine: with the module instrumented for
/// small limits and the engine configured with large ones, the guard alone
/// must fire (OOM flag set, the call trapped), exactly at the limit.
pub fn growth_guards_decide_out_of_memory(factory: HostFactory) {
    use executor_core::{Export, HostEnv, InstanceMode, Phase};
    let small = Limits { memory_bytes: 3 * 65536, table_elements: 5, ..Limits::default() };
    let wat = r#"(module
      (memory (export "memory") 1)
      (table $t 1 funcref)
      (func (export "executor_alloc") (param $n i32) (result i32)
        (memory.grow (local.get $n)))
      (func (export "executor_validate") (param $p i32) (param $n i32) (result i32)
        (table.grow $t (ref.null func) (local.get $n))))"#;
    let module = executor_core::module::prepare(wat.as_bytes(), &small).unwrap();
    let layout = module.info.layout;
    let host = factory(Limits::default());
    let compiled = host.compile(&module).unwrap();
    let fresh = || {
        let mut env = HostEnv::new(&Limits::default(), layout);
        env.begin(Phase::Init, None);
        let mut i = compiled.instantiate(env, InstanceMode::Reusable).unwrap();
        layout.arm(i.books(), 1_000_000, Limits::default().max_stack);
        i
    };
    // Memory: 1 page + 2 is the limit (3); + 3 is past it.
    let mut i = fresh();
    assert_eq!(i.call(Export::Alloc, &[2]).unwrap(), Some(1), "grow to the limit returns the old size");
    assert!(!layout.out_of_memory(i.books()));
    assert!(i.call(Export::Alloc, &[1]).is_err(), "one page past the limit traps");
    assert!(layout.out_of_memory(i.books()), "the guard's flag is set");
    let mut i = fresh();
    assert!(i.call(Export::Alloc, &[-1]).is_err(), "0xffffffff pages does not wrap past the guard");
    assert!(layout.out_of_memory(i.books()));
    // Tables: 1 element + 4 is the limit (5).
    let mut i = fresh();
    assert_eq!(i.call(Export::Validate, &[0, 4]).unwrap(), Some(1));
    assert!(i.call(Export::Validate, &[0, 1]).is_err());
    assert!(layout.out_of_memory(i.books()));
}

/// The whole memory limit is usable, on the engine as in core's checks: an
/// initial memory of exactly the limit loads and runs; growing to exactly
/// the limit succeeds; one page more is `out_of_memory` — with the host
/// and the module under the same limits, so the engine's own limiter (not
/// only the instrumentation's guard) sits at the edge.
pub fn memory_limit_is_usable_to_the_last_page(factory: HostFactory) {
    let limits = Limits { memory_bytes: 4 * 65536, ..Limits::default() };
    let full = r#"(module
      (memory (export "memory") 4)
      (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "executor_validate") (param i32 i32) (result i32)
        (i32.store8 (i32.const 262143) (i32.const 1))
        (i32.const 0)))"#;
    let mut d = load(factory, full.as_bytes(), every_tx(1), limits.clone());
    assert_eq!(run(&mut d, &[&[0], &[0]]), vec![A, A], "the last byte of a full memory is writable");
    // The payload's first byte is the number of pages to grow.
    let grows = r#"(module
      (memory (export "memory") 1)
      (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "executor_validate") (param $p i32) (param i32) (result i32)
        (i32.ne (memory.grow (i32.load8_u (local.get $p))) (i32.const 1))))"#;
    let mut d = load(factory, grows.as_bytes(), every_tx(1), limits);
    assert_eq!(
        run(&mut d, &[&[3], &[4], &[3]]),
        vec![A, rejected(Rejection::OutOfMemory), A],
        "growing to the limit succeeds, past it is out_of_memory, and the next transaction is served"
    );
}

/// The host sees the guest's memory as it is *now*: the payload copied
/// into the page `executor_alloc` just grew, and a value `state_get` writes
/// into a page the guest grew earlier in the same call, read back as the
/// deny reason — after every transaction's growth, under a policy that
/// rebuilds (the memory grew) and one that keeps growing the same instance.
/// Backends may lend memory from a description they keep (wasmer's reads
/// the instance's own definition of it), so it must follow every growth.
pub fn host_sees_memory_grown_within_a_call(factory: HostFactory) {
    let grows = r#"(module
      (import "host" "state_get" (func $get (param i32 i32 i32 i32) (result i32)))
      (import "host" "deny_reason" (func $deny (param i32 i32)))
      (memory (export "memory") 1)
      (func (export "executor_alloc") (param i32) (result i32)
        (i32.mul (memory.grow (i32.const 1)) (i32.const 65536)))
      (func (export "executor_validate") (param $p i32) (param $n i32) (result i32)
        (local $out i32)
        (local.set $out (i32.mul (memory.grow (i32.const 1)) (i32.const 65536)))
        (if (i32.ne (call $get (local.get $p) (local.get $n) (local.get $out) (i32.const 16)) (i32.const 3))
          (then (unreachable)))
        (call $deny (local.get $out) (i32.const 3))
        (i32.const 1)))"#;
    let world = state(&[(b"k", b"abc")]);
    for policy in [every_tx(1), PersistencePolicy::UntilCrash] {
        let mut d = load(factory, grows.as_bytes(), policy, Limits::default());
        for tx in 0..4 {
            assert_eq!(d.validate(b"k", world.clone()).unwrap(), denied("abc"), "{policy}, transaction {tx}");
        }
    }
}

/// A call may execute [`MAX_GROWTHS_PER_CALL`] growth operations
/// (`memory.grow` and `table.grow`, by zero here: nothing grows); one more
/// is `out_of_memory`, and so is a loop of 200,000 — which, before the
/// allowance, overflowed the host's stack and aborted the process on wasmi
/// (found by `differential-fuzz`, seed 728292, in `executor_init`): its
/// interpreter keeps a native frame per executed growth until the call
/// returns. Each transaction's calls get the whole allowance again.
pub fn growth_loops_never_exhaust_the_host_stack(factory: HostFactory) {
    // The payload's first byte picks the iterations (two growths each):
    // 0 → exactly the allowance, 1 → one iteration more, 2 → 200,000.
    let loops = r#"(module
      (memory (export "memory") 1)
      (table 1 funcref)
      (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "executor_validate") (param $p i32) (param i32) (result i32)
        (local $i i32)
        (local.set $i (select (i32.const ALLOWED) (select (i32.const MORE) (i32.const 200000)
          (i32.eq (i32.load8_u (local.get $p)) (i32.const 1)))
          (i32.eqz (i32.load8_u (local.get $p)))))
        (loop $again
          (drop (memory.grow (i32.const 0)))
          (drop (table.grow (ref.null func) (i32.const 0)))
          (br_if $again (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
        (i32.const 0)))"#;
    let half = MAX_GROWTHS_PER_CALL / 2;
    let loops = loops.replace("ALLOWED", &half.to_string()).replace("MORE", &(half + 1).to_string());
    let mut d = load(factory, loops.as_bytes(), every_tx(1), Limits::default());
    let oom = rejected(Rejection::OutOfMemory);
    assert_eq!(run(&mut d, &[&[0], &[1], &[2], &[0]]), vec![A, oom.clone(), oom, A]);
}
