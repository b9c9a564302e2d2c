//! Staging rows as a Parquet file, for a load job (`load`): the same rows `rows` builds for
//! insertAll, in the same JSON encoding, written with each staging column's own Parquet type.
//!
//! Exactness, per BigQuery type (each value is parsed from the insertAll encoding; anything
//! that is not exactly representable is an error, never rounded):
//!
//! | BigQuery | Parquet |
//! |---|---|
//! | `INT64` | `INT64` |
//! | `NUMERIC` | `FIXED_LEN_BYTE_ARRAY(16)` `DECIMAL(38, 9)`: NUMERIC's range, all digits |
//! | `FLOAT64` | `DOUBLE` (the shortest decimal text parses back to the same double; `NaN`, `±Infinity`) |
//! | `BOOL` | `BOOLEAN` |
//! | `STRING` / `JSON` | `BYTE_ARRAY` `STRING` / `JSON` |
//! | `BYTES` | `BYTE_ARRAY` (the base64 of insertAll decoded) |
//! | `DATE` | `INT32` `DATE` (days since 1970-01-01) |
//! | `TIME` | `INT64` `TIME(MICROS, local)` |
//! | `DATETIME` | `INT64` `TIMESTAMP(MICROS, local)` |
//! | `TIMESTAMP` | `INT64` `TIMESTAMP(MICROS, UTC)` (the text's offset applied) |
//! | `REPEATED` | the standard three-level `LIST` (load with `enableListInference`); NULL is an empty array, as insertAll stores it |
//!
//! The file has exactly the staging table's columns, in the table's order: BigQuery matches
//! Parquet columns by name, the emulator by position. A column a row lacks (one the source
//! dropped, kept in staging as history) is NULL.
//!
//! Rows are buffered column by column and written as one row group per [`ParquetFile::flush`];
//! the bytes written so far are taken out after each, so a file of any size needs the memory
//! of one row group.

use std::sync::Arc;

use base64::Engine;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use parquet::basic::{LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DoubleType, FixedLenByteArray, FixedLenByteArrayType,
    Int32Type, Int64Type,
};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use serde_json::{Map, Value as Json};
use tidewater_core::{Error, Result};

use crate::types::BqField;

/// NUMERIC's scale, and the bound of its unscaled values (38 digits).
const NUMERIC_SCALE: u32 = 9;
const NUMERIC_LIMIT: i128 = 10i128.pow(38);
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// What a buffered `ByteArray` takes besides its bytes.
const BYTE_ARRAY_OVERHEAD: usize = 24;

/// The values of one column, by Parquet physical type.
enum Values {
    Int64(Vec<i64>),
    Int32(Vec<i32>),
    Double(Vec<f64>),
    Bool(Vec<bool>),
    Bytes(Vec<ByteArray>),
    Fixed(Vec<FixedLenByteArray>),
}

struct Column {
    name: String,
    field: BqField,
    repeated: bool,
    values: Values,
    /// Definition levels (0 NULL; for lists: 0 NULL, 1 empty, 2 an element).
    def: Vec<i16>,
    /// Repetition levels (lists only: 0 a new row, 1 the next element).
    rep: Vec<i16>,
}

/// A Parquet file being written, row group by row group.
pub struct ParquetFile {
    writer: SerializedFileWriter<Vec<u8>>,
    columns: Vec<Column>,
    rows: usize,
    /// About the bytes the buffered values take.
    buffered: usize,
}

fn bq_field(f: &TableFieldSchema) -> Result<BqField> {
    Ok(match f.r#type {
        FieldType::Integer | FieldType::Int64 => BqField::Int64,
        FieldType::Numeric => BqField::Numeric,
        FieldType::Float | FieldType::Float64 => BqField::Float64,
        FieldType::Boolean | FieldType::Bool => BqField::Bool,
        FieldType::String => BqField::String,
        FieldType::Bytes => BqField::Bytes,
        FieldType::Date => BqField::Date,
        FieldType::Time => BqField::Time,
        FieldType::Datetime => BqField::Datetime,
        FieldType::Timestamp => BqField::Timestamp,
        FieldType::Json => BqField::Json,
        _ => {
            return Err(Error::sink(format!(
                "staging column {} has a type tidewater does not write ({:?})",
                f.name, f.r#type
            )))
        }
    })
}

fn parquet_error(e: parquet::errors::ParquetError) -> Error {
    Error::sink(format!("writing a Parquet file for a load job: {e}"))
}

