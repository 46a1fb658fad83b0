//! Bakes what `peer --version` reports into the binary: the version of
//! each compiled-in engine (from the lockfile) and the commit built.

use std::process::Command;

fn main() {
    let lock = std::fs::read_to_string("../Cargo.lock").unwrap_or_default();
    let version = |name: &str| {
        let needle = format!("name = \"{name}\"\nversion = \"");
        lock.find(&needle).and_then(|at| lock[at + needle.len()..].split('"').next()).unwrap_or("unknown").to_string()
    };
    let engines: Vec<String> = [("WASMTIME", "wasmtime"), ("WASMER", "wasmer"), ("WASMI", "wasmi")]
        .iter()
        .filter(|(feature, _)| std::env::var_os(format!("CARGO_FEATURE_{feature}")).is_some())
        .map(|(_, name)| format!("{name} {}", version(name)))
        .collect();
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".to_string(), |s| s.trim().to_string());
    println!("cargo:rustc-env=PEER_ENGINES={}", engines.join(", "));
    println!("cargo:rustc-env=PEER_COMMIT={commit}");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    if let Some(reference) =
        std::fs::read_to_string("../.git/HEAD").ok().and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
    {
        println!("cargo:rerun-if-changed=../.git/{reference}");
    }
}
