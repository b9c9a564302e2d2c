//! Counters the apply loop keeps for `status`, the demo and the logs.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Shared between the apply thread (writer) and reporters (readers).
#[derive(Debug, Default)]
pub struct Stats {
    pub rows_applied: AtomicU64,
    pub transactions_applied: AtomicU64,
    pub batches: AtomicU64,
    /// Total time spent in destination commits (µs), for the average commit cost.
    pub commit_us_total: AtomicU64,
    /// Source commit time of the last applied transaction (µs since epoch).
    pub last_source_commit_us: AtomicI64,
    /// When the last batch was committed at the destination (µs since epoch).
    pub last_apply_us: AtomicI64,
    latencies: Mutex<LatencyWindow>,
}

/// Source-commit → destination-commit latencies since the last `take_latencies`, in ms.
#[derive(Debug, Default)]
struct LatencyWindow {
    samples_ms: Vec<u32>,
}

/// p50/p99/max of a latency window, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub count: usize,
    pub p50_ms: u32,
    pub p99_ms: u32,
    pub max_ms: u32,
}

const MAX_SAMPLES: usize = 100_000;

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Stats {
    /// Records one applied transaction committed at the destination at `applied_us`.
    pub fn record_transaction(&self, source_commit_us: i64, applied_us: i64) {
        self.transactions_applied.fetch_add(1, Relaxed);
        let lag_ms = ((applied_us - source_commit_us).max(0) / 1000).min(u32::MAX as i64) as u32;
        let mut w = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        if w.samples_ms.len() < MAX_SAMPLES {
            w.samples_ms.push(lag_ms);
        }
    }

    /// Returns and resets the latency window.
    pub fn take_latencies(&self) -> LatencySummary {
        let mut samples = {
            let mut w = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut w.samples_ms)
        };
        summarize(&mut samples)
    }
}

pub fn summarize(samples: &mut [u32]) -> LatencySummary {
    if samples.is_empty() {
        return LatencySummary::default();
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    LatencySummary {
        count: samples.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles() {
        let mut v: Vec<u32> = (1..=100).collect();
        let s = summarize(&mut v);
        assert_eq!((s.count, s.p50_ms, s.p99_ms, s.max_ms), (100, 51, 99, 100));
        assert_eq!(summarize(&mut []).count, 0);
    }
}
