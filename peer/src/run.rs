//! `peer run`: one executor, one backend, one policy, one workload.

use crate::backends::{self, BackendKind};
use crate::report::{Profile, RunReport};
use crate::workload::{BlockShape, Generator, Ledger, LedgerState, Rng};
use crate::{Error, rss};
use executor_core::{
    ArtifactCache, BlockValidator, CacheConfig, CacheOutcome, Driver, DriverConfig, ExecutorPool, Limits,
    ParallelStats, PersistencePolicy, SharedState, SnapshotOutcome, Verdict, VerdictDigest, WorldState,
};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An executor to run: its bytes and a name for messages.
#[derive(Debug, Clone)]
pub struct Executor {
    /// `default` or the file it came from.
    pub name: String,
    /// Binary or WAT.
    pub bytes: Vec<u8>,
}

impl Executor {
    /// The embedded default executor.
    pub fn default_executor() -> Self {
        Executor { name: "default".into(), bytes: crate::DEFAULT_EXECUTOR.to_vec() }
    }

    /// The same executor with other bytes, for upgrades that really load:
    /// the default executor's committed variant (same rules, built with
    /// another feature), else this module with a custom section appended
    /// (which no verdict can see; WAT is converted to binary first).
    pub fn variant(&self) -> Result<Vec<u8>, Error> {
        if self.bytes == crate::DEFAULT_EXECUTOR {
            return Ok(crate::DEFAULT_VARIANT.to_vec());
        }
        let mut wasm = if self.bytes.starts_with(b"\0asm") {
            self.bytes.clone()
        } else {
            let text = std::str::from_utf8(&self.bytes).unwrap_or("");
            wat::parse_str(text).map_err(|e| Error::ExecutorFile { path: self.name.clone(), message: e.to_string() })?
        };
        // A custom section: id 0, size, name "variant", one byte.
        wasm.extend_from_slice(&[0, 9, 7]);
        wasm.extend_from_slice(b"variant");
        wasm.push(1);
        Ok(wasm)
    }

    /// Reads an executor file (`.wasm` or `.wat`): a regular file of at
    /// most `max` bytes (the module size limit: a larger one would be
    /// refused anyway).
    pub fn from_file(path: &std::path::Path, max: u64) -> Result<Self, Error> {
        let bytes = crate::input::read_bounded(path, max)
            .map_err(|message| Error::ExecutorFile { path: path.display().to_string(), message })?;
        Ok(Executor { name: path.display().to_string(), bytes })
    }
}

/// Everything a run needs, resolved from config and flags.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The backend.
    pub backend: BackendKind,
    /// The persistence policy.
    pub policy: PersistencePolicy,
    /// The executor.
    pub executor: Executor,
    /// Transactions to validate.
    pub transactions: u64,
    /// Transactions per block (≥ 1).
    pub block_size: u64,
    /// Workload seed.
    pub seed: u64,
    /// Resource limits.
    pub limits: Limits,
    /// Recycle watermark in bytes (`None`: half the memory limit).
    pub recycle_watermark: Option<u64>,
    /// Every this many blocks, the block holds an executor upgrade by the
    /// admin (at [`RunSettings::upgrade_offset`]), alternating between the
    /// executor and [`Executor::variant`].
    pub upgrade_every: Option<u64>,
    /// The position of that upgrade in its block (0: first; a block
    /// shorter than that holds none).
    pub upgrade_offset: u64,
    /// Percent of transactions that are transfers from the block's hot
    /// account ([`BlockShape::hot_percent`]).
    pub hot_percent: u64,
    /// Audit every k-th transaction on a blank instance.
    pub audit_every: Option<std::num::NonZeroU32>,
    /// Time each phase ([`Profile`]); costs two clock reads per step.
    pub profile: bool,
    /// The compiled-executor cache (`None`: compile every time).
    pub cache: Option<CacheConfig>,
    /// Build instances from the executor's blank snapshot instead of
    /// running `executor_init` again (in memory, and in the cache).
    pub snapshots: bool,
    /// How a blank is done.
    pub blank: executor_core::BlankMethod,
    /// Validate each block in order on this many workers (in-order
    /// parallel validation; one thread under policies other than
    /// `every-tx:1` and `fresh`).
    pub threads: Option<std::num::NonZeroUsize>,
    /// Also pre-validate each block on this many worker threads, against
    /// its starting state (after its in-order validation, timed apart).
    pub prevalidate: Option<std::num::NonZeroUsize>,
    /// The config file these settings came from, if any (reported).
    pub config: Option<std::path::PathBuf>,
    /// Replay this workload file instead of the synthetic workload (its
    /// first [`RunSettings::transactions`]; seed, block size, upgrades and
    /// hot transfers are the file's).
    pub workload: Option<std::path::PathBuf>,
    /// Record the workload as it runs into this file ([`crate::recording`]):
    /// validated on one thread, the state before each transaction known.
    pub record: Option<std::path::PathBuf>,
}

