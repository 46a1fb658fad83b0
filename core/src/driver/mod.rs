//! The [`Driver`]: one warm instance of one executor on any backend, kept
//! as the persistence policy says.
//!
//! It decides, exactly as abi.md pins it, when that instance is blanked
//! (scheduled by the [`PersistencePolicy`]'s [`Schedule`]) or recycled
//! (after a rejection, past the memory watermark, on purge, after a host
//! failure). Both happen lazily, before the next transaction that needs
//! the instance; a recycle restarts the schedule. Its rooms: this file
//! (the public driver: validation, audit, upgrade), [`build`] (how every
//! instance is built, and the blank snapshot), [`outcome`] (how a call's
//! end becomes a verdict — backends report, the driver decides) and
//! [`stats`] (what it counts).

mod build;
mod choice;
mod outcome;
mod stats;

pub use choice::BlankMethod;
pub use stats::{RecycleCause, SnapshotOutcome, Stats};

use crate::backend::{Blanked, CallError, ExecutorHost, ExecutorInstance, Export, InstanceMode};
use crate::cache::Loaded;
use crate::host::{Phase, SharedState};
use crate::instrument::Tracking;
use crate::module::PreparedModule;
use crate::policy::Schedule;
use crate::verdict::{Rejection, Verdict};
use crate::{Error, PersistencePolicy, Result};
use build::{Ctx, Executor};
use choice::Choice;
use outcome::{HostFailed, attempt, guarded};
use stats::elapsed;
use std::sync::Arc;
use std::time::Instant;

/// How the driver runs: the policy and the recycle watermark.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// When to blank.
    pub policy: PersistencePolicy,
    /// Recycle when linear memory is above this many bytes after a
    /// transaction. `None`: half the memory limit.
    pub recycle_watermark: Option<u64>,
    /// Time builds, blanks and calls into [`Stats`]. Off by default: two
    /// clock reads cost a measurable share of a sub-microsecond
    /// transaction.
    pub timings: bool,
    /// Audit mode: validate every k-th transaction also on a blank
    /// instance; a different verdict is a state leak (counted, logged, and
    /// the warm instance recycled). Costs one more instance and, every k
    /// transactions, one more validation and blank.
    pub audit_every: Option<std::num::NonZeroU32>,
    /// The compiled-executor cache for loads and upgrades (see
    /// [`crate::cache`]); `None` compiles every time.
    pub cache: Option<Arc<crate::ArtifactCache>>,
    /// Verdicts only, as in pre-validation ([`crate::ExecutorPool`]): an
    /// approved upgrade is not installed.
    pub verdicts_only: bool,
    /// Build instances from the executor's
    /// [`BlankSnapshot`](crate::snapshot::BlankSnapshot) instead of running
    /// `start` and `executor_init` again: taken at the first build, kept in
    /// memory for recycles, rebuilds and upgrades' second instance, and —
    /// with [`DriverConfig::cache`] — on disk for restarts. On by default;
    /// costs one copy of the bytes init wrote per build (on hosts that
    /// [bake](ExecutorHost::bakes_snapshots), from the first rebuild on, a
    /// compile in the background and then a mapping). Never under `fresh`,
    /// which is the reference and always runs init.
    pub snapshots: bool,
    /// How a scheduled blank is done.
    pub blank: BlankMethod,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            policy: PersistencePolicy::default(),
            recycle_watermark: None,
            timings: false,
            audit_every: None,
            cache: None,
            verdicts_only: false,
            snapshots: true,
            blank: BlankMethod::Auto,
        }
    }
}

