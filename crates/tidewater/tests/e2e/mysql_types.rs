//! End to end, every MySQL/MariaDB column type: the same edge values copied by the snapshot
//! (binary protocol) and streamed through the binlog (row images: inserts, updates to other
//! values, to NULL and from NULL, deletes). Every column of every row must be exactly equal
//! between source and replica, compared through one canonical text per column and side.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{expect, run_cli, Rig};

/// How a column's two texts are compared.
#[derive(Clone, Copy, PartialEq)]
enum Cmp {
    /// Equal text.
    Text,
    /// Both sides print a double in a round-trip form: equal as IEEE-754 bits.
    Float,
}

struct Col {
    name: &'static str,
    decl: &'static str,
    /// MariaDB text expression over `{c}`.
    src: &'static str,
    /// DuckDB text expression over `{c}`.
    rep: &'static str,
    cmp: Cmp,
    /// Generated columns are not inserted.
    generated: bool,
    /// DuckDB `information_schema.columns.data_type`.
    duck_type: &'static str,
}

const fn col(
    name: &'static str,
    decl: &'static str,
    src: &'static str,
    rep: &'static str,
    duck_type: &'static str,
) -> Col {
    Col {
        name,
        decl,
        src,
        rep,
        cmp: Cmp::Text,
        generated: false,
        duck_type,
    }
}

const INT_SRC: &str = "CAST({c} AS CHAR)";
const INT_REP: &str = "{c}::VARCHAR";
/// Text in any charset: the hex of its UTF-8 bytes on both sides.
const TEXT_SRC: &str = "HEX(CONVERT({c} USING utf8mb4))";
const TEXT_REP: &str = "hex({c})";
const BIN_SRC: &str = "HEX({c})";
const BIN_REP: &str = "hex({c})";
/// MariaDB prints a FLOAT with 6 digits, a DOUBLE in shortest round-trip form: widen.
const FLOAT_SRC: &str = "CAST({c} AS DOUBLE)";
const FLOAT_REP: &str = "{c}::DOUBLE::VARCHAR";
/// Zero dates (a zero month or day) are replicated as NULL.
const DATE_SRC: &str =
    "IF(MONTH({c}) = 0 OR DAYOFMONTH({c}) = 0, NULL, DATE_FORMAT({c}, '%Y-%m-%d'))";
const DATE_REP: &str = "strftime({c}, '%Y-%m-%d')";
const DATETIME_SRC: &str =
    "IF(MONTH({c}) = 0 OR DAYOFMONTH({c}) = 0, NULL, DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f'))";
const DATETIME_REP: &str = "strftime({c}, '%Y-%m-%d %H:%M:%S.%f')";
/// TIME: signed microseconds.
const TIME_SRC: &str = "CAST(TIME_TO_SEC({c}) * 1000000 AS SIGNED)";
const TIME_REP: &str = "epoch_us({c})";
/// TIMESTAMP: microseconds since the epoch (independent of any session time zone); the zero
/// timestamp is replicated as NULL.
const TS_SRC: &str =
    "IF(UNIX_TIMESTAMP({c}) = 0, NULL, CAST(UNIX_TIMESTAMP({c}) * 1000000 AS SIGNED))";
const TS_REP: &str = "epoch_us({c})";

