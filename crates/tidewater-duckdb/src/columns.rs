//! A batch of rows handed to DuckDB's Appender column by column, as one Arrow record batch.
//!
//! Appending row by row binds every value through the C API one call at a time and, for a
//! typed column fed with text, casts each value on DuckDB's slow single-value path. A
//! record batch is converted into DuckDB vectors in bulk, and where a column's Arrow type
//! (text) differs from the table's, DuckDB casts the whole vector with its vectorised casts.
//! The arrays are reference-counted, so the replica and its change log share one copy.

use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanArray, Int64Array, Int64Builder, StringArray, StringBuilder,
};
use duckdb::arrow::datatypes::{Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Appender;
use tidewater_core::{Error, Result};

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

    /// The same text in every row.
    pub fn constant_text(&mut self, value: &str) {
        self.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(value, self.rows),
        )));
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

    /// Appends all rows through `appender` (whose columns match these, in order).
    pub fn append_to(
        &self,
        appender: &mut Appender<'_>,
        what: &dyn std::fmt::Display,
    ) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let schema = Arc::new(Schema::new(self.fields.clone()));
        let batch = RecordBatch::try_new(schema, self.arrays.clone())
            .map_err(|e| Error::sink(format!("internal: building an append batch: {e}")))?;
        appender
            .append_record_batch(batch)
            .map_err(|e| Error::sink(format!("{what}: {e}")))
    }
}
