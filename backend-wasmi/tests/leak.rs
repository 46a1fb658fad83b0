//! The memory-bound cases in a test binary of their own, so nothing else
//! moves RSS.
conformance::memory_suite!(backend_wasmi::host);
