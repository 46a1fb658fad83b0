//! What core's fuel, stack and NaN instrumentation costs: the default
//! executor over the default workload, metered (as always) ÷ the same
//! module prepared without metering, on every compiled-in backend.
//! Interleaved rounds, median ratio, all in one process.
//!
//! ```sh
//! cargo run --release -p peer --bin bench-metering [-- --transactions N --rounds R]
//! ```

use executor_core::module::{Metering, Options, prepare_with};
use executor_core::{Driver, DriverConfig, Limits, PersistencePolicy, SharedState, Verdict};
use peer::backends;
use peer::run::Executor;
use peer::workload::{Generator, Ledger, Rng, decode};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Validation time of `n` transactions of the seeded workload (blocks of
/// 100), and the verdicts' count of approvals (to check both agree).
fn validate_all(driver: &mut Driver, n: u64) -> (Duration, u64) {
    let mut rng = Rng::new(42);
    let mut ledger = Arc::new(Ledger::genesis(&mut rng));
    let mut generator = Generator::new(rng);
    let (mut spent, mut approved) = (Duration::ZERO, 0);
    for i in 0..n {
        let tx = generator.next(&ledger);
        let state: SharedState = ledger.clone();
        let t = Instant::now();
        let verdict = driver.validate(&tx, state).expect("no host failure");
        spent += t.elapsed();
        if verdict == Verdict::Approved {
            approved += 1;
            Arc::make_mut(&mut ledger).apply(&decode(&tx).expect("decodes").instruction);
        }
        if i % 100 == 99 {
            driver.end_block();
        }
    }
    (spent, approved)
}

/// What metering costs: metered ÷ unmetered, interleaved rounds, medians.
#[derive(clap::Parser)]
struct Args {
    /// Transactions per measurement.
    #[arg(long, default_value_t = 20_000)]
    transactions: u64,
    /// Interleaved rounds; the figures are medians.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn main() {
    let Args { transactions: n, rounds } = clap::Parser::parse();
    let limits = Limits::default();
    let executor = Executor::default_executor();
    println!("default executor, {n} transactions, median of {rounds} interleaved rounds");
    println!(
        "{:<10} {:<12} {:>14} {:>14} {:>8} {:>14}",
        "backend", "policy", "metered tx/s", "unmetered tx/s", "ratio", "instrument ms"
    );
    for kind in backends::compiled_in() {
        for policy in [PersistencePolicy::UntilCrash, PersistencePolicy::default()] {
            let mut drivers = [Metering::On, Metering::OffForBenchmarks].map(|m| {
                let options = Options { metering: m, ..Options::default() };
                let module = Arc::new(prepare_with(&executor.bytes, &limits, options).expect("prepares"));
                let host = backends::host(kind, limits.clone()).expect("backend");
                let config = DriverConfig { policy, ..Default::default() };
                (Driver::from_prepared(host, module.clone(), config).expect("loads"), module)
            });
            let mut ratios = Vec::new();
            let mut rates = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let (on, a) = validate_all(&mut drivers[0].0, n);
                let (off, b) = validate_all(&mut drivers[1].0, n);
                assert_eq!(a, b, "metering must not change verdicts under the default budget");
                ratios.push(on.as_secs_f64() / off.as_secs_f64());
                rates.0.push(n as f64 / on.as_secs_f64());
                rates.1.push(n as f64 / off.as_secs_f64());
            }
            println!(
                "{:<10} {:<12} {:>14.0} {:>14.0} {:>8.3} {:>14.3}",
                kind.to_string(),
                policy.to_string(),
                peer::bench::median(rates.0),
                peer::bench::median(rates.1),
                peer::bench::median(ratios),
                drivers[0].1.instrument_time.as_secs_f64() * 1e3,
            );
        }
    }
}
