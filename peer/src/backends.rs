//! The engines this peer knows, and the one place that maps each to its
//! backend crate, by cargo feature (nearcore's `VMKind` with one dispatch
//! function; rustls' one feature per provider).
//!
//! `core` names no engine — a backend names itself — so the list lives
//! here, in the only crate that links every backend: adding an engine adds
//! a variant and an arm below, nothing in `core`.

use crate::Error;
use executor_core::{ExecutorHost, HostFactory, Limits};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use strum::{Display, EnumIter, EnumString, IntoEnumIterator, IntoStaticStr};

/// An engine, spelled as on the command line and in the config
/// (`wasmtime`, `wasmer`, `wasmi`), in preference order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    Display,
    EnumString,
    EnumIter,
    IntoStaticStr,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
pub enum BackendKind {
    /// wasmtime (Cranelift, pooling allocator, copy-on-write images).
    Wasmtime,
    /// wasmer (singlepass).
    Wasmer,
    /// wasmi (interpreter).
    Wasmi,
}

/// The constructor of `kind`'s engine, if compiled into this build.
pub fn factory(kind: BackendKind) -> Option<HostFactory> {
    match kind {
        #[cfg(feature = "wasmtime")]
        BackendKind::Wasmtime => Some(backend_wasmtime::host),
        #[cfg(feature = "wasmer")]
        BackendKind::Wasmer => Some(backend_wasmer::host),
        #[cfg(feature = "wasmi")]
        BackendKind::Wasmi => Some(backend_wasmi::host),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Whether `kind` can run in this build.
pub fn is_compiled_in(kind: BackendKind) -> bool {
    factory(kind).is_some()
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

/// The engine for `kind`, configured with `limits`. wasmtime's engine can
/// fail to be created (a broken host): that is an error, not a panic.
pub fn host(kind: BackendKind, limits: Limits) -> Result<Arc<dyn ExecutorHost>, Error> {
    match kind {
        #[cfg(feature = "wasmtime")]
        BackendKind::Wasmtime => backend_wasmtime::try_host(limits).map_err(Error::Engine),
        _ => Ok(factory(kind).ok_or(Error::NotCompiledIn(kind))?(limits)),
    }
}

/// Every compiled-in backend with its name and constructor, in preference
/// order: what cross-engine suites and the fuzzer run side by side.
pub fn factories() -> Vec<(&'static str, HostFactory)> {
    compiled_in().into_iter().map(|k| (k.into(), factory(k).expect("compiled in"))).collect()
}
