//! The operator's conventions (issue: an operator-grade command line):
//! metrics in both text formats, logs (format, colour, guest lines),
//! usage errors with possible values and tips, `peer compare`'s exports,
//! closed pipes, sizes, `$PEER_CONFIG`, `--version`.

mod common;

use common::{json, peer, usage_error};
use serde_json::Value;
use std::process::Command;

const HOSTILE_ON_WASMI: &[&str] = &["run", "--backend", "wasmi", "--executor", "executors/fixtures/hostile.wat"];

/// A metric sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses Prometheus text exposition format (0.0.4): `# HELP`/`# TYPE`
/// lines, then samples `name{label="value",...} number`. Returns the
/// samples as (name, labels, value); panics on anything malformed.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let is_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
    };
    let mut typed = std::collections::BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name, tail) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(is_name(name), "bad metric name in {line:?}");
            match keyword {
                "HELP" => assert!(!tail.is_empty(), "empty help: {line:?}"),
                "TYPE" => {
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail), "{line:?}");
                    assert!(typed.insert(name.to_string(), tail.to_string()).is_none(), "TYPE twice: {line:?}");
                }
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line:?}"))),
            None => (series, ""),
        };
        assert!(is_name(name), "bad name: {line:?}");
        // A histogram's samples are its family's name plus a suffix.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(name);
        assert!(typed.contains_key(family), "sample before its TYPE: {line:?}");
        if name.ends_with("_bucket") && family != name {
            assert!(labels.contains("le=\""), "a bucket without le: {line:?}");
        }
        if typed[family] == "counter" {
            assert!(name.ends_with("_total") && value >= 0.0, "{line:?}");
        }
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("bad label {l:?} in {line:?}"));
                assert!(is_name(k));
                let v =
                    v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or_else(|| panic!("unquoted {l:?}"));
                (k.to_string(), v.to_string())
            })
            .collect();
        samples.push((name.to_string(), labels, value));
    }
    samples
}

/// `--metrics FILE` writes Prometheus text that parses and agrees with the
/// run's JSON.
#[test]
fn metrics_file_is_prometheus_text_matching_the_run() {
    let path = std::env::temp_dir().join(format!("peer-metrics-{}.prom", std::process::id()));
    let p = path.to_str().unwrap();
    let v = json(&[HOSTILE_ON_WASMI, &["--transactions", "300", "--metrics", p, "--json"]].concat());
    let text = std::fs::read_to_string(&path).unwrap();
    openmetrics_parser::prometheus::parse_prometheus(&text).expect("valid Prometheus 0.0.4 text");
    let samples = parse_prometheus(&text);
    let get = |name: &str, extra: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, labels, _)| {
                n == name
                    && labels.iter().any(|(k, v)| k == "backend" && v == "wasmi")
                    && extra.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .unwrap_or_else(|| panic!("no sample {name} {extra:?}"))
            .2
    };
    assert_eq!(get("peer_executor_transactions_total", &[]), v["transactions"].as_f64().unwrap());
    assert_eq!(
        get("peer_executor_verdicts_total", &[("verdict", "approved"), ("kind", "none")]),
        v["approved"].as_f64().unwrap()
    );
    let verdict_labels: std::collections::BTreeSet<Vec<&str>> = samples
        .iter()
        .filter(|(n, _, _)| n == "peer_executor_verdicts_total")
        .map(|(_, labels, _)| labels.iter().map(|(k, _)| k.as_str()).collect())
        .collect();
    assert_eq!(verdict_labels.len(), 1, "one label set for every verdict sample: {verdict_labels:?}");
    assert_eq!(get("peer_executor_build_info", &[("abi", &abi::ABI_VERSION.to_string())]), 1.0);
    assert_eq!(get("peer_executor_blanks_total", &[]), v["blanks"].as_f64().unwrap());
    for (kind, n) in v["rejected"].as_object().unwrap() {
        assert_eq!(
            get("peer_executor_verdicts_total", &[("verdict", "rejected"), ("kind", kind)]),
            n.as_f64().unwrap()
        );
    }
    let recycles: f64 = samples.iter().filter(|(n, _, _)| n == "peer_executor_recycles_total").map(|s| s.2).sum();
    assert_eq!(recycles, v["recycles"].as_f64().unwrap());
    assert_eq!(get("peer_executor_call_duration_seconds_count", &[]), v["transactions"].as_f64().unwrap());
    assert_eq!(
        get("peer_executor_call_duration_seconds_bucket", &[("le", "+Inf")]),
        v["transactions"].as_f64().unwrap()
    );
    assert_eq!(get("peer_executor_build_duration_seconds_count", &[]), v["instances_built"].as_f64().unwrap());
    assert!(get("peer_executor_blank_duration_seconds_sum", &[]) > 0.0);
    let _ = std::fs::remove_file(&path);
}

