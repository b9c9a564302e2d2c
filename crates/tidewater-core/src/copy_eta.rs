//! How long a table's chunked copy has left, for `status`, `/status` and `/metrics`: the rows
//! the source's estimate still expects, at the rate this process has copied the table so far.
//!
//! The rate is measured from the first progress this process saw of the copy, not from the
//! copy's start: a copy resumed after a restart counts only what this run copied. A copy that
//! starts over (a re-copy: fewer rows than before) starts its clock again. There is no figure
//! until the clock has run for a second and rows have moved, nor once the table holds more
//! rows than the estimate (the estimate was low: the remaining time is not known).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::copy::CopyProgress;

/// Below this much measuring time there is no rate.
const MIN_ELAPSED: Duration = Duration::from_secs(1);

/// The first progress seen of each table's copy under way.
#[derive(Debug, Default)]
pub struct CopyClocks(HashMap<String, (Instant, u64)>);

impl CopyClocks {
    /// Records `progress` seen at `now`: starts a table's clock at its first progress under
    /// way, or again when its rows went down (the copy started over); stops it when done.
    pub fn observe(&mut self, progress: &CopyProgress, now: Instant) {
        let table = progress.table.to_string();
        if progress.done {
            self.0.remove(&table);
            return;
        }
        match self.0.get(&table) {
            Some(&(_, rows)) if rows <= progress.rows => {}
            _ => {
                self.0.insert(table, (now, progress.rows));
            }
        }
    }

    /// The time `progress`'s copy has left at `now`, given the source's row `estimate`:
    /// zero once done, `None` while it cannot be told.
    pub fn eta(
        &self,
        progress: &CopyProgress,
        estimate: Option<u64>,
        now: Instant,
    ) -> Option<Duration> {
        if progress.done {
            return Some(Duration::ZERO);
        }
        let &(since, first) = self.0.get(&progress.table.to_string())?;
        let elapsed = now.saturating_duration_since(since);
        let copied = progress.rows.checked_sub(first).filter(|&n| n > 0)?;
        let remaining = estimate?.checked_sub(progress.rows).filter(|&n| n > 0)?;
        if elapsed < MIN_ELAPSED {
            return None;
        }
        let per_row = elapsed.as_secs_f64() / copied as f64;
        Some(Duration::from_secs_f64(per_row * remaining as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TableId;

    fn progress(rows: u64, done: bool) -> CopyProgress {
        CopyProgress {
            rows,
            done,
            ..CopyProgress::new(TableId::new("s", "t"))
        }
    }

    #[test]
    fn the_rate_of_this_run_over_the_estimate() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut c = CopyClocks::default();
        // Resumed at 1,000 rows: only what this run copies counts.
        c.observe(&progress(1_000, false), t0);
        assert_eq!(c.eta(&progress(1_000, false), Some(10_000), at(5)), None);
        c.observe(&progress(3_000, false), at(10));
        // 2,000 rows in 10 s; 7,000 to go.
        let eta = c.eta(&progress(3_000, false), Some(10_000), at(10));
        assert_eq!(eta, Some(Duration::from_secs(35)));
        // No estimate, or more rows than it: not known.
        assert_eq!(c.eta(&progress(3_000, false), None, at(10)), None);
        assert_eq!(c.eta(&progress(12_000, false), Some(10_000), at(10)), None);
        // Too early for a rate.
        let mut fresh = CopyClocks::default();
        fresh.observe(&progress(0, false), t0);
        let early = t0 + Duration::from_millis(500);
        assert_eq!(fresh.eta(&progress(500, false), Some(10_000), early), None);
        // Started over (a re-copy): the clock starts again.
        c.observe(&progress(100, false), at(20));
        c.observe(&progress(1_100, false), at(30));
        let eta = c.eta(&progress(1_100, false), Some(10_000), at(30));
        assert_eq!(eta, Some(Duration::from_secs(89)));
        // Done: nothing left, and the clock is gone.
        c.observe(&progress(10_000, true), at(40));
        assert_eq!(
            c.eta(&progress(10_000, true), Some(10_000), at(40)),
            Some(Duration::ZERO)
        );
        assert_eq!(c.eta(&progress(10_000, false), Some(20_000), at(50)), None);
    }
}
