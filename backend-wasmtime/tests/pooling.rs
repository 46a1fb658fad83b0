//! The pooling allocator is really in use with the default limits (its
//! fallback is logged, but must not be the normal case).

use backend_wasmtime::WasmtimeHost;
use executor_core::Limits;

#[test]
fn pooling_is_set_up_with_the_default_limits() {
    let host = WasmtimeHost::new(Limits::default()).unwrap();
    assert!(host.pooling(), "the pooling allocator could not be set up");
}
