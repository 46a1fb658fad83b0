//! The operator's commands around a run: `peer check` (what an executor
//! is and costs), `peer compile` (a cache filled at deploy time, found by
//! the next run) and `peer cache ls|verify|clear`.

mod common;

use common::{json, peer, usage_error};
use serde_json::Value;

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("peer-tools-{}-{name}", std::process::id()))
}

#[test]
fn check_reports_what_an_operator_needs_on_every_backend() {
    for executor in ["executors/default.wasm", "executors/bench/sigcheck.wasm"] {
        let v = json(&["check", executor, "--json"]);
        assert_eq!(v["executor_hash"].as_str().unwrap().len(), 64);
        assert!(v["bytes"].as_u64().unwrap() > 1000);
        assert!(v["features"].is_array());
        let imports: Vec<&str> = v["imports"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
        assert!(imports.contains(&"host.state_get"), "{imports:?}");
        let exports: Vec<&str> = v["exports"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
        for name in ["memory", "executor_alloc", "executor_validate", "executor_init"] {
            assert!(exports.contains(&name), "{name} in {exports:?}");
        }
        let limits = v["limits"].as_array().unwrap();
        assert!(limits.len() >= 10);
        for l in limits {
            let (used, allowed) = (l["used"].as_u64().unwrap(), l["allowed"].as_u64().unwrap());
            assert!(used <= allowed, "{l}");
        }
        let used = |name: &str| limits.iter().find(|l| l["limit"] == name).unwrap()["used"].as_u64().unwrap();
        assert_eq!(used("bytes"), v["bytes"].as_u64().unwrap());
        assert!(used("functions") > 5 && used("instructions") > used("instructions_per_function"));
        assert!(v["init_fuel"].as_u64().unwrap() > 0, "init runs: {v}");
        assert!(v["init_fuel"].as_u64() <= v["init_fuel_allowed"].as_u64());
        assert!(v["blank_state_bytes"].as_u64().unwrap() >= 65536);
        assert_eq!(v["snapshot"], "portable");
        assert!(v["writes"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(v["tracking"], "barrier");
        let backends = v["backends"].as_object().unwrap();
        assert_eq!(backends.len(), 3, "{backends:?}");
        for (name, b) in backends {
            assert_eq!(b["loaded"], true, "{name}");
            assert!(b["compile_ms"].as_f64().unwrap() > 0.0, "{name}");
        }
        let text = String::from_utf8(peer(&["check", executor]).stdout).unwrap();
        assert!(text.contains("module limits (used / allowed)") && text.contains("wasmi: loaded"), "{text}");
        assert!(text.contains("write barrier: on"), "{text}");
    }
    // Features beyond the MVP are named; so is an unportable blank state.
    let wat = temp("bulk.wat");
    std::fs::write(
        &wat,
        r#"(module (memory (export "memory") 1) (table 1 funcref)
          (func $f) (elem declare func $f)
          (func (export "executor_init") (table.set 0 (i32.const 0) (ref.func $f)) (memory.fill (i32.const 0) (i32.const 1) (i32.const 8)))
          (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let v = json(&["check", wat.to_str().unwrap(), "--json"]);
    let features: Vec<&str> = v["features"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(features.contains(&"bulk-memory") && features.contains(&"reference-types"), "{features:?}");
    assert_eq!(v["snapshot"], "unportable", "init wrote a table");
    // Load errors: one line, exit 2, naming the problem.
    let garbage = temp("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x01\0\0\0\x01\x02").unwrap();
    usage_error(&["check", garbage.to_str().unwrap()], "invalid WebAssembly module");
    let cfg = temp("tight.json");
    std::fs::write(&cfg, r#"{"module_limits": {"functions": 3}}"#).unwrap();
    usage_error(&["check", "executors/default.wasm", "--config", cfg.to_str().unwrap()], "functions");
    usage_error(&["check", "/nonexistent.wasm"], "/nonexistent.wasm");
    for f in [wat, garbage, cfg] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn compile_fills_the_cache_a_run_then_finds_and_cache_lists_verifies_and_clears_it() {
    let dir = temp("cache");
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let compiled = json(&["compile", "executors/default.wasm", "--cache-dir", d, "--json"]);
    let compiled = compiled.as_array().unwrap();
    assert_eq!(compiled.len(), 3);
    for c in compiled {
        let expected = if c["backend"] == "wasmi" { "off" } else { "miss" };
        assert_eq!(c["cache"], expected, "{c}");
    }
    for backend in ["wasmtime", "wasmer", "wasmi"] {
        let args = ["run", "--executor", "executors/default.wasm", "--cache-dir", d, "--backend", backend];
        let v = json(&[&args[..], &["--transactions", "20", "--json"]].concat());
        let expected = if backend == "wasmi" { "off" } else { "hit" };
        assert_eq!((v["cache"].as_str(), v["snapshot"].as_str()), (Some(expected), Some("restored")), "{backend}");
    }
    let rows = json(&["cache", "ls", "--cache-dir", d, "--json"]);
    let rows = rows.as_array().unwrap();
    let kinds: std::collections::BTreeSet<(&str, &str)> =
        rows.iter().map(|r| (r["backend"].as_str().unwrap(), r["kind"].as_str().unwrap())).collect();
    for expected in [("wasmtime", "compiled"), ("wasmtime", "snapshot"), ("wasmer", "compiled"), ("wasmi", "snapshot")]
    {
        assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
    }
    let hash = json(&["check", "executors/default.wasm", "--json"])["executor_hash"].clone();
    assert!(rows.iter().all(|r| r["executor_hash"] == hash && r["bytes"].as_u64().unwrap() > 0));
    let verified = json(&["cache", "verify", "--cache-dir", d, "--json"]);
    assert!(verified.as_array().unwrap().iter().all(|r| r["verified"] == "ok"), "{verified}");
    // A corrupted entry fails verification (exit 1, named), and is listed.
    let entry = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&entry, bytes).unwrap();
    let out = peer(&["cache", "verify", "--cache-dir", d, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().iter().filter(|r| r["verified"] != "ok").count(), 1);
    // clear removes the cache's own files only.
    let mine = dir.join("notes.txt");
    std::fs::write(&mine, "mine").unwrap();
    let cleared = json(&["cache", "clear", "--cache-dir", d, "--json"]);
    assert_eq!(cleared["removed_files"].as_u64(), Some(rows.as_array().unwrap().len() as u64));
    assert!(mine.exists());
    assert_eq!(json(&["cache", "ls", "--cache-dir", d, "--json"]), serde_json::json!([]));
    let _ = std::fs::remove_dir_all(&dir);
    let missing = temp("never-made");
    let out = peer(&["cache", "ls", "--cache-dir", missing.to_str().unwrap()]);
    assert!(out.status.success() && !missing.exists(), "ls creates nothing");
    usage_error(&["compile", "executors/default.wasm", "--no-such-flag"], "--no-such-flag");
}
