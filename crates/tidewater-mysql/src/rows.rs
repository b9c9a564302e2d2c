//! Binlog row images to changes. A [`TableMap`] is built once per `TABLE_MAP_EVENT` of a
//! selected table (checked against the schema tidewater replicates, so a row is never mapped
//! onto the wrong columns after an ALTER); then every row is decoded straight into canonical
//! text, without building mysql_common's per-row column metadata: the common types from their
//! bytes into a shared buffer (`raw_values`), the rest with mysql_common's value decoder.

use std::sync::Arc;

use mysql_common::binlog::events::{OptionalMetadataField, RowsEventData, TableMapEvent};
use mysql_common::binlog::misc;
use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnType as MyType;
use mysql_common::io::ParseBuf;
use mysql_common::value::Value as My;
use tidewater_core::{Change, ChangeKind, ColumnType, TableSchema, Value};

use crate::raw_values::{Raw, TextArena};
use crate::types::Kind;
use crate::value::{convert, Origin, ZeroDates};

/// How to decode one column of a table's row images.
#[derive(Debug, Clone)]
struct ColDecode {
    ty: MyType,
    meta: Vec<u8>,
    unsigned: bool,
    kind: Kind,
    /// Read from its bytes (`raw_values`), when its type is a common one.
    raw: Option<Raw>,
}

impl ColDecode {
    fn new(ty: MyType, meta: Vec<u8>, kind: &Kind) -> ColDecode {
        ColDecode {
            raw: Raw::of(ty, &meta, kind),
            ty,
            meta,
            unsigned: matches!(kind, Kind::Unsigned),
            kind: kind.clone(),
        }
    }
}

/// A selected table as the binlog currently describes it.
#[derive(Debug, Clone)]
pub struct TableMap {
    pub table: Arc<TableSchema>,
    cols: Vec<ColDecode>,
}

impl TableMap {
    /// Checks the table map event against the replicated schema (`kinds` parallel to
    /// `table.columns`). `Err` explains the mismatch: the table changed under us.
    pub fn new(
        tme: &TableMapEvent<'_>,
        table: Arc<TableSchema>,
        kinds: &[Kind],
    ) -> Result<TableMap, String> {
        let n = tme.columns_count() as usize;
        if n != table.columns.len() {
            return Err(format!(
                "the binlog has {n} columns for it, tidewater replicates {} ({})",
                table.columns.len(),
                names(&table)
            ));
        }
        if let Some(binlog_names) = column_names(tme) {
            if binlog_names
                .iter()
                .zip(&table.columns)
                .any(|(a, c)| a != &c.name)
            {
                return Err(format!(
                    "the binlog names its columns ({}), tidewater replicates ({})",
                    binlog_names.join(", "),
                    names(&table)
                ));
            }
        }
        let mut cols = Vec::with_capacity(n);
        for (i, kind) in kinds.iter().enumerate() {
            let ty = tme
                .get_column_type(i)
                .ok()
                .flatten()
                .ok_or_else(|| format!("unknown binlog type for column {i}"))?;
            let meta = tme.get_column_metadata(i).unwrap_or_default().to_vec();
            if !fits(kind, &table.columns[i].ty, ty, &meta) {
                return Err(format!(
                    "column `{}` is {ty:?} in the binlog, tidewater replicates {}",
                    table.columns[i].name, table.columns[i].source_type
                ));
            }
            cols.push(ColDecode::new(ty, meta, kind));
        }
        Ok(TableMap { table, cols })
    }

    /// Appends the changes of one rows event, their text in `arena`. `Err` names what could
    /// not be decoded.
    pub fn decode(
        &self,
        ev: &RowsEventData<'_>,
        (zero, arena): (ZeroDates, &mut TextArena),
        out: &mut Vec<Change>,
    ) -> Result<(), String> {
        let n = self.cols.len();
        let full = |bits: Option<Vec<bool>>| -> Result<bool, String> {
            match bits {
                None => Ok(false),
                Some(b) if b.iter().take(n).all(|x| *x) => Ok(true),
                Some(_) => Err(
                    "a row image without all columns: set binlog_row_image=FULL on the source"
                        .to_string(),
                ),
            }
        };
        let before = full(
            ev.columns_before_image()
                .map(|b| b.iter().map(|x| *x).collect()),
        )?;
        let after = full(
            ev.columns_after_image()
                .map(|b| b.iter().map(|x| *x).collect()),
        )?;
        let mut buf = ParseBuf(ev.rows_data());
        while !buf.is_empty() {
            let old = if before {
                Some(self.image(&mut buf, zero, arena)?)
            } else {
                None
            };
            let new = if after {
                Some(self.image(&mut buf, zero, arena)?)
            } else {
                None
            };
            out.push(self.change(old, new)?);
        }
        Ok(())
    }

