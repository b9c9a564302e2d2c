//! Preflight checks (`tidewater check`): everything the source must provide before the first
//! run, each reported with what was found and exactly what to run or change when it is wrong.

use std::str::FromStr;

use tidewater_core::check::{fail_if, findings, item, ok, tables_item, CheckItem, CheckStatus};
use tidewater_core::{ErrorKind, Result};
use tokio_postgres::Client;

use crate::catalog::{resolve_tables, SourceTable};
use crate::conn::{connect, pg_error, redact, replication_fix};
use crate::setup::{
    insert_only_publication, quote_ident, quoted_table, slot_info, INSERT_ONLY_OPTIONS,
    MAIN_OPTIONS,
};
use crate::PgSourceConfig;

/// Runs every preflight check against the source; never returns early on a failed check
/// (only when it cannot connect at all: then one Fail item "connection" with the error and fix).
pub async fn run_checks(cfg: &PgSourceConfig, copy_readers: usize) -> Vec<CheckItem> {
    let client = match connect(cfg.url.expose()).await {
        Ok(client) => client,
        Err(e) => return vec![connection_failed(cfg, e.message())],
    };
    let who = match client
        .query_one(
            "SELECT current_user::text, current_database()::text, current_setting('server_version'), \
             current_setting('server_version_num')::int",
            &[],
        )
        .await
    {
        Ok(row) => Who { user: row.get(0), database: row.get(1), version: row.get(2), version_num: row.get(3) },
        Err(e) => return vec![connection_failed(cfg, pg_error(e, "reading the session").message())],
    };
    let cx = Cx { client, cfg, who };
    let connected = format!(
        "{} as user {} (PostgreSQL {})",
        redact(cfg.url.expose()),
        cx.who.user,
        cx.who.version
    );
    let mut items = vec![ok("connection", connected)];
    let mut add = |name: &str, res: Result<Vec<CheckItem>>| match res {
        Ok(found) => items.extend(found),
        Err(e) => items.push(item(
            name,
            CheckStatus::Fail,
            e.message(),
            e.fix().map(String::from),
        )),
    };
    add("server version", Ok(vec![cx.version()]));
    add("wal_level", cx.wal_level().await);
    add("replication privilege", cx.replication().await);
    add("max_replication_slots", cx.slot_headroom().await);
    add("max_wal_senders", cx.sender_headroom().await);
    add("connection limits", cx.sessions(copy_readers).await);
    add("max_slot_wal_keep_size", cx.wal_keep().await);
    add("server_encoding", cx.encoding().await);
    let (found, tables) = cx
        .tables()
        .await
        .map_or_else(|e| (Err(e), Vec::new()), |(i, t)| (Ok(vec![i]), t));
    add("tables", found);
    add("keys", Ok(tables.iter().filter_map(key_item).collect()));
    add("types", Ok(tables.iter().flat_map(type_items).collect()));
    if !tables.is_empty() {
        add("select privilege", cx.select_privilege(&tables).await);
    }
    add("publication", cx.publication(&tables).await);
    add("slot", cx.slot().await);
    items
}

/// The sessions a run holds open at the source at most: its client (also the first chunk
/// reader), `copy_readers - 1` more chunk readers, the replication connection, the backlog
/// poll (`backlog`), `verify`'s reader, and one for a moment (the row estimates at the start).
/// `connection_limits_hold_what_a_run_opens` (e2e) counts them during a parallel copy.
pub fn run_sessions(copy_readers: usize) -> i64 {
    copy_readers.max(1) as i64 + 4
}

