//! A fixed-bucket histogram of atomics: observed once per batch or transaction on the apply
//! path without a lock, read by the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const MAX_BUCKETS: usize = 16;

#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending; a last `+Inf` bucket is implicit.
    bounds: &'static [f64],
    counts: [AtomicU64; MAX_BUCKETS],
    /// Sum of the observed values in millionths (exact enough for seconds and row counts).
    sum_millionths: AtomicU64,
    count: AtomicU64,
}

/// A consistent-enough copy for rendering: cumulative counts per upper bound.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, observations ≤ bound), ascending, ending with `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        assert!(bounds.len() < MAX_BUCKETS, "too many histogram buckets");
        Histogram {
            bounds,
            counts: Default::default(),
            sum_millionths: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let value = value.max(0.0);
        let i = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_millionths
            .fetch_add((value * 1e6).round() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len() + 1);
        for (i, &bound) in self
            .bounds
            .iter()
            .chain(std::iter::once(&f64::INFINITY))
            .enumerate()
        {
            cumulative += self.counts[i].load(Relaxed);
            buckets.push((bound, cumulative));
        }
        HistogramSnapshot {
            buckets,
            sum: self.sum_millionths.load(Relaxed) as f64 / 1e6,
            // The +Inf bucket and the count must agree for Prometheus.
            count: cumulative,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        static BOUNDS: [f64; 3] = [1.0, 10.0, 100.0];
        let h = Histogram::new(&BOUNDS);
        for v in [0.5, 1.0, 5.0, 50.0, 500.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(
            s.buckets,
            vec![(1.0, 2), (10.0, 3), (100.0, 4), (f64::INFINITY, 5)]
        );
        assert_eq!(s.count, 5);
        assert!((s.sum - 556.5).abs() < 1e-9);
    }
}
