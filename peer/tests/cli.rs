//! The `peer` command line as cli.md fixes it: JSON fields, exit codes and
//! one-line errors.

use serde_json::Value;
use std::process::Command;

mod common;

use common::{json, peer, usage_error};

const FIELDS: &[&str] = &[
    "backend",
    "policy",
    "transactions",
    "approved",
    "denied",
    "rejected",
    "blanks",
    "recycles",
    "verdict_digest",
    "state_digest",
    "elapsed_s",
    "tx_per_sec",
    "peak_rss_bytes",
    "upgrades",
    "state_leaks",
];

#[test]
fn run_json_has_every_field_of_the_contract() {
    let v = json(&["run", "--backend", "wasmi", "--transactions", "500", "--block-size", "50", "--json"]);
    for field in FIELDS {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    assert_eq!(v["backend"], "wasmi");
    assert_eq!(v["policy"], "every-tx:1");
    assert_eq!(v["transactions"], 500);
    let rejected = v["rejected"].as_object().unwrap();
    for kind in
        ["out_of_fuel", "out_of_memory", "stack_overflow", "trap", "host_fault", "bad_verdict", "upgrade_failed"]
    {
        assert_eq!(rejected[kind], 0, "{kind}");
    }
    let approved = v["approved"].as_u64().unwrap();
    let denied = v["denied"].as_u64().unwrap();
    assert_eq!(approved + denied, 500);
    assert!(approved > 250 && denied > 25, "the workload mixes approvals and denials: {approved}/{denied}");
    assert_eq!(v["blanks"], 499);
    assert_eq!(v["verdict_digest"].as_str().unwrap().len(), 64);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn every_policy_gives_the_same_verdicts_with_the_counts_abi_md_predicts() {
    let base = ["run", "--backend", "wasmi", "--transactions", "300", "--block-size", "30", "--json", "--policy"];
    let mut digests = Vec::new();
    for (policy, blanks) in [
        ("fresh", 299),
        ("every-tx:1", 299),
        ("every-tx:7", 42),
        ("every-block:1", 9),
        ("every-block:3", 3),
        ("until-crash", 0),
    ] {
        let mut args = base.to_vec();
        args.push(policy);
        let v = json(&args);
        assert_eq!(v["policy"], policy);
        assert_eq!(v["blanks"], blanks, "{policy}");
        assert_eq!(v["recycles"], 0, "{policy}");
        digests.push((v["verdict_digest"].clone(), v["state_digest"].clone()));
    }
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "the default executor keeps no state between transactions: {digests:?}"
    );
}

#[test]
fn seeds_change_the_workload_and_runs_repeat() {
    let a = json(&["run", "--backend", "wasmi", "--transactions", "200", "--seed", "1", "--json"]);
    let b = json(&["run", "--backend", "wasmi", "--transactions", "200", "--seed", "1", "--json"]);
    let c = json(&["run", "--backend", "wasmi", "--transactions", "200", "--seed", "2", "--json"]);
    assert_eq!(a["verdict_digest"], b["verdict_digest"]);
    assert_eq!(a["state_digest"], b["state_digest"]);
    assert_ne!(a["state_digest"], c["state_digest"]);
}

/// `peer run` of the hostile fixture on wasmi (the fastest to start).
const HOSTILE_ON_WASMI: &[&str] = &["run", "--backend", "wasmi", "--executor", "executors/fixtures/hostile.wat"];

#[test]
fn hostile_executor_is_survived_and_counted() {
    let v = json(&[HOSTILE_ON_WASMI, &["--transactions", "200", "--json"]].concat());
    let rejected: u64 = v["rejected"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert!(rejected > 0);
    // One recycle per rejection, done lazily: the last one only if another
    // transaction followed it.
    let recycles = v["recycles"].as_u64().unwrap();
    assert!(recycles == rejected || recycles + 1 == rejected, "{recycles} recycles for {rejected} rejections");
}

#[test]
fn bad_usage_configs_and_executors_exit_2_with_one_error_line() {
    usage_error(&["run", "--bogus"], "--bogus");
    usage_error(&["run", "--policy", "sometimes"], "sometimes");
    usage_error(&["run", "--policy", "every-tx:0"], "every-tx:0");
    usage_error(&["run", "--backend", "v8"], "v8");
    usage_error(&["run", "--transactions", "-5"], "-5");
    usage_error(&["run", "--transactions", "many"], "--transactions");
    usage_error(&["run", "--block-size", "0"], "--block-size");
    usage_error(&["run", "--config", "/nonexistent/config.json"], "/nonexistent/config.json");
    usage_error(&["run", "--executor", "/nonexistent.wasm"], "/nonexistent.wasm");
    usage_error(&["run", "--executor", "executors/fixtures/init_reads_state.wat"], "state_get");
    let dir = std::env::temp_dir().join(format!("peer-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    usage_error(&["run", "--config", &file("bad.json", r#"{"fuel": "lots"}"#)], "field `fuel`");
    usage_error(&["run", "--config", &file("unknown.json", r#"{"fule": 1}"#)], "unknown field `fule`");
    usage_error(&["run", "--config", &file("policy.json", r#"{"policy": "sometimes"}"#)], "field `policy`");
    // Memory limits are whole wasm pages, at least one.
    usage_error(&["run", "--memory-limit", "1000"], "--memory-limit 1000: must be a whole number of 64 KiB");
    usage_error(&["run", "--memory-limit", "0"], "--memory-limit 0");
    usage_error(&["run", "--config", &file("mem.json", r#"{"memory_limit": 100000}"#)], "field `memory_limit`");
    // Past a ceiling the engines rely on: the flag or field, not the module.
    usage_error(&["run", "--max-stack", "100000000"], "--max-stack 100000000: at most 524288");
    usage_error(&["run", "--memory-limit", "4294967296"], "--memory-limit 4294967296: at most");
    usage_error(&["run", "--config", &file("stack.json", r#"{"max_stack": 100000000}"#)], "field `max_stack`");
    // Output paths are checked before the run.
    usage_error(&["run", "--metrics", "/nonexistent-dir/m.prom"], "--metrics /nonexistent-dir/m.prom");
    usage_error(&["compare", "--chart", "/nonexistent-dir/c.svg"], "--chart /nonexistent-dir/c.svg");
    // Not regular files: refused, never read (a FIFO would block).
    usage_error(&["run", "--executor", "/dev/zero"], "a device");
    usage_error(&["run", "--config", "/dev/zero"], "a device");
    usage_error(&["run", "--executor", &dir.display().to_string()], "a directory");
    let fifo = dir.join("fifo.wasm");
    if std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
        usage_error(&["run", "--executor", &fifo.display().to_string()], "a FIFO");
    }
    usage_error(&["run", "--executor", &file("garbage.wasm", "\u{1}\u{2}garbage")], "not a WebAssembly module");
    usage_error(
        &[
            "run",
            "--executor",
            &file(
                "simd.wat",
                r#"(module (memory (export "memory") 1)
            (func (export "executor_alloc") (param i32) (result i32) (i32.const 0))
            (func (export "executor_validate") (param i32 i32) (result i32) (drop (v128.const i64x2 0 0)) (i32.const 0)))"#,
            ),
        ],
        "SIMD",
    );
    usage_error(
        &[
            "run",
            "--executor",
            &file(
                "noalloc.wat",
                r#"(module (memory (export "memory") 1)
            (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0)))"#,
            ),
        ],
        "executor_alloc",
    );
    // A config's executor path is relative to the config file.
    let cfg = file("exec.json", r#"{"executor": "noalloc.wat"}"#);
    usage_error(&["run", "--config", &cfg], "executor_alloc");
}

#[test]
fn config_file_settings_apply_and_flags_override_them() {
    let dir = std::env::temp_dir().join(format!("peer-cli-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.json");
    std::fs::write(&cfg, r#"{"backend": "wasmi", "policy": "until_crash", "transactions": 120, "block_size": 12}"#)
        .unwrap();
    let cfg = cfg.display().to_string();
    let v = json(&["run", "--config", &cfg, "--json"]);
    assert_eq!(
        (v["policy"].as_str(), v["transactions"].as_u64(), v["blanks"].as_u64()),
        (Some("until-crash"), Some(120), Some(0))
    );
    let v = json(&["run", "--config", &cfg, "--policy", "every-block:1", "--json"]);
    assert_eq!((v["policy"].as_str(), v["blanks"].as_u64()), (Some("every-block:1"), Some(9)));
}

#[test]
fn compare_runs_every_backend_under_four_policies() {
    let v = json(&["compare", "--transactions", "200", "--repeat", "2", "--json"]);
    let rows = v.as_array().unwrap();
    let policies: Vec<&str> = rows.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    for p in ["fresh", "every-tx:1", "every-block:1", "until-crash"] {
        assert!(policies.contains(&p), "{p}");
    }
    assert_eq!(rows.len(), 4 * 3, "every backend under every policy");
    for r in rows {
        for field in FIELDS {
            assert!(r.get(field).is_some(), "missing {field}");
        }
        assert_eq!(r["tx_per_sec_runs"].as_array().unwrap().len(), 2, "two measured repetitions");
        assert_eq!(r["digests_agree"], true, "{r}");
        assert_eq!(r["transactions"], 200, "the warm-up is not reported");
        let best = r["vs_best_backend"].as_f64().unwrap();
        assert!(best > 0.0 && best <= 1.0, "{r}");
        if r["policy"] == "fresh" {
            assert_eq!(r["vs_fresh"], 1.0);
        }
    }
}

/// The table's plain-engine reference rows: `(backend, reference, tx/s)`.
fn reference_rows(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("plain-engine references"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let (backend, rest) = l.split_once(' ').unwrap();
            let rest = rest.trim_start();
            let reference = ["plain warm+fuel", "plain fresh+fuel", "plain warm"]
                .into_iter()
                .find(|r| rest.starts_with(r))
                .unwrap_or_else(|| panic!("a reference row: {l}"));
            let rate = rest[reference.len()..].split_whitespace().next().unwrap().to_string();
            (backend.to_string(), reference.to_string(), rate)
        })
        .collect()
}

#[test]
fn compare_shows_plain_references_and_never_runs_an_unbounded_one() {
    let table = |executor: &str| {
        let out =
            peer(&["compare", "--executor", executor, "--transactions", "100", "--repeat", "1", "--fuel", "100000"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        reference_rows(&String::from_utf8(out.stdout).unwrap())
    };
    let rows = table("executors/default.wasm");
    assert_eq!(rows.len(), 3 * 3, "three references per backend: {rows:?}");
    for (backend, reference, rate) in &rows {
        assert!(rate.parse::<f64>().is_ok_and(|r| r > 0.0), "{backend} {reference}: {rate}");
    }
    // The metered warm reference runs out of fuel on every tenth
    // transaction: the unmetered one would never end, so it is not run.
    let rows = table("executors/fixtures/loops_sometimes.wat");
    assert_eq!(rows.len(), 3 * 3, "{rows:?}");
    for (backend, reference, rate) in &rows {
        if reference == "plain warm" {
            assert_eq!(rate, "—", "{backend}");
        } else {
            assert!(rate.parse::<f64>().is_ok_and(|r| r > 0.0), "{backend} {reference}: {rate}");
        }
    }
}

#[test]
fn upgrades_load_the_other_executor_and_audits_count() {
    for backend in ["wasmi", "wasmtime", "wasmer"] {
        let v = json(&[
            "run",
            "--backend",
            backend,
            "--policy",
            "until-crash",
            "--transactions",
            "600",
            "--block-size",
            "50",
            "--upgrade-every",
            "2",
            "--audit-every",
            "10",
            "--json",
        ]);
        // Blocks 2, 4, …, 10 start with an upgrade: five, all installed.
        assert_eq!(v["upgrades"], 5, "{backend}: {v}");
        assert_eq!(v["rejected"]["upgrade_failed"], 0, "{backend}: {v}");
        assert_eq!(v["recycles_by_cause"]["upgrade"], 5, "{backend}: {v}");
        assert_eq!(v["audits"], 60, "{backend}: {v}");
        assert_eq!(v["state_leaks"], 0, "the default executor keeps no state between transactions: {v}");
    }
    // A WAT executor gets a variant with other bytes too.
    let v = json(&[
        "run",
        "--backend",
        "wasmi",
        "--executor",
        "executors/fixtures/stateful.wat",
        "--policy",
        "until-crash",
        "--transactions",
        "300",
        "--block-size",
        "50",
        "--upgrade-every",
        "1",
        "--audit-every",
        "1",
        "--json",
    ]);
    assert!(v["upgrades"].as_u64().unwrap() > 0, "{v}");
    assert!(v["state_leaks"].as_u64().unwrap() > 0, "the stateful executor leaks under until-crash: {v}");
}

/// A private, empty directory for one test's cache.
fn cache_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("peer-cli-cache-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A restart with a cold cache, then with a warm one, then without: the
/// same verdict and state digests on every backend; the serialising
/// backends report `miss` then `hit` (and load faster), wasmi `off`. A
/// restart with the blank snapshot in the cache runs no `executor_init` at
/// all (every instance, upgrades' included, `restored`), and judges the
/// same as a warm start without it and as an uncached one.
#[test]
fn restarts_with_a_cold_or_warm_cache_agree() {
    let dir = cache_dir("restarts");
    let dir_arg = dir.to_str().unwrap();
    for backend in ["wasmtime", "wasmer", "wasmi"] {
        let args = |extra: &[&'static str]| {
            let mut a = vec!["run", "--backend", backend, "--transactions", "300", "--upgrade-every", "1", "--json"];
            a.extend_from_slice(extra);
            a
        };
        let cached = |extra: &[&'static str]| {
            let mut a = args(extra);
            a.extend(["--cache-dir", dir_arg]);
            a
        };
        let cold = json(&cached(&[]));
        let warm = json(&cached(&["--no-snapshot"]));
        let restored = json(&cached(&[]));
        let uncached = json(&args(&["--no-cache", "--no-snapshot"]));
        let (first, second) = if backend == "wasmi" { ("off", "off") } else { ("miss", "hit") };
        assert_eq!(cold["cache"], first, "{backend}: {cold}");
        // Init ran for each executor once; the upgrade back found its snapshot.
        assert_eq!(cold["snapshot"], "restored", "{backend}: {cold}");
        assert_eq!(cold["restored_builds"], 1, "{backend}: {cold}");
        assert_eq!((&warm["cache"], &warm["snapshot"]), (&second.into(), &"off".into()), "{backend}: {warm}");
        assert_eq!(restored["cache"], second, "{backend}: {restored}");
        assert_eq!(restored["snapshot"], "restored", "{backend}: {restored}");
        assert_eq!(restored["restored_builds"], restored["instances_built"], "{backend}: no init ran: {restored}");
        assert_eq!((&uncached["cache"], &uncached["snapshot"]), (&"off".into(), &"off".into()));
        assert_eq!((warm["restored_builds"].as_u64(), uncached["restored_builds"].as_u64()), (Some(0), Some(0)));
        assert!(warm["compile_s"].as_f64().unwrap() > 0.0);
        for field in ["verdict_digest", "state_digest", "approved", "upgrades"] {
            assert_eq!(cold[field], warm[field], "{backend} {field}: cold vs warm");
            assert_eq!(cold[field], restored[field], "{backend} {field}: cold vs restored snapshot");
            assert_eq!(cold[field], uncached[field], "{backend} {field}: cold vs uncached");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two peers started at once on one cache directory both run correctly,
/// and a third finds the entry.
#[test]
fn two_processes_share_a_cache_directory() {
    let dir = cache_dir("two-processes");
    let args =
        ["run", "--backend", "wasmtime", "--transactions", "200", "--json", "--cache-dir", dir.to_str().unwrap()];
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_peer"))
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("peer starts")
    };
    let (a, b) = (spawn(), spawn());
    let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let reports: Vec<Value> = outputs
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            serde_json::from_slice(&o.stdout).unwrap()
        })
        .collect();
    assert_eq!(reports[0]["verdict_digest"], reports[1]["verdict_digest"]);
    assert_eq!(json(&args)["cache"], "hit");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cache directory others can write is refused (exit 2, one line): its
/// entries would become native code in the peer.
#[test]
fn a_world_writable_cache_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = cache_dir("world-writable");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    usage_error(&["run", "--transactions", "10", "--cache-dir", dir.to_str().unwrap()], "others can write it");
    let _ = std::fs::remove_dir_all(&dir);
}
