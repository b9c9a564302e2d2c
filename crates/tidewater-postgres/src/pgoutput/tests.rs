//! Decoder tests, with a test-only encoder mirroring the wire format.

use super::*;

/// Test-only encoder mirroring the wire format.
struct Enc(Vec<u8>);

impl Enc {
    fn tag(t: u8) -> Self {
        Enc(vec![t])
    }
    fn p(mut self, v: impl BeInt) -> Self {
        v.put(&mut self.0);
        self
    }
    fn raw(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
    fn cstr(self, s: &str) -> Self {
        self.raw(s.as_bytes()).p(0u8)
    }
    /// Encodes `kind` followed by the TupleData of `t`.
    fn tuple(self, kind: u8, t: &Tuple) -> Self {
        t.0.iter()
            .fold(self.p(kind).p(t.0.len() as i16), |e, v| match v {
                TupleValue::Null => e.p(b'n'),
                TupleValue::Unchanged => e.p(b'u'),
                TupleValue::Text(b) => e.p(b't').p(b.len() as i32).raw(b),
                TupleValue::Binary(b) => e.p(b'b').p(b.len() as i32).raw(b),
            })
    }
    fn old(self, old: &OldTuple) -> Self {
        match old {
            OldTuple::Key(t) => self.tuple(b'K', t),
            OldTuple::Full(t) => self.tuple(b'O', t),
        }
    }
    fn bytes(self) -> Bytes {
        Bytes::from(self.0)
    }
}

fn text(s: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

/// A tuple with every kind of value: n, u, t, b and an empty text.
fn mixed_tuple() -> Tuple {
    let binary = TupleValue::Binary(Bytes::from_static(&[0, 1, 2, 0xff]));
    Tuple(vec![
        TupleValue::Null,
        TupleValue::Unchanged,
        text("héllo"),
        binary,
        text(""),
    ])
}

/// PG timestamp 1 s after 2000-01-01 and its Unix-epoch equivalent.
const PG_TS: i64 = 1_000_000;
const UNIX_TS: i64 = 946_684_801_000_000;

fn column(flags: u8, name: &str, type_oid: u32, type_modifier: i32) -> RelationColumn {
    RelationColumn {
        flags,
        name: name.into(),
        type_oid,
        type_modifier,
    }
}

/// Every valid pgoutput message exercised by the tests, with its expected decoding.
fn valid_messages() -> Vec<(Bytes, PgOutputMessage)> {
    use PgOutputMessage as M;
    let columns = vec![column(1, "id", 23, -1), column(0, "name", 1043, 68)];
    let (namespace, name) = ("public".into(), "users".into());
    let rel = Relation {
        oid: 16384,
        namespace,
        name,
        replica_identity: b'd',
        columns,
    };
    let rel_bytes = rel.columns.iter().fold(
        Enc::tag(b'R')
            .p(16384u32)
            .cstr("public")
            .cstr("users")
            .p(b'd')
            .p(2i16),
        |e, c| e.p(c.flags).cstr(&c.name).p(c.type_oid).p(c.type_modifier),
    );
    let (key, full, new) = (
        Tuple(vec![text("1")]),
        Tuple(vec![text("1"), text("old")]),
        mixed_tuple(),
    );
    let update = |old: Option<OldTuple>| {
        let e = Enc::tag(b'U').p(7u32);
        let e = match &old {
            Some(o) => e.old(o),
            None => e,
        };
        (
            e.tuple(b'N', &new).bytes(),
            M::Update {
                relation: 7,
                old,
                new: new.clone(),
            },
        )
    };
    let delete = |old: OldTuple| {
        (
            Enc::tag(b'D').p(7u32).old(&old).bytes(),
            M::Delete { relation: 7, old },
        )
    };
    let content = Bytes::from_static(b"a\0b");
    vec![
        (
            Enc::tag(b'B')
                .p(0x16_B374_D848u64)
                .p(PG_TS)
                .p(42u32)
                .bytes(),
            M::Begin {
                final_lsn: 0x16_B374_D848,
                commit_time_us: UNIX_TS,
                xid: 42,
            },
        ),
        (
            Enc::tag(b'C').p(0u8).p(100u64).p(200u64).p(PG_TS).bytes(),
            M::Commit {
                flags: 0,
                commit_lsn: 100,
                end_lsn: 200,
                commit_time_us: UNIX_TS,
            },
        ),
        (
            Enc::tag(b'O').p(55u64).cstr("node_a").bytes(),
            M::Origin {
                lsn: 55,
                name: "node_a".into(),
            },
        ),
        (rel_bytes.bytes(), M::Relation(rel)),
        (
            Enc::tag(b'Y')
                .p(9000u32)
                .cstr("public")
                .cstr("mood")
                .bytes(),
            M::Type {
                oid: 9000,
                namespace: "public".into(),
                name: "mood".into(),
            },
        ),
        (
            Enc::tag(b'I').p(7u32).tuple(b'N', &new).bytes(),
            M::Insert {
                relation: 7,
                new: new.clone(),
            },
        ),
        update(None),
        update(Some(OldTuple::Key(key.clone()))),
        update(Some(OldTuple::Full(full.clone()))),
        delete(OldTuple::Key(key)),
        delete(OldTuple::Full(full)),
        (
            Enc::tag(b'T')
                .p(3i32)
                .p(3u8)
                .p(10u32)
                .p(11u32)
                .p(12u32)
                .bytes(),
            M::Truncate {
                options: 3,
                relations: vec![10, 11, 12],
            },
        ),
        (
            Enc::tag(b'M')
                .p(1u8)
                .p(77u64)
                .cstr("app")
                .p(3i32)
                .raw(&content)
                .bytes(),
            M::Message {
                transactional: true,
                lsn: 77,
                prefix: "app".into(),
                content,
            },
        ),
    ]
}

#[test]
fn decodes_every_message_type() {
    use PgOutputMessage as M;
    for (bytes, expected) in valid_messages() {
        let msg = decode(bytes.clone()).unwrap();
        // Values must be zero-copy slices of the input.
        let values = match &msg {
            M::Insert { new, .. } | M::Update { new, .. } => &new.0[..],
            _ => &[],
        };
        for v in values {
            if let TupleValue::Text(b) | TupleValue::Binary(b) = v {
                let copied = !b.is_empty() && !bytes.as_ptr_range().contains(&b.as_ptr());
                assert!(!copied, "{v:?} was copied");
            }
        }
        assert_eq!(msg, expected);
    }
    let M::Relation(rel) = &valid_messages()[3].1 else {
        panic!()
    };
    let keys: Vec<bool> = rel.columns.iter().map(RelationColumn::is_key).collect();
    assert_eq!(keys, [true, false]);
}

#[test]
fn truncated_prefixes_are_errors() {
    for (bytes, _) in valid_messages() {
        for len in 0..bytes.len() {
            assert!(
                decode(bytes.slice(..len)).is_err(),
                "prefix {len} of {bytes:?} decoded"
            );
        }
    }
}

#[test]
fn malformed_inputs_are_errors() {
    let tuple = |kind: u8| Enc::tag(b'I').p(1u32).p(b'N').p(1i16).p(kind);
    let cases = [
        (Bytes::new(), "empty message"),
        (
            Enc::tag(b'Z').bytes(),
            "unknown pgoutput message tag 0x5a ('Z')",
        ),
        (
            Enc::tag(b'B').p(1u64).bytes(),
            "Begin.commit_time needs 8 byte(s), only 0 left",
        ),
        (
            Enc::tag(b'O').p(1u64).raw(b"abc").bytes(),
            "Origin.name is not NUL-terminated",
        ),
        (
            Enc::tag(b'O').p(1u64).raw(&[0xff, 0]).bytes(),
            "Origin.name is not valid UTF-8",
        ),
        (
            Enc::tag(b'T').p(-1i32).p(0u8).bytes(),
            "negative Truncate.relation_count: -1",
        ),
        // A huge count with no data must fail cleanly, not try to allocate.
        (
            Enc::tag(b'T').p(i32::MAX).p(0u8).bytes(),
            "truncated message: Truncate.relation",
        ),
        (
            tuple(b't').p(-5i32).bytes(),
            "negative TupleData.value_length: -5",
        ),
        (
            tuple(b'x').bytes(),
            "unknown TupleData.column_kind tag 0x78",
        ),
        (
            Enc::tag(b'I').p(1u32).p(b'K').bytes(),
            "unknown Insert.tuple_kind tag 0x4b ('K')",
        ),
        (
            Enc::tag(b'U').p(1u32).p(b'K').p(0i16).p(b'K').bytes(),
            "Update.tuple_kind tag 0x4b",
        ),
        (
            Enc::tag(b'D').p(1u32).p(b'N').bytes(),
            "unknown Delete.tuple_kind tag 0x4e",
        ),
        (
            Enc::tag(b'R')
                .p(1u32)
                .cstr("")
                .cstr("t")
                .p(b'd')
                .p(-1i16)
                .bytes(),
            "negative Relation.column_count",
        ),
        (
            Enc::tag(b'B').p(1u64).p(1i64).p(1u32).p(0u8).bytes(),
            "1 unexpected trailing byte(s) after Begin message",
        ),
    ];
    for (bytes, expected) in cases {
        let err = decode(bytes.clone()).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{bytes:?} gave {err:?}, expected {expected:?}"
        );
    }
    let err = decode_copy_data(Enc::tag(b'r').bytes()).unwrap_err();
    assert_eq!(err.to_string(), "unknown CopyData tag 0x72 ('r')");
    assert!(decode_copy_data(Bytes::new()).is_err());
    let trailing = Enc::tag(b'k').p(1u64).p(0i64).p(0u8).p(0u8).bytes();
    assert!(matches!(
        decode_copy_data(trailing),
        Err(DecodeError::TrailingBytes { .. })
    ));
}

#[test]
fn garbage_never_panics() {
    // Deterministic xorshift bytes: small values, and a valid tag to get past the header.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as usize
    };
    for _ in 0..20_000 {
        let mut v: Vec<u8> = (0..next() % 40).map(|_| (next() % 8) as u8).collect();
        if let Some(first) = v.first_mut() {
            *first = b"BCORYIUDTMwk"[next() % 12];
        }
        let _ = decode(Bytes::from(v.clone()));
        let _ = decode_copy_data(Bytes::from(v));
    }
}

