//! The operator's commands around a run: `peer check` (what an executor
//! is and costs, before an upgrade), `peer compile` (fill the cache at
//! deploy time, under the keys `peer run` looks up) and `peer cache
//! ls|verify|clear`.

use crate::Error;
use crate::backends::{self, BackendKind};
use crate::run::{RunSettings, driver, driver_config};
use executor_core::module::LimitUse;
use executor_core::{ArtifactCache, CacheConfig, SnapshotOutcome};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// What `peer check` reports (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The executor as named.
    pub executor: String,
    /// SHA-256 of its binary (as `peer run` reports `executor_hash`).
    pub executor_hash: String,
    /// Size of its binary, bytes.
    pub bytes: u64,
    /// WebAssembly features beyond the MVP it uses.
    pub features: Vec<&'static str>,
    /// The host imports it uses (`host.state_get`, …).
    pub imports: Vec<String>,
    /// Its exports, with their kinds.
    pub exports: Vec<ExportRow>,
    /// Each module limit: what it uses, what is allowed.
    pub limits: Vec<LimitUse>,
    /// Fuel `start` and `executor_init` spent.
    pub init_fuel: u64,
    /// The init fuel allowed (`init_fuel` of the config).
    pub init_fuel_allowed: u64,
    /// Linear memory of a blank instance as the guest sees it, bytes.
    pub blank_state_bytes: u64,
    /// Of it, what `executor_init` wrote: what a build from the blank
    /// snapshot copies.
    pub init_written_bytes: u64,
    /// Whether the blank state moves to new instances as a snapshot
    /// (`portable`), or every build runs init (`unportable`: init touched
    /// a table).
    pub snapshot: &'static str,
    /// Its writes to memory (stores and bulk operations).
    pub writes: u64,
    /// How transactions' writes are tracked: `barrier` (blanks restore
    /// what was dirtied), or `off` past the barrier's budget of
    /// [`executor_core::instrument::dirty::MAX_TRACKED_WRITES`] writes
    /// (blanks rebuild).
    pub tracking: executor_core::instrument::Tracking,
    /// Per compiled-in backend: whether it loaded, and how long compiling
    /// (and the first blank instance) took.
    pub backends: BTreeMap<BackendKind, BackendCheck>,
}

/// One export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportRow {
    /// Its name.
    pub name: String,
    /// `func`, `memory`, `table`, `global`.
    pub kind: &'static str,
}

/// One backend's load in `peer check`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendCheck {
    /// Whether it loaded (it must, on every backend, if the checks pass).
    pub loaded: bool,
    /// The engine's compilation, ms.
    pub compile_ms: f64,
    /// Instantiation, `start`, `executor_init` and the snapshot, ms.
    pub first_instance_ms: f64,
}

