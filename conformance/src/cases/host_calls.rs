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