impl RunSettings {
    /// `executor` on `backend` under `policy`, everything else as `peer
    /// run` has it without a config file or flags (10,000 transactions in
    /// blocks of 100, seed 42, default limits, no cache, snapshots on).
    pub fn new(backend: BackendKind, policy: PersistencePolicy, executor: Executor) -> Self {
        RunSettings {
            backend,
            policy,
            executor,
            transactions: 10_000,
            block_size: 100,
            seed: 42,
            limits: Limits::default(),
            recycle_watermark: None,
            upgrade_every: None,
            upgrade_offset: 0,
            hot_percent: 0,
            audit_every: None,
            profile: false,
            cache: None,
            snapshots: true,
            blank: executor_core::BlankMethod::default(),
            threads: None,
            prevalidate: None,
            config: None,
            workload: None,
            record: None,
        }
    }
}

/// Runs the workload; `progress` is told how many transactions are done
/// after each block.
pub fn run(settings: &RunSettings, progress: &mut dyn FnMut(u64)) -> Result<RunReport, Error> {
    run_observed(settings, progress, &mut |_| {})
}

/// What judges the workload's transactions, in order: the [`Driver`] (with
/// its optional pre-validation pool), the [`BlockValidator`] of in-order
/// parallel validation, or a plain-engine reference ([`crate::anchor`]).
pub trait Validator {
    /// The verdict on `tx` against `state`; `Err` ends the run.
    fn validate(&mut self, tx: &[u8], state: SharedState) -> Result<Verdict, Error>;

    /// Validates a whole block in order against `world`, applying each
    /// approved transaction — if this validator takes blocks whole;
    /// `None`: [`Validator::validate`] is called per transaction.
    fn validate_block(&mut self, _txs: &[Vec<u8>], _world: &mut LedgerState) -> Option<Result<Vec<Verdict>, Error>> {
        None
    }

    /// A block ended: its transactions and the state at its start, if
    /// [`Validator::wants_blocks`] (for pre-validation).
    fn end_block(&mut self, txs: &[Vec<u8>], start: Option<&SharedState>) -> Result<(), Error>;

    /// Whether [`Validator::end_block`] needs the block's starting state.
    fn wants_blocks(&self) -> bool {
        false
    }
}

/// What the workload loop measured.
pub struct Driven {
    /// The digest of every verdict, in order.
    pub digest: VerdictDigest,
    /// The final world state.
    pub ledger: Arc<Ledger>,
    /// Time validating in order: [`Validator::validate`], or all of
    /// [`Validator::validate_block`] (its applies included).
    pub validation: Duration,
    /// Making blocks and applying approved transactions outside
    /// [`Validator::validate_block`] (timed only with `settings.profile`).
    pub workload: Duration,
}

