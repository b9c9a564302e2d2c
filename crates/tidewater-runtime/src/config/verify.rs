//! `[verify]`: continuous verification inside `tidewater run` (off unless `interval` is set).
//! The same comparison as `tidewater verify`, in the background, at a bounded rate; with
//! `repair = true` the tables it finds different are copied again (see
//! `crate::verify::continuous`).

use std::time::Duration;

use serde::Deserialize;
use tidewater_core::Error;

/// Source rows compared per second at most when `max_rows_per_second` is not set: on two
/// cores this leaves the apply loop most of the machine (see README, "Continuous
/// verification").
pub const DEFAULT_MAX_ROWS_PER_SECOND: u64 = 20_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Time from the end of one pass to the start of the next: "1h", "30m", "90s", "1h30m".
    pub interval: String,
    /// Source rows read and compared per second at most.
    #[serde(default = "default_max_rows_per_second")]
    pub max_rows_per_second: u64,
    /// Copy the tables a pass finds different again (online, one table at a time in the
    /// stream), so that the next pass is clean.
    #[serde(default)]
    pub repair: bool,
}

fn default_max_rows_per_second() -> u64 {
    DEFAULT_MAX_ROWS_PER_SECOND
}

/// `[verify]` validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContinuousVerify {
    pub interval: Duration,
    pub max_rows_per_second: u64,
    pub repair: bool,
}

impl VerifyConfig {
    pub fn validate(&self) -> Result<ContinuousVerify, Error> {
        let interval = parse_duration(&self.interval).ok_or_else(|| {
            Error::config(format!(
                "verify.interval = {:?} is not a duration: write a number and a unit (ms, s, m, \
                 h, d), e.g. \"1h\", \"30m\" or \"1h30m\"",
                self.interval
            ))
        })?;
        if interval < Duration::from_secs(1) {
            return Err(Error::config(format!(
                "verify.interval = {:?} is too short: at least \"1s\"",
                self.interval
            )));
        }
        if self.max_rows_per_second == 0 {
            return Err(Error::config(
                "verify.max_rows_per_second must be at least 1 (leave [verify] out to turn \
                 continuous verification off)",
            ));
        }
        Ok(ContinuousVerify {
            interval,
            max_rows_per_second: self.max_rows_per_second,
            repair: self.repair,
        })
    }
}

/// "1h30m", "90s", "500ms", "2d": numbers each followed by a unit, summed.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let one = match &rest[..unit] {
            "ms" => Duration::from_millis(1),
            "s" | "sec" => Duration::from_secs(1),
            "m" | "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return None,
        };
        total = total.checked_add(one.checked_mul(u32::try_from(n).ok()?)?)?;
        rest = rest[unit..].trim_start();
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_docs_write_them() {
        let s = Duration::from_secs;
        assert_eq!(parse_duration("1h"), Some(s(3600)));
        assert_eq!(parse_duration("1h30m"), Some(s(5400)));
        assert_eq!(parse_duration("90s"), Some(s(90)));
        assert_eq!(parse_duration("2d"), Some(s(172_800)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        for bad in ["", "1", "h", "1 hour", "-1s", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
