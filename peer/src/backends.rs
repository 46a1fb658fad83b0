//! Backend selection: the one place that maps a [`BackendKind`] to an
//! engine, by cargo feature.

use crate::Error;
use executor_core::{BackendKind, ExecutorHost, Limits};
use std::sync::Arc;
use strum::IntoEnumIterator;

/// Whether `kind` can run in this build.
pub fn is_compiled_in(kind: BackendKind) -> bool {
    match kind {
        #[cfg(feature = "wasmtime")]
        BackendKind::Wasmtime => true,
        #[cfg(feature = "wasmer")]
        BackendKind::Wasmer => true,
        #[cfg(feature = "wasmi")]
        BackendKind::Wasmi => true,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// The backends that can run in this build, in preference order.
pub fn compiled_in() -> Vec<BackendKind> {
    BackendKind::iter().filter(|k| is_compiled_in(*k)).collect()
}

/// cli.md's default: wasmtime when compiled in, else the first of wasmer,
/// wasmi that is.
pub fn default_backend() -> Option<BackendKind> {
    compiled_in().into_iter().next()
}

/// The engine for `kind`, configured with `limits`.
pub fn host(kind: BackendKind, limits: Limits) -> Result<Arc<dyn ExecutorHost>, Error> {
    match kind {
        #[cfg(feature = "wasmi")]
        BackendKind::Wasmi => Ok(backend_wasmi::host(limits)),
        #[cfg(feature = "wasmtime")]
        BackendKind::Wasmtime => backend_wasmtime::try_host(limits).map_err(Error::Engine),
        #[cfg(feature = "wasmer")]
        BackendKind::Wasmer => Ok(backend_wasmer::host(limits)),
        #[allow(unreachable_patterns)]
        _ => {
            let _ = limits;
            Err(Error::NotCompiledIn(kind))
        }
    }
}

/// A backend's constructor (the same type as `conformance::HostFactory`).
pub type Factory = fn(Limits) -> Arc<dyn ExecutorHost>;

/// A constructor of `kind`'s engine, if compiled in: for suites that build
/// many hosts (e.g. `conformance::determinism`).
pub fn factory(kind: BackendKind) -> Option<Factory> {
    match kind {
        #[cfg(feature = "wasmi")]
        BackendKind::Wasmi => Some(backend_wasmi::host),
        #[cfg(feature = "wasmtime")]
        BackendKind::Wasmtime => Some(backend_wasmtime::host),
        #[cfg(feature = "wasmer")]
        BackendKind::Wasmer => Some(backend_wasmer::host),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Every compiled-in backend with its name and constructor, in preference
/// order: what cross-engine suites and the fuzzer run side by side.
pub fn factories() -> Vec<(&'static str, Factory)> {
    compiled_in().into_iter().map(|k| (k.into(), factory(k).expect("compiled in"))).collect()
}
