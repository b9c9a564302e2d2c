//! Keyless tables in BigQuery's `verify`: the source's rows and the replica's compared as
//! multisets, in bounded memory, without writing anything to BigQuery.
//!
//! A row's image is the JSON text of its typed values in column order (`sql::row_image`),
//! computed by BigQuery on both sides: for the source from the chunk's literals cast to the
//! replica's types (as the keyed comparison does), for the replica from its columns. Equal
//! rows have equal images, so the two multisets are equal exactly when their multisets of
//! images are.
//!
//! - **First pass: buckets.** Each image's `FARM_FINGERPRINT` falls in one of [`BUCKETS`]
//!   buckets. Each chunk of source rows goes into one query that returns, per bucket, the row
//!   count and the sums of the fingerprint's two 32-bit halves; they add up locally. At the
//!   end one query returns the same figures for the replica. A bucket whose figures differ
//!   holds a difference; equal figures everywhere mean equal multisets, unless rows that
//!   differ keep a bucket's count and both 64-bit-wide sums (a chance of about 2^-64 per
//!   differing bucket for unrelated fingerprints). From the figures alone, `missing` and
//!   `extra` are lower bounds (a bucket with equal counts but other sums counts one each).
//! - **Rescan: the rows.** When buckets differ the verify engine reads the table again at a
//!   newer snapshot (`Pass::Rescan`). Then only the differing buckets are compared, row by
//!   row: each chunk's query returns the source images of those buckets with their counts,
//!   kept here (at most `MAX_KEPT` distinct images), and at the end the replica's images of
//!   the same buckets are subtracted. What remains is exact: images the source has more
//!   often (missing) or the replica has more often (extra), with examples. A bucket that
//!   turned equal at the newer snapshot drops out. Past `max_kept` distinct images the
//!   rescan gives up listing them and the previous pass's figures stand.
//!
//! Cost: one query per chunk over literals (no table read) and one scan of the keyless
//! replica per pass; keyless replicas have no key to prune by (the sink's multiset apply
//! scans them too).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;
use tidewater_core::{Error, Result, TableSchema};

use super::sql::{row_image, source_rows};

/// Fingerprint buckets. The first pass keeps 3 integers per bucket that holds rows; a rescan
/// keeps the distinct images of the differing buckets, about rows / `BUCKETS` each, so many
/// buckets keep it small for a large table with few differences.
const BUCKETS: i64 = 16_384;

/// A bucket's figures: rows, and the sums of their fingerprints' high and low halves.
type Figures = [i64; 3];

#[derive(Default)]
pub struct Multiset {
    /// Per bucket, the source rows' figures of the pass under way.
    source: BTreeMap<i64, Figures>,
    /// Per bucket, the replica rows' figures.
    replica: BTreeMap<i64, Figures>,
    /// The buckets the last pass found different (all of them compared when `None`).
    differing: Option<Vec<i64>>,
    /// Rescan: images of the differing buckets, with the source's count minus the replica's.
    images: BTreeMap<String, i64>,
    /// Rescan: more distinct images than `max_kept`; the previous pass's figures stand.
    overflow: bool,
    pub missing: u64,
    pub extra: u64,
    pub examples_missing: Vec<String>,
    pub examples_extra: Vec<String>,
}

/// The bucket of fingerprint expression `fp`, in `0..BUCKETS`.
fn bucket(fp: &str) -> String {
    format!("MOD(MOD({fp}, {BUCKETS}) + {BUCKETS}, {BUCKETS})")
}

fn int(cell: Option<&Json>) -> Result<i64> {
    cell.and_then(Json::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::sink("verify: BigQuery answered a bucket query with a non-integer"))
}

/// Adds a figures row (bucket, count, high sum, low sum) to `to`.
fn add_figures(to: &mut BTreeMap<i64, Figures>, row: &[Json]) -> Result<()> {
    let f = to.entry(int(row.first())?).or_default();
    for (i, sum) in f.iter_mut().enumerate() {
        *sum = sum.wrapping_add(int(row.get(i + 1))?);
    }
    Ok(())
}

