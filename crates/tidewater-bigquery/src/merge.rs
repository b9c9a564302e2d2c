//! The commit script: one BigQuery multi-statement transaction that moves this run's staged
//! rows of the batch into every touched table's log, applies them to its replica and advances
//! the stored position, all or nothing.
//!
//! ```sql
//! BEGIN TRANSACTION;
//! SELECT IF(<state ordinal> = lo, 1, ERROR('tidewater-state-moved ...'));   -- guard
//! INSERT INTO log (...) SELECT ... FROM staging WHERE <this run> AND lo < _metadata_tx <= hi;
//! DELETE FROM replica WHERE TRUE;                 -- only after a TRUNCATE in the batch
//! MERGE replica USING (last change per key among the same staging rows) ...;
//! UPDATE _tidewater_state SET position = ..., tx_ordinal = hi ...;
//! COMMIT TRANSACTION;
//! ```
//!
//! Every statement that writes (INSERT, DELETE, MERGE, UPDATE) targets a table that never
//! receives streamed rows: the log, the replica and the state table are written only here.
//! The staging table, which does receive them, is only read.
//!
//! The guard makes a script that already ran (a retry after a lost answer) fail without
//! changing anything, and stops a second process writing the same pipeline.

use tidewater_core::TableSchema;

use crate::tables::{ident, log_column_names, OLD_KEY_PREFIX, RUN_COLUMN};

/// In the guard's error: the state no longer is where this batch started.
pub const STATE_MOVED: &str = "tidewater-state-moved";

/// The staged rows of one table a commit moves to the log and applies.
pub struct LogRange<'a> {
    pub schema: &'a TableSchema,
    /// Fully qualified, quoted names.
    pub replica: String,
    pub log: String,
    pub staging: String,
    /// The run whose staged rows these are (`_metadata_run`).
    pub run: &'a str,
    /// Transaction ordinals `lo < _metadata_tx <= hi`.
    pub lo: i64,
    pub hi: i64,
    /// The batch's last TRUNCATE of this table: (ordinal, sequence of the change after it);
    /// only changes from there on reach the emptied replica.
    pub truncated_at: Option<(i64, i64)>,
    /// Every row of the range was appended at or after this time (µs since the epoch):
    /// lets BigQuery prune the staging table's day partitions.
    pub appended_since_us: i64,
    /// A constant filter on the replica's first key column that every key of the batch
    /// passes (`prune`): lets BigQuery prune the replica's clustered blocks.
    pub prune: Option<String>,
}

