//! Timestamp text formatting without a calendar library (proleptic Gregorian, UTC).

/// `YYYY-MM-DD HH:MM:SS.ffffff+00` for microseconds since the Unix epoch.
pub fn format_utc_micros(us: i64) -> String {
    let mut out = String::with_capacity(29);
    write_utc_micros(&mut out, us).expect("a String takes any text");
    out
}

/// [`format_utc_micros`] into `out` (a source's shared text buffer).
pub fn write_utc_micros(out: &mut impl std::fmt::Write, us: i64) -> std::fmt::Result {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}+00",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_and_leap_days() {
        assert_eq!(format_utc_micros(0), "1970-01-01 00:00:00.000000+00");
        assert_eq!(
            format_utc_micros(951_782_400_000_001),
            "2000-02-29 00:00:00.000001+00"
        );
        assert_eq!(format_utc_micros(-1), "1969-12-31 23:59:59.999999+00");
        assert_eq!(
            format_utc_micros(1_700_000_000_123_456),
            "2023-11-14 22:13:20.123456+00"
        );
    }
}