const COLUMNS: &[Col] = &[
    col("ti", "tinyint", INT_SRC, INT_REP, "TINYINT"),
    col("tu", "tinyint unsigned", INT_SRC, INT_REP, "UTINYINT"),
    Col {
        generated: true,
        ..col("gv", "int AS (ti * 2) VIRTUAL", INT_SRC, INT_REP, "INTEGER")
    },
    col("si", "smallint", INT_SRC, INT_REP, "SMALLINT"),
    col("su", "smallint unsigned", INT_SRC, INT_REP, "USMALLINT"),
    col("mi", "mediumint", INT_SRC, INT_REP, "INTEGER"),
    col("mu", "mediumint unsigned", INT_SRC, INT_REP, "UINTEGER"),
    col("i", "int", INT_SRC, INT_REP, "INTEGER"),
    col("iu", "int unsigned", INT_SRC, INT_REP, "UINTEGER"),
    col("bi", "bigint", INT_SRC, INT_REP, "BIGINT"),
    col("bu", "bigint unsigned", INT_SRC, INT_REP, "UBIGINT"),
    col("d65", "decimal(65,30)", INT_SRC, "{c}", "VARCHAR"),
    col("d38", "decimal(38,10)", INT_SRC, INT_REP, "DECIMAL(38,10)"),
    col("d5", "decimal(5,2)", INT_SRC, INT_REP, "DECIMAL(5,2)"),
    Col {
        cmp: Cmp::Float,
        ..col("f", "float", FLOAT_SRC, FLOAT_REP, "FLOAT")
    },
    Col {
        cmp: Cmp::Float,
        ..col("db", "double", FLOAT_SRC, FLOAT_REP, "DOUBLE")
    },
    col("b1", "bit(1)", "CAST({c} AS UNSIGNED)", INT_REP, "UBIGINT"),
    col(
        "b64",
        "bit(64)",
        "CAST({c} AS UNSIGNED)",
        INT_REP,
        "UBIGINT",
    ),
    // MariaDB strips CHAR's trailing spaces on read (and in the binlog).
    col("ch", "char(10)", TEXT_SRC, TEXT_REP, "VARCHAR"),
    col("vc", "varchar(50)", TEXT_SRC, TEXT_REP, "VARCHAR"),
    col("tx", "text", TEXT_SRC, TEXT_REP, "VARCHAR"),
    // MySQL's latin1 is cp1252 (0x80 is the euro sign).
    col(
        "l1",
        "varchar(40) CHARACTER SET latin1",
        TEXT_SRC,
        TEXT_REP,
        "VARCHAR",
    ),
    col(
        "cy",
        "varchar(20) CHARACTER SET cp1251",
        TEXT_SRC,
        TEXT_REP,
        "VARCHAR",
    ),
    col(
        "u16",
        "varchar(20) CHARACTER SET utf16",
        TEXT_SRC,
        TEXT_REP,
        "VARCHAR",
    ),
    // BINARY(n) pads with zero bytes (the binlog strips them).
    col("bn", "binary(4)", BIN_SRC, BIN_REP, "BLOB"),
    col("vb", "varbinary(16)", BIN_SRC, BIN_REP, "BLOB"),
    col("bl", "blob", BIN_SRC, BIN_REP, "BLOB"),
    col(
        "en",
        "enum('small','it''s \"q\"','ünï')",
        TEXT_SRC,
        TEXT_REP,
        "VARCHAR",
    ),
    col("st", "set('a','b','c','ü')", TEXT_SRC, TEXT_REP, "VARCHAR"),
    // MariaDB's JSON is LONGTEXT with a json_valid check: DuckDB JSON, with its exact text.
    col("js", "json", TEXT_SRC, TEXT_REP, "JSON"),
    col("dt", "date", DATE_SRC, DATE_REP, "DATE"),
    col("tm", "time", TIME_SRC, TIME_REP, "INTERVAL"),
    col("tm1", "time(1)", TIME_SRC, TIME_REP, "INTERVAL"),
    col("tm6", "time(6)", TIME_SRC, TIME_REP, "INTERVAL"),
    col(
        "dtm",
        "datetime(6)",
        DATETIME_SRC,
        DATETIME_REP,
        "TIMESTAMP",
    ),
    col("dt0", "datetime", DATETIME_SRC, DATETIME_REP, "TIMESTAMP"),
    col(
        "ts",
        "timestamp(6) NULL",
        TS_SRC,
        TS_REP,
        "TIMESTAMP WITH TIME ZONE",
    ),
    col("yr", "year", "CAST({c} + 0 AS CHAR)", INT_REP, "SMALLINT"),
    Col {
        generated: true,
        ..col(
            "gs",
            "bigint AS (bi DIV 2) STORED",
            INT_SRC,
            INT_REP,
            "BIGINT",
        )
    },
    // Internal format: 4-byte SRID + WKB.
    col("pt", "point", BIN_SRC, BIN_REP, "BLOB"),
    // Binlog layouts: a bit width that is not whole bytes, 1- to 4-byte length prefixes,
    // CHAR wider than 255 bytes (its length hides in the metadata), a second multi-byte
    // charset (cp932, not sjis: those map some bytes to other code points).
    col(
        "b10",
        "bit(10)",
        "CAST({c} AS UNSIGNED)",
        INT_REP,
        "UBIGINT",
    ),
    col("d0", "decimal(30,0)", INT_SRC, INT_REP, "DECIMAL(30,0)"),
    col(
        "cj",
        "varchar(20) CHARACTER SET cp932",
        TEXT_SRC,
        TEXT_REP,
        "VARCHAR",
    ),
    col("vl", "varchar(1000)", TEXT_SRC, TEXT_REP, "VARCHAR"),
    col("cl", "char(255)", TEXT_SRC, TEXT_REP, "VARCHAR"),
    col("tt", "tinytext", TEXT_SRC, TEXT_REP, "VARCHAR"),
    col("mt", "mediumtext", TEXT_SRC, TEXT_REP, "VARCHAR"),
    col("tb", "tinyblob", BIN_SRC, BIN_REP, "BLOB"),
    col("mb", "mediumblob", BIN_SRC, BIN_REP, "BLOB"),
    col("lb", "longblob", BIN_SRC, BIN_REP, "BLOB"),
];

