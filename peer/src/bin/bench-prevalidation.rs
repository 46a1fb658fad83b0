//! Parallel pre-validation: throughput with 2 worker threads ÷ with 1, on
//! the realistic heavy executor (`executors/bench/sigcheck.wasm`), every
//! compiled-in backend, interleaved rounds in one process, medians.
//!
//! ```sh
//! cargo run --release -p peer --bin bench-prevalidation [-- --transactions N --rounds R --json]
//! ```
//!
//! Target (issue 11): ≥ 1.6 on a 2-core machine. The digests of the two
//! thread counts must agree; the bench fails loudly if they do not.

use executor_core::PersistencePolicy;
use peer::backends;
use peer::bench::median;
use peer::run::{RunSettings, run};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;

/// Pre-validation scaling: 2 threads ÷ 1, interleaved rounds, medians.
#[derive(clap::Parser)]
struct Args {
    #[command(flatten)]
    rounds: peer::bench::Rounds,
}

fn main() {
    let Args { rounds: peer::bench::Rounds { transactions: n, rounds, json } } = clap::Parser::parse();
    let mut rows = Vec::new();
    for backend in backends::compiled_in() {
        let mut rates: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        let mut digests = std::collections::BTreeSet::new();
        for _ in 0..rounds {
            for threads in [1, 2] {
                let settings = RunSettings {
                    transactions: n,
                    prevalidate: NonZeroUsize::new(threads),
                    ..RunSettings::new(backend, PersistencePolicy::default(), peer::bench::sigcheck())
                };
                let report = run(&settings, &mut |_| {}).unwrap_or_else(|e| panic!("{backend}: {e}"));
                digests.insert(report.prevalidation_digest.expect("with --prevalidate"));
                rates.entry(threads).or_default().push(report.prevalidation_tx_per_sec.expect("with --prevalidate"));
            }
        }
        assert_eq!(digests.len(), 1, "{backend}: pre-validation digests differ between thread counts");
        let one = median(rates.remove(&1).expect("measured"));
        let two = median(rates.remove(&2).expect("measured"));
        rows.push((backend.to_string(), one, two));
    }
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(b, one, two)| serde_json::json!({"backend": b, "tx_per_sec_1": one, "tx_per_sec_2": two, "speedup": two / one}))
            .collect();
        println!("{}", serde_json::to_string(&out).expect("serialises"));
        return;
    }
    println!("pre-validation of the sigcheck executor, {n} transactions, median of {rounds} interleaved rounds:");
    println!("{:<9} {:>12} {:>12} {:>8}", "backend", "1 thread", "2 threads", "×");
    for (b, one, two) in rows {
        println!("{b:<9} {one:>12.0} {two:>12.0} {:>8.2}", two / one);
    }
}
