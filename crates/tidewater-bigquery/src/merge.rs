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

use crate::tables::{ident, BEFORE, OLD_KEY_PREFIX, RUN_COLUMN, UNCHANGED_COLUMN};

/// In the guard's error: the state no longer is where this batch started.
pub const STATE_MOVED: &str = "tidewater-state-moved";

/// The staged rows of one table a commit moves to the log and applies.
pub struct LogRange<'a> {
    pub schema: &'a TableSchema,
    /// Fully qualified, quoted names.
    pub replica: String,
    pub log: String,
    pub staging: String,
    /// The columns the INSERT into the log copies from staging: every column both have
    /// (the log and staging keep the columns of dropped source columns, as history).
    pub log_columns: &'a [String],
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
    /// Whether some staged update of the batch left values unchanged (PostgreSQL TOAST):
    /// then the rows are read resolved ([`LogRange::rows`]).
    pub unchanged: bool,
    /// [`LogRange::prune`] for the replica as alias `r` (the resolving join).
    pub prune_previous: Option<String>,
    /// A keyless table whose batch updates or deletes rows: applied as a multiset
    /// ([`LogRange::multiset`]) instead of appended.
    pub multiset: bool,
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

    /// Where the batch's rows are read from: the staging table, or, when updates of the batch
    /// left values unchanged, the staging rows with each unchanged value resolved to the
    /// key's previous image: the last earlier row of the key in the batch that has the
    /// value (ordered by transaction and sequence), else the replica's row as of the batch's
    /// start (the script reads it before the MERGE). Correct because an unchanged value is
    /// only ever sent for an update that kept its key (`rows` refuses the others), so the
    /// previous image of the row is under the same key: earlier in the batch, or committed.
    fn rows(&self) -> String {
        if !self.unchanged {
            return self.staging.clone();
        }
        let s = self.schema;
        let keys: Vec<String> = s.key.iter().map(|&k| ident(&s.columns[k].name)).collect();
        let window = format!(
            "OVER (PARTITION BY {} ORDER BY e._metadata_tx, e._metadata_sequence ROWS BETWEEN \
             UNBOUNDED PRECEDING AND 1 PRECEDING)",
            keys.iter()
                .map(|k| format!("e.{k}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut cols: Vec<String> = Vec::new();
        for name in self.log_columns.iter().chain([&RUN_COLUMN.to_string()]) {
            let c = ident(name);
            let resolvable = s
                .columns
                .iter()
                .enumerate()
                .any(|(i, col)| col.name == *name && !s.key.contains(&i));
            if !resolvable {
                cols.push(format!("e.{c} AS {c}"));
                continue;
            }
            let left_out = format!("{} IN UNNEST(e.{UNCHANGED_COLUMN})", literal(name));
            cols.push(format!(
                "IF({left_out}, COALESCE(LAST_VALUE(IF({left_out}, NULL, STRUCT(e.{c} AS v)) \
                 IGNORE NULLS) {window}, STRUCT(r.{c} AS v)).v, e.{c}) AS {c}"
            ));
        }
        let mut on: Vec<String> = keys.iter().map(|k| format!("r.{k} = e.{k}")).collect();
        on.extend(self.prune_previous.clone());
        format!(
            "(SELECT {} FROM {} e LEFT JOIN {} r ON {} WHERE {})",
            cols.join(", "),
            self.staging,
            self.replica,
            on.join(" AND "),
            self.batch()
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
        let cols: Vec<String> = self.log_columns.iter().map(|c| ident(c)).collect();
        let cols = cols.join(", ");
        let mut out = vec![format!(
            "INSERT INTO {} ({cols}) SELECT {cols} FROM {} WHERE {} AND \
             _metadata_change_type <> '{BEFORE}'",
            self.log,
            self.rows(),
            self.batch()
        )];
        if self.truncated_at.is_some() {
            out.push(format!("DELETE FROM {} WHERE TRUE", self.replica));
        }
        if self.schema.has_key() {
            out.push(self.merge());
        } else if self.multiset {
            out.extend(self.multiset());
        } else {
            out.push(self.append_inserts());
        }
        out
    }

    /// A keyless table's rows are a multiset (REPLICA IDENTITY FULL: a delete or update
    /// names the whole old row, and removes one copy of it). Per distinct row image the
    /// batch touched, the copies the replica keeps are those it had plus the batch's net
    /// count (inserts, snapshot rows and new images +1; deletes and replaced images, `BEFORE`
    /// rows, -1). The net count does not depend on the order of the batch's changes, so it is
    /// exact whatever their order, as long as each removal met a copy at the source. A
    /// temporary table holds the counts; every copy of those images is deleted and the kept
    /// number inserted again. A negative count means the replica lacks a row the source
    /// removed: the commit fails rather than guess. Rows are compared by
    /// `TO_JSON_STRING` of all columns (BigQuery cannot group or compare arrays and JSON).
    fn multiset(&self) -> Vec<String> {
        let cols = self.columns();
        let image = |alias: &str| {
            let c: Vec<String> = (self.schema.columns.iter())
                .map(|c| format!("{alias}{}", ident(&c.name)))
                .collect();
            format!("TO_JSON_STRING(STRUCT({}))", c.join(", "))
        };
        let any: Vec<String> = (self.schema.columns.iter())
            .map(|c| format!("ANY_VALUE({0}) AS {0}", ident(&c.name)))
            .collect();
        let name = self
            .replica
            .trim_matches('`')
            .rsplit('.')
            .next()
            .unwrap_or("t");
        let temp = format!("_tidewater_multiset_{name}");
        let delta = format!(
            "SELECT _h, {any}, SUM(_d) AS _net FROM (SELECT {h} AS _h, {cols}, \
             IF(_metadata_deleted, -1, 1) AS _d FROM {staging} WHERE {filter}) GROUP BY _h",
            any = any.join(", "),
            h = image(""),
            staging = self.staging,
            filter = self.filter(),
        );
        vec![
            format!(
                "CREATE OR REPLACE TEMP TABLE {temp} AS SELECT d.*, CAST(d._net + \
                 COALESCE(c._n, 0) AS INT64) AS _keep \
                 FROM ({delta}) d LEFT JOIN (SELECT {h} AS _h, COUNT(*) AS _n FROM {replica} t \
                 GROUP BY _h) c ON c._h = d._h WHERE d._net <> 0",
                h = image("t."),
                replica = self.replica,
            ),
            format!(
                "SELECT IF(EXISTS(SELECT 1 FROM {temp} WHERE _keep < 0), ERROR({}), 1)",
                literal(&format!(
                    "tidewater: a row the source deleted or updated is missing from {}: the \
                     replica no longer matches the source",
                    self.replica
                ))
            ),
            format!(
                "DELETE FROM {} t WHERE {} IN (SELECT _h FROM {temp})",
                self.replica,
                image("t.")
            ),
            format!(
                "INSERT INTO {} ({cols}) SELECT {cols} FROM {temp}, \
                 UNNEST(GENERATE_ARRAY(1, _keep)) AS _copy",
                self.replica
            ),
            format!("DROP TABLE {temp}"),
        ]
    }

    /// A keyless table's batch of inserts only: appended.
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
            staging = self.rows(),
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

/// The whole commit script. `definitions`: the statements recording tables' definitions
/// (`definitions::record`), committed with the rows written under them.
pub fn commit_script(tables: &[LogRange], definitions: &[String], state: &StateUpdate) -> String {
    let mut statements = vec!["BEGIN TRANSACTION".to_string(), state.guard()];
    for t in tables {
        statements.extend(t.statements());
    }
    statements.extend_from_slice(definitions);
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
        let log_columns = crate::tables::log_column_names(schema).leak();
        LogRange {
            log_columns,
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
            unchanged: false,
            prune_previous: Some("r.`id` IN (1, 5)".into()),
            multiset: false,
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
        let script = commit_script(&[range(&keyed, Some((6, 2)))], &[], &state);
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
             _metadata_tx <= 9 AND _metadata_timestamp >= TIMESTAMP_MICROS(77) AND \
             _metadata_change_type <> 'BEFORE'"
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
        let mut r = range(&keyless, None);
        r.multiset = true;
        let sql = r.statements();
        assert!(sql[1].starts_with(
            "CREATE OR REPLACE TEMP TABLE _tidewater_multiset_s_t AS SELECT d.*, CAST(d._net + \
             COALESCE(c._n, 0) AS INT64) AS _keep FROM (SELECT _h, ANY_VALUE(`id`) AS `id`, ANY_VALUE(`v`) AS `v`, SUM(_d) \
             AS _net FROM (SELECT TO_JSON_STRING(STRUCT(`id`, `v`)) AS _h"
        ), "{}", sql[1]);
        assert!(
            sql[2].contains("WHERE _keep < 0), ERROR('tidewater: a row"),
            "{}",
            sql[2]
        );
        assert_eq!(
            sql[3],
            "DELETE FROM `p.d.s_t` t WHERE TO_JSON_STRING(STRUCT(t.`id`, t.`v`)) IN (SELECT _h \
             FROM _tidewater_multiset_s_t)"
        );
        assert!(sql[4].ends_with("UNNEST(GENERATE_ARRAY(1, _keep)) AS _copy"));
        let all_key = table(vec![0, 1]);
        let sql = range(&all_key, None).statements().join(";");
        assert!(!sql.contains("UPDATE SET"), "{sql}");
        assert!(sql.contains("ON t.`id` = s._k0 AND t.`v` = s._k1"), "{sql}");
    }

    #[test]
    fn unchanged_values_are_resolved_from_the_previous_image_of_the_key() {
        let keyed = table(vec![0]);
        let mut r = range(&keyed, None);
        r.unchanged = true;
        let statements = r.statements();
        let rows = "(SELECT e.`id` AS `id`, IF('v' IN UNNEST(e._metadata_unchanged), \
                    COALESCE(LAST_VALUE(IF('v' IN UNNEST(e._metadata_unchanged), NULL, \
                    STRUCT(e.`v` AS v)) IGNORE NULLS) OVER (PARTITION BY e.`id` ORDER BY \
                    e._metadata_tx, e._metadata_sequence ROWS BETWEEN UNBOUNDED PRECEDING AND 1 \
                    PRECEDING), STRUCT(r.`v` AS v)).v, e.`v`) AS `v`, e.`_metadata_old_id` AS \
                    `_metadata_old_id`";
        for s in &statements {
            assert!(s.contains(rows), "{s}");
            assert!(
                s.contains(
                    "FROM `p.d.s_t_staging` e LEFT JOIN `p.d.s_t` r ON r.`id` = e.`id` AND \
                     r.`id` IN (1, 5) WHERE _metadata_run = 'r9'"
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(literal(r"it's a\b"), r"'it\'s a\\b'");
    }
}
