//! Schema changes that can change the values of existing rows without a row change in the
//! stream (PostgreSQL's pgoutput and the MySQL/MariaDB row binlog carry row changes, not the
//! rewrite a DDL statement does). Both sources ask this one question of every change of a
//! replicated table's definition; a table whose change is uncarried is re-copied at a
//! consistent point of the stream (or the run stops), never left with NULLs or stale values.
//!
//! The rule, by column (see docs/schema-changes.md for the per-source list):
//! - a column new by name (added, or renamed) is uncarried: existing rows can hold a default,
//!   a volatile default's per-row value, a generated value, or the renamed column's values;
//! - a column whose type changed is uncarried (the source converted every value, possibly
//!   with a `USING` expression), except an exact widening the replica's cast reproduces:
//!   a larger integer of the same signedness, or a decimal with more precision and the same
//!   scale;
//! - where both definitions come from the same catalog (MySQL/MariaDB), so is a column whose
//!   declared type changed within the same logical type (`varchar(20)` made `varchar(5)`
//!   truncates), or that became NOT NULL (without strict mode NULLs turn into zero values);
//! - a dropped column is carried: the replica drops it too, and nothing else changes;
//! - a key moved to other columns, gained or lost is uncarried: the replica is keyed by the
//!   old key (a keyless replica may also have missed the updates of an insert-only table).

use crate::model::{ColumnType, TableId, TableSchema};

/// Why changing `old` into `new` can change existing rows without row events, or `None`:
/// by column names and logical types (PostgreSQL, whose Relation messages carry no declared
/// type names or nullability).
pub fn uncarried_change(old: &TableSchema, new: &TableSchema) -> Option<String> {
    changes(old, new, false)
}

/// `uncarried_change`, also by declared type and nullability: for definitions read from the
/// same catalog both times (MySQL/MariaDB's `information_schema`).
pub fn uncarried_declared_change(old: &TableSchema, new: &TableSchema) -> Option<String> {
    changes(old, new, true)
}

/// The tables of `current` whose definition in the replica (`replica`) they change in a way
/// the stream does not carry, with why (see `SourceContext::replica_schemas`). `declared` as
/// in `uncarried_declared_change`.
pub fn copy_again<'a>(
    replica: &[TableSchema],
    current: impl IntoIterator<Item = &'a TableSchema>,
    declared: bool,
) -> Vec<(TableId, String)> {
    let mut out = Vec::new();
    for t in current {
        let Some(stored) = replica.iter().find(|r| r.id == t.id) else {
            continue;
        };
        if let Some(why) = changes(stored, t, declared) {
            tracing::info!(table = %t.id, change = %why, "the source table changed in a way the stream does not carry since the replica was written: it is copied again");
            out.push((t.id.clone(), why));
        }
    }
    out
}

fn changes(old: &TableSchema, new: &TableSchema, declared: bool) -> Option<String> {
    let mut reasons = Vec::new();
    // A table keyed by other columns, or one that gained or lost its key: the rows its
    // updates and deletes name are found by the new key (or by whole rows), which the replica
    // is not keyed by. A table that was keyless could also have missed changes: PostgreSQL
    // publishes only the inserts of a keyless table without FULL identity. (PostgreSQL also
    // moves such a table between publications, `placement`; both ask for the same re-copy.)
    let key_names = |s: &TableSchema| -> Vec<String> {
        s.key.iter().map(|&k| s.columns[k].name.clone()).collect()
    };
    let (was, is) = (key_names(old), key_names(new));
    if was != is {
        reasons.push(match (was.is_empty(), is.is_empty()) {
            (true, _) => format!("it gained a key ({})", is.join(", ")),
            (_, true) => format!("it lost its key ({})", was.join(", ")),
            _ => format!(
                "its key changed from ({}) to ({})",
                was.join(", "),
                is.join(", ")
            ),
        });
    }
    for c in &new.columns {
        let retyped = || {
            format!(
                "column {} changed type ({} -> {})",
                c.name,
                o_type(old, c),
                c.source_type
            )
        };
        match old.columns.iter().find(|o| o.name == c.name) {
            None => reasons.push(format!("column {} added", c.name)),
            Some(o) if o.ty != c.ty && !exact_widening(&o.ty, &c.ty) => reasons.push(retyped()),
            // Same logical type, other declared type (MySQL `varchar(20)` -> `varchar(5)`
            // truncates): the source may have converted values.
            Some(o) if declared && o.ty == c.ty && o.source_type != c.source_type => {
                reasons.push(retyped())
            }
            // MySQL without strict mode turns NULLs into the type's zero value.
            Some(o) if declared && o.nullable && !c.nullable => {
                reasons.push(format!("column {} became NOT NULL", c.name))
            }
            Some(_) => {}
        }
    }
    (!reasons.is_empty()).then(|| reasons.join(", "))
}

