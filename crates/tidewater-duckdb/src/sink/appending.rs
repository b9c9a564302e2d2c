//! How a batch's buffered changes leave the sink's memory: appended straight into a
//! replica and its `_log` (`crate::direct`), or into the shared staging tables for the
//! set-based merge (`crate::merge`). Kept apart from the batch mechanics in `sink.rs`.

use std::collections::BTreeMap;

use tidewater_core::apply::change_bytes;
use tidewater_core::stats::now_us;
use tidewater_core::time::format_utc_micros;
use tidewater_core::{Result, TableId};

use super::{copying, DuckDbSink, STAGE_FLUSH_BYTES, STAGE_FLUSH_ROWS};
use crate::direct;
use crate::staged::{self, Pending, Shape};
use crate::table::TableSql;

impl DuckDbSink {
    /// Appends changes straight into a table's replica (and `_log`), past staging.
    pub(super) fn append_direct(&mut self, id: &TableId, pending: &[Pending]) -> Result<()> {
        let t = self.tables.get_mut(id).expect("prepared table");
        let rows: Vec<direct::RowMeta> = pending.iter().map(Pending::meta).collect();
        let now = format_utc_micros(now_us());
        let log = self.options.log_tables;
        let (schema, replica) = (&t.sql.schema, &t.sql.replica);
        direct::append(
            &self.conn,
            &mut self.feed,
            schema,
            replica,
            &rows,
            log,
            &now,
        )?;
        self.counts.appends += 1 + u64::from(log);
        t.changes += pending.len() as u64;
        Ok(())
    }

    /// Appends a table's buffered changes to its staging table with one insert; `merging`
    /// when its merge follows at once (no more of the batch's changes will be staged).
    pub(super) fn append_pending(&mut self, id: &TableId, merging: bool) -> Result<()> {
        match self.take_for_staging(id, merging)? {
            Some(rows) => self.append_to_stage(vec![(id.clone(), rows)]),
            None => Ok(()),
        }
    }

    /// Every table's buffered changes to staging before the batch's merges: one insert per
    /// staging table (tables of one shape share it), not one per table.
    pub(super) fn append_all_pending(&mut self, ids: &[TableId]) -> Result<()> {
        let mut by_stage: BTreeMap<String, Vec<(TableId, Vec<Pending>)>> = BTreeMap::new();
        for id in ids {
            if let Some(rows) = self.take_for_staging(id, true)? {
                let stage = self.tables[id].sql.stage.clone();
                by_stage.entry(stage).or_default().push((id.clone(), rows));
            }
        }
        for tables in by_stage.into_values() {
            self.append_to_stage(tables)?;
        }
        Ok(())
    }

    /// Takes a table's buffered changes: those that can go straight to its replica (and
    /// `_log`) are appended there; the rest, logged, are returned for staging (for a merging
    /// table whose keys repeat, each key's last change only).
    pub(super) fn take_for_staging(
        &mut self,
        id: &TableId,
        merging: bool,
    ) -> Result<Option<Vec<Pending>>> {
        let t = self.tables.get_mut(id).expect("prepared table");
        if t.pending.is_empty() {
            return Ok(None);
        }
        let mut pending = std::mem::take(&mut t.pending);
        if t.fresh_copy && direct::supported(&t.sql.schema) {
            // Chunk rows of keys no streamed change touched: appended, whatever is staged.
            let touched = self.fresh_copies.get(id);
            let (append, rest): (Vec<Pending>, Vec<Pending>) = pending.into_iter().partition(|p| {
                direct::can_append(&p.change) && copying::appends_fresh(touched, &p.change)
            });
            if !append.is_empty() {
                self.append_direct(id, &append)?;
            }
            if rest.is_empty() {
                return Ok(None);
            }
            pending = rest;
        }
        let t = &self.tables[id];
        if t.staged == 0
            && !t.lenient
            && direct::supported(&t.sql.schema)
            && pending.iter().all(|p| direct::can_append(&p.change))
        {
            self.append_direct(id, &pending)?;
            return Ok(None);
        }
        let t = self.tables.get_mut(id).expect("prepared table");
        for p in &pending {
            t.observe(&p.change);
        }
        if t.sql.log_on_stage {
            // Log rows go in now from Arrow columns, not by a statement at the merge.
            let rows: Vec<direct::RowMeta> = pending.iter().map(Pending::meta).collect();
            let now = format_utc_micros(now_us());
            direct::append_log(&self.conn, &mut self.feed, &t.sql.schema, &rows, &now)?;
            self.counts.appends += 1;
        }
        t.changes += pending.len() as u64;
        if merging && t.staged == 0 && t.shape == Shape::RepeatedKeys && !t.sql.logs_from_stage() {
            // Every change of the table is here and logged: the replica needs each key's last.
            pending = staged::last_per_key(pending);
            t.shape = Shape::KeysOnce;
        }
        Ok(Some(pending))
    }

    /// Appends the rows of tables sharing one staging table with one insert.
    pub(super) fn append_to_stage(&mut self, tables: Vec<(TableId, Vec<Pending>)>) -> Result<()> {
        let parts: Vec<(&TableSql, &[Pending])> = tables
            .iter()
            .map(|(id, rows)| (&self.tables[id].sql, rows.as_slice()))
            .collect();
        let stage = format!("temp.main.{}", parts[0].0.stage);
        let what = format!("staging changes of {}", parts[0].0.schema.id);
        let columns = staged::stage_columns(&parts)?;
        columns.insert_into(&mut self.feed, &self.conn, &stage, None, &what)?;
        self.counts.appends += 1;
        for (id, rows) in &tables {
            let t = self.tables.get_mut(id).expect("prepared table");
            t.staged += rows.len();
            t.staged_bytes += rows.iter().map(|p| change_bytes(&p.change)).sum::<usize>();
            if t.staged >= STAGE_FLUSH_ROWS || t.staged_bytes >= STAGE_FLUSH_BYTES {
                self.merge(id)?;
            }
        }
        Ok(())
    }
}