impl Multiset {
    /// Starts a rescan of the buckets the last pass found different (its counts stand
    /// until the rescan finishes).
    pub fn rescan(&mut self) {
        self.differing.get_or_insert_with(Vec::new);
        self.images.clear();
        self.overflow = false;
    }

    /// Whether this pass compares images rather than figures.
    fn rows_wanted(&self) -> bool {
        self.differing.is_some()
    }

    /// Nothing (more) to query: a rescan with no differing bucket, or one that overflowed.
    fn idle(&self) -> bool {
        self.differing
            .as_ref()
            .is_some_and(|d| d.is_empty() || self.overflow)
    }

    /// The query for one chunk of source rows: per-bucket figures, or (rescan) the images
    /// of the differing buckets with their counts.
    pub fn chunk_sql(&self, s: &TableSchema, rows: &[Vec<Option<String>>]) -> Option<String> {
        self.sql(&format!("({})", source_rows(s, rows)), s, "s")
    }

    /// The same query over the replica table `replica` (qualified).
    pub fn replica_sql(&self, s: &TableSchema, replica: &str) -> Option<String> {
        self.sql(replica, s, "r")
    }

    fn sql(&self, from: &str, s: &TableSchema, alias: &str) -> Option<String> {
        if self.idle() {
            return None;
        }
        let image = row_image(s, alias);
        let inner = format!(
            "SELECT FARM_FINGERPRINT({image}) AS _tw_fp, {image} AS _tw_img FROM {from} {alias}"
        );
        Some(match &self.differing {
            Some(buckets) => {
                let list: Vec<String> = buckets.iter().map(i64::to_string).collect();
                format!(
                    "SELECT _tw_img, CAST(COUNT(*) AS STRING) FROM ({inner}) \
                     WHERE {} IN ({}) GROUP BY _tw_img",
                    bucket("_tw_fp"),
                    list.join(", ")
                )
            }
            None => format!(
                "SELECT CAST({} AS STRING), CAST(COUNT(*) AS STRING), \
                 CAST(SUM(_tw_fp >> 32) AS STRING), CAST(SUM(_tw_fp & 0xFFFFFFFF) AS STRING) \
                 FROM ({inner}) GROUP BY 1",
                bucket("_tw_fp")
            ),
        })
    }

    /// One result row of a source chunk's query.
    pub fn add_source(&mut self, row: &[Json], max_kept: usize) -> Result<()> {
        self.add(row, 1, max_kept)
    }

    /// One result row of the replica's query.
    pub fn add_replica(&mut self, row: &[Json], max_kept: usize) -> Result<()> {
        self.add(row, -1, max_kept)
    }

    fn add(&mut self, row: &[Json], sign: i64, max_kept: usize) -> Result<()> {
        if self.idle() {
            return Ok(());
        }
        if !self.rows_wanted() {
            let to = if sign > 0 {
                &mut self.source
            } else {
                &mut self.replica
            };
            return add_figures(to, row);
        }
        let image = row.first().and_then(Json::as_str).unwrap_or_default();
        let n = int(row.get(1))? * sign;
        if self.images.len() < max_kept || self.images.contains_key(image) {
            *self.images.entry(image.to_string()).or_default() += n;
        } else {
            self.overflow = true;
            self.images.clear();
        }
        Ok(())
    }

