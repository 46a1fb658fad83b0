//! The `peer` command line with workers: `--prevalidate`, `--threads`
//! (in-order parallel validation: digests, the JSON's work fields, logs of
//! discarded runs) and `memory_cap` bounding workers, audits and upgrades
//! together.

mod common;

use common::{json, usage_error};
use serde_json::Value;
use std::process::Command;

/// `--prevalidate N` pre-validates every block on N workers against the
/// block's starting state: the same `prevalidation_digest` for every N
/// and backend (upgrades judged, not installed), and the in-order run
/// unchanged by it.
#[test]
fn prevalidation_digest_is_the_same_for_every_thread_count() {
    let mut digests = std::collections::BTreeSet::new();
    for backend in ["wasmtime", "wasmer", "wasmi"] {
        let base = ["run", "--backend", backend, "--transactions", "400", "--block-size", "40", "--upgrade-every", "2"];
        let plain = json(&[&base[..], &["--json"]].concat());
        assert!(plain.get("prevalidation_digest").is_none(), "only with --prevalidate");
        for threads in ["1", "2", "3"] {
            let v = json(&[&base[..], &["--prevalidate", threads, "--memory-limit", "16777216", "--json"]].concat());
            digests.insert(v["prevalidation_digest"].as_str().unwrap().to_string());
            assert!(v["prevalidation_tx_per_sec"].as_f64().unwrap() > 0.0);
            assert_eq!(v["prevalidate"].as_u64(), threads.parse().ok(), "{backend}: every worker fits");
            for field in ["verdict_digest", "state_digest", "upgrades"] {
                assert_eq!(v[field], plain[field], "{backend} --prevalidate {threads}: {field} changed");
            }
        }
    }
    assert_eq!(digests.len(), 1, "one pre-validation digest for every backend and thread count: {digests:?}");
    usage_error(&["run", "--prevalidate", "0"], "--prevalidate");
    usage_error(&["run", "--prevalidate", "65"], "at most 64");
}

/// `--threads N` validates in order on N workers: the run's digests, and
/// the JSON says how (`threads`, `executions`, `reexecutions`,
/// `conflicts`, `waves`, `hot_percent`).
#[test]
fn in_order_threads_keep_the_digests_and_report_their_work() {
    for backend in ["wasmtime", "wasmer", "wasmi"] {
        let base = ["run", "--backend", backend, "--transactions", "300", "--block-size", "30", "--hot-percent", "50"];
        let plain = json(&[&base[..], &["--json"]].concat());
        assert_eq!((plain["threads"].as_u64(), plain["executions"].as_u64()), (Some(1), Some(0)));
        assert_eq!(plain["hot_percent"].as_u64(), Some(50));
        for threads in ["1", "2", "3"] {
            let v = json(&[&base[..], &["--threads", threads, "--memory-limit", "16777216", "--json"]].concat());
            assert_eq!(v["threads"].as_u64(), threads.parse().ok(), "{backend}");
            for field in ["verdict_digest", "state_digest", "approved", "denied", "transactions"] {
                assert_eq!(v[field], plain[field], "{backend} --threads {threads}: {field}");
            }
            let count = |field: &str| v[field].as_u64().unwrap();
            assert_eq!(count("executions"), 300 + count("reexecutions") + count("taken_over"));
            assert!(v["waves"].as_u64().unwrap() >= 10 && v["conflicts"].as_u64().is_some());
        }
    }
    usage_error(&["run", "--threads", "0"], "--threads");
    usage_error(&["run", "--threads", "65"], "at most 64");
    usage_error(&["run", "--hot-percent", "101"], "--hot-percent");
    usage_error(&["run", "--upgrade-every", "1", "--block-size", "5", "--upgrade-offset", "5"], "below the block size");
}

