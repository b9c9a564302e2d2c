//! Preflight checks (`tidewater check`) for a MySQL or MariaDB source: everything the server
//! must provide before the first run, each reported with what was found and exactly what to
//! run or change when it is wrong.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};
use tidewater_core::check::{fail_if, findings, item, ok, tables_item, CheckItem, CheckStatus};
use tidewater_core::glob::selected;
use tidewater_core::{Error, Result, TableId};

use crate::catalog::{resolve_tables, SourceTable};
use crate::conn::{connect, flavor, my_error, redact, Flavor};
use crate::snapshot::quote_ident;
use crate::MySqlSourceConfig;

/// The global variables the checks read; one the server lacks is absent from the map.
const VARIABLES: &str = "'log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata', \
    'binlog_row_value_options', 'gtid_mode', 'gtid_executed', 'gtid_binlog_pos', \
    'gtid_strict_mode', 'server_id', 'expire_logs_days', 'binlog_expire_logs_seconds', \
    'binlog_expire_logs_auto_purge', 'binlog_transaction_compression'";

const LOG_BIN_FIX: &str = "start the server with the binary log on: in my.cnf under [mysqld] \
    set log_bin = mysql-bin, server_id = <an id unique among your servers>, binlog_format = ROW \
    and binlog_row_image = FULL (and remove skip-log-bin / disable-log-bin), then restart it \
    (RDS/Aurora: enable automated backups and set binlog_format in the parameter group)";

const GTID_FIX: &str = "SET GLOBAL enforce_gtid_consistency = ON; SET GLOBAL gtid_mode = \
    OFF_PERMISSIVE; SET GLOBAL gtid_mode = ON_PERMISSIVE; then, once SHOW STATUS LIKE \
    'Ongoing_anonymous_transaction_count' shows 0, SET GLOBAL gtid_mode = ON; and gtid_mode = ON, \
    enforce_gtid_consistency = ON in my.cnf";

const DAY: f64 = 86_400.0;

/// Runs every preflight check against the source; never returns early on a failed check
/// (only when it cannot connect at all: then one Fail item "connection" with the error and fix).
pub async fn run_checks(cfg: &MySqlSourceConfig, copy_readers: usize) -> Vec<CheckItem> {
    let mut conn = match connect(cfg.url.expose()).await {
        Ok(conn) => conn,
        Err(e) => return vec![connection_failed(cfg, &e)],
    };
    let session = async {
        let flavor = flavor(&mut conn).await?;
        let sql = "SELECT VERSION(), CURRENT_USER()";
        let row: Option<(String, String)> =
            conn.query_first(sql).await.map_err(|e| my_error(e, sql))?;
        Ok::<_, Error>((flavor, row.unwrap_or_default()))
    };
    let (flavor, (version, account)) = match session.await {
        Ok(found) => found,
        Err(e) => return vec![connection_failed(cfg, &e)],
    };
    let (user, host) = account.rsplit_once('@').unwrap_or((&account, "%"));
    let account = format!("{}@{}", quote_string(user), quote_string(host));
    let (url, name) = (redact(cfg.url.expose()), flavor.name());
    let found = format!("{url} as {account} ({name} {version})");
    let mut items = vec![ok("connection", found)];
    let version = parse_version(&version);
    let vars = HashMap::new();
    let mut cx = Cx {
        conn,
        cfg,
        flavor,
        version,
        account,
        vars,
    };
    match cx.load_variables().await {
        Ok(()) => {
            items.push(cx.log_bin());
            items.push(cx.must_be("binlog_format", "ROW"));
            items.push(cx.must_be("binlog_row_image", "FULL"));
            items.push(cx.row_metadata());
            items.push(cx.gtid());
            items.push(cx.server_id().await);
            items.push(cx.retention().await);
            items.extend(cx.row_value_options());
            items.extend(cx.compression());
            let sessions = cx.sessions(copy_readers).await;
            items.push(sessions.unwrap_or_else(|e| failed("connection limits", &e)));
        }
        Err(e) => items.push(failed("server variables", &e)),
    }
    let none = |e: Error| (vec![failed("tables", &e)], Vec::new());
    let (found, tables) = cx.tables().await.unwrap_or_else(none);
    items.extend(found);
    let privileges = cx.privileges(&tables).await;
    items.push(privileges.unwrap_or_else(|e| failed("privileges", &e)));
    items
}

fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> CheckItem {
    item(name, CheckStatus::Warn, detail, Some(fix.into()))
}

fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> CheckItem {
    item(name, CheckStatus::Fail, detail, Some(fix.into()))
}

/// A check that could not run: its error, with the fix the error carries when it has one.
fn failed(name: &str, e: &Error) -> CheckItem {
    let fix = e
        .fix()
        .unwrap_or("run the statement named above as this user to see why it fails");
    fail(name, e.message(), fix)
}

/// The single item reported when no session can be opened; never shows the password.
fn connection_failed(cfg: &MySqlSourceConfig, e: &Error) -> CheckItem {
    let head = e.message();
    let fix = e.fix().unwrap_or(
        "check the host and port in source.url, that the server is running, and that it \
         accepts TCP connections from this machine (bind_address, skip_networking, firewall)",
    );
    let opts = Opts::from_url(cfg.url.expose()).ok();
    let password = opts
        .as_ref()
        .and_then(|o| o.pass())
        .filter(|p| !p.is_empty());
    let detail = password.map_or(head.to_string(), |pw| head.replace(pw, "***"));
    fail("connection", detail, fix)
}

/// An open session and what the checks need to know about it.
struct Cx<'a> {
    conn: Conn,
    cfg: &'a MySqlSourceConfig,
    flavor: Flavor,
    version: (u32, u32, u32),
    /// `'user'@'host'` as `CURRENT_USER()` names it, quoted for a GRANT.
    account: String,
    vars: HashMap<String, String>,
}