    /// The differences of the pass, once the source's and the replica's rows are in.
    pub fn finish(&mut self, max_examples: usize) {
        if self.idle() {
            return;
        }
        self.missing = 0;
        self.extra = 0;
        self.examples_missing.clear();
        self.examples_extra.clear();
        if self.rows_wanted() {
            let images = std::mem::take(&mut self.images);
            for (image, n) in images.into_iter().filter(|(_, n)| *n != 0) {
                let (count, examples) = if n > 0 {
                    (&mut self.missing, &mut self.examples_missing)
                } else {
                    (&mut self.extra, &mut self.examples_extra)
                };
                *count += n.unsigned_abs();
                if examples.len() < max_examples {
                    examples.push(image);
                }
            }
            return;
        }
        let (ours, theirs) = (
            std::mem::take(&mut self.source),
            std::mem::take(&mut self.replica),
        );
        let buckets: BTreeSet<i64> = ours.keys().chain(theirs.keys()).copied().collect();
        let mut differing = Vec::new();
        for b in buckets {
            let (o, t) = (
                ours.get(&b).copied().unwrap_or_default(),
                theirs.get(&b).copied().unwrap_or_default(),
            );
            if o == t {
                continue;
            }
            differing.push(b);
            match o[0].cmp(&t[0]) {
                Ordering::Greater => self.missing += o[0].abs_diff(t[0]),
                Ordering::Less => self.extra += o[0].abs_diff(t[0]),
                Ordering::Equal => {
                    self.missing += 1;
                    self.extra += 1;
                }
            }
        }
        self.differing = Some(differing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<Json> {
        cells.iter().map(|c| Json::String(c.to_string())).collect()
    }

    #[test]
    fn figures_find_the_buckets_then_images_the_rows() {
        let mut m = Multiset::default();
        // Bucket 1 equal; bucket 2: one row more at the source; bucket 3: same count,
        // other rows; bucket 4 only in the replica.
        for r in [
            ["1", "2", "10", "20"],
            ["2", "3", "5", "5"],
            ["3", "1", "7", "7"],
        ] {
            m.add_source(&row(&r), 10).unwrap();
        }
        for r in [
            ["1", "2", "10", "20"],
            ["2", "2", "4", "4"],
            ["3", "1", "8", "7"],
        ] {
            m.add_replica(&row(&r), 10).unwrap();
        }
        m.add_replica(&row(&["4", "1", "1", "1"]), 10).unwrap();
        let sql = m.replica_sql(&schema(), "`p.d.t`").unwrap();
        assert!(
            sql.contains("SUM(_tw_fp >> 32)") && sql.ends_with("GROUP BY 1"),
            "{sql}"
        );
        m.finish(10);
        assert_eq!((m.missing, m.extra), (2, 2));
        assert_eq!(m.differing.as_deref(), Some(&[2, 3, 4][..]));

        // The rescan lists the rows of those buckets: exact counts and examples.
        m.rescan();
        let sql = m.chunk_sql(&schema(), &[]).unwrap();
        assert!(sql.contains(" IN (2, 3, 4) GROUP BY _tw_img"), "{sql}");
        for (image, n) in [("[1]", "2"), ("[2]", "1"), ("[3]", "1")] {
            m.add_source(&row(&[image, n]), 10).unwrap();
        }
        for (image, n) in [("[1]", "1"), ("[2]", "1"), ("[4]", "3")] {
            m.add_replica(&row(&[image, n]), 10).unwrap();
        }
        m.finish(1);
        assert_eq!((m.missing, m.extra), (2, 3));
        assert_eq!(m.examples_missing, ["[1]"]);
        assert_eq!(m.examples_extra, ["[4]"]);
    }

    #[test]
    fn a_rescan_with_too_many_rows_keeps_the_figures() {
        let mut m = Multiset::default();
        m.add_source(&row(&["5", "3", "1", "1"]), 10).unwrap();
        m.finish(10);
        assert_eq!((m.missing, m.extra), (3, 0));
        m.rescan();
        for image in ["[1]", "[2]", "[3]"] {
            m.add_source(&row(&[image, "1"]), 2).unwrap();
        }
        assert!(m.chunk_sql(&schema(), &[]).is_none(), "nothing more to ask");
        m.finish(10);
        assert_eq!((m.missing, m.extra), (3, 0));
    }

    fn schema() -> TableSchema {
        TableSchema {
            id: tidewater_core::TableId::new("s", "t"),
            columns: vec![tidewater_core::Column {
                name: "a".into(),
                ty: tidewater_core::ColumnType::Int32,
                nullable: true,
                source_type: String::new(),
            }],
            key: vec![],
        }
    }
}