    fn change(&self, old: Option<Vec<Value>>, new: Option<Vec<Value>>) -> Result<Change, String> {
        let table = self.table.clone();
        Ok(match (old, new) {
            (None, Some(row)) => Change {
                table,
                kind: ChangeKind::Insert,
                row,
                old: None,
            },
            (Some(row), None) => Change {
                table,
                kind: ChangeKind::Delete,
                row,
                old: None,
            },
            (Some(old), Some(row)) => {
                let old = if table.has_key() {
                    let old_key: Vec<Value> = table.key.iter().map(|&k| old[k].clone()).collect();
                    let changed = table.key.iter().zip(&old_key).any(|(&k, o)| &row[k] != o);
                    changed.then_some(old_key)
                } else {
                    Some(old)
                };
                Change {
                    table,
                    kind: ChangeKind::Update,
                    row,
                    old,
                }
            }
            (None, None) => return Err("a rows event without row images".into()),
        })
    }

    fn image(
        &self,
        buf: &mut ParseBuf<'_>,
        zero: ZeroDates,
        arena: &mut TextArena,
    ) -> Result<Vec<Value>, String> {
        let n = self.cols.len();
        let nulls = buf
            .checked_eat(n.div_ceil(8))
            .ok_or("row image truncated")?;
        let mut row = Vec::with_capacity(n);
        for (i, c) in self.cols.iter().enumerate() {
            if nulls[i / 8] >> (i % 8) & 1 == 1 {
                row.push(Value::Null);
                continue;
            }
            let v = match c.raw.map(|raw| raw.read(buf, arena)).transpose() {
                Ok(Some(Some(v))) => Ok(v),
                Ok(_) => self.value(c, buf, zero),
                Err(e) => Err(e),
            }
            .map_err(|e| format!("column `{}`: {e}", self.table.columns[i].name))?;
            row.push(v);
        }
        Ok(row)
    }

    fn value(
        &self,
        c: &ColDecode,
        buf: &mut ParseBuf<'_>,
        zero: ZeroDates,
    ) -> Result<Value, String> {
        if c.ty == MyType::MYSQL_TYPE_YEAR {
            // mysql_common turns the stored 0 of year 0000 into 1900.
            let y = buf.checked_eat(1).ok_or("row image truncated")?[0];
            let year = if y == 0 { 0 } else { 1900 + i64::from(y) };
            return Ok(Value::text(&year.to_string()));
        }
        if c.ty == MyType::MYSQL_TYPE_INT24 && !c.unsigned {
            // mysql_common reads a signed MEDIUMINT without sign extension (-1 as 16777215).
            let b = buf.checked_eat(3).ok_or("row image truncated")?;
            return convert(&c.kind, My::Int(signed_int24(b)), Origin::Binlog, zero);
        }
        if c.ty == MyType::MYSQL_TYPE_TIME2 && matches!(c.meta.first(), Some(1 | 2)) {
            let b = buf.checked_eat(4).ok_or("row image truncated")?;
            return convert(&c.kind, time2_hundredths(b), Origin::Binlog, zero);
        }
        // The decoder ties the metadata's lifetime to the buffer's: decode from a reborrow.
        let data: &[u8] = buf.0;
        let mut local = ParseBuf(data);
        let v: BinlogValue<'_> = local
            .parse((c.ty, c.meta.as_slice(), c.unsigned, false))
            .map_err(|e| format!("undecodable {:?} value: {e}", c.ty))?;
        let consumed = data.len() - local.0.len();
        buf.0 = &buf.0[consumed..];
        let v = match v {
            BinlogValue::Value(v) => v,
            BinlogValue::Jsonb(j) => {
                let json =
                    serde_json::Value::try_from(j).map_err(|e| format!("undecodable JSON: {e}"))?;
                My::Bytes(json.to_string().into_bytes())
            }
            BinlogValue::JsonDiff(_) => {
                return Err(
                    "a partial JSON update: set binlog_row_value_options='' on the source".into(),
                )
            }
        };
        convert(&c.kind, v, Origin::Binlog, zero)
    }
}

