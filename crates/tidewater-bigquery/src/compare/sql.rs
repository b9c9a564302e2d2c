//! The SQL text of the BigQuery comparison: source rows as literals cast to the replica's
//! types, key texts, key ranges in BigQuery's order, and the column comparisons.
//!
//! A source value enters as the JSON value the sink itself sends to insertAll
//! (`types::encode`), written as a string literal and cast by BigQuery's SQL to the column's
//! type, so both sides are compared as typed BigQuery values and no text format can hide or
//! invent a difference. Arrays and JSON are compared by `TO_JSON_STRING` of the typed value;
//! a NULL source array is an empty one (BigQuery stores no NULL arrays).

use tidewater_core::{ColumnType, Error, Result, TableSchema, Value};

use crate::tables::ident;
use crate::types::{bq_type, encode, BqField, BqType};

/// A BigQuery string literal for any text (newlines and control characters escaped).
pub fn text_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `expr`, a STRING holding what `types::encode` gives for one value, as the typed value.
fn cast_scalar(expr: &str, field: BqField) -> String {
    match field {
        BqField::String => expr.to_string(),
        BqField::Bytes => format!("FROM_BASE64({expr})"),
        BqField::Json => format!("PARSE_JSON({expr})"),
        other => format!("CAST({expr} AS {})", other.sql_name()),
    }
}

/// `expr` (text of the encoded value; for an array, a JSON array of them) as the column's
/// BigQuery value.
pub fn cast(expr: &str, t: BqType) -> String {
    if !t.repeated {
        return cast_scalar(expr, t.field);
    }
    format!(
        "ARRAY(SELECT {} FROM UNNEST(JSON_VALUE_ARRAY({expr})) AS _tw_e WITH OFFSET _tw_o \
         ORDER BY _tw_o)",
        cast_scalar("_tw_e", t.field)
    )
}

/// The text of a key value as `encode` would give it: what [`cast`] takes back.
pub fn key_text(expr: &str, field: BqField) -> String {
    match field {
        BqField::String => expr.to_string(),
        BqField::Bytes => format!("TO_BASE64({expr})"),
        _ => format!("CAST({expr} AS STRING)"),
    }
}

/// Whether verify can use a column of this type in a key.
pub fn key_usable(t: &BqType) -> bool {
    !t.repeated && t.field != BqField::Json
}

/// A source value as the text the comparison casts: `types::encode`'s value (an array as a
/// JSON array of element texts); `None` for NULL (an array: empty).
pub fn encoded(ty: &ColumnType, v: &Value) -> Result<Option<String>> {
    let repeated = bq_type(ty).repeated;
    let text = match v {
        Value::Text(_) => v
            .as_str()
            .ok_or_else(|| Error::source_fatal("a source value is not valid UTF-8"))?,
        Value::Null if repeated => return Ok(Some("[]".into())),
        _ => return Ok(None),
    };
    Ok(Some(match encode(ty, text)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Bool(b) => b.to_string(),
        array @ serde_json::Value::Array(_) => array.to_string(),
        other => other.to_string(),
    }))
}

/// `SELECT <typed columns>, true AS _tw_present FROM <rows>`: the rows travel as one JSON
/// text (an array of arrays of strings) in one string literal, read back by `JSON_VALUE`
/// (exact: JSON strings decode to the same text). One literal parses far faster than one
/// `STRUCT` per row, and JSON's escapes carry every character.
pub fn source_rows(schema: &TableSchema, rows: &[Vec<Option<String>>]) -> String {
    let json = serde_json::to_string(rows).expect("strings serialise");
    let casts: Vec<String> = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let cell = format!("JSON_VALUE(_tw_row, '$[{i}]')");
            format!("{} AS {}", cast(&cell, bq_type(&c.ty)), ident(&c.name))
        })
        .collect();
    format!(
        "SELECT {}, true AS _tw_present FROM UNNEST(JSON_QUERY_ARRAY({})) AS _tw_row",
        casts.join(", "),
        text_literal(&json)
    )
}

