//! What a run reports: `peer run --json`'s object (cli.md's fields and a
//! few more) — the driver's [`Stats`] as they are, plus what the run loop
//! measured — and the human summary.

use crate::backends::BackendKind;
use executor_core::{ParallelStats, PersistencePolicy, Stats};
use serde::Serialize;

/// Where a run's time went (`peer run --profile`), like the measurements
/// that motivated this project: the workload, and validation split into
/// guest calls, scheduled blanks, and instance builds (recycles, rebuilding
/// blanks, `fresh`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Profile {
    /// Making transactions and applying approved ones to the ledger, s.
    pub workload_s: f64,
    /// All of `Driver::validate`, s (= `elapsed_s`).
    pub validation_s: f64,
    /// Of it: guest calls (`executor_alloc`, `executor_validate`, copying
    /// the payload), s.
    pub calls_s: f64,
    /// Of it: scheduled blanks (restores, and rebuilds where a restore
    /// cannot), s.
    pub blanks_s: f64,
    /// Of it: rebuilding instances for recycles (instantiate, `start`,
    /// `executor_init`, snapshot), s.
    pub recycles_s: f64,
    /// Mean instance build (instantiate + init), ms.
    pub build_ms: f64,
    /// Of it: instantiation (memory, data segments, tables), ms.
    pub instantiate_ms: f64,
    /// Of it: `start` and `executor_init`, or adopting the blank snapshot; and
    /// marking the blank state, ms.
    pub init_ms: f64,
    /// Mean scheduled blank, µs.
    pub blank_us: f64,
    /// Mean guest call time per transaction, µs.
    pub call_us: f64,
    /// Median guest call time per transaction, µs (from the histogram:
    /// within a few per cent; 0 when none).
    pub call_p50_us: f64,
    /// 99th percentile of the guest call time, µs.
    pub call_p99_us: f64,
    /// Median scheduled blank, µs (0 when none).
    pub blank_p50_us: f64,
    /// 99th percentile of the scheduled blanks, µs.
    pub blank_p99_us: f64,
}

impl Profile {
    /// The profile of a run whose validation took `validation_s` and whose
    /// workload took `workload_s`, from the driver's timings.
    pub fn of(stats: &Stats, validation_s: f64, workload_s: f64) -> Self {
        let per = |total: std::time::Duration, n: u64, unit: f64| {
            if n > 0 { total.as_secs_f64() * unit / n as f64 } else { 0.0 }
        };
        let builds = stats.build_histogram.sum();
        Profile {
            workload_s,
            validation_s,
            calls_s: stats.call_histogram.sum().as_secs_f64(),
            blanks_s: stats.blank_histogram.sum().as_secs_f64(),
            recycles_s: stats.recycle_time.as_secs_f64(),
            build_ms: per(builds, stats.instances_built, 1e3),
            instantiate_ms: per(stats.instantiate_time, stats.instances_built, 1e3),
            init_ms: per(builds.saturating_sub(stats.instantiate_time), stats.instances_built, 1e3),
            blank_us: per(stats.blank_histogram.sum(), stats.blanks, 1e6),
            call_us: per(stats.call_histogram.sum(), stats.transactions, 1e6),
            call_p50_us: micros(stats.call_histogram.quantile(0.5)),
            call_p99_us: micros(stats.call_histogram.quantile(0.99)),
            blank_p50_us: micros(stats.blank_histogram.quantile(0.5)),
            blank_p99_us: micros(stats.blank_histogram.quantile(0.99)),
        }
    }
}

