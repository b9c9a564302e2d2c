//! End to end, every supported type: the same values inserted before the start (snapshot,
//! COPY text) and while streaming (pgoutput), plus an update; every column of every row must be
//! exactly equal between source and replica, compared through a canonical text per column.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Rig;

const SETUP: &str = "
CREATE TYPE mood AS ENUM ('happy', 'sad', 'it''s \"odd\"');
CREATE TABLE alltypes (
    id int PRIMARY KEY,
    i2 int2, i4 int4, i8 int8,
    n38 numeric(38,10), n10 numeric(10,2), nfree numeric,
    f4 float4, f8 float8,
    b bool,
    t text, vc varchar(10), ch char(5),
    by bytea,
    d date, tm time, ts timestamp, tstz timestamptz,
    u uuid, j json, jb jsonb,
    ai int4[], at text[], an numeric(8,3)[], ab bool[],
    iv interval, en mood,
    big text
);
ALTER TABLE alltypes ALTER big SET STORAGE EXTERNAL;
";

/// Rows inserted with ids `base + 1 ..= base + 5`.
fn rows(base: i32) -> String {
    let r = |k: i32| base + k;
    format!(
        r#"
INSERT INTO alltypes VALUES
({}, 32767, 2147483647, 9223372036854775807,
 '1234567890123456789012345678.1234567890', '-12345678.90',
 '1234567890123456789012345.6789012345678901234567890',
 'NaN', 'NaN', true,
 E'h\u00e9llo\tworld\nline2 \\ back ''single'' "double" \U0001F389 e\u0301 \r end',
 'ten chars!', 'ab', '\x00ff10',
 'infinity', '23:59:59.999999', 'infinity', '2024-02-29 23:59:59.123456+05:30',
 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{"b": 1,  "a": [1, 2.50], "s": "x\ny"}}',
 '{{"b": 1, "a": [1, 2.50], "u": "\u00e9"}}',
 '{{1,NULL,-3}}', E'{{"a\\"b","c,d",NULL,"NULL","","x y","\u00e9\\\\z"}}', '{{1.500,-2.250,NULL,99999.999}}', '{{t,f,NULL}}',
 '1 year 2 mons 3 days 04:05:06.789', 'happy', repeat('0123456789abcdef', 1000)),
({}, -32768, -2147483648, -9223372036854775808,
 '-9999999999999999999999999999.9999999999', '0.01',
 '-0.00000000000000000000000000000000000000000000000001',
 '-Infinity', '1e-300', false,
 '', '', '', '',
 '0044-03-15 BC', '00:00:00', '1999-12-31 23:59:59.000001', '-infinity',
 '00000000-0000-0000-0000-000000000000', '[]', '{{}}',
 '{{}}', '{{}}', '{{}}', '{{}}',
 '-1 days -00:00:01', 'it''s "odd"', ''),
({}, 0, 0, 0, '0', '-0.01', '0',
 '0.1', 'Infinity', true,
 'plain', 'x', 'abcde', '\x0a0d',
 '-infinity', '12:00:00.000001', '2000-01-01 00:00:00', '1970-01-01 00:00:00.000001-08:00',
 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'null', '[1, "two", null, true]',
 '{{0}}', '{{""}}', '{{0.000}}', '{{f}}',
 '0', 'sad', 'short'),
({}, 1, -1, 1, '0.0000000001', '99999999.99', '100000000000000000000000000000000000000000000000000',
 '3.4028235e38', '1.7976931348623157e308', false,
 '日本語テキスト', 'ü', 'ßß', '\xdeadbeef',
 '2024-02-29', '01:02:03', '0044-03-15 12:00:00.5 BC', '0001-01-01 00:00:00+00 BC',
 '123e4567-e89b-12d3-a456-426614174000', '"s"', '"s"',
 '{{2147483647,-2147483648}}', '{{NULL}}', '{{-99999.999}}', '{{NULL}}',
 '-178000000 years', 'happy', NULL),
({}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#,
        r(1),
        r(2),
        r(3),
        r(4),
        r(5)
    )
}

/// Per column: (name, PostgreSQL text expression, DuckDB text expression) over `c`.
/// Texts are hex-encoded so that any character (newline, `|`) survives psql's line output.
const COLUMNS: &[(&str, &str, &str)] = &[
    ("i2", "c::text", "c::varchar"),
    ("i4", "c::text", "c::varchar"),
    ("i8", "c::text", "c::varchar"),
    ("n38", "c::text", "c::varchar"),
    ("n10", "c::text", "c::varchar"),
    ("nfree", "c::text", "c"),
    // Shortest round-trip texts on both sides: equal text means equal bits.
    ("f4", FLOAT_PG, FLOAT_DUCK),
    ("f8", FLOAT_PG, FLOAT_DUCK),
    ("b", "c::text", "c::varchar"),
    ("t", "encode(convert_to(c, 'UTF8'), 'hex')", "lower(hex(c))"),
    ("vc", "encode(convert_to(c, 'UTF8'), 'hex')", "lower(hex(c))"),
    // char(n) is replicated with its padding (its output form).
    ("ch", "encode(convert_to(rpad(c::text, 5), 'UTF8'), 'hex')", "lower(hex(c))"),
    ("by", "encode(c, 'hex')", "lower(hex(c))"),
    ("d", "c::text", "replace(c::varchar, ' (BC)', ' BC')"),
    ("tm", "c::text", "c::varchar"),
    // Timestamps: microseconds since the epoch (BC included), or the infinities.
    ("ts", TS_PG, TS_DUCK),
    ("tstz", TS_PG, TS_DUCK),
    ("u", "c::text", "c::varchar"),
    ("j", "encode(convert_to(c::text, 'UTF8'), 'hex')", "lower(hex(c::varchar))"),
    ("jb", "encode(convert_to(c::text, 'UTF8'), 'hex')", "lower(hex(c::varchar))"),
    ("ai", "array_to_string(c, ',', 'NULL') || '#' || cardinality(c)", "array_to_string(list_transform(c, lambda x: coalesce(x::varchar, 'NULL')), ',') || '#' || len(c)"),
    (
        "at",
        "coalesce((SELECT string_agg(coalesce(encode(convert_to(x, 'UTF8'), 'hex'), 'NULL'), ',' ORDER BY o) FROM unnest(c) WITH ORDINALITY AS e(x, o)), '') || '#' || cardinality(c)",
        "array_to_string(list_transform(c, lambda x: coalesce(lower(hex(x)), 'NULL')), ',') || '#' || len(c)",
    ),
    ("an", "array_to_string(c, ',', 'NULL') || '#' || cardinality(c)", "array_to_string(list_transform(c, lambda x: coalesce(x::varchar, 'NULL')), ',') || '#' || len(c)"),
    (
        "ab",
        "coalesce((SELECT string_agg(coalesce(x::text, 'NULL'), ',' ORDER BY o) FROM unnest(c) WITH ORDINALITY AS e(x, o)), '') || '#' || cardinality(c)", "array_to_string(list_transform(c, lambda x: coalesce(x::varchar, 'NULL')), ',') || '#' || len(c)",
    ),
    // tidewater's sessions use intervalstyle = iso_8601: the replica holds that exact text.
    ("iv", "c::text", "c"),
    ("en", "encode(convert_to(c::text, 'UTF8'), 'hex')", "lower(hex(c))"),
    ("big", "md5(c) || length(c)", "md5(c) || length(c)"),
];

