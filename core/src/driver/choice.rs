//! How a blank is done, chosen per executor ([`BlankMethod::Auto`]), from
//! what the executor does.
//!
//! Restoring in place costs the guest a write barrier on its stores (a
//! mark per store, or per group of stores through one base: see
//! [`crate::instrument::dirty`]) and each blank what the transaction
//! dirtied; rebuilding costs nothing per store and each blank a rebuild (on
//! wasmtime a pooled copy-on-write mapping of the baked blank state,
//! ≈ 20–40 µs). Restoring wins unless the rebuild is paid anyway, so:
//!
//! - under a policy without scheduled blanks (`until-crash`) the executor
//!   is loaded without the barrier from the start: nothing would ever be
//!   restored in place (recycles rebuild, audits rebuild their instance);
//! - otherwise the driver starts with the barrier and switches to the
//!   untracked variant (instrumented without the barrier, prepared in the
//!   background, the blank snapshot baked in where the host bakes) when
//!   most scheduled blanks rebuild anyway — the executor's memory grows
//!   during a transaction (a heap allocator growing on demand), and a
//!   grown memory cannot be restored in place: 6 of the first 8 blanks.
//!
//! The variant replaces the instance only where the instance is replaced
//! anyway — at a scheduled blank or a recycle — never between, so the
//! warm state a policy keeps between blanks, and with it every verdict, is
//! the same whichever method is in force and whenever the background work
//! finishes. Verdicts and the blank state are the same either way; only
//! the cost differs.

use super::build::Executor;
use crate::backend::{CompiledExecutor, ExecutorHost};
use crate::cache::{self, ArtifactCache, Loaded};
use crate::instrument::Tracking;
use crate::snapshot::BlankSnapshot;
use crate::{PersistencePolicy, Result};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How a scheduled blank is done. Both leave the exact blank state; they
/// differ in cost, which `bench-blank` and `bench-anchor` measure.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    strum::EnumIter,
    strum::IntoStaticStr,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
pub enum BlankMethod {
    /// Chosen per executor (see the module docs): the default. Cost: for
    /// executors whose blanks rebuild anyway, one more compile in the
    /// background.
    #[default]
    Auto,
    /// Restore in place what the transaction dirtied, tracked by the write
    /// barrier ([`Tracking::Barrier`]): the pages the dirty map marks, the
    /// exact host writes, every mutable global, the tables if touched. Cost:
    /// a few instructions per store, and per blank what was dirtied
    /// (≈ 0.5 µs for a few pages); a memory that grew is rebuilt instead.
    /// Fallback: a module past the barrier's budget
    /// ([`crate::instrument::dirty::MAX_TRACKED_WRITES`] writes) loads
    /// untracked and rebuilds, as under [`BlankMethod::Rebuild`].
    Restore,
    /// Rebuild the instance for every blank, as a recycle does, from a
    /// module without the barrier ([`Tracking::Off`]): on hosts that
    /// [bake](ExecutorHost::bakes_snapshots), a pooled copy-on-write slot
    /// of the baked blank state (≈ 20 µs on wasmtime); elsewhere
    /// instantiation and a copy of the blank state. Cost: nothing per
    /// store.
    Rebuild,
}

/// Scheduled blanks watched before deciding, and how many of them must
/// have been rebuilds to switch.
const BLANKS_WATCHED: u32 = 8;
const REBUILDS_TO_SWITCH: u32 = 6;

/// The untracked variant, prepared in the background: its compiled module
/// and, where the host bakes, the blank snapshot baked into it, compiled.
type Prepared = (Loaded, Option<Arc<dyn CompiledExecutor>>);

/// Where the choice stands.
#[derive(Default)]
pub(super) enum Choice {
    /// Nothing to watch: chosen, forced, or not possible (no source bytes,
    /// or the `fresh` policy).
    #[default]
    Settled,
    /// Watching the tracked executor's scheduled blanks: how many, and how
    /// many rebuilt.
    Watching { blanks: u32, rebuilds: u32, snapshot: Option<Arc<BlankSnapshot>> },
    /// The untracked variant is being prepared.
    Preparing { snapshot: Option<Arc<BlankSnapshot>>, handle: JoinHandle<Result<Prepared>> },
}

