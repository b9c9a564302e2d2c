//! Updates set in place without writing back a string a row already holds.
//!
//! A batch whose staged changes are updates of each key once, none changing a key, sets the
//! replica's non-key columns in place (`UPDATE … FROM staging`): DuckDB rewrites neither the
//! rows nor the key index (docs/performance.md, "Updates in place"). But a source sends the
//! whole new row, so most updates write most columns back unchanged, and DuckDB 1.5.6 keeps
//! such a write of a string longer than 12 bytes (VARCHAR, BLOB: stored outside the value)
//! in memory for good when no update changed a value of that column: a `CHECKPOINT` writes the
//! column's data to the file and keeps the update's strings (`duckdb_memory()` tag
//! `ALLOCATOR`), freed only when a later update changes a value there, or the database is
//! opened again. Measured with DuckDB alone (docs/performance.md, "Strings written back by
//! updates in place"): 200,000 updates that rewrite a 32-byte string with its own value keep
//! ~8 MiB per round; 2 KiB strings, 1.1 GiB after 600,000 updates, under checkpoints of 16MB
//! or 128MB alike. The same updates that change the string, or that write only fixed-width
//! columns, keep nothing after a checkpoint. pgbench's tables (`filler char(84)`) and the
//! suite's 2 KiB rows are such updates: a replica that streams updates grew without bound.
//!
//! So a table's variable-width columns (text, JSON, bytes, decimals wider than DuckDB's) are
//! set only where they change: one read of the replica joined with the staged rows counts the
//! staged keys the replica holds and tells which of those columns any staged row changes
//! ([`InPlace::check`]); the fixed-width columns are set as before ([`InPlace::set_fixed`]);
//! and each variable-width column that changes anywhere is set in the rows where it differs
//! ([`InPlace::set_changed`]). A batch whose staged strings all fit in DuckDB's 12 inline
//! bytes (`long_strings`: writing such a string back keeps nothing) sets every column with one
//! `UPDATE` ([`InPlace::set_all`]) instead, as before: the extra read cost the narrow drain
//! ~8 %. Lists are set with the fixed-width columns: DuckDB's list
//! comparison calls `-0.0` and `0.0` equal, so skipping an "equal" list could keep the wrong
//! one.
//!
//! Exactness. Every statement joins the replica with this table's staged rows on the key, and
//! staged keys are unique here. When the replica holds exactly one row per staged key (the
//! count is checked first; any other count means a replica that already differs, and the
//! caller then deletes and inserts every staged key instead, as before), the fixed-width
//! columns of each such row are set to the staged image, and each variable-width column is
//! either set to the staged value or already `IS NOT DISTINCT FROM` it. That comparison is
//! made with the very expression the column would be set to, so "not distinct" means the
//! value the update would write is the one the row holds: for VARCHAR and BLOB under DuckDB's
//! default binary collation (which the sink never changes, and which its key matches rely on
//! as well), byte for byte, NULL only with NULL. So each staged key's row ends equal to its
//! staged image, as with one `UPDATE` of every column.

use tidewater_core::{ColumnType, TableSchema, Value};

use crate::sql::{cast_from_text, quote_ident};

/// DuckDB keeps a string of up to this many bytes inside its fixed-width value: writing one
/// back keeps nothing (measured: 12-byte strings, no growth).
const INLINE_BYTES: usize = 12;

/// The statements that set a table's staged updates in place.
pub(crate) struct InPlace {
    /// `UPDATE` of every non-key column: for a batch whose staged strings all fit DuckDB's
    /// inline size ([`long_strings`] false), one statement instead of two.
    pub set_all: String,
    /// `SELECT count(*), bool_or(<column differs>)…` over the replica joined with the staged
    /// rows, one flag per [`set_changed`](Self::set_changed) statement; `None` when every
    /// non-key column is set by `set_fixed` (whose count is then the check).
    pub check: Option<String>,
    /// `UPDATE` of the columns always set; `None` when there are none.
    pub set_fixed: Option<String>,
    /// Per variable-width column: `UPDATE` of that column in the rows where it differs.
    pub set_changed: Vec<String>,
}

/// Whether DuckDB stores the column's values outside the fixed-width part of its rows (and a
/// write of an unchanged value is kept in memory: the module's doc).
fn variable_width(ty: &ColumnType) -> bool {
    match ty {
        ColumnType::Text | ColumnType::Json | ColumnType::Bytes => true,
        ColumnType::Decimal { precision, .. } => *precision > 38,
        _ => false,
    }
}