impl Cx<'_> {
    async fn load_variables(&mut self) -> Result<()> {
        let sql = format!("SHOW GLOBAL VARIABLES WHERE Variable_name IN ({VARIABLES})");
        let rows: Vec<(String, Option<String>)> = self
            .conn
            .query(sql)
            .await
            .map_err(|e| my_error(e, "reading the variables"))?;
        let lower = |(k, v): (String, Option<String>)| (k.to_lowercase(), v.unwrap_or_default());
        self.vars = rows.into_iter().map(lower).collect();
        Ok(())
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    fn mariadb(&self) -> bool {
        self.flavor == Flavor::MariaDb
    }

    fn log_bin(&self) -> CheckItem {
        let v = self.var("log_bin").unwrap_or("OFF");
        fail_if(v != "ON", "log_bin", format!("log_bin = {v}"), || {
            LOG_BIN_FIX.into()
        })
    }

    /// A setting that must be `want` for the binlog to carry whole rows.
    fn must_be(&self, name: &str, want: &str) -> CheckItem {
        let v = self.var(name).unwrap_or("");
        let detail = match v == want {
            true => format!("{name} = {v}"),
            false => format!("{name} = {v}: tidewater needs {want}"),
        };
        fail_if(v != want, name, detail, || {
            format!(
                "SET GLOBAL {name} = '{want}'; and {name} = {want} in my.cnf; sessions already \
                 connected keep {v} until they reconnect, so reconnect the applications (or restart \
                 the server) before the first run"
            )
        })
    }

    fn row_metadata(&self) -> CheckItem {
        let name = "binlog_row_metadata";
        let relies =
            "tidewater cannot check column names in the binlog and relies on its own schema";
        match self.var(name) {
            Some("FULL") => ok(name, "binlog_row_metadata = FULL: column names are logged"),
            Some(v) => warn(
                name,
                format!("binlog_row_metadata = {v}: {relies}"),
                "SET GLOBAL binlog_row_metadata = 'FULL'; and binlog_row_metadata = FULL in my.cnf",
            ),
            None => warn(
                name,
                format!("not available: the server is too old to log column names; {relies}"),
                "upgrade to MySQL 8.0.1+ / MariaDB 10.5+ and set binlog_row_metadata = FULL",
            ),
        }
    }

    fn gtid(&self) -> CheckItem {
        if self.mariadb() {
            let pos = self.var("gtid_binlog_pos").filter(|p| !p.is_empty());
            let pos = pos.unwrap_or("(empty: nothing logged yet)");
            let strict = self.var("gtid_strict_mode").unwrap_or("OFF");
            let detail = format!("gtid_binlog_pos = {pos}, gtid_strict_mode = {strict}");
            if strict == "ON" {
                return ok("gtid", detail);
            }
            let detail = format!("{detail}: out-of-order GTIDs make a resume position ambiguous");
            let fix = "SET GLOBAL gtid_strict_mode = ON; and gtid_strict_mode = 1 in my.cnf";
            return warn("gtid", detail, fix);
        }
        let mode = self.var("gtid_mode").unwrap_or("OFF");
        if mode == "ON" {
            let executed = self.var("gtid_executed").unwrap_or("").replace('\n', "");
            let executed = list_of(executed.split(',').filter(|s| !s.is_empty()));
            return ok(
                "gtid",
                format!("gtid_mode = ON, gtid_executed = {executed}"),
            );
        }
        let old = self.version < (8, 0, 2);
        let detail = format!(
            "gtid_mode = {mode}: tidewater falls back to binlog file:position, which needs MySQL \
             8.0.2+{} and does not carry over to another server after a failover, and copies \
             tables in one long snapshot transaction started under a brief global read lock \
             (RELOAD) instead of short chunks without a lock",
            if old { " (this server is older)" } else { "" }
        );
        match old {
            true => fail("gtid", detail, GTID_FIX),
            false => warn("gtid", detail, GTID_FIX),
        }
    }

    /// The server ids of the replicas connected to the source, with their hosts.
    async fn replicas(&mut self) -> Result<Vec<(u32, String)>> {
        // MySQL 8.4 removed SHOW SLAVE HOSTS; SHOW REPLICAS exists from 8.0.22.
        let sql = match !self.mariadb() && self.version >= (8, 0, 22) {
            true => "SHOW REPLICAS",
            false => "SHOW SLAVE HOSTS",
        };
        let rows: Vec<Row> = self.conn.query(sql).await.map_err(|e| my_error(e, sql))?;
        let get = |r: &Row| {
            let host = r.get_opt::<String, _>(1).and_then(|h| h.ok());
            Some((r.get_opt::<u32, _>(0)?.ok()?, host.unwrap_or_default()))
        };
        Ok(rows.iter().filter_map(get).collect())
    }

    async fn server_id(&mut self) -> CheckItem {
        let (name, mine) = ("server_id", self.cfg.server_id);
        let source: u32 = self.var(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        let replicas = self.replicas().await;
        let taken: Vec<u32> = replicas.iter().flatten().map(|(id, _)| *id).collect();
        let free = (1001..).find(|n| *n != source && !taken.contains(n));
        let fix = format!(
            "set source.server_id to an id that no server or replica of this source uses, e.g. {}",
            free.unwrap_or(1001)
        );
        let problem = match mine {
            0 => Some("0: a binlog reader needs a nonzero id".to_string()),
            _ if mine == source => Some(format!("{mine} is the source's own server_id")),
            _ => None,
        };
        if let Some(problem) = problem {
            return fail(name, format!("source.server_id = {problem}"), fix);
        }
        // A reader with this id may be this very pipeline, running: warn, do not fail.
        if let Some((_, host)) = replicas.iter().flatten().find(|(id, _)| *id == mine) {
            return warn(
                name,
                format!(
                    "source.server_id = {mine} is used by a connected replica (host '{host}'; an \
                     empty host is usually a binlog reader such as a running tidewater): if it is \
                     not this pipeline, the source disconnects one of the two readers"
                ),
                fix,
            )
            .reader_in_use();
        }
        let detail = format!("{mine}, the source is {source}; connected replicas: ");
        match replicas {
            Ok(list) => ok(name, detail + &list_of(list.iter().map(|(id, _)| id))),
            // MariaDB lists replicas only to REPLICATION MASTER ADMIN, which replicating does
            // not need: the documented grants leave it out, so its absence is no warning
            // (a clashing reader still shows at run time, when the source drops one of the
            // two).
            Err(e) if self.mariadb() && e.message().contains("Access denied") => ok(
                name,
                detail
                    + "not listed (optional: GRANT REPLICATION MASTER ADMIN lets check look for \
                       a replica using the same server_id)",
            ),
            Err(e) => {
                let privilege = match self.mariadb() {
                    true => "REPLICATION MASTER ADMIN",
                    false => "REPLICATION SLAVE",
                };
                let fix = format!(
                    "make sure no replica of this source uses server_id {mine}, or let this check \
                     list them: GRANT {privilege} ON *.* TO {};",
                    self.account
                );
                warn(name, detail + "unknown, " + e.message(), fix)
            }
        }
    }

    async fn retention(&mut self) -> CheckItem {
        let name = "binlog retention";
        let num = |v: &str| self.var(v).and_then(|s| s.parse().ok()).unwrap_or(0.0);
        let (secs, days) = (num("binlog_expire_logs_seconds"), num("expire_logs_days"));
        // MariaDB 10.6+ keeps both in step; MySQL 8.0 uses the days only when seconds is 0.
        let (var, days) = match self.vars.contains_key("binlog_expire_logs_seconds") {
            true if secs > 0.0 || days == 0.0 => ("binlog_expire_logs_seconds", secs / DAY),
            _ => ("expire_logs_days", days),
        };
        let logs = match self.conn.query::<Row, _>("SHOW BINARY LOGS").await {
            Ok(rows) => {
                let oldest = rows.first().and_then(|r| r.get_opt::<String, _>(0)?.ok());
                let oldest = oldest.unwrap_or_default();
                format!("; {} binlog files, the oldest {oldest}", rows.len())
            }
            Err(e) => format!(
                "; binlogs not listed: {}",
                my_error(e, "SHOW BINARY LOGS").message()
            ),
        };
        let (value, week) = match var {
            "expire_logs_days" => (format!("{days}"), "7".to_string()),
            _ => (format!("{secs}"), format!("{}", 7.0 * DAY)),
        };
        let fix = format!("SET GLOBAL {var} = {week}; and {var} = {week} in my.cnf (7 days)");
        if self.var("binlog_expire_logs_auto_purge") == Some("OFF") {
            let detail =
                format!("binlog_expire_logs_auto_purge = OFF: binlogs are never purged{logs}");
            let on = "binlog_expire_logs_auto_purge = ON";
            return warn(name, detail, format!("SET GLOBAL {on}; and {on} in my.cnf"));
        }
        if days == 0.0 {
            let detail = format!("{var} = 0: binlogs are never purged and can fill the disk{logs}");
            return warn(name, detail, fix);
        }
        let kept = format!("{var} = {value}: binlogs are kept {days:.1} days");
        if days < 1.0 {
            let lost = "a tidewater stopped for longer loses its position and needs a new snapshot";
            return warn(name, format!("{kept}: {lost}{logs}"), fix);
        }
        ok(name, kept + &logs)
    }

    /// MySQL 8.0.3+ can log JSON updates as partial diffs, which tidewater cannot apply.
    fn row_value_options(&self) -> Option<CheckItem> {
        let v = self
            .var("binlog_row_value_options")
            .filter(|_| !self.mariadb())?;
        let partial = v.contains("PARTIAL_JSON");
        let detail = match partial {
            true => format!("binlog_row_value_options = '{v}': JSON updates are logged as diffs"),
            false => format!("binlog_row_value_options = '{v}'"),
        };
        let fix = "SET GLOBAL binlog_row_value_options = ''; and binlog_row_value_options = '' \
                   in my.cnf, so JSON updates are logged whole";
        Some(fail_if(partial, "binlog events", detail, || fix.into()))
    }

    /// MySQL 8.0.20+ can log each transaction as one compressed payload, which the binlog
    /// client decompresses whole in memory before handing on its events.
    fn compression(&self) -> Option<CheckItem> {
        let on = self
            .var("binlog_transaction_compression")
            .filter(|_| !self.mariadb())?
            == "ON";
        let detail = match on {
            true => {
                "binlog_transaction_compression = ON: each transaction's payload is \
                     decompressed whole in memory, so one large transaction needs its whole \
                     size in memory (not the bounded pieces of an uncompressed one)"
            }
            false => "binlog_transaction_compression = OFF",
        };
        let fix = "SET GLOBAL binlog_transaction_compression = OFF; and \
                   binlog_transaction_compression = OFF in my.cnf";
        Some(match on {
            true => warn("binlog compression", detail, fix),
            false => ok("binlog compression", detail),
        })
    }

    /// The tables item (and one warning per keyless table) and the selected tables.
    async fn tables(&mut self) -> Result<(Vec<CheckItem>, Vec<SourceTable>)> {
        let patterns = &self.cfg.tables;
        let err = match resolve_tables(&mut self.conn, patterns).await {
            Ok(tables) => {
                let names = list_of(tables.iter().map(|t| &t.schema.id));
                let ids: Vec<_> = tables.iter().map(|t| &t.schema.id).collect();
                let found = tables_item(patterns, &ids, &names);
                let keys = tables.iter().filter_map(key_item);
                return Ok((std::iter::once(found).chain(keys).collect(), tables));
            }
            Err(e) => e,
        };
        // Nothing matches (then say what there is), or a selected table cannot be replicated.
        let sql = "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.TABLES \
                   WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
                   ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1";
        let seen: Vec<String> = self.conn.query(sql).await.unwrap_or_default();
        let matching = |t: &&String| {
            let (db, name) = t.split_once('.').unwrap_or_default();
            selected(patterns, &TableId::new(db, name))
        };
        if seen.iter().any(|t| matching(&t)) {
            let fix = err.fix().unwrap_or("exclude the table in source.tables");
            return Ok((vec![fail("tables", err.message(), fix)], Vec::new()));
        }
        let detail = format!(
            "no table matches {patterns:?}; this user sees {}",
            list_of(&seen)
        );
        let fix = format!(
            "set source.tables to database.table globs such as \"shop.*\" (a leading ! excludes); \
             a user sees only the tables it has a privilege on: GRANT SELECT ON `shop`.* TO {};",
            self.account
        );
        Ok((vec![fail("tables", detail, fix)], Vec::new()))
    }

    /// The grants of this session (with its active roles), parsed.
    async fn grants(&mut self) -> Result<Vec<Grant>> {
        let mut sql = "SHOW GRANTS".to_string();
        if !self.mariadb() {
            // MySQL shows a role's privileges only when asked with USING (CURRENT_ROLE: 8.0+).
            let role = self.conn.query_first("SELECT CURRENT_ROLE()").await;
            if let Some(roles) = role.ok().flatten().filter(|r: &String| r != "NONE") {
                sql = format!("SHOW GRANTS FOR CURRENT_USER() USING {roles}");
            }
        }
        let lines: Vec<String> = self.conn.query(&sql).await.map_err(|e| my_error(e, &sql))?;
        Ok(lines.iter().filter_map(|l| parse_grant(l)).collect())
    }

    /// Whether the sessions a run opens at once fit the account's `MAX_USER_CONNECTIONS`
    /// (Fail when they never can, Warn when its sessions open now leave too few) and the
    /// server's free `max_connections` (Warn: other clients come and go).
    async fn sessions(&mut self, copy_readers: usize) -> Result<CheckItem> {
        let needed = run_sessions(copy_readers);
        // The session value is the account's own limit when it has one, else the global one.
        let sql = "SELECT @@SESSION.max_user_connections, @@GLOBAL.max_connections, \
                   (SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                    WHERE USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1) \
                    AND ID <> CONNECTION_ID())";
        let row: Option<(i64, i64, i64)> = self
            .conn
            .query_first(sql)
            .await
            .map_err(|e| my_error(e, sql))?;
        let (limit, server_max, open) = row.unwrap_or_default();
        let sql = "SHOW GLOBAL STATUS LIKE 'Threads_connected'";
        let threads: Option<(String, i64)> = self
            .conn
            .query_first(sql)
            .await
            .map_err(|e| my_error(e, sql))?;
        let server_open = threads.map_or(0, |(_, n)| n - 1);
        let account = &self.account;
        let mut found = vec![format!(
            "a run opens up to {needed} sessions ([snapshot] parallelism = {copy_readers}, \
             one of them the binlog)"
        )];
        let (mut fails, mut warns) = (Vec::new(), Vec::new());
        // 0: no limit; -1 (MariaDB): only accounts with a limit of their own may connect.
        if limit > 0 {
            found.push(format!(
                "{account}: MAX_USER_CONNECTIONS {limit}, {open} in use"
            ));
            let fix = format!(
                "ALTER USER {account} WITH MAX_USER_CONNECTIONS {} (or SET GLOBAL \
                 max_user_connections when the account has no limit of its own); or lower \
                 [snapshot] parallelism",
                open + needed
            );
            if limit < needed {
                fails.push(fix);
            } else if limit - open < needed {
                warns.push(format!("close sessions of {account}, or {fix}"));
            }
        }
        let free = server_max - server_open;
        found.push(format!("server: {free} of {server_max} connections free"));
        if free < needed {
            warns.push(format!(
                "raise max_connections (SET GLOBAL max_connections = {}, and in my.cnf), or \
                 close idle sessions",
                server_max + needed
            ));
        }
        Ok(findings("connection limits", &found, fails, warns))
    }

    async fn privileges(&mut self, tables: &[SourceTable]) -> Result<CheckItem> {
        let grants = self.grants().await?;
        let has = |any: &[&str], id: Option<&TableId>| grants.iter().any(|g| g.covers(any, id));
        let mysql = !self.mariadb();
        // MySQL takes its brief global read lock only where a snapshot's exact position is
        // needed (`snapshot`): every snapshot without GTIDs, a keyless table's copy with them.
        let lock = match mysql {
            false => None,
            true if self.var("gtid_mode") != Some("ON") => Some(
                "gtid_mode is off: every snapshot's position is read under a brief FLUSH TABLES \
                 WITH READ LOCK (with gtid_mode = ON, only a table without a primary key needs it)",
            ),
            true if tables.iter().any(|t| !t.schema.has_key()) => Some(
                "a table without a primary key is copied under a brief FLUSH TABLES WITH READ \
                 LOCK, its exact binlog position",
            ),
            true => None,
        };
        let (mut fails, mut found, mut missing, mut global) = (false, vec![], vec![], vec![]);
        let mut need = |name: &'static str, granted: bool, why: &str, required: bool| {
            if granted {
                found.push(name.to_string());
            } else {
                fails |= required;
                missing.push(format!("{name} ({why})"));
                global.push(name);
            }
        };
        let slave = has(&["REPLICATION SLAVE", "REPLICATION REPLICA"], None);
        need("REPLICATION SLAVE", slave, "to read the binlog", true);
        let client = has(&["REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"], None);
        if mysql {
            let why = "SHOW BINARY LOG STATUS: where each snapshot stands in the binlog";
            need("REPLICATION CLIENT", client, why, true);
            if let Some(why) = lock {
                need("RELOAD", has(&["RELOAD"], None), why, true);
            }
        } else {
            let name = match self.version < (10, 5, 2) {
                true => "REPLICATION CLIENT",
                false => "BINLOG MONITOR",
            };
            need(name, client, "only to list the binlogs here", false);
        }
        let ids = tables.iter().map(|t| &t.schema.id);
        let unreadable: Vec<&TableId> = ids.filter(|id| !has(&["SELECT"], Some(id))).collect();
        let account = &self.account;
        let mut grant = Vec::new();
        if !global.is_empty() {
            grant.push(format!("GRANT {} ON *.* TO {account};", global.join(", ")));
        }
        if unreadable.is_empty() && !tables.is_empty() {
            found.push(format!("SELECT on all {} tables", tables.len()));
        } else if !unreadable.is_empty() {
            fails = true;
            missing.push(format!("SELECT on {}", list_of(&unreadable)));
            // Table by table when few, else per database.
            let few = unreadable.len() <= 5;
            let on = |id: &&TableId| match few {
                true => quoted_table(id),
                false => format!("{}.*", quote_ident(&id.schema)),
            };
            let mut on: Vec<String> = unreadable.iter().map(on).collect();
            on.dedup();
            let select = |on: &String| format!("GRANT SELECT ON {on} TO {account};");
            grant.extend(on.iter().map(select));
        }
        let (name, grant) = ("privileges", grant.join(" "));
        Ok(match (missing.is_empty(), fails) {
            (true, _) => ok(name, format!("{account} has {}", found.join(", "))),
            (false, true) => fail(
                name,
                format!("{account} lacks {}", missing.join(", ")),
                grant,
            ),
            (false, false) => warn(
                name,
                format!("{account} lacks {}", missing.join(", ")),
                grant,
            ),
        })
    }
}

