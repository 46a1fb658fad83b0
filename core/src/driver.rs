//! The one place the persistence policy lives.
//!
//! The [`Driver`] owns one warm instance of one executor on any backend and
//! decides, exactly as abi.md pins it, when that instance is blanked
//! (scheduled by the [`PersistencePolicy`]) or recycled (after a rejection,
//! past the memory watermark, on purge, after a host failure). Both happen
//! lazily, before the next transaction that needs the instance; a recycle
//! restarts the policy's count. It also maps everything a call can end with
//! to a [`Verdict`] — backends report, the driver decides.

use crate::backend::{
    Blanked, CallError, CompiledExecutor, ExecutorHost, ExecutorInstance, Export, InstanceMode, Trap,
};
use crate::host::{Abort, HostEnv, Phase, SharedState};
use crate::module::PreparedModule;
use crate::snapshot::BlankSnapshot;
use crate::verdict::{Rejection, RejectionKind, Verdict};
use crate::{Error, PersistencePolicy, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strum::{Display, EnumIter, IntoStaticStr};

/// Why an instance was rebuilt outside the policy's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Display, EnumIter, IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum RecycleCause {
    /// After a `rejected(out_of_fuel)` verdict.
    OutOfFuel,
    /// After a `rejected(out_of_memory)` verdict.
    OutOfMemory,
    /// After a `rejected(stack_overflow)` verdict.
    StackOverflow,
    /// After a `rejected(trap)` verdict.
    Trap,
    /// After a `rejected(host_fault)` verdict.
    HostFault,
    /// After a `rejected(bad_verdict)` verdict.
    BadVerdict,
    /// After a `rejected(upgrade_failed)` verdict.
    UpgradeFailed,
    /// Linear memory was above the recycle watermark after a transaction.
    Watermark,
    /// The executor was upgraded.
    Upgrade,
    /// The embedder asked for a purge.
    Purge,
    /// An audited verdict differed from the blank instance's.
    AuditMismatch,
    /// The host itself failed (panic or internal error) and the transaction
    /// was retried on a rebuilt instance.
    HostFailure,
}

impl From<RejectionKind> for RecycleCause {
    fn from(kind: RejectionKind) -> Self {
        match kind {
            RejectionKind::OutOfFuel => RecycleCause::OutOfFuel,
            RejectionKind::OutOfMemory => RecycleCause::OutOfMemory,
            RejectionKind::StackOverflow => RecycleCause::StackOverflow,
            RejectionKind::Trap => RecycleCause::Trap,
            RejectionKind::HostFault => RecycleCause::HostFault,
            RejectionKind::BadVerdict => RecycleCause::BadVerdict,
            RejectionKind::UpgradeFailed => RecycleCause::UpgradeFailed,
        }
    }
}

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
    /// Build instances from the executor's [`BlankSnapshot`] instead of
    /// running `start` and `executor_init` again: taken at the first build,
    /// kept in memory for recycles, rebuilds and upgrades' second
    /// instance, and — with [`DriverConfig::cache`] — on disk for restarts.
    /// On by default; costs one copy of the bytes init wrote per build (on
    /// hosts that [bake](ExecutorHost::bakes_snapshots), from the first
    /// rebuild on, a compile in the background and then a mapping). Never
    /// under `fresh`, which is the reference and always runs init.
    pub snapshots: bool,
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
        }
    }
}

/// Whether an executor's instances come from a [`BlankSnapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Display, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum SnapshotOutcome {
    /// Snapshots are off ([`DriverConfig::snapshots`], or the `fresh`
    /// policy).
    #[default]
    Off,
    /// The first build ran `executor_init` and took the snapshot (and
    /// stored it, with a cache); later builds adopt it.
    Captured,
    /// The first instance adopted a snapshot from the cache: no
    /// `executor_init` ran in this process.
    Restored,
    /// This executor's blank state cannot move to another instance
    /// ([`crate::snapshot::Unportable`]): every build runs init.
    Unportable,
}

/// The loaded executor's snapshot, as far as the driver knows it.
#[derive(Default)]
enum SnapshotSlot {
    /// Off: every build runs init.
    #[default]
    Off,
    /// The next build runs init and takes one.
    Pending,
    /// Builds adopt it.
    Ready {
        snapshot: Arc<BlankSnapshot>,
        /// Read from the cache (so this process never ran init).
        from_disk: bool,
        /// Instances of this executor built so far (by init or from the
        /// snapshot): baking starts at the second, a rebuild, so the first
        /// instance never pays or waits for a compile, and an executor
        /// never rebuilt is never baked.
        builds: u64,
        /// The executor with the snapshot baked in, compiled, on hosts
        /// that [bake](ExecutorHost::bakes_snapshots).
        baked: Baked,
    },
    /// Cannot be taken for this executor.
    Unportable,
}