impl InPlace {
    /// For the replica `replica` (qualified) of `schema`, whose staged rows `stage_q` selects;
    /// `None` for a keyless table or one whose columns are all key columns.
    pub fn new(schema: &TableSchema, replica: &str, stage_q: &str) -> Option<InPlace> {
        if !schema.has_key() || schema.key.len() == schema.columns.len() {
            return None;
        }
        let staged = |i: usize| cast_from_text(&format!("s.c{i}"), &schema.columns[i].ty);
        let name = |i: usize| quote_ident(&schema.columns[i].name);
        let matches: Vec<String> = schema
            .key
            .iter()
            .map(|&k| format!("r.{} = {}", name(k), staged(k)))
            .collect();
        let matches = matches.join(" AND ");
        let (changing, fixed): (Vec<usize>, Vec<usize>) = (0..schema.columns.len())
            .filter(|i| !schema.key.contains(i))
            .partition(|&i| variable_width(&schema.columns[i].ty));
        let differs = |i: usize| format!("r.{} IS DISTINCT FROM {}", name(i), staged(i));
        let set = |cols: &[usize], only_changed: bool| {
            let sets: Vec<String> = cols
                .iter()
                .map(|&i| format!("{} = {}", name(i), staged(i)))
                .collect();
            let mut sql = format!(
                "UPDATE {replica} AS r SET {} FROM {stage_q} s WHERE {matches}",
                sets.join(", ")
            );
            if only_changed {
                sql.push_str(&format!(" AND {}", differs(cols[0])));
            }
            sql
        };
        let check = (!changing.is_empty()).then(|| {
            let flags: Vec<String> = changing
                .iter()
                .map(|&i| format!(", coalesce(bool_or({}), false)", differs(i)))
                .collect();
            format!(
                "SELECT count(*){} FROM {replica} AS r JOIN {stage_q} s ON {matches}",
                flags.concat()
            )
        });
        let all: Vec<usize> = fixed.iter().chain(&changing).copied().collect();
        Some(InPlace {
            set_all: set(&all, false),
            check,
            set_fixed: (!fixed.is_empty()).then(|| set(&fixed, false)),
            set_changed: changing.iter().map(|&i| set(&[i], true)).collect(),
        })
    }

    /// The statements that read the replica (all of them: `crate::plans`).
    pub fn reads(&self) -> impl Iterator<Item = &str> {
        let (check, fixed) = (self.check.iter(), self.set_fixed.iter());
        std::iter::once(&self.set_all)
            .chain(check)
            .chain(fixed)
            .chain(self.set_changed.iter())
            .map(String::as_str)
    }
}

/// Whether `row` (a new image of a table of `schema`) holds a variable-width value DuckDB
/// stores apart from the row (longer than [`INLINE_BYTES`]; JSON always, as DuckDB's cast may
/// rewrite its text). The canonical text of a value is at least as long as what DuckDB
/// stores (bytes travel as hex), so a short text is a short value.
pub(crate) fn long_strings(schema: &TableSchema, row: &[Value]) -> bool {
    let mut values = schema.columns.iter().zip(row);
    values.any(|(c, v)| long_string(&c.ty, v))
}

/// Whether `value`, of a column of type `ty`, is a long string in [`long_strings`]' sense.
pub(crate) fn long_string(ty: &ColumnType, value: &Value) -> bool {
    match value {
        Value::Text(text) if variable_width(ty) => {
            *ty == ColumnType::Json || text.len() > INLINE_BYTES
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{Column, TableId};

    fn schema(types: &[ColumnType]) -> TableSchema {
        TableSchema {
            id: TableId::new("s", "t"),
            columns: types
                .iter()
                .enumerate()
                .map(|(i, ty)| Column {
                    name: format!("c{i}"),
                    ty: ty.clone(),
                    nullable: true,
                    source_type: String::new(),
                })
                .collect(),
            key: vec![0],
        }
    }

    #[test]
    fn strings_are_set_where_they_differ_and_the_rest_always() {
        use ColumnType::*;
        let s = schema(&[
            Int64,
            Int32,
            Text,
            Bytes,
            Decimal {
                precision: 50,
                scale: 2,
            },
            List(Box::new(Float64)),
        ]);
        let p = InPlace::new(&s, "r_t", "st").unwrap();
        let check = p.check.unwrap();
        assert_eq!(check.matches("bool_or(").count(), 3, "{check}");
        let fixed = p.set_fixed.unwrap();
        assert!(
            fixed.contains("\"c1\" = ") && fixed.contains("\"c5\" = "),
            "{fixed}"
        );
        assert!(
            !fixed.contains("\"c2\" = ") && !fixed.contains("DISTINCT"),
            "{fixed}"
        );
        assert_eq!(p.set_changed.len(), 3);
        assert!(p.set_changed[1].contains("SET \"c3\" = unhex(s.c3)"));
        assert!(p.set_changed[1].ends_with("AND r.\"c3\" IS DISTINCT FROM unhex(s.c3)"));
    }

    #[test]
    fn only_fixed_width_columns_need_no_check_and_only_strings_no_fixed_update() {
        use ColumnType::*;
        let fixed = InPlace::new(&schema(&[Int64, Int32, TimestampTz]), "r", "st").unwrap();
        assert!(fixed.check.is_none() && fixed.set_changed.is_empty());
        assert!(fixed.set_fixed.is_some());
        let strings = InPlace::new(&schema(&[Int64, Text]), "r", "st").unwrap();
        assert!(strings.check.is_some() && strings.set_fixed.is_none());
        assert_eq!(strings.reads().count(), 3);
        assert!(InPlace::new(&schema(&[Int64]), "r", "st").is_none());
    }

    #[test]
    fn strings_past_twelve_bytes_and_any_json_are_long() {
        use ColumnType::*;
        let s = schema(&[Int64, Text, Bytes, Json]);
        let row = |text: &str, bytes: &str, json: Option<&str>| {
            let json = json.map_or(Value::Null, Value::text);
            vec![
                Value::text("1234567890123"),
                Value::text(text),
                Value::text(bytes),
                json,
            ]
        };
        assert!(!long_strings(&s, &row("twelve bytes", "00ff", None)));
        assert!(long_strings(&s, &row("thirteen byte", "00ff", None)));
        assert!(long_strings(&s, &row("", "00112233445566", None)));
        assert!(long_strings(&s, &row("", "", Some("1"))));
        let mut unchanged = row("x", "", None);
        unchanged[1] = Value::Unchanged;
        assert!(!long_strings(&s, &unchanged));
    }
}