/// Drives one executor on one backend under one policy.
pub struct Driver {
    host: Arc<dyn ExecutorHost>,
    config: DriverConfig,
    executor: Executor,
    instance: Option<Box<dyn ExecutorInstance>>,
    /// The blank instance audits run on (built when first needed).
    auditor: Option<Box<dyn ExecutorInstance>>,
    /// A recycle the next transaction needs first.
    due: Option<RecycleCause>,
    schedule: Schedule,
    stats: Stats,
    /// The current executor's bytes as given (to prepare a variant).
    source: Option<Arc<[u8]>>,
    /// How blanks are being chosen ([`BlankMethod::Auto`]).
    choice: Choice,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("backend", &self.host.name())
            .field("config", &self.config)
            .field("executor", &self.executor.module.hash_hex())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// What an audit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuditOutcome {
    NotAudited,
    Same,
    Leak,
}

impl Driver {
    /// Loads an executor (binary or WAT): checks and prepares it and
    /// compiles it — or takes both from [`DriverConfig::cache`] — and
    /// builds the first instance (instantiation, `start`, `executor_init`,
    /// blank-state snapshot). Every load error surfaces here.
    pub fn new(host: Arc<dyn ExecutorHost>, executor: &[u8], config: DriverConfig) -> Result<Self> {
        let loaded = load(&*host, executor, &config)?;
        Self::from_loaded(host, loaded, config, Some(executor.into()))
    }

    /// [`Driver::new`] for a module already prepared (with the same limits
    /// as `host`'s).
    pub fn from_prepared(
        host: Arc<dyn ExecutorHost>,
        module: Arc<PreparedModule>,
        config: DriverConfig,
    ) -> Result<Self> {
        let loaded = crate::cache::compile(&*host, module)?;
        Self::from_loaded(host, loaded, config, None)
    }

    fn from_loaded(
        host: Arc<dyn ExecutorHost>,
        loaded: Loaded,
        config: DriverConfig,
        source: Option<Arc<[u8]>>,
    ) -> Result<Self> {
        let stats = Stats::new(loaded.outcome, loaded.compile_time);
        tracing::info!(
            backend = host.name(),
            executor = %loaded.module.hash_hex(),
            cache = %loaded.outcome,
            compile_ms = loaded.compile_time.as_secs_f64() * 1e3,
            instrument_ms = loaded.module.instrument_time.as_secs_f64() * 1e3,
            "executor loaded"
        );
        let executor = Executor::new(&*host, &config, loaded);
        let schedule = Schedule::new(config.policy);
        let choice = Choice::Settled;
        let mut driver = Driver {
            host,
            config,
            executor,
            instance: None,
            auditor: None,
            due: None,
            schedule,
            stats,
            source,
            choice,
        };
        driver.instance = Some(driver.build(driver.mode())?);
        driver.choice = Choice::start(driver.config.blank, &driver.executor, driver.can_choose());
        Ok(driver)
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.host.name()
    }

    /// The policy.
    pub fn policy(&self) -> PersistencePolicy {
        self.config.policy
    }

    /// The loaded executor.
    pub fn module(&self) -> &PreparedModule {
        &self.executor.module
    }

    /// The limits it runs under (its host's).
    pub fn limits(&self) -> &crate::Limits {
        self.host.limits()
    }

    /// The loaded executor, shared.
    pub fn module_shared(&self) -> Arc<PreparedModule> {
        self.executor.module.clone()
    }

    /// Counters and timings so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Installs `executor` now, as an approved upgrade transaction does:
    /// checks, compilation (or the cache), `executor_migrate` against
    /// `state` on an instance then discarded, a new blank instance; the old
    /// executor's instances and code are freed. On `Err` the current
    /// executor stays (a load error of the new one, or a host failure:
    /// [`Error::is_host_failure`] tells).
    pub fn upgrade(&mut self, executor: &[u8], state: SharedState) -> Result<()> {
        self.install(executor, Some(state))
    }

    /// Installs `executor` as [`Driver::upgrade`] does but without running
    /// `executor_migrate`: for the other workers of in-order parallel
    /// validation once one of them has migrated the upgrade at its commit
    /// position (a migration judges the upgrade; it writes nothing any
    /// instance keeps).
    pub fn adopt(&mut self, executor: &[u8]) -> Result<()> {
        self.install(executor, None)
    }

