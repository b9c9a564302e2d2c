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
    /// The names tables are renamed to (`RENAME TABLE a TO b`, `ALTER TABLE a RENAME TO
    /// b`), also in `tables`: each now names the table that had another name.
    pub renamed_to: Vec<(String, String)>,
    /// Whether the statement removes or moves rows of the table it alters, which the binlog
    /// logs only as this statement (`ALTER TABLE t TRUNCATE | DROP | EXCHANGE | CONVERT
    /// PARTITION ...`, `CONVERT TABLE x TO PARTITION ...`). The other table of an `EXCHANGE
    /// ... WITH TABLE x` or `CONVERT ... TO TABLE x` is in `renamed_to`: its rows came from
    /// elsewhere.
    pub moves_rows: bool,
    /// `CREATE TABLE IF NOT EXISTS` (not `OR REPLACE`): a no-op where the table exists, yet
    /// logged all the same.
    pub if_not_exists: bool,
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
    let mut replace = false;
    // CREATE OR REPLACE, ONLINE/IGNORE, TEMPORARY: skip modifiers up to TABLE.
    while i < upper.len() && word(i) != "TABLE" {
        replace |= word(i) == "REPLACE";
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
    let if_not_exists = kind == DdlKind::Create && word(i) == "IF" && word(i + 1) == "NOT";
    if word(i) == "IF" {
        i += if word(i + 1) == "NOT" { 3 } else { 2 };
    }
    let mut tables = Vec::new();
    let mut renamed_to = Vec::new();
    let mut target = false;
    while tokens.get(i).is_some() {
        let (db, t) = name_at(&tokens, &mut i, default_db)?;
        if target {
            renamed_to.push((db.clone(), t.clone()));
        }
        tables.push((db, t));
        // DROP TABLE a, b / RENAME TABLE a TO b, c TO d: collect every name.
        match (kind.clone(), upper.get(i).map(String::as_str)) {
            (DdlKind::Drop, Some(",")) | (DdlKind::Rename, Some(",")) => {
                i += 1;
                target = false;
            }
            (DdlKind::Rename, Some("TO")) => {
                i += 1;
                target = true;
            }
            _ => break,
        }
    }
    let mut moves_rows = false;
    if kind == DdlKind::Alter {
        // ALTER TABLE a ..., RENAME [TO | AS] b (not RENAME COLUMN / INDEX / KEY); partition
        // operations that remove or move rows.
        while i < upper.len() {
            let partition = word(i + 1) == "PARTITION"
                && matches!(word(i), "TRUNCATE" | "DROP" | "EXCHANGE" | "CONVERT");
            if partition || (word(i) == "CONVERT" && word(i + 1) == "TABLE") {
                moves_rows = true;
                i += 1;
            } else if matches!(word(i), "WITH" | "TO") && word(i + 1) == "TABLE" && moves_rows {
                i += 2;
                let other = name_at(&tokens, &mut i, default_db)?;
                renamed_to.push(other.clone());
                tables.push(other);
            } else if word(i) == "RENAME" && !matches!(word(i + 1), "COLUMN" | "INDEX" | "KEY") {
                i += 1;
                if matches!(word(i), "TO" | "AS") {
                    i += 1;
                }
                let to = name_at(&tokens, &mut i, default_db)?;
                renamed_to.push(to.clone());
                tables.push(to);
            } else {
                i += 1;
            }
        }
    }
    (!tables.is_empty()).then_some(Ddl {
        kind,
        tables,
        renamed_to,
        moves_rows,
        if_not_exists: if_not_exists && !replace,
    })
}

/// The table name at `tokens[*i]` (`db.t` or `t`), moving `i` past it.
fn name_at(tokens: &[String], i: &mut usize, default_db: &str) -> Option<(String, String)> {
    let name = tokens.get(*i)?;
    if tokens.get(*i + 1).map(String::as_str) == Some(".") {
        let t = tokens.get(*i + 2)?;
        *i += 3;
        Some((unquote(name), unquote(t)))
    } else {
        *i += 1;
        Some((default_db.to_string(), unquote(name)))
    }
}

/// The tables a data-changing statement (`INSERT`, `UPDATE`, `DELETE`, `REPLACE`, `LOAD
/// DATA`) names, as far as its words tell: every name, qualified or with `default_db`, that
/// `known` accepts (an over-approximation: a column spelled like a table counts). `None` for
/// any other statement.
pub fn changed_tables(
    query: &str,
    default_db: &str,
    known: impl Fn(&(String, String)) -> bool,
) -> Option<Vec<(String, String)>> {
    let tokens = tokenize(query);
    let first = tokens.first()?.to_ascii_uppercase();
    if !matches!(
        first.as_str(),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD"
    ) {
        return None;
    }
    let mut named = Vec::new();
    let mut i = 1;
    while i < tokens.len() {
        let qualified = tokens.get(i + 1).map(String::as_str) == Some(".") && i + 2 < tokens.len();
        let name = if qualified {
            (unquote(&tokens[i]), unquote(&tokens[i + 2]))
        } else {
            (default_db.to_string(), unquote(&tokens[i]))
        };
        if known(&name) && !named.contains(&name) {
            named.push(name);
        }
        i += if qualified { 3 } else { 1 };
    }
    Some(named)
}

