//! What one table holds in the open batch before and after its changes reach staging: the
//! buffered changes (`Pending`, appended in bulk), how many rows it staged, and the
//! [`Shape`] of those rows, which decides the cheapest set-based statements that apply them
//! exactly (`DuckDbSink::merge_rows`). Kept apart from the sink so the bookkeeping and the
//! rule that narrows the shape change by change can be read on their own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tidewater_core::{Change, ChangeKind, Error, Result, TableId, Value};

use crate::columns::Columns;
use crate::direct;
use crate::table::TableSql;

/// A change waiting to be appended to staging, with its place in the batch.
pub(crate) struct Pending {
    pub seq: i64,
    pub txseq: i64,
    pub tx: i64,
    pub position: Arc<str>,
    pub commit_ts: Arc<str>,
    pub change: Change,
}

impl Pending {
    pub fn meta(&self) -> direct::RowMeta<'_> {
        direct::RowMeta {
            change: &self.change,
            position: &self.position,
            commit_ts: &self.commit_ts,
            txseq: self.txseq,
            tx: self.tx,
        }
    }
}

/// What the staged changes of a table need, from cheapest to most general apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Shape {
    /// Inserts and snapshot rows only: appended as they are.
    InsertsOnly,
    /// Each key touched once, no key changed: delete the touched keys, insert the new rows.
    KeysOnce,
    /// Keys touched more than once, none changed: delete the touched keys, insert each key's
    /// last image unless it was deleted.
    RepeatedKeys,
    /// Key changes (or full old images): the last event per key, old keys included, decides.
    Mixed,
}

pub(crate) struct TableState {
    pub sql: TableSql,
    pub pending: Vec<Pending>,
    pub staged: usize,
    pub staged_bytes: usize,
    pub shape: Shape,
    /// Keys of the staged streamed changes, while the shape is not yet `Mixed`.
    pub keys: HashSet<Vec<u8>>,
    pub has_snapshot_rows: bool,
    /// Every staged change is an update that keeps its key (`TableSql::update_once` may
    /// apply them).
    pub only_updates: bool,
    /// A staged update holds a string DuckDB stores apart from its row
    /// (`crate::in_place::long_strings`): set strings only where they change.
    pub long_strings: bool,
    pub changes: u64,
    /// A keyed table whose chunked copy is not consistent yet (`tidewater_core::copy`):
    /// every staged change is applied as an upsert or a delete (snapshot rows and inserts
    /// replace the row of their key), and an update of a missing row is not an error.
    pub lenient: bool,
    /// A lenient table whose copy began on an empty replica table in this process
    /// (`DuckDbSink::fresh_copies`, which also holds the keys its streamed changes touched
    /// since). Its replica rows then come from the copy's earlier chunks or have a touched
    /// key. A chunk holds the keys after the last one copied (`tidewater_core::copy`: keyset
    /// order at the source, so chunks never share a key), so a chunk row whose key no
    /// streamed change touched has no replica row yet: it is appended like an insert instead
    /// of replacing the row of its key, also while other rows of the table are staged (theirs
    /// all have touched keys: no row is both appended and staged). Chunk rows of touched keys,
    /// and streamed changes, are staged and applied as upserts. Too many touched keys end this
    /// (`MAX_TOUCHED`), and so does the copy turning consistent.
    pub fresh_copy: bool,
}

impl TableState {
    pub fn new(sql: TableSql) -> TableState {
        TableState {
            sql,
            pending: Vec::new(),
            staged: 0,
            staged_bytes: 0,
            shape: Shape::InsertsOnly,
            keys: HashSet::new(),
            has_snapshot_rows: false,
            only_updates: true,
            long_strings: false,
            changes: 0,
            lenient: false,
            fresh_copy: false,
        }
    }

    pub fn reset_staging(&mut self) {
        self.staged = 0;
        self.staged_bytes = 0;
        self.shape = Shape::InsertsOnly;
        self.keys.clear();
        self.has_snapshot_rows = false;
        self.only_updates = true;
        self.long_strings = false;
    }

