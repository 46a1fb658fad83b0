//! The load budget: the worst case of each module limit
//! (`conformance::load_budget`) loaded on every compiled-in backend, each
//! load in a process of its own — time (checks, instrumentation, compile,
//! first instance) and peak resident memory above the process's before
//! the load.
//!
//! ```sh
//! cargo run --release -p peer --bin bench-load [-- --json]
//! ```
//!
//! Budget (issue 17): every case loads in ≤ 5 s and ≤ 256 MiB on every
//! backend.

use executor_core::{Driver, DriverConfig, Limits};
use peer::backends::{self, BackendKind};
use serde::{Deserialize, Serialize};
use std::process::Command;
use std::time::{Duration, Instant};

/// The load budget, measured.
#[derive(clap::Parser)]
struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Kill a load after this many seconds (reported as over budget).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Only cases whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Internal: load case NAME on BACKEND in this process and print the
    /// measurement.
    #[arg(long, num_args = 2, value_names = ["NAME", "BACKEND"], hide = true)]
    child: Option<Vec<String>>,
}

/// One load.
#[derive(Serialize, Deserialize, Debug)]
struct Measured {
    /// The case.
    limit: String,
    value: u64,
    backend: String,
    /// Module size, bytes.
    bytes: usize,
    /// `Driver::new`, seconds.
    load_s: f64,
    /// Peak resident memory above the process's before the load, bytes.
    peak_bytes: u64,
    /// The load error, if the module did not load.
    error: Option<String>,
}

fn child(name: &str, backend: &str) {
    let backend: BackendKind = backend.parse().expect("a backend");
    let limits = Limits::default();
    let case =
        conformance::load_budget::worst_cases(&limits.module).into_iter().find(|c| c.name == name).expect("a case");
    let host = backends::host(backend, limits).expect("compiled in");
    peer::rss::reset_peak();
    let before = peer::rss::current_rss_bytes();
    let started = Instant::now();
    let loaded = Driver::new(host, &case.wasm, DriverConfig::default());
    let load_s = started.elapsed().as_secs_f64();
    let peak_bytes = peer::rss::peak_rss_bytes().saturating_sub(before);
    let m = Measured {
        limit: case.name.into(),
        value: case.value,
        backend: backend.to_string(),
        bytes: case.wasm.len(),
        load_s,
        peak_bytes,
        error: loaded.err().map(|e| e.to_string()),
    };
    println!("{}", serde_json::to_string(&m).expect("serialises"));
}

fn main() {
    let args: Args = clap::Parser::parse();
    if let Some(c) = &args.child {
        return child(&c[0], &c[1]);
    }
    let names: Vec<&'static str> = conformance::load_budget::worst_cases(&Limits::default().module)
        .iter()
        .map(|c| c.name)
        .filter(|l| args.only.as_deref().is_none_or(|o| l.contains(o)))
        .collect();
    let exe = std::env::current_exe().expect("own path");
    let mut rows = Vec::new();
    for name in names {
        for backend in backends::compiled_in() {
            let mut child = Command::new(&exe)
                .args(["--child", name, &backend.to_string()])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawns");
            let started = Instant::now();
            let status = loop {
                if let Some(status) = child.try_wait().expect("waits") {
                    break Some(status);
                }
                if started.elapsed() > Duration::from_secs(args.timeout) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let out = child.wait_with_output().map(|o| o.stdout).unwrap_or_default();
            let measured = match (status, serde_json::from_slice::<Measured>(&out)) {
                (Some(s), Ok(m)) if s.success() => m,
                (status, _) => Measured {
                    limit: name.into(),
                    value: 0,
                    backend: backend.to_string(),
                    bytes: 0,
                    load_s: started.elapsed().as_secs_f64(),
                    peak_bytes: 0,
                    error: Some(match status {
                        None => format!("killed after {} s", args.timeout),
                        Some(s) => format!("the load process failed: {s}"),
                    }),
                },
            };
            if !args.json {
                eprintln!("{measured:?}");
            }
            rows.push(measured);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&rows).expect("serialises"));
        return;
    }
    println!(
        "{:<28} {:>11} {:<9} {:>10} {:>9} {:>9}  error",
        "limit", "value", "backend", "bytes", "load s", "peak MiB"
    );
    for m in rows {
        println!(
            "{:<28} {:>11} {:<9} {:>10} {:>9.2} {:>9.1}  {}",
            m.limit,
            m.value,
            m.backend,
            m.bytes,
            m.load_s,
            m.peak_bytes as f64 / (1 << 20) as f64,
            m.error.unwrap_or_default()
        );
    }
}
