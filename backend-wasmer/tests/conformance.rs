//! The shared conformance suite on wasmer.
conformance::suite!(backend_wasmer::host);
