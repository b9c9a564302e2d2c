//! The change model shared by every source and sink.
//!
//! Values travel as text in a canonical form per logical type (see [`ColumnType`]): exact for
//! every type (decimals keep all digits, timestamps all micros), cheap to produce from the
//! sources' own text encodings, and cast by the sink in set-based SQL.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// Logical column type. The canonical text form of each is documented on the variant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ColumnType {
    /// Decimal integer text.
    Int8,
    Int16,
    Int32,
    Int64,
    /// Decimal integer text (MySQL unsigned integers, BIT).
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    /// Plain decimal text, all digits (`-12.3400`).
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// Shortest exact decimal text, or `NaN`, `Infinity`, `-Infinity`.
    Float32,
    Float64,
    /// `true` / `false`.
    Bool,
    /// UTF-8 text.
    Text,
    /// Lower-case hex of the bytes, no prefix.
    Bytes,
    /// `YYYY-MM-DD`.
    Date,
    /// `HH:MM:SS[.ffffff]`.
    Time,
    /// `[-]H+:MM:SS[.ffffff]`: a signed duration (MySQL `TIME`, -838:59:59 to 838:59:59).
    Interval,
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]`.
    Timestamp,
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM]` (the sources emit UTC).
    TimestampTz,
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    Uuid,
    /// JSON text.
    Json,
    /// A JSON array whose elements are the canonical texts of the element type (or null).
    List(Box<ColumnType>),
}

#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TableId {
    pub schema: String,
    pub name: String,
}

impl TableId {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableId {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    /// The type as the source names it (`numeric(12,2)`, `character varying`), for messages.
    pub source_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableSchema {
    pub id: TableId,
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in key order; empty for a keyless table.
    pub key: Vec<usize>,
}

impl TableSchema {
    pub fn has_key(&self) -> bool {
        !self.key.is_empty()
    }
}

/// A column value in canonical text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(Bytes),
    /// The source did not send this value because it did not change (PostgreSQL TOAST):
    /// the sink keeps what the replica holds.
    Unchanged,
}

impl Value {
    pub fn text(s: &str) -> Value {
        Value::Text(Bytes::copy_from_slice(s.as_bytes()))
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            // Sources only build Text from valid UTF-8 (checked where it is decoded).
            Value::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Snapshot,
    Insert,
    Update,
    Delete,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Snapshot => "SNAPSHOT",
            ChangeKind::Insert => "INSERT",
            ChangeKind::Update => "UPDATE",
            ChangeKind::Delete => "DELETE",
        }
    }
}

/// One row change. `row` is the new image (for a delete: the old image, or only its key
/// columns with the rest `Null`). `old_key` is set when an update changed the key.
#[derive(Debug, Clone)]
pub struct Change {
    pub table: Arc<TableSchema>,
    pub kind: ChangeKind,
    pub row: Vec<Value>,
    /// Full old image for keyless tables (REPLICA IDENTITY FULL), or the old key values
    /// (in `table.key` order) when an update changed the primary key.
    pub old: Option<Vec<Value>>,
}

/// A source position, serialised by the source (PostgreSQL: the commit LSN `0/16B3748`).
/// Only the source interprets it; the sink stores it with the data it describes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position(pub String);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
