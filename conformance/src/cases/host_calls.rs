//! The host imports end to end: deny reasons and `state_get`.

use super::*;

/// Deny reasons: cut at 256 bytes then lossily decoded (a character cut at
/// byte 256 becomes U+FFFD), the last call wins, ignored on approval.
pub fn deny_reasons(factory: HostFactory) {
    let mut d = load(factory, HOSTILE.as_bytes(), every_tx(1), Limits::default());
    let got = run_bytes(&mut d, &[20, 21, 22]);
    assert_eq!(got, vec![denied(&format!("{}\u{fffd}", "a".repeat(255))), denied("a\u{fffd}"), A]);
}

/// `host.state_get` end to end: a value that fits is written, an absent key
/// is -1, a value that does not fit reports its length and writes nothing.
pub fn state_get_end_to_end(factory: HostFactory) {
    let mut d = load(factory, READS_STATE.as_bytes(), every_tx(1), Limits::default());
    let world = state(&[(b"k", b"abc"), (b"long", b"12345678"), (b"", b"e")]);
    let mut v = |key: &[u8]| d.validate(key, world.clone()).unwrap();
    assert_eq!(v(b"k"), denied("abc"));
    assert_eq!(v(b"nope"), denied("absent"));
    assert_eq!(v(b"long"), denied("long:\u{8}"));
    assert_eq!(v(b""), denied("e"), "the empty key is a key");
}

/// World state that panics on one key, as a buggy embedder's might.
struct PanicsOn(&'static [u8]);

impl executor_core::StateView for PanicsOn {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        assert!(key != self.0, "the embedder's state view failed");
        Some(b"ok")
    }
}

/// A panic in the embedder's `StateView` during `state_get` is a host
/// failure carrying its message — never a verdict, never a panic out of
/// the driver (on wasmi a panic unwinding through the interpreter aborted
/// the process: imports catch their panics) — after the driver's one
/// retry, for which `state_get` handed the state back; the next
/// transaction is served on a rebuilt instance.
pub fn a_panicking_state_view_is_a_host_failure(factory: HostFactory) {
    let mut d = load(factory, READS_STATE.as_bytes(), every_tx(1), Limits::default());
    let world: executor_core::SharedState = std::sync::Arc::new(PanicsOn(b"bad"));
    let failure = d.validate(b"bad", world.clone()).expect_err("a host failure");
    assert!(failure.is_host_failure(), "{failure}");
    assert!(failure.to_string().contains("the embedder's state view failed"), "{failure}");
    assert_eq!(d.validate(b"k", world).unwrap(), denied("ok"), "served after the failure");
    assert_eq!(d.stats().host_failures, 1);
}
