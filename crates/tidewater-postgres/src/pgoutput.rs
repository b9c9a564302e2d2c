//! Decoder for the logical replication stream: the CopyData wrappers of the streaming
//! replication protocol ('w' XLogData, 'k' primary keepalive) and the pgoutput (protocol
//! version 1, text-format values) messages carried inside XLogData.
//!
//! The decoder is on the hot path, so column values are zero-copy slices of the received
//! `Bytes`; only names (relation, type, origin, message prefix) are copied into `String`s.
//! Malformed input never panics: every read is bounds-checked and reported as a
//! [`DecodeError`] naming the field that could not be read.

use bytes::Bytes;

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 00:00:00 UTC).
/// Public because standby status updates sent back to the server use PostgreSQL's epoch.
pub const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// A CopyData payload received on the replication connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// WAL data; `data` holds one pgoutput message (see [`decode`]).
    XLogData {
        wal_start: u64,
        wal_end: u64,
        send_time_us: i64,
        data: Bytes,
    },
    /// Primary keepalive; `reply_requested` asks for an immediate standby status update.
    Keepalive {
        wal_end: u64,
        send_time_us: i64,
        reply_requested: bool,
    },
}

/// One pgoutput logical replication message. Times are µs since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgOutputMessage {
    Begin {
        final_lsn: u64,
        commit_time_us: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: u64,
        end_lsn: u64,
        commit_time_us: i64,
    },
    Origin {
        lsn: u64,
        name: String,
    },
    Relation(Relation),
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Tuple,
    },
    /// `old` is present only when the replica identity (key or full row) changed or is FULL.
    Update {
        relation: u32,
        old: Option<OldTuple>,
        new: Tuple,
    },
    Delete {
        relation: u32,
        old: OldTuple,
    },
    /// `options`: bit 1 = CASCADE, bit 2 = RESTART IDENTITY.
    Truncate {
        options: u8,
        relations: Vec<u32>,
    },
    /// A `pg_logical_emit_message` message.
    Message {
        transactional: bool,
        lsn: u64,
        prefix: String,
        content: Bytes,
    },
}

/// Relation (table) description; sent before the first change of a relation in a session
/// and again whenever its definition changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    /// Empty for `pg_catalog`.
    pub namespace: String,
    pub name: String,
    /// `relreplident`: b'd' default, b'n' nothing, b'f' full, b'i' index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// 1 = part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

