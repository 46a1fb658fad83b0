//! Loading an executor: load errors that name the problem, init failures, the memory cap, and the default executor judging the ledger.

use super::*;

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

/// A wasm `start` or `executor_init` that traps, loops, runs out of memory
/// or reads world state is a load error naming the phase.
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
}

/// A data or element segment that does not fit its memory or table would
/// fail instantiation — on each engine with its own error, on one as an
/// internal error — so it is a load error naming the segment on every
/// backend; one that ends exactly at the edge loads.
pub fn segments_out_of_bounds_are_load_errors(factory: HostFactory) {
    let tables = "(table 2 funcref) (table 3 funcref) (func $f)";
    let fits = [
        "(data (i32.const 65534) \"ab\")".to_string(),
        "(data (i32.const 65536) \"\")".to_string(),
        format!("{tables} (elem (i32.const 1) $f)"),
        format!("{tables} (elem (table 1) (i32.const 0) func $f $f $f)"),
        format!("{tables} (elem (table 1) (i32.const 1) funcref (ref.func $f) (ref.null func))"),
    ];
    for extra in &fits {
        load(factory, module(extra).as_bytes(), every_tx(1), Limits::default());
    }
    for (extra, needle) in [
        (
            "(data (i32.const 65535) \"ab\")".to_string(),
            "data segment 0 writes bytes 65535..65537 of memory 0, which has 65536",
        ),
        ("(data \"passive\") (data (i32.const 65537) \"\")".to_string(), "data segment 1 writes bytes 65537..65537"),
        ("(data (i32.const -1) \"a\")".to_string(), "bytes 4294967295..4294967296"),
        (
            format!("{tables} (elem (i32.const 1) $f $f)"),
            "element segment 0 writes elements 1..3 of table 0, which has 2",
        ),
        (format!("{tables} (elem (table 1) (i32.const 1) func $f $f $f)"), "elements 1..4 of table 1, which has 3"),
        (
            format!("{tables} (elem (table 1) (i32.const 3) funcref (ref.func $f))"),
            "element segment 0 writes elements 3..4 of table 1",
        ),
    ] {
        let e = load_error(factory, module(&extra).as_bytes(), Limits::default());
        assert!(matches!(e, Error::SegmentOutOfBounds { .. }), "{extra}: {e:?}");
        assert!(e.to_string().contains(needle), "{e} should mention {needle:?}");
        assert!(!e.is_host_failure());
    }
}

/// The memory cap is checked at load, with an error that says what to
/// change; within it the same executor loads.
pub fn memory_cap_is_checked_at_load(factory: HostFactory) {
    let big = Limits { memory_bytes: 1 << 30, ..Limits::default() };
    let e = executor_core::Driver::new(factory(big.clone()), HOSTILE.as_bytes(), DriverConfig::default()).unwrap_err();
    assert!(matches!(e, Error::MemoryCap { cap, .. } if cap == 2 << 30), "{e}");
    assert!(e.to_string().contains("memory_cap"), "{e}");
    let raised = Limits { memory_cap: 16 << 30, ..big };
    executor_core::Driver::new(factory(raised), HOSTILE.as_bytes(), DriverConfig::default()).unwrap();
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
    assert_eq!(d.stats().rejected.get(&RejectionKind::Trap), Some(&0), "every kind is counted from the start");
}

