//! What the benchmark binaries share.

/// The median of measurements (the upper one of an even count): what the
/// benchmarks and `peer compare` report, robust to one noisy round.
///
/// # Panics
///
/// On no measurements.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The realistic heavy benchmark executor (`executors/bench/sigcheck.wasm`):
/// the default rules behind an ed25519 check per transaction.
pub const SIGCHECK: &[u8] = include_bytes!("../../executors/bench/sigcheck.wasm");

/// The sigcheck executor, to run.
pub fn sigcheck() -> crate::run::Executor {
    crate::run::Executor { name: "sigcheck".into(), bytes: SIGCHECK.to_vec() }
}

/// How much the scaling benchmarks measure: shared flags.
#[derive(clap::Args, Debug, Clone)]
pub struct Rounds {
    /// Transactions per measurement.
    #[arg(long, default_value_t = 400)]
    pub transactions: u64,
    /// Interleaved rounds; the figures are medians.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