fn parquet_type(name: &str, field: BqField, repetition: Repetition) -> Result<Type> {
    use BqField as B;
    let micros = |utc: bool| LogicalType::Timestamp {
        is_adjusted_to_u_t_c: utc,
        unit: TimeUnit::MICROS,
    };
    let (physical, logical) = match field {
        B::Int64 => (Physical::INT64, None),
        B::Numeric => (
            Physical::FIXED_LEN_BYTE_ARRAY,
            Some(LogicalType::Decimal {
                scale: NUMERIC_SCALE as i32,
                precision: 38,
            }),
        ),
        B::Float64 => (Physical::DOUBLE, None),
        B::Bool => (Physical::BOOLEAN, None),
        B::String => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
        B::Json => (Physical::BYTE_ARRAY, Some(LogicalType::Json)),
        B::Bytes => (Physical::BYTE_ARRAY, None),
        B::Date => (Physical::INT32, Some(LogicalType::Date)),
        B::Time => (
            Physical::INT64,
            Some(LogicalType::Time {
                is_adjusted_to_u_t_c: false,
                unit: TimeUnit::MICROS,
            }),
        ),
        B::Datetime => (Physical::INT64, Some(micros(false))),
        B::Timestamp => (Physical::INT64, Some(micros(true))),
    };
    let mut t = Type::primitive_type_builder(name, physical)
        .with_repetition(repetition)
        .with_logical_type(logical);
    if field == B::Numeric {
        t = t
            .with_length(16)
            .with_precision(38)
            .with_scale(NUMERIC_SCALE as i32);
    }
    t.build().map_err(parquet_error)
}

/// `optional group <name> (LIST) { repeated group list { required <element>; } }`
fn list_type(name: &str, field: BqField) -> Result<Type> {
    let element = parquet_type("element", field, Repetition::REQUIRED)?;
    let list = Type::group_type_builder("list")
        .with_repetition(Repetition::REPEATED)
        .with_fields(vec![Arc::new(element)])
        .build()
        .map_err(parquet_error)?;
    Type::group_type_builder(name)
        .with_repetition(Repetition::OPTIONAL)
        .with_logical_type(Some(LogicalType::List))
        .with_fields(vec![Arc::new(list)])
        .build()
        .map_err(parquet_error)
}

impl ParquetFile {
    /// A file with the columns `fields` (a staging table's, in its order).
    pub fn new(fields: &[TableFieldSchema]) -> Result<ParquetFile> {
        let mut columns = Vec::new();
        let mut types = Vec::new();
        for f in fields {
            let field = bq_field(f)?;
            let repeated = f.mode.as_deref() == Some("REPEATED");
            types.push(Arc::new(if repeated {
                list_type(&f.name, field)?
            } else {
                parquet_type(&f.name, field, Repetition::OPTIONAL)?
            }));
            let values = match field {
                BqField::Int64 | BqField::Time | BqField::Datetime | BqField::Timestamp => {
                    Values::Int64(Vec::new())
                }
                BqField::Date => Values::Int32(Vec::new()),
                BqField::Float64 => Values::Double(Vec::new()),
                BqField::Bool => Values::Bool(Vec::new()),
                BqField::Numeric => Values::Fixed(Vec::new()),
                BqField::String | BqField::Json | BqField::Bytes => Values::Bytes(Vec::new()),
            };
            columns.push(Column {
                name: f.name.clone(),
                field,
                repeated,
                values,
                def: Vec::new(),
                rep: Vec::new(),
            });
        }
        let schema = Type::group_type_builder("schema")
            .with_fields(types)
            .build()
            .map_err(parquet_error)?;
        let properties = WriterProperties::builder()
            .set_created_by("tidewater".into())
            .build();
        let writer = SerializedFileWriter::new(Vec::new(), Arc::new(schema), Arc::new(properties))
            .map_err(parquet_error)?;
        Ok(ParquetFile {
            writer,
            columns,
            rows: 0,
            buffered: 0,
        })
    }

    /// Buffers one row (a JSON object in insertAll's encoding). After an error the file is
    /// unusable (the batch that wrote it fails).
    pub fn push(&mut self, row: &Map<String, Json>) -> Result<()> {
        for c in &mut self.columns {
            let v = row.get(&c.name).unwrap_or(&Json::Null);
            self.buffered += c
                .push(v)
                .map_err(|e| e.context(format_args!("staging column {}", c.name)))?;
        }
        self.rows += 1;
        Ok(())
    }

