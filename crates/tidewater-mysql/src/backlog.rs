//! The binlog's end for the backlog signal ([`tidewater_core::backlog`]): a binlog dump
//! sends no end position, so a connection of its own asks the server for the file and offset
//! it has written up to (MariaDB and MySQL before 8.2: `SHOW MASTER STATUS`; MySQL 8.2+:
//! `SHOW BINARY LOG STATUS`), and the stream compares it with the end of the event that
//! completes what it delivers (the end of a transaction's last rows event or its commit).
//!
//! A position is `file number << 32 | offset` (files are at most 1 GiB,
//! `max_binlog_size`), so within one file the distance is bytes of binlog. Across files it
//! is not: a server that has moved on to the next file has written the rest of the old one
//! (after the last commit only its rotate event) and the new file's offset, of which the
//! header (format description, GTID list: a few hundred bytes) is no backlog. So the next
//! file counts by its offset alone, and any later file as behind. What the old file held
//! past the delivered position is not counted (the poll does not list file sizes): right
//! after a rotation a stream still reading the old file can be called current, which only
//! means group commits while it catches up (the apply loop still batches what is queued).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tidewater_core::backlog::{backlog_at, EndPoll, PolledEnd};
use tidewater_core::{Backlog, Result};

use crate::conn::{binlog_status_statements, connect, my_error, Flavor};
use crate::position::file_number;

/// The server's end of binlog, polled; `backlog` compares a delivered position with it.
pub struct BinlogEnd(PolledEnd);

impl BinlogEnd {
    /// Starts polling on a connection of its own (see [`PolledEnd::start`]).
    pub fn start(url: String, flavor: Flavor) -> BinlogEnd {
        BinlogEnd(PolledEnd::start(async move {
            connect(&url).await.map(|conn| Status {
                statements: binlog_status_statements(flavor, conn.server_version()),
                conn,
            })
        }))
    }

    /// The server's end as last polled: (file number, offset), `None` before the first poll.
    pub fn end(&self) -> Option<(u64, u64)> {
        match self.0.end() {
            0 => None,
            at => Some((at >> 32, at & OFFSET)),
        }
    }

    /// The backlog at the end of the event at `offset` of binlog `file`, delivered now.
    pub fn backlog(&self, file: &str, offset: u64) -> Backlog {
        match binlog_at(file, offset) {
            Some(delivered) => backlog_across_files(self.0.end(), delivered),
            None => Backlog::Unknown,
        }
    }
}

const OFFSET: u64 = (1 << 32) - 1;

/// `file number << 32 | offset`; `None` when the file name has no number or the offset does
/// not fit (not a binlog position the server reports).
fn binlog_at(file: &str, offset: u64) -> Option<u64> {
    let n = file_number(file);
    (n != 0 && offset <= OFFSET).then_some(n << 32 | offset)
}

/// [`backlog_at`] across binlog files (see the module comment).
fn backlog_across_files(polled: u64, delivered: u64) -> Backlog {
    let (polled_file, delivered_file) = (polled >> 32, delivered >> 32);
    if polled == 0 || polled_file <= delivered_file {
        backlog_at(polled, delivered)
    } else if polled_file == delivered_file + 1 {
        backlog_at(polled & OFFSET, 0)
    } else {
        Backlog::Behind
    }
}

struct Status {
    conn: Conn,
    /// The statement the server's version knows, then the other: the first is dropped when
    /// it fails.
    statements: [&'static str; 2],
}

impl EndPoll for Status {
    async fn poll(&mut self) -> Result<Option<u64>> {
        let [first, second] = self.statements;
        let row: Option<Row> = match self.conn.query_first(first).await {
            Ok(row) => row,
            Err(_) if first != second => {
                self.statements = [second, second];
                return Ok(None);
            }
            Err(e) => return Err(my_error(e, "asking for the binlog's end")),
        };
        Ok(row.and_then(|row| {
            let file: String = row.get(0)?;
            let offset: u64 = row.get(1)?;
            binlog_at(&file, offset)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::backlog::BEHIND_BYTES;

    fn at(file: u64, offset: u64) -> u64 {
        binlog_at(&format!("mariadb-bin.{file:06}"), offset).unwrap()
    }

    #[test]
    fn positions_are_file_numbers_and_offsets() {
        assert_eq!(at(3, 4567), 3 << 32 | 4567);
        assert_eq!(binlog_at("no-number", 4), None);
        assert_eq!(binlog_at("b.000001", 1 << 32), None);
    }

    #[test]
    fn behind_by_bytes_in_one_file_and_by_the_new_files_offset_after_a_rotation() {
        use Backlog::*;
        let delivered = at(7, 1_000_000);
        let cases = [
            (0, Unknown),
            (at(7, 900_000), Current),
            (at(7, 1_000_000 + BEHIND_BYTES), Current),
            (at(7, 1_000_001 + BEHIND_BYTES), Behind),
            // Rotated after the delivered commit: only the new file's header is written.
            (at(8, 389), Current),
            (at(8, 1 + BEHIND_BYTES), Behind),
            (at(9, 389), Behind),
        ];
        for (polled, expected) in cases {
            assert_eq!(
                backlog_across_files(polled, delivered),
                expected,
                "{polled:x}"
            );
        }
        // A stream ahead of the last poll (the poll is late) is current.
        assert_eq!(backlog_across_files(at(7, 5), at(8, 300)), Current);
    }
}
