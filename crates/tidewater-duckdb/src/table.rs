//! Per replicated table: the DDL of its replica, change log and staging relation, and the
//! set-based statements that move staged changes into them.
//!
//! Staging is one temp table (never written to the file) per staging shape: every replicated
//! table with the same number of columns and of key columns shares it, so a batch touching a
//! hundred tables of one shape has one staging table, not a hundred (each temp table holds
//! DuckDB blocks of its own for every column, and is one more relation to append to and
//! clear). Rows hold each change as canonical text: `_t` (the table's index: each statement
//! reads its own table's rows), `_seq` (order in the batch), `_txseq` (order in its source
//! transaction), `_tx` (the sink's ordinal of that transaction), `_op` (`S`napshot,
//! `I`nsert, `U`pdate, `D`elete), `_pos`/`_ts` (position and commit time of its
//! transaction), `_has_old` (an update that changed the key), `c0..cN` (the row; for a delete
//! the old key/image) and `o0..oK` (the old key of a key-changing update).

use std::sync::Arc;

use tidewater_core::{ColumnType, TableId, TableSchema};

use crate::in_place::InPlace;
use crate::sql::{
    cast_from_text, duckdb_type, log_table, old_key_columns, qualified, quote_ident,
    LOG_METADATA_COLUMNS,
};

pub struct TableSql {
    pub schema: Arc<TableSchema>,
    /// The table the rows go to: the replica table, or its copy table while the table is
    /// copied again (`sink/recopy.rs`).
    pub replica: TableId,
    /// Distinguishes this table's rows in its staging table (`_t`).
    pub index: usize,
    /// The staging table of this table's shape (`stage_<columns>_<key columns>`).
    pub stage: String,
    pub create_stage: String,
    pub insert_log: Option<String>,
    /// Log rows are inserted from Arrow columns as changes are staged (a table whose types
    /// text casts to); `insert_log` is then `None`.
    pub log_on_stage: bool,
    /// Keyed tables: delete every key the staged changes touch, then insert the last live
    /// image per key.
    pub delete_touched: Option<String>,
    pub insert_live: String,
    /// Append-only path for staged rows that are all inserts or snapshot rows.
    pub insert_all: String,
    /// Keyed tables whose staged changes touch each key once and change no key: no need to
    /// find the last change per key.
    pub delete_once: Option<String>,
    /// Keyed tables whose staged changes change no key: each key's last image, unless that
    /// was a delete (cheaper than `insert_live`, which must also order the old keys).
    pub insert_last: String,
    pub insert_once: String,
    /// Keyed tables with columns besides the key, whose staged changes are updates of each
    /// key once that change no key: the non-key columns set in place. DuckDB then rewrites
    /// neither the rows nor the key index (2–7× faster than `delete_once` + `insert_once`
    /// from 100 to 50,000 rows, docs/performance.md); a staged key the replica lacks is not
    /// updated, which the caller sees in the count. Strings are set only where they change
    /// (`crate::in_place`).
    pub update_once: Option<InPlace>,
    /// Removes this table's staged rows (a merge in the middle of a batch).
    pub clear_stage: String,
    /// Removes every staged row of the shape (after the batch's merges).
    pub clear_shape: String,
}

impl TableSql {
    pub fn new(schema: Arc<TableSchema>, index: usize, log_tables: bool) -> TableSql {
        let replica = schema.id.clone();
        TableSql::writing_to(schema, index, log_tables, replica)
    }

    /// The statements of a table whose rows go to `target` (its replica or copy table).
    pub fn writing_to(
        schema: Arc<TableSchema>,
        index: usize,
        log_tables: bool,
        target: TableId,
    ) -> TableSql {
        let n = schema.columns.len();
        let stage = format!("stage_{n}_{}", schema.key.len());
        let shared = format!("temp.main.{stage}");
        // This table's rows of the shared staging table, wherever a statement reads staging.
        let stage_q = format!("(SELECT * FROM {shared} WHERE _t = {index})");
        let data_cols: Vec<String> = (0..n).map(|i| format!("c{i} VARCHAR")).collect();
        let old_cols: Vec<String> = (0..schema.key.len())
            .map(|i| format!("o{i} VARCHAR"))
            .collect();
        let create_stage = format!(
            "CREATE TEMP TABLE IF NOT EXISTS {stage} (_t BIGINT, _seq BIGINT, _txseq BIGINT, \
             _tx BIGINT, _op VARCHAR, _pos VARCHAR, _ts VARCHAR, _has_old BOOLEAN{}{})",
            prefixed(&data_cols),
            prefixed(&old_cols)
        );
        let casts: Vec<String> = schema
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| cast_from_text(&format!("s.c{i}"), &c.ty))
            .collect();
        let casts = casts.join(", ");
        let column_names = column_list(&schema);