    /// Narrows down how the staged changes must be applied, as each one is staged.
    pub fn observe(&mut self, change: &Change) {
        self.only_updates &= change.kind == ChangeKind::Update && change.old.is_none();
        if self.only_updates && !self.long_strings {
            self.long_strings = crate::in_place::long_strings(&change.table, &change.row);
        }
        if self.lenient {
            // Upserts: delete each touched key, insert its last image.
            self.shape = self.shape.max(Shape::RepeatedKeys);
        }
        let kind_shape = match (change.kind, &change.old) {
            (ChangeKind::Snapshot, _) => {
                self.has_snapshot_rows = true;
                Shape::InsertsOnly
            }
            (ChangeKind::Insert, _) => Shape::InsertsOnly,
            (ChangeKind::Update | ChangeKind::Delete, Some(_)) => Shape::Mixed,
            (ChangeKind::Update | ChangeKind::Delete, None) => Shape::KeysOnce,
        };
        self.shape = self.shape.max(kind_shape);
        if self.shape == Shape::KeysOnce && self.has_snapshot_rows {
            self.shape = Shape::RepeatedKeys;
        }
        if self.shape >= Shape::RepeatedKeys
            || change.kind == ChangeKind::Snapshot
            || !change.table.has_key()
        {
            return;
        }
        let key = key_bytes(change.table.key.iter().map(|&k| &change.row[k]));
        if !self.keys.insert(key) {
            self.shape = Shape::RepeatedKeys;
            self.keys.clear();
        }
    }
}

/// Staged changes of tables sharing one staging table (`TableSql::create_stage`: the same
/// number of columns and of key columns) as its columns, table after table.
pub(crate) fn stage_columns(parts: &[(&TableSql, &[Pending])]) -> Result<Columns> {
    let rows = || {
        parts
            .iter()
            .flat_map(|(sql, p)| p.iter().map(move |p| (*sql, p)))
    };
    let (columns_n, keys_n) = parts.first().map_or((0, 0), |(sql, _)| {
        (sql.schema.columns.len(), sql.schema.key.len())
    });
    let mut columns = Columns::with_rows(rows().count());
    columns.ints(rows().map(|(sql, _)| sql.index as i64));
    columns.ints(rows().map(|(_, p)| p.seq));
    columns.ints(rows().map(|(_, p)| p.txseq));
    columns.ints(rows().map(|(_, p)| p.tx));
    columns.text(rows().map(|(_, p)| Ok(Some(op_code(p.change.kind)))))?;
    columns.text(rows().map(|(_, p)| Ok(Some(&*p.position))))?;
    columns.text(rows().map(|(_, p)| Ok(Some(&*p.commit_ts))))?;
    columns.bools(rows().map(|(_, p)| p.change.old.is_some()));
    for i in 0..columns_n {
        columns.text(rows().map(|(sql, p)| text_value(p.change.row.get(i), &sql.schema.id)))?;
    }
    for k in 0..keys_n {
        columns.text(rows().map(|(sql, p)| match &p.change.old {
            Some(old) => text_value(old.get(k), &sql.schema.id),
            None => Ok(None),
        }))?;
    }
    Ok(columns)
}

/// The last change of each key, in their order: what a batch of a keyed table whose changes
/// change no key (no old key image) leaves in the replica. Deleting every touched key and
/// inserting the kept rows that are not deletes then gives the same replica as applying all
/// of them in order, without the window that finds each key's last change in SQL
/// (`TableSql::insert_last`, about twice the cost of the plain insert for a batch of a
/// hundred rows).
pub(crate) fn last_per_key(pending: Vec<Pending>) -> Vec<Pending> {
    let mut last: HashMap<Vec<u8>, usize> = HashMap::with_capacity(pending.len());
    for (i, p) in pending.iter().enumerate() {
        let c = &p.change;
        last.insert(key_bytes(c.table.key.iter().map(|&k| &c.row[k])), i);
    }
    let keep: HashSet<usize> = last.into_values().collect();
    pending
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| keep.contains(&i).then_some(p))
        .collect()
}

/// A key's values as bytes that are equal exactly when the values' texts are (each
/// length-prefixed); a value without text counts as the empty text.
pub(crate) fn key_bytes<'a>(values: impl Iterator<Item = &'a Value>) -> Vec<u8> {
    let mut key = Vec::new();
    for v in values {
        let v = v.as_str().unwrap_or("");
        key.extend_from_slice(&(v.len() as u32).to_le_bytes());
        key.extend_from_slice(v.as_bytes());
    }
    key
}

/// A change kind's code in staging's `_op` column.
pub(crate) fn op_code(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Snapshot => "S",
        ChangeKind::Insert => "I",
        ChangeKind::Update => "U",
        ChangeKind::Delete => "D",
    }
}

/// A staged value's text; `None` (a row shorter than its table) is an internal error.
pub(crate) fn text_value<'a>(value: Option<&'a Value>, table: &TableId) -> Result<Option<&'a str>> {
    match value {
        Some(Value::Null) => Ok(None),
        Some(v @ Value::Text(_)) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| Error::source_fatal(format!("a value of {table} is not valid UTF-8"))),
        Some(Value::Unchanged) => Err(Error::sink(format!(
            "internal: unchanged value for {table} reached the staging path"
        ))),
        None => Err(Error::sink(format!(
            "internal: a change of {table} has fewer values than the table has columns"
        ))),
    }
}
