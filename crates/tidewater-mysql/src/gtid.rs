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

/// A MySQL GTID set (`@@gtid_executed` form): inclusive intervals per source uuid and tag.
///
/// **Tags.** MySQL 8.3+ names transactions `uuid:tag:n` as well as `uuid:n` (`SET gtid_next =
/// 'AUTOMATIC:tag'`), written `uuid:1-5:tag:1-3` in a set. A tagged GTID is a transaction of
/// its own, numbered apart: `uuid:tag:5` and `uuid:5` are different transactions. So the tag is
/// part of the key (the empty tag for untagged GTIDs): a set that dropped it would claim a
/// transaction it never saw, which a resumed binlog dump then skips (lost), and miss the one
/// it did see, which the dump sends again (applied twice). Tags are case-insensitive and kept
/// in lower case, as MySQL shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MySqlGtidSet(BTreeMap<(String, String), Vec<(u64, u64)>>);

impl MySqlGtidSet {
    pub fn parse(s: &str) -> Result<MySqlGtidSet, String> {
        let mut map: BTreeMap<(String, String), Vec<(u64, u64)>> = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split(':');
            let uuid = it.next().unwrap_or_default().to_ascii_lowercase();
            if uuid.len() != 36 {
                return Err(format!("bad MySQL GTID set member `{part}`"));
            }
            let mut tag = String::new();
            let mut tag_has_interval = true;
            for item in it {
                if !item.starts_with(|c: char| c.is_ascii_digit()) {
                    if !tag_has_interval {
                        return Err(format!("GTID tag `{tag}` without an interval in `{part}`"));
                    }
                    tag = item.to_ascii_lowercase();
                    if !is_gtid_tag(&tag) {
                        return Err(format!("bad GTID interval or tag `{item}` in `{part}`"));
                    }
                    tag_has_interval = false;
                    continue;
                }
                let (a, b) = item.split_once('-').unwrap_or((item, item));
                let (a, b) = a
                    .parse()
                    .ok()
                    .zip(b.parse().ok())
                    .filter(|&(a, b)| a <= b)
                    .ok_or_else(|| format!("bad GTID interval `{item}` in `{part}`"))?;
                map.entry((uuid.clone(), tag.clone()))
                    .or_default()
                    .push((a, b));
                tag_has_interval = true;
            }
            if !tag_has_interval {
                return Err(format!("GTID tag `{tag}` without an interval in `{part}`"));
            }
        }
        for ranges in map.values_mut() {
            ranges.sort_unstable();
            ranges.dedup_by(|next, kept| {
                let joins = next.0 <= kept.1.saturating_add(1);
                if joins {
                    kept.1 = kept.1.max(next.1);
                }
                joins
            });
        }
        Ok(MySqlGtidSet(map))
    }

    /// Adds transaction `gno` of source `uuid` under `tag` (empty for an untagged GTID),
    /// merging adjacent intervals.
    pub fn add(&mut self, uuid: &str, tag: &str, gno: u64) {
        let key = (uuid.to_ascii_lowercase(), tag.to_ascii_lowercase());
        let ranges = self.0.entry(key).or_default();
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
        other.0.iter().all(|(key, ranges)| {
            let mine = self.0.get(key).map(Vec::as_slice).unwrap_or_default();
            ranges
                .iter()
                .all(|&(a, b)| mine.iter().any(|&(x, y)| x <= a && b <= y))
        })
    }

    /// `uuid:a-b:c-d` and `uuid:tag:a-b` members (one per uuid and tag), for building a
    /// `COM_BINLOG_DUMP_GTID` request.
    pub fn members(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|((uuid, tag), ranges)| {
            let mut s = uuid.clone();
            if !tag.is_empty() {
                s.push(':');
                s.push_str(tag);
            }
            for (a, b) in ranges {
                s.push_str(&format!(":{a}-{b}"));
            }
            s
        })
    }
}