/// A BigQuery string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl LogRange<'_> {
    /// This run's staged rows of the batch, every change type.
    fn batch(&self) -> String {
        format!(
            "{RUN_COLUMN} = {} AND _metadata_tx > {} AND _metadata_tx <= {} AND \
             _metadata_timestamp >= TIMESTAMP_MICROS({})",
            literal(self.run),
            self.lo,
            self.hi,
            self.appended_since_us
        )
    }

    /// The batch's rows that reach the replica: no TRUNCATE marker, nothing before the last
    /// TRUNCATE.
    fn filter(&self) -> String {
        let mut f = format!("{} AND _metadata_change_type <> 'TRUNCATE'", self.batch());
        if let Some((tx, seq)) = self.truncated_at {
            f.push_str(&format!(
                " AND (_metadata_tx > {tx} OR (_metadata_tx = {tx} AND _metadata_sequence >= {seq}))"
            ));
        }
        f
    }

    /// The statements that bring the log and the replica up to `hi`.
    pub fn statements(&self) -> Vec<String> {
        let cols: Vec<String> = log_column_names(self.schema)
            .iter()
            .map(|c| ident(c))
            .collect();
        let cols = cols.join(", ");
        let mut out = vec![format!(
            "INSERT INTO {} ({cols}) SELECT {cols} FROM {} WHERE {}",
            self.log,
            self.staging,
            self.batch()
        )];
        if self.truncated_at.is_some() {
            out.push(format!("DELETE FROM {} WHERE TRUE", self.replica));
        }
        out.push(if self.schema.has_key() {
            self.merge()
        } else {
            self.append_inserts()
        });
        out
    }

    /// Keyless tables get inserts only (the sink refuses their updates and deletes).
    fn append_inserts(&self) -> String {
        let cols = self.columns();
        format!(
            "INSERT INTO {} ({cols}) SELECT {cols} FROM {} WHERE {} AND _metadata_change_type IN ('SNAPSHOT', 'INSERT')",
            self.replica,
            self.staging,
            self.filter()
        )
    }

    fn columns(&self) -> String {
        let names: Vec<String> = self.schema.columns.iter().map(|c| ident(&c.name)).collect();
        names.join(", ")
    }

    /// The last event per key decides: a live image (insert, update, snapshot row) or a
    /// removal (delete; the old key of a key-changing update). Events are ordered by
    /// transaction ordinal, then sequence, and a key change's removal before its new image.
    fn merge(&self) -> String {
        let s = self.schema;
        let keys: Vec<&str> = s.key.iter().map(|&k| s.columns[k].name.as_str()).collect();
        let k_alias: Vec<String> = (0..keys.len()).map(|i| format!("_k{i}")).collect();
        let cols = self.columns();
        let new_keys: Vec<String> = keys
            .iter()
            .zip(&k_alias)
            .map(|(k, a)| format!("{} AS {a}", ident(k)))
            .collect();
        let old_keys: Vec<String> = keys
            .iter()
            .zip(&k_alias)
            .map(|(k, a)| format!("{} AS {a}", ident(&format!("{OLD_KEY_PREFIX}{k}"))))
            .collect();
        let filter = self.filter();
        let events = format!(
            "SELECT {new}, {cols}, _metadata_tx AS _tx, _metadata_sequence AS _seq, 1 AS _sub, \
             NOT _metadata_deleted AS _live FROM {staging} WHERE {filter} \
             UNION ALL SELECT {old}, {cols}, _metadata_tx, _metadata_sequence, 0, FALSE FROM {staging} \
             WHERE {filter} AND {first_old} IS NOT NULL",
            new = new_keys.join(", "),
            old = old_keys.join(", "),
            staging = self.staging,
            first_old = ident(&format!("{OLD_KEY_PREFIX}{}", keys[0])),
        );
        let outer: Vec<String> = k_alias
            .iter()
            .cloned()
            .chain(s.columns.iter().map(|c| ident(&c.name)))
            .chain(["_live".to_string()])
            .collect();
        let last = format!(
            "SELECT {outer} FROM (SELECT e.*, ROW_NUMBER() OVER (PARTITION BY {parts} ORDER BY \
             _tx DESC, _seq DESC, _sub DESC) AS _rn FROM ({events}) e) WHERE _rn = 1",
            outer = outer.join(", "),
            parts = k_alias.join(", "),
        );
        let mut on: Vec<String> = keys
            .iter()
            .zip(&k_alias)
            .map(|(k, a)| format!("t.{} = s.{a}", ident(k)))
            .collect();
        on.extend(self.prune.clone());
        let sets: Vec<String> = s
            .columns
            .iter()
            .filter(|c| !keys.contains(&c.name.as_str()))
            .map(|c| format!("{0} = s.{0}", ident(&c.name)))
            .collect();
        let update = if sets.is_empty() {
            String::new()
        } else {
            format!(" WHEN MATCHED THEN UPDATE SET {}", sets.join(", "))
        };
        let values: Vec<String> = s
            .columns
            .iter()
            .map(|c| format!("s.{}", ident(&c.name)))
            .collect();
        format!(
            "MERGE {replica} t USING ({last}) s ON {on} WHEN MATCHED AND NOT s._live THEN DELETE{update} \
             WHEN NOT MATCHED AND s._live THEN INSERT ({cols}) VALUES ({values})",
            replica = self.replica,
            on = on.join(" AND "),
            values = values.join(", "),
        )
    }
}

/// What the state table gets when a batch commits.
pub struct StateUpdate<'a> {
    /// Fully qualified, quoted name of the state table.
    pub table: &'a str,
    pub pipeline: &'a str,
    pub lo: i64,
    pub hi: i64,
    pub position: &'a str,
    pub last_source_commit_us: i64,
}

impl StateUpdate<'_> {
    fn guard(&self) -> String {
        format!(
            "SELECT IF((SELECT tx_ordinal FROM {t} WHERE name = {p}) = {lo}, 1, ERROR({msg}))",
            t = self.table,
            p = literal(self.pipeline),
            lo = self.lo,
            msg = literal(&format!(
                "{STATE_MOVED}: the stored transaction ordinal is no longer {}",
                self.lo
            )),
        )
    }

    fn update(&self) -> String {
        format!(
            "UPDATE {t} SET position = {pos}, tx_ordinal = {hi}, last_source_commit = \
             TIMESTAMP_MICROS({ts}), last_apply = CURRENT_TIMESTAMP() WHERE name = {p}",
            t = self.table,
            pos = literal(self.position),
            hi = self.hi,
            ts = self.last_source_commit_us,
            p = literal(self.pipeline),
        )
    }
}

