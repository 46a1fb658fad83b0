//! The cases. Each takes a [`HostFactory`] and panics, naming the case, the
//! transaction and both verdicts, on the first deviation from abi.md.

use crate::fixtures::{self, HOSTILE, HOSTILE_CASES, READS_STATE, STATEFUL, rejected};
use crate::{HostFactory, load, run, state};
use executor_core::{
    DriverConfig, Error, Limits, ModuleLimits, PersistencePolicy, RecycleCause, Rejection, RejectionKind, Verdict,
};
use std::num::NonZeroU32;

const A: Verdict = Verdict::Approved;

fn denied(reason: &str) -> Verdict {
    Verdict::Denied { reason: reason.into() }
}

fn every_tx(n: u32) -> PersistencePolicy {
    PersistencePolicy::EveryTransactions(NonZeroU32::new(n).unwrap())
}

fn every_block(n: u32) -> PersistencePolicy {
    PersistencePolicy::EveryBlocks(NonZeroU32::new(n).unwrap())
}

fn payloads(bytes: &[u8]) -> Vec<[u8; 1]> {
    bytes.iter().map(|b| [*b]).collect()
}

fn run_bytes(driver: &mut executor_core::Driver, bytes: &[u8]) -> Vec<Verdict> {
    let p = payloads(bytes);
    run(driver, &p.iter().map(|p| &p[..]).collect::<Vec<_>>())
}

/// Every rejection kind and trap code of abi.md from [`fixtures::HOSTILE`],
/// each followed by a normal transaction that a recycled instance must
/// approve; the recycle is counted under the rejection's cause.
pub fn every_rejection_kind(factory: HostFactory) {
    let mut d = load(factory, HOSTILE.as_bytes(), PersistencePolicy::UntilCrash, Limits::default());
    for (byte, name, expected) in HOSTILE_CASES {
        let got = run_bytes(&mut d, &[*byte, 0]);
        assert_eq!(got, vec![expected.clone(), A], "case {byte} ({name})");
    }
    let stats = d.stats();
    assert_eq!(stats.recycles, HOSTILE_CASES.len() as u64);
    assert_eq!(stats.approved, HOSTILE_CASES.len() as u64);
    assert_eq!(stats.blanks, 0);
    for (byte, name, expected) in HOSTILE_CASES {
        let kind = expected.rejection().unwrap().kind();
        let n = HOSTILE_CASES.iter().filter(|(_, _, v)| v.rejection().unwrap().kind() == kind).count() as u64;
        assert_eq!(stats.rejected.get(&kind), Some(&n), "rejected[{kind}] ({byte}: {name})");
        assert_eq!(stats.recycles_by_cause.get(&RecycleCause::from(kind)), Some(&n), "recycles[{kind}]");
    }
}

/// Memory sizes, growth results, data segments and every out-of-bounds
/// edge behave exactly as in the uninstrumented module (core moves the
/// guest's memory up past the dirty map).
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
        layout.arm(i.memory(), 1_000_000, Limits::default().max_stack);
        i
    };
    // Memory: 1 page + 2 is the limit (3); + 3 is past it.
    let mut i = fresh();
    assert_eq!(i.call(Export::Alloc, &[2]).unwrap(), Some(1), "grow to the limit returns the old size");
    assert!(!layout.out_of_memory(i.memory()));
    assert!(i.call(Export::Alloc, &[1]).is_err(), "one page past the limit traps");
    assert!(layout.out_of_memory(i.memory()), "the guard's flag is set");
    let mut i = fresh();
    assert!(i.call(Export::Alloc, &[-1]).is_err(), "0xffffffff pages does not wrap past the guard");
    assert!(layout.out_of_memory(i.memory()));
    // Tables: 1 element + 4 is the limit (5).
    let mut i = fresh();
    assert_eq!(i.call(Export::Validate, &[0, 4]).unwrap(), Some(1));
    assert!(i.call(Export::Validate, &[0, 1]).is_err());
    assert!(layout.out_of_memory(i.memory()));
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

/// `executor_alloc` returning 0, a pointer outside memory, or a range that
/// runs past the end is `host_fault`; the next transaction is served.
pub fn alloc_misbehaviour(factory: HostFactory) {
    let mut d = load(factory, HOSTILE.as_bytes(), every_tx(1), Limits::default());
    let empty = state(&[]);
    for len in [1000, 1001, 1002] {
        let tx = vec![0u8; len];
        assert_eq!(d.validate(&tx, empty.clone()).unwrap(), rejected(Rejection::HostFault), "alloc for len {len}");
        assert_eq!(d.validate(&[0], empty.clone()).unwrap(), A, "after alloc for len {len}");
    }
    assert_eq!(d.stats().recycles_by_cause.get(&RecycleCause::HostFault), Some(&3));
}

