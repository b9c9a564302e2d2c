//! SQL text of the comparison: key lists, joins, ranges and the column comparisons.

use crate::sql::{duckdb_type, quote_ident, quote_literal};
use tidewater_core::{Column, ColumnType, TableSchema};

pub(super) fn key_columns(s: &TableSchema) -> impl Iterator<Item = &Column> {
    s.key.iter().map(|&k| &s.columns[k])
}

/// `a.k1, a.k2`
pub(super) fn key_list(s: &TableSchema, alias: &str) -> String {
    key_columns(s)
        .map(|c| format!("{alias}.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a.k1 = b.k1 AND ...`
pub(super) fn key_join(s: &TableSchema, a: &str, b: &str) -> String {
    key_columns(s)
        .map(|c| {
            let n = quote_ident(&c.name);
            format!("{a}.{n} = {b}.{n}")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The source's columns, in source order (the replica's physical order may differ).
pub(super) fn columns(s: &TableSchema, alias: Option<&str>) -> String {
    let prefix = alias.map(|a| format!("{a}.")).unwrap_or_default();
    s.columns
        .iter()
        .map(|c| format!("{prefix}{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Columns as compared: JSON by its document (whitespace aside), everything else as is.
pub(super) fn normalized(s: &TableSchema) -> String {
    s.columns
        .iter()
        .map(|c| {
            let n = quote_ident(&c.name);
            match c.ty {
                ColumnType::Json => format!("json(r.{n}) AS {n}"),
                _ => format!("r.{n}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// ` OR s.c IS DISTINCT FROM r.c ...` over the non-key columns.
pub(super) fn or_distinct(s: &TableSchema) -> String {
    s.columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !s.key.contains(i))
        .map(|(_, c)| {
            let n = quote_ident(&c.name);
            match c.ty {
                ColumnType::Json => format!(" OR json(s.{n}) IS DISTINCT FROM json(r.{n})"),
                _ => format!(" OR s.{n} IS DISTINCT FROM r.{n}"),
            }
        })
        .collect()
}

/// `CAST('text' AS type)` per key column, from DuckDB's own text of the values.
pub(super) fn key_literals(s: &TableSchema, texts: &[String]) -> Vec<String> {
    key_columns(s)
        .zip(texts)
        .map(|(c, t)| format!("CAST({} AS {})", quote_literal(t), duckdb_type(&c.ty)))
        .collect()
}

/// ` WHERE lo < key <= hi` in DuckDB's order of keys (row comparison), with a plain range on
/// the first key column so the scan can skip row groups by their min/max.
pub(super) fn range_filter(
    s: &TableSchema,
    lo: Option<&[String]>,
    hi: Option<&[String]>,
) -> String {
    let names: Vec<String> = key_columns(s)
        .map(|c| format!("r.{}", quote_ident(&c.name)))
        .collect();
    let row = |items: &[String]| {
        if items.len() == 1 {
            items[0].clone()
        } else {
            format!("({})", items.join(", "))
        }
    };
    let mut conds = Vec::new();
    for (bound, strict, op) in [(lo, ">", ">="), (hi, "<=", "<=")] {
        let Some(texts) = bound else { continue };
        let lits = key_literals(s, texts);
        conds.push(format!("{} {strict} {}", row(&names), row(&lits)));
        if names.len() > 1 {
            conds.push(format!("{} {op} {}", names[0], lits[0]));
        }
    }
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{Column, TableId};

    fn schema(key: Vec<usize>) -> TableSchema {
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
                col("j", ColumnType::Json),
            ],
            key,
        }
    }

    #[test]
    fn ranges_and_predicates() {
        let one = schema(vec![0]);
        assert_eq!(range_filter(&one, None, None), "");
        assert_eq!(
            range_filter(&one, Some(&["1".into()]), Some(&["9".into()])),
            " WHERE r.\"a\" > CAST('1' AS INTEGER) AND r.\"a\" <= CAST('9' AS INTEGER)"
        );
        let two = schema(vec![1, 0]);
        assert_eq!(
            range_filter(&two, Some(&["x".into(), "1".into()]), None),
            " WHERE (r.\"b\", r.\"a\") > (CAST('x' AS VARCHAR), CAST('1' AS INTEGER)) \
             AND r.\"b\" >= CAST('x' AS VARCHAR)"
        );
        assert_eq!(
            key_join(&two, "s", "r"),
            "s.\"b\" = r.\"b\" AND s.\"a\" = r.\"a\""
        );
        assert_eq!(
            or_distinct(&two),
            " OR json(s.\"j\") IS DISTINCT FROM json(r.\"j\")"
        );
    }
}
