//! What a driver counts and times.

use crate::verdict::RejectionKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use strum::{Display, EnumIter, IntoEnumIterator, IntoStaticStr};

/// Why an instance was rebuilt outside the policy's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Display, EnumIter, IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
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

/// Whether an executor's instances come from a
/// [`BlankSnapshot`](crate::snapshot::BlankSnapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Display, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
#[non_exhaustive]
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

/// Counters and timings of a driver. The counters serialise under
/// cli.md's JSON names (`peer run --json` embeds them as they are); every
/// rejection kind and recycle cause is present from the start, zero if
/// none happened.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Transactions validated.
    pub transactions: u64,
    /// Approved verdicts.
    pub approved: u64,
    /// Denied verdicts.
    pub denied: u64,
    /// Rejected verdicts by kind (every kind present).
    pub rejected: BTreeMap<RejectionKind, u64>,
    /// Scheduled blanks done.
    pub blanks: u64,
    /// Recycles done (unscheduled rebuilds), all causes.
    pub recycles: u64,
    /// Recycles by cause (every cause present).
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
    /// Fuel the module's `start` and `executor_init` spent, at the last
    /// build that ran them (of [`crate::Limits::init_fuel`]).
    pub init_fuel: u64,
    /// Bytes of guest memory `executor_init` (and `start`) wrote: what a
    /// build from the blank snapshot copies (0 until a snapshot is taken).
    pub init_written_bytes: u64,
    /// How the current executor tracks what a transaction writes: the
    /// write barrier (blanks restore in place) or nothing (blanks rebuild).
    pub tracking: crate::instrument::Tracking,
    /// Whether the first executor's compiled code came from the cache
    /// (upgrades' loads are logged).
    pub cache: crate::CacheOutcome,
    /// Time the first executor's compilation (or cache load) took.
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

impl Stats {
    /// No counts yet; every rejection kind and recycle cause at zero.
    pub fn new(cache: crate::CacheOutcome, compile_time: Duration) -> Self {
        Stats {
            transactions: 0,
            approved: 0,
            denied: 0,
            rejected: RejectionKind::iter().map(|k| (k, 0)).collect(),
            blanks: 0,
            recycles: 0,
            recycles_by_cause: RecycleCause::iter().map(|c| (c, 0)).collect(),
            blocks: 0,
            host_failures: 0,
            upgrades: 0,
            audits: 0,
            state_leaks: 0,
            backstops: 0,
            instances_built: 0,
            restored_builds: 0,
            init_fuel: 0,
            init_written_bytes: 0,
            snapshot: SnapshotOutcome::Off,
            tracking: crate::instrument::Tracking::Barrier,
            cache,
            compile_time,
            baked_executors: 0,
            bake_time: Duration::ZERO,
            build_histogram: crate::Histogram::default(),
            instantiate_time: Duration::ZERO,
            blank_histogram: crate::Histogram::default(),
            recycle_time: Duration::ZERO,
            call_histogram: crate::Histogram::default(),
        }
    }

    /// Counts a validated transaction's verdict.
    pub fn count(&mut self, verdict: &crate::Verdict) {
        self.transactions += 1;
        match verdict {
            crate::Verdict::Approved => self.approved += 1,
            crate::Verdict::Denied { .. } => self.denied += 1,
            crate::Verdict::Rejected { rejection } => *self.rejected.entry(rejection.kind()).or_default() += 1,
        }
    }

    /// Adds `other`'s work — blanks, recycles, builds, audits, failures and
    /// their timings — but not its verdicts, blocks or upgrades: summing the
    /// workers of in-order parallel validation, whose verdict counters come
    /// from what was committed.
    pub fn add_work(&mut self, other: &Stats) {
        self.blanks += other.blanks;
        self.recycles += other.recycles;
        for (cause, n) in &other.recycles_by_cause {
            *self.recycles_by_cause.entry(*cause).or_default() += n;
        }
        self.host_failures += other.host_failures;
        self.audits += other.audits;
        self.state_leaks += other.state_leaks;
        self.backstops += other.backstops;
        self.instances_built += other.instances_built;
        self.restored_builds += other.restored_builds;
        self.baked_executors += other.baked_executors;
        self.bake_time += other.bake_time;
        self.build_histogram.merge(&other.build_histogram);
        self.instantiate_time += other.instantiate_time;
        self.blank_histogram.merge(&other.blank_histogram);
        self.recycle_time += other.recycle_time;
        self.call_histogram.merge(&other.call_histogram);
    }

    /// Counts a recycle.
    pub(crate) fn recycled(&mut self, cause: RecycleCause) {
        self.recycles += 1;
        *self.recycles_by_cause.entry(cause).or_default() += 1;
    }
}

/// The time since `started`, if timing.
pub(crate) fn elapsed(started: Option<Instant>) -> Duration {
    started.map_or(Duration::ZERO, |s| s.elapsed())
}