/// Deny reasons: cut at 256 bytes then lossily decoded (a character cut at
/// byte 256 becomes U+FFFD), the last call wins, ignored on approval.
pub fn deny_reasons(factory: HostFactory) {
    let mut d = load(factory, HOSTILE.as_bytes(), every_tx(1), Limits::default());
    let got = run_bytes(&mut d, &[20, 21, 22]);
    assert_eq!(got, vec![denied(&format!("{}\u{fffd}", "a".repeat(255))), denied("a\u{fffd}"), A]);
}

/// `host.state_get` end to end: a value that fits is written, an absent key
/// is -1, a value that does not fit reports its length and writes nothing.
pub fn state_get_end_to_end(factory: HostFactory) {
    let mut d = load(factory, READS_STATE.as_bytes(), every_tx(1), Limits::default());
    let world = state(&[(b"k", b"abc"), (b"long", b"12345678"), (b"", b"e")]);
    let mut v = |key: &[u8]| d.validate(key, world.clone()).unwrap();
    assert_eq!(v(b"k"), denied("abc"));
    assert_eq!(v(b"nope"), denied("absent"));
    assert_eq!(v(b"long"), denied("long:\u{8}"));
    assert_eq!(v(b""), denied("e"), "the empty key is a key");
}

/// A blank restores each kind of state — a non-exported global, a memory
/// byte, a grown page, a table slot — to the post-`executor_init` state:
/// under `every-tx:1` and `fresh` nothing survives; under `until-crash`
/// each survives (proving the fixture really remembers).
pub fn blank_restores_every_kind_of_state(factory: HostFactory) {
    for (byte, what) in [(1, "global"), (2, "memory"), (3, "grown"), (4, "table"), (5, "global")] {
        let mut warm = load(factory, STATEFUL.as_bytes(), PersistencePolicy::UntilCrash, Limits::default());
        assert_eq!(run_bytes(&mut warm, &[byte, byte]), vec![A, denied(what)], "until-crash, byte {byte}");
        for policy in [every_tx(1), PersistencePolicy::Fresh] {
            let mut d = load(factory, STATEFUL.as_bytes(), policy, Limits::default());
            assert_eq!(run_bytes(&mut d, &[byte; 4]), vec![A; 4], "{policy}, byte {byte} ({what})");
            assert_eq!(d.stats().blanks, 3, "{policy}");
            assert_eq!(d.stats().recycles, 0, "{policy}");
        }
    }
    // All kinds interleaved on one instance.
    let mut d = load(factory, STATEFUL.as_bytes(), every_tx(1), Limits::default());
    assert_eq!(run_bytes(&mut d, &[1, 2, 3, 4, 5, 3, 1]), vec![A; 7]);
}

/// `every-tx:N`: a blank after every N transactions.
pub fn every_tx_pattern(factory: HostFactory) {
    let mut d = load(factory, STATEFUL.as_bytes(), every_tx(3), Limits::default());
    let d_ = denied("global");
    assert_eq!(
        run_bytes(&mut d, &[5; 10]),
        vec![A, d_.clone(), d_.clone(), A, d_.clone(), d_.clone(), A, d_.clone(), d_, A]
    );
    assert_eq!((d.stats().blanks, d.stats().recycles), (3, 0));
    let mut d = load(factory, STATEFUL.as_bytes(), every_tx(2), Limits::default());
    let dm = denied("memory");
    assert_eq!(run_bytes(&mut d, &[2; 6]), vec![A, dm.clone(), A, dm.clone(), A, dm]);
    assert_eq!((d.stats().blanks, d.stats().recycles), (2, 0));
}

/// `every-block:N`: a blank at the start of a block once N blocks ended.
pub fn every_block_pattern(factory: HostFactory) {
    let dm = denied("memory");
    for (n, expected) in [
        (1, vec![A, dm.clone(), A, dm.clone(), A, dm.clone(), A, dm.clone()]),
        (2, vec![A, dm.clone(), dm.clone(), dm.clone(), A, dm.clone(), dm.clone(), dm.clone()]),
    ] {
        let mut d = load(factory, STATEFUL.as_bytes(), every_block(n), Limits::default());
        let mut got = Vec::new();
        for _block in 0..4 {
            got.extend(run_bytes(&mut d, &[2, 2]));
            d.end_block();
        }
        assert_eq!(got, expected, "every-block:{n}");
        assert_eq!(d.stats().blanks, if n == 1 { 3 } else { 1 }, "every-block:{n}");
        assert_eq!(d.stats().blocks, 4);
    }
}

