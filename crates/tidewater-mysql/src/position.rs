//! The position tidewater stores for a MySQL/MariaDB source: where the binlog reader resumes,
//! i.e. just after the last applied transaction. Serialised with a tag so each form parses
//! back unambiguously (an empty GTID state is valid on a fresh server):
//! `mariadb-gtid:0-1-42`, `mysql-gtid:3e11fa47-…:1-42`, `binlog:mysql-bin.000003:4567`.

use std::fmt;

use crate::gtid::{MariaState, MySqlGtidSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinlogPosition {
    /// MariaDB GTID state after the transaction (one GTID per replication domain).
    MariaDb(MariaState),
    /// MySQL executed GTID set after the transaction.
    MySql(MySqlGtidSet),
    /// Binlog file and the offset just after the transaction (GTIDs off).
    File { file: String, pos: u64 },
}

impl BinlogPosition {
    pub fn parse(s: &str) -> Result<BinlogPosition, String> {
        if let Some(g) = s.strip_prefix("mariadb-gtid:") {
            return MariaState::parse(g).map(BinlogPosition::MariaDb);
        }
        if let Some(g) = s.strip_prefix("mysql-gtid:") {
            return MySqlGtidSet::parse(g).map(BinlogPosition::MySql);
        }
        if let Some(fp) = s.strip_prefix("binlog:") {
            if let Some((file, pos)) = fp.rsplit_once(':') {
                if let Ok(pos) = pos.parse() {
                    return Ok(BinlogPosition::File {
                        file: file.to_string(),
                        pos,
                    });
                }
            }
        }
        Err(format!("`{s}` is not a MySQL/MariaDB binlog position"))
    }

    /// Whether a replica resumed from `self` has applied every transaction before `target`.
    /// Positions of different forms are not comparable (false).
    pub fn reached(&self, target: &BinlogPosition) -> bool {
        match (self, target) {
            (BinlogPosition::MariaDb(a), BinlogPosition::MariaDb(t)) => a.includes(t),
            (BinlogPosition::MySql(a), BinlogPosition::MySql(t)) => a.includes(t),
            (
                BinlogPosition::File { file: f, pos: p },
                BinlogPosition::File { file: tf, pos: tp },
            ) => (file_number(f), *p) >= (file_number(tf), *tp),
            _ => false,
        }
    }
}

/// The sequence number of a binlog file name (`mysql-bin.000042` → 42).
pub(crate) fn file_number(file: &str) -> u64 {
    file.rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// [`BinlogPosition::reached`] on stored positions; unparseable ones have not reached.
pub fn position_reached(
    applied: &tidewater_core::Position,
    target: &tidewater_core::Position,
) -> bool {
    match (
        BinlogPosition::parse(&applied.0),
        BinlogPosition::parse(&target.0),
    ) {
        (Ok(a), Ok(t)) => a.reached(&t),
        _ => false,
    }
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BinlogPosition::MariaDb(s) => write!(f, "mariadb-gtid:{s}"),
            BinlogPosition::MySql(s) => write!(f, "mysql-gtid:{s}"),
            BinlogPosition::File { file, pos } => write!(f, "binlog:{file}:{pos}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "mariadb-gtid:0-1-42,1-2-3",
            "mariadb-gtid:",
            "mysql-gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42",
            "binlog:mysql-bin.000003:4567",
        ] {
            assert_eq!(BinlogPosition::parse(s).unwrap().to_string(), s);
        }
        assert!(BinlogPosition::parse("0/16B3748").is_err());
        assert!(BinlogPosition::parse("binlog:x").is_err());
    }

    #[test]
    fn reached() {
        let p = |s: &str| BinlogPosition::parse(s).unwrap();
        assert!(p("mariadb-gtid:0-1-42,1-2-3").reached(&p("mariadb-gtid:0-1-40")));
        assert!(p("mariadb-gtid:0-1-42").reached(&p("mariadb-gtid:0-2-42")));
        assert!(!p("mariadb-gtid:0-1-42").reached(&p("mariadb-gtid:0-1-42,1-1-1")));
        assert!(!p("mariadb-gtid:0-1-41").reached(&p("mariadb-gtid:0-1-42")));
        assert!(p("mariadb-gtid:0-1-1").reached(&p("mariadb-gtid:")));
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        assert!(p(&format!("mysql-gtid:{u}:1-42")).reached(&p(&format!("mysql-gtid:{u}:1-40"))));
        assert!(!p(&format!("mysql-gtid:{u}:1-40")).reached(&p(&format!("mysql-gtid:{u}:1-42"))));
        assert!(p("binlog:b.000010:4").reached(&p("binlog:b.000009:900")));
        assert!(!p("binlog:b.000009:4").reached(&p("binlog:b.000009:900")));
        assert!(!p("binlog:b.000009:4").reached(&p("mariadb-gtid:0-1-1")));
    }
}