/// The single item reported when no session can be opened; never shows the password.
fn connection_failed(cfg: &PgSourceConfig, message: &str) -> CheckItem {
    let lower = message.to_lowercase();
    let fix = if lower.contains("not a valid postgresql url") {
        "write source.url as postgres://user:password@host:port/database"
    } else if lower.contains("pg_hba") {
        "allow this host, user and database in the server's pg_hba.conf, or check the user and database in source.url"
    } else if lower.contains("password")
        || lower.contains("authentication")
        || lower.contains("role")
    {
        "check the user and password in source.url"
    } else if lower.contains("database") && lower.contains("does not exist") {
        "check the database name in source.url"
    } else {
        "check the host and port in source.url, that the server is running, and that it accepts \
         TCP connections from this machine (listen_addresses, firewall)"
    };
    let mut detail = message.to_string();
    let config = tokio_postgres::Config::from_str(cfg.url.expose()).ok();
    if let Some(pw) = config
        .as_ref()
        .and_then(|c| c.get_password())
        .filter(|p| !p.is_empty())
    {
        detail = detail.replace(&*String::from_utf8_lossy(pw), "***");
    }
    item(
        "connection",
        CheckStatus::Fail,
        detail,
        Some(fix.to_string()),
    )
}

struct Who {
    user: String,
    database: String,
    version: String,
    version_num: i32,
}

/// An open session and what the checks need to know about it.
struct Cx<'a> {
    client: Client,
    cfg: &'a PgSourceConfig,
    who: Who,
}