/// Operator conventions: a closed pipe ends the program quietly; sizes
/// take IEC units; counts say they must be positive; `$PEER_CONFIG` names
/// the config file, whose path the JSON reports (`null` without one).
#[test]
fn operator_conventions() {
    for args in [&["run", "--help"][..], &["run", "--transactions", "200000"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_peer"))
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panic") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}");
    }
    let v = json(&["run", "--memory-limit", "2MiB", "--max-stack", "64KiB", "--transactions", "20", "--json"]);
    assert_eq!(v["transactions"].as_u64(), Some(20));
    assert_eq!(v["config"].as_str(), Some("configs/peer/config.json"), "the default file, found");
    usage_error(&["run", "--memory-limit", "64MB"], "KiB, MiB or GiB");
    usage_error(&["run", "--threads", "0"], "must be at least 1");
    usage_error(&["run", "--block-size", "0"], "must be at least 1");
    let dir = std::env::temp_dir().join(format!("peer-cli-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("env.json");
    std::fs::write(&cfg, r#"{"$schema": "x", "policy": "until-crash", "transactions": 30}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["run", "--json"])
        .env("PEER_CONFIG", &cfg)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["policy"].as_str(), v["transactions"].as_u64()), (Some("until-crash"), Some(30)));
    assert_eq!(v["config"].as_str(), Some(cfg.display().to_string().as_str()));
    let out = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["run", "--json", "--transactions", "5"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["config"].is_null(), "no config file found: {}", v["config"]);
    let _ = std::fs::remove_dir_all(&dir);
    // `peer compare` filters backends and policies, and reports the spread.
    let out = peer(&[
        "compare",
        "--backend",
        "wasmi",
        "--policy",
        "until-crash",
        "--transactions",
        "50",
        "--repeat",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["backend"].as_str(), rows[0]["policy"].as_str()), (Some("wasmi"), Some("until-crash")));
    assert!(rows[0]["spread"].as_f64().unwrap() >= 0.0);
    // `peer` is `peer run`, flags included.
    let v = json(&["--json", "--transactions", "15", "--backend", "wasmi"]);
    assert_eq!((v["transactions"].as_u64(), v["backend"].as_str()), (Some(15), Some("wasmi")));
    // `--version`: every engine compiled in with its version, the ABI, the commit.
    let out = peer(&["--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for engine in ["wasmtime 48.", "wasmer 7.4.", "wasmi 2."] {
        assert!(text.contains(engine), "{text}");
    }
    assert!(text.contains(&format!("executor ABI: {}", abi::ABI_VERSION)), "{text}");
    assert!(text.contains("commit: "), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["run", "--transactions", "1"])
        .env("RUST_LOG", "executor=bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "an invalid RUST_LOG is an error");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: RUST_LOG"));
    // PEER_LOG_FORMAT=json: every log line is a JSON object.
    let out = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["run", "--transactions", "5", "--json"])
        .env("RUST_LOG", "info")
        .env("PEER_LOG_FORMAT", "json")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap();
    assert!(out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.lines().count() > 0);
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_peer")).args(["run"]).env("PEER_LOG_FORMAT", "xml").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let help = String::from_utf8_lossy(&peer(&["run", "--help"]).stdout).to_string();
    for heading in ["Backend and policy:", "Workload:", "Limits:", "Validation:", "Cache:", "Output and config:"] {
        assert!(help.contains(heading), "{heading} in {help}");
    }
}