/// `until-crash`: never a scheduled blank.
pub fn until_crash_pattern(factory: HostFactory) {
    let mut d = load(factory, STATEFUL.as_bytes(), PersistencePolicy::UntilCrash, Limits::default());
    for _ in 0..3 {
        d.end_block();
    }
    let dt = denied("table");
    assert_eq!(run_bytes(&mut d, &[4; 5]), vec![A, dt.clone(), dt.clone(), dt.clone(), dt]);
    assert_eq!((d.stats().blanks, d.stats().recycles), (0, 0));
}

/// `fresh`: every transaction after the first counts as a blank, even when
/// a recycle is due too.
pub fn fresh_pattern(factory: HostFactory) {
    let mut d = load(factory, STATEFUL.as_bytes(), PersistencePolicy::Fresh, Limits::default());
    let got = run_bytes(&mut d, &[5, 6, 5, 5]);
    assert_eq!(got, vec![A, rejected(Rejection::Trap(executor_core::TrapCode::Unreachable)), A, A]);
    assert_eq!((d.stats().blanks, d.stats().recycles), (3, 1));
}

/// A recycle leaves a blank instance and restarts the policy's count.
pub fn recycle_restarts_the_count(factory: HostFactory) {
    let mut d = load(factory, STATEFUL.as_bytes(), every_tx(3), Limits::default());
    let dg = denied("global");
    let trap = rejected(Rejection::Trap(executor_core::TrapCode::Unreachable));
    // Without the restart, the blank would come before the 4th transaction.
    assert_eq!(run_bytes(&mut d, &[1, 6, 1, 1, 1, 1]), vec![A, trap, A, dg.clone(), dg, A]);
    assert_eq!((d.stats().blanks, d.stats().recycles), (1, 1));
    assert_eq!(d.stats().recycles_by_cause.get(&RecycleCause::Trap), Some(&1));
}

/// Memory above the watermark after a transaction recycles the instance
/// (whatever the policy), so it never accumulates.
pub fn watermark_recycles(factory: HostFactory) {
    let config =
        DriverConfig { policy: PersistencePolicy::UntilCrash, recycle_watermark: Some(65536), ..Default::default() };
    let mut d = executor_core::Driver::new(factory(Limits::default()), STATEFUL.as_bytes(), config).unwrap();
    assert_eq!(run_bytes(&mut d, &[3, 3, 3]), vec![A, A, A]);
    assert_eq!(d.stats().recycles_by_cause.get(&RecycleCause::Watermark), Some(&2), "{:?}", d.stats());
    assert_eq!(d.memory_in_use(), 2 * 65536, "the last grow is not recycled until needed");
    // The default watermark is half the memory limit: 2 pages of a 4-page limit is not above it.
    let limits = Limits { memory_bytes: 4 * 65536, ..Limits::default() };
    let mut d = load(factory, STATEFUL.as_bytes(), PersistencePolicy::UntilCrash, limits);
    assert_eq!(run_bytes(&mut d, &[3, 3]), vec![A, denied("grown")]);
}

/// A purge frees the instance now and rebuilds it blank when next needed.
pub fn purge_recycles(factory: HostFactory) {
    let mut d = load(factory, STATEFUL.as_bytes(), PersistencePolicy::UntilCrash, Limits::default());
    assert_eq!(run_bytes(&mut d, &[2, 2]), vec![A, denied("memory")]);
    d.purge();
    assert_eq!(d.memory_in_use(), 0);
    assert_eq!(run_bytes(&mut d, &[2]), vec![A]);
    assert_eq!(d.stats().recycles_by_cause.get(&RecycleCause::Purge), Some(&1));
}

const OK_BODY: &str = r#"
  (memory (export "memory") 1)
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0))"#;

/// [`OK_BODY`] without its memory.
const OK_BODY_FUNCS: &str = r#"
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0))"#;

fn module(extra: &str) -> String {
    format!("(module {OK_BODY}\n{extra})")
}

fn load_error(factory: HostFactory, executor: &[u8], limits: Limits) -> Error {
    match executor_core::Driver::new(factory(limits), executor, DriverConfig::default()) {
        Ok(_) => panic!("loaded, but must not: {}", String::from_utf8_lossy(executor)),
        Err(e) => e,
    }
}

