//! Blank-cost benchmark: ratios measured in one process, interleaved,
//! median of several rounds, on every compiled-in backend.
//!
//! ```sh
//! cargo run --release -p peer --bin bench-blank [-- --transactions N --rounds R --json]
//! ```
//!
//! Figures (each a ratio of two measurements of this run):
//! - `blank_vs_warm`: a scheduled blank of an executor that dirtied four
//!   4 KiB pages (1 MiB memory) ÷ a warm transaction of the empty executor
//!   (target ≤ 4; wasmer ≤ 6);
//! - `blank_16mib_vs_1mib`: the same blank with 16 MiB of memory ÷ with
//!   1 MiB (target ≤ 1.5);
//! - `heavy_init_every_tx_vs_until_crash`: throughput under `every-tx:1` ÷
//!   `until-crash` on an executor whose `executor_init` takes over 1 ms
//!   (target ≥ 0.8), with the speed-ups over `fresh` beside it;
//! - `sigcheck_every_tx_vs_until_crash`: the same on the realistic heavy
//!   executor (`executors/bench/sigcheck.wasm`: an ed25519 check per
//!   transaction, hundreds of µs; target ≥ 0.95), over `--sig-transactions`
//!   transactions (default 1,000);
//! - `heavy_init_rebuild_init_vs_snapshot`, `sigcheck_rebuild_init_vs_snapshot`:
//!   a recycle (purge, then the rebuild) that runs `executor_init` ÷ one
//!   that adopts the blank snapshot, with both means in ms beside them.

use executor_core::{BlankMethod, Driver, DriverConfig, Limits, PersistencePolicy, SharedState};
use peer::BackendKind;
use peer::backends;
use peer::bench::median;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const EMPTY: &str = include_str!("../../../executors/bench/empty.wat");
const DIRTY4: &str = include_str!("../../../executors/bench/dirty4.wat");
const HEAVY_INIT: &str = include_str!("../../../executors/bench/heavy_init.wat");
const SIGCHECK: &[u8] = include_bytes!("../../../executors/bench/sigcheck.wasm");

struct Measure {
    /// Mean time per transaction in `validate` (blank included).
    per_tx: Duration,
    /// Mean time of one instance build (instantiate + init), timed.
    per_build: Duration,
}

/// The engine to measure: a backend, blanking by restore or (measured on
/// wasmtime, where it maps a copy-on-write slot) by rebuild.
#[derive(Clone, Copy, Debug)]
struct Subject {
    backend: BackendKind,
    blank: BlankMethod,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.blank {
            BlankMethod::Rebuild => write!(f, "{} (blank = rebuild: pooled re-instantiation)", self.backend),
            _ => write!(f, "{}", self.backend),
        }
    }
}

fn measure(kind: Subject, executor: &[u8], policy: PersistencePolicy, n: u32) -> Measure {
    let host = backends::host(kind.backend, Limits::default()).unwrap_or_else(|e| panic!("{kind}: {e}"));
    // Timings only where a build is timed: clock reads would otherwise
    // weigh on sub-microsecond transactions.
    let timings = policy == PersistencePolicy::Fresh;
    let config = DriverConfig { policy, timings, blank: kind.blank, ..Default::default() };
    let mut driver = Driver::new(host, executor, config).unwrap_or_else(|e| panic!("{kind}: {e}"));
    let state: SharedState = Arc::new(BTreeMap::<Vec<u8>, Vec<u8>>::new());
    // Warm up: code paths, page faults, pool slots.
    for i in 0..n.min(200) {
        driver.validate(&[i as u8], state.clone()).expect("no host failure");
    }
    let before = driver.stats().clone();
    let started = Instant::now();
    for i in 0..n {
        driver.validate(&[i as u8], state.clone()).expect("no host failure");
    }
    let elapsed = started.elapsed();
    let s = driver.stats();
    let builds = (s.instances_built - before.instances_built).max(1) as u32;
    Measure { per_tx: elapsed / n, per_build: (s.build_histogram.sum() - before.build_histogram.sum()) / builds }
}

/// Mean rebuild of `executor` for a recycle (a purge, then the
/// transaction that rebuilds), timed by the driver: by `executor_init`, or
/// from the blank snapshot.
fn rebuild(kind: BackendKind, executor: &[u8], snapshots: bool, n: u32) -> Duration {
    let host = backends::host(kind, Limits::default()).unwrap_or_else(|e| panic!("{kind}: {e}"));
    let config = DriverConfig { policy: PersistencePolicy::UntilCrash, timings: true, snapshots, ..Default::default() };
    let mut driver = Driver::new(host, executor, config).unwrap_or_else(|e| panic!("{kind}: {e}"));
    let state: SharedState = Arc::new(BTreeMap::<Vec<u8>, Vec<u8>>::new());
    let cycle = |driver: &mut Driver, i: u32| {
        driver.purge();
        driver.validate(&[i as u8], state.clone()).expect("no host failure");
    };
    (0..3).for_each(|i| cycle(&mut driver, i));
    driver.settle();
    let before = driver.stats().clone();
    (0..n).for_each(|i| cycle(&mut driver, i));
    let s = driver.stats();
    assert_eq!(s.restored_builds - before.restored_builds, if snapshots { u64::from(n) } else { 0 });
    (s.build_histogram.sum() - before.build_histogram.sum()) / n
}