/// The workload loop: `settings.transactions` transactions of the seeded
/// ledger in blocks, each block drawn whole from the ledger at its start
/// (an upgrade to `upgrades` alternately in every `upgrade_every`-th block,
/// hot transfers as `hot_percent` says), judged in order by `validator`
/// with approved transactions applied. `progress` is told how many are done
/// after each block; `observe` sees every verdict.
pub fn drive(
    settings: &RunSettings,
    upgrades: Option<&[Vec<u8>; 2]>,
    validator: &mut dyn Validator,
    progress: &mut dyn FnMut(u64),
    observe: &mut dyn FnMut(&Verdict),
) -> Result<Driven, Error> {
    let (mut world, mut source) = Source::open(settings)?;
    let mut recorder = match &settings.record {
        Some(path) => Some(Recording::start(path, settings, &world.0)?),
        None => None,
    };
    let mut digest = VerdictDigest::new();
    let (mut validation, mut workload) = (Duration::ZERO, Duration::ZERO);
    let timed = |since: Option<Instant>| since.map_or(Duration::ZERO, |t| t.elapsed());
    let mut done = 0u64;
    while done < settings.transactions {
        let generating = settings.profile.then(Instant::now);
        let Some((txs, writes)) = source.block(settings, upgrades, &world.0, done)? else { break };
        let in_block = txs.len() as u64;
        world.recorded(writes);
        workload += timed(generating);
        // Pre-validation judges the block against its starting state: keep
        // it (a pointer; the ledger is a persistent map) — only then.
        let block_start = validator.wants_blocks().then(|| world.snapshot());
        let started = Instant::now();
        // A recording needs the state before each transaction: one at a time.
        let whole = match recorder {
            None => validator.validate_block(&txs, &mut world),
            Some(_) => None,
        };
        let verdicts = match whole {
            Some(verdicts) => {
                let verdicts = verdicts?;
                validation += started.elapsed();
                verdicts
            }
            None => {
                if let Some(r) = recorder.as_mut() {
                    r.block()?;
                }
                let mut verdicts = Vec::with_capacity(txs.len());
                for (i, tx) in txs.iter().enumerate() {
                    if let Some(r) = recorder.as_mut() {
                        r.tx(tx, &world)?;
                    }
                    let t = Instant::now();
                    let verdict = validator.validate(tx, world.snapshot())?;
                    validation += t.elapsed();
                    if verdict == Verdict::Approved {
                        let applying = settings.profile.then(Instant::now);
                        // The validator released its handle: nothing is copied.
                        world.apply_at(i, tx);
                        workload += timed(applying);
                    }
                    verdicts.push(verdict);
                }
                verdicts
            }
        };
        for verdict in &verdicts {
            digest.push(verdict);
            observe(verdict);
        }
        validator.end_block(&txs, block_start.as_ref())?;
        done += in_block;
        progress(done);
    }
    if let Some(r) = recorder {
        r.finish()?;
    }
    Ok(Driven { digest, ledger: world.0, validation, workload })
}

/// A block's transactions and, replayed from a file, their recorded
/// writes (`None`: computed from the synthetic transactions' bytes).
type Drawn = (Vec<Vec<u8>>, Option<Vec<crate::workload::Writes>>);

/// Where a run's blocks come from.
enum Source {
    /// The seeded ledger's generator.
    Synthetic(Generator),
    /// A workload file.
    File(Box<crate::recording::Replay>),
}

impl Source {
    /// The source of `settings` and its genesis world.
    fn open(settings: &RunSettings) -> Result<(LedgerState, Source), Error> {
        match &settings.workload {
            None => {
                let mut rng = Rng::new(settings.seed);
                let genesis = Ledger::genesis(&mut rng);
                Ok((LedgerState::new(genesis), Source::Synthetic(Generator::new(rng))))
            }
            Some(path) => {
                let (replay, genesis) = crate::recording::Replay::open(path, settings.limits.module.bytes)
                    .map_err(|message| Error::Workload { path: path.display().to_string(), message })?;
                Ok((LedgerState::new(genesis), Source::File(Box::new(replay))))
            }
        }
    }

