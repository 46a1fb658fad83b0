//! The compiled-executor cache on wasmtime: `conformance::cache_suite!`.

conformance::cache_suite!(backend_wasmtime::host);
