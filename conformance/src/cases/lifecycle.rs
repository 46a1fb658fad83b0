//! An executor's life beyond one instance: upgrades, audits, and more instances than one engine store may hold.

use super::*;

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