    /// The next block (at most the transactions still to run) and, from a
    /// file, its recorded writes; `None` when the file ends.
    fn block(
        &mut self,
        settings: &RunSettings,
        upgrades: Option<&[Vec<u8>; 2]>,
        ledger: &Ledger,
        done: u64,
    ) -> Result<Option<Drawn>, Error> {
        let left = settings.transactions - done;
        match self {
            Source::Synthetic(generator) => {
                let in_block = settings.block_size.min(left);
                let block = done / settings.block_size;
                let upgrade = match (upgrades, settings.upgrade_every) {
                    (Some(versions), Some(every)) if block > 0 && block.is_multiple_of(every) => {
                        Some((settings.upgrade_offset, versions[((block / every - 1) % 2) as usize].as_slice()))
                    }
                    _ => None,
                };
                let shape = BlockShape { hot_percent: settings.hot_percent, upgrade };
                Ok(Some((generator.block(ledger, in_block, shape), None)))
            }
            Source::File(replay) => {
                let path = || settings.workload.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
                let block = replay.next_block().map_err(|message| Error::Workload { path: path(), message })?;
                Ok(block.map(|mut b| {
                    let keep = usize::try_from(left).unwrap_or(usize::MAX).min(b.txs.len());
                    b.txs.truncate(keep);
                    b.writes.truncate(keep);
                    (b.txs, Some(b.writes))
                }))
            }
        }
    }
}

/// A recording in progress, written as an [`crate::input::Replacement`]
/// of the output: a failed run leaves no half-written workload.
struct Recording {
    recorder: crate::recording::Recorder<std::io::BufWriter<std::fs::File>>,
    replacement: crate::input::Replacement,
    path: std::path::PathBuf,
}

impl Recording {
    fn start(path: &std::path::Path, settings: &RunSettings, genesis: &Ledger) -> Result<Self, Error> {
        let err = |e: std::io::Error| Error::Output { path: path.display().to_string(), message: e.to_string() };
        let (replacement, file) = crate::input::Replacement::create(path).map_err(err)?;
        let header = crate::recording::Header {
            format: crate::recording::FORMAT.into(),
            version: crate::recording::VERSION,
            transactions: Some(settings.transactions),
            blocks: Some(settings.transactions.div_ceil(settings.block_size)),
            source: Some(format!(
                "peer record: synthetic ledger, seed {}, blocks of {}, {}, {}% hot transfers, executor {}",
                settings.seed,
                settings.block_size,
                settings.upgrade_every.map_or("no upgrades".into(), |n| format!(
                    "an upgrade every {n} blocks at position {}",
                    settings.upgrade_offset
                )),
                settings.hot_percent,
                settings.executor.name
            )),
        };
        let recorder = crate::recording::Recorder::new(std::io::BufWriter::new(file), &header, genesis).map_err(err)?;
        Ok(Recording { recorder, replacement, path: path.to_path_buf() })
    }

    fn err(&self, e: std::io::Error) -> Error {
        Error::Output { path: self.path.display().to_string(), message: e.to_string() }
    }

    fn block(&mut self) -> Result<(), Error> {
        self.recorder.block().map_err(|e| self.err(e))
    }

    /// `tx` with what it writes if approved against `world` now.
    fn tx(&mut self, tx: &[u8], world: &LedgerState) -> Result<(), Error> {
        let writes = world.0.writes_of(tx).unwrap_or_default();
        self.recorder.tx(tx, &writes).map_err(|e| self.err(e))
    }

    fn finish(self) -> Result<(), Error> {
        let Recording { recorder, replacement, path } = self;
        let err = |e: std::io::Error| Error::Output { path: path.display().to_string(), message: e.to_string() };
        recorder.finish().map_err(err)?;
        replacement.commit().map_err(err)
    }
}

/// How the run validates in order.
enum InOrder {
    /// One driver on this thread.
    Driver(Box<Driver>),
    /// In-order parallel validation (`--threads`).
    Blocks(Box<BlockValidator>),
}

/// The in-order validation and its optional pre-validation pool as a
/// [`Validator`].
struct Driving<'a> {
    in_order: InOrder,
    pool: Option<ExecutorPool>,
    pre_digest: VerdictDigest,
    pre_time: Duration,
    executor: &'a str,
}

impl Driving<'_> {
    fn error(&self, source: executor_core::Error) -> Error {
        Error::Executor { executor: self.executor.to_string(), source }
    }
}

