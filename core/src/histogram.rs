//! Timing histograms for [`crate::Stats`]: where a mean hides the tail
//! (one slow rebuild among a million sub-microsecond blanks), buckets show
//! it. Log-linear buckets of nanoseconds — each power of two split in four
//! — fixed size, no allocation, one `leading_zeros` per sample: quantiles
//! within 25 % of the truth before interpolation, and power-of-two bounds
//! for Prometheus.

use std::time::{Duration, Instant};

/// Power-of-two bounds exposed to Prometheus: 2^(FIRST + i) ns for
/// i < OCTAVES - 1, then `+Inf`.
const OCTAVES: usize = 32;
/// The first bound is 2^6 ns = 64 ns.
const FIRST: u32 = 6;
/// Sub-buckets per power of two (a power of two itself).
const SUBS: usize = 4;
/// Fine buckets: one for ≤ 64 ns, [`SUBS`] for each bounded octave after
/// it, one for the rest (`+Inf`).
const FINE: usize = 1 + (OCTAVES - 2) * SUBS + 1;

/// A histogram of durations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; FINE],
    sum: Duration,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: [0; FINE], sum: Duration::ZERO }
    }
}

/// The fine bucket of `ns` nanoseconds.
fn bucket(ns: u64) -> usize {
    if ns <= 1 << FIRST {
        return 0;
    }
    // ns in (2^(k-1), 2^k]: octave k - FIRST; the two bits after the
    // leading one of ns - 1 pick the quarter.
    let k = 64 - (ns - 1).leading_zeros();
    let octave = (k - FIRST) as usize;
    if octave >= OCTAVES - 1 {
        return FINE - 1;
    }
    let quarter = (((ns - 1) >> (k - 1 - SUBS.trailing_zeros())) as usize) & (SUBS - 1);
    1 + (octave - 1) * SUBS + quarter
}

/// The fine bucket `i`'s bounds in ns: (exclusive lower, inclusive upper);
/// the last one's upper is `u64::MAX`.
fn bounds(i: usize) -> (u64, u64) {
    if i == 0 {
        return (0, 1 << FIRST);
    }
    if i == FINE - 1 {
        return (1 << (FIRST as usize + OCTAVES - 2), u64::MAX);
    }
    let (octave, quarter) = ((i - 1) / SUBS + 1, ((i - 1) % SUBS) as u64);
    let low = 1u64 << (FIRST as usize + octave - 1);
    let step = low / SUBS as u64;
    (low + quarter * step, low + (quarter + 1) * step)
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.counts[bucket(ns)] += 1;
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

    /// The `q`-quantile (0 < q ≤ 1) of the durations, interpolated within
    /// its bucket as Prometheus' `histogram_quantile` does; `None` if
    /// nothing was recorded. Beyond the last bound (≈ 69 s) it answers that
    /// bound.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0);
        let mut below = 0u64;
        for (i, n) in self.counts.iter().enumerate() {
            if *n > 0 && (below + n) as f64 >= rank {
                let (low, high) = bounds(i);
                if i == FINE - 1 {
                    return Some(Duration::from_nanos(low));
                }
                let within = (rank - below as f64) / *n as f64;
                return Some(Duration::from_nanos(low + ((high - low) as f64 * within) as u64));
            }
            below += n;
        }
        None
    }

    /// Cumulative counts by upper bound in seconds, as Prometheus wants
    /// them: powers of two from 64 ns; the last bound is `f64::INFINITY`.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let mut total = 0;
        (0..OCTAVES).map(move |o| {
            let fine = match o {
                0 => 0..1,
                o if o == OCTAVES - 1 => FINE - 1..FINE,
                o => 1 + (o - 1) * SUBS..1 + o * SUBS,
            };
            total += self.counts[fine].iter().sum::<u64>();
            let bound = if o == OCTAVES - 1 { f64::INFINITY } else { (1u64 << (FIRST as usize + o)) as f64 * 1e-9 };
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
        assert_eq!(c[OCTAVES - 1], (f64::INFINITY, 6), "everything is <= +Inf");
        assert_eq!(c.len(), OCTAVES);
        assert_eq!(h.count(), 6);
    }

    #[test]
    fn every_duration_lies_within_its_fine_bucket() {
        for ns in (1..5000).chain([65, 96, 97, 128, 129, 1 << 20, (1 << 20) + 1, 3 << 30, 1 << 36, (1 << 36) + 1]) {
            let (low, high) = bounds(bucket(ns));
            assert!(low < ns && ns <= high, "{ns} in ({low}, {high}]");
        }
        for i in 1..FINE {
            assert_eq!(bounds(i - 1).1, bounds(i).0, "buckets tile the line");
        }
    }

    #[test]
    fn quantiles_are_close_and_ordered() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        // 1..=1000 µs, uniform.
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        for (q, truth) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0)] {
            let got = h.quantile(q).unwrap().as_secs_f64() * 1e6;
            assert!((got - truth).abs() / truth < 0.1, "q{q}: {got} µs for {truth}");
        }
        assert!(h.quantile(0.5) <= h.quantile(0.99));
        let mut one = Histogram::default();
        one.record(Duration::from_nanos(700));
        let p = one.quantile(0.99).unwrap().as_nanos();
        assert!((640..=768).contains(&p), "a single 700 ns sample: {p} ns, within its quarter-octave");
    }
}
