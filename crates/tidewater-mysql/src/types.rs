//! MySQL / MariaDB column types: what each maps to in the change model and how its values are
//! decoded (README.md, "What lands in DuckDB").

use std::sync::Arc;

use encoding_rs::Encoding;
use tidewater_core::ColumnType;

/// How a column's bytes become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// utf8mb4, utf8mb3, ascii: already UTF-8 (validated).
    Utf8,
    /// A single- or multi-byte legacy charset, decoded exactly (MySQL `latin1` is cp1252).
    Legacy(&'static Encoding),
}

/// The decoding of one column, shared by the snapshot and the binlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Signed,
    Unsigned,
    Decimal,
    Float,
    Double,
    /// `BIT(n)`: big-endian bytes, replicated as an unsigned integer.
    Bit,
    Text(Charset),
    /// `BINARY(n)` pads to `n` bytes (the binlog strips trailing zero bytes); others do not.
    Binary {
        pad_to: Option<usize>,
    },
    Enum(Arc<[String]>),
    Set(Arc<[String]>),
    Json,
    Date,
    /// Signed duration `TIME`, -838:59:59 .. 838:59:59.
    Time,
    DateTime,
    /// `TIMESTAMP`: seconds since the epoch in the binlog, UTC.
    Timestamp,
    Year,
    /// Spatial types: MySQL's internal WKB (4-byte SRID + WKB), kept as bytes.
    Geometry,
}

/// A column as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone, Default)]
pub struct ColumnInfo {
    pub name: String,
    /// `DATA_TYPE`, lower case: `int`, `varchar`, `enum`.
    pub data_type: String,
    /// `COLUMN_TYPE`: `int(10) unsigned`, `enum('a','b')`, `binary(16)`.
    pub column_type: String,
    pub precision: Option<u64>,
    pub scale: Option<u64>,
    pub charset: Option<String>,
    pub char_length: Option<u64>,
}

/// Maps a column; `Err` names the type when tidewater cannot replicate it exactly.
pub fn map_column(c: &ColumnInfo) -> Result<(Kind, ColumnType), String> {
    let unsigned = c.column_type.contains("unsigned");
    let int = |s, u| {
        if unsigned {
            (Kind::Unsigned, u)
        } else {
            (Kind::Signed, s)
        }
    };
    Ok(match c.data_type.as_str() {
        "tinyint" => int(ColumnType::Int8, ColumnType::UInt8),
        "smallint" => int(ColumnType::Int16, ColumnType::UInt16),
        "mediumint" | "int" | "integer" => int(ColumnType::Int32, ColumnType::UInt32),
        "bigint" => int(ColumnType::Int64, ColumnType::UInt64),
        "decimal" | "numeric" => (
            Kind::Decimal,
            ColumnType::Decimal {
                precision: c.precision.unwrap_or(10) as u8,
                scale: c.scale.unwrap_or(0) as u8,
            },
        ),
        "float" => (Kind::Float, ColumnType::Float32),
        "double" | "real" => (Kind::Double, ColumnType::Float64),
        "bit" => (Kind::Bit, ColumnType::UInt64),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
            (Kind::Text(charset(c)?), ColumnType::Text)
        }
        "binary" => (
            Kind::Binary {
                pad_to: c.char_length.map(|n| n as usize),
            },
            ColumnType::Bytes,
        ),
        "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            (Kind::Binary { pad_to: None }, ColumnType::Bytes)
        }
        "enum" => (
            Kind::Enum(enum_values(&c.column_type).into()),
            ColumnType::Text,
        ),
        "set" => (
            Kind::Set(enum_values(&c.column_type).into()),
            ColumnType::Text,
        ),
        "json" => (Kind::Json, ColumnType::Json),
        "date" => (Kind::Date, ColumnType::Date),
        "time" => (Kind::Time, ColumnType::Interval),
        "datetime" => (Kind::DateTime, ColumnType::Timestamp),
        "timestamp" => (Kind::Timestamp, ColumnType::TimestampTz),
        "year" => (Kind::Year, ColumnType::Int16),
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => {
            (Kind::Geometry, ColumnType::Bytes)
        }
        other => return Err(format!("{other} ({})", c.column_type)),
    })
}

