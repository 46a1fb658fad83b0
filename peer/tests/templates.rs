//! The executor templates build with one command (`cargo build --release`
//! in their directory, the toolchain and target named by their
//! `rust-toolchain.toml`) and pass `peer check` on every backend; the WAT
//! template always, the Rust ones wherever their toolchain and target are
//! installed (skipped, saying so, elsewhere).

mod common;

use common::json;
use std::path::Path;
use std::process::Command;

fn installed(what: &[&str], name: &str) -> bool {
    Command::new("rustup")
        .args(what)
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim().starts_with(name)))
}

/// `peer check` loads it on every backend, and a short run has no
/// rejection.
fn passes_check(wasm: &str) {
    let v = json(&["check", wasm, "--json"]);
    assert_eq!(v["backends"].as_object().unwrap().len(), 3, "{v}");
    assert!(v["backends"].as_object().unwrap().values().all(|b| b["loaded"] == true), "{v}");
    let run = json(&["run", "--executor", wasm, "--transactions", "500", "--json"]);
    let rejected: u64 = run["rejected"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(rejected, 0, "{wasm}: {run}");
    assert!(run["approved"].as_u64().unwrap() > 0 || wasm.ends_with(".wat"), "{run}");
}

#[test]
fn templates_build_and_pass_check() {
    passes_check("templates/wat/executor.wat");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (dir, target) in [("rust-no-std", "wasm32v1-none"), ("rust-std", "wasm32-unknown-unknown")] {
        let template = root.join("templates").join(dir);
        let file = std::fs::read_to_string(template.join("rust-toolchain.toml")).unwrap();
        let channel = file.lines().find_map(|l| l.strip_prefix("channel = ")).unwrap().trim_matches('"').to_string();
        if !installed(&["toolchain", "list"], &channel) {
            eprintln!("SKIPPED {dir}: toolchain {channel} not installed (`rustup toolchain install {channel}`)");
            continue;
        }
        if !installed(
            &["+".to_string() + &channel, "target".into(), "list".into(), "--installed".into()]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            target,
        ) {
            eprintln!("SKIPPED {dir}: `rustup +{channel} target add {target}` to build it");
            continue;
        }
        let target_dir = root.join("target/templates").join(dir);
        let mut build = Command::new("cargo");
        build.args(["build", "--release", "--locked", "--target-dir"]).arg(&target_dir).current_dir(&template);
        // The outer cargo's settings are not the template's.
        for (key, _) in std::env::vars() {
            if (key.starts_with("CARGO") && key != "CARGO_HOME") || (key.starts_with("RUST") && key != "RUSTUP_HOME") {
                build.env_remove(key);
            }
        }
        let out = build.output().expect("cargo runs");
        assert!(out.status.success(), "{dir}: {}", String::from_utf8_lossy(&out.stderr));
        let wasm = target_dir.join(target).join("release/my_executor.wasm");
        passes_check(wasm.to_str().unwrap());
    }
}
