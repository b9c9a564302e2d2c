//! The pruning predicate of a batch's MERGE: the keys the batch touches, as constants.
//!
//! A MERGE scans the replica to find the rows its source matches. The replica is clustered
//! by its key, but BigQuery prunes clustered blocks (and so bills fewer bytes) only for
//! constant filters on the clustering columns; a join condition alone scans the whole table.
//! So the sink collects, while it streams a batch, the first key column's values of every
//! change (the new key, and the old key of a key-changing update) and adds to the MERGE's
//! `ON` clause `t.<k> IN (<the values>)` for small batches, or `t.<k> BETWEEN <min> AND
//! <max>` for larger ones (integer, string and date keys). The cost of a MERGE then follows
//! the batch's key span, not the table.
//!
//! Why the result is unchanged: every source row `s` of the MERGE carries a key the batch
//! touched, so its first key value `v` was added here and the conjunct holds for every
//! replica row `t` with `t.<k> = v`. Adding it to `ON` therefore changes no pair `(t, s)`
//! that matched on the key, and only drops pairs that could not match: every MATCHED and NOT
//! MATCHED outcome stays the same.
//!
//! Keys of other types (NUMERIC, timestamps, bytes, ...) get the IN list only; a batch with
//! more distinct values than [`IN_LIST_MAX`] of such a key MERGEs without a predicate.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::Value as Json;
use tidewater_core::TableSchema;

use crate::merge::literal;
use crate::tables::ident;
use crate::types::{bq_type, BqField};

/// Distinct values up to which the predicate is an IN list.
pub const IN_LIST_MAX: usize = 200;

/// A key value that orders as BigQuery orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bound {
    Int(i64),
    /// STRING compares by code point (the order of UTF-8 bytes); DATE text (`YYYY-MM-DD`)
    /// compares as the dates do.
    Text(String),
}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Bound::Int(a), Bound::Int(b)) => Some(a.cmp(b)),
            (Bound::Text(a), Bound::Text(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            _ => None,
        }
    }
}

/// The first key column's values a batch touched, in one table.
#[derive(Debug, Clone)]
pub struct KeyBounds {
    column: String,
    field: BqField,
    /// Up to [`IN_LIST_MAX`] distinct values.
    values: BTreeSet<String>,
    /// More distinct values came than `values` holds.
    overflowed: bool,
    /// The least and greatest value, while every value had an order.
    range: Option<(Bound, Bound)>,
    /// A value without an order came: `range` does not cover the batch.
    unordered: bool,
}

impl KeyBounds {
    /// `None` for a keyless table, or a key of an array type.
    pub fn new(schema: &TableSchema) -> Option<KeyBounds> {
        let col = &schema.columns[*schema.key.first()?];
        let t = bq_type(&col.ty);
        if t.repeated {
            return None;
        }
        Some(KeyBounds {
            column: col.name.clone(),
            field: t.field,
            values: BTreeSet::new(),
            overflowed: false,
            range: None,
            unordered: false,
        })
    }

    /// The first key column's name.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// Adds a value as the row carries it to BigQuery (the insertAll JSON); NULL matches no
    /// key and is skipped.
    pub fn add(&mut self, value: &Json) {
        let text = match value {
            Json::Null => return,
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        let bound = match self.field {
            BqField::Int64 => text.parse().ok().map(Bound::Int),
            BqField::String | BqField::Date => Some(Bound::Text(text.clone())),
            _ => None,
        };
        match bound {
            Some(b) => {
                self.range = Some(match self.range.take() {
                    None => (b.clone(), b),
                    Some((lo, hi)) => {
                        let lo = if b < lo { b.clone() } else { lo };
                        let hi = if b > hi { b } else { hi };
                        (lo, hi)
                    }
                });
            }
            None => self.unordered = true,
        }
        if self.values.len() < IN_LIST_MAX || self.values.contains(&text) {
            self.values.insert(text);
        } else {
            self.overflowed = true;
        }
    }

    /// `t.<k> IN (...)` or `t.<k> BETWEEN lo AND hi`; `None` when the batch touched no key
    /// or cannot be bounded.
    pub fn predicate(&self, alias: &str) -> Option<String> {
        if self.values.is_empty() {
            return None;
        }
        let col = format!("{alias}.{}", ident(&self.column));
        if !self.overflowed {
            let list: Vec<String> = self.values.iter().map(|v| self.sql(v)).collect();
            return Some(format!("{col} IN ({})", list.join(", ")));
        }
        if self.unordered {
            return None;
        }
        let (lo, hi) = self.range.as_ref()?;
        Some(format!(
            "{col} BETWEEN {} AND {}",
            self.sql_bound(lo),
            self.sql_bound(hi)
        ))
    }

    fn sql_bound(&self, b: &Bound) -> String {
        match b {
            Bound::Int(i) => i.to_string(),
            Bound::Text(t) => self.sql(t),
        }
    }

    /// A constant of the column's type.
    fn sql(&self, text: &str) -> String {
        match self.field {
            BqField::Int64 => text.to_string(),
            BqField::String => literal(text),
            BqField::Bytes => format!("FROM_BASE64({})", literal(text)),
            BqField::Bool => text.to_ascii_uppercase(),
            other => format!("CAST({} AS {})", literal(text), other.sql_name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tidewater_core::{Column, ColumnType, TableId};

    fn schema(ty: ColumnType) -> TableSchema {
        TableSchema {
            id: TableId::new("s", "t"),
            columns: vec![Column {
                name: "id".into(),
                ty,
                nullable: false,
                source_type: String::new(),
            }],
            key: vec![0],
        }
    }

    #[test]
    fn small_batches_list_their_keys_larger_ones_give_a_range() {
        let mut b = KeyBounds::new(&schema(ColumnType::Int64)).unwrap();
        assert_eq!(b.predicate("t"), None);
        for v in [json!("7"), json!("-3"), json!("7"), Json::Null] {
            b.add(&v);
        }
        assert_eq!(b.predicate("t").unwrap(), "t.`id` IN (-3, 7)");
        for i in 0..1000 {
            b.add(&json!(format!("{}", i * 10)));
        }
        assert_eq!(b.predicate("t").unwrap(), "t.`id` BETWEEN -3 AND 9990");
    }

    #[test]
    fn strings_order_by_code_point_and_unordered_types_overflow_to_none() {
        let mut b = KeyBounds::new(&schema(ColumnType::Text)).unwrap();
        for i in 0..300 {
            b.add(&json!(format!("k{i:03}")));
        }
        b.add(&json!("Z'"));
        assert_eq!(
            b.predicate("t").unwrap(),
            "t.`id` BETWEEN 'Z\\'' AND 'k299'"
        );
        let numeric = ColumnType::Decimal {
            precision: 10,
            scale: 2,
        };
        let mut b = KeyBounds::new(&schema(numeric)).unwrap();
        b.add(&json!("1.50"));
        assert_eq!(
            b.predicate("t").unwrap(),
            "t.`id` IN (CAST('1.50' AS NUMERIC))"
        );
        for i in 0..IN_LIST_MAX {
            b.add(&json!(format!("{i}.25")));
        }
        assert_eq!(b.predicate("t"), None);
    }
}
