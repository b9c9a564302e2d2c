//! PostgreSQL types: which logical type a column maps to, and the conversion of PostgreSQL's
//! text output into the canonical text of that type (cheap: most values pass through as is).

use bytes::Bytes;
use tidewater_core::{ColumnType, Error, Result, Value};

use crate::text::{pg_array_to_json, TextError};

/// Maps a type OID (and its typmod) to a logical type; `None` means "not natively
/// supported": replicated as exact text, with a warning.
pub fn column_type(oid: u32, typmod: i32) -> Option<ColumnType> {
    use ColumnType::*;
    Some(match oid {
        16 => Bool,
        17 => Bytes,
        20 => Int64,
        21 => Int16,
        23 => Int32,
        25 | 1042 | 1043 | 18 | 19 => Text,
        114 | 3802 => Json,
        700 => Float32,
        701 => Float64,
        1082 => Date,
        1083 => Time,
        1114 => Timestamp,
        1184 => TimestampTz,
        1700 => numeric(typmod),
        2950 => Uuid,
        _ => {
            let elem = array_element(oid)?;
            // An array's typmod applies to its elements.
            List(Box::new(column_type(elem, typmod)?))
        }
    })
}

/// `numeric(p,s)` keeps its precision; unconstrained `numeric` has none, so it is exact text.
fn numeric(typmod: i32) -> ColumnType {
    if typmod < 4 {
        return ColumnType::Text;
    }
    let t = typmod - 4;
    let precision = ((t >> 16) & 0xFFFF) as u8;
    let scale = (t & 0xFFFF) as u8;
    ColumnType::Decimal { precision, scale }
}

/// Element type of the built-in array types we support.
fn array_element(array_oid: u32) -> Option<u32> {
    Some(match array_oid {
        1000 => 16,
        1001 => 17,
        1016 => 20,
        1005 => 21,
        1007 => 23,
        1009 => 25,
        1014 => 1042,
        1015 => 1043,
        199 => 114,
        3807 => 3802,
        1021 => 700,
        1022 => 701,
        1182 => 1082,
        1183 => 1083,
        1115 => 1114,
        1185 => 1184,
        1231 => 1700,
        2951 => 2950,
        _ => return None,
    })
}

const TRUE: &[u8] = b"true";
const FALSE: &[u8] = b"false";

/// Converts one value from PostgreSQL text output to canonical text.
pub fn canonical(ty: &ColumnType, raw: Bytes) -> Result<Value> {
    Ok(Value::Text(match ty {
        ColumnType::Bool => Bytes::from_static(if raw.as_ref() == b"t" { TRUE } else { FALSE }),
        ColumnType::Bytes => match raw.strip_prefix(b"\\x") {
            Some(_) => raw.slice(2..),
            None => {
                return Err(Error::source_fatal(
                    "bytea value not in hex format; set bytea_output = 'hex'",
                ))
            }
        },
        ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampTz
            if raw.ends_with(b" BC") =>
        {
            // PostgreSQL writes `0044-03-15 BC` / `0044-03-15 12:00:00 BC`; DuckDB reads
            // `0044-03-15 (BC)` / `0044-03-15 (BC) 12:00:00`: the marker follows the date part.
            let body = &raw[..raw.len() - 3];
            let date_end = body.iter().position(|&c| c == b' ').unwrap_or(body.len());
            let mut v = body[..date_end].to_vec();
            v.extend_from_slice(b" (BC)");
            v.extend_from_slice(&body[date_end..]);
            Bytes::from(v)
        }
        ColumnType::List(elem) => {
            let json = pg_array_to_json(&raw, &|e: &[u8]| element(elem, e))
                .map_err(|e| Error::source_fatal(format!("malformed array value: {e}")))?;
            Bytes::from(json)
        }
        _ => {
            if std::str::from_utf8(&raw).is_err() {
                return Err(Error::source_fatal(
                    "value is not valid UTF-8 (is the database encoding UTF8?)",
                ));
            }
            raw
        }
    }))
}

fn element(ty: &ColumnType, raw: &[u8]) -> Result<String, TextError> {
    match canonical(ty, Bytes::copy_from_slice(raw)) {
        Ok(Value::Text(b)) => {
            String::from_utf8(b.to_vec()).map_err(|e| TextError::InvalidElement(e.to_string()))
        }
        Ok(_) => Err(TextError::InvalidElement("unexpected element".into())),
        Err(e) => Err(TextError::InvalidElement(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(ty: &ColumnType, s: &str) -> String {
        match canonical(ty, Bytes::copy_from_slice(s.as_bytes())).unwrap() {
            Value::Text(b) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn maps_types() {
        assert_eq!(
            column_type(1700, (12 << 16 | 2) + 4),
            Some(ColumnType::Decimal {
                precision: 12,
                scale: 2
            })
        );
        assert_eq!(column_type(1700, -1), Some(ColumnType::Text));
        assert_eq!(
            column_type(1007, -1),
            Some(ColumnType::List(Box::new(ColumnType::Int32)))
        );
        assert_eq!(column_type(1186, -1), None); // interval
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canon(&ColumnType::Bool, "t"), "true");
        assert_eq!(canon(&ColumnType::Bool, "f"), "false");
        assert_eq!(canon(&ColumnType::Bytes, "\\x00ff"), "00ff");
        assert_eq!(canon(&ColumnType::Date, "0044-03-15 BC"), "0044-03-15 (BC)");
        assert_eq!(
            canon(&ColumnType::Timestamp, "0044-03-15 12:00:00.5 BC"),
            "0044-03-15 (BC) 12:00:00.5"
        );
        assert_eq!(
            canon(&ColumnType::TimestampTz, "0001-01-01 00:00:00+00 BC"),
            "0001-01-01 (BC) 00:00:00+00"
        );
        let bools = ColumnType::List(Box::new(ColumnType::Bool));
        assert_eq!(canon(&bools, "{t,f,NULL}"), r#"["true","false",null]"#);
        let blobs = ColumnType::List(Box::new(ColumnType::Bytes));
        assert_eq!(canon(&blobs, r#"{"\\x01ff"}"#), r#"["01ff"]"#);
        assert_eq!(canon(&ColumnType::Text, "héllo"), "héllo");
    }
}
