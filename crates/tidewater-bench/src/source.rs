//! The two kinds of source the suite runs against (a throwaway PostgreSQL or
//! MariaDB from `tidewater-harness`), one fresh database per scenario, and the
//! SQL dialect the workloads are written in.

use std::process::Command;

use tidewater_harness::{MariaDbServer, PgServer};

use crate::error::Result;
use crate::workload::{table_name, Op, Txn, Width};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    MariaDb,
}

/// A database of its own on one of the suite's servers.
pub enum Db<'a> {
    Pg {
        server: &'a PgServer,
        name: String,
    },
    My {
        server: &'a MariaDbServer,
        name: String,
    },
}

impl Db<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Db::Pg { .. } => Kind::Postgres,
            Db::My { .. } => Kind::MariaDb,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Db::Pg { name, .. } | Db::My { name, .. } => name,
        }
    }

    /// Connection URL (no password: the throwaway servers trust local TCP / an empty root password).
    pub fn url(&self) -> String {
        match self {
            Db::Pg { server, name } => server.url(name),
            Db::My { server, name } => server.url(name),
        }
    }

    /// Runs a script (any number of `;`-terminated statements, each its own transaction).
    pub fn sql(&self, sql: &str) -> Result<String> {
        Ok(match self {
            Db::Pg { server, name } => server.psql(name, sql)?,
            Db::My { server, name } => server.sql(name, sql)?,
        })
    }

    /// Drops the database (its PostgreSQL slots must be dropped first), freeing its space.
    pub fn drop_database(&self) -> Result<()> {
        match self {
            Db::Pg { server, name } => {
                server.psql("postgres", &format!("DROP DATABASE \"{name}\";"))?;
            }
            Db::My { server, name } => {
                server.sql("", &format!("DROP DATABASE `{name}`;"))?;
            }
        }
        Ok(())
    }

    /// The schema the replica tables land in.
    pub fn schema(&self) -> &str {
        match self {
            Db::Pg { .. } => "public",
            Db::My { name, .. } => name,
        }
    }

    /// The `[source]` lines of a tidewater config; `id` keeps slots and replica ids apart.
    pub fn source_toml(&self, id: u32) -> String {
        match self {
            Db::Pg { .. } => format!(
                "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.*\"]\nslot = \"{}\"\npublication = \"{}\"\n",
                self.url(),
                self.slot(),
                self.name()
            ),
            Db::My { name, .. } => format!(
                "type = \"mysql\"\nurl = \"{}\"\ntables = [\"{name}.*\"]\nserver_id = {}\n",
                self.url(),
                4242 + id
            ),
        }
    }

    /// PostgreSQL: the slot tidewater uses for this database (named after it).
    pub fn slot(&self) -> String {
        format!("{}_slot", self.name())
    }

    /// The client that reads a query's result as the source's own tool would
    /// (`psql` COPY to stdout as CSV; `mariadb -B --quick`, tab-separated).
    pub fn export_command(&self, query: &str) -> Command {
        match self {
            Db::Pg { .. } => {
                let mut cmd = PgServer::tool("psql");
                cmd.args(["-X", "-q", "-d", &self.url(), "-c"]);
                cmd.arg(format!("\\copy ({query}) TO STDOUT (FORMAT csv)"));
                cmd
            }
            Db::My { server, name } => {
                let mut cmd = server.tool("mariadb");
                cmd.args(["-N", "-B", "--quick", "--default-character-set=utf8mb4"]);
                cmd.arg(format!("--database={name}")).arg("-e").arg(query);
                cmd
            }
        }
    }

    /// The source's own client reading a script from its standard input, going on past a
    /// statement that fails.
    pub fn script_command(&self) -> Command {
        match self {
            Db::Pg { .. } => {
                let mut cmd = PgServer::tool("psql");
                cmd.args(["-X", "-q", "-d", &self.url()]);
                cmd
            }
            Db::My { server, name } => {
                let mut cmd = server.tool("mariadb");
                cmd.arg("--force").arg(format!("--database={name}"));
                cmd
            }
        }
    }

    /// How DuckDB's `read_csv` must read what [`export_command`](Self::export_command) prints.
    pub fn csv_options(&self) -> &'static str {
        match self {
            Db::Pg { .. } => "header = false, delim = ',', quote = '\"'",
            Db::My { .. } => {
                "header = false, delim = '\\t', quote = '', escape = '', nullstr = 'NULL'"
            }
        }
    }

    pub fn create_table(&self, table: &str, width: Width) -> String {
        let pad = match width {
            Width::Narrow => "",
            Width::Wide => ", pad text",
        };
        match self {
            Db::Pg { .. } => format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, v int NOT NULL, s text, d numeric(12,2), ts timestamptz{pad});\n"
            ),
            Db::My { .. } => format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, v int NOT NULL, s varchar(40), d decimal(12,2), ts datetime(6){pad});\n"
            ),
        }
    }

    /// Rows `first..=last` of a [`create_table`](Self::create_table) table, in one statement.
    pub fn insert_range(&self, table: &str, first: u64, last: u64, width: Width) -> String {
        let wide = matches!(width, Width::Wide);
        match self {
            Db::Pg { .. } => format!(
                "INSERT INTO {table} SELECT g, g % 1000, 'row ' || g, g / 7.0, \
                 timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'{} \
                 FROM generate_series({first}, {last}) g;\n",
                if wide {
                    ", repeat(md5(g::text), 64)"
                } else {
                    ""
                }
            ),
            Db::My { .. } => format!(
                "INSERT INTO {table} SELECT seq, seq % 1000, concat('row ', seq), seq / 7, \
                 '2024-01-01' + INTERVAL seq SECOND{} FROM seq_{first}_to_{last};\n",
                if wide { ", repeat(md5(seq), 64)" } else { "" }
            ),
        }
    }

    pub fn update_range(&self, table: &str, first: u64, last: u64) -> String {
        format!("UPDATE {table} SET v = v + 1 WHERE id BETWEEN {first} AND {last};\n")
    }

    pub fn delete_range(&self, table: &str, first: u64, last: u64) -> String {
        format!("DELETE FROM {table} WHERE id BETWEEN {first} AND {last};\n")
    }

    /// The snapshot table of issue 6: int, bigint, numeric, text and timestamp columns.
    pub fn create_snapshot_table(&self, table: &str, rows: u64) -> String {
        match self {
            Db::Pg { .. } => format!(
                "CREATE TABLE {table} (id int PRIMARY KEY, big bigint, amount numeric(12,2), note text, ts timestamp);\n\
                 INSERT INTO {table} SELECT g, g * 1000003::bigint, g / 7.0, 'note ' || g, \
                 timestamp '2024-01-01' + g * interval '1 second' FROM generate_series(1, {rows}) g;\n"
            ),
            Db::My { .. } => format!(
                "CREATE TABLE {table} (id int PRIMARY KEY, big bigint, amount decimal(12,2), note text, ts datetime);\n\
                 INSERT INTO {table} SELECT seq, seq * 1000003, seq / 7, concat('note ', seq), \
                 '2024-01-01' + INTERVAL seq SECOND FROM seq_1_to_{rows};\n"
            ),
        }
    }
}

