//! A batch of rows handed to DuckDB column by column, as one Arrow record batch (through
//! `feed`, a cached `INSERT … SELECT`).
//!
//! Appending row by row binds every value through the C API one call at a time and, for a
//! typed column fed with text, casts each value on DuckDB's slow single-value path. A
//! record batch is converted into DuckDB vectors in bulk, and where a column's Arrow type
//! (text) differs from the table's, DuckDB casts the whole vector with its vectorised casts.
//! The arrays are reference-counted, so the replica and its change log share one copy.

use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanArray, Decimal128Builder, Int64Array, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use duckdb::arrow::datatypes::{Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use tidewater_core::time::{parse_micros, parse_utc_micros};
use tidewater_core::{Error, Result};

use crate::feed::Feed;

/// `-12.34` at scale 3 → -12340; `None` unless it is `[-]digits[.digits]` with at most
/// `scale` fraction digits and at most 38 digits in all.
fn scaled_decimal(s: &str, scale: u8) -> Option<i128> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || frac.len() > scale as usize {
        return None;
    }
    if int.len() + scale as usize > 38 {
        return None;
    }
    let mut n: i128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        n = n * 10 + i128::from(c - b'0');
    }
    n *= 10i128.pow(u32::from(scale) - frac.len() as u32);
    Some(if negative { -n } else { n })
}

#[derive(Default, Clone)]
pub struct Columns {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
    rows: usize,
}

impl Columns {
    pub fn with_rows(rows: usize) -> Columns {
        Columns {
            rows,
            ..Columns::default()
        }
    }

    fn push(&mut self, array: ArrayRef) {
        debug_assert_eq!(array.len(), self.rows);
        let name = format!("c{}", self.fields.len());
        self.fields
            .push(Field::new(name, array.data_type().clone(), true));
        self.arrays.push(array);
    }

    /// A text column; `Err` passes through (e.g. a value that is not UTF-8).
    pub fn text<'a>(
        &mut self,
        values: impl Iterator<Item = Result<Option<&'a str>>>,
    ) -> Result<()> {
        let mut b = StringBuilder::with_capacity(self.rows, self.rows * 8);
        for v in values {
            b.append_option(v?);
        }
        self.push(Arc::new(b.finish()));
        Ok(())
    }

    /// An integer column given as decimal text: parsed here into 64-bit integers, which
    /// DuckDB narrows with a numeric cast (cheaper than its UTF-8 check and text cast).
    pub fn int_text<'a>(
        &mut self,
        values: impl Iterator<Item = Result<Option<&'a str>>>,
    ) -> Result<()> {
        let mut b = Int64Builder::with_capacity(self.rows);
        for v in values {
            match v? {
                None => b.append_null(),
                Some(s) => {
                    b.append_value(s.parse::<i64>().map_err(|_| {
                        Error::source_fatal(format!("`{s}` is not a 64-bit integer"))
                    })?)
                }
            }
        }
        self.push(Arc::new(b.finish()));
        Ok(())
    }

    /// A DECIMAL(p ≤ 38, s) column given as plain decimal text, as Arrow decimals. `false`
    /// (nothing pushed) when a value has another form (more fraction digits than the scale,
    /// an exponent, NaN): the caller then appends the text, which DuckDB casts or rejects.
    pub fn decimal_text(&mut self, values: &[Option<&str>], precision: u8, scale: u8) -> bool {
        let mut b = Decimal128Builder::with_capacity(self.rows);
        for v in values {
            match v {
                None => b.append_null(),
                Some(s) => match scaled_decimal(s, scale) {
                    Some(n) => b.append_value(n),
                    None => return false,
                },
            }
        }
        match b.with_precision_and_scale(precision, scale as i8) {
            Ok(mut b) => {
                self.push(Arc::new(b.finish()));
                true
            }
            Err(_) => false,
        }
    }

    /// A TIMESTAMP column (`utc`: TIMESTAMPTZ, its values ending `+00`) given as canonical
    /// text, as Arrow microseconds (parsed here: `tidewater_core::time::parse_micros`, which
    /// DuckDB takes without its text cast). `false` (nothing pushed) when a value has another
    /// form (BC, infinity, a year past 9999, another offset): the caller then appends the
    /// text, which DuckDB casts or rejects. Consecutive equal values are parsed once (a
    /// transaction's commit time on each of its rows).
    pub fn timestamp_text(&mut self, values: &[Option<&str>], utc: bool) -> bool {
        let parse = if utc { parse_utc_micros } else { parse_micros };
        let mut b = TimestampMicrosecondBuilder::with_capacity(self.rows);
        let mut last: Option<(&str, i64)> = None;
        for v in values {
            let Some(s) = v else {
                b.append_null();
                continue;
            };
            let us = match last {
                Some((t, us)) if t == *s => us,
                _ => match parse(s) {
                    Some(us) => us,
                    None => return false,
                },
            };
            last = Some((s, us));
            b.append_value(us);
        }
        let mut b = if utc { b.with_timezone("UTC") } else { b };
        self.push(Arc::new(b.finish()));
        true
    }

    pub fn binary(&mut self, values: impl Iterator<Item = Result<Option<Vec<u8>>>>) -> Result<()> {
        let mut b = BinaryBuilder::with_capacity(self.rows, self.rows * 8);
        for v in values {
            b.append_option(v?);
        }
        self.push(Arc::new(b.finish()));
        Ok(())
    }

    pub fn bools(&mut self, values: impl Iterator<Item = bool>) {
        self.push(Arc::new(values.map(Some).collect::<BooleanArray>()));
    }

    pub fn ints(&mut self, values: impl Iterator<Item = i64>) {
        self.push(Arc::new(values.collect::<Int64Array>()));
    }

    /// Inserts all rows into `target` through `feed`: into the columns `names` (quoted, in
    /// these columns' order) or, when `None`, into every column in table order.
    pub fn insert_into(
        &self,
        feed: &mut Feed,
        conn: &Connection,
        target: &str,
        names: Option<&str>,
        what: &dyn std::fmt::Display,
    ) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let schema = Arc::new(Schema::new(self.fields.clone()));
        let batch = RecordBatch::try_new(schema, self.arrays.clone())
            .map_err(|e| Error::sink(format!("internal: building an append batch: {e}")))?;
        feed.insert(conn, target, names, batch, what).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::scaled_decimal;

    #[test]
    fn plain_decimals_scale_exactly() {
        assert_eq!(scaled_decimal("-12.34", 3), Some(-12340));
        assert_eq!(scaled_decimal("0.5", 2), Some(50));
        assert_eq!(scaled_decimal("42", 0), Some(42));
        assert_eq!(scaled_decimal("42", 2), Some(4200));
        assert_eq!(
            scaled_decimal("99999999999999999999999999999999999999", 0),
            Some(10i128.pow(38) - 1)
        );
        for other in ["1.234", "NaN", "1e5", "", "-", ".5", "1.2.3", "+1", "1 "] {
            assert_eq!(scaled_decimal(other, 2), None, "{other}");
        }
    }
}
