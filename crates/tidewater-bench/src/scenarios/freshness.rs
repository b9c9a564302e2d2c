//! Freshness (issue 6, item 4): under a steady pgbench load, the time from a
//! source commit to the row being visible in the live DuckDB replica, measured
//! from outside with a probe table read through tidewater's `POST /query`.
//! [`measure`] takes any [`Replica`] the probe rows can be read back from: the BigQuery
//! scenario (`bigquery_freshness`) measures the same way.

use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tidewater_harness::PgServer;

use super::drain::drop_pg_slots;
use crate::bigquery::cell_u64;
use crate::error::{BenchError, Result};
use crate::pg_client::PgClient;
use crate::report::{Figure, Target};
use crate::runner::{unix_seconds, wait_for, Apply, Tidewater};
use crate::source::{Db, Kind};
use crate::tools;
use crate::Bench;

const SCENARIO: &str = "PostgreSQL freshness";
/// A probe row is committed this often.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// The probe table: `committed_at` is the source's `clock_timestamp()` at the insert.
pub const PROBE_TABLE: &str = "bench_probe";

pub fn method(bench: &Bench) -> String {
    let flush: Vec<String> = bench
        .opts
        .freshness_flush_ms
        .iter()
        .map(u64::to_string)
        .collect();
    format!(
        "`pgbench -i -s {}`, then tidewater runs once per `flush_interval_ms` setting ({} ms; 100 ms is the \
         default: a batch commits as soon as nothing more is queued, else after that interval or 50k \
         changes). For each rate, {}, and the bench asks the running tidewater every {} ms (`POST /query`: `SELECT id, \
         epoch_us(committed_at) FROM bench_probe WHERE id > <last seen>`). {}",
        bench.opts.sizes.pgbench_scale,
        flush.join(" and "),
        load_method(bench.opts.sizes.freshness_seconds, PROBE_EVERY),
        bench.opts.sizes.freshness_poll_ms,
        LATENCY_METHOD
    )
}

/// The load [`measure`] runs and how it writes the probe rows, for the method texts.
pub fn load_method(seconds: u64, probe_every: Duration) -> String {
    format!(
        "`pgbench -n -c 4 -j 2 -T {seconds} -R <rate>` runs while a probe session commits \
         `INSERT INTO {PROBE_TABLE} VALUES (<n>, clock_timestamp())` every {} ms",
        probe_every.as_millis()
    )
}

/// How a latency is taken and what bounds its error, for the method texts.
pub const LATENCY_METHOD: &str = "A probe row's latency is the local time its answer arrived \
    minus its `committed_at` (same machine, same clock). Resolution: a row is seen at most one \
    poll period plus one query round trip after it became visible (the figures overstate by that \
    much; the round trip is in the details). The achieved pgbench rate is in the details: on 2 \
    shared cores the source may not reach the target rate.";

pub fn run(bench: &Bench) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for &flush_ms in &bench.opts.freshness_flush_ms {
        figures.extend(at_flush_interval(bench, flush_ms)?);
    }
    Ok(figures)
}

/// A fresh database (`label`) with pgbench's tables and the empty probe table.
pub fn pgbench_db<'b>(bench: &'b Bench, label: &str) -> Result<(u32, Db<'b>)> {
    let (id, db) = bench.db(Kind::Postgres, label)?;
    let mut init = PgServer::tool("pgbench");
    init.args([
        "-i",
        "-q",
        "-s",
        &bench.opts.sizes.pgbench_scale.to_string(),
        &db.url(),
    ]);
    tools::run_timed(&mut init)?;
    db.sql(&format!(
        "CREATE TABLE {PROBE_TABLE} (id bigint PRIMARY KEY, committed_at timestamptz NOT NULL);"
    ))?;
    Ok((id, db))
}

fn at_flush_interval(bench: &Bench, flush_ms: u64) -> Result<Vec<Figure>> {
    let sizes = &bench.opts.sizes;
    let (id, db) = pgbench_db(bench, "fresh")?;
    let apply = Apply {
        flush_interval_ms: Some(flush_ms),
        ..Apply::default()
    };
    let mut tw = bench.tidewater(&db, id, "run", &apply)?;
    tw.start()?;
    tw.wait_streaming(bench.timeout(sizes.pgbench_scale as u64 * 100_000))?;
    let mut figures = Vec::new();
    let mut last_id = 0;
    for &rate in &sizes.freshness_rates {
        let load = Load {
            rate,
            seconds: sizes.freshness_seconds,
            probe_every: PROBE_EVERY,
            poll_every: Duration::from_millis(sizes.freshness_poll_ms),
        };
        let own = OwnHistogram::start(&mut tw)?;
        let m = measure(&mut tw, &db, &load, &mut last_id)?;
        let detail = m.describe(rate, &own.end(&mut tw)?, "DuckDB");
        let at = format!("at {rate} tx/s, flush_interval_ms = {flush_ms}");
        let targets = [
            Some(Target::AtMost { max: 50.0 }),
            Some(Target::AtMost { max: 250.0 }),
        ];
        figures.extend(m.figures(SCENARIO, &at, targets, detail));
    }
    tw.stop()?;
    drop_pg_slots(&db)?;
    Ok(figures)
}

