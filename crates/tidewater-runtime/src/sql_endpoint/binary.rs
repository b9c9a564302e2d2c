//! PostgreSQL's binary format of a value, from the text `exec` rendered it as: for drivers
//! that ask for binary results (tokio-postgres, npgsql, pgx, JDBC after a few executions).
//! Every type `encode::pg_type` describes has one; text is its UTF-8 bytes.

use pgwire::api::Type;

/// Microseconds and days between 1970-01-01 (Unix) and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_DAYS: i64 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The binary form of `text`, a value of `ty` in PostgreSQL's text format.
pub fn encode(ty: &Type, text: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("cannot send {text:?} as binary {}", ty.name());
    let bytes = match *ty {
        Type::BOOL => vec![u8::from(text == "t")],
        Type::INT2 => text
            .parse::<i16>()
            .map_err(|_| bad())?
            .to_be_bytes()
            .to_vec(),
        Type::INT4 => text
            .parse::<i32>()
            .map_err(|_| bad())?
            .to_be_bytes()
            .to_vec(),
        Type::INT8 => text
            .parse::<i64>()
            .map_err(|_| bad())?
            .to_be_bytes()
            .to_vec(),
        Type::FLOAT4 => (float(text).ok_or_else(bad)? as f32).to_be_bytes().to_vec(),
        Type::FLOAT8 => float(text).ok_or_else(bad)?.to_be_bytes().to_vec(),
        Type::BYTEA => hex(text.strip_prefix("\\x").ok_or_else(bad)?).ok_or_else(bad)?,
        Type::DATE => {
            let days = date(text).ok_or_else(bad)? - PG_EPOCH_DAYS;
            i32::try_from(days)
                .map_err(|_| bad())?
                .to_be_bytes()
                .to_vec()
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            // `exec` writes instants in UTC: `+00` is the only offset.
            let text = text.strip_suffix("+00").unwrap_or(text);
            let (day, time) = text.split_once(' ').ok_or_else(bad)?;
            let micros = (date(day).ok_or_else(bad)? - PG_EPOCH_DAYS) * MICROS_PER_DAY
                + time_of_day(time).ok_or_else(bad)?;
            micros.to_be_bytes().to_vec()
        }
        Type::TIME => time_of_day(text).ok_or_else(bad)?.to_be_bytes().to_vec(),
        Type::NUMERIC => numeric(text).ok_or_else(bad)?,
        _ => text.as_bytes().to_vec(),
    };
    Ok(bytes)
}

fn float(text: &str) -> Option<f64> {
    match text {
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

fn hex(digits: &str) -> Option<Vec<u8>> {
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Days since 1970-01-01 of `YYYY-MM-DD` (proleptic Gregorian).
fn date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Microseconds since midnight of `HH:MM:SS[.ffffff]`.
fn time_of_day(text: &str) -> Option<i64> {
    let (hms, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut parts = hms.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: i64 = parts.next()?.parse().ok()?;
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let micros: String = fraction.chars().chain("000000".chars()).take(6).collect();
    Some(((h * 60 + m) * 60 + s) * 1_000_000 + micros.parse::<i64>().ok()?)
}

/// PostgreSQL's binary numeric of a decimal like `-12.50`: digit count, weight (of the first
/// base-10000 digit), sign, display scale, then the base-10000 digits.
fn numeric(text: &str) -> Option<Vec<u8>> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int_groups = int.len().div_ceil(4);
    let padded = format!(
        "{int:0>width$}{frac:0<fwidth$}",
        width = int_groups * 4,
        fwidth = frac.len().div_ceil(4) * 4
    );
    let mut digits: Vec<i16> = (0..padded.len())
        .step_by(4)
        .map(|i| padded[i..i + 4].parse().expect("four digits"))
        .collect();
    let mut weight = int_groups as i64 - 1;
    let leading = digits.iter().take_while(|&&d| d == 0).count();
    digits.drain(..leading);
    weight -= leading as i64;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    let sign: u16 = if negative && !digits.is_empty() {
        0x4000
    } else {
        0
    };
    let mut out = Vec::with_capacity(8 + 2 * digits.len());
    out.extend((digits.len() as i16).to_be_bytes());
    out.extend(i16::try_from(weight).ok()?.to_be_bytes());
    out.extend(sign.to_be_bytes());
    out.extend(i16::try_from(frac.len()).ok()?.to_be_bytes());
    for d in digits {
        out.extend(d.to_be_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numerics_as_postgres_sends_them() {
        // ndigits, weight, sign, dscale, digits...
        assert_eq!(words(&numeric("10.50").unwrap()), [2, 0, 0, 2, 10, 5000]);
        assert_eq!(words(&numeric("-0.01").unwrap()), [1, -1, 0x4000, 2, 100]);
        assert_eq!(
            words(&numeric("123456789").unwrap()),
            [3, 2, 0, 0, 1, 2345, 6789]
        );
        assert_eq!(words(&numeric("0.00001").unwrap()), [1, -2, 0, 5, 1000]);
        assert_eq!(words(&numeric("0").unwrap()), [0, 0, 0, 0]);
        assert_eq!(words(&numeric("20000").unwrap()), [1, 1, 0, 0, 2]);
        assert!(numeric("1e5").is_none());
        assert!(numeric("").is_none());
    }

    #[test]
    fn dates_and_times_from_the_postgres_epoch() {
        let micros =
            |ty: &Type, s: &str| i64::from_be_bytes(encode(ty, s).unwrap().try_into().unwrap());
        let days =
            |s: &str| i32::from_be_bytes(encode(&Type::DATE, s).unwrap().try_into().unwrap());
        assert_eq!(days("2000-01-01"), 0);
        assert_eq!(days("2000-03-01"), 60);
        assert_eq!(days("1999-12-31"), -1);
        assert_eq!(days("1970-01-01"), -10_957);
        assert_eq!(
            micros(&Type::TIMESTAMPTZ, "2000-01-02 00:00:01.5+00"),
            86_401_500_000
        );
        assert_eq!(micros(&Type::TIMESTAMP, "1999-12-31 23:59:59"), -1_000_000);
        assert_eq!(micros(&Type::TIME, "01:00:00.000001"), 3_600_000_001);
        assert!(encode(&Type::DATE, "infinity").is_err());
    }

    #[test]
    fn scalars() {
        assert_eq!(encode(&Type::BOOL, "t").unwrap(), [1]);
        assert_eq!(encode(&Type::INT4, "-2").unwrap(), (-2i32).to_be_bytes());
        assert_eq!(
            encode(&Type::FLOAT8, "1.5").unwrap(),
            [0x3f, 0xf8, 0, 0, 0, 0, 0, 0]
        );
        // The quiet NaN PostgreSQL itself sends for float4 'NaN'.
        assert_eq!(encode(&Type::FLOAT4, "NaN").unwrap(), [0x7f, 0xc0, 0, 0]);
        assert_eq!(encode(&Type::BYTEA, "\\x00ff").unwrap(), [0, 255]);
        assert_eq!(encode(&Type::TEXT, "é").unwrap(), "é".as_bytes());
        assert!(encode(&Type::INT2, "70000").is_err());
    }
}
