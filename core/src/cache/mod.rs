//! The on-disk cache of compiled, instrumented executors and their blank
//! states: the load pipeline here, the disk store in [`store`].
//!
//! Compiling an executor costs milliseconds to seconds per engine, and its
//! `executor_init` can cost as much again; a peer restarting after a crash
//! or an upgrade should not pay either. Engines that can serialise their
//! compiled code (wasmtime, wasmer) store it here; wasmi compiles from
//! bytes and reports the cache as `off`. Every backend stores the
//! executor's [`crate::snapshot::BlankSnapshot`] here too (the driver does,
//! under [`CacheKey::snapshot_of`]), so a restart restores the blank state
//! instead of running init.
//!
//! **Nothing kept here can change a verdict**: an entry is found only by a
//! key over everything the prepared module and its compiled code depend on
//! (the executor's bytes, the instrumentation version and with it the cost
//! table, the limits, the backend, its engine's version and configuration,
//! the ABI feature set); a cached
//! module behaves exactly as a freshly compiled one, and an instance built
//! from a cached snapshot is byte for byte the one `executor_init` makes,
//! which the conformance suite checks on every backend.
//!
//! **Trust**: loading compiled code is `unsafe` in every engine — whoever
//! can write this directory can run native code in the peer, and a
//! snapshot written by someone else would decide the blank state. The directory
//! is created owner-only (0700); one that others can write, or that another
//! user owns, is refused. Each entry carries its key and a SHA-256 of its
//! payload, checked before the engine sees a byte: a truncated, corrupted,
//! foreign or mismatched entry is logged, deleted and recompiled — never
//! loaded. Entries are written to a temporary file, fsynced and renamed,
//! so a crash leaves either the old state or the whole entry (stale
//! temporary files are swept on open). The total size is bounded; the
//! least recently used entries are evicted.

mod store;

pub use store::{ArtifactCache, CacheConfig, CacheKey, DEFAULT_MAX_BYTES, Entry, EntryKind, EntryLabel};

use crate::backend::{CompiledExecutor, ExecutorHost};
use crate::instrument::Tracking;
use crate::{PreparedModule, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether a load used the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display, strum::EnumString, Default)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
#[non_exhaustive]
pub enum CacheOutcome {
    /// The compiled executor was loaded from the cache.
    Hit,
    /// It was compiled (and stored).
    Miss,
    /// No cache: disabled, or the backend cannot serialise.
    #[default]
    Off,
}

/// An executor ready to instantiate, and how it was obtained.
pub struct Loaded {
    /// The checked, instrumented module.
    pub module: Arc<PreparedModule>,
    /// Its compiled code.
    pub compiled: Arc<dyn CompiledExecutor>,
    /// Whether it came from the cache.
    pub outcome: CacheOutcome,
    /// The engine's compilation, or the whole cache load on a hit.
    pub compile_time: Duration,
}

/// Loads `executor` on `host` through `cache`: a verified entry gives the
/// prepared module and the compiled code at once (`Hit`: no checks, no
/// instrumentation, no compilation); otherwise the executor is prepared,
/// compiled, stored and reported as `Miss`; without a cache, or on a
/// backend that cannot serialise, `Off`. An entry that does not decode or
/// that the engine refuses is deleted and the executor recompiled. Load
/// errors of the executor itself surface as from [`crate::module::prepare`].
pub fn load(host: &dyn ExecutorHost, executor: &[u8], cache: Option<&ArtifactCache>) -> Result<Loaded> {
    load_tracked(host, executor, Tracking::Barrier, cache)
}

/// [`load`] with the instrumentation's `tracking` mode (each mode is an
/// entry of its own).
pub fn load_tracked(
    host: &dyn ExecutorHost,
    executor: &[u8],
    tracking: Tracking,
    cache: Option<&ArtifactCache>,
) -> Result<Loaded> {
    let key = cache.and_then(|c| Some((c, CacheKey::tracked(host, executor, tracking)?)));
    let options = crate::module::Options { tracking, ..Default::default() };
    let kind = match tracking {
        Tracking::Barrier => EntryKind::Compiled,
        _ => EntryKind::CompiledUntracked,
    };
    load_keyed(host, key, kind, || crate::module::prepare_with(executor, host.limits(), options).map(Arc::new))
}

/// [`load`] for a module `core` prepared itself (a baked blank snapshot),
/// keyed by its bytes.
pub fn load_prepared(
    host: &dyn ExecutorHost,
    module: Arc<PreparedModule>,
    cache: Option<&ArtifactCache>,
) -> Result<Loaded> {
    let key = cache.and_then(|c| Some((c, CacheKey::prepared_of(host, &module)?)));
    load_keyed(host, key, EntryKind::Baked, || Ok(module))
}