/// The baked executor of a [`SnapshotSlot::Ready`].
#[derive(Default)]
enum Baked {
    /// Not started, or the host does not bake.
    #[default]
    NotYet,
    /// Being baked and compiled on a thread of its own: a compile (or a
    /// large cache entry's load) would otherwise stall the build that
    /// needs it by milliseconds; until it is done, builds adopt the
    /// snapshot by copying.
    Baking(std::thread::JoinHandle<Result<crate::cache::Loaded>>, Instant),
    /// Compiled (or loaded from the cache). Its instances use the
    /// executor's own module description: baking changes no layout.
    Ready(Arc<dyn CompiledExecutor>),
    /// Baking failed (logged): adopt the snapshot instead.
    Failed,
}

impl SnapshotSlot {
    /// A snapshot read from the cache (no instance built yet) or just
    /// taken (from the first instance, built by init).
    fn ready(snapshot: BlankSnapshot, from_disk: bool) -> Self {
        let builds = u64::from(!from_disk);
        SnapshotSlot::Ready { snapshot: Arc::new(snapshot), from_disk, builds, baked: Baked::NotYet }
    }

    fn outcome(&self) -> SnapshotOutcome {
        match self {
            SnapshotSlot::Off | SnapshotSlot::Pending => SnapshotOutcome::Off,
            SnapshotSlot::Ready { from_disk: true, .. } => SnapshotOutcome::Restored,
            SnapshotSlot::Ready { from_disk: false, .. } => SnapshotOutcome::Captured,
            SnapshotSlot::Unportable => SnapshotOutcome::Unportable,
        }
    }
}

/// Counters and timings of a driver.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Transactions validated.
    pub transactions: u64,
    /// Approved verdicts.
    pub approved: u64,
    /// Denied verdicts.
    pub denied: u64,
    /// Rejected verdicts by kind.
    pub rejected: BTreeMap<RejectionKind, u64>,
    /// Scheduled blanks done.
    pub blanks: u64,
    /// Recycles done (unscheduled rebuilds), all causes.
    pub recycles: u64,
    /// Recycles by cause.
    pub recycles_by_cause: BTreeMap<RecycleCause, u64>,
    /// Blocks ended.
    pub blocks: u64,
    /// Host failures survived by a rebuild and retry.
    pub host_failures: u64,
    /// Executor upgrades installed.
    pub upgrades: u64,
    /// Transactions audited on a blank instance.
    pub audits: u64,
    /// Audited transactions whose warm verdict differed.
    pub state_leaks: u64,
    /// Times an engine's own fuel or stack limit fired before the
    /// deterministic one (never, if engine stacks are sized right).
    pub backstops: u64,
    /// Instances built (instantiate + `executor_init`, or + a snapshot).
    pub instances_built: u64,
    /// Of them, built from the [`BlankSnapshot`] instead of running
    /// `start` and `executor_init`.
    pub restored_builds: u64,
    /// Whether the current executor's instances come from a snapshot.
    pub snapshot: SnapshotOutcome,
    /// Whether the current executor's compiled code came from the cache.
    pub cache: crate::CacheOutcome,
    /// Time the current executor's compilation (or cache load) took.
    #[serde(skip)]
    pub compile_time: Duration,
    /// Executors whose blank snapshot was baked in and compiled (or loaded
    /// from the cache), on hosts that [bake](ExecutorHost::bakes_snapshots).
    pub baked_executors: u64,
    /// Time spent baking and compiling them.
    #[serde(skip)]
    pub bake_time: Duration,
    /// Instance builds (with [`DriverConfig::timings`]): each one's
    /// duration; its `sum()` is the time spent building.
    #[serde(skip)]
    pub build_histogram: crate::Histogram,
    /// Of the builds' time: instantiating (memory, data segments, tables);
    /// the rest is `start`, `executor_init` and the blank-state snapshot.
    #[serde(skip)]
    pub instantiate_time: Duration,
    /// Scheduled blanks, restores and rebuilds (with
    /// [`DriverConfig::timings`]): each one's duration.
    #[serde(skip)]
    pub blank_histogram: crate::Histogram,
    /// Time spent rebuilding instances for recycles (with
    /// [`DriverConfig::timings`]).
    #[serde(skip)]
    pub recycle_time: Duration,
    /// Guest calls of each transaction (with [`DriverConfig::timings`]):
    /// each one's duration.
    #[serde(skip)]
    pub call_histogram: crate::Histogram,
}

