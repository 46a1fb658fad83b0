//! How a blank is done, chosen per executor ([`BlankMethod::Auto`]), from
//! what the executor does.
//!
//! Restoring in place costs the guest a write barrier on its stores (a
//! mark per store, or per group of stores through one base: see
//! [`crate::instrument::dirty`]) and each blank what the transaction
//! dirtied; rebuilding costs nothing per store and each blank a rebuild (on
//! wasmtime a pooled copy-on-write mapping of the baked blank state,
//! ≈ 20–40 µs). Restoring wins unless the rebuild is paid anyway, so the
//! driver starts with the barrier and switches to the untracked variant
//! (instrumented without the barrier, prepared in the background, the blank
//! snapshot baked in where the host bakes) when:
//!
//! - most scheduled blanks rebuild anyway — the executor's memory grows
//!   during a transaction (a heap allocator growing on demand), and a
//!   grown memory cannot be restored in place: 6 of the first 8 blanks;
//! - or the policy schedules no blanks (`until-crash`) and transactions are
//!   not light (≥ 50 µs on average over a window): the barrier then serves
//!   nothing but audits.
//!
//! Verdicts and the blank state are the same either way; only the cost
//! differs. A light executor under `until-crash` keeps the barrier: one
//! more compile would not pay for itself.

use super::build::Executor;
use crate::Result;
use crate::backend::{CompiledExecutor, ExecutorHost};
use crate::cache::{self, ArtifactCache, Loaded};
use crate::instrument::Tracking;
use crate::snapshot::BlankSnapshot;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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
    strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
pub enum BlankMethod {
    /// Chosen per executor by a measured warm-up (see the module docs):
    /// the default. Cost: two clock reads per transaction during the
    /// warm-up, and for executors whose transactions are not light, one
    /// more compile in the background.
    #[default]
    Auto,
    /// Restore in place what the transaction dirtied, tracked by the write
    /// barrier ([`Tracking::Barrier`]): the pages the dirty map marks, the
    /// exact host writes, every mutable global, the tables if touched. Cost:
    /// a few instructions per store, and per blank what was dirtied
    /// (≈ 0.5 µs for a few pages); a memory that grew is rebuilt instead.
    Restore,
    /// Rebuild the instance for every blank, as a recycle does, from a
    /// module without the barrier ([`Tracking::Off`]): on hosts that
    /// [bake](ExecutorHost::bakes_snapshots), a pooled copy-on-write slot
    /// of the baked blank state (≈ 20 µs on wasmtime); elsewhere
    /// instantiation and a copy of the blank state. Cost: nothing per
    /// store.
    Rebuild,
}

/// Transactions below this mean cost keep the barrier under `until-crash`.
const LIGHT: Duration = Duration::from_micros(50);
/// A window of transactions ends after at least this many and this much
/// time, or after [`MAX_WINDOW`].
const MIN_WINDOW: u64 = 16;
const MIN_WINDOW_TIME: Duration = Duration::from_millis(25);
const MAX_WINDOW: u64 = 4096;
/// Scheduled blanks watched before deciding, and how many of them must
/// have been rebuilds to switch.
const BLANKS_WATCHED: u32 = 8;
const REBUILDS_TO_SWITCH: u32 = 6;

/// Transactions measured.
#[derive(Debug, Default)]
pub(super) struct Window {
    transactions: u64,
    spent: Duration,
}

impl Window {
    /// Adds a transaction; the mean once the window is complete.
    fn add(&mut self, spent: Duration) -> Option<Duration> {
        self.transactions += 1;
        self.spent += spent;
        let done =
            (self.transactions >= MIN_WINDOW && self.spent >= MIN_WINDOW_TIME) || self.transactions >= MAX_WINDOW;
        done.then(|| self.spent / self.transactions as u32)
    }
}

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
    /// Watching the tracked executor: under a policy that blanks, the
    /// scheduled blanks and how many rebuilt; under one that does not, the
    /// transactions' cost.
    Watching { blanks: u32, rebuilds: u32, window: Option<Window>, snapshot: Option<Arc<BlankSnapshot>> },
    /// The untracked variant is being prepared.
    Preparing { snapshot: Option<Arc<BlankSnapshot>>, handle: JoinHandle<Result<Prepared>> },
}

impl Choice {
    /// The start for a newly loaded executor under `method`; `blanks`:
    /// whether the policy schedules blanks.
    pub fn start(method: BlankMethod, executor: &Executor, possible: bool, blanks: bool) -> Self {
        match method {
            BlankMethod::Auto if possible && executor.tracking() == Tracking::Barrier => Choice::Watching {
                blanks: 0,
                rebuilds: 0,
                window: (!blanks).then(Window::default),
                snapshot: executor.snapshot(),
            },
            _ => Choice::Settled,
        }
    }

    /// Whether transactions are being timed.
    pub fn timing(&self) -> bool {
        matches!(self, Choice::Watching { window: Some(_), .. })
    }

    /// Whether anything is left to do.
    pub fn settled(&self) -> bool {
        matches!(self, Choice::Settled)
    }

    /// Accounts a scheduled blank, `rebuilt` if it could not restore in
    /// place; `true` once the untracked variant should be prepared.
    pub fn blanked(&mut self, rebuilt: bool) -> bool {
        let Choice::Watching { blanks, rebuilds, window: None, .. } = self else { return false };
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

    /// Accounts a transaction that took `spent` (under a policy without
    /// blanks); `true` once the untracked variant should be prepared.
    pub fn transacted(&mut self, spent: Duration) -> bool {
        let Choice::Watching { window: Some(window), .. } = self else { return false };
        let Some(mean) = window.add(spent) else { return false };
        if mean < LIGHT {
            tracing::debug!(us = mean.as_secs_f64() * 1e6, "light transactions: keeping the write barrier");
            *self = Choice::Settled;
            return false;
        }
        true
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

    /// The untracked variant of `current`, once prepared (then settled).
    pub fn ready(&mut self, current: &Executor) -> Option<Executor> {
        let Choice::Preparing { handle, .. } = self else { return None };
        if !handle.is_finished() {
            return None;
        }
        let Choice::Preparing { snapshot, handle } = std::mem::take(self) else { unreachable!("matched above") };
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
