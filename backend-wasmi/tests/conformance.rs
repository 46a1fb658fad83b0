//! The shared conformance suite on wasmi.
conformance::suite!(backend_wasmi::host);