/// MySQL's tag syntax: a lower-case letter or `_`, then up to 31 lower-case letters, digits
/// or `_`.
fn is_gtid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    tag.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl fmt::Display for MySqlGtidSet {
    /// MySQL's form: members by uuid, each uuid's untagged intervals first (the empty tag
    /// sorts first), then each tag with its intervals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last_uuid: Option<&str> = None;
        for ((uuid, tag), ranges) in &self.0 {
            if last_uuid != Some(uuid.as_str()) {
                if last_uuid.is_some() {
                    f.write_str(",")?;
                }
                f.write_str(uuid)?;
                last_uuid = Some(uuid);
            }
            if !tag.is_empty() {
                write!(f, ":{tag}")?;
            }
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
        s.add(u, "", 6); // bridges the gap
        assert_eq!(s.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7");
        s.add(u, "", 9);
        s.add(u, "", 8);
        s.add(u, "", 3); // already there
        assert_eq!(s.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9");
        let v = "00000000-0000-0000-0000-000000000001";
        s.add(v, "", 1);
        assert_eq!(
            s.members().collect::<Vec<_>>(),
            vec![
                "00000000-0000-0000-0000-000000000001:1-1".to_string(),
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9".to_string()
            ]
        );
        let mut t = MySqlGtidSet::default();
        t.add(v, "", 5);
        t.add(v, "", 3);
        t.add(v, "", 4);
        assert_eq!(t.to_string(), format!("{v}:3-5"));
        assert!(MySqlGtidSet::parse("nope:1").is_err());
        assert!(MySqlGtidSet::parse(&format!("{u}:a-b")).is_err());
        assert!(MySqlGtidSet::parse("").unwrap().0.is_empty());
    }

    #[test]
    fn mysql_tagged_gtids_are_transactions_of_their_own() {
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let v = "00000000-0000-0000-0000-000000000001";
        let mut s =
            MySqlGtidSet::parse(&format!("{u}:1-5:Tag_1:1-3:x:7,\n{v}:t:2, {u}:6")).unwrap();
        assert_eq!(s.to_string(), format!("{v}:t:2,{u}:1-6:tag_1:1-3:x:7"));
        assert_eq!(MySqlGtidSet::parse(&s.to_string()).unwrap(), s);
        s.add(u, "tag_1", 4);
        s.add(u, "", 8);
        assert_eq!(s.to_string(), format!("{v}:t:2,{u}:1-6:8:tag_1:1-4:x:7"));

        let untagged = MySqlGtidSet::parse(&format!("{u}:1-100")).unwrap();
        let tagged = MySqlGtidSet::parse(&format!("{u}:x:7")).unwrap();
        assert!(!untagged.includes(&tagged), "uuid:7 is not uuid:x:7");
        assert!(!tagged.includes(&untagged));
        assert!(s.includes(&tagged));

        // The dump request's members parse as tagged sids (mysql_common then sends the tagged
        // wire format), one per uuid and tag.
        let members: Vec<_> = s.members().collect();
        assert_eq!(
            members,
            vec![
                format!("{v}:t:2-2"),
                format!("{u}:1-6:8-8"),
                format!("{u}:tag_1:1-4"),
                format!("{u}:x:7-7"),
            ]
        );
        let sid: mysql_common::packets::Sid<'static> = members[2].parse().unwrap();
        assert_eq!(sid.tag().map(|t| t.as_str()), Some("tag_1"));
        assert_eq!(sid.to_string(), format!("{u}:tag_1:1-4"));

        for bad in [
            format!("{u}:x"),
            format!("{u}:x:y:1"),
            format!("{u}:1-5:9x:1"),
            format!("{u}:t-1:1"),
            format!("{u}:5-3"),
            format!("{u}:{}:1", "a".repeat(33)),
        ] {
            assert!(MySqlGtidSet::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uuid_formatting() {
        let mut sid = [0u8; 16];
        sid[15] = 1;
        sid[0] = 0xab;
        assert_eq!(uuid_text(sid), "ab000000-0000-0000-0000-000000000001");
    }
}