/// Where [`measure`] reads the probe rows back from.
pub trait Replica {
    /// The probe rows with an id above `after`, in id order: `[id, committed_at in Unix µs]`
    /// (integers, as JSON numbers or text).
    fn probe_rows(&mut self, after: u64) -> Result<Vec<Vec<serde_json::Value>>>;
}

/// The live DuckDB replica, through `POST /query`.
impl Replica for Tidewater {
    fn probe_rows(&mut self, after: u64) -> Result<Vec<Vec<serde_json::Value>>> {
        let sql = format!(
            "SELECT id, epoch_us(committed_at) FROM public.{PROBE_TABLE} WHERE id > {after} ORDER BY id"
        );
        self.query(&sql, 100_000)
    }
}

/// What a measurement runs under: pgbench's target rate (tx/s) for `seconds`, a probe row
/// committed every `probe_every`, the replica asked for new ones every `poll_every`.
pub struct Load {
    pub rate: u32,
    pub seconds: u64,
    pub probe_every: Duration,
    pub poll_every: Duration,
}

pub struct Measured {
    /// Sorted.
    latencies_ms: Vec<f64>,
    tps: f64,
    poll_ms: f64,
}

impl Measured {
    fn quantile(&self, q: f64) -> f64 {
        self.latencies_ms[((self.latencies_ms.len() - 1) as f64 * q).round() as usize]
    }

    /// The details line: the load reached, the samples, the poll's round trip and tidewater's
    /// own histogram (`own`, see [`OwnHistogram`]) of commits into `sink`.
    pub fn describe(&self, rate: u32, own: &(String, String), sink: &str) -> String {
        format!(
            "pgbench reached {:.0} tx/s (target {rate}); {} probe rows; poll round trip median {:.1} ms; \
             tidewater's own `tidewater_freshness_seconds` histogram over the same window (every \
             transaction, source commit → {sink} commit): p50 ≤ {} s, p99 ≤ {} s (bucket bounds)",
            self.tps,
            self.latencies_ms.len(),
            self.poll_ms,
            own.0,
            own.1
        )
    }

    /// p50 (with `detail`), p99 and max as figures of `scenario` measured `at`, with
    /// `targets` for p50 and p99.
    pub fn figures(
        &self,
        scenario: &str,
        at: &str,
        targets: [Option<Target>; 2],
        detail: String,
    ) -> Vec<Figure> {
        let [p50, p99] = targets;
        let mut detail = Some(detail);
        [("p50", 0.5, p50), ("p99", 0.99, p99), ("max", 1.0, None)]
            .into_iter()
            .map(|(name, q, target)| {
                let measure = format!("commit → visible {name} {at}");
                let mut f = Figure::new(scenario, &measure, "ms", self.quantile(q));
                if let Some(t) = target {
                    f = f.target(t);
                }
                match detail.take() {
                    Some(d) => f.detail(d),
                    None => f,
                }
            })
            .collect()
    }
}

