//! The shared conformance suite on wasmtime.
conformance::suite!(backend_wasmtime::host);
