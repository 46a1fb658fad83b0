//! The crate's one error type.

/// Everything that can go wrong in `core` or a backend that is *not* a
/// verdict. Load errors name the feature, export, import or limit; a host
/// failure is a bug or resource failure of the host itself (abi.md: never a
/// verdict).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are neither a WebAssembly binary nor WAT text.
    #[error("not a WebAssembly module: {0}")]
    NotWasm(String),
    /// The module is malformed or fails validation.
    #[error("invalid WebAssembly module: {0}")]
    InvalidModule(String),
    /// The module uses a feature outside the ABI's set.
    #[error("the module uses the {feature} feature, which the executor ABI does not allow ({detail})")]
    ForbiddenFeature {
        /// The feature's name, e.g. `SIMD`.
        feature: &'static str,
        /// The validator's message.
        detail: String,
    },
    /// A size limit of [`crate::ModuleLimits`] (or the memory/table limits)
    /// is exceeded.
    #[error("the module exceeds the {what} limit: {actual} > {limit}")]
    ModuleLimit {
        /// Which limit.
        what: &'static str,
        /// What the module has.
        actual: u64,
        /// The limit.
        limit: u64,
    },
    /// A required export is missing.
    #[error("the module does not export `{0}`")]
    MissingExport(&'static str),
    /// An ABI export has the wrong kind or signature.
    #[error("export `{name}` must be {expected}, found {found}")]
    ExportType {
        /// The export.
        name: &'static str,
        /// What abi.md requires.
        expected: &'static str,
        /// What the module has.
        found: String,
    },
    /// An export name is reserved for the host.
    #[error("export `{0}` uses the reserved prefix `{prefix}`", prefix = crate::module::RESERVED_PREFIX)]
    ReservedExport(String),
    /// An import the host does not provide.
    #[error("unknown import `{module}.{name}`: the host provides only host.state_get, host.deny_reason and host.log")]
    UnknownImport {
        /// Import module.
        module: String,
        /// Import field.
        name: String,
    },
    /// A host import with the wrong signature.
    #[error("import `host.{name}` must be {expected}, found {found}")]
    ImportType {
        /// The import.
        name: &'static str,
        /// What abi.md requires.
        expected: String,
        /// What the module has.
        found: String,
    },
    /// The module must define exactly one memory, exported as `memory`.
    #[error("the module must define exactly one memory, exported as `memory`: {0}")]
    Memory(String),
    /// An active data or element segment does not fit the memory or
    /// table it initialises: instantiation would fail on every engine, so
    /// the module is refused at load.
    #[error(
        "{kind} segment {index} writes {what} {start}..{end} of {target}, which has {size}: out of bounds at instantiation"
    )]
    SegmentOutOfBounds {
        /// `data` or `element`.
        kind: &'static str,
        /// The segment's index in its section.
        index: u32,
        /// `bytes` or `elements`.
        what: &'static str,
        /// The first byte or element written.
        start: u64,
        /// One past the last.
        end: u64,
        /// `memory 0` or `table N`.
        target: String,
        /// The memory's initial bytes or the table's initial elements.
        size: u64,
    },
    /// The executor could tie up more memory than the cap allows (checked
    /// at load, never a cause of recycles).
    #[error(
        "the memory cap would be exceeded: up to {estimate} bytes for live instances, copies of the blank state and compiled code, cap {cap} (raise `memory_cap` or lower `memory_limit`)"
    )]
    MemoryCap {
        /// The estimate (see [`crate::Limits::memory_cap`]).
        estimate: u64,
        /// The cap.
        cap: u64,
    },
    /// The wasm `start` function, `executor_init` or (for an upgrade)
    /// `executor_migrate` failed.
    #[error("{phase} failed: {reason}")]
    InitFailed {
        /// `start`, `executor_init` or `instantiation`.
        phase: &'static str,
        /// What happened (a rejection kind, a trap code, a host fault).
        reason: String,
    },
    /// A module that passed the checks does not compile on a backend: a bug
    /// of that backend.
    #[error("backend {backend} failed to compile a checked module (a host bug): {message}")]
    Compile {
        /// The backend ([`crate::ExecutorHost::name`]).
        backend: &'static str,
        /// The engine's message.
        message: String,
    },
    /// The compiled-executor cache directory cannot be used.
    #[error("cache directory {dir}: {message}")]
    Cache {
        /// The directory.
        dir: String,
        /// What is wrong.
        message: String,
    },
    /// A policy spelled wrongly.
    #[error(transparent)]
    Policy(#[from] crate::policy::ParsePolicyError),
    /// A failure of the host itself: a panic or an internal error of `core`
    /// or a backend, after the retry abi.md allows.
    #[error("host failure on backend {backend}: {message}")]
    HostFailure {
        /// The backend ([`crate::ExecutorHost::name`]).
        backend: &'static str,
        /// What failed.
        message: String,
    },
    /// In-order parallel validation found the embedder's world state
    /// disagreeing with itself: an execution run against
    /// [`crate::parallel::WorldState::snapshot`] at a transaction's turn
    /// read values its [`crate::StateView::get`] does not return.
    #[error("the world state is inconsistent (an embedder bug): {0}")]
    InconsistentState(String),
}

impl Error {
    /// Whether this is a failure of the host itself rather than something
    /// about the executor or the input (`peer` exits 1 for these, 2 for the
    /// rest).
    pub fn is_host_failure(&self) -> bool {
        matches!(self, Error::HostFailure { .. } | Error::Compile { .. } | Error::InconsistentState(_))
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
