//! Source column types to BigQuery types, and canonical text values (`tidewater_core::model`)
//! to the JSON values `tabledata.insertAll` takes.
//!
//! | source (logical) type | BigQuery |
//! |---|---|
//! | integers up to 64-bit signed, unsigned up to 32-bit | `INT64` |
//! | unsigned 64-bit | `NUMERIC` (exact: 29 integer digits) |
//! | `decimal(p,s)` with `s <= 9` and `p - s <= 29` | `NUMERIC` |
//! | wider decimals, unconstrained `numeric` | `STRING` (exact text, every digit) |
//! | float, double | `FLOAT64` |
//! | bool | `BOOL` |
//! | text, varchar, char, enum, set, uuid | `STRING` |
//! | MySQL `TIME` (a signed duration) | `STRING` (`-838:59:59`) |
//! | bytea, blob, binary | `BYTES` |
//! | date / time / timestamp | `DATE` / `TIME` / `DATETIME` |
//! | timestamptz, MySQL `TIMESTAMP` | `TIMESTAMP` |
//! | json, jsonb | `JSON` |
//! | arrays | `ARRAY` (`REPEATED`) of the element type; NULL elements are refused |
//!
//! `BIGNUMERIC` would hold decimals up to 38 integer and 38 fractional digits, but the
//! emulator the tests run against cannot create it, and text keeps every digit of any width.

use base64::Engine;
use gcp_bigquery_client::model::field_type::FieldType;
use serde_json::Value as Json;
use tidewater_core::{ColumnType, Error, Result};

/// The BigQuery types tidewater writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BqField {
    Int64,
    Numeric,
    Float64,
    Bool,
    String,
    Bytes,
    Date,
    Time,
    Datetime,
    Timestamp,
    Json,
}

impl BqField {
    pub fn field_type(self) -> FieldType {
        match self {
            BqField::Int64 => FieldType::Int64,
            BqField::Numeric => FieldType::Numeric,
            BqField::Float64 => FieldType::Float64,
            BqField::Bool => FieldType::Bool,
            BqField::String => FieldType::String,
            BqField::Bytes => FieldType::Bytes,
            BqField::Date => FieldType::Date,
            BqField::Time => FieldType::Time,
            BqField::Datetime => FieldType::Datetime,
            BqField::Timestamp => FieldType::Timestamp,
            BqField::Json => FieldType::Json,
        }
    }

    /// The type's name in SQL.
    pub fn sql_name(self) -> &'static str {
        match self {
            BqField::Int64 => "INT64",
            BqField::Numeric => "NUMERIC",
            BqField::Float64 => "FLOAT64",
            BqField::Bool => "BOOL",
            BqField::String => "STRING",
            BqField::Bytes => "BYTES",
            BqField::Date => "DATE",
            BqField::Time => "TIME",
            BqField::Datetime => "DATETIME",
            BqField::Timestamp => "TIMESTAMP",
            BqField::Json => "JSON",
        }
    }
}

/// The BigQuery type of a column, and whether it is an array (`REPEATED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BqType {
    pub field: BqField,
    pub repeated: bool,
}

/// NUMERIC holds 29 integer digits and 9 fractional ones exactly.
fn fits_numeric(precision: u8, scale: u8) -> bool {
    scale <= 9 && precision.saturating_sub(scale) <= 29
}

fn scalar(ty: &ColumnType) -> BqField {
    use ColumnType::*;
    match ty {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => BqField::Int64,
        UInt64 => BqField::Numeric,
        Decimal { precision, scale } if fits_numeric(*precision, *scale) => BqField::Numeric,
        Decimal { .. } => BqField::String,
        Float32 | Float64 => BqField::Float64,
        Bool => BqField::Bool,
        Text | Uuid | Interval => BqField::String,
        Bytes => BqField::Bytes,
        Date => BqField::Date,
        Time => BqField::Time,
        Timestamp => BqField::Datetime,
        TimestampTz => BqField::Timestamp,
        Json => BqField::Json,
        // Arrays of arrays: BigQuery has none; the canonical JSON text keeps them.
        List(_) => BqField::String,
    }
}