impl Validator for Driving<'_> {
    fn validate(&mut self, tx: &[u8], state: SharedState) -> Result<Verdict, Error> {
        match &mut self.in_order {
            InOrder::Driver(driver) => driver.validate(tx, state).map_err(|e| self.error(e)),
            InOrder::Blocks(_) => unreachable!("blocks are validated whole"),
        }
    }

    fn validate_block(&mut self, txs: &[Vec<u8>], world: &mut LedgerState) -> Option<Result<Vec<Verdict>, Error>> {
        match &mut self.in_order {
            InOrder::Driver(_) => None,
            InOrder::Blocks(blocks) => Some(blocks.validate_block(txs, world).map_err(|e| self.error(e))),
        }
    }

    fn end_block(&mut self, txs: &[Vec<u8>], start: Option<&SharedState>) -> Result<(), Error> {
        if let (Some(pool), Some(start)) = (self.pool.as_mut(), start) {
            // Measured apart from the in-order validation it follows.
            let t = Instant::now();
            let verdicts = pool.prevalidate(txs, start);
            self.pre_time += t.elapsed();
            verdicts.map_err(|e| self.error(e))?.iter().for_each(|v| self.pre_digest.push(v));
        }
        if let InOrder::Driver(driver) = &mut self.in_order {
            driver.end_block();
        }
        Ok(())
    }

    fn wants_blocks(&self) -> bool {
        self.pool.is_some()
    }
}

/// [`run`], also handing every verdict, in order, to `observe` (e.g. to
/// find the first transaction where two backends differ).
pub fn run_observed(
    settings: &RunSettings,
    progress: &mut dyn FnMut(u64),
    observe: &mut dyn FnMut(&Verdict),
) -> Result<RunReport, Error> {
    let executor_error = |source| Error::Executor { executor: settings.executor.name.clone(), source };
    let started = Instant::now();
    let config = driver_config(settings)?;
    let hosts = |n: usize| {
        (0..n).map(|_| backends::host(settings.backend, settings.limits.clone())).collect::<Result<Vec<_>, _>>()
    };
    let workers = Workers::fit(settings)?;
    let in_order = match workers.threads {
        Some(n) => InOrder::Blocks(Box::new(
            BlockValidator::new(hosts(n)?, &settings.executor.bytes, config.clone()).map_err(executor_error)?,
        )),
        None => {
            let host = backends::host(settings.backend, settings.limits.clone())?;
            InOrder::Driver(Box::new(
                Driver::new(host, &settings.executor.bytes, config.clone()).map_err(executor_error)?,
            ))
        }
    };
    let load = started.elapsed();
    let mut notes = workers.notes;
    if let InOrder::Blocks(blocks) = &in_order
        && !blocks.is_parallel()
    {
        let note = format!(
            "--threads: policy {} carries state from one transaction to the next, so blocks are validated on one \
             thread (in parallel only under every-tx:1 and fresh)",
            settings.policy
        );
        tracing::warn!("{note}");
        notes.push(note);
    }
    let versions = match settings.upgrade_every {
        Some(_) => Some([settings.executor.variant()?, settings.executor.bytes.clone()]),
        None => None,
    };
    let pool = match workers.prevalidate {
        Some(n) => Some(ExecutorPool::new(hosts(n)?, &settings.executor.bytes, &config).map_err(executor_error)?),
        None => None,
    };
    let mut driving = Driving {
        in_order,
        pool,
        pre_digest: VerdictDigest::new(),
        pre_time: Duration::ZERO,
        executor: &settings.executor.name,
    };
    let driven = drive(settings, versions.as_ref(), &mut driving, progress, observe)?;
    let Driving { in_order, pool, pre_digest, pre_time, .. } = driving;
    let (stats, module, threads, parallel) = match &in_order {
        InOrder::Driver(driver) => (driver.stats().clone(), driver.module_shared(), 1, ParallelStats::default()),
        InOrder::Blocks(blocks) => {
            notes.extend_from_slice(blocks.notes());
            (blocks.stats(), blocks.module(), blocks.threads(), blocks.parallel_stats())
        }
    };
    let secs = driven.validation.as_secs_f64();
    Ok(RunReport {
        backend: settings.backend,
        policy: settings.policy,
        executor: settings.executor.name.clone(),
        executor_hash: module.hash_hex(),
        verdict_digest: driven.digest.hex(),
        state_digest: driven.ledger.digest(),
        elapsed_s: secs,
        tx_per_sec: if secs > 0.0 { stats.transactions as f64 / secs } else { 0.0 },
        load_s: load.as_secs_f64(),
        instrument_s: module.instrument_time.as_secs_f64(),
        compile_s: stats.compile_time.as_secs_f64(),
        threads,
        parallel,
        prevalidate: pool.as_ref().map(ExecutorPool::threads),
        prevalidation_digest: pool.as_ref().map(|_| pre_digest.hex()),
        prevalidation_tx_per_sec: pool.as_ref().map(|p| p.transactions() as f64 / pre_time.as_secs_f64().max(1e-9)),
        peak_rss_bytes: rss::peak_rss_bytes(),
        seed: settings.seed,
        block_size: settings.block_size,
        hot_percent: settings.hot_percent,
        profile: settings.profile.then(|| Profile::of(&stats, secs, driven.workload.as_secs_f64())),
        notes,
        config: settings.config.as_ref().map(|p| p.display().to_string()),
        workload: settings.workload.as_ref().map(|p| p.display().to_string()),
        stats,
    })
}