        let log_on_stage = log_tables && crate::direct::supported(&schema);
        let insert_log = (log_tables && !log_on_stage).then(|| {
            let meta: Vec<&str> = LOG_METADATA_COLUMNS.iter().map(|(n, _)| *n).collect();
            let old_keys = old_key_columns(&schema);
            let old_names: Vec<String> = old_keys.iter().map(|(n, _)| quote_ident(n)).collect();
            let old_casts: Vec<String> = old_keys
                .iter()
                .enumerate()
                .map(|(i, (_, k))| cast_from_text(&format!("s.o{i}"), &schema.columns[*k].ty))
                .collect();
            format!(
                "INSERT INTO {log} ({column_names}{}, {meta}) SELECT {casts}{}, \
                 CASE s._op WHEN 'S' THEN 'SNAPSHOT' WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' \
                 ELSE 'DELETE' END, s._op = 'D', CAST(s._ts AS TIMESTAMPTZ), get_current_timestamp(), \
                 s._pos, s._txseq, s._tx FROM {stage_q} s",
                prefixed(&old_names),
                prefixed(&old_casts),
                log = log_table(&schema.id),
                meta = meta.join(", ")
            )
        });

        let replica = qualified(&target);
        let (delete_touched, insert_live) = if schema.has_key() {
            let events = touched_keys(&schema, &stage_q);
            let key_cols: Vec<String> = (0..schema.key.len()).map(|i| format!("k{i}")).collect();
            let matches: Vec<String> = schema
                .key
                .iter()
                .enumerate()
                .map(|(i, &c)| format!("r.{} = d.k{i}", quote_ident(&schema.columns[c].name)))
                .collect();
            // A single-column key deletes with `IN (subquery)`, which DuckDB plans about twice
            // as fast as the join that composite keys need (both prune by the keys' min/max).
            let delete = if schema.key.len() == 1 {
                let k = quote_ident(&schema.columns[schema.key[0]].name);
                format!("DELETE FROM {replica} WHERE {k} IN (SELECT k0 FROM ({events}))")
            } else {
                format!(
                    "DELETE FROM {replica} r USING (SELECT DISTINCT {keys} FROM ({events})) d WHERE {m}",
                    keys = key_cols.join(", "),
                    m = matches.join(" AND ")
                )
            };
            let insert = format!(
                "INSERT INTO {replica} ({column_names}) SELECT {casts} FROM {stage_q} s JOIN \
                 (SELECT _seq, _live FROM ({events}) QUALIFY row_number() OVER \
                 (PARTITION BY {keys} ORDER BY _seq DESC, _sub DESC) = 1) l USING (_seq) WHERE l._live",
                keys = key_cols.join(", ")
            );
            (Some(delete), insert)
        } else {
            // Keyless: updates and deletes take the row-at-a-time path; staged rows are inserts.
            let insert = format!(
                "INSERT INTO {replica} ({column_names}) SELECT {casts} FROM {stage_q} s WHERE s._op IN ('S', 'I')"
            );
            (None, insert)
        };
        let insert_all =
            format!("INSERT INTO {replica} ({column_names}) SELECT {casts} FROM {stage_q} s");
        let insert_once = format!("{insert_all} WHERE s._op <> 'D'");
        let last_per_key: Vec<String> = schema
            .key
            .iter()
            .map(|&k| cast_from_text(&format!("c{k}"), &schema.columns[k].ty))
            .collect();
        // (Keyless tables stage inserts only: the plain insert is their last image.)
        let insert_last = if schema.has_key() {
            format!(
                "INSERT INTO {replica} ({column_names}) SELECT {casts} FROM (SELECT * FROM {stage_q} \
                 QUALIFY row_number() OVER (PARTITION BY {} ORDER BY _seq DESC) = 1) s WHERE s._op <> 'D'",
                last_per_key.join(", ")
            )
        } else {
            insert_once.clone()
        };
        let delete_once = schema.has_key().then(|| {
            let keys: Vec<String> = schema
                .key
                .iter()
                .map(|&k| quote_ident(&schema.columns[k].name))
                .collect();
            let staged: Vec<String> = schema
                .key
                .iter()
                .map(|&k| cast_from_text(&format!("c{k}"), &schema.columns[k].ty))
                .collect();
            format!(
                "DELETE FROM {replica} WHERE ({}) IN (SELECT ({}) FROM {stage_q})",
                keys.join(", "),
                staged.join(", ")
            )
        });
        let update_once = InPlace::new(&schema, &replica, &stage_q);
        TableSql {
            replica: target,
            index,
            clear_stage: format!("DELETE FROM {shared} WHERE _t = {index}"),
            clear_shape: format!("DELETE FROM {shared}"),
            schema,
            stage,
            create_stage,
            insert_log,
            log_on_stage,
            delete_touched,
            insert_live,
            insert_all,
            delete_once,
            insert_last,
            insert_once,
            update_once,
        }
    }

    /// Whether the `_log` rows are inserted from staging at the merge (tables the direct
    /// path cannot write), so that every staged change must stay in staging until then.
    pub fn logs_from_stage(&self) -> bool {
        self.insert_log.is_some()
    }

    /// The merge statements that join staged keys with the replica, whose plans depend on
    /// its size (`crate::plans`).
    pub fn replica_reads(&self) -> Vec<&str> {
        let deletes = [&self.delete_touched, &self.delete_once]
            .into_iter()
            .flatten();
        let updates = self.update_once.iter().flat_map(InPlace::reads);
        deletes.map(String::as_str).chain(updates).collect()
    }

    fn typed_columns(&self) -> Vec<String> {
        let cols = self.schema.columns.iter();
        cols.map(|c| format!("{} {}", quote_ident(&c.name), duckdb_type(&c.ty)))
            .collect()
    }

    /// The key's columns, quoted and comma-separated (a `PRIMARY KEY` clause's list).
    pub fn key_columns(&self) -> String {
        let s = &self.schema;
        let key: Vec<String> = s
            .key
            .iter()
            .map(|&i| quote_ident(&s.columns[i].name))
            .collect();
        key.join(", ")
    }

    /// With `primary_key`, the replica's key is a DuckDB `PRIMARY KEY`: its ART index lets
    /// the per-batch `DELETE ... WHERE key IN (staged keys)` look keys up (under a millisecond
    /// on a million-row table) and refuses a duplicate key should one ever arrive, but it lives
    /// in memory (~15–30 bytes per replica row) and DuckDB re-checks it for every row an open
    /// transaction rewrites (~75 bytes each until the commit). Without it memory stays flat
    /// whatever the table and transaction size, and that delete scans the key column (~8 ms
    /// per million rows on one thread). Keys stay unique either way: every change deletes the
    /// touched key before inserting its new image, and the key is recorded in
    /// `_tidewater.tables`. By default (`[sink] primary_key_rows`) a replica is created
    /// without it, and it is declared once the replica is large (`crate::primary_keys`).
    pub fn create_replica(&self, primary_key: bool) -> String {
        let s = &self.schema;
        let mut cols = self.typed_columns();
        if primary_key && s.has_key() {
            cols.push(format!("PRIMARY KEY ({})", self.key_columns()));
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            qualified(&self.replica),
            cols.join(", ")
        )
    }

    pub fn create_log(&self) -> String {
        let s = &self.schema;
        let mut cols = self.typed_columns();
        cols.extend(
            old_key_columns(s).into_iter().map(|(name, k)| {
                format!("{} {}", quote_ident(&name), duckdb_type(&s.columns[k].ty))
            }),
        );
        cols.extend(LOG_METADATA_COLUMNS.iter().map(|(n, t)| format!("{n} {t}")));
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            log_table(&s.id),
            cols.join(", ")
        )
    }
}

