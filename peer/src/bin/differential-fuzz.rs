//! The long run of differential fuzzing: `wasm-smith` executors on every
//! compiled-in backend, stopping at the first inconsistent output (the seed
//! reproduces it: `--start SEED --seeds 1`). `cargo test` runs a quick
//! slice of the same (`peer/tests/determinism.rs`).
//!
//! ```text
//! cargo run --release -p peer --bin differential-fuzz -- --seeds 100000
//! ```

use clap::Parser;
use peer::backends;

#[derive(Parser)]
#[command(about = "Differential fuzzing of the backends with wasm-smith executors")]
struct Args {
    /// First seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// How many seeds.
    #[arg(long, default_value_t = 10_000)]
    seeds: u64,
    /// Seeds per progress line.
    #[arg(long, default_value_t = 1_000)]
    chunk: u64,
}

fn main() {
    let args = Args::parse();
    let enabled = backends::factories();
    let names: Vec<&str> = enabled.iter().map(|(n, _)| *n).collect();
    eprintln!("differential fuzzing on {} from seed {} ({} seeds)", names.join(", "), args.start, args.seeds);
    let end = args.start + args.seeds;
    let mut at = args.start;
    while at < end {
        let next = (at + args.chunk.max(1)).min(end);
        let s = conformance::fuzz::slice(&enabled, at..next);
        eprintln!(
            "seeds {at}..{next}: all agree; {} loaded, load errors {:?}, verdicts {:?}",
            s.loaded, s.load_errors, s.verdicts
        );
        at = next;
    }
}