    /// The linear memory and mutable globals of a newly built blank
    /// instance of the loaded executor, built as every rebuild is — from
    /// the blank snapshot if there is one — so tests and operators can
    /// check that a snapshot restores exactly what `executor_init` makes.
    /// The globals are `None` if one holds a reference. Counts as an
    /// instance built; the warm instance is untouched.
    pub fn inspect_blank(&mut self) -> Result<(Vec<u8>, Option<Vec<crate::GlobalValue>>)> {
        let mut instance = self.build(InstanceMode::Reusable)?;
        let globals = instance
            .global_values()
            .map_err(|e| Error::HostFailure { backend: self.backend(), message: format!("{e:?}") })?;
        Ok((instance.memory().to_vec(), globals))
    }

    /// Waits for work the driver does in the background — baking the
    /// blank snapshot into the executor, on hosts that
    /// [bake](ExecutorHost::bakes_snapshots) — so that what follows
    /// measures or tests the steady state.
    pub fn settle(&mut self) {
        let mut ctx = Ctx { host: &self.host, config: &self.config, stats: &mut self.stats };
        self.executor.bake(&mut ctx, true);
    }

    /// Validates one encoded transaction against `state` and returns its
    /// verdict. `state` is held only for the length of the call.
    ///
    /// `Err` only for host failures (after one rebuild and retry) — never
    /// for anything the executor does.
    pub fn validate(&mut self, tx: &[u8], state: SharedState) -> Result<Verdict> {
        self.validate_at(tx, state, self.stats.transactions)
    }

    /// [`Driver::validate`] for the transaction at 0-based position `index`
    /// of the run, which decides whether it is audited
    /// ([`DriverConfig::audit_every`]): a worker of in-order parallel
    /// validation sees only some of the transactions, yet audits are chosen
    /// by committed position, as on one thread.
    ///
    /// What the guest logs meanwhile carries the executor's hash and
    /// `index` ([`crate::guest_log`]).
    pub fn validate_at(&mut self, tx: &[u8], state: SharedState, index: u64) -> Result<Verdict> {
        let context = crate::guest_log::LogContext::new(&self.executor.module.hash, index);
        crate::guest_log::in_context(context, || self.validate_in_context(tx, state, index))
    }