/// Drives one executor on one backend under one policy.
pub struct Driver {
    host: Arc<dyn ExecutorHost>,
    config: DriverConfig,
    module: Arc<PreparedModule>,
    compiled: Arc<dyn CompiledExecutor>,
    /// The loaded executor's blank snapshot.
    snapshot: SnapshotSlot,
    instance: Option<Box<dyn ExecutorInstance>>,
    /// The blank instance audits run on (built when first needed).
    auditor: Option<Box<dyn ExecutorInstance>>,
    due: Option<RecycleCause>,
    served: u64,
    blocks_ended: u64,
    stats: Stats,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("backend", &self.host.kind())
            .field("config", &self.config)
            .field("executor", &self.module.hash_hex())
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

/// A host failure inside one step, before the retry.
struct HostFailed(String);

impl From<CallError> for HostFailed {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Host(m) => HostFailed(m),
            CallError::Trap(t) => HostFailed(format!("unexpected trap {t:?} outside a guest call")),
        }
    }
}

/// Runs `f`, turning a panic into a host failure.
fn guarded<T>(f: impl FnOnce() -> Result<T, HostFailed>) -> Result<T, HostFailed> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".into());
        Err(HostFailed(format!("panic: {msg}")))
    })
}

/// Maps how a guest call ended to a rejection: what the instrumentation
/// flagged in the instance's memory first (`ended`: growth past the limits,
/// fuel, stack — decided at the same instruction on every engine), then
/// what core's host functions recorded, and only then the engine's trap.
///
/// An engine reporting fuel or stack exhaustion that the instrumentation
/// did not flag is a *backstop* firing: the verdict is the same kind, but
/// the point where it fired is the engine's, so it is logged as an error
/// and counted ([`Stats::backstops`]); tests require it never to happen.
fn rejection(env: &mut HostEnv, ended: Option<RejectionKind>, trap: Trap) -> Result<Rejection, HostFailed> {
    let abort = env.take_abort();
    match ended {
        Some(RejectionKind::OutOfMemory) => return Ok(Rejection::OutOfMemory),
        Some(RejectionKind::OutOfFuel) => return Ok(Rejection::OutOfFuel),
        Some(RejectionKind::StackOverflow) => return Ok(Rejection::StackOverflow),
        _ => {}
    }
    if let Some(abort) = abort {
        return Ok(match abort {
            Abort::HostFault(what) => {
                tracing::debug!(%what, "host fault");
                Rejection::HostFault
            }
            Abort::OutOfMemory { .. } => Rejection::OutOfMemory,
            Abort::StateDuringInit => Rejection::HostFault,
            Abort::OutOfFuel => Rejection::OutOfFuel,
        });
    }
    match trap {
        Trap::Wasm(code) => Ok(Rejection::Trap(code)),
        Trap::OutOfFuel | Trap::StackOverflow => {
            tracing::error!(?trap, "an engine limit fired before the deterministic one: verdicts may differ by engine");
            env.note_backstop();
            Ok(if trap == Trap::OutOfFuel { Rejection::OutOfFuel } else { Rejection::StackOverflow })
        }
        Trap::Aborted => Err(HostFailed("a host function aborted without recording why".into())),
    }
}

/// The load error for an executor whose instantiation, `start`,
/// `executor_init` or migration ended without returning.
fn init_failed(
    backend: crate::BackendKind,
    phase: &'static str,
    env: &mut HostEnv,
    ended: Option<RejectionKind>,
    e: CallError,
) -> Error {
    match e {
        CallError::Host(message) => Error::HostFailure { backend, message },
        CallError::Trap(t) => {
            let reason = match env.abort() {
                Some(Abort::StateDuringInit) => "it called host.state_get, but init has no world state".into(),
                Some(Abort::HostFault(what)) => format!("host_fault: {what}"),
                _ => match rejection(env, ended, t) {
                    Ok(r) => r.to_string(),
                    Err(HostFailed(message)) => return Error::HostFailure { backend, message },
                },
            };
            Error::InitFailed { phase, reason }
        }
    }
}

fn elapsed(started: Option<Instant>) -> Duration {
    started.map_or(Duration::ZERO, |s| s.elapsed())
}

impl Driver {
    fn clock(&self) -> Option<Instant> {
        self.config.timings.then(Instant::now)
    }

    /// Loads an executor (binary or WAT): checks and prepares it and
    /// compiles it — or takes both from [`DriverConfig::cache`] — and
    /// builds the first instance (instantiation, `start`, `executor_init`,
    /// blank-state snapshot). Every load error surfaces here.
    pub fn new(host: Arc<dyn ExecutorHost>, executor: &[u8], config: DriverConfig) -> Result<Self> {
        let loaded = crate::cache::load(&*host, executor, config.cache.as_deref())?;
        Self::from_loaded(host, loaded, config)
    }

