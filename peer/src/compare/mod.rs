//! `peer compare`: the same workload on every compiled-in backend under
//! every compared policy, in one process — a warm-up, then interleaved
//! repetitions, medians — with ratios keyed by backend and policy, the
//! load times, and the table and chart. Beside them, in the table and the
//! chart only, each engine's plain references ([`crate::anchor`]): the
//! unmodified executor as a team without this project would embed it —
//! never in `--json`'s array, never in the digest check. The tables, and
//! their Markdown and CSV exports, are in [`table`].

mod table;

pub use table::{csv, markdown, print};

use crate::anchor::{self, Reference};
use crate::backends::{self, BackendKind};
use crate::report::RunReport;
use crate::run::{LoadTimes, RunSettings, load_times, run};
use crate::{Error, rss};
use executor_core::PersistencePolicy;
use indicatif::ProgressBar;
use serde::Serialize;
use std::collections::BTreeMap;
use strum::IntoEnumIterator;

/// The policies compared, in table order: the reference first.
pub fn policies() -> [PersistencePolicy; 4] {
    ["fresh", "every-tx:1", "every-block:1", "until-crash"].map(|p| p.parse().expect("known policy"))
}

/// One configuration of `peer compare`: the median repetition's report
/// and the ratios the table shows.
#[derive(Debug, Serialize)]
pub struct CompareRow {
    /// The median repetition (with the warm-up's profile).
    #[serde(flatten)]
    pub report: RunReport,
    /// Throughput of every measured repetition.
    pub tx_per_sec_runs: Vec<f64>,
    /// Their spread: half the range between the slowest and the fastest
    /// repetition, as a share of the median (0.05 = ±5 %).
    pub spread: f64,
    /// Median throughput ÷ the same backend's `fresh`.
    pub vs_fresh: f64,
    /// Median throughput ÷ the same backend's `until-crash`.
    pub vs_until_crash: f64,
    /// Median throughput ÷ the best backend's under the same policy (and
    /// worker count).
    pub vs_best_backend: f64,
    /// With `--threads`: median throughput ÷ the same backend's and
    /// policy's one-thread row (the scaling of in-order parallel
    /// validation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_one_thread: Option<f64>,
    /// Whether every backend and repetition under this policy gave the
    /// same verdict and state digests.
    pub digests_agree: bool,
    /// The backend's cold and warm (cached) load of the executor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadTimes>,
}

impl CompareRow {
    /// The slowest and the fastest repetition, tx/s.
    pub fn range(&self) -> (f64, f64) {
        let runs = &self.tx_per_sec_runs;
        match runs.is_empty() {
            true => (self.report.tx_per_sec, self.report.tx_per_sec),
            false => runs.iter().fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r))),
        }
    }

    fn key(&self) -> (BackendKind, PersistencePolicy, usize) {
        (self.report.backend, self.report.policy, self.report.threads)
    }

    /// The policy as the table and chart show it: with its worker count
    /// when validated in parallel.
    pub fn label(&self) -> String {
        match self.report.threads {
            1 => self.report.policy.to_string(),
            n => format!("{} ×{n} threads", self.report.policy),
        }
    }
}

/// A plain-engine reference of one backend: its median throughput
/// (`None` if not measured: see [`anchor::run`]).
#[derive(Debug, Clone)]
pub struct ReferenceRow {
    /// The engine.
    pub backend: BackendKind,
    /// Which reference.
    pub reference: Reference,
    /// Median throughput of the repetitions, tx/s.
    pub tx_per_sec: Option<f64>,
}

/// A whole comparison.
#[derive(Debug)]
pub struct Comparison {
    /// One row per backend × policy, policies in [`policies`] order.
    pub rows: Vec<CompareRow>,
    /// Each backend's plain references (table and chart only).
    pub references: Vec<ReferenceRow>,
    /// Each backend's load times.
    pub loads: BTreeMap<BackendKind, LoadTimes>,
    /// Measured repetitions per row.
    pub repeat: u32,
    /// Transactions of each configuration's warm-up run.
    pub warmup: u64,
}