impl Cx<'_> {
    async fn one<T>(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<T>
    where
        T: for<'r> tokio_postgres::types::FromSql<'r>,
    {
        Ok(self
            .client
            .query_one(sql, params)
            .await
            .map_err(|e| pg_error(e, what))?
            .get(0))
    }

    /// A server setting, None when this server version does not have it.
    async fn setting(&self, name: &str) -> Result<Option<String>> {
        self.one(
            &format!("reading {name}"),
            "SELECT current_setting($1, true)",
            &[&name],
        )
        .await
    }

    async fn count(&self, view: &str) -> Result<i64> {
        self.one(
            &format!("reading {view}"),
            &format!("SELECT count(*) FROM {view}"),
            &[],
        )
        .await
    }

    fn version(&self) -> CheckItem {
        let v = &self.who.version;
        fail_if(
            self.who.version_num < 140000,
            "server version",
            format!("PostgreSQL {v}"),
            || format!("tidewater needs PostgreSQL 14 or newer; upgrade the source (found {v})"),
        )
    }

    async fn wal_level(&self) -> Result<Vec<CheckItem>> {
        let level = self.setting("wal_level").await?.unwrap_or_default();
        Ok(vec![fail_if(
            level != "logical",
            "wal_level",
            format!("wal_level = {level}"),
            || {
                "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (Cloud SQL: set the flag \
             cloudsql.logical_decoding=on; RDS: rds.logical_replication = 1 in the parameter group)"
                .into()
            },
        )])
    }

    async fn replication(&self) -> Result<Vec<CheckItem>> {
        // RDS grants replication through membership of rds_replication instead of the attribute.
        let sql = "SELECT rolreplication OR rolsuper OR EXISTS (SELECT 1 FROM pg_roles g \
                   WHERE g.rolname = 'rds_replication' AND pg_has_role(r.oid, g.oid, 'MEMBER')) \
                   FROM pg_roles r WHERE r.rolname = current_user";
        let may: bool = self.one("reading the role's attributes", sql, &[]).await?;
        let user = &self.who.user;
        let detail = format!(
            "user {user} {} replicate",
            if may { "may" } else { "may not" }
        );
        Ok(vec![fail_if(!may, "replication privilege", detail, || {
            replication_fix(user)
        })])
    }

    /// `used` of the setting `name` taken, and whether tidewater needs one more.
    async fn headroom(&self, name: &str, used: i64, needs_one: bool) -> Result<Vec<CheckItem>> {
        let max: i64 = self
            .setting(name)
            .await?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let detail = format!("{used} of {max} used");
        Ok(vec![fail_if(
            needs_one && used >= max,
            name,
            detail,
            || {
                format!(
                "ALTER SYSTEM SET {name} = {}; then restart PostgreSQL, or free one (see pg_replication_slots \
                 and pg_stat_replication)",
                max.max(used) + 4
            )
            },
        )])
    }

    async fn slot_headroom(&self) -> Result<Vec<CheckItem>> {
        let used = self.count("pg_replication_slots").await?;
        let exists = slot_info(&self.client, &self.cfg.slot).await?.is_some();
        self.headroom("max_replication_slots", used, !exists).await
    }

    async fn sender_headroom(&self) -> Result<Vec<CheckItem>> {
        let used = self.count("pg_stat_replication").await?;
        self.headroom("max_wal_senders", used, true).await
    }

    /// Whether the sessions a run opens at once fit the role's and the database's `CONNECTION
    /// LIMIT` (Fail when they never can, Warn when the sessions open now leave too few) and
    /// the server's free `max_connections` (Warn: other clients come and go).
    async fn sessions(&self, copy_readers: usize) -> Result<Vec<CheckItem>> {
        let needed = run_sessions(copy_readers);
        let sql = "SELECT r.rolconnlimit, d.datconnlimit, r.rolsuper, \
                   (SELECT count(*) FROM pg_stat_activity a \
                    WHERE a.usename = current_user AND a.pid <> pg_backend_pid()), \
                   (SELECT count(*) FROM pg_stat_activity a \
                    WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()), \
                   current_setting('max_connections')::int \
                   - current_setting('superuser_reserved_connections')::int \
                   - coalesce(current_setting('reserved_connections', true)::int, 0), \
                   (SELECT count(*) FROM pg_stat_activity a \
                    WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()) \
                   FROM pg_roles r, pg_database d \
                   WHERE r.rolname = current_user AND d.datname = current_database()";
        let row = self
            .client
            .query_one(sql, &[])
            .await
            .map_err(|e| pg_error(e, "reading connection limits"))?;
        let (role_limit, db_limit, superuser): (i32, i32, bool) =
            (row.get(0), row.get(1), row.get(2));
        let (role_open, db_open, server_max, server_open): (i64, i64, i32, i64) =
            (row.get(3), row.get(4), row.get(5), row.get(6));
        let user = quote_ident(&self.who.user);
        let database = quote_ident(&self.who.database);
        let limits = [
            ("role", &user, "ROLE", role_limit, role_open),
            ("database", &database, "DATABASE", db_limit, db_open),
        ];
        let mut found = vec![format!(
            "a run opens up to {needed} sessions ([snapshot] parallelism = {copy_readers}, \
             one of them replication)"
        )];
        let (mut fail, mut warn) = (Vec::new(), Vec::new());
        for (what, name, object, limit, open) in limits {
            if limit < 0 || superuser {
                continue;
            }
            found.push(format!(
                "{what} {name}: CONNECTION LIMIT {limit}, {open} in use"
            ));
            let fix = format!(
                "ALTER {object} {name} CONNECTION LIMIT {}; or lower [snapshot] parallelism",
                open + needed
            );
            if i64::from(limit) < needed {
                fail.push(fix);
            } else if i64::from(limit) - open < needed {
                warn.push(format!("close sessions of {what} {name}, or {fix}"));
            }
        }
        // Walsenders have slots of their own (max_wal_senders, checked above).
        let free = i64::from(server_max) - server_open;
        found.push(format!("server: {free} of {server_max} connections free"));
        if free < needed - 1 {
            warn.push(format!(
                "raise max_connections (ALTER SYSTEM SET max_connections = {}; then restart \
                 PostgreSQL), or close idle sessions",
                server_max as i64 + needed
            ));
        }
        Ok(vec![findings("connection limits", &found, fail, warn)])
    }

    async fn wal_keep(&self) -> Result<Vec<CheckItem>> {
        let name = "max_slot_wal_keep_size";
        Ok(vec![match self.setting(name).await?.as_deref() {
            Some("-1") | None => item(
                name,
                CheckStatus::Warn,
                "unlimited: a stopped replicator makes the server keep WAL until its disk is full",
                Some(format!(
                    "ALTER SYSTEM SET {name} = '10GB'; SELECT pg_reload_conf();"
                )),
            ),
            Some(size) => ok(
                name,
                format!("{size}: a slot falling further behind loses its WAL"),
            ),
        }])
    }

    async fn encoding(&self) -> Result<Vec<CheckItem>> {
        let enc = self.setting("server_encoding").await?.unwrap_or_default();
        Ok(vec![fail_if(
            enc != "UTF8",
            "server_encoding",
            enc.clone(),
            || {
                format!(
                    "tidewater needs a UTF8 database: recreate {} WITH ENCODING 'UTF8'",
                    quote_ident(&self.who.database)
                )
            },
        )])
    }

    /// The tables item and the selected tables (empty when none match).
    async fn tables(&self) -> Result<(CheckItem, Vec<SourceTable>)> {
        let patterns = &self.cfg.tables;
        match resolve_tables(&self.client, patterns).await {
            Ok(tables) => {
                let names = list(tables.iter().map(|t| &t.schema.id));
                let ids: Vec<_> = tables.iter().map(|t| &t.schema.id).collect();
                Ok((tables_item(patterns, &ids, &names), tables))
            }
            Err(e) if e.kind == ErrorKind::Config => {
                let sql = "SELECT n.nspname || '.' || c.relname FROM pg_class c \
                           JOIN pg_namespace n ON n.oid = c.relnamespace \
                           WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                           AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                           AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1";
                let rows = self
                    .client
                    .query(sql, &[])
                    .await
                    .map_err(|e| pg_error(e, "listing tables"))?;
                let seen = list(rows.iter().map(|r| r.get::<_, String>(0)));
                let detail = format!("no table matches {patterns:?}; tables here: {seen}");
                let fix = "set source.tables to schema.table globs such as \"public.*\" (a leading ! excludes)";
                Ok((
                    item("tables", CheckStatus::Fail, detail, Some(fix.into())),
                    Vec::new(),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// The selected tables for which `condition` (SQL over `c`, a pg_class row) is false.
    async fn tables_without<'t>(
        &self,
        condition: &str,
        tables: &'t [SourceTable],
    ) -> Result<Vec<&'t SourceTable>> {
        let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
        let sql =
            format!("SELECT c.oid FROM pg_class c WHERE c.oid = ANY($1) AND NOT ({condition})");
        let rows = self
            .client
            .query(&sql, &[&oids])
            .await
            .map_err(|e| pg_error(e, "checking privileges"))?;
        let lacking: Vec<u32> = rows.iter().map(|r| r.get(0)).collect();
        Ok(tables.iter().filter(|t| lacking.contains(&t.oid)).collect())
    }

    async fn select_privilege(&self, tables: &[SourceTable]) -> Result<Vec<CheckItem>> {
        let lacking = self
            .tables_without("has_table_privilege(c.oid, 'SELECT')", tables)
            .await?;
        let detail = if lacking.is_empty() {
            format!("on all {} tables", tables.len())
        } else {
            format!("missing on {}", list(lacking.iter().map(|t| &t.schema.id)))
        };
        Ok(vec![fail_if(
            !lacking.is_empty(),
            "select privilege",
            detail,
            || {
                let quoted: Vec<String> =
                    lacking.iter().map(|t| quoted_table(&t.schema.id)).collect();
                format!(
                    "GRANT SELECT ON {} TO {};",
                    quoted.join(", "),
                    quote_ident(&self.who.user)
                )
            },
        )])
    }

    /// Both publications (see `setup`) exist, or this user may create them.
    async fn publication(&self, tables: &[SourceTable]) -> Result<Vec<CheckItem>> {
        let main = &self.cfg.publication;
        let names = [main.clone(), insert_only_publication(main)];
        let sql = "SELECT pubname::text, pubviaroot FROM pg_publication WHERE pubname = ANY($1)";
        let rows = self
            .client
            .query(sql, &[&names.as_slice()])
            .await
            .map_err(|e| pg_error(e, "reading publications"))?;
        let existing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let missing: Vec<&String> = names.iter().filter(|n| !existing.contains(n)).collect();
        let by_leaf: Vec<String> = rows
            .iter()
            .filter(|r| !r.get::<_, bool>(1))
            .map(|r| r.get(0))
            .collect();
        if missing.is_empty() && !by_leaf.is_empty() {
            // `setup::publish_via_root` changes them at the next start.
            let alter: Vec<String> = by_leaf
                .iter()
                .map(|n| {
                    format!(
                        "ALTER PUBLICATION {} SET (publish_via_partition_root = true);",
                        quote_ident(n)
                    )
                })
                .collect();
            return Ok(vec![item(
                "publication",
                CheckStatus::Warn,
                format!(
                    "{} and {} exist; {} publish partitioned tables' changes under their \
                     partitions: the next run sets publish_via_partition_root (as the \
                     publications' owner) and copies partitioned tables again",
                    names[0],
                    names[1],
                    list(&by_leaf)
                ),
                Some(alter.join(" ")),
            )]);
        }
        if missing.is_empty() {
            return Ok(vec![ok(
                "publication",
                format!("{} and {} exist", names[0], names[1]),
            )]);
        }
        let create_db: bool = self
            .one(
                "checking CREATE",
                "SELECT has_database_privilege(current_database(), 'CREATE')",
                &[],
            )
            .await?;
        let foreign = self
            .tables_without("pg_has_role(c.relowner, 'USAGE')", tables)
            .await?;
        let mut problems = vec![format!("{} missing: will be created", list(&missing))];
        if !create_db {
            problems.push(format!(
                "no CREATE privilege on database {}",
                self.who.database
            ));
        }
        if !foreign.is_empty() {
            problems.push(format!(
                "not the owner of {}",
                list(foreign.iter().map(|t| &t.schema.id))
            ));
        }
        Ok(vec![fail_if(
            problems.len() > 1,
            "publication",
            problems.join("; "),
            || {
                let create: Vec<String> = missing
                    .iter()
                    .map(|name| create_publication(name, main, tables))
                    .collect();
                format!(
                "as the tables' owner run: {} or GRANT CREATE ON DATABASE {} TO {u}; and make {u} the tables' owner",
                create.join(" "),
                quote_ident(&self.who.database),
                u = quote_ident(&self.who.user)
            )
            },
        )])
    }

    async fn slot(&self) -> Result<Vec<CheckItem>> {
        let slot = &self.cfg.slot;
        let Some(info) = slot_info(&self.client, slot).await? else {
            return Ok(vec![ok(
                "slot",
                format!("{slot} does not exist: will be created (pgoutput)"),
            )]);
        };
        let other_name = "set source.slot to another name";
        let fail = |detail: String, fix: String| {
            Ok(vec![item("slot", CheckStatus::Fail, detail, Some(fix))])
        };
        if info.plugin.as_deref() != Some("pgoutput") {
            return fail(
                format!(
                    "{slot} uses plugin {}, not pgoutput",
                    info.plugin.unwrap_or_default()
                ),
                other_name.into(),
            );
        }
        if info.database.as_deref() != Some(self.who.database.as_str()) {
            let db = info.database.unwrap_or_default();
            return fail(
                format!("{slot} belongs to database {db}"),
                format!("{other_name}, or replicate database {db}"),
            );
        }
        if let Some(pid) = info.active_pid {
            return Ok(vec![item(
                "slot",
                CheckStatus::Fail,
                format!("{slot} is in use by walsender pid {pid}"),
                Some(format!("stop the other replicator using it (or SELECT pg_terminate_backend({pid}); if it is stale), or {other_name}")),
            )
            .reader_in_use()]);
        }
        if info.wal_status.as_deref() == Some("lost") {
            return fail(
                format!("{slot} has lost WAL it needed (max_slot_wal_keep_size exceeded)"),
                format!(
                    "the changes it held are gone: start from an empty replica (DuckDB: move the \
                     file and its .wal aside or set sink.path to a new file; BigQuery: a new \
                     sink.dataset), and `tidewater run` takes a new snapshot and replaces the \
                     slot (or drop it: SELECT pg_drop_replication_slot('{}');)",
                    slot.replace('\'', "''")
                ),
            );
        }
        let sql =
            "SELECT confirmed_flush_lsn::text, pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() \
                   THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, restart_lsn)::int8 \
                   FROM pg_replication_slots WHERE slot_name = $1";
        let row = self
            .client
            .query_one(sql, &[slot])
            .await
            .map_err(|e| pg_error(e, "reading the slot"))?;
        let (flushed, retained): (Option<String>, Option<i64>) = (row.get(0), row.get(1));
        let (flushed, retained) = (
            flushed.unwrap_or_default(),
            human_bytes(retained.unwrap_or(0).max(0) as u64),
        );
        Ok(vec![ok(
            "slot",
            format!("{slot} exists, confirmed up to {flushed}, retaining {retained} of WAL"),
        )])
    }
}

/// The key item of a table that cannot replicate updates and deletes by primary key.
fn key_item(t: &SourceTable) -> Option<CheckItem> {
    if t.schema.has_key() {
        return None;
    }
    let q = quoted_table(&t.schema.id);
    let add_key = format!("ALTER TABLE {q} ADD PRIMARY KEY (<columns>)");
    let (detail, fix) = match t.publishes_all_changes() {
        true => (
            "keyless: replicated as a multiset, updates/deletes matched by all columns",
            add_key,
        ),
        false => (
            "keyless without REPLICA IDENTITY FULL: only inserts replicated",
            format!("{add_key}, or ALTER TABLE {q} REPLICA IDENTITY FULL"),
        ),
    };
    Some(item(
        format!("key {}", t.schema.id),
        CheckStatus::Warn,
        detail,
        Some(fix),
    ))
}

fn type_items(t: &SourceTable) -> Vec<CheckItem> {
    let warn = |(col, ty): &(String, String)| {
        item(
            format!("type {}.{col}", t.schema.id),
            CheckStatus::Warn,
            format!("{ty}: replicated as exact text"),
            None,
        )
    };
    t.unsupported.iter().map(warn).collect()
}

/// The statement `setup` would run for publication `name`.
fn create_publication(name: &str, main: &str, tables: &[SourceTable]) -> String {
    let insert_only = name != main;
    let members: Vec<String> = tables
        .iter()
        .filter(|t| t.publishes_all_changes() != insert_only)
        .map(|t| quoted_table(&t.schema.id))
        .collect();
    let mut sql = format!("CREATE PUBLICATION {}", quote_ident(name));
    if !members.is_empty() {
        sql.push_str(&format!(" FOR TABLE {}", members.join(", ")));
    }
    sql.push_str(match insert_only {
        true => INSERT_ONLY_OPTIONS,
        false => MAIN_OPTIONS,
    });
    sql + ";"
}

/// A comma-separated list, cut after ten names.
fn list<T: std::fmt::Display>(names: impl IntoIterator<Item = T>) -> String {
    const MAX: usize = 10;
    let names: Vec<String> = names.into_iter().map(|n| n.to_string()).collect();
    match names.len() {
        0 => "none".into(),
        n if n > MAX => format!("{}, … ({} more)", names[..MAX].join(", "), n - MAX),
        _ => names.join(", "),
    }
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let (mut v, mut unit) = (n as f64, 0);
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
