//! The order of the change logs. `_metadata_tx, _metadata_sequence` is the documented replay
//! order (see `sink`: ordinals follow the source's commit order). `_metadata_position` keeps
//! the source's own position so that it can be looked up at the source, and for PostgreSQL it
//! also sorts as it reads: the LSN zero-padded to `XXXXXXXX/XXXXXXXX` (PostgreSQL reads that
//! form too: `'00000000/016B3748'::pg_lsn = '0/16B3748'`). Unpadded, `0/9E2C9E8` sorts after
//! `0/10000000` as text. MySQL/MariaDB positions are GTID states (one counter per domain or
//! server), which have no total order as text, so the log orders them only by `_metadata_tx`.

use tidewater_core::Position;

/// The position a log row records for a transaction at `position`.
pub fn log_position(source_type: &str, position: &Position) -> String {
    if source_type == "postgres" {
        if let Some(lsn) = padded_lsn(&position.0) {
            return lsn;
        }
    }
    position.0.clone()
}

/// `0/16B3748` → `00000000/016B3748`; `None` unless it is an LSN (`hex/hex`, 32 bits each).
fn padded_lsn(s: &str) -> Option<String> {
    let (hi, lo) = s.split_once('/')?;
    let hex = |t: &str| {
        let ok = !t.is_empty() && t.len() <= 8 && t.bytes().all(|c| c.is_ascii_hexdigit());
        ok.then(|| u32::from_str_radix(t, 16).ok()).flatten()
    };
    Some(format!("{:08X}/{:08X}", hex(hi)?, hex(lo)?))
}

/// SQL: the LSN text `p` zero-padded as [`padded_lsn`] does (for rows an earlier layout wrote).
pub fn padded_lsn_sql(p: &str) -> String {
    format!(
        "CASE WHEN regexp_full_match({p}, '[0-9A-Fa-f]{{1,8}}/[0-9A-Fa-f]{{1,8}}') THEN \
         upper(lpad(split_part({p}, '/', 1), 8, '0') || '/' || lpad(split_part({p}, '/', 2), 8, '0')) \
         ELSE {p} END"
    )
}

/// SQL: a HUGEINT that increases with the source's commit order along one stream, for the
/// position text `p` of any source, or NULL when `p` has no known form:
/// - PostgreSQL LSN `hi/lo`: its 64-bit value;
/// - MariaDB GTID state `mariadb-gtid:d-s-n,...`: the sum of the domains' sequence numbers
///   (each transaction advances its domain's, so the sum strictly increases);
/// - MySQL GTID set `mysql-gtid:uuid:a-b:c,...`: the number of transactions it holds;
/// - `binlog:file.N:pos`: (N, pos).
///
/// Used once, to number the transactions of logs an earlier layout wrote without ordinals.
pub fn position_order_sql(p: &str) -> String {
    let seq = "TRY_CAST(string_split(g, '-')[3] AS HUGEINT)";
    let count = "TRY_CAST(string_split(r, '-')[-1] AS HUGEINT) \
                 - TRY_CAST(string_split(r, '-')[1] AS HUGEINT) + 1";
    format!(
        "CASE \
         WHEN {p} LIKE 'mariadb-gtid:%' THEN coalesce(list_sum(list_transform( \
           list_filter(string_split({p}[14:], ','), lambda g: g <> ''), lambda g: {seq})), 0) \
         WHEN {p} LIKE 'mysql-gtid:%' THEN coalesce(list_sum(list_transform( \
           list_filter(string_split({p}[12:], ','), lambda s: s <> ''), lambda s: \
           list_sum(list_transform(string_split(s, ':')[2:], lambda r: {count})))), 0) \
         WHEN {p} LIKE 'binlog:%' THEN \
           TRY_CAST(string_split(split_part({p}, ':', 2), '.')[-1] AS HUGEINT) * 18446744073709551616 \
           + TRY_CAST(string_split({p}, ':')[-1] AS HUGEINT) \
         WHEN regexp_full_match({p}, '[0-9A-Fa-f]{{1,8}}/[0-9A-Fa-f]{{1,8}}') THEN \
           {hi} * 4294967296 + {lo} \
         END",
        hi = hex_sql(&format!("split_part({p}, '/', 1)")),
        lo = hex_sql(&format!("split_part({p}, '/', 2)")),
    )
}

/// SQL: the value of the hex digits `x` (DuckDB's casts do not read hex text).
fn hex_sql(x: &str) -> String {
    format!(
        "list_reduce(list_transform(string_split(upper({x}), ''), \
         lambda c: CAST(instr('0123456789ABCDEF', c) - 1 AS HUGEINT)), lambda a, b: a * 16 + b)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_positions_are_padded_others_kept() {
        let p = |s: &str| Position(s.into());
        assert_eq!(
            log_position("postgres", &p("0/16B3748")),
            "00000000/016B3748"
        );
        assert_eq!(log_position("postgres", &p("1F/FF")), "0000001F/000000FF");
        assert_eq!(log_position("postgres", &p("0/1ffffffff")), "0/1ffffffff");
        assert_eq!(log_position("postgres", &p("x/1")), "x/1");
        assert_eq!(
            log_position("mysql", &p("mariadb-gtid:0-1-9")),
            "mariadb-gtid:0-1-9"
        );
        assert_eq!(log_position("test", &p("0/9")), "0/9");
    }

    #[test]
    fn sql_forms_agree_with_the_positions_order() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let eval = |sql: &str| -> Option<String> {
            conn.query_row(&format!("SELECT CAST(({sql}) AS VARCHAR)"), [], |r| {
                r.get(0)
            })
            .unwrap()
        };
        let key = |p: &str| eval(&position_order_sql(&format!("'{p}'")));
        let pad = |p: &str| eval(&padded_lsn_sql(&format!("'{p}'")));
        assert_eq!(pad("0/16b3748").as_deref(), Some("00000000/016B3748"));
        assert_eq!(
            pad("mariadb-gtid:0-1-9").as_deref(),
            Some("mariadb-gtid:0-1-9")
        );
        assert_eq!(key("0/9E2C9E8").as_deref(), Some("165857768"));
        assert_eq!(key("1/0").as_deref(), Some("4294967296"));
        assert_eq!(key("mariadb-gtid:0-1-42,1-2-7").as_deref(), Some("49"));
        assert_eq!(key("mariadb-gtid:").as_deref(), Some("0"));
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        assert_eq!(
            key(&format!("mysql-gtid:{uuid}:1-42:50")).as_deref(),
            Some("43")
        );
        assert_eq!(
            key("binlog:mysql-bin.000003:4567").as_deref(),
            Some("55340232221128659415")
        );
        assert_eq!(key("something else"), None);
    }
}