fn load_keyed(
    host: &dyn ExecutorHost,
    key: Option<(&ArtifactCache, CacheKey)>,
    kind: EntryKind,
    prepare: impl FnOnce() -> Result<Arc<PreparedModule>>,
) -> Result<Loaded> {
    let Some((cache, key)) = key else {
        return compile(host, prepare()?);
    };
    let started = Instant::now();
    if let Some(entry) = cache.get(&key) {
        match decode(&entry) {
            Some((module, artifact)) => {
                // SAFETY: the entry is in an owner-only directory (checked
                // at open), carries this exact key (engine, configuration,
                // limits, executor) and its checksum matched: these are
                // bytes this backend serialised for this module.
                match unsafe { host.load_artifact(&module, artifact) } {
                    Ok(compiled) => {
                        let module = Arc::new(module);
                        return Ok(Loaded {
                            module,
                            compiled,
                            outcome: CacheOutcome::Hit,
                            compile_time: started.elapsed(),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(key = key.hex(), error = %e, "the engine refused a cache entry; recompiling")
                    }
                }
            }
            None => tracing::warn!(key = key.hex(), "a cache entry does not decode; recompiling"),
        }
        cache.remove(&key);
    }
    let loaded = compile(host, prepare()?)?;
    match loaded.compiled.serialize() {
        Some(Ok(artifact)) => {
            let label = EntryLabel { executor: loaded.module.hash, backend: host.name().into(), kind };
            if let Err(e) = cache.put_labelled(&key, &label, &encode(&loaded.module, &artifact)) {
                tracing::warn!(dir = %cache.dir().display(), error = %e, "cannot store a compiled executor in the cache");
            }
        }
        Some(Err(e)) => tracing::warn!(error = %e, "cannot serialise a compiled executor"),
        None => {}
    }
    Ok(Loaded { outcome: CacheOutcome::Miss, ..loaded })
}

/// The blank snapshot of `module` on `host` stored in `cache`, if any. An
/// entry that does not decode is deleted.
pub fn load_snapshot(
    cache: &ArtifactCache,
    host: &dyn ExecutorHost,
    module: &PreparedModule,
) -> Option<crate::snapshot::BlankSnapshot> {
    let key = CacheKey::snapshot_of(host, module);
    let entry = cache.get(&key)?;
    match postcard::from_bytes(&entry) {
        Ok(snapshot) => Some(snapshot),
        Err(e) => {
            tracing::warn!(key = key.hex(), error = %e, "a blank snapshot entry does not decode; running init");
            cache.remove(&key);
            None
        }
    }
}

/// Stores the blank snapshot of `module` on `host` (a failure is logged:
/// the next start runs init).
pub fn store_snapshot(
    cache: &ArtifactCache,
    host: &dyn ExecutorHost,
    module: &PreparedModule,
    snapshot: &crate::snapshot::BlankSnapshot,
) {
    let payload = postcard::to_allocvec(snapshot).expect("a snapshot serialises");
    let label = EntryLabel { executor: module.hash, backend: host.name().into(), kind: EntryKind::Snapshot };
    if let Err(e) = cache.put_labelled(&CacheKey::snapshot_of(host, module), &label, &payload) {
        tracing::warn!(dir = %cache.dir().display(), error = %e, "cannot store a blank snapshot in the cache");
    }
}

/// Deletes the stored blank snapshot of `module` on `host` (one that did
/// not fit it).
pub fn forget_snapshot(cache: &ArtifactCache, host: &dyn ExecutorHost, module: &PreparedModule) {
    cache.remove(&CacheKey::snapshot_of(host, module));
}

/// Compiles an already prepared module, timed, without the cache (`Off`).
pub fn compile(host: &dyn ExecutorHost, module: Arc<PreparedModule>) -> Result<Loaded> {
    let started = Instant::now();
    // An engine's compiler that panics on a checked module (a bug of the
    // engine) fails this load, and never takes the peer down.
    let compiled =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| host.compile(&module))).unwrap_or_else(|panic| {
            let message = format!("the compiler panicked: {}", crate::error::panic_message(&*panic));
            Err(crate::Error::Compile { backend: host.name(), message })
        })?;
    Ok(Loaded { module, compiled, outcome: CacheOutcome::Off, compile_time: started.elapsed() })
}

/// An entry's payload: the prepared module's length, the module
/// (postcard), the engine's artifact.
fn encode(module: &PreparedModule, artifact: &[u8]) -> Vec<u8> {
    let module = postcard::to_allocvec(module).expect("a prepared module serialises");
    let mut out = Vec::with_capacity(8 + module.len() + artifact.len());
    out.extend_from_slice(&(module.len() as u64).to_le_bytes());
    out.extend_from_slice(&module);
    out.extend_from_slice(artifact);
    out
}

fn decode(payload: &[u8]) -> Option<(PreparedModule, &[u8])> {
    let len = usize::try_from(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?)).ok()?;
    let module = payload.get(8..8usize.checked_add(len)?)?;
    Some((postcard::from_bytes(module).ok()?, &payload[8 + len..]))
}
