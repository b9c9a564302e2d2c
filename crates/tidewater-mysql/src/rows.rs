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
            cols.push(ColDecode {
                raw: Raw::of(ty, &meta, kind),
                ty,
                meta,
                unsigned: matches!(kind, Kind::Unsigned),
                kind: kind.clone(),
            });
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
