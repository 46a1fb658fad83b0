//! Building instances of one loaded executor: instantiation, then either
//! its blank snapshot (adopted, or baked into the module on hosts that map
//! data segments) or `start` and `executor_init` — the one build path every
//! instance takes, warm, audit, migration or `fresh`.

use super::outcome::init_failed;
use super::stats::elapsed;
use super::{DriverConfig, SnapshotOutcome, Stats};
use crate::backend::{CompiledExecutor, ExecutorHost, ExecutorInstance, Export, InstanceMode};
use crate::cache::{self, Loaded};
use crate::host::{HostEnv, Phase};
use crate::instrument::Tracking;
use crate::module::PreparedModule;
use crate::snapshot::BlankSnapshot;
use crate::{Error, PersistencePolicy, Result};
use std::sync::Arc;
use std::time::Instant;

/// What a build needs from its driver: the engine, the settings, and the
/// counters it updates.
pub(super) struct Ctx<'a> {
    pub host: &'a Arc<dyn ExecutorHost>,
    pub config: &'a DriverConfig,
    pub stats: &'a mut Stats,
}

/// One loaded executor: its checked module, compiled code and blank
/// snapshot. The driver holds the current one; an upgrade loads another
/// and swaps it in only once it has built an instance.
pub(super) struct Executor {
    pub module: Arc<PreparedModule>,
    pub compiled: Arc<dyn CompiledExecutor>,
    snapshot: SnapshotSlot,
}

/// The executor's snapshot, as far as the driver knows it.
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
    Baking(std::thread::JoinHandle<Result<Loaded>>, Instant),
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

impl Executor {
    /// An executor just loaded, its builds starting from its snapshot in
    /// the cache, or taking one at the first build (or neither, if
    /// snapshots are off or the policy is `fresh`).
    pub fn new(host: &dyn ExecutorHost, config: &DriverConfig, loaded: Loaded) -> Self {
        let module = loaded.module;
        let snapshot = if !config.snapshots || config.policy == PersistencePolicy::Fresh {
            SnapshotSlot::Off
        } else {
            match config.cache.as_deref().and_then(|c| cache::load_snapshot(c, host, &module)) {
                Some(snapshot) => SnapshotSlot::ready(snapshot, true),
                None => SnapshotSlot::Pending,
            }
        };
        Executor { module, compiled: loaded.compiled, snapshot }
    }

    /// The same executor instrumented otherwise (`loaded`, e.g. without
    /// the write barrier), its builds starting from `snapshot` — this one's
    /// blank snapshot: the same blank state — and, if given, from `baked`,
    /// that snapshot baked into `loaded`'s module and compiled.
    pub fn variant(
        &self,
        loaded: Loaded,
        snapshot: Option<Arc<BlankSnapshot>>,
        baked: Option<Arc<dyn CompiledExecutor>>,
    ) -> Self {
        let from_disk = matches!(self.snapshot, SnapshotSlot::Ready { from_disk: true, .. });
        let snapshot = match (snapshot, &self.snapshot) {
            (Some(snapshot), _) => {
                let (builds, baked) = baked.map_or((0, Baked::NotYet), |b| (1, Baked::Ready(b)));
                SnapshotSlot::Ready { snapshot, from_disk, builds, baked }
            }
            (None, SnapshotSlot::Unportable) => SnapshotSlot::Unportable,
            (None, SnapshotSlot::Off) => SnapshotSlot::Off,
            (None, _) => SnapshotSlot::Pending,
        };
        Executor { module: loaded.module, compiled: loaded.compiled, snapshot }
    }

    /// This executor's blank snapshot, if it has a usable one (not yet
    /// emptied by baking).
    pub fn snapshot(&self) -> Option<Arc<BlankSnapshot>> {
        match &self.snapshot {
            SnapshotSlot::Ready { snapshot, baked, .. } if !matches!(baked, Baked::Ready(_)) => Some(snapshot.clone()),
            _ => None,
        }
    }

    /// Where this executor's instances come from.
    pub fn snapshot_outcome(&self) -> SnapshotOutcome {
        self.snapshot.outcome()
    }

    /// How this executor's module tracks what a transaction writes.
    pub fn tracking(&self) -> Tracking {
        self.module.info.tracking
    }