/// Values of the inserted columns (every column but the generated ones), in order; `rows`
/// inserts them with ids `base + 1 ..= base + 5`.
#[rustfmt::skip]
const ROWS: [&[&str]; 5] = [
    // Maxima.
    &[
        "127", "255", "32767", "65535", "8388607", "16777215", "2147483647", "4294967295",
        "9223372036854775807", "18446744073709551615",
        "99999999999999999999999999999999999.999999999999999999999999999999",
        "9999999999999999999999999999.9999999999", "999.99",
        "3.4028234e38", "1.7976931348623157e308",
        "b'1'", "b'1111111111111111111111111111111111111111111111111111111111111111'",
        "'ten chars!'", "'héllo 🎉 日本語 ü \"q\" ''s'",
        r"'line1\nline2\ttab \\ back ''q'' 🎉 e\r end'",
        "'café €'", "'Привет, мир'", "'utf16 🎉 ü'",
        "0x61000000", "0x00FF00FF", "0x000102FEFF",
        "'it''s \"q\"'", "'a,c,ü'",
        r#"'{"a": [1, [2, 3], {"b": null}], "u": "é🎉\\n", "n": -1.5e10, "big": 12345678901234567890}'"#,
        "'9999-12-31'", "'838:59:59'", "'838:59:59.9'", "'838:59:59.999999'",
        "'9999-12-31 23:59:59.999999'", "'9999-12-31 23:59:59'", "'2038-01-19 03:14:07.999999'",
        "2155", "ST_GeomFromText('POINT(1.5 -2.25)')",
        "b'1111111111'", "999999999999999999999999999999", "'日本語ｶﾀｶﾅ'",
        "REPEAT('é', 1000)", "REPEAT('日', 255)", "REPEAT('a', 255)",
        "REPEAT('0123456789', 7000)", "UNHEX(REPEAT('FF', 255))",
        "UNHEX(REPEAT('00FF', 40000))", "UNHEX(REPEAT('DEADBEEF', 20000))",
    ],
    // Minima and empty values.
    &[
        "-128", "0", "-32768", "0", "-8388608", "0", "-2147483648", "0",
        "-9223372036854775808", "0",
        "-99999999999999999999999999999999999.999999999999999999999999999999",
        "-9999999999999999999999999999.9999999999", "-999.99",
        "-1.17549435e-38", "-2.2250738585072014e-308",
        "b'0'", "b'0'",
        "''", "''", "''", "''", "''", "''",
        "''", "''", "''",
        "'small'", "''",
        "'[]'",
        "'1000-01-01'", "'-838:59:59'", "'-838:59:59.9'", "'-838:59:59.999999'",
        "'1000-01-01 00:00:00'", "'1000-01-01 00:00:00'", "'1970-01-01 00:00:01'",
        "1901", "ST_GeomFromText('POINT(0 0)')",
        "b'0'", "-999999999999999999999999999999", "''", "''", "''", "''", "''", "''", "''", "''",
    ],
    // Zeros, small values, padding, year 0.
    &[
        "0", "1", "0", "1", "0", "1", "0", "1", "0", "1",
        "0", "0.0000000001", "0.01",
        "0.1", "0.1",
        "b'1'", "0x8000000000000000",
        "'ab   '", "'  both  '", "'plain'",
        "CONCAT('x', CONVERT(UNHEX('81') USING latin1), 'ÿ')", "'ёЁ№'", "'ü'",
        "'a'", "0x00", "0xFF",
        "'ünï'", "'a,b,c,ü'",
        r#"'{"nested": {"arr": [[1, 2], [3, [4, 5]]]}, "t": true, "f": false, "z": 0.0, "e": 1E+2}'"#,
        "'0000-12-31'", "'00:00:00'", "'-00:00:01.5'", "'12:34:56.000001'",
        "'2024-02-29 12:34:56.000001'", "'0000-01-01 00:00:00'", "'2024-02-29 23:59:59.5'",
        "2000", "ST_GeomFromText('POINT(-180 90)')",
        "b'1000000001'", "0", "'～－∥￠￡￢＼'", "' '", "' x '", "'tiny'", "'m'", "0x00", "0x00",
        "0x00",
    ],
    // Odd values; inserted with sql_mode = '' (zero dates, an invalid ENUM value).
    &[
        "1", "2", "-1", "2", "-1", "2", "-1", "2", "-1", "9223372036854775808",
        "-0.000000000000000000000000000001", "-0.0000000001", "-0.01",
        "1.4e-45", "4.9e-324",
        "b'0'", "b'1010'",
        "'日本語'", "'e\u{301} combining'", "REPEAT('0123456789abcdef', 4000)",
        "'€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ'", "'абв'", "'𝄞'",
        "0x00000001", "0xFFFF", "0x00",
        "'not a member'", "'ü'",
        r#"'"just a string"'"#,
        "'0000-00-00'", "'-00:00:01'", "'-00:00:00.1'", "'-00:00:00.000001'",
        "'0000-00-00 00:00:00'", "'2020-00-15 00:00:00'", "'0000-00-00 00:00:00'",
        "0", "ST_GeomFromText('POINT(1e300 -1e-300)')",
        "b'10'", "-1", "'①Ⅻ㈱'", "REPEAT('🎉', 300)", "'ü'", "'🎉'", "'é'", "0x01", "0xAB", "0xCD",
    ],
    // NULL in every column.
    &[],
];