    /// [`Driver::new`] for a module already prepared (with the same limits
    /// as `host`'s).
    pub fn from_prepared(
        host: Arc<dyn ExecutorHost>,
        module: Arc<PreparedModule>,
        config: DriverConfig,
    ) -> Result<Self> {
        let loaded = crate::cache::compile(&*host, module)?;
        Self::from_loaded(host, loaded, config)
    }

    fn from_loaded(host: Arc<dyn ExecutorHost>, loaded: crate::cache::Loaded, config: DriverConfig) -> Result<Self> {
        let crate::cache::Loaded { module, compiled, outcome: cache, compile_time } = loaded;
        let mut driver = Driver {
            host,
            config,
            module,
            compiled,
            snapshot: SnapshotSlot::Off,
            instance: None,
            auditor: None,
            due: None,
            served: 0,
            blocks_ended: 0,
            stats: Stats { cache, compile_time, ..Stats::default() },
        };
        tracing::info!(
            backend = %driver.host.kind(),
            executor = %driver.module.hash_hex(),
            %cache,
            compile_ms = compile_time.as_secs_f64() * 1e3,
            instrument_ms = driver.module.instrument_time.as_secs_f64() * 1e3,
            "executor loaded"
        );
        driver.snapshot = driver.find_snapshot(&driver.module);
        driver.instance = Some(driver.build()?);
        Ok(driver)
    }

    /// The backend.
    pub fn backend(&self) -> crate::BackendKind {
        self.host.kind()
    }

    /// The policy.
    pub fn policy(&self) -> PersistencePolicy {
        self.config.policy
    }

    /// The loaded executor.
    pub fn module(&self) -> &PreparedModule {
        &self.module
    }

    /// Installs `executor` now, as an approved upgrade transaction does:
    /// checks, compilation (or the cache), `executor_migrate` against
    /// `state` on an instance then discarded, a new blank instance; the old
    /// executor's instances and code are freed. On `Err` the current
    /// executor stays (a load error of the new one, or a host failure:
    /// [`Error::is_host_failure`] tells).
    pub fn upgrade(&mut self, executor: &[u8], state: SharedState) -> Result<()> {
        self.install(executor, state)
    }

    /// The linear memory and mutable globals of a newly built blank
    /// instance of the loaded executor, built as every rebuild is — from
    /// the blank snapshot if there is one — so tests and operators can
    /// check that a snapshot restores exactly what `executor_init` makes.
    /// The globals are `None` if one holds a reference. Counts as an
    /// instance built; the warm instance is untouched.
    pub fn inspect_blank(&mut self) -> Result<(Vec<u8>, Option<Vec<crate::GlobalValue>>)> {
        let mut instance = self.build_current(InstanceMode::Reusable)?;
        let globals = instance
            .global_values()
            .map_err(|e| Error::HostFailure { backend: self.host.kind(), message: format!("{e:?}") })?;
        Ok((instance.memory().to_vec(), globals))
    }

    /// Counters and timings so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
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

    /// Builds an instance of the loaded executor in `mode`, through its
    /// snapshot.
    fn build_current(&mut self, mode: InstanceMode) -> Result<Box<dyn ExecutorInstance>> {
        let (module, compiled) = (self.module.clone(), self.compiled.clone());
        let mut slot = std::mem::take(&mut self.snapshot);
        let built = self.build_with(&module, &compiled, &mut slot, mode);
        self.stats.snapshot = slot.outcome();
        self.snapshot = slot;
        built
    }

    /// Builds an instance of the loaded executor in the policy's mode.
    fn build(&mut self) -> Result<Box<dyn ExecutorInstance>> {
        self.build_current(self.mode())
    }

    /// Where builds of `module` start: its snapshot from the cache, or a
    /// pending one (or none, if snapshots are off).
    fn find_snapshot(&self, module: &PreparedModule) -> SnapshotSlot {
        if !self.config.snapshots || self.config.policy == PersistencePolicy::Fresh {
            return SnapshotSlot::Off;
        }
        match self.config.cache.as_deref().and_then(|c| crate::cache::load_snapshot(c, &*self.host, module)) {
            Some(snapshot) => SnapshotSlot::ready(snapshot, true),
            None => SnapshotSlot::Pending,
        }
    }

