//! What the command-line tests share: running `peer` from the repository
//! root, its one JSON object, and the one-line usage error.
// Each test binary uses its own subset.
#![allow(dead_code)]

use serde_json::Value;
use std::process::{Command, Output};

pub fn peer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("peer runs")
}

pub fn json(args: &[&str]) -> Value {
    let out = peer(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.trim().lines().count(), 1, "exactly one JSON object: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

/// Asserts exit status 2 and exactly one `error:` line naming `needle`.
pub fn usage_error(args: &[&str], needle: &str) {
    let out = peer(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line, got {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr} should mention {needle}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
