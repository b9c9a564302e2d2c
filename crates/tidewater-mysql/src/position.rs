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
}
