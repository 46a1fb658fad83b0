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
