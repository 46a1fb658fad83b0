//! What the benchmark binaries share.

/// The value after `--name` on the command line, parsed, or `default`
/// (the benchmarks take a few numeric flags; no need for a parser).
pub fn flag<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

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
