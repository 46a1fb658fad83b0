//! `ExecutorHost` on wasmer — not implemented yet.
//!
//! The crate exists so the workspace layout and `peer`'s `wasmer` feature
//! are stable; until the backend lands, `peer` answers
//! `error: backend wasmer is not available yet`.
#![warn(missing_docs)]

/// Whether this backend is implemented in this build.
pub const AVAILABLE: bool = false;