/// The workers a run starts beside the in-order validation's first
/// driver, as many as [`Limits::memory_cap`] allows: in-order workers and
/// pre-validation workers count together (each further driver by
/// [`Limits::worker_estimate`]); past the cap, `--threads` is lowered
/// first, then `--prevalidate`, never below one each, and a note says so.
struct Workers {
    threads: Option<usize>,
    prevalidate: Option<usize>,
    notes: Vec<String>,
}

impl Workers {
    fn fit(settings: &RunSettings) -> Result<Self, Error> {
        let parallel = BlockValidator::runs_in_parallel(settings.policy);
        let mut threads = settings.threads.map(|n| if parallel { n.get() } else { 1 });
        let mut prevalidate = settings.prevalidate.map(|n| n.get());
        let wanted = threads.unwrap_or(1) + prevalidate.unwrap_or(0);
        let mut notes = Vec::new();
        if wanted > 1 {
            let module = executor_core::module::prepare(&settings.executor.bytes, &settings.limits)
                .map_err(|source| Error::Executor { executor: settings.executor.name.clone(), source })?;
            let fit = module.drivers_that_fit(&settings.limits, wanted);
            if fit < wanted {
                let mut excess = wanted - fit;
                for (slot, flag) in [(&mut threads, "--threads"), (&mut prevalidate, "--prevalidate")] {
                    if let Some(n) = slot.as_mut() {
                        let cut = excess.min(*n - 1);
                        if cut > 0 {
                            notes.push(format!(
                                "{flag} {}: memory_cap ({} bytes) fits {fit} driver(s) of this executor at \
                                 memory_limit {} bytes; running {}",
                                *n,
                                settings.limits.memory_cap,
                                settings.limits.memory_bytes,
                                *n - cut
                            ));
                            *n -= cut;
                            excess -= cut;
                        }
                    }
                }
                notes.iter().for_each(|note| tracing::warn!("{note}"));
            }
        }
        Ok(Workers { threads, prevalidate, notes })
    }
}

/// The driver configuration `settings` describe, with the cache opened.
pub(crate) fn driver_config(settings: &RunSettings) -> Result<DriverConfig, Error> {
    let cache = match &settings.cache {
        Some(c) => Some(Arc::new(ArtifactCache::open(c).map_err(Error::Cache)?)),
        None => None,
    };
    Ok(DriverConfig {
        policy: settings.policy,
        recycle_watermark: settings.recycle_watermark,
        audit_every: settings.audit_every,
        timings: settings.profile,
        cache,
        snapshots: settings.snapshots,
        blank: settings.blank,
        ..DriverConfig::default()
    })
}

