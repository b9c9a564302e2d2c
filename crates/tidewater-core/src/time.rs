//! Timestamp text formatting and parsing without a calendar library (proleptic Gregorian,
//! UTC).

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

/// The microseconds since 1970-01-01 00:00:00 of `YYYY-MM-DD HH:MM:SS` with an optional
/// fraction of 1 to 6 digits (years 0001 to 9999, a valid date and time of day): canonical
/// timestamp text, and what [`write_utc_micros`] writes before its `+00`. `None` for any
/// other form (the caller then leaves the text to a parser that knows it).
pub fn parse_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let fixed = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if b.len() < 19 || fixed.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if y == 0 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let micros = match &b[19..] {
        [] => 0,
        [b'.', frac @ ..] if (1..=6).contains(&frac.len()) => {
            num(20..b.len())? * 10i64.pow(6 - frac.len() as u32)
        }
        _ => return None,
    };
    let days = days_from_civil(y, m, d);
    Some((days * 86_400 + hh * 3_600 + mm * 60 + ss) * 1_000_000 + micros)
}

/// [`parse_micros`] of UTC text: with `+00` or `+00:00` after it (what
/// [`format_utc_micros`] writes).
pub fn parse_utc_micros(s: &str) -> Option<i64> {
    let local = s.strip_suffix("+00").or_else(|| s.strip_suffix("+00:00"))?;
    parse_micros(local)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) to days since 1970-01-01, the inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

    #[test]
    fn parsing_inverts_formatting() {
        // Every day from 0001-01-01 to 9999-12-31 (in steps that hit every month and leap
        // day), with varied times of day.
        let (first, last) = (-62_135_596_800_000_000i64, 253_402_300_799_999_999i64);
        let mut us = first;
        let mut n = 0u64;
        while us <= last {
            let text = format_utc_micros(us);
            assert_eq!(parse_utc_micros(&text), Some(us), "{text}");
            n += 1;
            us += 86_400_000_000 * 3 + 3_723_000_017 * (n % 29) as i64;
        }
        assert_eq!(parse_utc_micros(&format_utc_micros(last)), Some(last));
        assert_eq!(
            parse_micros("2024-02-29 23:59:59"),
            Some(1_709_251_199_000_000)
        );
        assert_eq!(parse_micros("1970-01-01 00:00:00.5"), Some(500_000));
        assert_eq!(parse_micros("1969-12-31 23:59:59.000001"), Some(-999_999));
        assert_eq!(
            parse_utc_micros("1970-01-01 00:00:01+00:00"),
            Some(1_000_000)
        );
        for other in [
            "2023-02-29 00:00:00",
            "2024-13-01 00:00:00",
            "2024-01-01 24:00:00",
            "2024-01-01 00:60:00",
            "0000-01-01 00:00:00",
            "2024-01-01 00:00:00.",
            "2024-01-01 00:00:00.1234567",
            "2024-01-01T00:00:00",
            "2024-01-01 00:00:00 BC",
            "0044-03-15 (BC) 12:00:00",
            "12024-01-01 00:00:00",
            "infinity",
            "2024-01-01 00:00:00+01",
            "2024-1-01 00:00:00",
        ] {
            assert_eq!(parse_micros(other), None, "{other}");
        }
        assert_eq!(parse_utc_micros("2024-01-01 00:00:00"), None);
        assert_eq!(parse_utc_micros("2024-01-01 00:00:00+01"), None);
    }
}