/// Load errors name the problem: garbage, each forbidden feature, size
/// limits, missing and mistyped exports, unknown imports, reserved names.
pub fn load_errors(factory: HostFactory) {
    let check = |executor: &[u8], limits: Limits, needle: &str, ok: fn(&Error) -> bool| {
        let e = load_error(factory, executor, limits);
        assert!(ok(&e), "unexpected error kind for {needle:?}: {e:?}");
        assert!(e.to_string().contains(needle), "{e} should mention {needle:?}");
        assert!(!e.is_host_failure());
    };
    let d = Limits::default;
    check(b"\x00\x01garbage\xff", d(), "not a WebAssembly module", |e| matches!(e, Error::NotWasm(_)));
    check(b"(module (func", d(), "not valid WAT", |e| matches!(e, Error::NotWasm(_)));
    check(b"\0asm\x01\0\0\0\x01\x05", d(), "invalid WebAssembly module", |e| matches!(e, Error::InvalidModule(_)));
    check(b"\0asm\x0d\0\x01\0", d(), "component", |e| matches!(e, Error::NotWasm(_)));
    for (feature, extra) in [
        ("SIMD", "(func (drop (v128.const i64x2 0 0)))"),
        ("threads/atomics", "(func (drop (i32.atomic.load (i32.const 0))))"),
        ("tail calls", "(func $f (return_call $f))"),
        ("exceptions", "(tag $e) (func (throw $e))"),
        ("GC", "(type (struct (field i32)))"),
        ("function references", "(type $t (func)) (func (param (ref $t)) (call_ref $t (local.get 0)))"),
        ("extended-const", "(global i32 (i32.add (i32.const 1) (i32.const 2)))"),
        ("multi-memory", "(memory 1)"),
    ] {
        check(module(extra).as_bytes(), d(), feature, |e| matches!(e, Error::ForbiddenFeature { .. }));
    }
    check(
        br#"(module (memory (export "memory") i64 1)
            (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0)))"#,
        d(),
        "memory64",
        |e| matches!(e, Error::ForbiddenFeature { .. }),
    );
    let small = |f: fn(&mut ModuleLimits)| {
        let mut l = Limits::default();
        f(&mut l.module);
        l
    };
    let limit = |e: &Error| matches!(e, Error::ModuleLimit { .. });
    check(module("(func) (func)").as_bytes(), small(|m| m.functions = 3), "functions limit: 4 > 3", limit);
    check(
        module("(func (local i32 i64 f32))").as_bytes(),
        small(|m| m.locals_per_function = 2),
        "locals per function",
        limit,
    );
    check(module("").as_bytes(), small(|m| m.bytes = 50), "module size", limit);
    check(
        module("(global (mut i32) (i32.const 0)) (global i32 (i32.const 0))").as_bytes(),
        small(|m| m.globals = 1),
        "globals",
        limit,
    );
    check(
        module("").replace("(memory (export \"memory\") 1)", "(memory (export \"memory\") 2000)").as_bytes(),
        d(),
        "initial memory (pages) limit: 2000 > 1024",
        limit,
    );
    check(module("(table 20000 funcref)").as_bytes(), d(), "initial table elements", limit);
    let no = |e: &Error| matches!(e, Error::MissingExport(_));
    check(module("").replace("(export \"memory\")", "").as_bytes(), d(), "`memory`", no);
    check(module("").replace("(export \"executor_alloc\")", "").as_bytes(), d(), "`executor_alloc`", no);
    check(module("").replace("(export \"executor_validate\")", "").as_bytes(), d(), "`executor_validate`", no);
    let ty = |e: &Error| matches!(e, Error::ExportType { .. });
    check(
        module("")
            .replace("(param i32 i32) (result i32) (i32.const 0)", "(param i32) (result i32) (i32.const 0)")
            .as_bytes(),
        d(),
        "`executor_validate` must be func (i32, i32) -> (i32), found func (i32) -> (i32)",
        ty,
    );
    check(module("(func (export \"executor_init\") (param i32))").as_bytes(), d(), "`executor_init`", ty);
    check(module("(func (export \"executor_migrate\"))").as_bytes(), d(), "`executor_migrate`", ty);
    check(
        br#"(module (memory 1) (func (export "memory"))
            (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0)))"#,
        d(),
        "`memory` must be a memory",
        ty,
    );
    let imports = |e: &Error| matches!(e, Error::UnknownImport { .. } | Error::ImportType { .. });
    for (import, needle) in [
        (r#"(import "env" "abort" (func))"#, "unknown import `env.abort`"),
        (r#"(import "host" "clock" (func (result i64)))"#, "unknown import `host.clock`"),
        (
            r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
            "wasi_snapshot_preview1.fd_write",
        ),
        (r#"(import "host" "log" (func (param i32)))"#, "import `host.log` must be func (i32, i32, i32) -> ()"),
        (r#"(import "host" "state_get" (global i32))"#, "host.state_get"),
    ] {
        let wat = format!("(module {import} {OK_BODY})");
        check(wat.as_bytes(), d(), needle, imports);
    }
    check(
        module("(global (export \"__executor_host_global_0\") i32 (i32.const 0))").as_bytes(),
        d(),
        "reserved prefix",
        |e| matches!(e, Error::ReservedExport(_)),
    );
    check(
        br#"(module
            (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0)))"#,
        d(),
        "exactly one memory",
        |e| matches!(e, Error::Memory(_)),
    );
}

/// A wasm `start` or `executor_init` that traps, loops, reads world state,
/// or data that does not fit memory, is a load error naming the phase.
pub fn init_failures(factory: HostFactory) {
    let init_failed = |executor: &[u8], phase: &str, reason: &str| {
        let e = load_error(factory, executor, Limits::default());
        match &e {
            Error::InitFailed { phase: p, reason: r } => {
                assert!(p.contains(phase), "{e}: phase should be {phase}");
                assert!(r.contains(reason), "{e}: reason should mention {reason}");
            }
            _ => panic!("expected an init failure, got {e:?}"),
        }
    };
    init_failed(module("(func $s unreachable) (start $s)").as_bytes(), "start", "trap:unreachable");
    init_failed(module("(func $s (loop (br 0))) (start $s)").as_bytes(), "start", "out_of_fuel");
    init_failed(
        module("(func (export \"executor_init\") unreachable)").as_bytes(),
        "executor_init",
        "trap:unreachable",
    );
    init_failed(module("(func (export \"executor_init\") (loop (br 0)))").as_bytes(), "executor_init", "out_of_fuel");
    init_failed(
        module("(func (export \"executor_init\") (drop (memory.grow (i32.const 5000))))").as_bytes(),
        "executor_init",
        "out_of_memory",
    );
    init_failed(fixtures::INIT_READS_STATE.as_bytes(), "executor_init", "state_get");
    init_failed(module("(data (i32.const 65535) \"ab\")").as_bytes(), "instantiation", "memory_out_of_bounds");
}

/// The default executor judges the ledger as the `abi` crate documents.
pub fn default_executor_judges_the_ledger(factory: HostFactory) {
    use abi::{Instruction, Permission, Transaction, reasons};
    let mut d = load(factory, fixtures::DEFAULT_EXECUTOR, every_tx(1), Limits::default());
    let u32le = |v: u32| v.to_le_bytes().to_vec();
    let u64le = |v: u64| v.to_le_bytes().to_vec();
    let entries: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (abi::ADMIN_KEY.to_vec(), u32le(0)),
        (abi::account_key(0).to_vec(), u32le(0)),
        (abi::account_key(1).to_vec(), u32le(1)),
        (abi::account_key(2).to_vec(), u32le(2)),
        (abi::asset_key(7).to_vec(), u64le(1000)),
        (abi::balance_key(1, 7).to_vec(), u64le(100)),
        (abi::balance_key(2, 7).to_vec(), u64le(u64::MAX - 10)),
        (abi::permission_key(1, Permission::MintAsset(7)).to_vec(), vec![1]),
        (abi::permission_key(0, Permission::Grant).to_vec(), vec![1]),
    ];
    let borrowed: Vec<(&[u8], &[u8])> = entries.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    let world = state(&borrowed);
    let wasm = [0u8, 97, 115, 109];
    let cases: Vec<(u32, Instruction<'_>, Verdict)> = vec![
        (1, Instruction::Transfer { from: 1, to: 2, asset: 7, amount: 5 }, A),
        (2, Instruction::Transfer { from: 1, to: 2, asset: 7, amount: 5 }, denied(reasons::NOT_OWNER)),
        (1, Instruction::Transfer { from: 1, to: 2, asset: 7, amount: 101 }, denied(reasons::INSUFFICIENT)),
        (1, Instruction::Transfer { from: 1, to: 9, asset: 7, amount: 1 }, denied(reasons::NO_ACCOUNT)),
        (1, Instruction::Transfer { from: 1, to: 2, asset: 8, amount: 1 }, denied(reasons::NO_ASSET)),
        (1, Instruction::Transfer { from: 1, to: 2, asset: 7, amount: 0 }, denied(reasons::ZERO_AMOUNT)),
        (1, Instruction::Transfer { from: 1, to: 2, asset: 7, amount: 20 }, denied(reasons::OVERFLOW)),
        (1, Instruction::Mint { account: 2, asset: 7, amount: 11 }, denied(reasons::OVERFLOW)),
        (1, Instruction::Mint { account: 1, asset: 7, amount: 3 }, A),
        (2, Instruction::Mint { account: 2, asset: 7, amount: 3 }, denied(reasons::MISSING_PERMISSION)),
        (1, Instruction::Burn { account: 1, asset: 7, amount: 3 }, denied(reasons::MISSING_PERMISSION)),
        (0, Instruction::Grant { account: 1, permission: Permission::BurnAsset(7) }, A),
        (1, Instruction::Grant { account: 2, permission: Permission::Grant }, denied(reasons::MISSING_PERMISSION)),
        // Approved by the rules, but the bytes are no executor.
        (0, Instruction::Upgrade { executor: &wasm }, rejected(Rejection::UpgradeFailed)),
        (1, Instruction::Upgrade { executor: &wasm }, denied(reasons::NOT_ADMIN)),
    ];
    for (i, (authority, instruction, expected)) in cases.into_iter().enumerate() {
        let tx = Transaction { authority, nonce: i as u64, instruction };
        let bytes = postcard::to_allocvec(&tx).unwrap();
        assert_eq!(d.validate(&bytes, world.clone()).unwrap(), expected, "{tx:?}");
    }
    assert_eq!(d.validate(&[0xff; 3], world.clone()).unwrap(), denied(reasons::MALFORMED));
    assert_eq!(d.stats().rejected.get(&RejectionKind::Trap), None);
}