    /// Builds an instance: instantiate, then adopt the snapshot (or
    /// instantiate the baked executor) or run `start` and `executor_init`
    /// (taking the snapshot if it is pending), and for reusable instances
    /// mark the blank state. Failures of the executor are load errors.
    pub fn build(&mut self, ctx: &mut Ctx<'_>, mode: InstanceMode) -> Result<Box<dyn ExecutorInstance>> {
        let started = ctx.config.timings.then(Instant::now);
        let backend = ctx.host.name();
        let _span = tracing::debug_span!("build", %backend, ?mode).entered();
        let host_failure = |message: String| Error::HostFailure { backend, message };
        let reusable = mode == InstanceMode::Reusable;
        if reusable {
            self.bake(ctx, false);
        }
        let (mut instance, mut adopted) = match (&self.snapshot, reusable) {
            // Instantiation alone makes the blank state.
            (SnapshotSlot::Ready { baked: Baked::Ready(baked), .. }, true) => {
                (self.instantiate(ctx, baked, mode)?, true)
            }
            _ => (self.instantiate(ctx, &self.compiled, mode)?, false),
        };
        ctx.stats.instantiate_time += elapsed(started);
        if let (
            SnapshotSlot::Ready {
                snapshot, from_disk, baked: Baked::NotYet | Baked::Baking(..) | Baked::Failed, ..
            },
            true,
        ) = (&self.snapshot, reusable)
        {
            let limits = ctx.host.limits();
            match snapshot.apply(&mut *instance, limits) {
                Ok(()) => adopted = true,
                Err(e) => {
                    tracing::warn!(error = ?e, from_disk, "blank snapshot not adopted; running executor_init");
                    if *from_disk && let Some(cache) = ctx.config.cache.as_deref() {
                        cache::forget_snapshot(cache, &**ctx.host, &self.module);
                    }
                    self.snapshot = SnapshotSlot::Pending;
                    instance = self.instantiate(ctx, &self.compiled, mode)?;
                }
            }
        }
        if let SnapshotSlot::Ready { builds, .. } = &mut self.snapshot {
            *builds += 1;
        }
        let tracked = self.module.info.tracking == Tracking::Barrier;
        if adopted {
            ctx.stats.restored_builds += 1;
        } else {
            self.initialise(ctx, &mut *instance)?;
            let left = self.module.info.layout.fuel_left(instance.books());
            ctx.stats.init_fuel = ctx.host.limits().init_fuel.saturating_sub(left);
            if reusable && matches!(self.snapshot, SnapshotSlot::Pending) {
                // Without the barrier, what init wrote is what differs from
                // a new instance on which nothing ran.
                let mut pristine = if tracked { None } else { Some(self.instantiate(ctx, &self.compiled, mode)?) };
                let pristine = pristine.as_mut().map(|p| &mut **p as &mut dyn ExecutorInstance);
                let taken = BlankSnapshot::take(&mut *instance, pristine, self.module.info.layout);
                self.snapshot = match taken {
                    Ok(Ok(snapshot)) => {
                        ctx.stats.init_written_bytes = snapshot.written_bytes() as u64;
                        if let Some(cache) = ctx.config.cache.as_deref() {
                            cache::store_snapshot(cache, &**ctx.host, &self.module, &snapshot);
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
        // Only a tracked instance is ever restored in place: an untracked
        // one is rebuilt instead of blanked.
        if reusable && tracked {
            instance.mark_blank().map_err(|e| host_failure(format!("blank-state snapshot failed: {e:?}")))?;
        }
        ctx.stats.instances_built += 1;
        ctx.stats.build_histogram.record_since(started);
        Ok(instance)
    }

    /// Instantiates `compiled` with a new host state; a trap (in a data
    /// or element segment) is a load error.
    fn instantiate(
        &self,
        ctx: &Ctx<'_>,
        compiled: &Arc<dyn CompiledExecutor>,
        mode: InstanceMode,
    ) -> Result<Box<dyn ExecutorInstance>> {
        let (limits, layout) = (ctx.host.limits(), self.module.info.layout);
        let mut env = HostEnv::new(limits, layout);
        env.begin(Phase::Init, None);
        compiled.instantiate(env, mode).map_err(|e| {
            let mut env = HostEnv::new(limits, layout);
            init_failed(ctx.host.name(), "instantiation (data and element segments)", &mut env, None, e)
        })
    }

    /// The module's `start`, then `executor_init`, under one init budget.
    fn initialise(&self, ctx: &Ctx<'_>, instance: &mut dyn ExecutorInstance) -> Result<()> {
        let (limits, layout, info) = (ctx.host.limits(), self.module.info.layout, &self.module.info);
        instance.env().begin(Phase::Init, None);
        layout.arm(instance.books(), limits.init_fuel, limits.max_stack);
        let phases = [(info.start.is_some(), Export::Start, "start"), (info.has_init, Export::Init, "executor_init")];
        for (_, export, phase) in phases.into_iter().filter(|(present, ..)| *present) {
            if let Err(e) = instance.call(export, &[]) {
                let ended = layout.ended(instance.books());
                return Err(init_failed(ctx.host.name(), phase, instance.env(), ended, e));
            }
        }
        Ok(())
    }

    /// On hosts that [bake](ExecutorHost::bakes_snapshots): starts baking
    /// the snapshot into the executor and compiling it (through the cache)
    /// on a thread of its own, and takes the result once it is there —
    /// waiting for it (and starting it even before a rebuild) only if
    /// `wait`. Called before every reusable build. A failure is logged and
    /// the snapshot is adopted instead.
    pub fn bake(&mut self, ctx: &mut Ctx<'_>, wait: bool) {
        let SnapshotSlot::Ready { snapshot, baked, builds, .. } = &mut self.snapshot else { return };
        if matches!(baked, Baked::NotYet) && (*builds > 0 || wait) && ctx.host.bakes_snapshots() {
            let (host, snapshot, cache) = (ctx.host.clone(), snapshot.clone(), ctx.config.cache.clone());
            let module = self.module.clone();
            let started = Instant::now();
            let spawned = std::thread::Builder::new().name("bake-snapshot".into()).spawn(move || {
                let baked = snapshot.bake(&module)?;
                cache::load_prepared(&*host, Arc::new(baked), cache.as_deref())
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
                ctx.stats.bake_time += started.elapsed();
                ctx.stats.baked_executors += 1;
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
}
