//! `ExecutorHost` on wasmtime — not implemented yet.
//!
//! The crate exists so the workspace layout and `peer`'s `wasmtime` feature
//! are stable; until the backend lands, `peer` answers
//! `error: backend wasmtime is not available yet`.
#![warn(missing_docs)]

/// Whether this backend is implemented in this build.
pub const AVAILABLE: bool = false;