/// The DuckDB column list of the snapshot table (what tidewater's replica holds too).
pub const SNAPSHOT_COLUMNS: &str =
    "{'id': 'INTEGER', 'big': 'BIGINT', 'amount': 'DECIMAL(12,2)', 'note': 'VARCHAR', 'ts': 'TIMESTAMP'}";

/// Whether MariaDB GTID position `have` (`0-1-42,1-1-7`, optionally prefixed
/// `mariadb-gtid:`) includes every domain's sequence number of `target`.
pub fn gtid_reached(have: &str, target: &str) -> bool {
    fn parse(s: &str) -> Vec<(u64, u64)> {
        s.trim_start_matches("mariadb-gtid:")
            .split(',')
            .filter_map(|g| {
                let parts: Vec<u64> = g.trim().split('-').filter_map(|x| x.parse().ok()).collect();
                (parts.len() == 3).then(|| (parts[0], parts[2]))
            })
            .collect()
    }
    let have = parse(have);
    parse(target)
        .iter()
        .all(|(d, n)| have.iter().any(|(hd, hn)| hd == d && hn >= n))
}

/// Workloads (`workload`) written in this database's dialect.
impl Db<'_> {
    /// The SQL script that creates `tables` tables of `width` rows.
    pub fn create_tables(&self, tables: usize, width: Width) -> String {
        (0..tables.max(1))
            .map(|t| self.create_table(&table_name(t), width))
            .collect()
    }

    /// The SQL script of `txns`: one autocommit statement per transaction.
    pub fn render(&self, txns: &[Txn], width: Width) -> String {
        let mut script = String::with_capacity(txns.len() * 120);
        for t in txns {
            let table = table_name(t.table);
            script.push_str(&match t.op {
                Op::Insert => self.insert_range(&table, t.first, t.last, width),
                Op::Update => self.update_range(&table, t.first, t.last),
                Op::Delete => self.delete_range(&table, t.first, t.last),
            });
        }
        script
    }
}

/// How far past the snapshot table's first keys a writer's key change moves a row (so that
/// the keys it inserts, `rows + i`, count its committed transactions).
pub const WRITER_MOVED: u64 = 100_000_000;

/// A transaction of a paced writer on the snapshot table (`rows` rows to begin with):
/// an update, a delete, an insert of a new key and a key change, on keys `k`; then a pause
/// of `pause_ms`. Transaction `i` inserts key `rows + i`.
pub fn writer_tx(kind: Kind, table: &str, rows: u64, i: u64, k: [u64; 3], pause_ms: u32) -> String {
    let new = rows + i;
    let moved = rows + WRITER_MOVED + i;
    let [k1, k2, k3] = k;
    let body = format!(
        "UPDATE {table} SET big = big + 1, note = 'written {i}' WHERE id = {k1};\n\
         DELETE FROM {table} WHERE id = {k2};\n\
         INSERT INTO {table} VALUES ({new}, {i}, 1.25, 'inserted {i}', '2025-01-01 00:00:00');\n\
         UPDATE {table} SET id = {moved} WHERE id = {k3};\n"
    );
    match kind {
        Kind::Postgres => {
            format!("BEGIN;\n{body}COMMIT;\nSELECT pg_sleep({pause_ms} / 1000.0);\n")
        }
        Kind::MariaDb => {
            format!("START TRANSACTION;\n{body}COMMIT;\nDO SLEEP({pause_ms} / 1000);\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_positions_compare_per_domain() {
        assert!(gtid_reached("mariadb-gtid:0-1-42", "0-1-42"));
        assert!(gtid_reached("mariadb-gtid:0-1-43,1-1-2", "0-1-42,1-1-2"));
        assert!(!gtid_reached("mariadb-gtid:0-1-41", "0-1-42"));
        assert!(!gtid_reached("mariadb-gtid:0-1-50", "0-1-42,1-1-1"));
        assert!(gtid_reached("mariadb-gtid:0-1-5", ""));
    }
}
