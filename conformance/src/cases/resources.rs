//! Bounded memory: every way to exhaust it is survived, a growing executor stays bounded, and nothing leaks across 1,000 loads. Each reads the process's RSS: run them in a test binary of their own (see [`crate::memory_suite!`]).

use super::*;

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