/// A signed `MEDIUMINT` (3 bytes, little-endian, two's complement).
fn signed_int24(b: &[u8]) -> i64 {
    i64::from(i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8)
}

/// A `TIME(1)`/`TIME(2)` binlog value (3 bytes of packed seconds, 1 byte of hundredths).
/// mysql_common borrows the fraction of a negative value from an unsigned byte (an overflow
/// panic, or a wrong value); this is MySQL's own arithmetic.
fn time2_hundredths(b: &[u8]) -> My {
    let mut int =
        (i64::from(b[0]) << 16 | i64::from(b[1]) << 8 | i64::from(b[2])) - misc::TIMEF_INT_OFS;
    let mut frac = i64::from(b[3]);
    if int < 0 && frac > 0 {
        int += 1;
        frac -= 0x100;
    }
    misc::time_from_packed(misc::my_packed_time_make(int, frac * 10_000))
}

fn names(t: &TableSchema) -> String {
    t.columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Column names, when the source logs them (`binlog_row_metadata=FULL`).
fn column_names(tme: &TableMapEvent<'_>) -> Option<Vec<String>> {
    tme.iter_optional_meta().find_map(|f| match f {
        Ok(OptionalMetadataField::ColumnName(names)) => Some(
            names
                .iter_names()
                .filter_map(|n| n.ok().map(|n| n.name().into_owned()))
                .collect(),
        ),
        _ => None,
    })
}

/// Whether a binlog column (type and metadata) is the replicated column: same integer width,
/// same decimal precision and scale, same kind otherwise. A difference means the table was
/// altered.
fn fits(kind: &Kind, replicated: &ColumnType, ty: MyType, meta: &[u8]) -> bool {
    use ColumnType as C;
    use MyType::*;
    match kind {
        Kind::Signed | Kind::Unsigned => matches!(
            (replicated, ty),
            (C::Int8 | C::UInt8, MYSQL_TYPE_TINY)
                | (C::Int16 | C::UInt16, MYSQL_TYPE_SHORT)
                | (C::Int32 | C::UInt32, MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG)
                | (C::Int64 | C::UInt64, MYSQL_TYPE_LONGLONG)
        ),
        Kind::Decimal => match replicated {
            C::Decimal { precision, scale } => {
                ty == MYSQL_TYPE_NEWDECIMAL && meta == [*precision, *scale]
            }
            _ => false,
        },
        Kind::Float => ty == MYSQL_TYPE_FLOAT,
        Kind::Double => ty == MYSQL_TYPE_DOUBLE,
        Kind::Bit => ty == MYSQL_TYPE_BIT,
        Kind::Text(_) | Kind::Binary { .. } | Kind::Json | Kind::Geometry => matches!(
            ty,
            MYSQL_TYPE_STRING
                | MYSQL_TYPE_VAR_STRING
                | MYSQL_TYPE_VARCHAR
                | MYSQL_TYPE_BLOB
                | MYSQL_TYPE_TINY_BLOB
                | MYSQL_TYPE_MEDIUM_BLOB
                | MYSQL_TYPE_LONG_BLOB
                | MYSQL_TYPE_JSON
                | MYSQL_TYPE_GEOMETRY
        ),
        Kind::Enum(_) => ty == MYSQL_TYPE_ENUM,
        Kind::Set(_) => ty == MYSQL_TYPE_SET,
        Kind::Date => matches!(ty, MYSQL_TYPE_NEWDATE | MYSQL_TYPE_DATE),
        Kind::Time => matches!(ty, MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2),
        Kind::DateTime => matches!(ty, MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2),
        Kind::Timestamp => matches!(ty, MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2),
        Kind::Year => ty == MYSQL_TYPE_YEAR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Charset;
    use tidewater_core::{Column, TableId};
    use MyType::*;

    /// A table map of these columns (`c0`, `c1`, ...), as `TableMap::new` builds one.
    fn table_map(cols: &[(MyType, &[u8], Kind)]) -> TableMap {
        let columns = (0..cols.len())
            .map(|i| Column {
                name: format!("c{i}"),
                ty: ColumnType::Text,
                nullable: true,
                source_type: String::new(),
            })
            .collect();
        TableMap {
            table: Arc::new(TableSchema {
                id: TableId::new("s", "t"),
                columns,
                key: vec![],
            }),
            cols: cols
                .iter()
                .map(|(ty, meta, kind)| ColDecode::new(*ty, meta.to_vec(), kind))
                .collect(),
        }
    }

    /// xorshift64: reproducible bytes without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Value bytes as a server writes them for the column (and some it never writes: bytes
    /// that are not UTF-8, truncated images), edges first.
    fn samples(ty: MyType, meta: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        match ty {
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
            | MYSQL_TYPE_LONGLONG => {
                let width = match ty {
                    MYSQL_TYPE_TINY => 1,
                    MYSQL_TYPE_SHORT => 2,
                    MYSQL_TYPE_INT24 => 3,
                    MYSQL_TYPE_LONG => 4,
                    _ => 8,
                };
                for edge in [0u8, 0xff, 0x7f, 0x80] {
                    let mut b = vec![edge; width];
                    out.push(b.clone());
                    b[width - 1] ^= 0x80;
                    out.push(b);
                }
                out.extend((0..200).map(|_| rng.bytes(width)));
                out.push(vec![0; width - 1]);
            }
            MYSQL_TYPE_VARCHAR | MYSQL_TYPE_BLOB => {
                let length_bytes = match ty {
                    MYSQL_TYPE_BLOB => usize::from(meta[0]),
                    _ if u16::from_le_bytes([meta[0], meta[1]]) < 256 => 1,
                    _ => 2,
                };
                let chars = [
                    'a',
                    '\0',
                    'é',
                    '€',
                    '日',
                    '🎉',
                    '\u{7f}',
                    '\u{80}',
                    '\u{10ffff}',
                ];
                for i in 0..300 {
                    let len = rng.below(if i % 10 == 0 { 300 } else { 20 }) as usize;
                    let text: Vec<u8> = if i % 3 == 0 {
                        rng.bytes(len)
                    } else {
                        (0..len)
                            .map(|_| chars[rng.below(chars.len() as u64) as usize])
                            .collect::<String>()
                            .into_bytes()
                    };
                    if length_bytes == 1 && text.len() > 255 {
                        continue;
                    }
                    let mut b = (text.len() as u32).to_le_bytes()[..length_bytes].to_vec();
                    b.extend_from_slice(&text);
                    if i % 50 == 0 {
                        b.pop();
                    }
                    out.push(b);
                }
            }
            MYSQL_TYPE_TIMESTAMP2 => {
                // The fraction as stored: below 10^2, 10^4, 10^6 in 1, 2, 3 bytes. (Seconds
                // past 2^31 are not compared: mysql_common reads them as an i32.)
                let (fraction_bytes, limit) = match meta[0] {
                    0 => (0, 1),
                    1 | 2 => (1, 100),
                    3 | 4 => (2, 10_000),
                    _ => (3, 1_000_000),
                };
                for i in 0..300 {
                    let sec = match i {
                        0 | 1 => 0,
                        2 => i32::MAX as u32,
                        _ => rng.below(1 << 31) as u32,
                    };
                    let frac = if i == 0 { 0 } else { rng.below(limit) as u32 };
                    let mut b = sec.to_be_bytes().to_vec();
                    b.extend_from_slice(&frac.to_be_bytes()[4 - fraction_bytes..]);
                    out.push(b);
                }
                out.push(vec![0x65; 3]);
            }
            MYSQL_TYPE_DATETIME2 => {
                let fraction_bytes = usize::from(meta[0]).div_ceil(2);
                out.push([&[0x80, 0, 0, 0, 0][..], &vec![0; fraction_bytes]].concat());
                for _ in 0..300 {
                    // Mostly valid dates (sign bit set), any fields: both ways decode the
                    // same packed integer.
                    let mut b = rng.bytes(5 + fraction_bytes);
                    b[0] |= 0x80;
                    out.push(b);
                }
                out.push(vec![0x99; 4 + fraction_bytes]);
            }
            _ => unreachable!("no samples for {ty:?}"),
        }
        out
    }

    /// Every column type read from its bytes (`raw_values`) gives the value, and takes the
    /// bytes, that mysql_common's decoder and `convert` give and take; a value the raw reading
    /// leaves to them (zero dates) is left untouched.
    #[test]
    fn raw_readings_equal_the_generic_decoder() {
        let utf8 = || Kind::Text(Charset::Utf8);
        let mut columns: Vec<(MyType, Vec<u8>, Kind)> = Vec::new();
        for ty in [
            MYSQL_TYPE_TINY,
            MYSQL_TYPE_SHORT,
            MYSQL_TYPE_INT24,
            MYSQL_TYPE_LONG,
            MYSQL_TYPE_LONGLONG,
        ] {
            columns.push((ty, vec![], Kind::Signed));
            columns.push((ty, vec![], Kind::Unsigned));
        }
        columns.push((MYSQL_TYPE_VARCHAR, vec![200, 0], utf8()));
        columns.push((MYSQL_TYPE_VARCHAR, vec![255, 0], utf8()));
        columns.push((MYSQL_TYPE_VARCHAR, vec![0, 1], utf8()));
        for n in 1..=4 {
            columns.push((MYSQL_TYPE_BLOB, vec![n], utf8()));
        }
        for fsp in 0..=6 {
            columns.push((MYSQL_TYPE_TIMESTAMP2, vec![fsp], Kind::Timestamp));
            columns.push((MYSQL_TYPE_DATETIME2, vec![fsp], Kind::DateTime));
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for (ty, meta, kind) in &columns {
            let map = table_map(&[(*ty, meta, kind.clone())]);
            let c = &map.cols[0];
            let raw = c
                .raw
                .unwrap_or_else(|| panic!("{ty:?} {meta:?} is read raw"));
            let mut read_raw = 0;
            for bytes in samples(*ty, meta, &mut rng) {
                let what = format!("{ty:?} {meta:?} {kind:?} {bytes:02x?}");
                let mut generic_buf = ParseBuf(&bytes);
                let generic = map.value(c, &mut generic_buf, ZeroDates::Null);
                let mut raw_buf = ParseBuf(&bytes);
                match raw.read(&mut raw_buf, &mut TextArena::default()) {
                    Ok(Some(v)) => {
                        read_raw += 1;
                        assert_eq!(Ok(v), generic, "{what}");
                        assert_eq!(raw_buf.0.len(), generic_buf.0.len(), "{what}");
                    }
                    Ok(None) => assert_eq!(raw_buf.0.len(), bytes.len(), "{what}"),
                    Err(e) => assert!(generic.is_err(), "{what}: raw {e}, generic {generic:?}"),
                }
            }
            assert!(
                read_raw > 100,
                "{ty:?} {meta:?}: {read_raw} values read raw"
            );
        }
    }

    /// The NULL bitmap (one bit per column, low bit first, over two bytes here) skips the
    /// columns it marks, raw and generic readings alike; images follow one another exactly.
    #[test]
    fn null_bitmaps_and_mixed_readings() {
        let utf8 = Kind::Text(Charset::Utf8);
        let map = table_map(&[
            (MYSQL_TYPE_LONG, &[], Kind::Signed),
            (MYSQL_TYPE_VARCHAR, &[40, 0], utf8.clone()),
            (MYSQL_TYPE_TIMESTAMP2, &[3], Kind::Timestamp),
            (MYSQL_TYPE_DOUBLE, &[8], Kind::Double),
            (MYSQL_TYPE_TINY, &[], Kind::Unsigned),
            (MYSQL_TYPE_BLOB, &[2], utf8.clone()),
            (MYSQL_TYPE_NEWDATE, &[], Kind::Date),
            (MYSQL_TYPE_DATETIME2, &[0], Kind::DateTime),
            (MYSQL_TYPE_LONGLONG, &[], Kind::Signed),
            (MYSQL_TYPE_VARCHAR, &[40, 0], utf8),
        ]);
        let datetime = (((2024u64 * 13 + 2) << 5 | 29) << 17) + 0x80_0000_0000;
        let newdate = (2024u32 << 9 | 2 << 5 | 29).to_le_bytes();
        // Image 1: columns 1, 4, 8 and 9 NULL (bits 1, 4 of byte 0; 0, 1 of byte 1).
        let mut rows = vec![0b0001_0010, 0b0000_0011];
        rows.extend_from_slice(&(-7i32).to_le_bytes());
        rows.extend_from_slice(&[0x65, 0x53, 0xf1, 0x00, 0x00, 0x01]);
        rows.extend_from_slice(&1.5f64.to_le_bytes());
        rows.extend_from_slice(&[3, 0]);
        rows.extend_from_slice("日".as_bytes());
        rows.extend_from_slice(&newdate[..3]);
        rows.extend_from_slice(&datetime.to_be_bytes()[3..]);
        // Image 2: only column 0 NULL, the others set.
        rows.extend_from_slice(&[0b0000_0001, 0b0000_0000]);
        rows.extend_from_slice(&[2, b'h', b'i']);
        rows.extend_from_slice(&[0; 6]);
        rows.extend_from_slice(&(-0.0f64).to_le_bytes());
        rows.push(255);
        rows.extend_from_slice(&[0, 0]);
        rows.extend_from_slice(&[0, 0, 0]);
        rows.extend_from_slice(&(0x80_0000_0000u64).to_be_bytes()[3..]);
        rows.extend_from_slice(&i64::MIN.to_le_bytes());
        rows.extend_from_slice(&[1, b'z']);

        let t = |s: &str| Value::text(s);
        let mut buf = ParseBuf(&rows);
        let mut arena = TextArena::default();
        let first = map.image(&mut buf, ZeroDates::Null, &mut arena).unwrap();
        assert_eq!(
            first,
            vec![
                t("-7"),
                Value::Null,
                t("2023-11-14 22:13:20.000100+00"),
                t("1.5"),
                Value::Null,
                t("日"),
                t("2024-02-29"),
                t("2024-02-29 00:00:00"),
                Value::Null,
                Value::Null,
            ]
        );
        let rest = buf.0;
        let second = map.image(&mut buf, ZeroDates::Null, &mut arena).unwrap();
        assert_eq!(
            second,
            vec![
                Value::Null,
                t("hi"),
                Value::Null,
                t("-0"),
                t("255"),
                t(""),
                Value::Null,
                Value::Null,
                t("-9223372036854775808"),
                t("z"),
            ]
        );
        assert!(buf.is_empty());
        // Zero dates under the error policy stop, naming the column (raw readings leave
        // them to the policy).
        let err = map
            .image(&mut ParseBuf(rest), ZeroDates::Error, &mut arena)
            .unwrap_err();
        assert!(
            err.contains("column `c2`") && err.contains("zero date"),
            "{err}"
        );
    }

    #[test]
    fn signed_mediumint_is_sign_extended() {
        assert_eq!(signed_int24(&[0xff, 0xff, 0xff]), -1);
        assert_eq!(signed_int24(&[0x00, 0x00, 0x80]), -8_388_608);
        assert_eq!(signed_int24(&[0xff, 0xff, 0x7f]), 8_388_607);
    }

    #[test]
    fn negative_time_with_hundredths() {
        // -00:00:01.5 as TIME(1): packed seconds -2 (+ 0x800000), hundredths -50 as a byte.
        assert_eq!(
            time2_hundredths(&[0x7f, 0xff, 0xfe, 0xce]),
            My::Time(true, 0, 0, 0, 1, 500_000)
        );
        assert_eq!(
            time2_hundredths(&[0x80, 0x00, 0x01, 50]),
            My::Time(false, 0, 0, 0, 1, 500_000)
        );
    }
}
