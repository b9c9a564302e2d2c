//! Driver values (from the snapshot's binary protocol or from binlog row images) to the
//! change model's canonical text (see `tidewater_core::ColumnType`).

use std::fmt::Write as _;

use bytes::Bytes;
use mysql_common::value::Value as My;
use tidewater_core::time::format_utc_micros;
use tidewater_core::Value;

use crate::types::{Charset, Kind};

/// What to do with MySQL's zero dates (`0000-00-00`, or a zero month/day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroDates {
    /// Replicate them as NULL (the default; they are not dates).
    #[default]
    Null,
    /// Stop with an error naming the column.
    Error,
}

/// Where a value comes from: the snapshot reads text already converted to utf8mb4 by the
/// server; the binlog carries the column's own charset and storage formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Snapshot,
    Binlog,
}

/// Converts one value; `Err` explains what was wrong with it (the caller adds table and
/// column).
pub fn convert(kind: &Kind, v: My, origin: Origin, zero: ZeroDates) -> Result<Value, String> {
    let text = |s: String| Ok(Value::Text(s.into()));
    match (kind, v) {
        (_, My::NULL) => Ok(Value::Null),
        (Kind::Signed | Kind::Unsigned | Kind::Year, My::Int(i)) => Ok(integer(i)),
        (Kind::Signed | Kind::Unsigned | Kind::Year, My::UInt(u)) => Ok(integer(u)),
        (Kind::Float, My::Float(f)) => text(f.to_string()),
        (Kind::Float, My::Double(d)) => text((d as f32).to_string()),
        (Kind::Double, My::Double(d)) => text(d.to_string()),
        (Kind::Double, My::Float(f)) => text(f64::from(f).to_string()),
        (Kind::Bit, My::Bytes(b)) => {
            if b.len() > 8 {
                return Err(format!("BIT value of {} bytes", b.len()));
            }
            text(
                b.iter()
                    .fold(0u64, |acc, &x| acc << 8 | u64::from(x))
                    .to_string(),
            )
        }
        (Kind::Bit, My::UInt(u)) => text(u.to_string()),
        (Kind::Text(cs), My::Bytes(b)) => match (origin, cs) {
            (Origin::Binlog, Charset::Legacy(enc)) => {
                let (s, had_errors) = enc.decode_without_bom_handling(&b);
                if had_errors {
                    return Err(format!("text not valid in {}", enc.name()));
                }
                text(s.into_owned())
            }
            _ => utf8(b),
        },
        (Kind::Binary { pad_to }, My::Bytes(mut b)) => {
            if let (Origin::Binlog, Some(n)) = (origin, pad_to) {
                if b.len() < *n {
                    b.resize(*n, 0);
                }
            }
            text(hex(&b))
        }
        (Kind::Geometry, My::Bytes(b)) => text(hex(&b)),
        (Kind::Enum(members), My::Int(i)) => match i {
            // Index 0 is the '' MySQL stores for an invalid value.
            0 => text(String::new()),
            i => members
                .get(i as usize - 1)
                .map(|m| Value::text(m))
                .ok_or_else(|| format!("ENUM index {i} beyond its {} members", members.len())),
        },
        (Kind::Set(members), My::Bytes(mask)) if origin == Origin::Binlog => {
            let bits = mask
                .iter()
                .rev()
                .fold(0u64, |acc, &x| acc << 8 | u64::from(x));
            let names: Vec<&str> = (0..members.len())
                .filter(|i| bits >> i & 1 == 1)
                .map(|i| members[i].as_str())
                .collect();
            text(names.join(","))
        }
        (Kind::Enum(_) | Kind::Set(_) | Kind::Decimal, My::Bytes(b)) => utf8(b),
        (Kind::Json, My::Bytes(b)) => utf8(b),
        // A zero month or day makes a zero date; year 0 alone is a real date (DuckDB: 1 BC).
        (Kind::Date, My::Date(y, m, d, ..)) => {
            if m == 0 || d == 0 {
                return zero_date(zero, format!("{y:04}-{m:02}-{d:02}"));
            }
            text(format!("{y:04}-{m:02}-{d:02}"))
        }
        (Kind::DateTime, My::Date(y, mo, d, h, mi, s, us)) => {
            let t = datetime(y, mo, d, h, mi, s, us);
            if mo == 0 || d == 0 {
                return zero_date(zero, t);
            }
            text(t)
        }
        (Kind::Timestamp, My::Date(y, mo, d, h, mi, s, us)) => {
            let t = datetime(y, mo, d, h, mi, s, us);
            if mo == 0 || d == 0 {
                return zero_date(zero, t);
            }
            text(t + "+00")
        }
        // Binlog TIMESTAMP2: "seconds[.micros]" since the epoch; TIMESTAMP (old): seconds.
        (Kind::Timestamp, My::Bytes(b)) => {
            let s = std::str::from_utf8(&b).map_err(|_| "TIMESTAMP not text".to_string())?;
            let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
            let sec: i64 = sec.parse().map_err(|_| format!("TIMESTAMP `{s}`"))?;
            let us: i64 = format!("{frac:0<6}")[..6]
                .parse()
                .map_err(|_| format!("TIMESTAMP `{s}`"))?;
            if sec == 0 && us == 0 {
                return zero_date(zero, "0000-00-00 00:00:00".into());
            }
            text(format_utc_micros(sec * 1_000_000 + us))
        }
        (Kind::Timestamp, My::Int(sec)) => {
            if sec == 0 {
                return zero_date(zero, "0000-00-00 00:00:00".into());
            }
            text(format_utc_micros(sec * 1_000_000))
        }
        (Kind::Time, My::Time(neg, days, h, m, s, us)) => {
            let hours = days * 24 + u32::from(h);
            let mut t = format!("{}{hours:02}:{m:02}:{s:02}", if neg { "-" } else { "" });
            if us != 0 {
                let _ = write!(t, ".{us:06}");
            }
            text(t)
        }
        (kind, v) => Err(format!("unexpected value {v:?} for a {kind:?} column")),
    }
}

