//! The peer: runs an executor over a deterministic synthetic ledger
//! workload on any compiled-in backend, and compares engines.
//!
//! This is the only crate that knows every backend; which are compiled in
//! is decided by its cargo features (`wasmtime`, `wasmer`, `wasmi`), and all
//! feature→backend dispatch is in [`backends`]. Its rooms: [`settings`]
//! (flags over the config file, merged once), [`run`] (the run loop),
//! [`report`] (what a run reports), [`compare`] (engines side by side),
//! [`metrics`], [`chart`], and the synthetic [`workload`].
#![warn(missing_docs)]

pub mod anchor;
pub mod backends;
pub mod bench;
pub mod chart;
pub mod compare;
pub mod config;
pub mod input;
pub mod metrics;
pub mod progress;
pub mod recording;
pub mod report;
pub mod rss;
pub mod run;
pub mod settings;
pub mod tools;
pub mod workload;

pub use backends::BackendKind;

/// The embedded default executor (see `executors/default`).
pub const DEFAULT_EXECUTOR: &[u8] = include_bytes!("../../executors/default.wasm");
/// The default executor's variant: the same rules, other bytes (for
/// upgrades that really load a new module).
pub const DEFAULT_VARIANT: &[u8] = include_bytes!("../../executors/default-variant.wasm");

/// Everything `peer` can fail with. [`Error::exit_code`] maps each to the
/// exit status cli.md fixes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad command-line usage.
    #[error("{0}")]
    Usage(String),
    /// A config file that cannot be used; the message names the field.
    #[error("config {path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An executor file that cannot be read.
    #[error("executor {path}: {message}")]
    ExecutorFile {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A backend that is not compiled into this build.
    #[error("backend {0} is not compiled in (build peer with `--features {0}`)")]
    NotCompiledIn(BackendKind),
    /// The executor cannot be loaded (names the feature/export/import), or
    /// the host failed; [`executor_core::Error::is_host_failure`] tells.
    #[error("executor {executor}: {source}")]
    Executor {
        /// Which executor.
        executor: String,
        /// What went wrong.
        source: executor_core::Error,
    },
    /// An engine could not be set up: a failure of the host.
    #[error("{0}")]
    Engine(executor_core::Error),
    /// The compiled-executor cache directory cannot be used (e.g. others
    /// can write it): a configuration error.
    #[error("{0}")]
    Cache(executor_core::Error),
    /// A workload file that cannot be replayed; the message names the line,
    /// block and transaction.
    #[error("workload {path}: {message}")]
    Workload {
        /// The file.
        path: String,
        /// What is wrong, and where.
        message: String,
    },
    /// Backends disagreed in `peer compare`.
    #[error("{0}")]
    Inconsistent(String),
    /// A plain-engine reference could not run.
    #[error("reference {0}")]
    Reference(String),
    /// Output could not be written.
    #[error("cannot write {path}: {message}")]
    Output {
        /// Where.
        path: String,
        /// Why.
        message: String,
    },
}

impl Error {
    /// cli.md: 1 for failures of the host itself and for disagreeing
    /// backends, 2 for bad usage, configs and executors.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Executor { source, .. } | Error::Engine(source) if source.is_host_failure() => 1,
            Error::Engine(_) => 1,
            Error::Inconsistent(_) | Error::Output { .. } => 1,
            _ => 2,
        }
    }
}
