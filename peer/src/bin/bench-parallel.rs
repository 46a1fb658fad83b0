//! In-order parallel validation (`--threads`) against the conflict rate:
//! on the realistic heavy executor (`executors/bench/sigcheck.wasm`),
//! every compiled-in backend, each hot share (0, 10, 50, 100 % of
//! transactions transfers from one account, each reading what the previous
//! one wrote), the run without `--threads`, with `--threads 1` and with
//! `--threads 2`, interleaved rounds in one process, medians.
//!
//! ```sh
//! cargo run --release -p peer --bin bench-parallel [-- --transactions N --rounds R --json]
//! ```
//!
//! Targets (issue 21, on a 2-core machine): at 0 % hot, `--threads 2` ≥ 1.7 ×
//! `--threads 1` and `--threads 1` ≥ 0.9 × the run without; at 50 % hot,
//! `--threads 2` ≥ 0.9 × the run without. The digests of the three must
//! agree; the bench fails loudly if they do not.

use executor_core::PersistencePolicy;
use peer::backends;
use peer::bench::median;
use peer::run::{RunSettings, run};
use serde::Serialize;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;

/// In-order parallel validation against the conflict rate, interleaved.
#[derive(clap::Parser)]
struct Args {
    #[command(flatten)]
    rounds: peer::bench::Rounds,
    /// Hot shares to measure, percent.
    #[arg(long, value_delimiter = ',', default_value = "0,10,50,100")]
    hot: Vec<u64>,
    /// Only this backend [default: every compiled-in one].
    #[arg(long)]
    backend: Option<backends::BackendKind>,
}

/// One backend at one hot share: median throughputs and what was re-run.
#[derive(Serialize)]
struct Row {
    backend: String,
    hot_percent: u64,
    /// Without `--threads`, tx/s.
    sequential: f64,
    /// `--threads 1`, tx/s.
    threads_1: f64,
    /// `--threads 2`, tx/s.
    threads_2: f64,
    /// Re-executions of the median `--threads 2` round.
    reexecutions_2: u64,
}

fn main() {
    let Args { rounds: peer::bench::Rounds { transactions, rounds, json }, hot, backend: only } = clap::Parser::parse();
    let mut rows = Vec::new();
    for backend in backends::compiled_in().into_iter().filter(|b| only.is_none_or(|o| o == *b)) {
        for &hot_percent in &hot {
            let mut rates: BTreeMap<usize, Vec<(f64, u64)>> = BTreeMap::new();
            let mut digests = std::collections::BTreeSet::new();
            for _ in 0..rounds {
                for threads in [0, 1, 2] {
                    let settings = RunSettings {
                        transactions,
                        hot_percent,
                        threads: NonZeroUsize::new(threads),
                        ..RunSettings::new(backend, PersistencePolicy::default(), peer::bench::sigcheck())
                    };
                    let report = run(&settings, &mut |_| {}).unwrap_or_else(|e| panic!("{backend}: {e}"));
                    digests.insert((report.verdict_digest, report.state_digest));
                    rates.entry(threads).or_default().push((report.tx_per_sec, report.parallel.reexecutions));
                }
            }
            assert_eq!(digests.len(), 1, "{backend}, {hot_percent}% hot: digests differ between thread counts");
            let mut rate = |threads| {
                let mut runs = rates.remove(&threads).expect("measured");
                runs.sort_by(|a, b| a.0.total_cmp(&b.0));
                let reexecutions = runs[runs.len() / 2].1;
                (median(runs.into_iter().map(|r| r.0).collect()), reexecutions)
            };
            let (sequential, (threads_1, _), (threads_2, reexecutions_2)) = (rate(0).0, rate(1), rate(2));
            rows.push(Row {
                backend: backend.to_string(),
                hot_percent,
                sequential,
                threads_1,
                threads_2,
                reexecutions_2,
            });
        }
    }
    if json {
        println!("{}", serde_json::to_string(&rows).expect("serialises"));
        return;
    }
    println!(
        "in-order parallel validation of the sigcheck executor, {transactions} transactions, median of {rounds} \
         interleaved rounds (tx/s; ratios in the same run):"
    );
    println!(
        "{:<9} {:>5} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8}",
        "backend", "hot%", "no threads", "threads 1", "threads 2", "t1÷none", "t2÷t1", "t2÷none", "re-exec"
    );
    for r in rows {
        println!(
            "{:<9} {:>5} {:>10.0} {:>10.0} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>8}",
            r.backend,
            r.hot_percent,
            r.sequential,
            r.threads_1,
            r.threads_2,
            r.threads_1 / r.sequential,
            r.threads_2 / r.threads_1,
            r.threads_2 / r.sequential,
            r.reexecutions_2
        );
    }
}
