//! What a transaction wrote, tracked exactly: under every blank method,
//! every write pattern of [`fixtures::DIRTY`] is undone by the next blank,
//! and a store that traps never leaves a mark from an unchecked address.

use super::*;
use executor_core::{BlankMethod, Driver, TrapCode};

/// [`fixtures::DIRTY`] on the backend under `policy`, blanking by `blank`.
fn dirty(factory: HostFactory, policy: PersistencePolicy, blank: BlankMethod) -> Driver {
    let config = DriverConfig { policy, blank, ..DriverConfig::default() };
    Driver::new(factory(Limits::default()), fixtures::DIRTY.as_bytes(), config)
        .unwrap_or_else(|e| panic!("load failed: {e}"))
}

/// The patterns: grouped stores spanning two pages, a store spilling into
/// the next page, a fill over three pages, a base rewritten mid-run, a
/// loop advancing its base, a branch out mid-run, a narrow store whose
/// address and value are one value, addresses computed as base +
/// constant (spanning, spilling, chained, negative, wrapping), a group
/// across a 64 KiB span of the map's summary, and loops whose marks are
/// hoisted to their ways out (fall-through, `br`, `br_if` with and without
/// a value, `br_table`, `return`; nested; bases stepped up and down, past
/// 2^32 and below 0; unchanged bases), and a callee writing through its
/// pointer parameter (called with base + constant, with another pointer,
/// through the table, in a loop); and a function of so many stores that
/// its marks skip the map test. Each is undone by the next blank
/// (restored in place or rebuilt), and each really writes (under
/// `until-crash` the check that follows finds it).
pub fn every_write_is_undone_by_the_next_blank(factory: HostFactory) {
    let patterns = [1u8, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];
    for blank in [BlankMethod::Restore, BlankMethod::Rebuild, BlankMethod::Auto] {
        let mut d = dirty(factory, every_tx(1), blank);
        assert_eq!(run_bytes(&mut d, &[0]), vec![A], "{blank}: blank memory to start with");
        for k in patterns {
            assert_eq!(run_bytes(&mut d, &[k, 0]), vec![A, A], "{blank}: pattern {k} left a byte behind");
        }
        for k in patterns {
            let mut warm = dirty(factory, PersistencePolicy::UntilCrash, blank);
            assert_eq!(run_bytes(&mut warm, &[k, 0]), vec![A, denied("dirty")], "{blank}: pattern {k} writes");
        }
    }
    // A function of more stores than core marks with a test of the map
    // (`instrument::dirty::BRANCHLESS_ABOVE`): unconditional marks.
    let stores: String =
        (0..1100).map(|k| format!("(i32.store (i32.const {}) (i32.const 1))\n", 2048 + 96 * k)).collect();
    let many = fixtures::DIRTY.replace(";; 11-19: loops", &format!("{stores}(return (i32.const 0))\n;; 11-19: loops"));
    // Pattern 11 of the copy runs the stores instead (its own code is dead).
    let config = |policy, blank| DriverConfig { policy, blank, ..DriverConfig::default() };
    for blank in [BlankMethod::Restore, BlankMethod::Auto] {
        let mut d = Driver::new(factory(Limits::default()), many.as_bytes(), config(every_tx(1), blank)).unwrap();
        assert_eq!(run_bytes(&mut d, &[11, 0, 11, 0]), vec![A; 4], "{blank}: many stores left a byte behind");
        let until_crash = config(PersistencePolicy::UntilCrash, blank);
        let mut warm = Driver::new(factory(Limits::default()), many.as_bytes(), until_crash).unwrap();
        assert_eq!(run_bytes(&mut warm, &[11, 0]), vec![A, denied("dirty")], "{blank}: many stores write");
    }
}

/// A group of stores whose last one traps: `memory_out_of_bounds` (a
/// mark from the unchecked address would have landed in the host's cells
/// or flags and changed the verdict), and the recycled instance is blank.
pub fn a_trap_in_a_group_of_stores_leaves_no_wild_mark(factory: HostFactory) {
    let oob = rejected(Rejection::Trap(TrapCode::MemoryOutOfBounds));
    for blank in [BlankMethod::Restore, BlankMethod::Rebuild] {
        for policy in [every_tx(1), PersistencePolicy::UntilCrash] {
            let mut d = dirty(factory, policy, blank);
            assert_eq!(run_bytes(&mut d, &[7, 0, 7, 0]), vec![oob.clone(), A, oob.clone(), A], "{blank} {policy}");
            assert_eq!(d.stats().recycles_by_cause.get(&RecycleCause::Trap), Some(&2), "{blank} {policy}");
        }
    }
}