fn inserted() -> Vec<&'static Col> {
    COLUMNS.iter().filter(|c| !c.generated).collect()
}

fn create_table() -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{} {}", c.name, c.decl))
        .collect();
    format!(
        "CREATE TABLE t (id int PRIMARY KEY, {}) CHARACTER SET utf8mb4;\n",
        cols.join(", ")
    )
}

/// Rows with ids `base + 1 ..= base + 5`.
fn rows(base: i32) -> String {
    let names: Vec<&str> = inserted().iter().map(|c| c.name).collect();
    let mut sql = String::new();
    for (k, values) in ROWS.iter().enumerate() {
        let values: Vec<&str> = if values.is_empty() {
            vec!["NULL"; names.len()]
        } else {
            values.to_vec()
        };
        assert_eq!(values.len(), names.len(), "row {}", k + 1);
        let odd = k == 3;
        if odd {
            sql.push_str("SET SESSION sql_mode = '';\n");
        }
        sql.push_str(&format!(
            "INSERT INTO t (id, {}) VALUES ({}, {});\n",
            names.join(", "),
            base + k as i32 + 1,
            values.join(", ")
        ));
        if odd {
            sql.push_str("SET SESSION sql_mode = DEFAULT;\n");
        }
    }
    sql
}

/// Every inserted column of row `to` set to the values of row `from`.
fn copy_row(from: i32, to: i32) -> String {
    let set: Vec<String> = inserted()
        .iter()
        .map(|c| format!("d.{0} = s.{0}", c.name))
        .collect();
    format!(
        "UPDATE t d JOIN t s ON s.id = {from} SET {} WHERE d.id = {to};\n",
        set.join(", ")
    )
}