fn charset(c: &ColumnInfo) -> Result<Charset, String> {
    let name = c.charset.as_deref().unwrap_or("utf8mb4");
    // Only charsets whose every valid byte sequence (per MariaDB 10.11's own conversion to
    // utf8mb4) decodes to the same text here. Not: latin5 (ISO-8859-9, which the Encoding
    // Standard treats as windows-1254), greek, hebrew, koi8u, sjis, ujis, eucjpms, gb2312,
    // big5: MariaDB maps some of their bytes to other code points.
    let label = match name {
        "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => return Ok(Charset::Utf8),
        "latin1" => "windows-1252",
        "latin2" => "iso-8859-2",
        "latin7" => "iso-8859-13",
        "cp1250" => "windows-1250",
        "cp1251" => "windows-1251",
        "cp1256" => "windows-1256",
        "cp1257" => "windows-1257",
        "koi8r" => "koi8-r",
        "cp932" => "shift_jis",
        "gbk" => "gbk",
        "gb18030" => "gb18030",
        "euckr" => "euc-kr",
        "utf16" | "ucs2" => "utf-16be",
        "utf16le" => "utf-16le",
        _ => return Err(format!("{} with character set {name}", c.column_type)),
    };
    Encoding::for_label(label.as_bytes())
        .map(Charset::Legacy)
        .ok_or_else(|| format!("{} with character set {name}", c.column_type))
}

/// The quoted members of `enum('a','b''c')` / `set(...)`, unescaped, in declaration order.
pub fn enum_values(column_type: &str) -> Vec<String> {
    let inner = column_type
        .find('(')
        .and_then(|start| {
            column_type
                .rfind(')')
                .map(|end| &column_type[start + 1..end])
        })
        .unwrap_or("");
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    v.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        v.push(n);
                    }
                }
                c => v.push(c),
            }
        }
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(data_type: &str, column_type: &str) -> ColumnInfo {
        ColumnInfo {
            name: "c".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            ..Default::default()
        }
    }

    #[test]
    fn integers_keep_width_and_sign() {
        assert_eq!(
            map_column(&col("bigint", "bigint(20) unsigned")).unwrap(),
            (Kind::Unsigned, ColumnType::UInt64)
        );
        assert_eq!(
            map_column(&col("tinyint", "tinyint(4)")).unwrap(),
            (Kind::Signed, ColumnType::Int8)
        );
        assert_eq!(
            map_column(&col("mediumint", "mediumint(8) unsigned"))
                .unwrap()
                .1,
            ColumnType::UInt32
        );
    }

    #[test]
    fn enum_members_are_unescaped() {
        assert_eq!(
            enum_values("enum('a','b''c','d,e','')"),
            vec!["a", "b'c", "d,e", ""]
        );
        assert_eq!(enum_values("set('x')"), vec!["x"]);
    }

    #[test]
    fn charsets() {
        let mut c = col("varchar", "varchar(10)");
        c.charset = Some("latin1".into());
        let Kind::Text(Charset::Legacy(e)) = map_column(&c).unwrap().0 else {
            panic!("latin1 is a legacy charset")
        };
        assert_eq!(e.decode_without_bom_handling(b"caf\xe9").0, "café");
        c.charset = Some("armscii8".into());
        assert!(map_column(&c).is_err());
        // MariaDB's sjis decodes 0x8160 as U+301C, the Encoding Standard's as U+FF5E.
        c.charset = Some("sjis".into());
        assert!(map_column(&c).is_err());
        c.charset = Some("utf8mb4".into());
        assert_eq!(map_column(&c).unwrap().0, Kind::Text(Charset::Utf8));
    }

    #[test]
    fn unknown_types_are_named() {
        let err = map_column(&col("uuid", "uuid")).unwrap_err();
        assert!(err.contains("uuid"), "{err}");
    }
}
