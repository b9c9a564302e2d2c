//! Just enough of MySQL's DDL to know which tables a statement in the binlog touches.

/// What a statement does to tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DdlKind {
    Truncate,
    Alter,
    Drop,
    Rename,
    Create,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ddl {
    pub kind: DdlKind,
    /// `(database, table)`; the database is the statement's default one when not named.
    pub tables: Vec<(String, String)>,
}

/// Parses `TRUNCATE/ALTER/DROP/RENAME/CREATE TABLE ...`; other statements give `None`.
pub fn parse(query: &str, default_db: &str) -> Option<Ddl> {
    let tokens = tokenize(query);
    let upper: Vec<String> = tokens.iter().map(|t| t.to_ascii_uppercase()).collect();
    let mut i = 0;
    let word = |i: usize| upper.get(i).map(String::as_str).unwrap_or("");
    let kind = match word(0) {
        "TRUNCATE" => DdlKind::Truncate,
        "ALTER" => DdlKind::Alter,
        "DROP" => DdlKind::Drop,
        "RENAME" => DdlKind::Rename,
        "CREATE" => DdlKind::Create,
        _ => return None,
    };
    i += 1;
    // CREATE OR REPLACE, ONLINE/IGNORE, TEMPORARY: skip modifiers up to TABLE.
    while i < upper.len() && word(i) != "TABLE" {
        if !matches!(
            word(i),
            "OR" | "REPLACE" | "ONLINE" | "OFFLINE" | "IGNORE" | "TEMPORARY"
        ) {
            // TRUNCATE without TABLE names the table directly.
            if kind == DdlKind::Truncate {
                break;
            }
            return None;
        }
        if word(i) == "TEMPORARY" {
            return None;
        }
        i += 1;
    }
    if word(i) == "TABLE" {
        i += 1;
    }
    if word(i) == "IF" {
        i += if word(i + 1) == "NOT" { 3 } else { 2 };
    }
    let mut tables = Vec::new();
    while let Some(name) = tokens.get(i) {
        let (db, t) = if tokens.get(i + 1).map(String::as_str) == Some(".") {
            let t = tokens.get(i + 2)?.clone();
            i += 3;
            (unquote(name), unquote(&t))
        } else {
            i += 1;
            (default_db.to_string(), unquote(name))
        };
        tables.push((db, t));
        // DROP TABLE a, b / RENAME TABLE a TO b, c TO d: collect every name.
        match (kind.clone(), upper.get(i).map(String::as_str)) {
            (DdlKind::Drop, Some(",")) | (DdlKind::Rename, Some(",")) => i += 1,
            (DdlKind::Rename, Some("TO")) => i += 1,
            _ => break,
        }
    }
    (!tables.is_empty()).then_some(Ddl { kind, tables })
}

fn unquote(s: &str) -> String {
    s.strip_prefix('`')
        .and_then(|s| s.strip_suffix('`'))
        .map(|s| s.replace("``", "`"))
        .unwrap_or_else(|| s.to_string())
}

/// Words, backquoted identifiers and single punctuation; comments and strings skipped.
fn tokenize(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = q.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '/' {
            chars.next();
            if chars.peek() == Some(&'*') {
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
        } else if c == '`' {
            let mut s = String::from(chars.next().unwrap_or('`'));
            while let Some(c) = chars.next() {
                s.push(c);
                if c == '`' {
                    if chars.peek() == Some(&'`') {
                        s.push(chars.next().unwrap_or('`'));
                    } else {
                        break;
                    }
                }
            }
            out.push(s);
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() || c == '_' || c == '$' {
                    s.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(s);
        } else {
            out.push(chars.next().unwrap_or(' ').to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(db: &str, name: &str) -> (String, String) {
        (db.to_string(), name.to_string())
    }

    #[test]
    fn statements() {
        assert_eq!(
            parse("TRUNCATE TABLE `shop`.`orders`", "x"),
            Some(Ddl {
                kind: DdlKind::Truncate,
                tables: vec![t("shop", "orders")]
            })
        );
        assert_eq!(
            parse("truncate orders", "shop").unwrap().tables,
            vec![t("shop", "orders")]
        );
        let d = parse("ALTER TABLE orders ADD COLUMN note text", "shop").unwrap();
        assert_eq!(
            (d.kind, d.tables),
            (DdlKind::Alter, vec![t("shop", "orders")])
        );
        let d = parse(
            "DROP TABLE IF EXISTS `a`, b.`c``d` /* generated by server */",
            "s",
        )
        .unwrap();
        assert_eq!(d.tables, vec![t("s", "a"), t("b", "c`d")]);
        let d = parse("RENAME TABLE a TO b, x.c TO x.d", "s").unwrap();
        assert_eq!(
            d.tables,
            vec![t("s", "a"), t("s", "b"), t("x", "c"), t("x", "d")]
        );
        let d = parse("CREATE TABLE IF NOT EXISTS n (id int)", "s").unwrap();
        assert_eq!((d.kind, d.tables), (DdlKind::Create, vec![t("s", "n")]));
        assert_eq!(parse("CREATE TEMPORARY TABLE tmp (id int)", "s"), None);
        assert_eq!(parse("CREATE INDEX i ON t (a)", "s"), None);
        assert_eq!(parse("BEGIN", "s"), None);
        assert_eq!(parse("INSERT INTO t VALUES (1)", "s"), None);
    }
}