/// `a.k1 = b.k1 AND ...`
pub fn key_join(s: &TableSchema, a: &str, b: &str) -> String {
    let on = s.key.iter().map(|&k| {
        let n = ident(&s.columns[k].name);
        format!("{a}.{n} = {b}.{n}")
    });
    on.collect::<Vec<_>>().join(" AND ")
}

/// The source's columns, `alias.`-prefixed.
pub fn columns(s: &TableSchema, alias: &str) -> String {
    let cols = s
        .columns
        .iter()
        .map(|c| format!("{alias}.{}", ident(&c.name)));
    cols.collect::<Vec<_>>().join(", ")
}

/// `s.c IS DISTINCT FROM r.c OR ...` over the non-key columns (`FALSE` when none).
pub fn distinct(s: &TableSchema) -> String {
    let parts: Vec<String> = s
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !s.key.contains(i))
        .map(|(_, c)| {
            let n = ident(&c.name);
            let t = bq_type(&c.ty);
            if t.repeated {
                // NULL and empty arrays are one to BigQuery (the emulator keeps NULL).
                format!(
                    "COALESCE(TO_JSON_STRING(s.{n}), '[]') IS DISTINCT FROM \
                     COALESCE(TO_JSON_STRING(r.{n}), '[]')"
                )
            } else if t.field == BqField::Json {
                format!("TO_JSON_STRING(s.{n}) IS DISTINCT FROM TO_JSON_STRING(r.{n})")
            } else {
                format!("s.{n} IS DISTINCT FROM r.{n}")
            }
        })
        .collect();
    if parts.is_empty() {
        "FALSE".into()
    } else {
        parts.join(" OR ")
    }
}

/// A row's image: the JSON text of `alias`'s typed values in column order, equal for equal
/// rows (a NULL array as an empty one, as in [`distinct`]). What keyless tables are compared
/// by (`multiset`).
pub fn row_image(s: &TableSchema, alias: &str) -> String {
    let parts: Vec<String> = s
        .columns
        .iter()
        .map(|c| {
            let none = if bq_type(&c.ty).repeated {
                "[]"
            } else {
                "null"
            };
            format!(
                "COALESCE(TO_JSON_STRING({alias}.{}), '{none}')",
                ident(&c.name)
            )
        })
        .collect();
    format!("CONCAT('[', {}, ']')", parts.join(", ',', "))
}

/// The key texts (`key_text`) of `COALESCE(a.k, b.k)` for each key column, as `_tw_k0, ...`.
pub fn key_texts(s: &TableSchema, a: &str, b: &str) -> String {
    let texts = s.key.iter().enumerate().map(|(i, &k)| {
        let c = &s.columns[k];
        let n = ident(&c.name);
        let value = format!("COALESCE({a}.{n}, {b}.{n})");
        format!("{} AS _tw_k{i}", key_text(&value, bq_type(&c.ty).field))
    });
    texts.collect::<Vec<_>>().join(", ")
}

/// Key values from their texts, cast to the key columns' types.
pub fn key_literals(s: &TableSchema, texts: &[String]) -> Vec<String> {
    let keys = s.key.iter().zip(texts);
    keys.map(|(&k, t)| cast(&text_literal(t), bq_type(&s.columns[k].ty)))
        .collect()
}

/// `alias.(k1, k2, ...) > (v1, v2, ...)` in BigQuery's order (it has no row comparison).
fn tuple_greater(names: &[String], values: &[String]) -> String {
    match (names, values) {
        ([n], [v]) => format!("{n} > {v}"),
        ([n, names @ ..], [v, values @ ..]) => format!(
            "({n} > {v} OR ({n} = {v} AND {}))",
            tuple_greater(names, values)
        ),
        _ => "FALSE".into(),
    }
}