fn prefixed(cols: &[String]) -> String {
    cols.iter().map(|c| format!(", {c}")).collect()
}

pub fn column_list(schema: &TableSchema) -> String {
    let names: Vec<String> = schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    names.join(", ")
}

/// Every (key, event) the staged changes imply, typed like the replica key:
/// `_sub = 0` removes the old key (deletes, key-changing updates), `_sub = 1` sets a live
/// image for the new key. The last event per key decides its final state.
fn touched_keys(schema: &TableSchema, stage: &str) -> String {
    let key_ty = |i: usize| -> &ColumnType { &schema.columns[schema.key[i]].ty };
    let old: Vec<String> = (0..schema.key.len())
        .map(|i| {
            let c = schema.key[i];
            let expr = format!("CASE WHEN _op = 'D' THEN c{c} ELSE o{i} END");
            format!("{} AS k{i}", cast_from_text(&expr, key_ty(i)))
        })
        .collect();
    let new: Vec<String> = (0..schema.key.len())
        .map(|i| {
            format!(
                "{} AS k{i}",
                cast_from_text(&format!("c{}", schema.key[i]), key_ty(i))
            )
        })
        .collect();
    format!(
        "SELECT {old}, _seq, 0 AS _sub, false AS _live FROM {stage} WHERE _op = 'D' OR _has_old \
         UNION ALL SELECT {new}, _seq, 1 AS _sub, true AS _live FROM {stage} WHERE _op <> 'D'",
        old = old.join(", "),
        new = new.join(", ")
    )
}