#[test]
fn decodes_copy_data_wrappers() {
    use ReplicationMessage::{Keepalive, XLogData};
    let inner = Enc::tag(b'B').p(5u64).p(PG_TS).p(9u32).bytes();
    let payload = Enc::tag(b'w')
        .p(0x1000u64)
        .p(0x2000u64)
        .p(PG_TS)
        .raw(&inner)
        .bytes();
    let XLogData {
        wal_start,
        wal_end,
        send_time_us,
        data,
    } = decode_copy_data(payload.clone()).unwrap()
    else {
        panic!("not XLogData")
    };
    assert_eq!(
        (wal_start, wal_end, send_time_us),
        (0x1000, 0x2000, UNIX_TS)
    );
    assert_eq!(
        data.as_ptr(),
        payload[25..].as_ptr(),
        "data must be a slice of the payload"
    );
    let begin = PgOutputMessage::Begin {
        final_lsn: 5,
        commit_time_us: UNIX_TS,
        xid: 9,
    };
    assert_eq!(decode(data).unwrap(), begin);
    // An empty XLogData body is legal at this layer.
    let empty = decode_copy_data(Enc::tag(b'w').p(1u64).p(2u64).p(0i64).bytes());
    assert!(matches!(empty, Ok(XLogData { data, .. }) if data.is_empty()));

    let keepalive = Enc::tag(b'k').p(0x3000u64).p(PG_TS).p(1u8).bytes();
    let expected = Keepalive {
        wal_end: 0x3000,
        send_time_us: UNIX_TS,
        reply_requested: true,
    };
    assert_eq!(decode_copy_data(keepalive.clone()).unwrap(), expected);
    // Timestamps saturate instead of overflowing (e.g. 'infinity').
    let no_reply = Enc::tag(b'k').p(1u64).p(i64::MAX).p(0u8).bytes();
    let expected = Keepalive {
        wal_end: 1,
        send_time_us: i64::MAX,
        reply_requested: false,
    };
    assert_eq!(decode_copy_data(no_reply).unwrap(), expected);

    // Truncation: the XLogData body is "the rest", so only its 25-byte header can be cut.
    for len in 0..25 {
        assert!(decode_copy_data(payload.slice(..len)).is_err());
    }
    for len in 0..keepalive.len() {
        assert!(decode_copy_data(keepalive.slice(..len)).is_err());
    }
}