/// `lo < key AND key <= hi` over `alias`'s key columns, in BigQuery's order, with a plain
/// bound on the first key column (constant: BigQuery prunes clustered blocks by it); `TRUE`
/// when unbounded.
pub fn key_range(
    s: &TableSchema,
    alias: &str,
    lo: Option<&[String]>,
    hi: Option<&[String]>,
) -> String {
    let names: Vec<String> = s
        .key
        .iter()
        .map(|&k| format!("{alias}.{}", ident(&s.columns[k].name)))
        .collect();
    let mut conds = Vec::new();
    if let Some(lo) = lo {
        let lits = key_literals(s, lo);
        if names.len() > 1 {
            conds.push(format!("{} >= {}", names[0], lits[0]));
        }
        conds.push(tuple_greater(&names, &lits));
    }
    if let Some(hi) = hi {
        let lits = key_literals(s, hi);
        if names.len() > 1 {
            conds.push(format!("{} <= {}", names[0], lits[0]));
        }
        conds.push(format!("NOT {}", tuple_greater(&names, &lits)));
    }
    if conds.is_empty() {
        "TRUE".into()
    } else {
        conds.join(" AND ")
    }
}

/// `alias.<first key> IN (<the values>)`, the values as one JSON literal (see
/// `source_rows`).
pub fn first_key_in(s: &TableSchema, alias: &str, values: &[&str]) -> String {
    if values.is_empty() {
        return "FALSE".into();
    }
    let c = &s.columns[s.key[0]];
    let json = serde_json::to_string(values).expect("strings serialise");
    format!(
        "{alias}.{} IN UNNEST(ARRAY(SELECT {} FROM UNNEST(JSON_VALUE_ARRAY({})) AS _tw_v))",
        ident(&c.name),
        cast_scalar("_tw_v", bq_type(&c.ty).field),
        text_literal(&json)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{Column, TableId};

    fn schema() -> TableSchema {
        let col = |name: &str, ty| Column {
            name: name.into(),
            ty,
            nullable: false,
            source_type: String::new(),
        };
        TableSchema {
            id: TableId::new("s", "t"),
            columns: vec![
                col("a", ColumnType::Int32),
                col("b", ColumnType::Text),
                col("tags", ColumnType::List(Box::new(ColumnType::Int32))),
            ],
            key: vec![1, 0],
        }
    }

    #[test]
    fn literals_escape_everything_bigquery_would_misread() {
        assert_eq!(text_literal("it's\n\\x\u{1}"), "'it\\'s\\n\\\\x\\u0001'");
    }

    #[test]
    fn ranges_follow_bigquerys_order_without_row_comparison() {
        let s = schema();
        assert_eq!(key_range(&s, "r", None, None), "TRUE");
        let lo = ["x".to_string(), "1".to_string()];
        assert_eq!(
            key_range(&s, "r", Some(&lo), None),
            "r.`b` >= 'x' AND (r.`b` > 'x' OR (r.`b` = 'x' AND r.`a` > CAST('1' AS INT64)))"
        );
        assert_eq!(
            distinct(&s),
            "COALESCE(TO_JSON_STRING(s.`tags`), '[]') IS DISTINCT FROM \
             COALESCE(TO_JSON_STRING(r.`tags`), '[]')"
        );
        let list = &s.columns[2].ty;
        assert_eq!(encoded(list, &Value::Null).unwrap().as_deref(), Some("[]"));
        let two = encoded(list, &Value::text(r#"["1","2"]"#)).unwrap();
        assert_eq!(two.as_deref(), Some(r#"["1","2"]"#));
        assert_eq!(
            row_image(&s, "r"),
            "CONCAT('[', COALESCE(TO_JSON_STRING(r.`a`), 'null'), ',', \
             COALESCE(TO_JSON_STRING(r.`b`), 'null'), ',', \
             COALESCE(TO_JSON_STRING(r.`tags`), '[]'), ']')"
        );
    }
}
