//! The compiled-executor cache on wasmer: `conformance::cache_suite!`.

conformance::cache_suite!(backend_wasmer::host);

/// The version in the cache key is the one built: a wasmer upgrade must
/// change `WASMER_VERSION`, or old entries would be offered to the new
/// engine (which would refuse them, but the key should have missed).
#[test]
fn cache_key_names_the_wasmer_in_cargo_lock() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).expect("Cargo.lock");
    let entry = format!("name = \"wasmer\"\nversion = \"{}\"\n", backend_wasmer::WASMER_VERSION);
    assert!(lock.contains(&entry), "Cargo.lock's wasmer is not {}", backend_wasmer::WASMER_VERSION);
}
