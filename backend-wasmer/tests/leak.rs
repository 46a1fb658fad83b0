//! The leak case in a test binary of its own, so nothing else moves RSS.
#[test]
fn load_run_drop_does_not_leak() {
    conformance::cases::load_run_drop_does_not_leak(backend_wasmer::host);
}