/// The database a `DROP DATABASE | SCHEMA [IF EXISTS] name` removes, with every table in it
/// (no `DROP TABLE` of them is logged).
pub fn dropped_database(query: &str) -> Option<String> {
    let tokens = tokenize(query);
    let word = |i: usize| tokens.get(i).map(|t| t.to_ascii_uppercase());
    if word(0)?.as_str() != "DROP" || !matches!(word(1)?.as_str(), "DATABASE" | "SCHEMA") {
        return None;
    }
    let i = if word(2)?.as_str() == "IF" { 4 } else { 2 };
    tokens.get(i).map(|t| unquote(t))
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
                tables: vec![t("shop", "orders")],
                renamed_to: vec![],
                moves_rows: false,
                if_not_exists: false,
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
        assert_eq!(d.renamed_to, vec![t("s", "b"), t("x", "d")]);
        let d = parse("ALTER TABLE b_new ADD COLUMN c int, RENAME TO `x`.b", "s").unwrap();
        assert_eq!(
            (d.kind, d.tables, d.renamed_to),
            (
                DdlKind::Alter,
                vec![t("s", "b_new"), t("x", "b")],
                vec![t("x", "b")]
            )
        );
        let d = parse("ALTER TABLE a RENAME AS b", "s").unwrap();
        assert_eq!(d.renamed_to, vec![t("s", "b")]);
        let d = parse(
            "ALTER TABLE a RENAME COLUMN c TO d, RENAME INDEX i TO j",
            "s",
        )
        .unwrap();
        assert_eq!((d.tables, d.renamed_to), (vec![t("s", "a")], vec![]));
        assert!(!d.moves_rows);
        for q in [
            "ALTER TABLE p TRUNCATE PARTITION p0",
            "ALTER TABLE p DROP PARTITION p0, p1",
            "ALTER TABLE p CONVERT TABLE x TO PARTITION p9 VALUES LESS THAN (5)",
        ] {
            assert!(parse(q, "s").unwrap().moves_rows, "{q}");
        }
        let d = parse("ALTER TABLE p EXCHANGE PARTITION p0 WITH TABLE o.e", "s").unwrap();
        assert!(d.moves_rows);
        assert_eq!(d.renamed_to, vec![t("o", "e")]);
        let d = parse("ALTER TABLE p CONVERT PARTITION p0 TO TABLE e", "s").unwrap();
        assert_eq!((d.moves_rows, d.renamed_to), (true, vec![t("s", "e")]));
        let d = parse(
            "ALTER TABLE p ADD PARTITION (PARTITION p2 VALUES LESS THAN (200))",
            "s",
        );
        assert!(!d.unwrap().moves_rows);
        let d = parse("CREATE TABLE IF NOT EXISTS n (id int)", "s").unwrap();
        assert!(d.if_not_exists);
        assert_eq!((d.kind, d.tables), (DdlKind::Create, vec![t("s", "n")]));
        for q in [
            "CREATE TABLE n (id int)",
            "CREATE OR REPLACE TABLE n (id int)",
        ] {
            assert!(!parse(q, "s").unwrap().if_not_exists, "{q}");
        }
        for (q, db) in [
            ("DROP DATABASE shop", Some("shop")),
            ("drop schema if exists `sh``op`", Some("sh`op")),
            ("DROP TABLE shop", None),
            ("DROP DATABASE", None),
        ] {
            assert_eq!(dropped_database(q).as_deref(), db, "{q}");
        }
        assert_eq!(parse("CREATE TEMPORARY TABLE tmp (id int)", "s"), None);
        assert_eq!(parse("CREATE INDEX i ON t (a)", "s"), None);
        assert_eq!(parse("BEGIN", "s"), None);
        assert_eq!(parse("INSERT INTO t VALUES (1)", "s"), None);
    }

    #[test]
    fn tables_a_statement_changes() {
        let known = |n: &(String, String)| n.0 == "s" && (n.1 == "b" || n.1 == "c");
        assert_eq!(
            changed_tables("UPDATE b SET v = 'b' WHERE id = 1", "s", known),
            Some(vec![t("s", "b")])
        );
        assert_eq!(
            changed_tables(
                "DELETE x FROM `s`.`c` AS x JOIN o.b ON x.id = b.id",
                "s",
                known
            ),
            Some(vec![t("s", "c")])
        );
        assert_eq!(
            changed_tables("insert into other values (1)", "s", known),
            Some(vec![])
        );
        assert_eq!(changed_tables("SAVEPOINT b", "s", known), None);
    }
}
