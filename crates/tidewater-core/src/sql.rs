//! Quoting in the SQL standard's dialect, which PostgreSQL and DuckDB share: identifiers in
//! double quotes, string literals in single quotes, each quote doubled. The one home of both
//! for the PostgreSQL source, the DuckDB sink and the runtime's verify SQL. MySQL/MariaDB
//! (backticks, backslash escapes) quote in `tidewater-mysql` (`read::quote_ident`), BigQuery
//! in `tidewater-bigquery`.
//!
//! Correct for PostgreSQL only with `standard_conforming_strings = on` (the default since
//! 9.1; a backslash is then an ordinary character in a literal).

/// `"name"`, with `"` doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'`, with `'` doubled.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