/// Executor upgrades (abi.md): an approved upgrade installs the new
/// executor from the next transaction — after its checks, compile,
/// `executor_migrate` (with world state, on an instance then discarded) and
/// a blank instance; a new executor that cannot load, or whose migration
/// refuses or traps, makes the verdict `rejected(upgrade_failed)` and the
/// old executor stays.
pub fn upgrades_install_or_fail_cleanly(factory: HostFactory) {
    use abi::{Instruction, Transaction};
    let mut d = load(factory, fixtures::DEFAULT_EXECUTOR, every_tx(1), Limits::default());
    let original = d.module().hash_hex();
    let world = state(&[(abi::ADMIN_KEY, &0u32.to_le_bytes()), (&abi::account_key(0), &0u32.to_le_bytes())]);
    let mut nonce = 0;
    let mut upgrade = |d: &mut executor_core::Driver, authority: u32, executor: &[u8]| {
        nonce += 1;
        let tx = Transaction { authority, nonce, instruction: Instruction::Upgrade { executor } };
        d.validate(&postcard::to_allocvec(&tx).unwrap(), world.clone()).unwrap()
    };
    let approve_all = |migrate: &str| {
        format!(
            r#"(module
              (import "host" "state_get" (func $get (param i32 i32 i32 i32) (result i32)))
              (memory (export "memory") 1)
              (data (i32.const 0) "admin")
              (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
              (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0))
              (func (export "executor_migrate") (result i32) {migrate}))"#
        )
    };
    let failed = rejected(Rejection::UpgradeFailed);
    // Cannot load, migration refuses, migration traps, migration runs out of fuel.
    for bad in [
        b"not wasm".to_vec(),
        approve_all("(i32.const 1)").into_bytes(),
        approve_all("(unreachable)").into_bytes(),
        approve_all("(loop $l (br $l)) (i32.const 0)").into_bytes(),
    ] {
        assert_eq!(upgrade(&mut d, 0, &bad), failed);
        assert_eq!(d.module().hash_hex(), original, "the old executor stays");
    }
    // Not the admin: the executor denies; nothing is installed.
    assert!(matches!(upgrade(&mut d, 3, fixtures::DEFAULT_VARIANT), Verdict::Denied { .. }));
    // (Recycles are lazy: the fourth happened before this transaction.)
    assert_eq!(d.stats().recycles_by_cause.get(&RecycleCause::UpgradeFailed), Some(&4));
    // The variant: same rules, other bytes.
    assert_eq!(upgrade(&mut d, 0, fixtures::DEFAULT_VARIANT), A);
    let variant = d.module().hash_hex();
    assert_ne!(variant, original);
    // A migration that reads world state (the admin entry) and accepts;
    // from the next transaction the new executor approves everything,
    // including what the default rules deny.
    let reads =
        approve_all("(i32.ge_s (call $get (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 4)) (i32.const 99))");
    assert_eq!(upgrade(&mut d, 0, reads.as_bytes()), A);
    assert_eq!(upgrade(&mut d, 3, fixtures::DEFAULT_EXECUTOR), A, "served by the new executor");
    assert_eq!(d.module().hash_hex(), original);
    let stats = d.stats();
    assert_eq!(stats.upgrades, 3);
    assert_eq!(stats.recycles_by_cause.get(&RecycleCause::Upgrade), Some(&3));
}