pub fn bq_type(ty: &ColumnType) -> BqType {
    match ty {
        ColumnType::List(elem) if !matches!(**elem, ColumnType::List(_)) => BqType {
            field: scalar(elem),
            repeated: true,
        },
        other => BqType {
            field: scalar(other),
            repeated: false,
        },
    }
}

/// Whether BigQuery can cluster a table by a column of this type.
pub fn clusterable(t: &BqType) -> bool {
    !t.repeated && !matches!(t.field, BqField::Float64 | BqField::Json | BqField::Time)
}

/// The insertAll JSON value of a canonical text `text` of type `ty`.
pub fn encode(ty: &ColumnType, text: &str) -> Result<Json> {
    use ColumnType as T;
    Ok(match ty {
        T::Bool => Json::Bool(match text {
            "true" => true,
            "false" => false,
            other => return Err(bad(ty, other)),
        }),
        T::Bytes => Json::String(base64_of_hex(text).ok_or_else(|| bad(ty, text))?),
        T::TimestampTz => Json::String(full_offset(text)),
        T::List(elem) if !matches!(**elem, T::List(_)) => {
            let items: Vec<Option<String>> =
                serde_json::from_str(text).map_err(|_| bad(ty, text))?;
            let encoded = items.iter().map(|item| match item {
                Some(t) => encode(elem, t),
                None => Err(Error::sink(
                    "an array holds a NULL element, which BigQuery arrays cannot store",
                )),
            });
            Json::Array(encoded.collect::<Result<_>>()?)
        }
        // Numbers travel as strings: exact for INT64 and NUMERIC, and BigQuery reads
        // `NaN`/`Infinity` for FLOAT64. JSON columns take their text.
        _ => Json::String(text.to_string()),
    })
}

fn bad(ty: &ColumnType, text: &str) -> Error {
    let shown: String = text.chars().take(40).collect();
    Error::sink(format!(
        "internal: {shown:?} is not a canonical {ty:?} value"
    ))
}

fn base64_of_hex(hex: &str) -> Option<String> {
    if hex.len() & 1 == 1 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    Some(base64::engine::general_purpose::STANDARD.encode(bytes?))
}

/// `...+HH` → `...+HH:00`: the offset form every BigQuery timestamp parser takes.
fn full_offset(text: &str) -> String {
    let tail = text.rfind(['+', '-']).map(|i| &text[i..]);
    match tail {
        Some(t) if t.len() == 3 && text.len() > 10 => format!("{text}:00"),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_numbers_keep_every_digit() {
        assert_eq!(bq_type(&ColumnType::UInt64).field, BqField::Numeric);
        let fits = ColumnType::Decimal {
            precision: 38,
            scale: 9,
        };
        assert_eq!(bq_type(&fits).field, BqField::Numeric);
        for (precision, scale) in [(39, 9), (20, 10), (60, 2)] {
            let wide = ColumnType::Decimal { precision, scale };
            assert_eq!(bq_type(&wide).field, BqField::String, "{precision},{scale}");
        }
        let big = "18446744073709551615";
        assert_eq!(encode(&ColumnType::UInt64, big).unwrap(), Json::from(big));
    }

    #[test]
    fn values_are_encoded_for_insert_all() {
        assert_eq!(encode(&ColumnType::Bool, "true").unwrap(), Json::Bool(true));
        assert_eq!(
            encode(&ColumnType::Bytes, "00ff10").unwrap(),
            Json::from("AP8Q")
        );
        assert!(encode(&ColumnType::Bytes, "0g").is_err());
        assert_eq!(
            encode(&ColumnType::TimestampTz, "2024-01-02 03:04:05.5+00").unwrap(),
            Json::from("2024-01-02 03:04:05.5+00:00")
        );
        assert_eq!(
            encode(&ColumnType::Date, "2024-01-02").unwrap(),
            Json::from("2024-01-02")
        );
        let list = ColumnType::List(Box::new(ColumnType::Int32));
        assert_eq!(
            bq_type(&list),
            BqType {
                field: BqField::Int64,
                repeated: true
            }
        );
        assert_eq!(
            encode(&list, r#"["1","2"]"#).unwrap(),
            serde_json::json!(["1", "2"])
        );
        let e = encode(&list, r#"["1",null]"#).unwrap_err();
        assert!(e.to_string().contains("NULL element"), "{e}");
    }
}
