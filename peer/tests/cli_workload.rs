//! Workloads as files: `peer record` writes the synthetic workload, and
//! `peer run --workload` / `peer compare --workload` replay it to the same
//! digests on every backend; broken files are one `error:` line naming the
//! line, block and transaction, never a panic.

mod common;

use common::{json, peer, usage_error};
use std::path::PathBuf;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("peer-workload-{}-{name}", std::process::id()))
}

const SHAPE: &[&str] = &["--transactions", "1200", "--block-size", "50", "--upgrade-every", "4", "--hot-percent", "30"];

#[test]
fn a_recorded_workload_replays_to_the_recorded_digests_on_every_backend() {
    let file = temp("rec.jsonl");
    let path = file.to_str().unwrap();
    let recorded = json(&[&["record", "--out", path, "--backend", "wasmi", "--json"], SHAPE].concat());
    assert_eq!(recorded["transactions"].as_u64(), Some(1200));
    assert!(recorded["upgrades"].as_u64().unwrap() > 0, "upgrades are recorded as transactions");
    let synthetic = json(&[&["run", "--json"], SHAPE].concat());
    for field in ["verdict_digest", "state_digest"] {
        assert_eq!(recorded[field], synthetic[field], "recording does not change the run: {field}");
    }
    for backend in ["wasmtime", "wasmer", "wasmi"] {
        for extra in [&[][..], &["--threads", "2", "--memory-limit", "16MiB"]] {
            let v = json(&[&["run", "--workload", path, "--backend", backend, "--json"], extra].concat());
            assert_eq!(v["workload"].as_str(), Some(path));
            for field in ["transactions", "verdict_digest", "state_digest", "upgrades", "approved", "denied"] {
                assert_eq!(v[field], synthetic[field], "{backend} {extra:?}: {field}");
            }
        }
    }
    // The first N: the synthetic run of N, when N ends a block (the generator draws a block whole).
    let prefix = json(&["run", "--workload", path, "--transactions", "150", "--json"]);
    let short = json(
        &[&["run", "--json"], SHAPE].concat().iter().map(|a| if *a == "1200" { "150" } else { a }).collect::<Vec<_>>(),
    );
    assert_eq!((prefix["transactions"].as_u64(), &prefix["verdict_digest"]), (Some(150), &short["verdict_digest"]));
    assert_eq!(prefix["state_digest"], short["state_digest"]);
    // compare replays it on every backend and policy, digests agreeing.
    let rows =
        json(&["compare", "--workload", path, "--transactions", "300", "--repeat", "1", "--warmup", "0", "--json"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r["digests_agree"] == true && r["transactions"] == 300), "{rows:?}");
    for flag in [&["--seed", "1"][..], &["--block-size", "7"], &["--upgrade-every", "2"], &["--hot-percent", "5"]] {
        usage_error(
            &[&["run", "--workload", path], flag].concat(),
            &format!("{} shapes the synthetic workload", flag[0]),
        );
    }
    usage_error(&["record", "--out", path, "--threads", "2"], "--threads: not with `peer record`");
    usage_error(&["record", "--out", "/nonexistent-dir/w.jsonl"], "--out /nonexistent-dir/w.jsonl");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn broken_workload_files_are_one_error_line_naming_the_place() {
    let file = temp("good.jsonl");
    let out = peer(&["record", "--out", file.to_str().unwrap(), "--transactions", "120", "--block-size", "40"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let good = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let first_tx = lines.iter().position(|l| l.starts_with("{\"tx\"")).unwrap();
    let keep = |n: usize| lines[..n].iter().map(|l| format!("{l}\n")).collect::<String>();
    let cases: Vec<(&str, String, String)> = vec![
        ("empty", String::new(), "empty".into()),
        ("garbage", "\u{0}\u{1}garbage\n".into(), "line 1: not a header".into()),
        ("wrong-version", good.replacen("\"version\":1", "\"version\":2", 1), "version 2".into()),
        ("truncated", keep(first_tx + 45), format!("block 1, transaction 4: line {}: truncated", first_tx + 45)),
        ("cut-mid-line", good[..good.len() / 2].to_string(), "truncated".into()),
        ("bad-hex", good.replacen("{\"tx\":\"", "{\"tx\":\"zz", 1), format!("line {}: not a record", first_tx + 1)),
        (
            "long-key",
            good.replacen("\"writes\":[", &format!("\"writes\":[[\"{}\",null],", "00".repeat(2000)), 1),
            "a key of 2000 bytes".into(),
        ),
    ];
    for (name, text, needle) in cases {
        let path = temp(&format!("{name}.jsonl"));
        std::fs::write(&path, text).unwrap();
        usage_error(&["run", "--workload", path.to_str().unwrap()], &needle);
        let _ = std::fs::remove_file(&path);
    }
    usage_error(&["run", "--workload", "/dev/zero"], "regular file");
    let _ = std::fs::remove_file(&file);
}