fn o_type<'a>(old: &'a TableSchema, c: &crate::model::Column) -> &'a str {
    old.columns
        .iter()
        .find(|o| o.name == c.name)
        .map_or("", |o| o.source_type.as_str())
}

/// Every value of `from` converts to the same value of `to` (the replica's cast is exact).
fn exact_widening(from: &ColumnType, to: &ColumnType) -> bool {
    use ColumnType::*;
    let rank = |t: &ColumnType| match t {
        Int8 => Some((true, 1)),
        Int16 => Some((true, 2)),
        Int32 => Some((true, 4)),
        Int64 => Some((true, 8)),
        UInt8 => Some((false, 1)),
        UInt16 => Some((false, 2)),
        UInt32 => Some((false, 4)),
        UInt64 => Some((false, 8)),
        _ => None,
    };
    match (from, to) {
        (
            Decimal {
                precision: p1,
                scale: s1,
            },
            Decimal {
                precision: p2,
                scale: s2,
            },
        ) => s1 == s2 && p2 >= p1,
        _ => match (rank(from), rank(to)) {
            (Some((signed1, w1)), Some((signed2, w2))) => signed1 == signed2 && w2 >= w1,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Column;

    fn table(cols: &[(&str, ColumnType)]) -> TableSchema {
        TableSchema {
            id: TableId::new("s", "t"),
            columns: cols
                .iter()
                .map(|(n, ty)| Column {
                    name: n.to_string(),
                    ty: ty.clone(),
                    nullable: true,
                    source_type: format!("{ty:?}"),
                })
                .collect(),
            key: vec![0],
        }
    }

    #[test]
    fn added_renamed_and_retyped_columns_are_uncarried() {
        use ColumnType::*;
        let old = table(&[("id", Int32), ("a", Text), ("n", Int32)]);
        assert_eq!(uncarried_change(&old, &old), None);
        // Dropped: carried.
        assert_eq!(
            uncarried_change(&old, &table(&[("id", Int32), ("n", Int32)])),
            None
        );
        // Widened integer: carried.
        assert_eq!(
            uncarried_change(&old, &table(&[("id", Int64), ("a", Text), ("n", Int64)])),
            None
        );
        let added = table(&[("id", Int32), ("a", Text), ("n", Int32), ("tier", Text)]);
        assert_eq!(
            uncarried_change(&old, &added).as_deref(),
            Some("column tier added")
        );
        let renamed = table(&[("id", Int32), ("b", Text), ("n", Int32)]);
        assert_eq!(
            uncarried_change(&old, &renamed).as_deref(),
            Some("column b added")
        );
        let retyped = table(&[("id", Int32), ("a", Text), ("n", Text)]);
        assert!(uncarried_change(&old, &retyped).is_some());
        let narrowed = table(&[("id", Int16), ("a", Text), ("n", Int32)]);
        assert!(uncarried_change(&old, &narrowed).is_some());
        let unsigned = table(&[("id", UInt64), ("a", Text), ("n", Int32)]);
        assert!(uncarried_change(&old, &unsigned).is_some());
        let mut shorter = old.clone();
        shorter.columns[1].source_type = "varchar(5)".into();
        assert!(uncarried_declared_change(&old, &shorter).is_some());
        assert_eq!(uncarried_change(&old, &shorter), None);
        let mut not_null = old.clone();
        not_null.columns[2].nullable = false;
        assert_eq!(uncarried_change(&old, &not_null), None);
        assert_eq!(
            uncarried_declared_change(&old, &not_null).as_deref(),
            Some("column n became NOT NULL")
        );
        // Keyed by other columns, a key gained or lost: all uncarried.
        let mut rekeyed = old.clone();
        rekeyed.key = vec![2];
        assert_eq!(
            uncarried_change(&old, &rekeyed).as_deref(),
            Some("its key changed from (id) to (n)")
        );
        let mut keyless = old.clone();
        keyless.key.clear();
        assert_eq!(
            uncarried_change(&old, &keyless).as_deref(),
            Some("it lost its key (id)")
        );
        assert_eq!(
            uncarried_change(&keyless, &old).as_deref(),
            Some("it gained a key (id)")
        );
        let d = |precision, scale| Decimal { precision, scale };
        assert!(exact_widening(&d(10, 2), &d(12, 2)));
        assert!(!exact_widening(&d(10, 2), &d(10, 1)));
    }
}
