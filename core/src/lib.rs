//! The engine-agnostic core of the persistent executor host.
//!
//! Everything that must be identical across engines lives here, written
//! once: the [`ExecutorHost`] contract backends implement, the module checks
//! ([`module::prepare`]), the host imports ([`host`]), verdicts and rejection
//! kinds ([`Verdict`]), the [`Limits`], the [`PersistencePolicy`] and the
//! [`Driver`] that applies it, and the engine [`kit`] that gives every
//! backend its instance behaviour. `core` depends on no engine and names
//! none: a backend only runs code, and never decides a verdict.
#![warn(missing_docs)]

pub mod backend;
pub mod cache;
pub mod driver;
mod error;
pub mod guest_log;
pub mod histogram;
pub mod host;
pub mod instrument;
pub mod kit;
pub mod limits;
pub mod module;
pub mod parallel;
pub mod policy;
pub mod pool;
pub mod snapshot;
pub mod verdict;

pub use backend::{
    Blanked, CallError, CompiledExecutor, ExecutorHost, ExecutorInstance, Export, GlobalValue, HostFactory, HostInfo,
    InstanceMode, Trap,
};
pub use cache::{ArtifactCache, CacheConfig, CacheOutcome};
pub use driver::{BlankMethod, Driver, DriverConfig, RecycleCause, SnapshotOutcome, Stats};
pub use error::{Error, Result};
pub use guest_log::LogLine;
pub use histogram::Histogram;
pub use host::{Aborted, HostEnv, Memories, Phase, SharedState, StateView};
pub use limits::{Limits, ModuleLimits};
pub use module::PreparedModule;
pub use parallel::{BlockValidator, ParallelStats, WorldState};
pub use policy::{PersistencePolicy, Schedule};
pub use pool::ExecutorPool;
pub use verdict::{Rejection, RejectionKind, TrapCode, Verdict, VerdictDigest};