/// The sessions a run holds open at the source at most: `copy_readers` chunk readers, the
/// binlog connection, the stream's catalog session, the backlog poll (`backlog`), `verify`'s
/// reader, and one for a moment (the row estimates at the start, a table's re-copy).
/// `connection_limits_hold_what_a_run_opens` (e2e) counts them during a parallel copy.
pub fn run_sessions(copy_readers: usize) -> i64 {
    copy_readers.max(1) as i64 + 5
}

/// The warning for a table whose updates and deletes cannot be matched by primary key.
fn key_item(t: &SourceTable) -> Option<CheckItem> {
    let id = &t.schema.id;
    let detail = "no primary key: the replica is a multiset, updates and deletes match whole rows";
    let fix = || {
        format!(
            "ALTER TABLE {} ADD PRIMARY KEY (<columns>);",
            quoted_table(id)
        )
    };
    (!t.schema.has_key()).then(|| warn(&format!("key {id}"), detail, fix()))
}

fn quoted_table(id: &TableId) -> String {
    format!("{}.{}", quote_ident(&id.schema), quote_ident(&id.name))
}

/// One `GRANT privileges ON db.table TO ...` line (`None` for `*`; column privileges left out).
#[derive(Debug)]
struct Grant {
    privileges: Vec<String>,
    db: Option<String>,
    table: Option<String>,
}