/// Audit mode: every k-th transaction also runs on a blank instance; a
/// different verdict is a state leak — counted, and the warm instance
/// recycled — while the warm verdict stands. An executor that keeps state
/// under `until-crash` is caught; under `every-tx:1` nothing leaks.
pub fn audit_finds_state_leaks(factory: HostFactory) {
    let audited =
        |policy, k: u32| DriverConfig { policy, audit_every: Some(NonZeroU32::new(k).unwrap()), ..Default::default() };
    let host = factory(Limits::default());
    let mut d =
        executor_core::Driver::new(host.clone(), STATEFUL.as_bytes(), audited(PersistencePolicy::UntilCrash, 1))
            .unwrap();
    // tx 2: the warm instance remembers (denied), a blank one approves:
    // the warm verdict stands, the leak is counted, and the recycle makes
    // tx 3 approved again.
    assert_eq!(run_bytes(&mut d, &[2, 2, 2]), vec![A, denied("memory"), A]);
    let stats = d.stats();
    assert_eq!((stats.audits, stats.state_leaks), (3, 1));
    assert_eq!(stats.recycles_by_cause.get(&RecycleCause::AuditMismatch), Some(&1));
    let mut d = executor_core::Driver::new(host.clone(), STATEFUL.as_bytes(), audited(every_tx(1), 2)).unwrap();
    assert_eq!(run_bytes(&mut d, &[5, 5, 5, 5, 5, 5]), vec![A; 6]);
    assert_eq!((d.stats().audits, d.stats().state_leaks), (3, 0));
}