fn micros(d: Option<std::time::Duration>) -> f64 {
    d.map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

fn display<T: std::fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// What `peer run --json` prints: cli.md's fields (the counters are the
/// driver's [`Stats`], flattened in) and a few more.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Backend, CLI spelling.
    pub backend: BackendKind,
    /// Policy, CLI spelling.
    #[serde(serialize_with = "display")]
    pub policy: PersistencePolicy,
    /// Executor name (`default` or its file).
    pub executor: String,
    /// SHA-256 of the executor binary.
    pub executor_hash: String,
    /// The driver's counters: transactions, verdicts, blanks, recycles,
    /// upgrades, audits, builds, cache and snapshot outcomes.
    #[serde(flatten)]
    pub stats: Stats,
    /// Hash of the verdict sequence.
    pub verdict_digest: String,
    /// Hash of the final world state.
    pub state_digest: String,
    /// Validation wall time, seconds.
    pub elapsed_s: f64,
    /// Transactions per second of validation.
    pub tx_per_sec: f64,
    /// Loading the executor (checks, compile, first instance), seconds.
    pub load_s: f64,
    /// Of `load_s`, the instrumentation pass (fuel, stack, NaNs, dirty
    /// map), seconds.
    pub instrument_s: f64,
    /// Of `load_s`, the engine's compilation or cache load, seconds.
    pub compile_s: f64,
    /// Peak resident memory of the process, bytes.
    pub peak_rss_bytes: u64,
    /// Workload seed.
    pub seed: u64,
    /// Transactions per block.
    pub block_size: u64,
    /// Where the time went (with `--profile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// Workers validating in order (`--threads`; 1 without it, or under a
    /// policy that carries state between transactions).
    pub threads: usize,
    /// What in-order parallel validation did: `executions`,
    /// `reexecutions`, `taken_over`, `conflicts`, `waves` (all zero
    /// without `--threads`).
    #[serde(flatten)]
    pub parallel: ParallelStats,
    /// Percent of hot transfers in the workload (`--hot-percent`).
    pub hot_percent: u64,
    /// With `--prevalidate`: its workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prevalidate: Option<usize>,
    /// With `--prevalidate`: the digest of the pre-validation verdicts
    /// (equal for every worker count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prevalidation_digest: Option<String>,
    /// With `--prevalidate`: pre-validated transactions per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prevalidation_tx_per_sec: Option<f64>,
    /// What the run changed of what was asked, and why (fewer workers
    /// than asked, one thread under a stateful policy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The config file used (`--config`, `$PEER_CONFIG` or the default
    /// path); `null`: none was found, the defaults ran.
    pub config: Option<String>,
    /// The workload file replayed (`--workload`); absent: the synthetic
    /// workload (`seed`, `block_size` and `hot_percent` describe it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

impl RunReport {
    /// Rejected verdicts of every kind.
    pub fn rejected(&self) -> u64 {
        self.stats.rejected.values().sum()
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The human summary of `peer run`.
pub fn print_summary(r: &RunReport) {
    let s = &r.stats;
    println!(
        "peer run: backend {}, policy {}, executor {} ({})",
        r.backend,
        r.policy,
        r.executor,
        &r.executor_hash[..12]
    );
    println!("  config: {}", r.config.as_deref().unwrap_or("none found (the defaults)"));
    match &r.workload {
        Some(path) => println!("  workload: {path} (replayed)"),
        None => println!("  workload: synthetic ledger, seed {}, blocks of {}", r.seed, r.block_size),
    }
    println!(
        "  {} transactions in {} block(s): {} approved, {} denied, {} rejected",
        s.transactions,
        s.blocks,
        s.approved,
        s.denied,
        r.rejected()
    );
    if r.rejected() > 0 {
        let kinds: Vec<String> = s.rejected.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
        println!("  rejected: {}", kinds.join(", "));
    }
    println!(
        "  blanks {}, recycles {}, instances built {} ({} from the blank snapshot: {})",
        s.blanks, s.recycles, s.instances_built, s.restored_builds, s.snapshot
    );
    if r.parallel.executions > 0 {
        let p = &r.parallel;
        println!(
            "  in order on {} thread(s): {} executions, {} re-executions ({} conflicts), {} taken over, {} waves",
            r.threads, p.executions, p.reexecutions, p.conflicts, p.taken_over, p.waves
        );
    }
    if let (Some(digest), Some(rate)) = (&r.prevalidation_digest, r.prevalidation_tx_per_sec) {
        let workers = r.prevalidate.unwrap_or(0);
        println!("  pre-validation on {workers} threads: {rate:.0} tx/s, digest {}", &digest[..12]);
    }
    for note in &r.notes {
        println!("  note: {note}");
    }
    if s.upgrades > 0 || s.audits > 0 {
        println!("  upgrades {}, audits {}, state leaks {}", s.upgrades, s.audits, s.state_leaks);
    }
    println!(
        "  validation {:.3} s ({:.0} tx/s), load {:.1} ms (instrumentation {:.2} ms, compile {:.2} ms, cache {}), peak RSS {:.1} MiB",
        r.elapsed_s,
        r.tx_per_sec,
        r.load_s * 1e3,
        r.instrument_s * 1e3,
        r.compile_s * 1e3,
        s.cache,
        mib(r.peak_rss_bytes)
    );
    if let Some(p) = &r.profile {
        print_profile(p);
    }
    println!("  verdict digest {}", r.verdict_digest);
    println!("  state digest   {}", r.state_digest);
}

fn print_profile(p: &Profile) {
    let share = |x: f64| if p.validation_s > 0.0 { 100.0 * x / p.validation_s } else { 0.0 };
    let other = (p.validation_s - p.calls_s - p.blanks_s - p.recycles_s).max(0.0);
    println!("  profile (s, share of validation):");
    let rows = [
        ("workload (make transactions, apply approved)".to_string(), p.workload_s, None),
        ("validation".to_string(), p.validation_s, Some(100.0)),
        (
            format!("  guest calls ({:.2} µs/tx, p50 {:.2}, p99 {:.2})", p.call_us, p.call_p50_us, p.call_p99_us),
            p.calls_s,
            Some(share(p.calls_s)),
        ),
        (
            format!(
                "  scheduled blanks ({:.2} µs each, p50 {:.2}, p99 {:.2})",
                p.blank_us, p.blank_p50_us, p.blank_p99_us
            ),
            p.blanks_s,
            Some(share(p.blanks_s)),
        ),
        (
            format!(
                "  recycles (a build: {:.3} ms = instantiate {:.3} + init or snapshot {:.3})",
                p.build_ms, p.instantiate_ms, p.init_ms
            ),
            p.recycles_s,
            Some(share(p.recycles_s)),
        ),
        ("  driver bookkeeping, audits, upgrades".to_string(), other, Some(share(other))),
    ];
    for (label, secs, pct) in rows {
        let pct = pct.map_or(String::new(), |p| format!("{p:>5.0}%"));
        println!("    {label:<58} {secs:>9.4} {pct}");
    }
}