impl Grant {
    /// Whether one of `any` (or ALL) is granted on `table` (`None`: globally).
    fn covers(&self, any: &[&str], table: Option<&TableId>) -> bool {
        let all = |p: &String| p == "ALL PRIVILEGES" || p == "ALL" || any.contains(&p.as_str());
        self.privileges.iter().any(all)
            && match (&self.db, &self.table, table) {
                (None, _, _) => true,
                (Some(db), None, Some(id)) => like(db, &id.schema),
                (Some(db), Some(t), Some(id)) => *db == id.schema && *t == id.name,
                (Some(_), _, None) => false,
            }
    }
}

fn parse_grant(line: &str) -> Option<Grant> {
    let (mut privileges, rest) = split_top(line.strip_prefix("GRANT ")?, " ON ")?;
    let (object, _) = split_top(rest, " TO ")?;
    let object = object.strip_prefix("TABLE ").unwrap_or(object);
    let routine = ["PROCEDURE ", "FUNCTION ", "PACKAGE "]
        .iter()
        .any(|r| object.starts_with(r));
    let (db, table) = split_top(object, ".").filter(|_| !routine)?;
    let mut list = Vec::new();
    loop {
        let (head, tail) = split_top(privileges, ",").unwrap_or((privileges, ""));
        if !head.contains('(') {
            list.push(head.trim().to_uppercase());
        }
        if tail.is_empty() {
            break;
        }
        privileges = tail;
    }
    let name = |s: &str| (s != "*").then(|| unquote(s));
    Some(Grant {
        privileges: list,
        db: name(db),
        table: name(table),
    })
}