fn source_query(c: &Col) -> String {
    let expr = c.src.replace("{c}", c.name);
    format!("SELECT CONCAT(id, ':', COALESCE({expr}, '<NULL>')) FROM t ORDER BY id")
}

fn replica_expr(c: &Col) -> String {
    c.rep.replace("{c}", &format!("\"{}\"", c.name))
}

fn replica_query(c: &Col) -> String {
    format!(
        "SELECT id::VARCHAR || ':' || coalesce(({})::VARCHAR, '<NULL>') FROM t ORDER BY id",
        replica_expr(c)
    )
}

/// `id:value` lines as (id, canonical value).
fn canonical(c: &Col, lines: &[String]) -> Vec<(i32, String)> {
    lines
        .iter()
        .map(|l| {
            let (id, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("{}: `{l}`", c.name));
            let v = match (c.cmp, v) {
                (_, "<NULL>") | (Cmp::Text, _) => v.to_string(),
                (Cmp::Float, v) => {
                    let f: f64 = v
                        .parse()
                        .unwrap_or_else(|e| panic!("{}: `{v}` is not a double: {e}", c.name));
                    format!("{f:?} (bits {:016x})", f.to_bits())
                }
            };
            (id.parse().unwrap(), v)
        })
        .collect()
}

fn short(v: &str) -> String {
    match v.char_indices().nth(120) {
        Some((i, _)) => format!("{}... ({} chars)", &v[..i], v.chars().count()),
        None => v.to_string(),
    }
}

