//! SQL text for DuckDB: identifiers, type mapping and the casts from canonical text.

use tidewater_core::{ColumnType, TableId};

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub fn qualified(id: &TableId) -> String {
    format!("{}.{}", quote_ident(&id.schema), quote_ident(&id.name))
}

pub fn log_table(id: &TableId) -> String {
    format!(
        "{}.{}",
        quote_ident(&id.schema),
        quote_ident(&format!("{}_log", id.name))
    )
}

/// DuckDB type of a replica column (README.md, "What lands in DuckDB").
pub fn duckdb_type(ty: &ColumnType) -> String {
    match ty {
        ColumnType::Int8 => "TINYINT".into(),
        ColumnType::Int16 => "SMALLINT".into(),
        ColumnType::Int32 => "INTEGER".into(),
        ColumnType::Int64 => "BIGINT".into(),
        ColumnType::UInt8 => "UTINYINT".into(),
        ColumnType::UInt16 => "USMALLINT".into(),
        ColumnType::UInt32 => "UINTEGER".into(),
        ColumnType::UInt64 => "UBIGINT".into(),
        ColumnType::Decimal { precision, scale } if *precision <= 38 => {
            format!("DECIMAL({precision},{scale})")
        }
        // Wider than DuckDB's DECIMAL: kept as exact text.
        ColumnType::Decimal { .. } => "VARCHAR".into(),
        ColumnType::Float32 => "REAL".into(),
        ColumnType::Float64 => "DOUBLE".into(),
        ColumnType::Bool => "BOOLEAN".into(),
        ColumnType::Text => "VARCHAR".into(),
        ColumnType::Bytes => "BLOB".into(),
        ColumnType::Date => "DATE".into(),
        ColumnType::Time => "TIME".into(),
        ColumnType::Interval => "INTERVAL".into(),
        ColumnType::Timestamp => "TIMESTAMP".into(),
        ColumnType::TimestampTz => "TIMESTAMPTZ".into(),
        ColumnType::Uuid => "UUID".into(),
        ColumnType::Json => "JSON".into(),
        ColumnType::List(elem) => format!("{}[]", duckdb_type(elem)),
    }
}

/// Expression converting `expr` (VARCHAR in canonical text form) to the replica type.
/// Invalid input fails the batch loudly rather than storing a wrong value.
pub fn cast_from_text(expr: &str, ty: &ColumnType) -> String {
    match ty {
        ColumnType::Text => expr.to_string(),
        ColumnType::Decimal { precision, .. } if *precision > 38 => expr.to_string(),
        ColumnType::Bytes => format!("unhex({expr})"),
        ColumnType::List(elem) => {
            let inner = cast_from_text("x", elem);
            format!("list_transform(from_json({expr}, '[\"VARCHAR\"]'), lambda x: {inner})")
        }
        other => format!("CAST({expr} AS {})", duckdb_type(other)),
    }
}

/// Expression turning a replica value `expr` back into canonical text (the inverse of
/// [`cast_from_text`]), e.g. to look a replica key up at the source. `None` for LIST values.
pub fn text_from_typed(expr: &str, ty: &ColumnType) -> Option<String> {
    Some(match ty {
        ColumnType::Text => expr.to_string(),
        ColumnType::Decimal { precision, .. } if *precision > 38 => expr.to_string(),
        ColumnType::Bytes => format!("lower(hex({expr}))"),
        // In UTC whatever the session's time zone.
        ColumnType::TimestampTz => {
            format!("CAST(make_timestamp(epoch_us({expr})) AS VARCHAR) || '+00'")
        }
        ColumnType::List(_) => return None,
        _ => format!("CAST({expr} AS VARCHAR)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_escaped() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(log_table(&TableId::new("s", "t")), "\"s\".\"t_log\"");
    }

    #[test]
    fn casts() {
        let list = ColumnType::List(Box::new(ColumnType::Bytes));
        assert_eq!(duckdb_type(&list), "BLOB[]");
        assert_eq!(
            cast_from_text("c0", &list),
            "list_transform(from_json(c0, '[\"VARCHAR\"]'), lambda x: unhex(x))"
        );
        let wide = ColumnType::Decimal {
            precision: 60,
            scale: 2,
        };
        assert_eq!(
            (
                duckdb_type(&wide).as_str(),
                cast_from_text("c", &wide).as_str()
            ),
            ("VARCHAR", "c")
        );
        assert_eq!(
            cast_from_text("c", &ColumnType::Int32),
            "CAST(c AS INTEGER)"
        );
        assert_eq!(
            text_from_typed("k", &ColumnType::Bytes).as_deref(),
            Some("lower(hex(k))")
        );
        assert_eq!(text_from_typed("k", &list), None);
    }
}