/// Splits at the first `sep` outside quotes and parentheses.
fn split_top<'s>(s: &'s str, sep: &str) -> Option<(&'s str, &'s str)> {
    let (mut quote, mut depth) = (None, 0);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '`' | '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            _ if depth == 0 && s[i..].starts_with(sep) => {
                return Some((&s[..i], &s[i + sep.len()..]))
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    match s.strip_prefix('`').and_then(|s| s.strip_suffix('`')) {
        Some(inner) => inner.replace("``", "`"),
        None => s.to_string(),
    }
}

/// A database name in a grant is a LIKE pattern: `%`, `_`, and `\` escaping them.
fn like(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some(('\\', [c, rest @ ..])) | Some((c, rest)) => {
                t.first() == Some(c) && go(rest, &t[1..])
            }
        }
    }
    let chars = |s: &str| s.chars().collect::<Vec<_>>();
    go(&chars(pattern), &chars(text))
}

fn quote_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn parse_version(v: &str) -> (u32, u32, u32) {
    let mut n = v
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    let mut next = || n.next().unwrap_or(0);
    (next(), next(), next())
}

/// A comma-separated list, cut after ten names.
fn list_of<T: std::fmt::Display>(names: impl IntoIterator<Item = T>) -> String {
    const MAX: usize = 10;
    let names: Vec<String> = names.into_iter().map(|n| n.to_string()).collect();
    match names.len() {
        0 => "none".into(),
        n if n > MAX => format!("{}, … ({} more)", names[..MAX].join(", "), n - MAX),
        _ => names.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_with_quotes_columns_and_wildcards() {
        let id = |db, t| TableId::new(db, t);
        let g = parse_grant("GRANT SELECT, INSERT ON `d_b`.`t 1` TO `r`@`localhost`").unwrap();
        assert!(g.covers(&["SELECT"], Some(&id("d_b", "t 1"))));
        assert!(!g.covers(&["SELECT"], Some(&id("d_b", "t"))));
        let cols = parse_grant("GRANT SELECT (`a`), UPDATE ON `db`.`t` TO `r`@`%`").unwrap();
        assert_eq!(cols.privileges, vec!["UPDATE"]);
        let all = parse_grant("GRANT ALL PRIVILEGES ON `shop\\_%`.* TO `u`@`%`").unwrap();
        assert!(all.covers(&["SELECT"], Some(&id("shop_eu", "t"))));
        assert!(!all.covers(&["SELECT"], Some(&id("shopXeu", "t"))));
        assert!(!all.covers(&["REPLICATION SLAVE"], None));
        let repl = "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `r`@`%` IDENTIFIED BY 'x'";
        assert!(parse_grant(repl).unwrap().covers(&["BINLOG MONITOR"], None));
        assert!(parse_grant("GRANT `role` TO `u`@`%`").is_none());
        assert!(parse_grant("GRANT PROXY ON ''@'%' TO 'root'@'localhost'").is_none());
        assert!(parse_grant("GRANT EXECUTE ON PROCEDURE `db`.`p` TO `u`@`%`").is_none());
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("10.11.19-MariaDB-0+deb12u1-log"),
            (10, 11, 19)
        );
        assert_eq!(parse_version("8.0.36"), (8, 0, 36));
    }
}