    /// Rows buffered since the last [`ParquetFile::flush`].
    #[cfg(test)]
    pub fn buffered_rows(&self) -> usize {
        self.rows
    }

    /// About the bytes the buffered rows take.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Writes the buffered rows as a row group; returns the file's bytes written since the
    /// last call.
    pub fn flush(&mut self) -> Result<Vec<u8>> {
        if self.rows > 0 {
            let mut group = self.writer.next_row_group().map_err(parquet_error)?;
            for c in &mut self.columns {
                let mut w = group
                    .next_column()
                    .map_err(parquet_error)?
                    .ok_or_else(|| Error::sink("internal: a Parquet column is missing"))?;
                let rep = c.repeated.then_some(&c.rep[..]);
                let def = Some(&c.def[..]);
                let written = match &c.values {
                    Values::Int64(v) => w.typed::<Int64Type>().write_batch(v, def, rep),
                    Values::Int32(v) => w.typed::<Int32Type>().write_batch(v, def, rep),
                    Values::Double(v) => w.typed::<DoubleType>().write_batch(v, def, rep),
                    Values::Bool(v) => w.typed::<BoolType>().write_batch(v, def, rep),
                    Values::Bytes(v) => w.typed::<ByteArrayType>().write_batch(v, def, rep),
                    Values::Fixed(v) => w.typed::<FixedLenByteArrayType>().write_batch(v, def, rep),
                };
                written.map_err(parquet_error)?;
                w.close().map_err(parquet_error)?;
                c.clear();
            }
            group.close().map_err(parquet_error)?;
            self.rows = 0;
            self.buffered = 0;
        }
        self.writer
            .flush()
            .map_err(|e| Error::sink(e.to_string()))?;
        Ok(std::mem::take(self.writer.inner_mut()))
    }

    /// Writes the buffered rows and the footer; returns the rest of the file.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let mut bytes = self.flush()?;
        bytes.extend(self.writer.into_inner().map_err(parquet_error)?);
        Ok(bytes)
    }
}

impl Column {
    fn clear(&mut self) {
        match &mut self.values {
            Values::Int64(v) => v.clear(),
            Values::Int32(v) => v.clear(),
            Values::Double(v) => v.clear(),
            Values::Bool(v) => v.clear(),
            Values::Bytes(v) => v.clear(),
            Values::Fixed(v) => v.clear(),
        }
        self.def.clear();
        self.rep.clear();
    }

    /// Buffers a value; returns about the bytes it takes.
    fn push(&mut self, v: &Json) -> Result<usize> {
        if !self.repeated {
            if v.is_null() {
                self.def.push(0);
                return Ok(2);
            }
            self.def.push(1);
            return self.push_value(v).map(|n| n + 2);
        }
        let items = match v {
            Json::Null => &Vec::new(),
            Json::Array(items) => items,
            other => return Err(not_canonical("an array", other)),
        };
        if items.is_empty() {
            self.def.push(1);
            self.rep.push(0);
            return Ok(4);
        }
        let mut size = 0;
        for (i, item) in items.iter().enumerate() {
            if item.is_null() {
                return Err(Error::sink(
                    "an array holds a NULL element, which BigQuery arrays cannot store",
                ));
            }
            self.def.push(2);
            self.rep.push(i16::from(i > 0));
            size += self.push_value(item)? + 4;
        }
        Ok(size)
    }