    /// On hosts that [bake](ExecutorHost::bakes_snapshots): starts baking
    /// `slot`'s snapshot into the executor and compiling it (through the
    /// cache) on a thread of its own, and takes the result once it is
    /// there — waiting for it (and starting it even before a rebuild) only
    /// if `wait`. Called before every build from a snapshot. A failure is
    /// logged and the snapshot is adopted instead.
    fn bake(&mut self, module: &PreparedModule, slot: &mut SnapshotSlot, wait: bool) {
        let SnapshotSlot::Ready { snapshot, baked, builds, .. } = slot else { return };
        if matches!(baked, Baked::NotYet) && (*builds > 0 || wait) && self.host.bakes_snapshots() {
            let (host, snapshot, cache) = (self.host.clone(), snapshot.clone(), self.config.cache.clone());
            let module = module.clone();
            let started = Instant::now();
            let spawned = std::thread::Builder::new().name("bake-snapshot".into()).spawn(move || {
                let baked = snapshot.bake(&module)?;
                crate::cache::load_prepared(&*host, Arc::new(baked), cache.as_deref())
            });
            *baked = match spawned {
                Ok(handle) => Baked::Baking(handle, started),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start baking the blank snapshot; adopting it instead");
                    Baked::Failed
                }
            };
        }
        if !matches!(baked, Baked::Baking(h, _) if wait || h.is_finished()) {
            return;
        }
        let Baked::Baking(handle, started) = std::mem::take(baked) else { unreachable!("matched above") };
        *baked = match handle.join() {
            Ok(Ok(loaded)) => {
                tracing::info!(
                    cache = %loaded.outcome,
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "blank snapshot baked into the executor"
                );
                self.stats.bake_time += started.elapsed();
                self.stats.baked_executors += 1;
                // Neither the baked module's bytes nor the snapshot are
                // needed any more: every build from now on instantiates the
                // baked executor (an emptied snapshot fits nothing, so were
                // it ever applied, init would run instead).
                *snapshot = Arc::new(BlankSnapshot::default());
                Baked::Ready(loaded.compiled)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot bake the blank snapshot; adopting it instead");
                Baked::Failed
            }
            Err(_) => {
                tracing::warn!("baking the blank snapshot panicked; adopting it instead");
                Baked::Failed
            }
        };
    }

    /// Waits for work the driver does in the background — baking the
    /// blank snapshot into the executor, on hosts that
    /// [bake](ExecutorHost::bakes_snapshots) — so that what follows
    /// measures or tests the steady state.
    pub fn settle(&mut self) {
        let module = self.module.clone();
        let mut slot = std::mem::take(&mut self.snapshot);
        self.bake(&module, &mut slot, true);
        self.snapshot = slot;
    }

    /// Instantiates `compiled` with a new host state; a trap (in a data
    /// segment) is a load error.
    fn instantiate(
        &self,
        module: &PreparedModule,
        compiled: &Arc<dyn CompiledExecutor>,
        mode: InstanceMode,
    ) -> Result<Box<dyn ExecutorInstance>> {
        let limits = self.host.limits();
        let mut env = HostEnv::new(limits, module.info.layout);
        env.begin(Phase::Init, None);
        compiled.instantiate(env, mode).map_err(|e| {
            let mut env = HostEnv::new(limits, module.info.layout);
            init_failed(self.host.kind(), "instantiation (data segments)", &mut env, None, e)
        })
    }

    /// Builds an instance: instantiate, then adopt the snapshot in `slot`
    /// or run `start` and `executor_init` (taking the snapshot if it is
    /// pending), and for reusable instances mark the blank state. Failures
    /// of the executor are load errors.
    fn build_with(
        &mut self,
        module: &PreparedModule,
        compiled: &Arc<dyn CompiledExecutor>,
        slot: &mut SnapshotSlot,
        mode: InstanceMode,
    ) -> Result<Box<dyn ExecutorInstance>> {
        let started = self.clock();
        let backend = self.host.kind();
        let _span = tracing::debug_span!("build", %backend, ?mode).entered();
        let limits = self.host.limits().clone();
        let host_failure = |message: String| Error::HostFailure { backend, message };
        let layout = module.info.layout;
        if mode == InstanceMode::Reusable {
            self.bake(module, slot, false);
        }
        let mut adopted = false;
        let mut instance = match (&*slot, mode) {
            (SnapshotSlot::Ready { baked: Baked::Ready(baked), .. }, InstanceMode::Reusable) => {
                // Instantiation alone makes the blank state.
                adopted = true;
                self.instantiate(module, baked, mode)?
            }
            _ => self.instantiate(module, compiled, mode)?,
        };
        self.stats.instantiate_time += elapsed(started);
        if let (
            SnapshotSlot::Ready {
                snapshot, from_disk, baked: Baked::NotYet | Baked::Baking(..) | Baked::Failed, ..
            },
            InstanceMode::Reusable,
        ) = (&*slot, mode)
        {
            match snapshot.apply(&mut *instance, layout, &limits) {
                Ok(()) => adopted = true,
                Err(e) => {
                    tracing::warn!(error = ?e, from_disk, "blank snapshot not adopted; running executor_init");
                    if *from_disk && let Some(cache) = self.config.cache.as_deref() {
                        crate::cache::forget_snapshot(cache, &*self.host, module);
                    }
                    *slot = SnapshotSlot::Pending;
                    instance = self.instantiate(module, compiled, mode)?;
                }
            }
        }
        if let SnapshotSlot::Ready { builds, .. } = slot {
            *builds += 1;
        }
        if adopted {
            self.stats.restored_builds += 1;
        } else {
            // The module's `start`, then `executor_init`, under one init budget.
            instance.env().begin(Phase::Init, None);
            layout.arm(instance.memory(), limits.init_fuel, limits.max_stack);
            let phases = [
                (module.info.start.is_some(), Export::Start, "start"),
                (module.info.has_init, Export::Init, "executor_init"),
            ];
            for (present, export, phase) in phases {
                if !present {
                    continue;
                }
                if let Err(e) = instance.call(export, &[]) {
                    let ended = layout.ended(instance.memory());
                    return Err(init_failed(backend, phase, instance.env(), ended, e));
                }
            }
            if matches!(slot, SnapshotSlot::Pending) && mode == InstanceMode::Reusable {
                *slot = match BlankSnapshot::take(&mut *instance, layout) {
                    Ok(Ok(snapshot)) => {
                        if let Some(cache) = self.config.cache.as_deref() {
                            crate::cache::store_snapshot(cache, &*self.host, module, &snapshot);
                        }
                        SnapshotSlot::ready(snapshot, false)
                    }
                    Ok(Err(why)) => {
                        tracing::info!(%why, "the blank state cannot move to new instances; every build runs init");
                        SnapshotSlot::Unportable
                    }
                    Err(e) => return Err(host_failure(format!("blank snapshot failed: {e:?}"))),
                };
            }
        }
        instance.env().end();
        if mode == InstanceMode::Reusable {
            instance.mark_blank().map_err(|e| host_failure(format!("blank-state snapshot failed: {e:?}")))?;
        }
        self.stats.instances_built += 1;
        self.stats.build_histogram.record_since(started);
        Ok(instance)
    }

    /// Replaces the instance by a newly built one.
    fn rebuild(&mut self) -> Result<()> {
        self.instance = None; // drop the old store first: bounded memory
        self.instance = Some(self.build()?);
        self.served = 0;
        self.blocks_ended = 0;
        Ok(())
    }

    fn recycle(&mut self, cause: RecycleCause) -> Result<()> {
        tracing::debug!(%cause, "recycle");
        self.stats.recycles += 1;
        *self.stats.recycles_by_cause.entry(cause).or_default() += 1;
        let started = self.clock();
        let rebuilt = self.rebuild();
        self.stats.recycle_time += elapsed(started);
        rebuilt
    }

    /// Whether the policy schedules a blank before the next transaction.
    fn blank_due(&self) -> bool {
        match self.config.policy {
            PersistencePolicy::EveryTransactions(n) => self.served >= u64::from(n.get()),
            PersistencePolicy::EveryBlocks(n) => self.blocks_ended >= u64::from(n.get()),
            PersistencePolicy::UntilCrash => false,
            PersistencePolicy::Fresh => self.stats.transactions > 0,
        }
    }

    /// Lazily blanks or recycles before a transaction.
    fn ready(&mut self) -> Result<()> {
        let scheduled = self.blank_due();
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
        if self.instance.is_none() {
            // Dropped after a host failure that the retry did not survive.
            return self.recycle(RecycleCause::HostFailure);
        }
        if !scheduled {
            return Ok(());
        }
        let started = self.clock();
        self.stats.blanks += 1;
        tracing::trace!("blank");
        let restored = match self.mode() {
            InstanceMode::Fresh => Ok(Blanked::NeedsRebuild),
            InstanceMode::Reusable => {
                let instance = self.instance.as_mut().expect("checked above");
                guarded(|| instance.blank().map_err(HostFailed::from))
            }
        };
        match restored {
            Ok(Blanked::Restored) => {
                self.served = 0;
                self.blocks_ended = 0;
            }
            Ok(Blanked::NeedsRebuild) => self.rebuild()?,
            Err(HostFailed(message)) => {
                tracing::warn!(%message, "blank failed; rebuilding");
                self.stats.host_failures += 1;
                self.rebuild()?;
            }
        }
        self.stats.blank_histogram.record_since(started);
        Ok(())
    }

    /// Validates one encoded transaction against `state` and returns its
    /// verdict. `state` is held only for the length of the call.
    ///
    /// `Err` only for host failures (after one rebuild and retry) — never
    /// for anything the executor does.
    pub fn validate(&mut self, tx: &[u8], state: SharedState) -> Result<Verdict> {
        self.ready()?;
        let mut verdict = match self.run(tx, state.clone()) {
            Ok(v) => v,
            Err(HostFailed(first)) => {
                tracing::warn!(message = %first, "host failure; rebuilding and retrying once");
                self.stats.host_failures += 1;
                self.recycle(RecycleCause::HostFailure)?;
                self.run(tx, state.clone()).map_err(|HostFailed(message)| Error::HostFailure {
                    backend: self.host.kind(),
                    message: format!("{message} (after a retry; first failure: {first})"),
                })?
            }
        };
        self.served += 1;
        let audited = match self.config.audit_every {
            Some(k) if (self.stats.transactions + 1).is_multiple_of(u64::from(k.get())) => {
                self.audit(tx, state.clone(), &verdict)
            }
            _ => AuditOutcome::NotAudited,
        };
        let mut upgraded = false;
        if verdict == Verdict::Approved
            && !self.config.verdicts_only
            && let Some(executor) = abi::upgrade_executor(tx)
        {
            match self.install(executor, state) {
                Ok(()) => upgraded = true,
                Err(e) if e.is_host_failure() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "upgrade failed; the old executor stays");
                    verdict = Verdict::rejected(Rejection::UpgradeFailed);
                }
            }
        }
        self.stats.transactions += 1;
        match &verdict {
            Verdict::Approved => self.stats.approved += 1,
            Verdict::Denied { .. } => self.stats.denied += 1,
            Verdict::Rejected { rejection } => {
                *self.stats.rejected.entry(rejection.kind()).or_default() += 1;
                tracing::debug!(kind = %rejection.kind(), %rejection, "rejected");
                self.due = Some(rejection.kind().into());
            }
        }
        if !upgraded && self.due.is_none() && audited == AuditOutcome::Leak {
            self.due = Some(RecycleCause::AuditMismatch);
        }
        if self.due.is_none() && self.memory_in_use() > self.watermark() {
            self.due = Some(RecycleCause::Watermark);
        }
        Ok(verdict)
    }

    /// One attempt at a transaction on the current instance.
    fn run(&mut self, tx: &[u8], state: SharedState) -> Result<Verdict, HostFailed> {
        let started = self.config.timings.then(Instant::now);
        // Borrowed field by field: no copy of the limits per transaction.
        let result = match self.instance.as_mut() {
            Some(instance) => Self::attempt(instance.as_mut(), self.host.limits(), tx, state, &mut self.stats),
            None => Err(HostFailed("no instance".into())),
        };
        self.stats.call_histogram.record_since(started);
        if result.is_err() {
            // Never reuse a poisoned instance.
            self.instance = None;
        }
        result
    }

    /// One attempt at a transaction on `instance`, panics caught.
    fn attempt(
        instance: &mut dyn ExecutorInstance,
        limits: &crate::Limits,
        tx: &[u8],
        state: SharedState,
        stats: &mut Stats,
    ) -> Result<Verdict, HostFailed> {
        let result = guarded(|| {
            let len = i32::try_from(tx.len()).map_err(|_| HostFailed("transaction longer than 2 GiB".into()))?;
            instance.env().begin(Phase::Validate, Some(state));
            let layout = instance.env().layout();
            layout.arm(instance.memory(), limits.fuel, limits.max_stack);
            let verdict = Self::call_validate(instance, tx, len, limits.max_stack);
            instance.env().end();
            verdict
        });
        stats.backstops += instance.env().take_backstops();
        result
    }

    /// Validates the transaction again on a blank instance of the same
    /// executor (audit mode) and compares. The warm verdict stands.
    fn audit(&mut self, tx: &[u8], state: SharedState, warm: &Verdict) -> AuditOutcome {
        let mut auditor = match self.auditor.take() {
            Some(a) => a,
            None => match self.build_current(InstanceMode::Reusable) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "audit instance could not be built; audit skipped");
                    return AuditOutcome::NotAudited;
                }
            },
        };
        let limits = self.host.limits().clone();
        let blank = match Self::attempt(auditor.as_mut(), &limits, tx, state, &mut self.stats) {
            Ok(v) => v,
            Err(HostFailed(message)) => {
                tracing::warn!(%message, "host failure in an audit; audit skipped");
                self.stats.host_failures += 1;
                return AuditOutcome::NotAudited;
            }
        };
        self.stats.audits += 1;
        // Keep the auditor blank for next time; after a rejection rebuild it.
        if blank.rejection().is_none()
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
    /// (`executor_migrate`, if exported) on an instance that is then
    /// discarded, and a new blank instance. `Err` leaves the old executor
    /// in place: a load error means `rejected(upgrade_failed)`, a host
    /// failure goes to the embedder.
    fn install(&mut self, executor: &[u8], state: SharedState) -> Result<()> {
        let crate::cache::Loaded { module, compiled, outcome: cache, compile_time } =
            crate::cache::load(&*self.host, executor, self.config.cache.as_deref())?;
        let mut slot = self.find_snapshot(&module);
        if module.info.has_migrate {
            // Reusable: the engine's fast path (on wasmtime a pooled slot
            // from the same compiled code; `Fresh` would compile again).
            let mut migrator = self.build_with(&module, &compiled, &mut slot, InstanceMode::Reusable)?;
            let limits = self.host.limits().clone();
            migrator.env().begin(Phase::Migrate, Some(state));
            module.info.layout.arm(migrator.memory(), limits.init_fuel, limits.max_stack);
            let outcome = guarded(|| Ok(migrator.call(Export::Migrate, &[])));
            migrator.env().end();
            match outcome {
                Ok(Ok(Some(0))) => {}
                Ok(Ok(status)) => {
                    return Err(Error::InitFailed {
                        phase: "executor_migrate",
                        reason: format!("returned {status:?}"),
                    });
                }
                Ok(Err(CallError::Trap(t))) => {
                    return Err(Error::InitFailed { phase: "executor_migrate", reason: format!("trapped: {t:?}") });
                }
                Ok(Err(CallError::Host(message))) | Err(HostFailed(message)) => {
                    return Err(Error::HostFailure { backend: self.host.kind(), message });
                }
            }
        }
        let instance = self.build_with(&module, &compiled, &mut slot, self.mode())?;
        // Free the old executor's instances, compiled code and image now.
        self.instance = None;
        self.auditor = None;
        self.module = module;
        self.compiled = compiled;
        self.stats.snapshot = slot.outcome();
        self.snapshot = slot;
        self.instance = Some(instance);
        self.served = 0;
        self.blocks_ended = 0;
        self.stats.cache = cache;
        self.stats.compile_time = compile_time;
        self.stats.upgrades += 1;
        self.stats.recycles += 1;
        *self.stats.recycles_by_cause.entry(RecycleCause::Upgrade).or_default() += 1;
        tracing::info!(executor = %self.module.hash_hex(), "executor upgraded");
        Ok(())
    }

    fn call_validate(
        instance: &mut dyn ExecutorInstance,
        tx: &[u8],
        len: i32,
        stack: u64,
    ) -> Result<Verdict, HostFailed> {
        let ended = |instance: &mut dyn ExecutorInstance, e: CallError| match e {
            CallError::Host(m) => Err(HostFailed(m)),
            CallError::Trap(t) => {
                let layout = instance.env().layout();
                let ended = layout.ended(instance.memory());
                rejection(instance.env(), ended, t).map(Verdict::rejected)
            }
        };
        let ptr = match instance.call(Export::Alloc, &[len]) {
            Ok(Some(ptr)) => ptr as u32 as usize,
            Ok(None) => return Err(HostFailed("executor_alloc returned no value".into())),
            Err(e) => return ended(instance, e),
        };
        let layout = instance.env().layout();
        let (_, memory) = layout.split(instance.memory());
        if ptr == 0 || ptr + tx.len() > memory.len() {
            tracing::debug!(ptr, len, memory = memory.len(), "executor_alloc returned a bad range");
            return Ok(Verdict::rejected(Rejection::HostFault));
        }
        memory[ptr..ptr + tx.len()].copy_from_slice(tx);
        if !instance.env().remember_write(ptr, tx.len()) {
            layout.mark(layout.split(instance.memory()).0, ptr, tx.len());
        }
        // Fuel is shared by both calls; the stack starts afresh.
        let fuel = layout.fuel_left(instance.memory());
        layout.arm(instance.memory(), fuel, stack);
        match instance.call(Export::Validate, &[ptr as i32, len]) {
            Ok(Some(0)) => Ok(Verdict::Approved),
            Ok(Some(1)) => Ok(Verdict::Denied { reason: instance.env().take_deny_reason().unwrap_or_default() }),
            Ok(Some(_)) => Ok(Verdict::rejected(Rejection::BadVerdict)),
            Ok(None) => Err(HostFailed("executor_validate returned no value".into())),
            Err(e) => ended(instance, e),
        }
    }

    /// Marks the end of a block (for `every-block:N`).
    pub fn end_block(&mut self) {
        self.blocks_ended += 1;
        self.stats.blocks += 1;
    }

    /// Drops the warm instance now, freeing its memory; the next transaction
    /// gets a rebuilt blank instance (counted as a `purge` recycle).
    pub fn purge(&mut self) {
        self.instance = None;
        self.auditor = None;
        self.due = Some(RecycleCause::Purge);
    }

    /// Current linear memory of the warm instance as the guest sees it
    /// (without the host's dirty map), in bytes.
    pub fn memory_in_use(&mut self) -> u64 {
        let reserved = self.module.info.layout.reserved as u64;
        self.instance.as_mut().map_or(0, |i| i.memory_size().saturating_sub(reserved))
    }
}