impl RelationColumn {
    /// Whether the column is part of the replica identity key.
    pub fn is_key(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// Column values of one row, in relation column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple(pub Vec<TupleValue>);

/// The old row of an Update/Delete: only the key columns ('K') or the whole row ('O').
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    Key(Tuple),
    Full(Tuple),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    Null,
    /// Unchanged TOASTed value: the actual value was not sent.
    Unchanged,
    Text(Bytes),
    Binary(Bytes),
}

/// A malformed replication message. `field` names what was being read, e.g. `"Begin.xid"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated message: {field} needs {needed} byte(s), only {remaining} left")]
    Truncated {
        field: &'static str,
        needed: usize,
        remaining: usize,
    },
    #[error("empty message")]
    Empty,
    #[error("unknown {field} tag {tag:#04x} ({:?})", char::from(*tag))]
    UnknownTag { field: &'static str, tag: u8 },
    #[error("string {field} is not NUL-terminated")]
    UnterminatedString { field: &'static str },
    #[error("string {field} is not valid UTF-8: {source}")]
    InvalidUtf8 {
        field: &'static str,
        source: std::str::Utf8Error,
    },
    #[error("negative {field}: {value}")]
    NegativeLength { field: &'static str, value: i64 },
    #[error("{count} unexpected trailing byte(s) after {message} message")]
    TrailingBytes { message: &'static str, count: usize },
}

/// Decodes a CopyData payload of the replication connection ('w' or 'k').
pub fn decode_copy_data(payload: Bytes) -> Result<ReplicationMessage, DecodeError> {
    let mut r = Reader {
        buf: &payload,
        pos: 0,
    };
    // Struct fields are evaluated in source order, i.e. in wire order.
    match r.tag()? {
        b'w' => Ok(ReplicationMessage::XLogData {
            wal_start: r.int("XLogData.wal_start")?,
            wal_end: r.int("XLogData.wal_end")?,
            send_time_us: r.time("XLogData.send_time")?,
            data: r.bytes(r.remaining(), "XLogData.data")?,
        }),
        b'k' => {
            let msg = ReplicationMessage::Keepalive {
                wal_end: r.int("Keepalive.wal_end")?,
                send_time_us: r.time("Keepalive.send_time")?,
                reply_requested: r.int::<u8>("Keepalive.reply_requested")? != 0,
            };
            r.finish("Keepalive")?;
            Ok(msg)
        }
        tag => Err(DecodeError::UnknownTag {
            field: "CopyData",
            tag,
        }),
    }
}

/// Decodes one pgoutput message (the `data` of an XLogData).
///
/// Trailing bytes are an error: with protocol version 1 every message has a fixed layout, so
/// leftovers mean a protocol mismatch (e.g. streaming-mode xids), not something to skip.
pub fn decode(data: Bytes) -> Result<PgOutputMessage, DecodeError> {
    use PgOutputMessage as M;
    let mut r = Reader { buf: &data, pos: 0 };
    // Struct fields are evaluated in source order, i.e. in wire order.
    let (name, msg) = match r.tag()? {
        b'B' => (
            "Begin",
            M::Begin {
                final_lsn: r.int("Begin.final_lsn")?,
                commit_time_us: r.time("Begin.commit_time")?,
                xid: r.int("Begin.xid")?,
            },
        ),
        b'C' => (
            "Commit",
            M::Commit {
                flags: r.int("Commit.flags")?,
                commit_lsn: r.int("Commit.commit_lsn")?,
                end_lsn: r.int("Commit.end_lsn")?,
                commit_time_us: r.time("Commit.commit_time")?,
            },
        ),
        b'O' => (
            "Origin",
            M::Origin {
                lsn: r.int("Origin.lsn")?,
                name: r.cstr("Origin.name")?,
            },
        ),
        b'R' => ("Relation", M::Relation(decode_relation(&mut r)?)),
        b'Y' => (
            "Type",
            M::Type {
                oid: r.int("Type.oid")?,
                namespace: r.cstr("Type.namespace")?,
                name: r.cstr("Type.name")?,
            },
        ),
        b'I' => (
            "Insert",
            M::Insert {
                relation: r.int("Insert.relation")?,
                new: r.new_tuple("Insert.tuple_kind")?,
            },
        ),
        b'U' => (
            "Update",
            M::Update {
                relation: r.int("Update.relation")?,
                // The old tuple ('K' key columns or 'O' full row) is optional.
                old: match r.peek() {
                    Some(b'K' | b'O') => Some(r.old_tuple("Update.tuple_kind")?),
                    _ => None,
                },
                new: r.new_tuple("Update.tuple_kind")?,
            },
        ),
        b'D' => (
            "Delete",
            M::Delete {
                relation: r.int("Delete.relation")?,
                old: r.old_tuple("Delete.tuple_kind")?,
            },
        ),
        b'T' => ("Truncate", decode_truncate(&mut r)?),
        b'M' => (
            "Message",
            M::Message {
                transactional: r.int::<u8>("Message.flags")? & 1 != 0,
                lsn: r.int("Message.lsn")?,
                prefix: r.cstr("Message.prefix")?,
                content: {
                    let len = r.count::<i32>("Message.content_length")?;
                    r.bytes(len, "Message.content")?
                },
            },
        ),
        tag => {
            return Err(DecodeError::UnknownTag {
                field: "pgoutput message",
                tag,
            })
        }
    };
    r.finish(name)?;
    Ok(msg)
}

fn decode_relation(r: &mut Reader) -> Result<Relation, DecodeError> {
    let oid = r.int("Relation.oid")?;
    let namespace = r.cstr("Relation.namespace")?;
    let name = r.cstr("Relation.name")?;
    let replica_identity = r.int("Relation.replica_identity")?;
    let ncols = r.count::<i16>("Relation.column_count")?;
    // Each column takes at least 10 bytes; bound the allocation by what can be present.
    let mut columns = Vec::with_capacity(ncols.min(r.remaining() / 10));
    for _ in 0..ncols {
        columns.push(RelationColumn {
            flags: r.int("Relation.column.flags")?,
            name: r.cstr("Relation.column.name")?,
            type_oid: r.int("Relation.column.type_oid")?,
            type_modifier: r.int("Relation.column.type_modifier")?,
        });
    }
    Ok(Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn decode_truncate(r: &mut Reader) -> Result<PgOutputMessage, DecodeError> {
    let count = r.count::<i32>("Truncate.relation_count")?;
    let options = r.int("Truncate.options")?;
    // Bound the allocation by the bytes present so a bogus count cannot exhaust memory.
    let mut relations = Vec::with_capacity(count.min(r.remaining() / 4));
    for _ in 0..count {
        relations.push(r.int("Truncate.relation")?);
    }
    Ok(PgOutputMessage::Truncate { options, relations })
}

/// Fixed-size big-endian integers as they appear on the wire.
trait BeInt: Sized {
    const SIZE: usize;
    /// `b` is exactly `SIZE` bytes long.
    fn from_be(b: &[u8]) -> Self;
    /// Test encoder counterpart of `from_be`.
    #[cfg(test)]
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! be_int {
    ($($t:ty),*) => {$(
        impl BeInt for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn from_be(b: &[u8]) -> Self {
                let mut a = [0; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                <$t>::from_be_bytes(a)
            }
            #[cfg(test)]
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes())
            }
        }
    )*};
}
be_int!(u8, i16, i32, u32, i64, u64);

/// Bounds-checked big-endian cursor over a `Bytes` buffer.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads the leading message tag; an empty message gets its own error.
    fn tag(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(DecodeError::Empty);
        }
        self.int("tag")
    }

    /// Advances past the next `n` bytes, returning their start offset.
    fn advance(&mut self, n: usize, field: &'static str) -> Result<usize, DecodeError> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(DecodeError::Truncated {
                field,
                needed: n,
                remaining,
            });
        }
        self.pos += n;
        Ok(self.pos - n)
    }