/// Commits probe rows while pgbench runs `load`, reading them back from `replica`; returns
/// their latencies. `last_id`: the last probe id of an earlier measurement on the same table.
pub fn measure(
    replica: &mut impl Replica,
    db: &Db,
    load: &Load,
    last_id: &mut u64,
) -> Result<Measured> {
    let &Load {
        rate,
        seconds,
        probe_every,
        poll_every,
    } = load;
    let mut pgbench = PgServer::tool("pgbench");
    pgbench.args([
        "-n",
        "-c",
        "4",
        "-j",
        "2",
        "-T",
        &seconds.to_string(),
        "-R",
        &rate.to_string(),
        &db.url(),
    ]);
    pgbench.stdout(Stdio::piped());
    let mut pgbench_run = tools::spawn(&mut pgbench)?;

    let stop = Arc::new(AtomicBool::new(false));
    let first = *last_id + 1;
    let prober = {
        let (stop, url) = (stop.clone(), db.url());
        std::thread::spawn(move || probe(&url, first, probe_every, &stop))
    };
    let mut poller = Poller {
        seen: first - 1,
        latencies_ms: Vec::new(),
        polls_ms: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(seconds + 120);
    let load_result = loop {
        let paced = Instant::now() + poll_every;
        if let Some(status) = pgbench_run
            .try_wait()
            .map_err(BenchError::io("waiting for pgbench"))?
        {
            break status;
        }
        if Instant::now() > deadline {
            let _ = pgbench_run.kill();
            return Err(BenchError::Other("pgbench ran past its deadline".into()));
        }
        poller.poll(replica)?;
        std::thread::sleep(paced.saturating_duration_since(Instant::now()));
    };
    stop.store(true, Ordering::Relaxed);
    let last = prober
        .join()
        .unwrap_or_else(|_| Err(BenchError::Other("the probe thread panicked".into())))?;
    let mut out = String::new();
    if let Some(mut pipe) = pgbench_run.stdout.take() {
        let _ = pipe.read_to_string(&mut out);
    }
    if !load_result.success() {
        return Err(BenchError::Other(format!(
            "pgbench failed ({load_result}): {out}"
        )));
    }
    wait_for(
        Duration::from_secs(60),
        "the last probe row to reach the replica",
        || {
            poller.poll(replica)?;
            Ok(poller.seen >= last)
        },
    )?;
    *last_id = last;
    let tps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let Poller {
        mut latencies_ms,
        mut polls_ms,
        ..
    } = poller;
    if latencies_ms.is_empty() {
        return Err(BenchError::Other("no probe row was seen".into()));
    }
    latencies_ms.sort_by(f64::total_cmp);
    polls_ms.sort_by(f64::total_cmp);
    Ok(Measured {
        latencies_ms,
        tps,
        poll_ms: polls_ms[polls_ms.len() / 2],
    })
}

/// Reads new probe rows from the live replica and records their latencies.
struct Poller {
    seen: u64,
    latencies_ms: Vec<f64>,
    polls_ms: Vec<f64>,
}

impl Poller {
    fn poll(&mut self, replica: &mut impl Replica) -> Result<()> {
        let asked = Instant::now();
        let rows = replica.probe_rows(self.seen)?;
        let now_us = unix_seconds(SystemTime::now()) * 1e6;
        self.polls_ms.push(asked.elapsed().as_secs_f64() * 1e3);
        for row in rows {
            let id = row.first().and_then(cell_u64);
            let us = row.get(1).and_then(cell_u64);
            let (Some(id), Some(us)) = (id, us) else {
                return Err(BenchError::Other(format!("unexpected probe row {row:?}")));
            };
            self.seen = id;
            self.latencies_ms.push((now_us - us as f64) / 1e3);
        }
        Ok(())
    }
}

/// Commits a probe row `every` until `stop`; returns the last id.
fn probe(url: &str, first: u64, every: Duration, stop: &AtomicBool) -> Result<u64> {
    let client = PgClient::connect(url)?;
    let started = Instant::now();
    let mut id = first - 1;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        client.execute(&format!(
            "INSERT INTO {PROBE_TABLE} VALUES ({id}, clock_timestamp())"
        ))?;
        let next = started + every * (id - first + 1) as u32;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(id)
}

/// tidewater's own `tidewater_freshness_seconds` histogram over a window.
pub struct OwnHistogram(Vec<(f64, u64)>);

impl OwnHistogram {
    pub fn start(tw: &mut Tidewater) -> Result<OwnHistogram> {
        Ok(OwnHistogram(own_histogram(tw)?))
    }

    /// The (p50, p99) bucket bounds of the observations since [`start`](Self::start).
    pub fn end(self, tw: &mut Tidewater) -> Result<(String, String)> {
        let after = own_histogram(tw)?;
        Ok((
            bucket_quantile(&self.0, &after, 0.5),
            bucket_quantile(&self.0, &after, 0.99),
        ))
    }
}

fn own_histogram(tw: &mut Tidewater) -> Result<Vec<(f64, u64)>> {
    let metrics = tw
        .metrics()?
        .ok_or_else(|| BenchError::Tidewater("/metrics is not answering".into()))?;
    Ok(metrics.histogram("tidewater_freshness_seconds"))
}

/// The upper bound of the bucket holding quantile `q` of the observations between two
/// snapshots of a cumulative histogram.
fn bucket_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> String {
    let count = |h: &[(f64, u64)], le: f64| h.iter().find(|b| b.0 == le).map_or(0, |b| b.1);
    let total = after.last().map_or(0, |b| b.1) - before.last().map_or(0, |b| b.1);
    if total == 0 {
        return "?".into();
    }
    let le = after
        .iter()
        .find(|(le, n)| (n - count(before, *le)) as f64 >= q * total as f64)
        .map_or(f64::INFINITY, |b| b.0);
    if le.is_infinite() {
        "+Inf".into()
    } else {
        le.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_window_between_two_snapshots() {
        let before = [(0.1, 10), (1.0, 10), (f64::INFINITY, 10)];
        let after = [(0.1, 15), (1.0, 19), (f64::INFINITY, 20)];
        assert_eq!(bucket_quantile(&before, &after, 0.5), "0.1");
        assert_eq!(bucket_quantile(&before, &after, 0.9), "1");
        assert_eq!(bucket_quantile(&before, &after, 0.99), "+Inf");
        assert_eq!(bucket_quantile(&after, &after, 0.5), "?");
    }
}