fn zero_date(policy: ZeroDates, shown: String) -> Result<Value, String> {
    match policy {
        ZeroDates::Null => Ok(Value::Null),
        ZeroDates::Error => Err(format!(
            "zero date `{shown}` (set source.zero_dates = \"null\" to replicate it as NULL)"
        )),
    }
}

/// An integer's decimal text (`itoa`: the same digits as `to_string`, without `core::fmt`).
fn integer(i: impl itoa::Integer) -> Value {
    Value::Text(Bytes::copy_from_slice(
        itoa::Buffer::new().format(i).as_bytes(),
    ))
}

fn datetime(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> String {
    let mut t = Vec::with_capacity(26);
    t.extend_from_slice(datetime_text(&mut [0; 26], (y, mo, d), (h, mi, s, us)));
    String::from_utf8(t).expect("ASCII digits")
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (the canonical `DATETIME` text), written into `buf`: the
/// digits by hand, as `{y:04}-{mo:02}-…` would write them (a year or fraction past its width
/// is cut to it: MariaDB's are at most 9999 and 999999).
pub fn datetime_text(
    buf: &mut [u8; 26],
    (y, mo, d): (u16, u8, u8),
    (h, mi, s, us): (u8, u8, u8, u32),
) -> &[u8] {
    fn digits(out: &mut [u8], mut v: u32) {
        for b in out.iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    digits(&mut buf[0..4], u32::from(y));
    buf[4] = b'-';
    digits(&mut buf[5..7], u32::from(mo));
    buf[7] = b'-';
    digits(&mut buf[8..10], u32::from(d));
    buf[10] = b' ';
    digits(&mut buf[11..13], u32::from(h));
    buf[13] = b':';
    digits(&mut buf[14..16], u32::from(mi));
    buf[16] = b':';
    digits(&mut buf[17..19], u32::from(s));
    if us == 0 {
        return &buf[..19];
    }
    buf[19] = b'.';
    digits(&mut buf[20..26], us);
    &buf[..]
}

fn utf8(b: Vec<u8>) -> Result<Value, String> {
    String::from_utf8(b)
        .map(|s| Value::Text(s.into()))
        .map_err(|_| "text is not valid UTF-8".to_string())
}

pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(b.len() * 2);
    for &x in b {
        out.push(DIGITS[usize::from(x >> 4)] as char);
        out.push(DIGITS[usize::from(x & 15)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn conv(kind: &Kind, v: My, origin: Origin) -> Result<Value, String> {
        convert(kind, v, origin, ZeroDates::Null)
    }
    fn t(s: &str) -> Value {
        Value::text(s)
    }

    #[test]
    fn hand_written_digits_equal_the_formatted_ones() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let mut cases = vec![
            (0, 0, 0, 0, 0, 0, 0),
            (9999, 12, 31, 23, 59, 59, 999_999),
            (1, 1, 1, 0, 0, 0, 1),
            (1970, 1, 1, 0, 0, 0, 100_000),
        ];
        for _ in 0..10_000 {
            cases.push((
                next(10_000) as u16,
                next(13) as u8,
                next(32) as u8,
                next(24) as u8,
                next(60) as u8,
                next(60) as u8,
                if next(2) == 0 {
                    0
                } else {
                    next(1_000_000) as u32
                },
            ));
        }
        for (y, mo, d, h, mi, s, us) in cases {
            let mut expected = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
            if us != 0 {
                expected += &format!(".{us:06}");
            }
            assert_eq!(datetime(y, mo, d, h, mi, s, us), expected);
        }
        for i in [i64::MIN, -1, 0, 7, i64::MAX] {
            assert_eq!(integer(i), Value::text(&i.to_string()));
        }
        assert_eq!(integer(u64::MAX), Value::text(&u64::MAX.to_string()));
    }

    #[test]
    fn integers_and_floats() {
        assert_eq!(
            conv(&Kind::Unsigned, My::UInt(u64::MAX), Origin::Binlog),
            Ok(t("18446744073709551615"))
        );
        assert_eq!(
            conv(&Kind::Signed, My::Int(-128), Origin::Binlog),
            Ok(t("-128"))
        );
        assert_eq!(
            conv(&Kind::Float, My::Float(0.1), Origin::Binlog),
            Ok(t("0.1"))
        );
        // Plain decimal notation, every digit: -15 followed by 299 zeros.
        let minus_1_5e300 = format!("-15{}", "0".repeat(299));
        assert_eq!(
            conv(&Kind::Double, My::Double(-1.5e300), Origin::Binlog),
            Ok(t(&minus_1_5e300))
        );
        assert_eq!(
            conv(&Kind::Double, My::Double(0.1), Origin::Binlog),
            Ok(t("0.1"))
        );
        assert_eq!(
            conv(&Kind::Bit, My::Bytes(vec![1, 2]), Origin::Binlog),
            Ok(t("258"))
        );
    }

    #[test]
    fn enums_sets_and_binary_padding() {
        let members: Arc<[String]> = vec!["a".to_string(), "b".into(), "c".into()].into();
        assert_eq!(
            conv(&Kind::Enum(members.clone()), My::Int(2), Origin::Binlog),
            Ok(t("b"))
        );
        assert_eq!(
            conv(&Kind::Enum(members.clone()), My::Int(0), Origin::Binlog),
            Ok(t(""))
        );
        assert!(conv(&Kind::Enum(members.clone()), My::Int(9), Origin::Binlog).is_err());
        assert_eq!(
            conv(
                &Kind::Set(members.clone()),
                My::Bytes(vec![0b101]),
                Origin::Binlog
            ),
            Ok(t("a,c"))
        );
        assert_eq!(
            conv(
                &Kind::Set(members),
                My::Bytes(b"a,c".to_vec()),
                Origin::Snapshot
            ),
            Ok(t("a,c"))
        );
        let bin = Kind::Binary { pad_to: Some(4) };
        assert_eq!(
            conv(&bin, My::Bytes(vec![0xab]), Origin::Binlog),
            Ok(t("ab000000"))
        );
        assert_eq!(
            conv(&bin, My::Bytes(vec![0xab, 0, 0, 0]), Origin::Snapshot),
            Ok(t("ab000000"))
        );
    }

    #[test]
    fn temporal_values() {
        assert_eq!(
            conv(
                &Kind::Time,
                My::Time(true, 34, 22, 59, 59, 0),
                Origin::Binlog
            ),
            Ok(t("-838:59:59"))
        );
        assert_eq!(
            conv(
                &Kind::Time,
                My::Time(false, 0, 1, 2, 3, 500),
                Origin::Binlog
            ),
            Ok(t("01:02:03.000500"))
        );
        assert_eq!(
            conv(
                &Kind::DateTime,
                My::Date(2024, 2, 29, 23, 59, 59, 999999),
                Origin::Binlog
            ),
            Ok(t("2024-02-29 23:59:59.999999"))
        );
        assert_eq!(
            conv(
                &Kind::Timestamp,
                My::Bytes(b"1700000000.5".to_vec()),
                Origin::Binlog
            ),
            Ok(t("2023-11-14 22:13:20.500000+00"))
        );
        assert_eq!(
            conv(
                &Kind::Timestamp,
                My::Date(2023, 11, 14, 22, 13, 20, 500000),
                Origin::Snapshot
            ),
            Ok(t("2023-11-14 22:13:20.500000+00"))
        );
        assert_eq!(
            conv(&Kind::Date, My::Date(0, 0, 0, 0, 0, 0, 0), Origin::Binlog),
            Ok(Value::Null)
        );
        assert_eq!(
            conv(&Kind::Date, My::Date(0, 6, 15, 0, 0, 0, 0), Origin::Binlog),
            Ok(t("0000-06-15"))
        );
        let err = convert(
            &Kind::Date,
            My::Date(2020, 0, 1, 0, 0, 0, 0),
            Origin::Binlog,
            ZeroDates::Error,
        )
        .unwrap_err();
        assert!(
            err.contains("zero date") && err.contains("zero_dates"),
            "{err}"
        );
    }

    #[test]
    fn legacy_charsets_decode_only_from_the_binlog() {
        let enc = encoding_rs::WINDOWS_1252;
        let k = Kind::Text(Charset::Legacy(enc));
        assert_eq!(
            conv(&k, My::Bytes(b"\x80uro".to_vec()), Origin::Binlog),
            Ok(t("€uro"))
        );
        assert_eq!(
            conv(&k, My::Bytes("€uro".as_bytes().to_vec()), Origin::Snapshot),
            Ok(t("€uro"))
        );
        assert!(conv(
            &Kind::Text(Charset::Utf8),
            My::Bytes(vec![0xff]),
            Origin::Binlog
        )
        .is_err());
    }
}