    fn validate_in_context(&mut self, tx: &[u8], state: SharedState, index: u64) -> Result<Verdict> {
        self.ready()?;
        let (first, handed_back) = self.run(tx, state);
        let Some(state) = handed_back else {
            // No import keeps it (`state_get` puts it back even after a
            // panic in the embedder's `StateView`); if one did, there would
            // be nothing to retry with.
            self.stats.host_failures += 1;
            let message = match first {
                Err(HostFailed(message)) => message,
                Ok(_) => "the instance kept the world state".into(),
            };
            let message = format!("{message} (not retried: the world state was lost with it)");
            return Err(Error::HostFailure { backend: self.backend(), message });
        };
        let mut verdict = match first {
            Ok(v) => v,
            Err(HostFailed(first)) => {
                tracing::warn!(message = %first, "host failure; rebuilding and retrying once");
                self.stats.host_failures += 1;
                self.recycle(RecycleCause::HostFailure)?;
                self.run(tx, state.clone()).0.map_err(|HostFailed(message)| Error::HostFailure {
                    backend: self.backend(),
                    message: format!("{message} (after a retry; first failure: {first})"),
                })?
            }
        };
        self.schedule.served();
        let audited = match self.config.audit_every {
            Some(k) if (index + 1).is_multiple_of(u64::from(k.get())) => self.audit(tx, state.clone(), &verdict),
            _ => AuditOutcome::NotAudited,
        };
        let mut upgraded = false;
        if verdict == Verdict::Approved
            && !self.config.verdicts_only
            && let Some(executor) = abi::upgrade_executor(tx)
        {
            match self.install(executor, Some(state)) {
                Ok(()) => upgraded = true,
                Err(e) if e.is_host_failure() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "upgrade failed; the old executor stays");
                    verdict = Verdict::rejected(Rejection::UpgradeFailed);
                }
            }
        }
        self.stats.count(&verdict);
        if let Verdict::Rejected { rejection } = &verdict {
            tracing::debug!(kind = %rejection.kind(), %rejection, "rejected");
            self.due = Some(rejection.kind().into());
        }
        if !upgraded && self.due.is_none() && audited == AuditOutcome::Leak {
            self.due = Some(RecycleCause::AuditMismatch);
        }
        if self.due.is_none() && self.memory_in_use() > self.watermark() {
            self.due = Some(RecycleCause::Watermark);
        }
        Ok(verdict)
    }

    /// Marks the end of a block (for `every-block:N`).
    pub fn end_block(&mut self) {
        self.schedule.block_ended();
        self.stats.blocks += 1;
    }

    /// Drops the warm instance now, freeing its memory; the next transaction
    /// gets a rebuilt blank instance (counted as a `purge` recycle).
    pub fn purge(&mut self) {
        self.instance = None;
        self.auditor = None;
        self.due = Some(RecycleCause::Purge);
    }

    /// A copy of the warm instance's linear memory (the guest's; the
    /// books are apart), if there is a warm instance: for tests and tools
    /// that compare it with another run's.
    pub fn guest_memory(&mut self) -> Option<Vec<u8>> {
        self.instance.as_mut().map(|i| i.memory().to_vec())
    }

    /// Current linear memory of the warm instance, in bytes.
    pub fn memory_in_use(&mut self) -> u64 {
        self.instance.as_mut().map_or(0, |i| i.memory_size())
    }

    fn watermark(&self) -> u64 {
        self.config.recycle_watermark.unwrap_or(self.host.limits().memory_pages() * crate::limits::PAGE_SIZE / 2)
    }

    fn mode(&self) -> InstanceMode {
        match self.config.policy {
            PersistencePolicy::Fresh => InstanceMode::Fresh,
            _ => InstanceMode::Reusable,
        }
    }

    /// Builds an instance of the current executor in `mode`.
    fn build(&mut self, mode: InstanceMode) -> Result<Box<dyn ExecutorInstance>> {
        let mut ctx = Ctx { host: &self.host, config: &self.config, stats: &mut self.stats };
        let built = self.executor.build(&mut ctx, mode);
        self.stats.snapshot = self.executor.snapshot_outcome();
        self.stats.tracking = self.executor.tracking();
        built
    }

    /// Whether the blank method can be chosen: the bytes to prepare a
    /// variant from are known, and instances are reused.
    fn can_choose(&self) -> bool {
        self.source.is_some() && self.mode() == InstanceMode::Reusable
    }

    /// Starts preparing the current executor without the write barrier,
    /// in the background ([`BlankMethod::Auto`]).
    fn prepare_untracked(&mut self) {
        let (host, cache, source) = (self.host.clone(), self.config.cache.clone(), self.source.clone());
        self.choice
            .prepare(|snapshot| choice::prepare(host, source.expect("chosen only with source bytes"), cache, snapshot));
    }

    /// Replaces the warm instance by a newly built blank one (the old
    /// store dropped first: bounded memory) and restarts the schedule.
    fn rebuild(&mut self) -> Result<()> {
        self.instance = None;
        self.instance = Some(self.build(self.mode())?);
        self.schedule.restart();
        Ok(())
    }

    /// A rebuild outside the schedule, counted under `cause`.
    fn recycle(&mut self, cause: RecycleCause) -> Result<()> {
        tracing::debug!(%cause, "recycle");
        self.stats.recycled(cause);
        let started = self.config.timings.then(Instant::now);
        let rebuilt = self.rebuild();
        self.stats.recycle_time += elapsed(started);
        rebuilt
    }

    /// Lazily blanks or recycles before a transaction.
    fn ready(&mut self) -> Result<()> {
        let scheduled = self.schedule.due();
        // The untracked variant, once prepared, replaces the instance only
        // where it is replaced anyway (see `choice`): at a recycle or a
        // scheduled blank, which then rebuilds.
        let swapped = (scheduled || self.due.is_some())
            && match self.choice.ready(&self.executor) {
                Some(variant) => {
                    self.executor = variant;
                    self.auditor = None;
                    true
                }
                None => false,
            };
        if let Some(cause) = self.due.take() {
            self.recycle(cause)?;
            // A recycle leaves a blank instance and restarts the count; only
            // under `fresh` is every transaction after the first a blank
            // regardless (abi.md).
            if scheduled && self.config.policy == PersistencePolicy::Fresh {
                self.stats.blanks += 1;
            }
            return Ok(());
        }
        let mode = self.mode();
        let Some(instance) = self.instance.as_mut() else {
            // Dropped after a host failure that the retry did not survive.
            return self.recycle(RecycleCause::HostFailure);
        };
        if !scheduled {
            return Ok(());
        }
        let started = self.config.timings.then(Instant::now);
        self.stats.blanks += 1;
        tracing::trace!("blank");
        // An untracked instance is rebuilt: nothing says what it dirtied.
        let restored = match (mode, self.executor.tracking()) {
            (InstanceMode::Reusable, Tracking::Barrier) if !swapped => {
                guarded(|| instance.blank().map_err(HostFailed::from))
            }
            _ => Ok(Blanked::NeedsRebuild),
        };
        let rebuilt = match restored {
            Ok(Blanked::Restored) => {
                self.schedule.restart();
                false
            }
            Ok(_) => {
                self.rebuild()?;
                true
            }
            Err(HostFailed(message)) => {
                tracing::warn!(%message, "blank failed; rebuilding");
                self.stats.host_failures += 1;
                self.rebuild()?;
                true
            }
        };
        self.stats.blank_histogram.record_since(started);
        if self.choice.blanked(rebuilt) {
            self.prepare_untracked();
        }
        Ok(())
    }

    /// One attempt at a transaction on the current instance; hands `state`
    /// back as [`attempt`] does.
    fn run(&mut self, tx: &[u8], state: SharedState) -> (Result<Verdict, HostFailed>, Option<SharedState>) {
        let started = self.config.timings.then(Instant::now);
        // Borrowed field by field: no copy of the limits per transaction.
        let (result, state) = match self.instance.as_mut() {
            Some(instance) => attempt(instance.as_mut(), self.host.limits(), tx, state, &mut self.stats),
            None => (Err(HostFailed("no instance".into())), Some(state)),
        };
        self.stats.call_histogram.record_since(started);
        if result.is_err() {
            // Never reuse a poisoned instance.
            self.instance = None;
        }
        (result, state)
    }

    /// Validates the transaction again on a blank instance of the same
    /// executor (audit mode) and compares. The warm verdict stands.
    fn audit(&mut self, tx: &[u8], state: SharedState, warm: &Verdict) -> AuditOutcome {
        let mut auditor = match self.auditor.take() {
            Some(a) => a,
            None => match self.build(InstanceMode::Reusable) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "audit instance could not be built; audit skipped");
                    return AuditOutcome::NotAudited;
                }
            },
        };
        let blank = match attempt(auditor.as_mut(), self.host.limits(), tx, state, &mut self.stats).0 {
            Ok(v) => v,
            Err(HostFailed(message)) => {
                tracing::warn!(%message, "host failure in an audit; audit skipped");
                self.stats.host_failures += 1;
                return AuditOutcome::NotAudited;
            }
        };
        self.stats.audits += 1;
        // Keep the auditor blank for next time; after a rejection (or if it
        // cannot be restored in place) rebuild it.
        if blank.rejection().is_none()
            && self.executor.tracking() == Tracking::Barrier
            && matches!(guarded(|| auditor.blank().map_err(HostFailed::from)), Ok(Blanked::Restored))
        {
            self.auditor = Some(auditor);
        }
        if &blank == warm {
            return AuditOutcome::Same;
        }
        self.stats.state_leaks += 1;
        tracing::warn!(warm = %warm, blank = %blank, "state leak: the warm instance's verdict differs from a blank instance's");
        AuditOutcome::Leak
    }

    /// Installs `executor` as an upgrade: checks, compile, a migration run
    /// (`executor_migrate`, if exported, and if `state` is given) on an
    /// instance that is then discarded, and a new blank instance. `Err`
    /// leaves the old executor in place: a load error means
    /// `rejected(upgrade_failed)`, a host failure goes to the embedder.
    fn install(&mut self, executor: &[u8], state: Option<SharedState>) -> Result<()> {
        let loaded = load(&*self.host, executor, &self.config)?;
        let mut next = Executor::new(&*self.host, &self.config, loaded);
        let mode = self.mode();
        let mut ctx = Ctx { host: &self.host, config: &self.config, stats: &mut self.stats };
        if let Some(state) = state.filter(|_| next.module.info.has_migrate) {
            // Reusable: the engine's fast path (on wasmtime a pooled slot
            // from the same compiled code; `Fresh` would compile again).
            let migrator = next.build(&mut ctx, InstanceMode::Reusable)?;
            migrate(migrator, &next.module, &**ctx.host, state)?;
        }
        let instance = next.build(&mut ctx, mode)?;
        // Free the old executor's instances, compiled code and image now.
        self.instance = None;
        self.auditor = None;
        self.executor = next;
        self.stats.snapshot = self.executor.snapshot_outcome();
        self.instance = Some(instance);
        self.schedule.restart();
        self.source = Some(executor.into());
        self.choice = Choice::start(self.config.blank, &self.executor, self.can_choose());
        self.stats.tracking = self.executor.tracking();
        self.stats.upgrades += 1;
        self.stats.recycled(RecycleCause::Upgrade);
        tracing::info!(executor = %self.executor.module.hash_hex(), "executor upgraded");
        Ok(())
    }
}

