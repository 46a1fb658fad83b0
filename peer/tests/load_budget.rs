//! The load budget, as a benchmark with generous bounds: the worst case
//! of every load-cost limit at its default value
//! (`conformance::load_budget`) loads on every compiled-in backend, and the
//! time and peak resident memory of each load are printed. The budget
//! itself (≤ 5 s and ≤ 256 MiB on these machines) is measured by `cargo
//! run --release -p peer --features fuzz --bin bench-load`, one process per
//! load; here the bounds are four times the memory and twelve times the time, so
//! that only a limit gone wrong — not a busy machine — fails the test.
//! Alone in its binary: it reads the process's peak memory.

use executor_core::instrument::Tracking;
use executor_core::{Driver, DriverConfig, Limits};
use peer::backends;
use std::time::{Duration, Instant};

#[test]
fn every_worst_case_loads_within_generous_bounds() {
    let limits = Limits::default();
    let cases = conformance::load_budget::worst_cases(&limits.module);
    assert_eq!(cases.len(), 15);
    for case in &cases {
        for backend in backends::compiled_in() {
            let host = backends::host(backend, limits.clone()).unwrap();
            peer::rss::reset_peak();
            let before = peer::rss::current_rss_bytes();
            let started = Instant::now();
            let driver = Driver::new(host, &case.wasm, DriverConfig::default());
            let took = started.elapsed();
            let peak = peer::rss::peak_rss_bytes().saturating_sub(before);
            eprintln!(
                "{:<32} {:>9} {:<9} {:>7.2} s {:>7.1} MiB",
                case.name,
                case.value,
                backend.to_string(),
                took.as_secs_f64(),
                peak as f64 / f64::from(1 << 20)
            );
            let driver = driver.unwrap_or_else(|e| panic!("{} on {backend}: {e}", case.name));
            // The barrier's budget case is marked throughout; the store
            // cases past it load without marks (see `MAX_TRACKED_WRITES`).
            let tracking = driver.stats().tracking;
            match case.name {
                "writes at the barrier's budget" => assert_eq!(tracking, Tracking::Barrier, "{}", case.name),
                "instructions in every function" | "instructions in big functions" => {
                    assert_eq!(tracking, Tracking::Off, "{}", case.name)
                }
                _ => {}
            }
            assert!(took < Duration::from_secs(60), "{} on {backend}: {took:?}", case.name);
            assert!(peak < 1 << 30, "{} on {backend}: {peak} bytes", case.name);
        }
    }
}
