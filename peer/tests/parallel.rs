//! In-order parallel validation through `peer run`'s own loop, on every
//! compiled-in backend: `--threads 1, 2, 3, 8` give the verdict and state
//! digests of the run without `--threads` — on the default executor, on
//! fixtures, and on `sigcheck` — with and without hot accounts, with an
//! upgrade in the middle of a block; and the in-order and pre-validation
//! workers count together against `memory_cap`.

use executor_core::PersistencePolicy;
use peer::backends;
use peer::run::{Executor, RunSettings, run};
use std::num::NonZeroUsize;

const SIGCHECK: &[u8] = include_bytes!("../../executors/bench/sigcheck.wasm");

fn fixture(name: &str) -> Executor {
    let path = format!("{}/../executors/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    Executor { name: name.into(), bytes: std::fs::read(path).expect("fixture") }
}

/// `executor` on `backend`: the digests of the run without `--threads`,
/// then the same run on each worker count, which must equal them.
fn digests_agree(backend: backends::BackendKind, executor: &Executor, base: &RunSettings) {
    let settings = RunSettings {
        // Small instances, so that eight workers fit in the default cap.
        limits: executor_core::Limits { memory_bytes: 8 << 20, ..base.limits.clone() },
        backend,
        executor: executor.clone(),
        ..base.clone()
    };
    let one = run(&settings, &mut |_| {}).unwrap_or_else(|e| panic!("{backend} {}: {e}", executor.name));
    assert_eq!(one.threads, 1);
    for threads in [1, 2, 3, 8] {
        let s = RunSettings { threads: NonZeroUsize::new(threads), ..settings.clone() };
        let r = run(&s, &mut |_| {}).unwrap_or_else(|e| panic!("{backend} {} × {threads}: {e}", executor.name));
        let what = format!("{backend}, {}, {threads} threads, hot {}%", executor.name, s.hot_percent);
        assert_eq!(r.threads, threads, "{what}: every worker fits");
        assert_eq!(
            (&r.verdict_digest, &r.state_digest),
            (&one.verdict_digest, &one.state_digest),
            "{what}: inconsistent output"
        );
        assert_eq!(
            (r.stats.transactions, r.stats.approved, r.stats.upgrades),
            (one.stats.transactions, one.stats.approved, one.stats.upgrades),
            "{what}"
        );
        let p = &r.parallel;
        assert_eq!(p.executions, r.stats.transactions + p.reexecutions + p.taken_over, "{what}");
    }
}

fn base(transactions: u64) -> RunSettings {
    let backend = backends::default_backend().expect("a backend is compiled in");
    let mut s = RunSettings::new(backend, PersistencePolicy::default(), Executor::default_executor());
    s.transactions = transactions;
    s.block_size = 50;
    s
}

#[test]
fn default_executor_digests_equal_on_every_worker_count() {
    for backend in backends::compiled_in() {
        for hot_percent in [0, 50] {
            let s = RunSettings { hot_percent, ..base(600) };
            digests_agree(backend, &Executor::default_executor(), &s);
        }
    }
}

#[test]
fn upgrades_mid_block_keep_the_digests() {
    for backend in backends::compiled_in() {
        let s = RunSettings { upgrade_every: Some(2), upgrade_offset: 23, hot_percent: 30, ..base(400) };
        digests_agree(backend, &Executor::default_executor(), &s);
    }
}

#[test]
fn fixtures_digests_equal_on_every_worker_count() {
    for backend in backends::compiled_in() {
        for name in ["reads_state.wat", "loops_sometimes.wat", "stateful.wat", "grows.wat"] {
            digests_agree(backend, &fixture(name), &RunSettings { hot_percent: 20, ..base(200) });
        }
    }
}

#[test]
fn sigcheck_digests_equal_on_every_worker_count() {
    let sigcheck = Executor { name: "sigcheck".into(), bytes: SIGCHECK.to_vec() };
    for backend in backends::compiled_in() {
        digests_agree(backend, &sigcheck, &RunSettings { hot_percent: 50, ..base(100) });
    }
}

#[test]
fn workers_beyond_the_memory_cap_are_not_started() {
    // At the default 64 MiB memory limit a 1 GiB cap fits one driver of
    // the default executor (its own estimate, with compilation's peak, and
    // a worker's are 0.78 and 0.31 GiB): `--threads 3 --prevalidate 2`
    // runs 1 + 1.
    let limits = executor_core::Limits { memory_cap: 1 << 30, ..executor_core::Limits::default() };
    let s = RunSettings {
        limits: limits.clone(),
        threads: NonZeroUsize::new(3),
        prevalidate: NonZeroUsize::new(2),
        ..base(100)
    };
    let r = run(&s, &mut |_| {}).unwrap();
    assert_eq!((r.threads, r.prevalidate), (1, Some(1)), "{:?}", r.notes);
    assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
    assert!(r.notes[0].starts_with("--threads 3: memory_cap"), "{:?}", r.notes);
    let one = run(&base(100), &mut |_| {}).unwrap();
    assert_eq!(r.verdict_digest, one.verdict_digest);
    // Under a policy that carries state, one thread, said so.
    let s = RunSettings { threads: NonZeroUsize::new(2), policy: "until-crash".parse().unwrap(), ..base(100) };
    let r = run(&s, &mut |_| {}).unwrap();
    assert_eq!(r.threads, 1);
    assert!(r.notes.iter().any(|n| n.contains("carries state")), "{:?}", r.notes);
}