/// `--metrics-format openmetrics` writes OpenMetrics 1.0 that parses, with
/// every label combination present from the start: each recycle cause and
/// rejection kind at zero in a run without any.
#[test]
fn metrics_parse_as_openmetrics_with_zeros_from_the_start() {
    let path = std::env::temp_dir().join(format!("peer-metrics-{}.om", std::process::id()));
    let p = path.to_str().unwrap();
    let v = json(&["run", "--transactions", "50", "--metrics", p, "--metrics-format", "openmetrics", "--json"]);
    assert_eq!(v["recycles"].as_u64(), Some(0));
    let text = std::fs::read_to_string(&path).unwrap();
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&text).expect("valid OpenMetrics");
    assert!(text.ends_with("# EOF\n"));
    let family = |name: &str| {
        exposition.families.get(name).unwrap_or_else(|| panic!("no family {name} in {:?}", exposition.families.keys()))
    };
    assert_eq!(family("peer_executor_recycles").family_type, openmetrics_parser::OpenMetricsType::Counter);
    let zeros = |name: &str, label: &str| {
        let prefix = format!("{name}{{");
        text.lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(&format!(",{label}=")) && l.ends_with(" 0"))
            .count()
    };
    assert!(zeros("peer_executor_recycles_total", "cause") >= 5, "every cause at zero");
    assert!(zeros("peer_executor_verdicts_total", "kind") >= 5, "every rejection kind at zero");
    family("peer_executor_build_info");
    family("peer_executor_call_duration_seconds");
    let _ = std::fs::remove_file(&path);
    usage_error(&["run", "--metrics-format", "xml"], "[possible values: prometheus, openmetrics]");
}

/// Usage errors stay one line: possible values and clap's tips folded in.
#[test]
fn usage_errors_list_possible_values_and_keep_tips() {
    usage_error(&["run", "--policy", "sometimes"], "[possible values: every-tx:N, every-block:N, until-crash, fresh]");
    usage_error(&["run", "--blank", "maybe"], "[possible values: auto, restore, rebuild]");
    usage_error(&["run", "--backend", "v8"], "[possible values: wasmtime, wasmer, wasmi]");
    usage_error(&["compare", "--policy", "every-tx:0"], "possible values");
    usage_error(&["run", "--thread", "2"], "tip: a similar argument exists: '--threads'");
    usage_error(&["run", "--log-format", "xml"], "[possible values: text, json]");
    let help = String::from_utf8_lossy(&peer(&["run", "--help"]).stdout).to_string();
    for value in ["every-tx:N", "every-block:N", "until-crash", "[possible values: auto, restore, rebuild]"] {
        assert!(help.contains(value), "{value} in --help");
    }
}

/// A guest's `host.log` lines: never `ERROR` (its level 0 is a `WARN`
/// with `guest_level=error`), each with the executor's hash and the
/// transaction's position, rate-limited with the drops counted; and with
/// `--log-format json`, one JSON object per line with those fields.
#[test]
fn guest_log_lines_are_attributed_demoted_and_rate_limited() {
    let wat = r#"(module
      (import "host" "log" (func $log (param i32 i32 i32)))
      (memory (export "memory") 1)
      (data (i32.const 200) "guest says error")
      (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "executor_validate") (param i32 i32) (result i32)
        (call $log (i32.const 0) (i32.const 200) (i32.const 16))
        (i32.const 0)))"#;
    let path = std::env::temp_dir().join(format!("peer-guest-log-{}.wat", std::process::id()));
    std::fs::write(&path, wat).unwrap();
    let metrics = path.with_extension("prom");
    let run = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_peer"))
            .args(["run", "--executor", path.to_str().unwrap(), "--transactions", "3000", "--json"])
            .args(["--log-format", format, "--metrics", metrics.to_str().unwrap()])
            .env("PEER_GUEST_LOG_RATE", "5")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (v, String::from_utf8(out.stderr).unwrap())
    };
    let (v, stderr) = run("text");
    let hash = &v["executor_hash"].as_str().unwrap()[..12];
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("guest says error")).collect();
    assert!(!lines.is_empty() && !stderr.contains("ERROR"), "{stderr}");
    for line in &lines {
        assert!(line.contains("WARN") && line.contains(&format!("executor={hash}")), "{line}");
        assert!(line.contains(" tx=") && line.contains("guest_level=error"), "{line}");
    }
    // 5 lines a second and a burst of 5: far fewer than 3,000 however
    // slow the machine (it would take 10 minutes to admit them all).
    assert!(lines.len() < 1500, "rate-limited: {} lines", lines.len());
    assert!(stderr.contains("guest log lines dropped by the rate limit"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no colour codes in a file");
    let dropped = std::fs::read_to_string(&metrics).unwrap();
    let dropped = dropped.lines().find(|l| l.starts_with("peer_executor_guest_log_lines_dropped_total")).unwrap();
    assert!(dropped.split(' ').next_back().unwrap().parse::<f64>().unwrap() > 0.0, "{dropped}");
    let (_, stderr) = run("json");
    let mut seen = 0;
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["fields"]["message"] == "guest says error" {
            assert_eq!((v["level"].as_str(), v["fields"]["executor"].as_str()), (Some("WARN"), Some(hash)));
            assert!(v["fields"]["tx"].is_u64(), "{line}");
            seen += 1;
        }
    }
    assert!(seen > 0, "{stderr}");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&metrics);
}

