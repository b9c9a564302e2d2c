//! Browsing the replica from psql and BI tools: the catalog questions they ask in
//! PostgreSQL's terms (`pg_catalog.pg_class`, `pg_attribute`, ...), answered from DuckDB's
//! own catalog (`duckdb_tables()`, `duckdb_columns()`, `information_schema`).
//!
//! DuckDB has only part of `pg_catalog`, so psql's `\dt`, `\d <table>` and `\dn` fail on it
//! as they are sent; and DuckDB's `SHOW TABLES` lists the tables of the `main` schema, where
//! a replica has none. Each statement recognised here is rewritten into a DuckDB query with
//! the columns the client reads, which then runs like any other (the read-only gate). The
//! endpoint asks through `Replica::catalog_statement`, so it names no destination's SQL.
//! Recognition keys on the fragments psql's describe queries have had since PostgreSQL 12
//! (the endpoint reports version 14); a statement not recognised runs unchanged.
//!
//! tidewater's own schema (`_tidewater`) and DuckDB's are left out of every listing.

/// Schemas that hold no replicated table.
const HIDDEN_SCHEMAS: &str = "'_tidewater', 'information_schema', 'pg_catalog'";

/// The DuckDB statement answering `sql`, when `sql` is a catalog question asked in
/// PostgreSQL's terms.
pub fn rewrite(sql: &str) -> Option<String> {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    if trimmed.eq_ignore_ascii_case("show tables") {
        return Some(format!(
            "SELECT schema_name AS schema, table_name AS name FROM duckdb_tables() \
             WHERE database_name = current_database() AND schema_name NOT IN ({HIDDEN_SCHEMAS}) \
             ORDER BY 1, 2"
        ));
    }
    if !sql.contains("pg_catalog.") {
        return None;
    }
    let filter = name_filter(sql);
    // \dt: the list of tables.
    if sql.contains("FROM pg_catalog.pg_class c") && sql.contains("as \"Owner\"") {
        return Some(format!(
            "SELECT schema_name AS \"Schema\", table_name AS \"Name\", 'table' AS \"Type\", \
             'tidewater' AS \"Owner\" FROM duckdb_tables() WHERE database_name = \
             current_database() AND schema_name NOT IN ({HIDDEN_SCHEMAS}){filter} ORDER BY 1, 2"
        ));
    }
    // \dn: the list of schemas.
    if sql.contains("FROM pg_catalog.pg_namespace n") && sql.contains("AS \"Name\"") {
        let filter = pattern_filter(sql, "n.nspname", "schema_name").unwrap_or_default();
        return Some(format!(
            "SELECT schema_name AS \"Name\", 'tidewater' AS \"Owner\" FROM duckdb_schemas() \
             WHERE database_name = current_database() AND NOT internal AND schema_name NOT IN \
             ({HIDDEN_SCHEMAS}){filter} ORDER BY 1"
        ));
    }
    // \d <pattern>, first step: the matching tables (oid, schema, name).
    if sql.starts_with("SELECT c.oid,\n  n.nspname,\n  c.relname") || is_lookup(sql) {
        return Some(format!(
            "SELECT table_oid AS oid, schema_name AS nspname, table_name AS relname \
             FROM duckdb_tables() WHERE database_name = current_database() AND schema_name \
             NOT IN ({HIDDEN_SCHEMAS}){filter} ORDER BY 2, 3"
        ));
    }
    let oid = relation_oid(sql);
    // \d, second step: the table's properties, in the order psql reads them.
    if sql.contains("c.relchecks, c.relkind, c.relhasindex") {
        let oid = oid?;
        return Some(format!(
            "SELECT 0 AS relchecks, 'r' AS relkind, false AS relhasindex, false AS relhasrules, \
             false AS relhastriggers, false AS relrowsecurity, false AS relforcerowsecurity, \
             false AS relhasoids, false AS relispartition, '' AS reloptions, 0 AS reltablespace, \
             '' AS reloftype, 'p' AS relpersistence, 'd' AS relreplident, NULL AS amname \
             FROM duckdb_tables() WHERE table_oid = {oid}"
        ));
    }
    // \d, third step: the columns (name, type, default, not null, collation, identity,
    // generated).
    if sql.contains("FROM pg_catalog.pg_attribute a") && sql.contains("a.attnotnull") {
        let oid = oid?;
        return Some(format!(
            "SELECT column_name AS attname, lower(data_type) AS format_type, column_default \
             AS attrdef, NOT is_nullable AS attnotnull, NULL AS attcollation, '' AS \
             attidentity, '' AS attgenerated FROM duckdb_columns() WHERE table_oid = {oid} \
             ORDER BY column_index"
        ));
    }
    // \d, the rest: indexes, constraints, triggers, policies, statistics, publications,
    // inheritance. A replica has none of these; psql only reads their rows.
    const NONE_HERE: &[&str] = &[
        "pg_catalog.pg_index ",
        "pg_catalog.pg_constraint",
        "pg_catalog.pg_trigger",
        "pg_catalog.pg_policy",
        "pg_catalog.pg_statistic_ext",
        "pg_catalog.pg_publication",
        "pg_catalog.pg_inherits",
        "pg_catalog.pg_rewrite",
        "pg_catalog.pg_foreign_table",
    ];
    if oid.is_some() && NONE_HERE.iter().any(|t| sql.contains(t)) {
        return Some("SELECT NULL AS none WHERE false".into());
    }
    None
}

