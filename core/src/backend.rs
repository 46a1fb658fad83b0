//! The contract between `core` and an engine backend.
//!
//! A backend answers exactly these questions: compile a prepared module,
//! instantiate it (running the wasm `start`), call an ABI export, lend the
//! linear memory, snapshot the blank state and restore it, and say how much
//! memory is in use. It never decides a verdict and holds no policy: the
//! [`crate::Driver`] does both, once, for every backend.
//!
//! Three small traits, one per lifetime:
//! [`ExecutorHost`] (an engine configured with the limits, lives as long as
//! the peer), [`CompiledExecutor`] (one executor's compiled code, shared by
//! all its instances), [`ExecutorInstance`] (one store and instance). Most
//! of an instance is the same on every engine: a backend implements the
//! small [`crate::kit::Engine`] and gets [`ExecutorInstance`] from
//! [`crate::kit::Instance`].
//!
//! `core` names no engine: a backend names itself
//! ([`ExecutorHost::name`]), and which engines exist is the business of the
//! crate that links them (`peer`'s `BackendKind`), so adding an engine
//! never touches `core`.

use crate::{Error, HostEnv, Limits, Memories, PreparedModule, Result, TrapCode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// An ABI export the host calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Export {
    /// `executor_alloc(len) -> ptr`
    Alloc,
    /// `executor_validate(ptr, len) -> verdict`
    Validate,
    /// `executor_init()`
    Init,
    /// `executor_migrate() -> status`
    Migrate,
    /// The module's wasm `start` function, `() -> ()`, which core calls
    /// after instantiation (see [`crate::module::ModuleInfo::start`]).
    Start,
}

impl Export {
    /// The export's name in the module.
    pub fn name(self) -> &'static str {
        use crate::module::exports;
        match self {
            Export::Alloc => exports::ALLOC,
            Export::Validate => exports::VALIDATE,
            Export::Init => exports::INIT,
            Export::Migrate => exports::MIGRATE,
            Export::Start => exports::START,
        }
    }
}

/// How an instance will be used, so a backend can set it up accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstanceMode {
    /// Kept warm and blanked: the backend may use its fastest machinery
    /// (pooling, pre-instantiation) and must support
    /// [`ExecutorInstance::mark_blank`] / [`ExecutorInstance::blank`].
    Reusable,
    /// The `fresh` reference: the engine's default settings, used once.
    Fresh,
}

/// How a guest call ended without returning, as the engine saw it.
///
/// `Aborted` means a host function or growth check of `core` ended the call;
/// the reason is in the instance's [`HostEnv`] and takes precedence over
/// anything the engine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trap {
    /// A WebAssembly trap with its code.
    Wasm(TrapCode),
    /// The engine's own fuel ran out — a backstop only: core meters fuel
    /// in the module itself.
    OutOfFuel,
    /// The engine's own stack limit fired — a backstop only: core counts
    /// the deterministic stack in the module itself.
    StackOverflow,
    /// `core` ended the call (see [`HostEnv::abort`]).
    Aborted,
}

/// A failed call: a guest trap (becomes a verdict) or a host failure (never
/// does).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// The guest trapped.
    Trap(Trap),
    /// The engine or backend failed for a reason of its own (an unknown trap
    /// kind, an internal error): a host failure.
    Host(String),
}

impl From<Trap> for CallError {
    fn from(t: Trap) -> Self {
        CallError::Trap(t)
    }
}

/// What a blank achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Blanked {
    /// The instance is back in its blank state.
    Restored,
    /// The instance cannot be restored in place (e.g. memory grew past the
    /// snapshot and cannot shrink); the driver rebuilds it.
    NeedsRebuild,
}

/// A mutable global's value, the same on every engine (floats as their
/// bits, so no NaN payload is lost), as a [`crate::snapshot::BlankSnapshot`]
/// carries it from one instance to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlobalValue {
    /// `i32`.
    I32(i32),
    /// `i64`.
    I64(i64),
    /// `f32`, its bits.
    F32(u32),
    /// `f64`, its bits.
    F64(u64),
}

/// What every [`ExecutorHost`] is: an engine's name and the limits it
/// enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The engine's name ([`ExecutorHost::name`]).
    pub name: &'static str,
    /// The limits ([`ExecutorHost::limits`]).
    pub limits: Limits,
}

/// An engine, configured once with the limits. The contract:
///
/// - [`ExecutorHost::compile`] receives only modules that passed
///   [`crate::module::prepare`]; failing to compile one is a backend bug
///   ([`crate::Error::Compile`]).
/// - Everything is `Send`, so a peer can keep instances on worker threads.
pub trait ExecutorHost: Send + Sync {
    /// The engine's name and the limits it was configured with.
    fn info(&self) -> &HostInfo;