/// `--profile` and the JSON give the calls' and blanks' quantiles.
#[test]
fn profile_has_quantiles_of_calls_and_blanks() {
    let v = json(&["run", "--transactions", "300", "--profile", "--json"]);
    let p = &v["profile"];
    for (p50, p99) in [("call_p50_us", "call_p99_us"), ("blank_p50_us", "blank_p99_us")] {
        let (a, b) = (p[p50].as_f64().unwrap(), p[p99].as_f64().unwrap());
        assert!(a > 0.0 && a <= b, "{p50} {a} ≤ {p99} {b}");
    }
    let out = peer(&["run", "--transactions", "300", "--profile"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("p50") && text.contains("p99"), "{text}");
}

/// `peer compare` exports: Markdown tables and CSV (one record per
/// configuration and reference), a chart that parses as XML even for an
/// executor named with XML's metacharacters, filters, `--warmup 0`; every
/// output path checked before the run.
#[test]
fn compare_exports_markdown_csv_and_a_well_formed_chart() {
    let dir = std::env::temp_dir().join(format!("peer-compare-exports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let executor = dir.join("a&b<c>.wat");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../executors/bench/empty.wat"), &executor).unwrap();
    let (md, csv, svg) = (dir.join("c.md"), dir.join("c.csv"), dir.join("c.svg"));
    let out = peer(&[
        "compare",
        "--executor",
        executor.to_str().unwrap(),
        "--backend",
        "wasmi",
        "--policy",
        "every-tx:1",
        "--policy",
        "until-crash",
        "--transactions",
        "100",
        "--repeat",
        "2",
        "--warmup",
        "0",
        "--export-markdown",
        md.to_str().unwrap(),
        "--export-csv",
        csv.to_str().unwrap(),
        "--chart",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("no warm-up") && stdout.contains("min") && stdout.contains("max"), "{stdout}");
    let md = std::fs::read_to_string(&md).unwrap();
    assert_eq!(md.matches("| wasmi | every-tx:1 |").count() + md.matches("| wasmi | until-crash |").count(), 2, "{md}");
    assert!(md.contains("|---|---|---:"), "{md}");
    let csv = std::fs::read_to_string(&csv).unwrap();
    let records: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert!(records.iter().all(|r| r.len() == records[0].len()), "{csv}");
    let kinds: Vec<&str> = records[1..].iter().map(|r| r[0]).collect();
    assert_eq!(kinds, ["driver", "driver", "reference", "reference", "reference"], "{csv}");
    let tx_per_sec: f64 = records[1][5].parse().unwrap();
    let (min, max): (f64, f64) = (records[1][6].parse().unwrap(), records[1][7].parse().unwrap());
    assert!(min <= tx_per_sec && tx_per_sec <= max, "{csv}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{e}: {svg}"));
    let title = doc.descendants().find(|n| n.has_tag_name("text")).and_then(|n| n.text()).unwrap();
    assert!(title.contains("a&b<c>.wat"), "the title, unescaped by the parser: {title}");
    let dots = doc.descendants().filter(|n| n.has_tag_name("circle")).count();
    assert!(dots >= 2 + 3, "a dot per configuration and reference: {dots}");
    for flag in ["--export-markdown", "--export-csv", "--chart"] {
        usage_error(&["compare", flag, "/nonexistent-dir/x"], &format!("{flag} /nonexistent-dir/x"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