/// A store-heavy executor whose memory grows in every transaction makes
/// every blank a rebuild: `auto` then drops the write barrier (nothing it
/// marks is ever restored in place), and verdicts stay the same.
pub fn auto_drops_the_barrier_when_blanks_rebuild_anyway(factory: HostFactory) {
    // Grows memory by a page and writes to it, every transaction.
    let wat = r#"(module
      (memory (export "memory") 1)
      (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "executor_validate") (param i32 i32) (result i32)
        (i32.store (i32.mul (memory.grow (i32.const 1)) (i32.const 65536)) (i32.const 1))
        (i32.const 0)))"#;
    let limits = Limits::default();
    let mut d = Driver::new(factory(limits), wat.as_bytes(), DriverConfig::default()).expect("loads");
    let payloads: Vec<[u8; 1]> = vec![[0]; 64];
    let verdicts = run(&mut d, &payloads.iter().map(|p| &p[..]).collect::<Vec<_>>());
    assert!(verdicts.iter().all(|v| *v == A), "{verdicts:?}");
    // The untracked variant is prepared in the background: wait for it.
    for _ in 0..200 {
        if d.stats().tracking == executor_core::instrument::Tracking::Off {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        run(&mut d, &[&[0]]);
    }
    assert_eq!(d.stats().tracking, executor_core::instrument::Tracking::Off, "{:?}", d.stats());
    assert_eq!(run_bytes(&mut d, &[0, 0, 0]), vec![A; 3]);
    // A light executor whose blanks restore keeps the barrier.
    let mut light = load(factory, STATEFUL.as_bytes(), every_tx(1), Limits::default());
    run_bytes(&mut light, &[2; 32]);
    assert_eq!(light.stats().tracking, executor_core::instrument::Tracking::Barrier);
}

/// The switch to the untracked variant never changes a verdict: it
/// replaces the instance only where the policy replaces it anyway (a
/// scheduled blank or a recycle), so the warm state kept between blanks is
/// the same whenever the background work finishes. Under `every-tx:3` an
/// executor that counts its transactions in a global (and grows memory, so
/// every blank rebuilds and `auto` switches) approves exactly every third;
/// under `until-crash` `auto` loads without the barrier at once.
pub fn auto_switches_only_where_the_instance_is_replaced(factory: HostFactory) {
    let wat = r#"(module
      (memory (export "memory") 1)
      (global $n (mut i32) (i32.const 0))
      (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "executor_validate") (param i32 i32) (result i32)
        (drop (memory.grow (i32.const 1)))
        (global.set $n (i32.add (global.get $n) (i32.const 1)))
        (i32.ne (global.get $n) (i32.const 1))))"#;
    let mut d = Driver::new(
        factory(Limits::default()),
        wat.as_bytes(),
        DriverConfig { policy: every_tx(3), ..DriverConfig::default() },
    )
    .expect("loads");
    let mut verdicts = Vec::new();
    for _ in 0..400 {
        verdicts.extend(run(&mut d, &[&[0], &[0], &[0]]));
        if d.stats().tracking == executor_core::instrument::Tracking::Off && verdicts.len() > 48 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(d.stats().tracking, executor_core::instrument::Tracking::Off, "{:?}", d.stats());
    verdicts.extend(run(&mut d, &[&[0u8][..]; 9]));
    for (i, v) in verdicts.iter().enumerate() {
        let expected = if i % 3 == 0 { A } else { denied("") };
        assert_eq!(*v == A, expected == A, "transaction {i}: {v:?} ({:?})", d.stats());
    }
    let warm = Driver::new(
        factory(Limits::default()),
        wat.as_bytes(),
        DriverConfig { policy: PersistencePolicy::UntilCrash, ..DriverConfig::default() },
    )
    .expect("loads");
    assert_eq!(warm.stats().tracking, executor_core::instrument::Tracking::Off);
}

/// A module that writes memory in more places than the barrier's budget
/// ([`executor_core::instrument::dirty::MAX_TRACKED_WRITES`]; its
/// compilation would break the load budget) loads without the barrier,
/// whatever blank method was asked, and every pattern is still undone by
/// the next blank — by a rebuild.
pub fn a_module_past_the_barriers_budget_blanks_by_rebuilding(factory: HostFactory) {
    use executor_core::instrument::{Tracking, dirty::MAX_TRACKED_WRITES};
    // Functions no transaction calls, of 8,192 stores each (under the
    // per-function instruction limit), as many as it takes to pass the
    // budget: with DIRTY's own stores, past it.
    let per = 8192u64;
    let function: String = format!("(func {})\n", "(i32.store (i32.const 0) (i32.const 1))".repeat(per as usize));
    let with = |functions: u64| {
        let anchor = "(func (export \"executor_alloc\")";
        fixtures::DIRTY.replacen(anchor, &format!("{}{anchor}", function.repeat(functions as usize)), 1)
    };
    let (at, over) = (with(MAX_TRACKED_WRITES / per - 1), with(MAX_TRACKED_WRITES.div_ceil(per)));
    let config = |policy, blank| DriverConfig { policy, blank, ..DriverConfig::default() };
    let under =
        Driver::new(factory(Limits::default()), at.as_bytes(), config(every_tx(1), BlankMethod::Restore)).unwrap();
    assert_eq!(under.stats().tracking, Tracking::Barrier, "under the budget: the barrier");
    for blank in [BlankMethod::Restore, BlankMethod::Auto] {
        let mut d = Driver::new(factory(Limits::default()), over.as_bytes(), config(every_tx(1), blank)).unwrap();
        assert_eq!(d.stats().tracking, Tracking::Off, "{blank}: past the budget, no barrier");
        for k in [1u8, 3, 11, 20] {
            assert_eq!(run_bytes(&mut d, &[k, 0]), vec![A, A], "{blank}: pattern {k} left a byte behind");
        }
        let mut warm =
            Driver::new(factory(Limits::default()), over.as_bytes(), config(PersistencePolicy::UntilCrash, blank))
                .unwrap();
        assert_eq!(run_bytes(&mut warm, &[1, 0]), vec![A, denied("dirty")], "{blank}: pattern 1 writes");
    }
}