impl Choice {
    /// The start for a newly loaded executor under `method`.
    pub fn start(method: BlankMethod, executor: &Executor, possible: bool) -> Self {
        match method {
            BlankMethod::Auto if possible && executor.tracking() == Tracking::Barrier => {
                Choice::Watching { blanks: 0, rebuilds: 0, snapshot: executor.snapshot() }
            }
            _ => Choice::Settled,
        }
    }

    /// The tracking an executor is loaded with under `method` and `policy`.
    pub fn initial_tracking(method: BlankMethod, policy: PersistencePolicy) -> Tracking {
        match method {
            BlankMethod::Rebuild => Tracking::Off,
            BlankMethod::Auto if policy == PersistencePolicy::UntilCrash => Tracking::Off,
            _ => Tracking::Barrier,
        }
    }

    /// Accounts a scheduled blank, `rebuilt` if it could not restore in
    /// place; `true` once the untracked variant should be prepared.
    #[inline]
    pub fn blanked(&mut self, rebuilt: bool) -> bool {
        let Choice::Watching { blanks, rebuilds, .. } = self else { return false };
        *blanks += 1;
        *rebuilds += u32::from(rebuilt);
        if *rebuilds >= REBUILDS_TO_SWITCH {
            return true;
        }
        if *blanks >= BLANKS_WATCHED {
            tracing::debug!(blanks, rebuilds, "blanks restore in place: keeping the write barrier");
            *self = Choice::Settled;
        }
        false
    }

    /// Starts preparing the untracked variant with `prepare`.
    pub fn prepare(
        &mut self,
        prepare: impl FnOnce(Option<Arc<BlankSnapshot>>) -> std::io::Result<JoinHandle<Result<Prepared>>>,
    ) {
        let Choice::Watching { snapshot, .. } = std::mem::take(self) else { return };
        match prepare(snapshot.clone()) {
            Ok(handle) => *self = Choice::Preparing { snapshot, handle },
            Err(e) => tracing::warn!(error = %e, "cannot prepare the untracked variant; keeping the write barrier"),
        }
    }

    /// The untracked variant of `current`, once prepared (then settled):
    /// to be swapped in only where the instance is replaced anyway.
    #[inline]
    pub fn ready(&mut self, current: &Executor) -> Option<Executor> {
        // Inline, so a settled choice costs a compare per scheduled blank.
        match self {
            Choice::Preparing { handle, .. } if handle.is_finished() => self.take_prepared(current),
            _ => None,
        }
    }

    /// [`Choice::ready`] once the preparation has finished.
    fn take_prepared(&mut self, current: &Executor) -> Option<Executor> {
        let Choice::Preparing { snapshot, handle } = std::mem::take(self) else {
            unreachable!("called only while preparing")
        };
        match handle.join() {
            Ok(Ok((loaded, baked))) => {
                tracing::info!("blanks rebuild from now on: the write barrier is off");
                Some(current.variant(loaded, snapshot, baked))
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot prepare the untracked variant; keeping the write barrier");
                None
            }
            Err(_) => {
                tracing::warn!("preparing the untracked variant panicked; keeping the write barrier");
                None
            }
        }
    }
}

/// Prepares the untracked variant of `source` on `host` on a thread of
/// its own: instrumented without the barrier (through the cache), and
/// where the host bakes, `snapshot` baked into it and compiled.
pub(super) fn prepare(
    host: Arc<dyn ExecutorHost>,
    source: Arc<[u8]>,
    cache: Option<Arc<ArtifactCache>>,
    snapshot: Option<Arc<BlankSnapshot>>,
) -> std::io::Result<JoinHandle<Result<Prepared>>> {
    std::thread::Builder::new().name("untracked-variant".into()).spawn(move || {
        let loaded = cache::load_tracked(&*host, &source, Tracking::Off, cache.as_deref())?;
        let baked = match snapshot.filter(|_| host.bakes_snapshots()) {
            Some(snapshot) => {
                let baked = Arc::new(snapshot.bake(&loaded.module)?);
                Some(cache::load_prepared(&*host, baked, cache.as_deref())?.compiled)
            }
            None => None,
        };
        Ok((loaded, baked))
    })
}