    fn int<T: BeInt>(&mut self, field: &'static str) -> Result<T, DecodeError> {
        let start = self.advance(T::SIZE, field)?;
        Ok(T::from_be(&self.buf[start..self.pos]))
    }

    /// Timestamp, converted from PostgreSQL's epoch to the Unix epoch. Saturating, so
    /// `infinity` timestamps and garbage cannot overflow.
    fn time(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(self.int::<i64>(field)?.saturating_add(PG_EPOCH_OFFSET_US))
    }

    /// Signed count or length that must not be negative.
    fn count<T: BeInt + Into<i64>>(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let value: i64 = self.int::<T>(field)?.into();
        usize::try_from(value).map_err(|_| DecodeError::NegativeLength { field, value })
    }

    /// Zero-copy slice of the next `n` bytes.
    fn bytes(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        let start = self.advance(n, field)?;
        Ok(self.buf.slice(start..self.pos))
    }

    /// NUL-terminated UTF-8 string.
    fn cstr(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let rest = &self.buf[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::UnterminatedString { field })?;
        let s = std::str::from_utf8(&rest[..len])
            .map_err(|source| DecodeError::InvalidUtf8 { field, source })?
            .to_owned();
        self.pos += len + 1;
        Ok(s)
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Old tuple: a 'K' (key columns) or 'O' (full row) kind byte, then TupleData.
    fn old_tuple(&mut self, field: &'static str) -> Result<OldTuple, DecodeError> {
        match self.int(field)? {
            b'K' => Ok(OldTuple::Key(self.tuple()?)),
            b'O' => Ok(OldTuple::Full(self.tuple()?)),
            tag => Err(DecodeError::UnknownTag { field, tag }),
        }
    }

    /// New tuple: an 'N' kind byte, then TupleData.
    fn new_tuple(&mut self, field: &'static str) -> Result<Tuple, DecodeError> {
        match self.int(field)? {
            b'N' => self.tuple(),
            tag => Err(DecodeError::UnknownTag { field, tag }),
        }
    }

    /// TupleData: Int16 column count, then per column a kind byte and, for 't'/'b', an
    /// Int32 length and the value.
    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let ncols = self.count::<i16>("TupleData.column_count")?;
        // Each column takes at least one byte; bound the allocation accordingly.
        let mut values = Vec::with_capacity(ncols.min(self.remaining()));
        for _ in 0..ncols {
            let kind = self.int("TupleData.column_kind")?;
            let value = match kind {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::Unchanged,
                b't' | b'b' => {
                    let len = self.count::<i32>("TupleData.value_length")?;
                    let value = self.bytes(len, "TupleData.value")?;
                    if kind == b't' {
                        TupleValue::Text(value)
                    } else {
                        TupleValue::Binary(value)
                    }
                }
                tag => {
                    return Err(DecodeError::UnknownTag {
                        field: "TupleData.column_kind",
                        tag,
                    })
                }
            };
            values.push(value);
        }
        Ok(Tuple(values))
    }

    fn finish(&self, message: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { message, count }),
        }
    }
}

#[cfg(test)]
mod tests;