    fn push_value(&mut self, v: &Json) -> Result<usize> {
        let text = match v {
            Json::String(s) => Some(s.as_str()),
            _ => None,
        };
        let text_of = |what: &str| text.ok_or_else(|| not_canonical(what, v));
        match (&mut self.values, self.field) {
            (Values::Int64(out), BqField::Int64) => {
                let n = match v {
                    Json::Number(n) => n.as_i64(),
                    Json::String(s) => s.parse().ok(),
                    _ => None,
                };
                out.push(n.ok_or_else(|| not_canonical("an INT64", v))?);
                Ok(8)
            }
            (Values::Int64(out), BqField::Time) => {
                let micros = time_micros(text_of("a TIME")?);
                out.push(micros.ok_or_else(|| not_canonical("a TIME", v))?);
                Ok(8)
            }
            (Values::Int64(out), BqField::Datetime) => {
                let micros = datetime_micros(text_of("a DATETIME")?, false);
                out.push(micros.ok_or_else(|| not_canonical("a DATETIME", v))?);
                Ok(8)
            }
            (Values::Int64(out), _) => {
                let micros = datetime_micros(text_of("a TIMESTAMP")?, true);
                out.push(micros.ok_or_else(|| not_canonical("a TIMESTAMP", v))?);
                Ok(8)
            }
            (Values::Int32(out), _) => {
                let days = date_days(text_of("a DATE")?).and_then(|d| i32::try_from(d).ok());
                out.push(days.ok_or_else(|| not_canonical("a DATE", v))?);
                Ok(4)
            }
            (Values::Double(out), _) => {
                let d = match v {
                    Json::Number(n) => n.as_f64(),
                    Json::String(s) => float(s),
                    _ => None,
                };
                out.push(d.ok_or_else(|| not_canonical("a FLOAT64", v))?);
                Ok(8)
            }
            (Values::Bool(out), _) => {
                out.push(v.as_bool().ok_or_else(|| not_canonical("a BOOL", v))?);
                Ok(1)
            }
            (Values::Fixed(out), _) => {
                let what = "a NUMERIC (38 digits, 9 after the point)";
                let unscaled = numeric(text_of(what)?).ok_or_else(|| not_canonical(what, v))?;
                out.push(unscaled.to_be_bytes().to_vec().into());
                Ok(16)
            }
            (Values::Bytes(out), BqField::Bytes) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text_of("BYTES (base64)")?)
                    .map_err(|_| not_canonical("BYTES (base64)", v))?;
                let n = bytes.len();
                out.push(bytes.into());
                Ok(n + BYTE_ARRAY_OVERHEAD)
            }
            (Values::Bytes(out), _) => {
                let s = text_of("a STRING")?;
                out.push(s.as_bytes().to_vec().into());
                Ok(s.len() + BYTE_ARRAY_OVERHEAD)
            }
        }
    }
}

fn not_canonical(what: &str, v: &Json) -> Error {
    let shown: String = v.to_string().chars().take(40).collect();
    Error::sink(format!(
        "internal: {shown} is not {what} value for a load job"
    ))
}

/// Digits only, at least one, and few enough for an `i64`.
fn digits(s: &str) -> Option<i64> {
    let ok = !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| s.parse().ok()).flatten()
}

/// A decimal text (`-12.340`) as NUMERIC's unscaled value (× 10^9); `None` when it has more
/// than 9 fractional digits or 29 integer digits.
fn numeric(s: &str) -> Option<i128> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    if frac.len() > NUMERIC_SCALE as usize || int.len() > 38 {
        return None;
    }
    let mut unscaled: i128 = 0;
    for b in format!("{int}{frac:0<9}").bytes() {
        unscaled = unscaled
            .checked_mul(10)?
            .checked_add(i128::from(b - b'0'))?;
    }
    if unscaled >= NUMERIC_LIMIT {
        return None;
    }
    Some(if negative { -unscaled } else { unscaled })
}