const TS_PG: &str =
    "CASE WHEN isfinite(c) THEN (extract(epoch FROM c) * 1000000)::bigint::text ELSE c::text END";
const TS_DUCK: &str = "CASE WHEN isfinite(c) THEN epoch_us(c)::varchar ELSE c::varchar END";
const FLOAT_PG: &str = "c::text";
const FLOAT_DUCK: &str =
    "CASE WHEN isnan(c) THEN 'NaN' WHEN c = 'inf'::double THEN 'Infinity' WHEN c = '-inf'::double THEN '-Infinity' ELSE c::varchar END";

/// `id:value` per row (NULL as `<NULL>`), the expression applied to column `name`.
fn query(name: &str, expr: &str) -> String {
    let expr = replace_placeholder(expr, &format!("\"{name}\""));
    format!("SELECT id::varchar || ':' || coalesce(({expr})::varchar, '<NULL>') FROM alltypes ORDER BY id")
}

/// Replaces the standalone identifier `c` (not part of a longer word) with `with`.
fn replace_placeholder(expr: &str, with: &str) -> String {
    let b = expr.as_bytes();
    let mut out = String::new();
    for (i, ch) in expr.char_indices() {
        let word = |j: usize| {
            b.get(j)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        };
        if ch == 'c' && (i == 0 || !word(i - 1)) && !word(i + 1) {
            out.push_str(with);
        } else {
            out.push(ch);
        }
    }
    out
}

fn by_id(lines: &[String]) -> BTreeMap<i32, String> {
    lines
        .iter()
        .map(|l| {
            let (id, v) = l.split_once(':').unwrap();
            (id.parse().unwrap(), v.to_string())
        })
        .collect()
}

#[test]
fn every_type_is_exact_through_snapshot_and_stream() {
    let mut rig = Rig::new(&format!("{SETUP}{}", rows(0)));
    rig.start();
    rig.wait_caught_up(Duration::from_secs(60));

    rig.sql(&rows(100));
    // New values for a snapshot row (those of row 2), and an update of a row with an
    // out-of-line TOASTed value that does not change (pgoutput sends it as "unchanged").
    rig.sql(
        "UPDATE alltypes t SET (i2, i4, i8, n38, n10, nfree, f4, f8, b, t, vc, ch, by, d, tm, ts, tstz,
                                u, j, jb, ai, at, an, ab, iv, en, big)
             = (s.i2, s.i4, s.i8, s.n38, s.n10, s.nfree, s.f4, s.f8, s.b, s.t, s.vc, s.ch, s.by, s.d, s.tm,
                s.ts, s.tstz, s.u, s.j, s.jb, s.ai, s.at, s.an, s.ab, s.iv, s.en, s.big)
           FROM alltypes s WHERE t.id = 3 AND s.id = 2;
         UPDATE alltypes SET i4 = 42 WHERE id = 101;",
    );
    rig.wait_caught_up(Duration::from_secs(60));
    rig.stop();

    let n = rig.count("SELECT count(*) FROM alltypes");
    assert_eq!(n, 10);
    for (name, pg, duck) in COLUMNS {
        let src = rig.source_lines(&format!(
            "SET intervalstyle = iso_8601; {}",
            query(name, pg)
        ));
        let rep = rig.replica_lines(&query(name, duck));
        assert_eq!(src.len(), 10, "{name}: source rows");
        assert_eq!(src, rep, "column {name}: source (left) vs replica (right)");
        // Snapshot and stream paths give identical replica values: streamed id 100+k equals
        // snapshot id k, except row 3 (updated to row 2's values) and the updated i4 of 101.
        let rep = by_id(&rep);
        for k in 1..=5 {
            match (k, *name) {
                (1, "i4") => assert_eq!(rep[&101], "42"),
                (3, _) => assert_eq!(rep[&3], rep[&102], "column {name}: id 3 (updated) vs 102"),
                _ => assert_eq!(
                    rep[&k],
                    rep[&(100 + k)],
                    "column {name}: id {k} vs {}",
                    100 + k
                ),
            }
        }
    }
}
