//! Timing histograms for [`crate::Stats`]: where a mean hides the tail
//! (one slow rebuild among a million sub-microsecond blanks), buckets show
//! it. Power-of-two buckets of nanoseconds: fixed size, no allocation, one
//! `leading_zeros` per sample.

use std::time::{Duration, Instant};

/// Buckets: durations up to 2^(FIRST + i) ns; the last one also takes
/// everything longer (Prometheus' `+Inf`).
const BUCKETS: usize = 32;
/// The first bucket's bound is 2^6 ns = 64 ns.
const FIRST: u32 = 6;

/// A histogram of durations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; BUCKETS],
    sum: Duration,
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        // The smallest k with ns <= 2^k, from the bit length of ns - 1.
        let k = 64 - (ns - 1).leading_zeros();
        let i = (k.saturating_sub(FIRST) as usize).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.sum += d;
    }

    /// Records the time since `started`; `None` (not timing) records
    /// nothing.
    pub fn record_since(&mut self, started: Option<Instant>) {
        if let Some(started) = started {
            self.record(started.elapsed());
        }
    }

    /// Adds `other`'s durations.
    pub fn merge(&mut self, other: &Histogram) {
        self.counts.iter_mut().zip(other.counts).for_each(|(a, b)| *a += b);
        self.sum += other.sum;
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Their total.
    pub fn sum(&self) -> Duration {
        self.sum
    }

    /// Cumulative counts by upper bound in seconds, as Prometheus wants
    /// them; the last bound is `f64::INFINITY`.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let mut total = 0;
        self.counts.iter().enumerate().map(move |(i, n)| {
            total += n;
            let bound = if i == BUCKETS - 1 { f64::INFINITY } else { (1u64 << (FIRST as usize + i)) as f64 * 1e-9 };
            (bound, total)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::default();
        for ns in [1, 64, 65, 128, 1_000_000, u64::MAX] {
            h.record(Duration::from_nanos(ns));
        }
        let c: Vec<(f64, u64)> = h.cumulative().collect();
        assert_eq!(c[0], (64e-9, 2), "1 ns and 64 ns are <= 64 ns");
        assert_eq!(c[1], (128e-9, 4), "65 ns and 128 ns are <= 128 ns");
        assert_eq!(c[14].1, 5, "1 ms is <= 2^20 ns");
        assert_eq!(c[13].1, 4, "but not <= 2^19 ns");
        assert_eq!(c[BUCKETS - 1], (f64::INFINITY, 6), "everything is <= +Inf");
        assert_eq!(h.count(), 6);
    }
}