/// `peer check`: loads `settings.executor` under `settings.limits` on
/// every compiled-in backend (no cache), and reports what an operator
/// needs before an upgrade. A load error is the error of the first
/// backend's load (exit 2); backends that disagree on the blank state are
/// `Inconsistent` (exit 1: a bug of the host).
pub fn check(settings: &RunSettings) -> Result<CheckReport, Error> {
    let (bytes, limits) = (&settings.executor.bytes, &settings.limits);
    let executor_error = |source| Error::Executor { executor: settings.executor.name.clone(), source };
    let prepared = std::sync::Arc::new(executor_core::module::prepare(bytes, limits).map_err(executor_error)?);
    let inspection = executor_core::module::inspect(bytes, limits).map_err(executor_error)?;
    let mut report = CheckReport {
        executor: settings.executor.name.clone(),
        executor_hash: prepared.hash_hex(),
        bytes: inspection.limits.first().map_or(0, |u| u.used),
        features: inspection.features,
        imports: prepared.info.imports.iter().map(|i| format!("host.{i}")).collect(),
        exports: inspection.exports.into_iter().map(|(name, kind)| ExportRow { name, kind }).collect(),
        limits: inspection.limits,
        init_fuel: 0,
        init_fuel_allowed: limits.init_fuel,
        blank_state_bytes: 0,
        init_written_bytes: 0,
        snapshot: "portable",
        writes: inspection.writes,
        tracking: prepared.info.tracking,
        backends: BTreeMap::new(),
    };
    /// What every backend must agree on: init fuel, blank memory, bytes
    /// init wrote, snapshot portability.
    type Blank = (u64, u64, u64, &'static str);
    let mut blank: Option<(BackendKind, Blank)> = None;
    for backend in backends::compiled_in() {
        // Every backend compiles the module prepared above: checked and
        // instrumented once.
        let run = RunSettings { backend, cache: None, snapshots: true, profile: true, ..settings.clone() };
        let host = backends::host(backend, limits.clone())?;
        let mut d = executor_core::Driver::from_prepared(host, prepared.clone(), driver_config(&run)?)
            .map_err(executor_error)?;
        let stats = d.stats().clone();
        let snapshot = match stats.snapshot {
            SnapshotOutcome::Unportable => "unportable",
            _ => "portable",
        };
        let seen = (stats.init_fuel, d.memory_in_use(), stats.init_written_bytes, snapshot);
        match blank {
            None => blank = Some((backend, seen)),
            Some((first, expected)) if expected != seen => {
                return Err(Error::Inconsistent(format!(
                    "inconsistent output: the blank state differs between {first} and {backend} \
                     (init fuel, memory, init bytes, snapshot: {expected:?} vs {seen:?})"
                )));
            }
            Some(_) => {}
        }
        let build = stats.build_histogram.sum().as_secs_f64();
        report.backends.insert(
            backend,
            BackendCheck {
                loaded: true,
                compile_ms: stats.compile_time.as_secs_f64() * 1e3,
                first_instance_ms: build * 1e3,
            },
        );
    }
    if let Some((_, (init_fuel, memory, written, snapshot))) = blank {
        (report.init_fuel, report.blank_state_bytes, report.init_written_bytes, report.snapshot) =
            (init_fuel, memory, written, snapshot);
    }
    Ok(report)
}

/// Prints a [`CheckReport`] for people.
pub fn print_check(r: &CheckReport) {
    println!("peer check: {} ({}), {} bytes", r.executor, &r.executor_hash[..12], r.bytes);
    println!("  features: {}", if r.features.is_empty() { "MVP only".into() } else { r.features.join(", ") });
    println!("  imports: {}", if r.imports.is_empty() { "none".into() } else { r.imports.join(", ") });
    let exports: Vec<String> = r.exports.iter().map(|e| format!("{} ({})", e.name, e.kind)).collect();
    println!("  exports: {}", exports.join(", "));
    println!(
        "  init: {} of {} fuel; blank state {} bytes of memory, {} written by init; snapshot {}",
        r.init_fuel, r.init_fuel_allowed, r.blank_state_bytes, r.init_written_bytes, r.snapshot
    );
    let budget = executor_core::instrument::dirty::MAX_TRACKED_WRITES;
    match r.tracking {
        executor_core::instrument::Tracking::Barrier => {
            println!("  write barrier: on ({} writes to memory; the budget is {budget})", r.writes)
        }
        _ => println!(
            "  write barrier: off ({} writes to memory, past the budget of {budget}): blanks rebuild",
            r.writes
        ),
    }
    println!("  module limits (used / allowed):");
    for u in &r.limits {
        let share = if u.allowed > 0 { 100.0 * u.used as f64 / u.allowed as f64 } else { 0.0 };
        println!("    {:<28} {:>12} / {:<12} {share:>5.1}%", u.limit, u.used, u.allowed);
    }
    for (backend, b) in &r.backends {
        println!(
            "  {backend}: loaded; compile {:.1} ms, first blank instance {:.2} ms",
            b.compile_ms, b.first_instance_ms
        );
    }
}

/// What `peer compile` did on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct Compiled {
    /// The backend.
    pub backend: BackendKind,
    /// `hit` (already cached), `miss` (compiled and stored) or `off` (the
    /// backend keeps no compiled code: wasmi).
    pub cache: executor_core::CacheOutcome,
    /// Whether the blank snapshot is in the cache now.
    pub snapshot: SnapshotOutcome,
    /// Time, ms.
    pub ms: f64,
}