    /// The engine's name (`wasmtime`, `wasmer`, `wasmi`): in messages, and
    /// in the cache key, so two engines never share an entry.
    fn name(&self) -> &'static str {
        self.info().name
    }

    /// The limits the engine was configured with.
    fn limits(&self) -> &Limits {
        &self.info().limits
    }

    /// Compiles a prepared module.
    fn compile(&self, module: &PreparedModule) -> Result<Arc<dyn CompiledExecutor>>;

    /// Everything about this engine that its serialised code depends on
    /// (engine version, configuration), for [`crate::cache`]'s key; `None`
    /// (the default) if the backend cannot serialise compiled code.
    fn artifact_fingerprint(&self) -> Option<String> {
        None
    }

    /// Whether this engine builds a blank instance faster from a module with
    /// the blank snapshot baked in ([`crate::snapshot::BlankSnapshot::bake`],
    /// compiled once more) than by adopting the snapshot into a new
    /// instance: true where instantiation maps data segments copy-on-write
    /// (wasmtime's memory images), so a rebuild costs a mapping instead of
    /// a copy of everything init wrote. Default false.
    fn bakes_snapshots(&self) -> bool {
        false
    }

    /// Loads compiled code that [`CompiledExecutor::serialize`] produced on
    /// a host with the same [`ExecutorHost::artifact_fingerprint`] for
    /// `module`. An `Err` makes the caller recompile.
    ///
    /// # Safety
    ///
    /// Engines run these bytes as native code: they must be exactly what
    /// this backend serialised (the cache checks key and checksum).
    unsafe fn load_artifact(&self, module: &PreparedModule, artifact: &[u8]) -> Result<Arc<dyn CompiledExecutor>> {
        let _ = (module, artifact);
        Err(Error::Compile { backend: self.name(), message: "this backend cannot load serialised code".into() })
    }
}

/// One executor's compiled code.
pub trait CompiledExecutor: Send + Sync {
    /// A new store and instance, with `env` as its host state. The prepared module has no start section: the driver calls
    /// [`Export::Start`] and `executor_init` itself.
    fn instantiate(&self, env: HostEnv, mode: InstanceMode) -> Result<Box<dyn ExecutorInstance>, CallError>;

    /// The compiled code as bytes for [`crate::cache`], or `None` (the
    /// default) if the backend cannot serialise.
    fn serialize(&self) -> Option<Result<Vec<u8>, String>> {
        None
    }
}

/// One live instance in its own store. Dropping it frees the store.
/// Backends get it from [`crate::kit::Instance`]; the provided methods let
/// a minimal host (a test double) skip snapshots.
pub trait ExecutorInstance: Send {
    /// Calls an ABI export with `i32` arguments; returns its `i32` result,
    /// if it has one.
    fn call(&mut self, export: Export, args: &[i32]) -> Result<Option<i32>, CallError>;

    /// The host state the imports use.
    fn env(&mut self) -> &mut HostEnv;

    /// The guest's linear memory and the books the instrumentation added
    /// (see [`crate::instrument::Layout`]), lent together.
    fn memories(&mut self) -> Memories<'_>;

    /// Both memories and the host state at once: the driver copies the
    /// payload, records it and arms the counters with one lend instead of
    /// five calls through this trait.
    fn memories_and_env(&mut self) -> (Memories<'_>, &mut HostEnv);

    /// The guest's linear memory.
    fn memory(&mut self) -> &mut [u8] {
        self.memories().guest
    }

    /// The books: the dirty map, the counters' cells and the flags.
    fn books(&mut self) -> &mut [u8] {
        self.memories().books
    }

    /// Records the current state (memory bytes and size, every mutable
    /// global, every table) as the blank state. Called once, after
    /// `executor_init`, on [`InstanceMode::Reusable`] instances.
    fn mark_blank(&mut self) -> Result<(), CallError>;

    /// Restores the blank state recorded by [`ExecutorInstance::mark_blank`]
    /// exactly, or says it cannot.
    fn blank(&mut self) -> Result<Blanked, CallError>;

    /// Current linear-memory size in bytes.
    fn memory_size(&mut self) -> u64;

    /// Every mutable global's value, in the order of
    /// [`crate::module::ModuleInfo::globals`], or `None` if one holds a
    /// reference (which has no value outside its store) — then the blank
    /// state cannot move to another instance and every build runs
    /// `executor_init`. The default says `None`: a backend that does not
    /// implement the three snapshot methods still works, only slower.
    fn global_values(&mut self) -> Result<Option<Vec<GlobalValue>>, CallError> {
        Ok(None)
    }

    /// Sets every mutable global, values as [`ExecutorInstance::global_values`]
    /// gives them; a wrong count or type is an `Err`.
    fn set_global_values(&mut self, values: &[GlobalValue]) -> Result<(), CallError> {
        let _ = values;
        Err(CallError::Host("this backend cannot set globals".into()))
    }

    /// Grows linear memory by `pages` wasm pages from the host side (no
    /// guest code runs), through the same limiter as the guest's
    /// `memory.grow`.
    fn grow_memory(&mut self, pages: u64) -> Result<(), CallError> {
        let _ = pages;
        Err(CallError::Host("this backend cannot grow memory from the host".into()))
    }
}

/// Makes a backend's host for the given limits (e.g. `backend_wasmi::host`):
/// what suites and tools that build many hosts take.
pub type HostFactory = fn(Limits) -> Arc<dyn ExecutorHost>;