/// Blank-cost benchmark: ratios in one process, interleaved, medians.
#[derive(clap::Parser)]
struct Args {
    /// Transactions per measurement.
    #[arg(long, default_value_t = 100_000)]
    transactions: u32,
    /// Interleaved rounds; the figures are medians.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Transactions per measurement of the sigcheck executor.
    #[arg(long, default_value_t = 1_000)]
    sig_transactions: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn main() {
    let Args { transactions: n, rounds, sig_transactions: sig_n, json } = clap::Parser::parse();
    let dirty_16mib = DIRTY4.replace("(memory (export \"memory\") 16)", "(memory (export \"memory\") 256)");
    let every_tx = PersistencePolicy::default();
    let mut rows = Vec::new();
    let mut subjects: Vec<Subject> =
        backends::compiled_in().into_iter().map(|backend| Subject { backend, blank: BlankMethod::Restore }).collect();
    if backends::is_compiled_in(BackendKind::Wasmtime) {
        subjects.push(Subject { backend: BackendKind::Wasmtime, blank: BlankMethod::Rebuild });
    }
    for kind in subjects {
        let mut r: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for _ in 0..rounds {
            // A blank's cost: every-tx:1 minus until-crash, per transaction,
            // on the same executor.
            let warm = measure(kind, EMPTY.as_bytes(), PersistencePolicy::UntilCrash, n);
            let blank = |wat: &[u8]| {
                let kept = measure(kind, wat, PersistencePolicy::UntilCrash, n);
                let blanked = measure(kind, wat, every_tx, n);
                blanked.per_tx.saturating_sub(kept.per_tx)
            };
            let blank_1 = blank(DIRTY4.as_bytes());
            let blank_16 = blank(dirty_16mib.as_bytes());
            // Blanks that re-run a 3 ms init are measured on fewer transactions.
            let heavy_n = if kind.blank == BlankMethod::Rebuild { 300 } else { n };
            let heavy_init = HEAVY_INIT.as_bytes();
            let heavy_warm = measure(kind, heavy_init, PersistencePolicy::UntilCrash, heavy_n);
            let heavy_blank = measure(kind, heavy_init, every_tx, heavy_n);
            let heavy_fresh = measure(kind, heavy_init, PersistencePolicy::Fresh, 50);
            let sig_warm = measure(kind, SIGCHECK, PersistencePolicy::UntilCrash, sig_n);
            let sig_blank = measure(kind, SIGCHECK, every_tx, sig_n);
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            let mut put = |key: &str, value: f64| r.entry(key.to_owned()).or_default().push(value);
            put("warm_tx_us", us(warm.per_tx));
            put("blank_1mib_us", us(blank_1));
            put("blank_16mib_us", us(blank_16));
            put("blank_vs_warm", us(blank_1) / us(warm.per_tx));
            put("blank_16mib_vs_1mib", us(blank_16) / us(blank_1).max(1e-3));
            put("heavy_init_ms", us(heavy_fresh.per_build) / 1e3);
            put("heavy_init_every_tx_vs_until_crash", us(heavy_warm.per_tx) / us(heavy_blank.per_tx));
            put("heavy_init_until_crash_vs_fresh", us(heavy_fresh.per_tx) / us(heavy_warm.per_tx));
            put("heavy_init_every_tx_vs_fresh", us(heavy_fresh.per_tx) / us(heavy_blank.per_tx));
            if kind.blank == BlankMethod::Restore {
                let backend = kind.backend;
                for (what, executor, n) in [("heavy_init", heavy_init, 20), ("sigcheck", SIGCHECK, 100)] {
                    let (by_init, by_snapshot) =
                        (rebuild(backend, executor, false, n), rebuild(backend, executor, true, n));
                    put(&format!("{what}_rebuild_init_ms"), us(by_init) / 1e3);
                    put(&format!("{what}_rebuild_snapshot_ms"), us(by_snapshot) / 1e3);
                    put(&format!("{what}_rebuild_init_vs_snapshot"), us(by_init) / us(by_snapshot));
                }
            }
            put("sigcheck_tx_us", us(sig_warm.per_tx));
            put("sigcheck_every_tx_vs_until_crash", us(sig_warm.per_tx) / us(sig_blank.per_tx));
        }
        let medians: BTreeMap<String, f64> = r.into_iter().map(|(k, v)| (k, median(v))).collect();
        rows.push((kind.to_string(), medians));
    }
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(k, m)| {
                let mut o = serde_json::Map::new();
                o.insert("backend".into(), k.to_string().into());
                for (key, v) in m {
                    o.insert(key.to_string(), (*v).into());
                }
                o
            })
            .collect();
        println!("{}", serde_json::to_string(&out).unwrap());
        return;
    }
    println!("median of {rounds} rounds, {n} transactions each:");
    for (kind, m) in &rows {
        println!("{kind}:");
        for (k, v) in m {
            println!("  {k:<36} {v:>10.3}");
        }
    }
}