/// The memory cap is checked at load, with an error that says what to
/// change; within it the same executor loads.
pub fn memory_cap_is_checked_at_load(factory: HostFactory) {
    let big = Limits { memory_bytes: 512 << 20, ..Limits::default() };
    let e = executor_core::Driver::new(factory(big.clone()), HOSTILE.as_bytes(), DriverConfig::default()).unwrap_err();
    assert!(matches!(e, Error::MemoryCap { cap, .. } if cap == 1 << 30), "{e}");
    assert!(e.to_string().contains("memory_cap"), "{e}");
    let raised = Limits { memory_cap: 8 << 30, ..big };
    executor_core::Driver::new(factory(raised), HOSTILE.as_bytes(), DriverConfig::default()).unwrap();
}

/// More instances than one engine store may ever hold (wasmtime caps a
/// store at 10,000): every rebuild must use a new store.
pub fn many_instances_do_not_exhaust_the_store(factory: HostFactory) {
    let mut d = load(factory, HOSTILE.as_bytes(), PersistencePolicy::Fresh, Limits::default());
    let empty = state(&[]);
    for i in 0..10_001 {
        assert_eq!(d.validate(&[0], empty.clone()).unwrap(), A, "transaction {i}");
    }
    assert_eq!(d.stats().instances_built, 10_001, "one at load, one per later transaction");
}

/// Fuel follows abi.md's documented costs exactly (`instrument::cost`):
/// for each executor, the least budget that approves is the count of its
/// instructions plus the documented extras, and one unit less is
/// `out_of_fuel`.
pub fn fuel_follows_the_documented_costs(factory: HostFactory) {
    use executor_core::instrument::cost;
    // `executor_alloc` is `i32.const 1024; end`: 2 units.
    let cases: [(&str, &str, u64); 4] = [
        ("returns at once", "(i32.const 0)", 2 + 2),
        (
            "a host call with 5 bytes",
            "(call $log (i32.const 2) (i32.const 0) (i32.const 5)) (i32.const 0)",
            2 + 6 + cost::HOST_CALL + 5 * cost::HOST_BYTE,
        ),
        (
            "memory.fill of 10 bytes",
            "(memory.fill (i32.const 0) (i32.const 0) (i32.const 10)) (i32.const 0)",
            2 + 6 + 10,
        ),
        (
            // loop (1), 10 iterations of 7, then end, i32.const, end (3)
            "a loop of 10 iterations",
            "(loop $l (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 10)))) (i32.const 0)",
            2 + 1 + 70 + 3,
        ),
    ];
    for (name, body, expected) in cases {
        let wat = format!(
            r#"(module
              (import "host" "log" (func $log (param i32 i32 i32)))
              (memory (export "memory") 1)
              (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
              (func (export "executor_validate") (param i32 i32) (result i32) (local $i i32) {body}))"#
        );
        for (fuel, verdict) in [(expected, A), (expected - 1, rejected(Rejection::OutOfFuel))] {
            let mut d = load(factory, wat.as_bytes(), every_tx(1), Limits { fuel, ..Limits::default() });
            assert_eq!(run_bytes(&mut d, &[0]), vec![verdict], "{name} with {fuel} fuel");
        }
    }
}

/// A `/proc/self/status` figure in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}

