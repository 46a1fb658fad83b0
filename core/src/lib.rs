//! The engine-agnostic core of the persistent executor host.
//!
//! Everything that must be identical across engines lives here, written
//! once: the [`ExecutorHost`] contract backends implement, the module checks
//! ([`module::prepare`]), the host imports ([`host`]), verdicts and rejection
//! kinds ([`Verdict`]), the [`Limits`], the [`PersistencePolicy`] and the
//! [`Driver`] that applies it. `core` depends on no engine: a backend only
//! runs code, and never decides a verdict.
#![warn(missing_docs)]

pub mod backend;
pub mod cache;
pub mod driver;
mod error;
pub mod histogram;
pub mod host;
pub mod instrument;
pub mod limits;
pub mod module;
pub mod policy;
pub mod pool;
pub mod snapshot;
pub mod verdict;

pub use backend::{
    BackendKind, Blanked, CallError, CompiledExecutor, ExecutorHost, ExecutorInstance, Export, GlobalValue,
    InstanceMode, Trap,
};
pub use cache::{ArtifactCache, CacheConfig, CacheOutcome};
pub use driver::{Driver, DriverConfig, RecycleCause, SnapshotOutcome, Stats};
pub use error::{Error, Result};
pub use histogram::Histogram;
pub use host::{Aborted, HostEnv, Phase, SharedState, StateView};
pub use limits::{Limits, ModuleLimits};
pub use module::PreparedModule;
pub use policy::PersistencePolicy;
pub use pool::ExecutorPool;
pub use verdict::{Rejection, RejectionKind, TrapCode, Verdict, VerdictDigest};
