//! Blanking and the persistence policies: what a blank restores, each policy's pattern of blanks, and the recycles that happen whatever the policy.

use super::*;

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
