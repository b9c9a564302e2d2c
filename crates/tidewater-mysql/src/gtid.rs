//! GTIDs: MariaDB's `domain-server-seq` state and MySQL's `uuid:interval` sets, plus the two
//! MariaDB binlog events mysql_common does not decode (GTID 162 and GTID_LIST 163).

use std::collections::BTreeMap;
use std::fmt;

/// MariaDB `GTID_EVENT`.
pub const MARIADB_GTID_EVENT: u8 = 162;
/// MariaDB `GTID_LIST_EVENT` (start of each binlog file: the state before it).
pub const MARIADB_GTID_LIST_EVENT: u8 = 163;
/// MariaDB `ANNOTATE_ROWS_EVENT` (the statement text before row events).
pub const MARIADB_ANNOTATE_ROWS_EVENT: u8 = 160;
/// The GTID event flag of a transaction without BEGIN/COMMIT (DDL).
const FL_STANDALONE: u8 = 1;

/// One MariaDB GTID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariaGtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

/// A decoded MariaDB GTID event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariaGtidEvent {
    pub gtid: MariaGtid,
    /// A DDL or other statement logged without BEGIN/COMMIT: the transaction is that one
    /// query event.
    pub standalone: bool,
}

/// Decodes the body (after the 19-byte header, without checksum) of a MariaDB GTID event.
/// `server` is the header's server id.
pub fn parse_mariadb_gtid_event(body: &[u8], server: u32) -> Option<MariaGtidEvent> {
    let seq = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?);
    let flags = *body.get(12)?;
    Some(MariaGtidEvent {
        gtid: MariaGtid {
            domain,
            server,
            seq,
        },
        standalone: flags & FL_STANDALONE != 0,
    })
}

/// MariaDB GTID state: the last GTID per replication domain (`@@gtid_binlog_pos` form).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariaState(BTreeMap<u32, (u32, u64)>);

impl MariaState {
    pub fn parse(s: &str) -> Result<MariaState, String> {
        let mut map = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.splitn(3, '-');
            let parsed = (|| {
                let d = it.next()?.parse().ok()?;
                let srv = it.next()?.parse().ok()?;
                let seq = it.next()?.parse().ok()?;
                Some((d, srv, seq))
            })();
            let (d, srv, seq) = parsed.ok_or_else(|| format!("bad MariaDB GTID `{part}`"))?;
            map.insert(d, (srv, seq));
        }
        Ok(MariaState(map))
    }

    pub fn apply(&mut self, g: MariaGtid) {
        self.0.insert(g.domain, (g.server, g.seq));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether this state is at or past `other` in every replication domain of `other`.
    pub fn includes(&self, other: &MariaState) -> bool {
        other
            .0
            .iter()
            .all(|(d, (_, seq))| self.0.get(d).is_some_and(|(_, s)| s >= seq))
    }
}

impl fmt::Display for MariaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (d, (srv, seq))) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}-{srv}-{seq}")?;
        }
        Ok(())
    }
}

/// A MySQL GTID set (`@@gtid_executed` form): per source uuid, inclusive intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MySqlGtidSet(BTreeMap<String, Vec<(u64, u64)>>);