/// psql's lookup of the relations a `\d` pattern names.
fn is_lookup(sql: &str) -> bool {
    sql.contains("SELECT c.oid,")
        && sql.contains("c.relname")
        && sql.contains("pg_catalog.pg_table_is_visible(c.oid)")
        && !sql.contains("\"Owner\"")
}

/// `AND ...` restricting table and schema names to the patterns psql sent, if any.
fn name_filter(sql: &str) -> String {
    let mut filter = String::new();
    for (pg, duck) in [("c.relname", "table_name"), ("n.nspname", "schema_name")] {
        filter.push_str(&pattern_filter(sql, pg, duck).unwrap_or_default());
    }
    filter
}

/// psql turns a name pattern into `<column> OPERATOR(pg_catalog.~) '<regex>'`: the same
/// regular expression applied to DuckDB's column.
fn pattern_filter(sql: &str, pg_column: &str, duck_column: &str) -> Option<String> {
    let marker = format!("{pg_column} OPERATOR(pg_catalog.~) '");
    let start = sql.find(&marker)? + marker.len();
    let regex = sql_literal(&sql[start..])?;
    Some(format!(
        " AND regexp_matches({duck_column}, '{}')",
        regex.replace('\'', "''")
    ))
}

/// The text of a single-quoted SQL literal whose opening quote was just passed.
fn sql_literal(rest: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
            } else {
                return Some(out);
            }
        }
        out.push(c);
    }
    None
}

/// The relation oid psql's describe queries filter on (`c.oid = '16385'`,
/// `a.attrelid = '16385'`, ...): digits only, so it can be placed in SQL as is.
fn relation_oid(sql: &str) -> Option<u64> {
    for marker in [
        "c.oid = '",
        "a.attrelid = '",
        "i.inhrelid = '",
        "i.inhparent = '",
        "pol.polrelid = '",
        "stxrelid = '",
        "pr.prrelid = '",
        "conrelid = '",
        "tgrelid = '",
        "indrelid = '",
    ] {
        if let Some(at) = sql.find(marker) {
            let digits: String = sql[at + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(oid) = digits.parse() {
                return Some(oid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_oids() {
        assert_eq!(sql_literal("^(it''s)$' COLLATE"), Some("^(it's)$".into()));
        assert_eq!(sql_literal("unterminated"), None);
        assert_eq!(relation_oid("WHERE a.attrelid = '16385' AND"), Some(16385));
        assert_eq!(relation_oid("WHERE c.oid = 'x'"), None);
        assert!(rewrite("SELECT 1").is_none());
        assert!(rewrite("show tables;").is_some());
    }
}