/// `host.log` under `--threads`: each transaction's lines appear once, for
/// the execution that was committed, in order — never for runs that were
/// discarded as stale.
#[test]
fn logs_of_discarded_runs_are_never_emitted() {
    // Reads the supply of asset 0 (which mints and burns of it write, so
    // runs go stale), logs one line, approves.
    let wat = r#"(module
      (import "host" "state_get" (func $get (param i32 i32 i32 i32) (result i32)))
      (import "host" "log" (func $log (param i32 i32 i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "D\00\00\00\00")
      (data (i32.const 200) "committed run")
      (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "executor_validate") (param i32 i32) (result i32)
        (drop (call $get (i32.const 100) (i32.const 5) (i32.const 300) (i32.const 8)))
        (call $log (i32.const 2) (i32.const 200) (i32.const 13))
        (i32.const 0)))"#;
    let path = std::env::temp_dir().join(format!("peer-cli-logs-{}.wat", std::process::id()));
    std::fs::write(&path, wat).unwrap();
    let executor = path.display().to_string();
    for backend in ["wasmtime", "wasmer", "wasmi"] {
        let out = Command::new(env!("CARGO_BIN_EXE_peer"))
            .args(["run", "--backend", backend, "--executor", &executor, "--transactions", "300", "--json"])
            .args(["--threads", "2", "--memory-limit", "16777216"])
            .env("RUST_LOG", "executor=info")
            // Every line counted: no rate limit.
            .env("PEER_GUEST_LOG_RATE", "1000000")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["threads"].as_u64(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines = stderr.lines().filter(|l| l.contains("committed run")).count();
        assert_eq!(lines, 300, "{backend}: one line per committed transaction ({} executions)", v["executions"]);
    }
    let _ = std::fs::remove_file(&path);
}

/// `memory_cap` bounds the whole run: an executor with a 40 MiB blank
/// state, `--threads 8 --prevalidate 8`, audits and an upgrade every block
/// run as many workers as fit (said so), and the process's peak memory
/// stays under the cap plus a fixed overhead.
#[test]
fn memory_cap_bounds_workers_audits_and_upgrades_together() {
    let dir = std::env::temp_dir().join(format!("peer-cli-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wat = dir.join("big.wat");
    std::fs::write(
        &wat,
        r#"(module
          (memory (export "memory") 640)
          (func (export "executor_init") (memory.fill (i32.const 0) (i32.const 1) (i32.const 41943040)))
          (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "executor_validate") (param i32 i32) (result i32)
            (i32.store (i32.const 4096) (i32.const 7)) (i32.const 0)))"#,
    )
    .unwrap();
    let cap: u64 = 1536 << 20;
    let cfg = dir.join("c.json");
    std::fs::write(&cfg, format!(r#"{{"memory_cap": {cap}, "init_fuel": 1000000000}}"#)).unwrap();
    let (wat, cfg) = (wat.display().to_string(), cfg.display().to_string());
    for backend in ["wasmtime", "wasmer", "wasmi"] {
        let args = ["run", "--backend", backend, "--config", &cfg, "--executor", &wat, "--memory-limit", "50331648"];
        let more = ["--threads", "8", "--prevalidate", "8", "--audit-every", "3", "--upgrade-every", "1"];
        let v = json(&[&args[..], &more, &["--transactions", "120", "--block-size", "20", "--json"]].concat());
        let (threads, prevalidate) = (v["threads"].as_u64().unwrap(), v["prevalidate"].as_u64().unwrap());
        assert!(threads + prevalidate < 16, "{backend}: fewer workers than asked: {v}");
        assert!(v["notes"][0].as_str().unwrap().contains("memory_cap"), "{backend}: {}", v["notes"]);
        assert!(v["upgrades"].as_u64().unwrap() >= 5 && v["audits"].as_u64().unwrap() > 0, "{backend}");
        let peak = v["peak_rss_bytes"].as_u64().unwrap();
        assert!(peak < cap + (256 << 20), "{backend}: peak {peak} bytes with {threads} + {prevalidate} workers");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