/// The whole commit script.
pub fn commit_script(tables: &[LogRange], state: &StateUpdate) -> String {
    let mut statements = vec!["BEGIN TRANSACTION".to_string(), state.guard()];
    for t in tables {
        statements.extend(t.statements());
    }
    statements.push(state.update());
    statements.push("COMMIT TRANSACTION".into());
    let mut script = statements.join(";\n");
    script.push(';');
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{Column, ColumnType, TableId};

    fn table(key: Vec<usize>) -> TableSchema {
        let col = |name: &str| Column {
            name: name.into(),
            ty: ColumnType::Int64,
            nullable: true,
            source_type: String::new(),
        };
        TableSchema {
            id: TableId::new("s", "t"),
            columns: vec![col("id"), col("v")],
            key,
        }
    }

    fn range(schema: &TableSchema, truncated_at: Option<(i64, i64)>) -> LogRange<'_> {
        LogRange {
            schema,
            replica: "`p.d.s_t`".into(),
            log: "`p.d.s_t_log`".into(),
            staging: "`p.d.s_t_staging`".into(),
            run: "r9",
            lo: 4,
            hi: 9,
            truncated_at,
            appended_since_us: 77,
            prune: Some("t.`id` IN (1, 5)".into()),
        }
    }

    #[test]
    fn script_is_one_guarded_transaction() {
        let keyed = table(vec![0]);
        let state = StateUpdate {
            table: "`p.d._tidewater_state`",
            pipeline: "default",
            lo: 4,
            hi: 9,
            position: "0/16B3748",
            last_source_commit_us: 5,
        };
        let script = commit_script(&[range(&keyed, Some((6, 2)))], &state);
        let statements: Vec<&str> = script.split(";\n").collect();
        assert_eq!(statements[0], "BEGIN TRANSACTION");
        assert!(
            statements[1].contains("= 4, 1, ERROR('tidewater-state-moved"),
            "{script}"
        );
        assert!(
            statements[2].starts_with(
                "INSERT INTO `p.d.s_t_log` (`id`, `v`, `_metadata_old_id`, `_metadata_change_type`"
            ),
            "{script}"
        );
        assert!(statements[2].ends_with(
            "FROM `p.d.s_t_staging` WHERE _metadata_run = 'r9' AND _metadata_tx > 4 AND \
             _metadata_tx <= 9 AND _metadata_timestamp >= TIMESTAMP_MICROS(77)"
        ));
        assert_eq!(statements[3], "DELETE FROM `p.d.s_t` WHERE TRUE");
        assert!(
            statements[4].starts_with("MERGE `p.d.s_t` t USING"),
            "{script}"
        );
        assert!(statements[4].contains("FROM `p.d.s_t_staging` WHERE _metadata_run = 'r9'"));
        assert!(statements[4].contains("_metadata_tx > 4 AND _metadata_tx <= 9"));
        assert!(statements[4]
            .contains("(_metadata_tx > 6 OR (_metadata_tx = 6 AND _metadata_sequence >= 2))"));
        assert!(statements[4].contains("TIMESTAMP_MICROS(77)"));
        assert!(statements[4].contains("WHEN MATCHED THEN UPDATE SET `v` = s.`v`"));
        assert!(
            statements[4].contains(") s ON t.`id` = s._k0 AND t.`id` IN (1, 5) WHEN"),
            "{script}"
        );
        assert!(statements[5].contains("tx_ordinal = 9"));
        assert!(statements[5].contains("position = '0/16B3748'"));
        assert_eq!(*statements.last().unwrap(), "COMMIT TRANSACTION;");
    }

    #[test]
    fn keyless_tables_append_inserts_and_all_key_tables_only_insert_or_delete() {
        let keyless = table(vec![]);
        let sql = range(&keyless, None).statements()[1].clone();
        assert!(
            sql.starts_with(
                "INSERT INTO `p.d.s_t` (`id`, `v`) SELECT `id`, `v` FROM `p.d.s_t_staging`"
            ),
            "{sql}"
        );
        let all_key = table(vec![0, 1]);
        let sql = range(&all_key, None).statements().join(";");
        assert!(!sql.contains("UPDATE SET"), "{sql}");
        assert!(sql.contains("ON t.`id` = s._k0 AND t.`v` = s._k1"), "{sql}");
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(literal(r"it's a\b"), r"'it\'s a\\b'");
    }
}