fn float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ if s
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` (years 1 to 9999, BigQuery's range) as days since 1970-01-01.
fn date_days(s: &str) -> Option<i64> {
    let mut parts = s.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (digits(y)?, digits(m)?, digits(d)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let february = if leap { 29 } else { 28 };
    let month_days = [31, february, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let valid = y >= 1 && (1..=12).contains(&m) && d >= 1 && d <= month_days[m as usize - 1];
    valid.then(|| days_from_civil(y, m, d))
}

/// `HH:MM:SS[.f{1,6}]` as microseconds since midnight (up to 23:59:59.999999).
fn time_micros(s: &str) -> Option<i64> {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut parts = hms.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || h.len() != 2 || m.len() != 2 || sec.len() != 2 {
        return None;
    }
    let (h, m, sec) = (digits(h)?, digits(m)?, digits(sec)?);
    if h > 23 || m > 59 || sec > 59 || frac.len() > 6 || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let micros = if frac.is_empty() {
        0
    } else {
        digits(&format!("{frac:0<6}"))?
    };
    Some(((h * 60 + m) * 60 + sec) * 1_000_000 + micros)
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.ffffff]`, with an offset (`+HH:MM`, `-HH`, `Z`) when `offset`
/// (then the result is UTC), as microseconds since the epoch.
fn datetime_micros(s: &str, offset: bool) -> Option<i64> {
    let (date, rest) = (s.get(..10)?, s.get(10..)?);
    let rest = rest.strip_prefix([' ', 'T'])?;
    let (time, shift) = if !offset {
        (rest, 0)
    } else if let Some(time) = rest.strip_suffix('Z') {
        (time, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (time, zone) = rest.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (hh, mm) = zone[1..].split_once(':').unwrap_or((&zone[1..], "00"));
        if hh.len() != 2 || mm.len() != 2 {
            return None;
        }
        (time, sign * (digits(hh)? * 60 + digits(mm)?) * 60_000_000)
    };
    Some(date_days(date)? * MICROS_PER_DAY + time_micros(time)? - shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_parse_exactly_or_not_at_all() {
        assert_eq!(numeric("-12.34"), Some(-12_340_000_000));
        assert_eq!(numeric("0.000000001"), Some(1));
        assert_eq!(
            numeric("18446744073709551615"),
            Some(18_446_744_073_709_551_615 * 1_000_000_000)
        );
        let widest = "99999999999999999999999999999.999999999";
        assert_eq!(numeric(widest), Some(NUMERIC_LIMIT - 1));
        assert_eq!(numeric("100000000000000000000000000000"), None);
        assert_eq!(numeric("0.0000000001"), None);
        assert_eq!(numeric("1e5"), None);
        assert_eq!(numeric("NaN"), None);
        assert_eq!(date_days("1970-01-01"), Some(0));
        assert_eq!(date_days("2000-03-01"), Some(11_017));
        assert_eq!(date_days("0001-01-01"), Some(-719_162));
        assert_eq!(date_days("2023-02-29"), None);
        assert_eq!(date_days("infinity"), None);
        assert_eq!(time_micros("23:59:59.999999"), Some(MICROS_PER_DAY - 1));
        assert_eq!(time_micros("00:00:01.5"), Some(1_500_000));
        assert_eq!(time_micros("24:00:00"), None);
        let utc = Some(1_704_164_645_123_456);
        assert_eq!(
            datetime_micros("2024-01-02 03:04:05.123456+00:00", true),
            utc
        );
        assert_eq!(datetime_micros("2024-01-02 05:04:05.123456+02", true), utc);
        assert_eq!(datetime_micros("2024-01-02T03:04:05.123456Z", true), utc);
        assert_eq!(datetime_micros("2024-01-02T03:04:05.123456", false), utc);
        assert_eq!(datetime_micros("2024-01-02 03:04:05", true), None);
        assert_eq!(float("NaN").map(f64::is_nan), Some(true));
        assert_eq!(float("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(float("0.1"), Some(0.1));
        assert_eq!(float("1e-07"), Some(1e-7));
        assert_eq!(float("inf"), None);
    }

    fn field(name: &str, t: FieldType, mode: &str) -> TableFieldSchema {
        let mut f = TableFieldSchema::new(name, t);
        f.mode = Some(mode.into());
        f
    }

    #[test]
    fn a_file_is_written_row_group_by_row_group() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let fields = [
            field("id", FieldType::Int64, "NULLABLE"),
            field("n", FieldType::Numeric, "NULLABLE"),
            field("b", FieldType::Bytes, "NULLABLE"),
            field("ts", FieldType::Timestamp, "NULLABLE"),
            field("tags", FieldType::String, "REPEATED"),
        ];
        let row = |v: Json| v.as_object().unwrap().clone();
        let mut file = ParquetFile::new(&fields).unwrap();
        file.push(&row(
            json!({"id": "1", "n": "-1.5", "b": "AP8=", "tags": ["a", "b"],
            "ts": "2024-01-02 03:04:05.123456+00:00"}),
        ))
        .unwrap();
        file.push(&row(json!({"id": 2, "tags": null}))).unwrap();
        assert_eq!(file.buffered_rows(), 2);
        let mut bytes = file.flush().unwrap();
        assert_eq!(file.buffered_rows(), 0);
        file.push(&row(json!({"id": "3", "tags": []}))).unwrap();
        bytes.extend(file.finish().unwrap());
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2);
        let rows: Vec<String> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_string())
            .collect();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows[0].contains(r#"tags: ["a", "b"]"#), "{rows:?}");
        assert!(
            rows[1].contains("n: null") && rows[1].contains("tags: []"),
            "{rows:?}"
        );

        // A value that is not what its column takes fails the file (which is dropped).
        let mut bad = ParquetFile::new(&fields).unwrap();
        let e = bad.push(&row(json!({"id": "x"}))).unwrap_err();
        assert!(e.to_string().contains("staging column id"), "{e}");
        let mut bad = ParquetFile::new(&fields).unwrap();
        let e = bad
            .push(&row(json!({"id": "1", "tags": [null]})))
            .unwrap_err();
        assert!(e.to_string().contains("NULL element"), "{e}");
    }
}