/// Every way an executor can try to exhaust the host's memory — one huge
/// grow, many small ones, a table bomb, deep recursion (from
/// [`fixtures::HOSTILE`]), a 16 MiB data segment, and 100 upgrades between
/// two executors — under every policy: each gets its documented verdict,
/// the next transaction is served, and the process's peak RSS stays under
/// 512 MiB. Run it in a test binary of its own.
pub fn oom_attempts_are_survived(factory: HostFactory) {
    let policies = [PersistencePolicy::Fresh, every_tx(1), every_tx(7), every_block(1), PersistencePolicy::UntilCrash];
    let memory_cases: Vec<_> = HOSTILE_CASES.iter().filter(|(b, _, _)| (1..=5).contains(b)).collect();
    let big_data = format!(
        r#"(module (memory (export "memory") 300) (data (i32.const 1048576) "{}")
             {OK_BODY_FUNCS})"#,
        "a".repeat(16 << 20)
    );
    let empty = state(&[]);
    let world = state(&[(abi::ADMIN_KEY, &0u32.to_le_bytes())]);
    for policy in policies {
        let mut d = load(factory, HOSTILE.as_bytes(), policy, Limits::default());
        for (byte, name, expected) in &memory_cases {
            assert_eq!(run_bytes(&mut d, &[*byte, 0]), vec![expected.clone(), A], "{name} under {policy}");
        }
        let mut d = load(factory, big_data.as_bytes(), policy, Limits::default());
        for i in 0..5 {
            assert_eq!(d.validate(&[0], empty.clone()).unwrap(), A, "16 MiB data segment, tx {i} under {policy}");
        }
        let mut d = load(factory, fixtures::DEFAULT_EXECUTOR, policy, Limits::default());
        let rounds = if policy == PersistencePolicy::UntilCrash { 100 } else { 10 };
        for i in 0..rounds {
            let executor = if i % 2 == 0 { fixtures::DEFAULT_VARIANT } else { fixtures::DEFAULT_EXECUTOR };
            let tx = abi::Transaction { authority: 0, nonce: i, instruction: abi::Instruction::Upgrade { executor } };
            assert_eq!(d.validate(&postcard::to_allocvec(&tx).unwrap(), world.clone()).unwrap(), A, "upgrade {i}");
        }
        assert_eq!(d.stats().upgrades, rounds);
    }
    let peak = status_bytes("VmHWM:");
    assert!(peak < 512 << 20, "peak RSS {} MiB", peak >> 20);
}

/// An executor that grows memory by a resident page on every transaction,
/// under `until-crash` with the default 64 MiB limit, for 100,000
/// transactions: recycled at the watermark (half the limit), it never gets
/// `out_of_memory`, its memory never passes the watermark by more than the
/// page, and the process's peak RSS stays under 256 MiB. Run it in a test
/// binary of its own (after [`load_run_drop_does_not_leak`] at most).
pub fn growing_executor_stays_bounded(factory: HostFactory) {
    let limits = Limits::default();
    let watermark = limits.memory_bytes / 2;
    let mut d = load(factory, fixtures::GROWS.as_bytes(), PersistencePolicy::UntilCrash, limits);
    let empty = state(&[]);
    for i in 0..100_000 {
        assert_eq!(d.validate(&[0], empty.clone()).unwrap(), A, "transaction {i}");
        assert!(d.memory_in_use() <= watermark + 65536, "transaction {i}: {} bytes", d.memory_in_use());
    }
    let recycles = d.stats().recycles_by_cause.get(&RecycleCause::Watermark).copied().unwrap_or(0);
    assert!(recycles >= 100_000 / 512 - 1, "recycled at the watermark: {recycles}");
    let peak = status_bytes("VmHWM:");
    assert!(peak < 256 << 20, "peak RSS {} MiB", peak >> 20);
}

/// Loads an executor, runs transactions that trap (forcing recycles),
/// upgrades it to the default executor and then to its variant, and drops
/// it, 1,000 times: the process's RSS after the last cycle stays within
/// 16 MiB of RSS after the 10th — no store, memory reservation or compiled
/// code survives its executor. Run it in a test binary of its own so
/// nothing else moves the number.
pub fn load_run_drop_does_not_leak(factory: HostFactory) {
    let host = factory(Limits::default());
    let state = state(&[(abi::ADMIN_KEY, &0u32.to_le_bytes())]);
    let upgrade = |executor| {
        let tx = abi::Transaction { authority: 0, nonce: 0, instruction: abi::Instruction::Upgrade { executor } };
        postcard::to_allocvec(&tx).unwrap()
    };
    let upgrades = [upgrade(fixtures::DEFAULT_EXECUTOR), upgrade(fixtures::DEFAULT_VARIANT)];
    let mut after_10th = 0;
    for cycle in 1..=1_000 {
        let mut d = executor_core::Driver::new(host.clone(), HOSTILE.as_bytes(), DriverConfig::default())
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        for payload in [&[0u8][..], &[6], &[0], &[3], &[0], &upgrades[0], &upgrades[1]] {
            let v = d.validate(payload, state.clone()).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            assert!(payload.len() == 1 || v == A, "cycle {cycle}: upgrade {v:?}");
        }
        assert_eq!((d.stats().recycles, d.stats().upgrades), (4, 2), "cycle {cycle}");
        drop(d);
        if cycle == 10 {
            after_10th = rss_bytes();
        }
    }
    let last = rss_bytes();
    assert!(
        last <= after_10th + (16 << 20),
        "RSS grew from {} MiB after the 10th cycle to {} MiB after the 1,000th",
        after_10th >> 20,
        last >> 20
    );
}