/// Runs `executor_migrate` on `migrator` (then dropped) against `state`:
/// `Ok` if it returned 0.
fn migrate(
    mut migrator: Box<dyn ExecutorInstance>,
    module: &PreparedModule,
    host: &dyn ExecutorHost,
    state: SharedState,
) -> Result<()> {
    let limits = host.limits();
    migrator.env().begin(Phase::Migrate, Some(state));
    module.info.layout.arm(migrator.books(), limits.init_fuel, limits.max_stack);
    let outcome = guarded(|| Ok(migrator.call(Export::Migrate, &[])));
    migrator.env().end();
    let refused = |reason: String| Err(Error::InitFailed { phase: "executor_migrate", reason });
    match outcome {
        Ok(Ok(Some(0))) => Ok(()),
        Ok(Ok(status)) => refused(format!("returned {status:?}")),
        Ok(Err(CallError::Trap(t))) => refused(format!("trapped: {t:?}")),
        Ok(Err(CallError::Host(message))) | Err(HostFailed(message)) => {
            Err(Error::HostFailure { backend: host.name(), message })
        }
    }
}

/// Loads `executor` instrumented for `config`'s blank method: without the
/// write barrier if blanks always rebuild.
fn load(host: &dyn ExecutorHost, executor: &[u8], config: &DriverConfig) -> Result<Loaded> {
    let tracking = Choice::initial_tracking(config.blank, config.policy);
    crate::cache::load_tracked(host, executor, tracking, config.cache.as_deref())
}