/// The driver `settings` describe, loaded.
pub(crate) fn driver(settings: &RunSettings) -> Result<Driver, Error> {
    let host = backends::host(settings.backend, settings.limits.clone())?;
    Driver::new(host, &settings.executor.bytes, driver_config(settings)?)
        .map_err(|source| Error::Executor { executor: settings.executor.name.clone(), source })
}

/// Cold and warm load of an executor on one backend (`peer compare`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LoadTimes {
    /// A cold load: checks + instrumentation + the engine's compilation,
    /// seconds.
    pub cold_s: f64,
    /// Of it, checks + instrumentation, seconds.
    pub prepare_s: f64,
    /// A warm load from the cache (the prepared module and compiled code
    /// at once), seconds; `None`: the backend cannot serialise.
    pub warm_s: Option<f64>,
    /// Building the first blank instance by running `start` and
    /// `executor_init` (instantiation included), seconds.
    pub init_build_s: f64,
    /// Building it from the blank snapshot in the cache instead, seconds;
    /// `None`: the executor's blank state is unportable.
    pub snapshot_build_s: Option<f64>,
}

/// Measures [`LoadTimes`] (medians of `rounds`) with a private cache in a
/// temporary directory, removed afterwards.
pub fn load_times(
    backend: BackendKind,
    executor: &Executor,
    limits: &Limits,
    rounds: usize,
) -> Result<LoadTimes, Error> {
    use executor_core::cache;
    let host = backends::host(backend, limits.clone())?;
    let executor_error = |source| Error::Executor { executor: executor.name.clone(), source };
    let median = crate::bench::median;
    let rounds = rounds.max(1);
    let (mut cold, mut prepare) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let loaded = cache::load(&*host, &executor.bytes, None).map_err(executor_error)?;
        cold.push(started.elapsed().as_secs_f64());
        prepare.push((loaded.module.check_time + loaded.module.instrument_time).as_secs_f64());
    }
    let dir = std::env::temp_dir().join(format!("peer-load-times-{}-{backend}", std::process::id()));
    let cache_error = |message: String| executor_core::Error::Cache { dir: dir.display().to_string(), message };
    let warm = (|| {
        let store =
            Arc::new(ArtifactCache::open(&CacheConfig { dir: dir.clone(), max_bytes: cache::DEFAULT_MAX_BYTES })?);
        let mut warm = Vec::new();
        if cache::load(&*host, &executor.bytes, Some(&store))?.outcome != CacheOutcome::Off {
            for _ in 0..rounds {
                let started = Instant::now();
                let loaded = cache::load(&*host, &executor.bytes, Some(&store))?;
                warm.push(started.elapsed().as_secs_f64());
                if loaded.outcome != CacheOutcome::Hit {
                    return Err(cache_error(format!("a second load was a {}, not a hit", loaded.outcome)));
                }
            }
        }
        // The first instance's build, timed by the driver: by init, then
        // from the snapshot the first of these stored.
        let first_build = |snapshots: bool| {
            let config = DriverConfig { cache: Some(store.clone()), snapshots, timings: true, ..Default::default() };
            let driver = Driver::new(host.clone(), &executor.bytes, config)?;
            Ok::<_, executor_core::Error>((driver.stats().build_histogram.sum().as_secs_f64(), driver.stats().snapshot))
        };
        let portable = first_build(true)?.1 != SnapshotOutcome::Unportable;
        let (mut init, mut restored) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            init.push(first_build(false)?.0);
            if portable {
                let (took, outcome) = first_build(true)?;
                if outcome != SnapshotOutcome::Restored {
                    return Err(cache_error(format!("the blank snapshot was {outcome}, not restored")));
                }
                restored.push(took);
            }
        }
        Ok(((!warm.is_empty()).then(|| median(warm)), median(init), (!restored.is_empty()).then(|| median(restored))))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let (warm_s, init_build_s, snapshot_build_s) = warm.map_err(executor_error)?;
    Ok(LoadTimes { cold_s: median(cold), prepare_s: median(prepare), warm_s, init_build_s, snapshot_build_s })
}