#[test]
fn every_mysql_type_is_exact_through_snapshot_and_binlog() {
    // Snapshot rows: 1..5 stay as copied, 11..15 are changed through the binlog.
    let mut rig = Rig::mysql(&format!("{}{}{}", create_table(), rows(0), rows(10)));
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));

    // Streamed inserts of the same values: 101..105 stay, 201..205 are changed.
    rig.sql(&format!("{}{}", rows(100), rows(200)));
    // Updates and deletes: the binlog carries before and after images of every column.
    rig.sql(&format!(
        "SET SESSION sql_mode = '';\n{}{}{}{}{}{}BEGIN;\n{}{}COMMIT;\nDELETE FROM t WHERE id = 14;\nDELETE FROM t WHERE id = 203;\n",
        // Snapshot rows: to other values, to NULL in every column, from NULL to the odd values.
        copy_row(2, 13),
        copy_row(5, 11),
        copy_row(4, 15),
        // Streamed rows likewise.
        copy_row(5, 201),
        copy_row(4, 205),
        copy_row(1, 202),
        // Twice in one transaction, ending with its own values.
        copy_row(1, 104),
        copy_row(4, 104),
    ));
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();

    let ids = [
        1, 2, 3, 4, 5, 11, 12, 13, 15, 101, 102, 103, 104, 105, 201, 202, 204, 205,
    ];
    let ids_text: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        rig.replica_lines("SELECT id::VARCHAR FROM t ORDER BY id"),
        ids_text
    );

    // The replica's column types.
    let types = rig.replica_lines(
        "SELECT column_name || ' ' || data_type FROM information_schema.columns \
         WHERE table_schema = 'shop' AND table_name = 't' ORDER BY ordinal_position",
    );
    let expected: Vec<String> = std::iter::once("id INTEGER".to_string())
        .chain(
            COLUMNS
                .iter()
                .map(|c| format!("{} {}", c.name, c.duck_type)),
        )
        .collect();
    assert_eq!(types, expected, "replica column types");

    let mut failures = Vec::new();
    for c in COLUMNS {
        let src = canonical(c, &rig.source_lines(&source_query(c)));
        let rep = canonical(c, &rig.replica_lines(&replica_query(c)));
        assert_eq!(
            src.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            ids,
            "{}: source ids",
            c.name
        );
        if src != rep {
            let diff: Vec<String> = src
                .iter()
                .zip(&rep)
                .filter(|(s, r)| s != r)
                .map(|(s, r)| {
                    format!(
                        "  id {}: source {} / replica {}",
                        s.0,
                        short(&s.1),
                        short(&r.1)
                    )
                })
                .collect();
            failures.push(format!(
                "column {} ({}):\n{}",
                c.name,
                c.decl,
                diff.join("\n")
            ));
            continue;
        }
        // The snapshot (1..5, 1x) and the binlog (10x, 20x) give identical replica values.
        let rep: BTreeMap<i32, String> = rep.into_iter().collect();
        let same = (1..=5).map(|k| (k, 100 + k)).chain([
            (2, 12),
            (2, 13),
            (5, 11),
            (4, 15),
            (5, 201),
            (1, 202),
            (4, 204),
            (4, 205),
        ]);
        for (a, b) in same {
            assert_eq!(rep[&a], rep[&b], "column {}: id {a} vs id {b}", c.name);
        }
        // A delete carries the full before image: in the log it equals the image copied.
        for (id, first) in [(14, "SNAPSHOT"), (203, "INSERT")] {
            let log = rig.replica_lines(&format!(
                "SELECT _metadata_change_type || ':' || coalesce(({})::VARCHAR, '<NULL>') \
                 FROM t_log WHERE id = {id} ORDER BY _metadata_change_type",
                replica_expr(c)
            ));
            assert_eq!(log.len(), 2, "column {}: log of id {id}: {log:?}", c.name);
            assert_eq!(
                log[0].strip_prefix("DELETE:"),
                log[1].strip_prefix(&format!("{first}:")),
                "column {}: deleted image of id {id}",
                c.name
            );
        }
    }
    assert!(
        failures.is_empty(),
        "source vs replica differ:\n{}",
        failures.join("\n")
    );

    let kinds = rig.replica_lines(
        "SELECT _metadata_change_type || '=' || count(*) FROM t_log \
         GROUP BY _metadata_change_type ORDER BY 1",
    );
    assert_eq!(kinds, ["DELETE=2", "INSERT=10", "SNAPSHOT=10", "UPDATE=8"]);
}

/// Text in a charset whose bytes MariaDB maps differently from the decoders tidewater has
/// (sjis: 0x8160 is U+301C there, U+FF5E in the Encoding Standard's Shift_JIS) would be
/// replicated wrong from the binlog only: the table is refused, naming the column.
#[test]
fn inexactly_decodable_charsets_are_refused() {
    let rig =
        Rig::mysql("CREATE TABLE legacy (id int PRIMARY KEY, s varchar(10) CHARACTER SET sjis);");
    expect(
        run_cli(&["run"], &rig.config),
        3,
        &["shop.legacy.s", "character set sjis", "\"!shop.legacy\""],
    );
}
