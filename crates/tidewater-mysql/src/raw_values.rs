//! The common column types of binlog row images read straight from their bytes into
//! canonical text, written into one shared buffer ([`TextArena`]).
//!
//! Decoding every value through mysql_common's generic value (then `convert`) costs an
//! allocation or two per value and, for integers and timestamps, a round trip through text
//! (`TIMESTAMP` arrives as `"seconds.micros"`, is parsed and formatted again). The drain of a
//! binlog is mostly integers, UTF-8 strings and timestamps, so those are read here from
//! their storage format, which is fixed by MySQL's row format: little-endian integers of the
//! column's width; `VARCHAR`/`BLOB` as a little-endian length (its width from the table
//! map's metadata) and the bytes; `TIMESTAMP2` as big-endian seconds and a big-endian
//! fraction of `(fsp + 1) / 2` bytes; `DATETIME2` through mysql_common's packed-value
//! decoder, without its generic value. The text is the same canonical text `convert` makes
//! (`value.rs`); anything else, and any value that needs a policy (a zero timestamp), is
//! left to `convert` (`None`).

use bytes::BytesMut;
use mysql_common::binlog::misc;
use mysql_common::constants::ColumnType as MyType;
use mysql_common::io::ParseBuf;
use mysql_common::value::Value as My;
use tidewater_core::time::write_utc_micros;
use tidewater_core::Value;

use crate::types::{Charset, Kind};
use crate::value::datetime_text;

/// Bytes allocated at a time for value text: the values of many rows share one allocation
/// (kept alive, reference-counted, until the last of them is dropped after the apply).
const CHUNK: usize = 64 << 10;

/// Value text written one after the other into a shared buffer, split off per value.
#[derive(Default)]
pub struct TextArena(BytesMut);

impl TextArena {
    /// A value whose text `write` appends.
    fn value(&mut self, min: usize, write: impl FnOnce(&mut BytesMut)) -> Value {
        if self.0.capacity() < min {
            self.0.reserve(CHUNK.max(min));
        }
        write(&mut self.0);
        Value::Text(self.0.split().freeze())
    }
}

/// How a column's values are read here, decided once per table map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raw {
    /// A little-endian integer of this many bytes.
    Int { width: usize, unsigned: bool },
    /// UTF-8 text after a little-endian length of this many bytes.
    Utf8 { length_bytes: usize },
    /// `TIMESTAMP2` with this many fraction bytes.
    Timestamp { fraction_bytes: usize },
    /// `DATETIME2` with this fractional precision (mysql_common's packed-value decoder).
    DateTime { fsp: u8 },
}

impl Raw {
    /// The direct reading of a column, if it has one.
    pub fn of(ty: MyType, meta: &[u8], kind: &Kind) -> Option<Raw> {
        use MyType::*;
        let unsigned = match kind {
            Kind::Signed => false,
            Kind::Unsigned => true,
            Kind::Text(Charset::Utf8) => {
                let length_bytes = match ty {
                    MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => {
                        let max = u16::from_le_bytes([*meta.first()?, *meta.get(1)?]);
                        if max < 256 {
                            1
                        } else {
                            2
                        }
                    }
                    MYSQL_TYPE_BLOB
                    | MYSQL_TYPE_TINY_BLOB
                    | MYSQL_TYPE_MEDIUM_BLOB
                    | MYSQL_TYPE_LONG_BLOB => match meta.first()? {
                        n @ 1..=4 => usize::from(*n),
                        _ => return None,
                    },
                    _ => return None,
                };
                return Some(Raw::Utf8 { length_bytes });
            }
            Kind::Timestamp if ty == MYSQL_TYPE_TIMESTAMP2 => {
                let fraction_bytes = match meta.first()? {
                    0 => 0,
                    1 | 2 => 1,
                    3 | 4 => 2,
                    5 | 6 => 3,
                    _ => return None,
                };
                return Some(Raw::Timestamp { fraction_bytes });
            }
            Kind::DateTime if ty == MYSQL_TYPE_DATETIME2 => {
                return Some(Raw::DateTime {
                    fsp: *meta.first()?,
                })
            }
            _ => return None,
        };
        let width = match ty {
            MYSQL_TYPE_TINY => 1,
            MYSQL_TYPE_SHORT => 2,
            MYSQL_TYPE_INT24 => 3,
            MYSQL_TYPE_LONG => 4,
            MYSQL_TYPE_LONGLONG => 8,
            _ => return None,
        };
        Some(Raw::Int { width, unsigned })
    }