impl MySqlGtidSet {
    pub fn parse(s: &str) -> Result<MySqlGtidSet, String> {
        let mut map: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split(':');
            let uuid = it.next().unwrap_or_default().to_ascii_lowercase();
            if uuid.len() != 36 {
                return Err(format!("bad MySQL GTID set member `{part}`"));
            }
            let ranges = map.entry(uuid).or_default();
            for iv in it {
                let (a, b) = iv.split_once('-').unwrap_or((iv, iv));
                let (a, b) = a
                    .parse()
                    .ok()
                    .zip(b.parse().ok())
                    .ok_or_else(|| format!("bad GTID interval `{iv}` in `{part}`"))?;
                ranges.push((a, b));
            }
            ranges.sort_unstable();
        }
        Ok(MySqlGtidSet(map))
    }

    /// Adds transaction `gno` of source `uuid`, merging adjacent intervals.
    pub fn add(&mut self, uuid: &str, gno: u64) {
        let ranges = self.0.entry(uuid.to_ascii_lowercase()).or_default();
        let i = ranges.partition_point(|&(_, end)| end.saturating_add(1) < gno);
        match ranges.get_mut(i) {
            Some(r) if r.0 <= gno && gno <= r.1 => {}
            Some(r) if r.1 + 1 == gno => {
                r.1 = gno;
                if let Some(&(next_start, next_end)) = ranges.get(i + 1) {
                    if next_start == gno + 1 {
                        ranges[i].1 = next_end;
                        ranges.remove(i + 1);
                    }
                }
            }
            Some(r) if gno + 1 == r.0 => r.0 = gno,
            _ => ranges.insert(i, (gno, gno)),
        }
    }

    /// Whether every transaction of `other` is in this set.
    pub fn includes(&self, other: &MySqlGtidSet) -> bool {
        other.0.iter().all(|(uuid, ranges)| {
            let mine = self.0.get(uuid).map(Vec::as_slice).unwrap_or_default();
            ranges
                .iter()
                .all(|&(a, b)| mine.iter().any(|&(x, y)| x <= a && b <= y))
        })
    }

    /// `uuid:a-b:c-d` members, for building a `COM_BINLOG_DUMP_GTID` request.
    pub fn members(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|(uuid, ranges)| {
            let mut s = uuid.clone();
            for (a, b) in ranges {
                s.push_str(&format!(":{a}-{b}"));
            }
            s
        })
    }
}

impl fmt::Display for MySqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (uuid, ranges)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(uuid)?;
            for &(a, b) in ranges {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

/// Lower-case hyphenated form of a 16-byte source uuid.
pub fn uuid_text(sid: [u8; 16]) -> String {
    let h: String = sid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_gtid_event_body() {
        // seq 42, domain 3, flags FL_STANDALONE|FL_TRANSACTIONAL... then padding.
        let mut body = 42u64.to_le_bytes().to_vec();
        body.extend_from_slice(&3u32.to_le_bytes());
        body.push(0x01);
        body.extend_from_slice(&[0; 6]);
        let ev = parse_mariadb_gtid_event(&body, 7).unwrap();
        assert_eq!(
            ev.gtid,
            MariaGtid {
                domain: 3,
                server: 7,
                seq: 42
            }
        );
        assert!(ev.standalone);
        assert!(parse_mariadb_gtid_event(&body[..10], 7).is_none());
    }

    #[test]
    fn mariadb_state_round_trip_and_apply() {
        let mut s = MariaState::parse("1-2-30, 0-1-17").unwrap();
        assert_eq!(s.to_string(), "0-1-17,1-2-30");
        s.apply(MariaGtid {
            domain: 0,
            server: 5,
            seq: 18,
        });
        s.apply(MariaGtid {
            domain: 4,
            server: 1,
            seq: 1,
        });
        assert_eq!(s.to_string(), "0-5-18,1-2-30,4-1-1");
        assert!(MariaState::parse("").unwrap().is_empty());
        assert!(MariaState::parse("0-1").is_err());
        assert!(MariaState::parse("x-1-2").is_err());
    }

    #[test]
    fn mysql_gtid_set_parse_add_format() {
        let u = "3E11FA47-71CA-11E1-9E33-C80AA9429562";
        let mut s = MySqlGtidSet::parse(&format!("{u}:1-5:7")).unwrap();
        assert_eq!(s.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7");
        s.add(u, 6); // bridges the gap
        assert_eq!(s.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7");
        s.add(u, 9);
        s.add(u, 8);
        s.add(u, 3); // already there
        assert_eq!(s.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9");
        let v = "00000000-0000-0000-0000-000000000001";
        s.add(v, 1);
        assert_eq!(
            s.members().collect::<Vec<_>>(),
            vec![
                "00000000-0000-0000-0000-000000000001:1-1".to_string(),
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9".to_string()
            ]
        );
        let mut t = MySqlGtidSet::default();
        t.add(v, 5);
        t.add(v, 3);
        t.add(v, 4);
        assert_eq!(t.to_string(), format!("{v}:3-5"));
        assert!(MySqlGtidSet::parse("nope:1").is_err());
        assert!(MySqlGtidSet::parse(&format!("{u}:a-b")).is_err());
        assert!(MySqlGtidSet::parse("").unwrap().0.is_empty());
    }

    #[test]
    fn uuid_formatting() {
        let mut sid = [0u8; 16];
        sid[15] = 1;
        sid[0] = 0xab;
        assert_eq!(uuid_text(sid), "ab000000-0000-0000-0000-000000000001");
    }
}