/// `peer compile`: on each of `backends`, starts the executor exactly as
/// `peer run` with these settings does — load through the cache, the first
/// blank instance and its snapshot, the baked snapshot where the backend
/// bakes — so the entries a later run looks up are there.
pub fn compile(settings: &RunSettings, backends: &[BackendKind]) -> Result<Vec<Compiled>, Error> {
    if settings.cache.is_none() {
        return Err(Error::Usage(
            "no cache directory: give --cache-dir DIR or a config with `cache` (and not --no-cache)".into(),
        ));
    }
    let mut done = Vec::new();
    for backend in backends {
        let run = RunSettings { backend: *backend, ..settings.clone() };
        let started = std::time::Instant::now();
        let mut d = driver(&run)?;
        d.settle();
        let stats = d.stats();
        done.push(Compiled {
            backend: *backend,
            cache: stats.cache,
            snapshot: stats.snapshot,
            ms: started.elapsed().as_secs_f64() * 1e3,
        });
    }
    Ok(done)
}

/// One entry of `peer cache ls`.
#[derive(Debug, Clone, Serialize)]
pub struct CacheRow {
    /// Its key (file name).
    pub key: String,
    /// The executor's hash (`null`: an unlabelled entry).
    pub executor_hash: Option<String>,
    /// The backend that wrote it.
    pub backend: Option<String>,
    /// `compiled`, `compiled_untracked`, `baked`, `snapshot`.
    pub kind: Option<String>,
    /// Size, bytes.
    pub bytes: u64,
    /// Seconds since its last use.
    pub age_s: u64,
    /// With `verify`: `ok`, or what is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
}

/// Opens the cache `config` names without creating it: `None` if the
/// directory does not exist.
pub fn open_cache(config: &CacheConfig) -> Result<Option<ArtifactCache>, Error> {
    if !config.dir.exists() {
        return Ok(None);
    }
    ArtifactCache::open(config).map(Some).map_err(Error::Cache)
}

/// `peer cache ls` (and `verify`: each entry read whole and checked).
pub fn cache_rows(cache: &ArtifactCache, verify: bool) -> Vec<CacheRow> {
    let now = SystemTime::now();
    cache
        .list()
        .into_iter()
        .map(|e| CacheRow {
            key: e.key.clone(),
            executor_hash: e.label.as_ref().map(|l| hex::encode(l.executor)),
            backend: e.label.as_ref().map(|l| l.backend.clone()),
            kind: e.label.as_ref().map(|l| l.kind.to_string()),
            bytes: e.bytes,
            age_s: now.duration_since(e.used).unwrap_or_default().as_secs(),
            verified: verify.then(|| cache.verify(&e).map_or_else(|why| why, |()| "ok".into())),
        })
        .collect()
}

/// Prints `peer cache ls`/`verify` for people.
pub fn print_cache(dir: &std::path::Path, rows: &[CacheRow]) {
    let total: u64 = rows.iter().map(|r| r.bytes).sum();
    println!("cache {}: {} entries, {:.1} MiB", dir.display(), rows.len(), total as f64 / (1 << 20) as f64);
    if rows.is_empty() {
        return;
    }
    println!("{:<14} {:<9} {:<18} {:>10} {:>9}  verified", "executor", "backend", "kind", "bytes", "age");
    for r in rows {
        let short = |s: &Option<String>, n: usize| -> String {
            s.as_deref().map_or("-".into(), |s| s.chars().take(n).collect())
        };
        println!(
            "{:<14} {:<9} {:<18} {:>10} {:>9}  {}",
            short(&r.executor_hash, 12),
            short(&r.backend, 9),
            short(&r.kind, 18),
            r.bytes,
            age(r.age_s),
            r.verified.as_deref().unwrap_or("-")
        );
    }
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}