/// Each engine limit core promises ([`executor_core::module::engine_limits`],
/// checked on the instrumented module) at the edge: a module exactly at it
/// loads and runs on every backend, one past it is a load error naming the
/// limit — never an engine's own failure.
pub fn engine_limits_hold_at_the_edge(factory: HostFactory) {
    use executor_core::module::engine_limits;
    let body = |f: &str| module(f);
    // An `f64` result that may be a NaN uses the last of the
    // instrumentation's temporaries, so every one of them is declared (a
    // function declares only those up to the last it uses).
    let all_temps = "(drop (f64.add (f64.const 0) (f64.const 0)))";
    let locals = |n: u64| body(&format!("(func (param i32 i32) (local {}) {all_temps})", "i32 ".repeat(n as usize)));
    let br_table =
        |n: u64| body(&format!("(func (param i32) (block (br_table {} (local.get 0))))", "0 ".repeat(n as usize + 1)));
    // `return` drops the rest: the deepest stack in few instructions.
    let deep = |n: u64| body(&format!("(func {all_temps} {} (return))", "(i32.const 1)".repeat(n as usize)));
    let added = u64::from(executor_core::instrument::ADDED_LOCALS);
    // Locals: parameters and the instrumentation's temporaries count.
    let at = engine_limits::LOCALS - added - 2;
    // Slots: twice the locals (the temporaries only) plus the deepest stack.
    let depth = engine_limits::SLOTS - 2 * added;
    let edges: [(String, String, &str); 3] = [
        (locals(at), locals(at + 1), "locals per function (parameters included)"),
        (br_table(engine_limits::BR_TABLE_TARGETS), br_table(engine_limits::BR_TABLE_TARGETS + 1), "br_table targets"),
        (deep(depth), deep(depth + 1), "twice the locals plus operand stack depth"),
    ];
    // The deepest stack takes more instructions than the default
    // per-function limit allows: raised, so the engines' limit is the one
    // that holds.
    let limits = Limits {
        module: ModuleLimits { instructions_per_function: 100_000, ..ModuleLimits::default() },
        ..Limits::default()
    };
    for (fits, past, name) in edges {
        let mut d = load(factory, fits.as_bytes(), every_tx(1), limits.clone());
        assert_eq!(run_bytes(&mut d, &[0]), vec![A], "{name}: at the limit it runs");
        let e = load_error(factory, past.as_bytes(), limits.clone());
        assert!(matches!(e, Error::ModuleLimit { .. }), "{name}: {e:?}");
        assert!(e.to_string().contains(name), "{e} should name {name:?}");
    }
}

/// The limits that bound what loading costs (`functions`, `types`,
/// `nesting_depth`, `instructions_per_function`, `instructions`,
/// `locals`): each case of [`crate::load_budget::worst_cases`] at a small
/// limit loads and runs; one past it is a load error naming the limit.
pub fn load_limits_hold_at_the_edge(factory: HostFactory) {
    let small = ModuleLimits {
        functions: 60,
        types: 40,
        nesting_depth: 12,
        instructions_per_function: 400,
        instructions: 3_000,
        locals: 900,
        locals_per_function: 200,
        segments: 300,
        globals: 50,
        exports: 50,
        ..ModuleLimits::default()
    };
    let limits = Limits { module: small.clone(), ..Limits::default() };
    let past: [(&str, ModuleLimits); 7] = [
        ("functions", ModuleLimits { functions: small.functions + 1, ..small.clone() }),
        ("types", ModuleLimits { types: small.types + 1, ..small.clone() }),
        ("nesting", ModuleLimits { nesting_depth: small.nesting_depth + 1, ..small.clone() }),
        (
            "one big function",
            ModuleLimits { instructions_per_function: small.instructions_per_function + 1, ..small.clone() },
        ),
        (
            "loops in one big function",
            ModuleLimits { instructions_per_function: small.instructions_per_function + 1, ..small.clone() },
        ),
        ("instructions in every function", ModuleLimits { instructions: small.instructions + 1, ..small.clone() }),
        ("locals", ModuleLimits { locals: small.locals + 1, ..small.clone() }),
    ];
    for case in crate::load_budget::worst_cases(&small) {
        let mut d = load(factory, &case.wasm, every_tx(1), limits.clone());
        assert_eq!(run_bytes(&mut d, &[0]), vec![A], "{}: at the limit it loads and runs", case.name);
    }
    for (name, over) in past {
        let case = crate::load_budget::worst_cases(&over).into_iter().find(|c| c.name == name).expect("a case");
        let e = load_error(factory, &case.wasm, limits.clone());
        let expected = format!("the module exceeds the {} limit: {} > {}", case.limit, case.value, case.value - 1);
        assert_eq!(e.to_string(), expected, "{name}: one past the limit");
    }
}