impl Comparison {
    /// The first disagreement, as `peer compare` reports it (exit 1).
    pub fn disagreement(&self) -> Option<String> {
        self.rows.iter().find(|r| !r.digests_agree).map(|r| {
            format!(
                "inconsistent output: under {}, the backends (or repetitions) give different verdict or state digests ({} differs)",
                r.report.policy, r.report.backend
            )
        })
    }
}

/// Which configurations `peer compare` runs: empty lists mean every
/// compiled-in backend and every policy of [`policies`].
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--backend` (repeatable).
    pub backends: Vec<BackendKind>,
    /// `--policy` (repeatable), in the order given.
    pub policies: Vec<PersistencePolicy>,
}

/// How many runs `peer compare` makes of each configuration.
#[derive(Debug, Clone, Copy)]
pub struct Rounds {
    /// Transactions of the (timed, unmeasured) warm-up run per
    /// configuration; 0: none, and no profile.
    pub warmup: u64,
    /// Measured repetitions, interleaved.
    pub repeat: u32,
}

impl Rounds {
    /// The default warm-up for a workload of `transactions`: as long, up
    /// to 500 transactions.
    pub fn default_warmup(transactions: u64) -> u64 {
        transactions.min(500)
    }
}

/// Runs every selected backend × policy of `base` (whose backend and
/// policy are ignored): a short warm-up run per configuration (caches,
/// page faults, lazy engine set-up), then the measured repetitions
/// interleaved so machine noise hits every configuration alike; peak
/// memory reset before each run.
pub fn compare(
    base: &RunSettings,
    selection: &Selection,
    rounds: Rounds,
    bar: &ProgressBar,
) -> Result<Comparison, Error> {
    let Rounds { warmup: warm_up, repeat } = rounds;
    let mut backends = backends::compiled_in();
    if backends.is_empty() {
        return Err(Error::Usage("no backend is compiled in".into()));
    }
    if let Some(missing) = selection.backends.iter().find(|b| !backends.contains(b)) {
        return Err(Error::Usage(format!("--backend {missing}: not compiled in")));
    }
    if !selection.backends.is_empty() {
        backends.retain(|b| selection.backends.contains(b));
    }
    let policies: Vec<PersistencePolicy> =
        if selection.policies.is_empty() { policies().to_vec() } else { selection.policies.clone() };
    // Every policy on one thread; with `--threads N` (N > 1), also the
    // policy in-order parallel validation runs (every-tx:1) on N workers.
    let threads = base.threads.filter(|n| n.get() > 1);
    let mut configs: Vec<(BackendKind, PersistencePolicy, Option<std::num::NonZeroUsize>)> =
        policies.iter().flat_map(|p| backends.iter().map(move |b| (*b, *p, None))).collect();
    if threads.is_some() {
        configs.extend(backends.iter().map(|b| (*b, PersistencePolicy::default(), threads)));
    }
    let references: Vec<(BackendKind, Reference)> =
        backends.iter().flat_map(|b| Reference::iter().map(move |r| (*b, r))).collect();
    let per_round = (configs.len() + references.len()) as u64;
    bar.set_length(per_round * (warm_up + u64::from(repeat) * base.transactions));
    let mut runs: Vec<Vec<RunReport>> = vec![Vec::new(); configs.len()];
    let mut reference_runs: Vec<Vec<Option<f64>>> = vec![Vec::new(); references.len()];
    let mut profiles = vec![None; configs.len()];
    let first = if warm_up == 0 { 1 } else { 0 };
    for round in first..=repeat {
        for (i, (backend, policy, threads)) in configs.iter().enumerate() {
            let mut s = base.clone();
            s.backend = *backend;
            s.policy = *policy;
            s.threads = *threads;
            // Only the warm-up is timed per phase: clock reads in every
            // blank would tax the blanking policies alone.
            s.profile = round == 0;
            if round == 0 {
                s.transactions = warm_up;
            }
            let what = if round == 0 { "warm-up".into() } else { format!("{round}/{repeat}") };
            let on = threads.map_or(String::new(), |n| format!(" ×{n} threads"));
            bar.set_message(format!("{backend} {policy}{on} ({what})"));
            rss::reset_peak();
            let offset = bar.position();
            let report = run(&s, &mut |done| bar.set_position(offset + done))?;
            if round == 0 {
                profiles[i] = report.profile;
            } else {
                runs[i].push(report);
            }
        }
        // Per backend, whether this round's warm+fuel reference ran out of
        // fuel or stack: it bounds the unmetered one (declared after it).
        let mut exhausted = std::collections::HashMap::new();
        for (i, (backend, reference)) in references.iter().enumerate() {
            let mut s = base.clone();
            s.backend = *backend;
            s.threads = None;
            if round == 0 {
                s.transactions = warm_up;
            }
            bar.set_message(format!("{backend} {reference} (reference)"));
            // A looping executor runs out of fuel in the metered run; the
            // unmetered reference is then not attempted.
            let bounded = exhausted.get(backend) == Some(&false);
            let measured = anchor::run(&s, *reference, bounded)?;
            if *reference == Reference::WarmFuel {
                exhausted.insert(*backend, measured.exhausted);
            }
            bar.inc(s.transactions);
            if round > 0 {
                reference_runs[i].push(measured.tx_per_sec);
            }
        }
    }
    let references = references
        .into_iter()
        .zip(reference_runs)
        .map(|((backend, reference), runs)| ReferenceRow {
            backend,
            reference,
            tx_per_sec: runs
                .into_iter()
                .collect::<Option<Vec<f64>>>()
                .filter(|r| !r.is_empty())
                .map(crate::bench::median),
        })
        .collect();
    let mut loads = BTreeMap::new();
    for backend in &backends {
        loads.insert(*backend, load_times(*backend, &base.executor, &base.limits, 5)?);
    }
    let mut rows = rows(runs);
    for (row, profile) in rows.iter_mut().zip(profiles) {
        row.report.profile = profile;
        row.load = loads.get(&row.report.backend).copied();
    }
    Ok(Comparison { rows, references, loads, repeat, warmup: warm_up })
}

/// The median repetition of each configuration, with its ratios and
/// whether digests agree across its repetitions and every backend under
/// the same policy.
pub fn rows(runs: Vec<Vec<RunReport>>) -> Vec<CompareRow> {
    let mut rows: Vec<CompareRow> = runs
        .into_iter()
        .map(|mut reps| {
            let tx_per_sec_runs: Vec<f64> = reps.iter().map(|r| r.tx_per_sec).collect();
            reps.sort_by(|a, b| a.tx_per_sec.total_cmp(&b.tx_per_sec));
            let same = reps.iter().all(|r| digests(r) == digests(&reps[0]));
            let report = reps.swap_remove(reps.len() / 2);
            let mut row = CompareRow {
                report,
                spread: 0.0,
                tx_per_sec_runs,
                vs_fresh: 0.0,
                vs_until_crash: 0.0,
                vs_best_backend: 0.0,
                vs_one_thread: None,
                digests_agree: same,
                load: None,
            };
            let (lo, hi) = row.range();
            row.spread = if row.report.tx_per_sec > 0.0 { (hi - lo) / 2.0 / row.report.tx_per_sec } else { 0.0 };
            row
        })
        .collect();
    let rates: std::collections::HashMap<(BackendKind, PersistencePolicy, usize), f64> =
        rows.iter().map(|r| (r.key(), r.report.tx_per_sec)).collect();
    let rate = |backend, policy| rates.get(&(backend, policy, 1)).copied().unwrap_or(0.0);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    // Digests must agree across backends and worker counts alike.
    let by_policy = |policy| rows.iter().filter(move |o: &&CompareRow| o.report.policy == policy);
    let updates: Vec<(f64, f64, f64, Option<f64>, bool)> = rows
        .iter()
        .map(|row| {
            let (backend, policy, threads) = row.key();
            let own = row.report.tx_per_sec;
            let best = by_policy(policy)
                .filter(|o| o.report.threads == threads)
                .map(|o| o.report.tx_per_sec)
                .fold(0.0, f64::max);
            let agree = by_policy(policy).all(|o| digests(&o.report) == digests(&row.report) && o.digests_agree);
            (
                ratio(own, rate(backend, PersistencePolicy::Fresh)),
                ratio(own, rate(backend, PersistencePolicy::UntilCrash)),
                ratio(own, best),
                (threads > 1).then(|| ratio(own, rate(backend, policy))),
                agree,
            )
        })
        .collect();
    for (row, (vs_fresh, vs_until_crash, vs_best_backend, vs_one_thread, agree)) in rows.iter_mut().zip(updates) {
        row.vs_fresh = vs_fresh;
        row.vs_until_crash = vs_until_crash;
        row.vs_best_backend = vs_best_backend;
        row.vs_one_thread = vs_one_thread;
        row.digests_agree &= agree;
    }
    rows
}

fn digests(r: &RunReport) -> (&str, &str) {
    (&r.verdict_digest, &r.state_digest)
}

/// The chart: median throughput per policy (column) and backend
/// (colour) with min–max whiskers, then each plain reference (a column
/// each, drawn hollow).
pub fn chart(c: &Comparison, title: &str) -> String {
    let labels: Vec<(String, String)> = c.rows.iter().map(|r| (r.label(), r.report.backend.to_string())).collect();
    let mut points: Vec<crate::chart::Point<'_>> = c
        .rows
        .iter()
        .zip(&labels)
        .map(|(r, (group, series))| crate::chart::Point {
            group,
            series,
            value: r.report.tx_per_sec,
            range: Some(r.range()),
            reference: false,
        })
        .collect();
    let references: Vec<(String, String, f64)> = c
        .references
        .iter()
        .filter_map(|r| Some((format!("ref: {}", r.reference), r.backend.to_string(), r.tx_per_sec?)))
        .collect();
    points.extend(references.iter().map(|(group, series, value)| crate::chart::Point {
        group,
        series,
        value: *value,
        range: None,
        reference: true,
    }));
    crate::chart::dot_plot(title, "policy (ref: plain-engine references)", "tx/s", &points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use executor_core::{CacheOutcome, Stats};

    pub(super) fn report(backend: BackendKind, policy: &str, tx_per_sec: f64, digest: &str) -> RunReport {
        RunReport {
            backend,
            policy: policy.parse().unwrap(),
            executor: "default".into(),
            executor_hash: "0".repeat(64),
            stats: Stats::new(CacheOutcome::Off, std::time::Duration::ZERO),
            verdict_digest: digest.into(),
            state_digest: "s".into(),
            elapsed_s: 1.0,
            tx_per_sec,
            load_s: 0.0,
            instrument_s: 0.0,
            compile_s: 0.0,
            peak_rss_bytes: 0,
            seed: 42,
            block_size: 100,
            profile: None,
            threads: 1,
            parallel: Default::default(),
            hot_percent: 0,
            prevalidate: None,
            prevalidation_digest: None,
            prevalidation_tx_per_sec: None,
            notes: Vec::new(),
            config: None,
            workload: None,
        }
    }

    #[test]
    fn ratios_are_keyed_by_backend_and_policy() {
        use BackendKind::{Wasmi, Wasmtime};
        let runs = vec![
            vec![
                report(Wasmtime, "fresh", 10.0, "d"),
                report(Wasmtime, "fresh", 30.0, "d"),
                report(Wasmtime, "fresh", 20.0, "d"),
            ],
            vec![report(Wasmi, "fresh", 5.0, "d")],
            vec![report(Wasmtime, "every-tx:1", 400.0, "d")],
            vec![report(Wasmi, "every-tx:1", 100.0, "d")],
            vec![report(Wasmtime, "until-crash", 500.0, "d")],
            vec![report(Wasmi, "until-crash", 50.0, "d")],
        ];
        let rows = rows(runs);
        let row = |b, p: &str| rows.iter().find(|r| r.key() == (b, p.parse().unwrap(), 1)).unwrap();
        assert_eq!(row(Wasmtime, "fresh").report.tx_per_sec, 20.0, "the median repetition");
        assert_eq!(row(Wasmtime, "fresh").tx_per_sec_runs, vec![10.0, 30.0, 20.0]);
        assert_eq!(row(Wasmtime, "fresh").spread, 0.5, "±10 around 20");
        assert_eq!(row(Wasmtime, "every-tx:1").vs_fresh, 20.0);
        assert_eq!(row(Wasmtime, "every-tx:1").vs_until_crash, 0.8);
        assert_eq!(row(Wasmi, "every-tx:1").vs_fresh, 20.0);
        assert_eq!(row(Wasmi, "every-tx:1").vs_until_crash, 2.0);
        assert_eq!(row(Wasmi, "every-tx:1").vs_best_backend, 0.25);
        assert_eq!(row(Wasmtime, "until-crash").vs_best_backend, 1.0);
        assert!(rows.iter().all(|r| r.digests_agree));
    }

    #[test]
    fn threaded_rows_scale_against_their_one_thread_row_and_must_agree() {
        use BackendKind::{Wasmi, Wasmtime};
        let threaded = |b, rate, digest| RunReport { threads: 2, ..report(b, "every-tx:1", rate, digest) };
        let runs = vec![
            vec![report(Wasmtime, "every-tx:1", 100.0, "d")],
            vec![report(Wasmi, "every-tx:1", 10.0, "d")],
            vec![threaded(Wasmtime, 180.0, "d")],
            vec![threaded(Wasmi, 19.0, "d")],
        ];
        let rows = rows(runs);
        assert_eq!(rows[0].vs_one_thread, None);
        assert_eq!((rows[2].vs_one_thread, rows[3].vs_one_thread), (Some(1.8), Some(1.9)));
        assert_eq!(rows[2].vs_best_backend, 1.0, "compared with the other backends' threaded rows");
        assert_eq!((rows[2].label(), rows[0].label()), ("every-tx:1 ×2 threads".to_string(), "every-tx:1".to_string()));
        assert!(rows.iter().all(|r| r.digests_agree));
        let runs = vec![vec![report(Wasmtime, "every-tx:1", 1.0, "d")], vec![threaded(Wasmtime, 1.0, "e")]];
        assert!(rows_agree(runs).iter().all(|a| !a), "a threaded run must give the one-thread digests");
    }

    fn rows_agree(runs: Vec<Vec<RunReport>>) -> Vec<bool> {
        rows(runs).iter().map(|r| r.digests_agree).collect()
    }

    #[test]
    fn a_differing_digest_marks_its_policy_and_no_other() {
        use BackendKind::{Wasmi, Wasmtime};
        let runs = vec![
            vec![report(Wasmtime, "every-tx:1", 1.0, "a")],
            vec![report(Wasmi, "every-tx:1", 1.0, "b")],
            vec![report(Wasmtime, "until-crash", 1.0, "a"), report(Wasmtime, "until-crash", 1.0, "a")],
            vec![report(Wasmi, "until-crash", 1.0, "a")],
        ];
        let c = Comparison { rows: rows(runs), references: Vec::new(), loads: BTreeMap::new(), repeat: 1, warmup: 0 };
        let agree: Vec<bool> = c.rows.iter().map(|r| r.digests_agree).collect();
        assert_eq!(agree, vec![false, false, true, true]);
        assert!(c.disagreement().unwrap().contains("every-tx:1"));
        let runs = vec![vec![report(Wasmi, "fresh", 1.0, "a"), report(Wasmi, "fresh", 2.0, "b")]];
        assert!(!rows(runs)[0].digests_agree, "repetitions must agree too");
    }
}