    /// Reads one value. `Ok(None)`: not read (a zero timestamp, for `convert`'s policy), the
    /// buffer untouched.
    pub fn read(
        self,
        buf: &mut ParseBuf<'_>,
        arena: &mut TextArena,
    ) -> Result<Option<Value>, String> {
        const TRUNCATED: &str = "row image truncated";
        match self {
            Raw::Int { width, unsigned } => {
                let b = buf.checked_eat(width).ok_or(TRUNCATED)?;
                let mut le = [0u8; 8];
                le[..width].copy_from_slice(b);
                let u = u64::from_le_bytes(le);
                Ok(Some(arena.value(20, |out| {
                    let mut digits = itoa::Buffer::new();
                    let text = if unsigned {
                        digits.format(u)
                    } else {
                        // Sign-extend from the column's width.
                        let shift = 64 - 8 * width as u32;
                        digits.format(((u << shift) as i64) >> shift)
                    };
                    out.extend_from_slice(text.as_bytes());
                })))
            }
            Raw::Utf8 { length_bytes } => {
                let b = buf.checked_eat(length_bytes).ok_or(TRUNCATED)?;
                let mut le = [0u8; 4];
                le[..length_bytes].copy_from_slice(b);
                let len = u32::from_le_bytes(le) as usize;
                let text = buf.checked_eat(len).ok_or(TRUNCATED)?;
                std::str::from_utf8(text).map_err(|_| "text is not valid UTF-8".to_string())?;
                Ok(Some(
                    arena.value(text.len(), |out| out.extend_from_slice(text)),
                ))
            }
            Raw::Timestamp { fraction_bytes } => {
                let b = buf.0.get(..4 + fraction_bytes).ok_or(TRUNCATED)?;
                let sec = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let mut be = [0u8; 4];
                be[4 - fraction_bytes..].copy_from_slice(&b[4..]);
                let fraction = u32::from_be_bytes(be);
                let micros = match fraction_bytes {
                    0 => 0,
                    1 => fraction * 10_000,
                    2 => fraction * 100,
                    _ => fraction,
                };
                if sec == 0 && micros == 0 {
                    return Ok(None);
                }
                buf.0 = &buf.0[4 + fraction_bytes..];
                let us = i64::from(sec) * 1_000_000 + i64::from(micros);
                Ok(Some(arena.value(32, |out| {
                    let _ = write_utc_micros(out, us);
                })))
            }
            Raw::DateTime { fsp } => {
                let mut local = ParseBuf(buf.0);
                let packed = misc::my_datetime_packed_from_binary(&mut local, u32::from(fsp))
                    .map_err(|e| format!("undecodable DATETIME value: {e}"))?;
                let My::Date(y, mo, d, h, mi, s, us) = misc::datetime_from_packed(packed) else {
                    return Ok(None);
                };
                if mo == 0 || d == 0 {
                    return Ok(None);
                }
                buf.0 = local.0;
                Ok(Some(arena.value(26, |out| {
                    out.extend_from_slice(datetime_text(&mut [0; 26], (y, mo, d), (h, mi, s, us)));
                })))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: Raw, bytes: &[u8]) -> (Option<Value>, usize) {
        let mut buf = ParseBuf(bytes);
        let v = raw.read(&mut buf, &mut TextArena::default()).unwrap();
        (v, bytes.len() - buf.0.len())
    }

    fn text(s: &str) -> Option<Value> {
        Some(Value::text(s))
    }

    #[test]
    fn integers_of_every_width_and_sign() {
        let signed = |width| Raw::Int {
            width,
            unsigned: false,
        };
        let unsigned = |width| Raw::Int {
            width,
            unsigned: true,
        };
        assert_eq!(read(signed(1), &[0x80]), (text("-128"), 1));
        assert_eq!(read(unsigned(1), &[0x80]), (text("128"), 1));
        assert_eq!(read(signed(3), &[0xff, 0xff, 0xff]), (text("-1"), 3));
        assert_eq!(
            read(unsigned(3), &[0xff, 0xff, 0xff]),
            (text("16777215"), 3)
        );
        assert_eq!(read(signed(4), &[0, 0, 0, 0x80]), (text("-2147483648"), 4));
        assert_eq!(
            read(unsigned(8), &[0xff; 8]),
            (text("18446744073709551615"), 8)
        );
        assert_eq!(read(signed(8), &[0xff; 8]), (text("-1"), 8));
        assert_eq!(read(signed(2), &[0x39, 0x30, 9]), (text("12345"), 2));
    }

    #[test]
    fn utf8_text_with_one_to_four_length_bytes() {
        let short = Raw::of(
            MyType::MYSQL_TYPE_VARCHAR,
            &[200, 0],
            &Kind::Text(Charset::Utf8),
        );
        assert_eq!(short, Some(Raw::Utf8 { length_bytes: 1 }));
        assert_eq!(read(short.unwrap(), b"\x02\xc3\xa9x"), (text("é"), 3));
        let long = Raw::of(
            MyType::MYSQL_TYPE_VARCHAR,
            &[0, 1],
            &Kind::Text(Charset::Utf8),
        );
        assert_eq!(long, Some(Raw::Utf8 { length_bytes: 2 }));
        let blob = Raw::of(MyType::MYSQL_TYPE_BLOB, &[4], &Kind::Text(Charset::Utf8)).unwrap();
        assert_eq!(read(blob, b"\x01\0\0\0a"), (text("a"), 5));
        let mut buf = ParseBuf(b"\x01\xff");
        assert!(short
            .unwrap()
            .read(&mut buf, &mut TextArena::default())
            .is_err());
        let latin1 = Kind::Text(Charset::Legacy(encoding_rs::WINDOWS_1252));
        assert_eq!(
            Raw::of(MyType::MYSQL_TYPE_VARCHAR, &[200, 0], &latin1),
            None
        );
    }

    #[test]
    fn timestamps_with_every_fraction_width() {
        let ts =
            |fsp: u8| Raw::of(MyType::MYSQL_TYPE_TIMESTAMP2, &[fsp], &Kind::Timestamp).unwrap();
        // 1700000000 = 0x6553F100.
        let sec = [0x65, 0x53, 0xf1, 0x00];
        assert_eq!(
            read(ts(0), &sec),
            (text("2023-11-14 22:13:20.000000+00"), 4)
        );
        assert_eq!(
            read(ts(2), &[sec[0], sec[1], sec[2], sec[3], 50]),
            (text("2023-11-14 22:13:20.500000+00"), 5)
        );
        assert_eq!(
            read(ts(4), &[sec[0], sec[1], sec[2], sec[3], 0x13, 0x88]),
            (text("2023-11-14 22:13:20.500000+00"), 6)
        );
        assert_eq!(
            read(ts(6), &[sec[0], sec[1], sec[2], sec[3], 0x07, 0xa1, 0x20]),
            (text("2023-11-14 22:13:20.500000+00"), 7)
        );
        // The zero timestamp is left to the zero-date policy, unread.
        assert_eq!(read(ts(0), &[0, 0, 0, 0]), (None, 0));
    }

    #[test]
    fn datetimes_and_zero_dates() {
        let dt = |fsp: u8| Raw::of(MyType::MYSQL_TYPE_DATETIME2, &[fsp], &Kind::DateTime).unwrap();
        // 2024-02-29 23:59:59: ((2024 * 13 + 2) << 5 | 29) << 17 | 23 << 12 | 59 << 6 | 59,
        // plus 0x8000000000, big-endian in 5 bytes.
        let packed: u64 =
            (((2024 * 13 + 2) << 5 | 29) << 17 | 23 << 12 | 59 << 6 | 59) + 0x80_0000_0000;
        let b = &packed.to_be_bytes()[3..];
        assert_eq!(read(dt(0), b), (text("2024-02-29 23:59:59"), 5));
        let mut with_micros = b.to_vec();
        with_micros.extend_from_slice(&[0x0f, 0x42, 0x3f]); // 999999
        assert_eq!(
            read(dt(6), &with_micros),
            (text("2024-02-29 23:59:59.999999"), 8)
        );
        // A zero date is left to the zero-date policy, unread.
        let zero = 0x80_0000_0000u64.to_be_bytes();
        assert_eq!(read(dt(0), &zero[3..]), (None, 0));
    }

    #[test]
    fn timestamps_of_odd_precision_past_2038_and_at_the_epoch() {
        let ts =
            |fsp: u8| Raw::of(MyType::MYSQL_TYPE_TIMESTAMP2, &[fsp], &Kind::Timestamp).unwrap();
        let sec = [0x65, 0x53, 0xf1, 0x00];
        // fsp 1 stores hundredths (0.7 as 70), fsp 3 hundreds of microseconds, fsp 5 micros.
        assert_eq!(
            read(ts(1), &[sec[0], sec[1], sec[2], sec[3], 70]),
            (text("2023-11-14 22:13:20.700000+00"), 5)
        );
        assert_eq!(
            read(ts(3), &[sec[0], sec[1], sec[2], sec[3], 0x27, 0x0c]),
            (text("2023-11-14 22:13:20.999600+00"), 6)
        );
        assert_eq!(
            read(ts(5), &[sec[0], sec[1], sec[2], sec[3], 0, 0, 10]),
            (text("2023-11-14 22:13:20.000010+00"), 7)
        );
        // Seconds are unsigned: 2^31 is 2038-01-19 03:14:08, the largest 2106-02-07 06:28:15.
        assert_eq!(
            read(ts(0), &[0x80, 0, 0, 0]),
            (text("2038-01-19 03:14:08.000000+00"), 4)
        );
        assert_eq!(
            read(ts(0), &[0xff; 4]),
            (text("2106-02-07 06:28:15.000000+00"), 4)
        );
        // Zero seconds with a fraction is not the zero timestamp.
        assert_eq!(
            read(ts(6), &[0, 0, 0, 0, 0, 0, 1]),
            (text("1970-01-01 00:00:00.000001+00"), 7)
        );
        assert_eq!(read(ts(6), &[0; 7]), (None, 0));
        // A precision MySQL does not have is left to mysql_common's decoder.
        assert_eq!(
            Raw::of(MyType::MYSQL_TYPE_TIMESTAMP2, &[7], &Kind::Timestamp),
            None
        );
        // The old TIMESTAMP (seconds, little-endian) is not read here.
        assert_eq!(
            Raw::of(MyType::MYSQL_TYPE_TIMESTAMP, &[], &Kind::Timestamp),
            None
        );
    }

    #[test]
    fn datetimes_of_every_precision() {
        let dt = |fsp: u8| Raw::of(MyType::MYSQL_TYPE_DATETIME2, &[fsp], &Kind::DateTime).unwrap();
        // 1000-01-01 00:00:00 and its fraction bytes at each precision (MySQL's layout: the
        // fraction in units of 10^-2, 10^-4, 10^-6 s, big-endian in 1, 2, 3 bytes).
        let packed: u64 = (((1000 * 13 + 1) << 5 | 1) << 17) + 0x80_0000_0000;
        let int = &packed.to_be_bytes()[3..];
        let cases: [(u8, &[u8], &str); 6] = [
            (1, &[10], "1000-01-01 00:00:00.100000"),
            (2, &[99], "1000-01-01 00:00:00.990000"),
            (3, &[0x03, 0xe7], "1000-01-01 00:00:00.099900"),
            (4, &[0, 1], "1000-01-01 00:00:00.000100"),
            (5, &[0, 0, 10], "1000-01-01 00:00:00.000010"),
            (6, &[0, 0, 0], "1000-01-01 00:00:00"),
        ];
        for (fsp, frac, want) in cases {
            let bytes = [int, frac].concat();
            assert_eq!(
                read(dt(fsp), &bytes),
                (text(want), bytes.len()),
                "fsp {fsp}"
            );
        }
        // A zero day alone is a zero date too: left to the policy.
        let zero_day: u64 = (((2020 * 13 + 5) << 5) << 17) + 0x80_0000_0000;
        assert_eq!(read(dt(0), &zero_day.to_be_bytes()[3..]), (None, 0));
    }

    #[test]
    fn integer_extremes() {
        let int = |width, unsigned| Raw::Int { width, unsigned };
        assert_eq!(read(int(1, false), &[0]), (text("0"), 1));
        assert_eq!(read(int(1, false), &[0x7f]), (text("127"), 1));
        assert_eq!(read(int(2, false), &[0, 0x80]), (text("-32768"), 2));
        assert_eq!(read(int(2, true), &[0xff, 0xff]), (text("65535"), 2));
        assert_eq!(read(int(3, false), &[0, 0, 0x80]), (text("-8388608"), 3));
        assert_eq!(
            read(int(3, false), &[0xff, 0xff, 0x7f]),
            (text("8388607"), 3)
        );
        assert_eq!(read(int(4, true), &[0xff; 4]), (text("4294967295"), 4));
        let min = [0, 0, 0, 0, 0, 0, 0, 0x80];
        assert_eq!(read(int(8, false), &min), (text("-9223372036854775808"), 8));
        assert_eq!(read(int(8, true), &min), (text("9223372036854775808"), 8));
        let mut max = [0xff; 8];
        max[7] = 0x7f;
        assert_eq!(read(int(8, false), &max), (text("9223372036854775807"), 8));
    }

    #[test]
    fn utf8_of_every_width_empty_and_three_length_bytes() {
        let blob = |n: u8| Raw::of(MyType::MYSQL_TYPE_BLOB, &[n], &Kind::Text(Charset::Utf8));
        let s = "a\0é€🎉\u{10ffff}";
        let mut bytes = vec![s.len() as u8, 0, 0];
        bytes.extend_from_slice(s.as_bytes());
        assert_eq!(read(blob(3).unwrap(), &bytes), (text(s), bytes.len()));
        assert_eq!(read(blob(1).unwrap(), &[0]), (text(""), 1));
        assert_eq!(blob(0), None);
        assert_eq!(blob(5), None);
        // A UTF-8 sequence cut short, and a surrogate (not UTF-8) are refused.
        assert!(try_read(blob(1).unwrap(), b"\x03\xf0\x9f\x8e").is_err());
        assert!(try_read(blob(1).unwrap(), b"\x03\xed\xa0\x80").is_err());
        // CHAR, ENUM and SET share MYSQL_TYPE_STRING (their real type in the metadata): not
        // read here.
        assert_eq!(
            Raw::of(
                MyType::MYSQL_TYPE_STRING,
                &[0xfe, 40],
                &Kind::Text(Charset::Utf8)
            ),
            None
        );
    }

    #[test]
    fn truncated_images_are_errors() {
        let raws = [
            Raw::Int {
                width: 8,
                unsigned: false,
            },
            Raw::Utf8 { length_bytes: 2 },
            Raw::Timestamp { fraction_bytes: 3 },
            Raw::DateTime { fsp: 6 },
        ];
        let short: &[&[u8]] = &[&[1; 7], &[5, 0, b'a'], &[1, 2, 3, 4, 5, 6], &[0x99; 7]];
        for (raw, bytes) in raws.into_iter().zip(short) {
            assert!(try_read(raw, bytes).is_err(), "{raw:?}");
        }
        assert!(try_read(Raw::Utf8 { length_bytes: 2 }, &[5]).is_err());
    }

    fn try_read(raw: Raw, bytes: &[u8]) -> Result<Option<Value>, String> {
        raw.read(&mut ParseBuf(bytes), &mut TextArena::default())
    }

    #[test]
    fn values_share_the_arena_but_stay_apart() {
        let mut arena = TextArena::default();
        let int = Raw::Int {
            width: 1,
            unsigned: true,
        };
        let mut buf = ParseBuf(&[1, 2, 3]);
        let values: Vec<Value> = (0..3)
            .map(|_| int.read(&mut buf, &mut arena).unwrap().unwrap())
            .collect();
        assert_eq!(
            values,
            vec![Value::text("1"), Value::text("2"), Value::text("3")]
        );
    }
}
