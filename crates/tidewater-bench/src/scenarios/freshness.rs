//! Freshness (issue 6, item 4): under a steady pgbench load, the time from a
//! source commit to the row being visible in the live DuckDB replica, measured
//! from outside with a probe table read through tidewater's `POST /query`.

use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tidewater_harness::PgServer;

use super::drain::drop_pg_slots;
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
         changes). For each rate, `pgbench -n -c 4 -j 2 -T {} -R <rate>` runs while a probe session commits \
         `INSERT INTO bench_probe VALUES (<n>, clock_timestamp())` every {} ms, and the bench asks the running \
         tidewater every {} ms (`POST /query`: `SELECT id, epoch_us(committed_at) FROM bench_probe WHERE id > \
         <last seen>`). A probe row's latency is the local time its answer arrived minus its `committed_at` \
         (same machine, same clock). Resolution: a row is seen at most one poll period plus one query round \
         trip after it became visible (the figures overstate by that much; the round trip is in the details). \
         The achieved pgbench rate is in the details: on 2 shared cores the source may not reach the target \
         rate.",
        bench.opts.sizes.pgbench_scale,
        flush.join(" and "),
        bench.opts.sizes.freshness_seconds,
        PROBE_EVERY.as_millis(),
        bench.opts.sizes.freshness_poll_ms
    )
}

pub fn run(bench: &Bench) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for &flush_ms in &bench.opts.freshness_flush_ms {
        figures.extend(at_flush_interval(bench, flush_ms)?);
    }
    Ok(figures)
}

fn at_flush_interval(bench: &Bench, flush_ms: u64) -> Result<Vec<Figure>> {
    let sizes = &bench.opts.sizes;
    let (id, db) = bench.db(Kind::Postgres, "fresh")?;
    let mut init = PgServer::tool("pgbench");
    init.args([
        "-i",
        "-q",
        "-s",
        &sizes.pgbench_scale.to_string(),
        &db.url(),
    ]);
    tools::run_timed(&mut init)?;
    db.sql("CREATE TABLE bench_probe (id bigint PRIMARY KEY, committed_at timestamptz NOT NULL);")?;
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
        let before = own_histogram(&mut tw)?;
        let poll_every = Duration::from_millis(sizes.freshness_poll_ms);
        let m = measure(
            &mut tw,
            &db,
            (rate, sizes.freshness_seconds),
            poll_every,
            &mut last_id,
        )?;
        let after = own_histogram(&mut tw)?;
        let detail = format!(
            "pgbench reached {:.0} tx/s (target {rate}); {} probe rows; poll round trip median {:.1} ms; \
             tidewater's own `tidewater_freshness_seconds` histogram over the same window (every \
             transaction, source commit → DuckDB commit): p50 ≤ {} s, p99 ≤ {} s (bucket bounds)",
            m.tps,
            m.latencies_ms.len(),
            m.poll_ms,
            bucket_quantile(&before, &after, 0.5),
            bucket_quantile(&before, &after, 0.99)
        );
        let quantile =
            |q: f64| m.latencies_ms[((m.latencies_ms.len() - 1) as f64 * q).round() as usize];
        let at = format!("at {rate} tx/s, flush_interval_ms = {flush_ms}");
        figures.push(
            Figure::new(
                SCENARIO,
                &format!("commit → visible p50 {at}"),
                "ms",
                quantile(0.5),
            )
            .target(Target::AtMost { max: 50.0 })
            .detail(detail),
        );
        figures.push(
            Figure::new(
                SCENARIO,
                &format!("commit → visible p99 {at}"),
                "ms",
                quantile(0.99),
            )
            .target(Target::AtMost { max: 250.0 }),
        );
        figures.push(Figure::new(
            SCENARIO,
            &format!("commit → visible max {at}"),
            "ms",
            quantile(1.0),
        ));
    }
    tw.stop()?;
    drop_pg_slots(&db)?;
    Ok(figures)
}

struct Measured {
    /// Sorted.
    latencies_ms: Vec<f64>,
    tps: f64,
    poll_ms: f64,
}

/// `load`: pgbench's rate (tx/s) and seconds.
fn measure(
    tw: &mut Tidewater,
    db: &Db,
    (rate, seconds): (u32, u64),
    poll_every: Duration,
    last_id: &mut u64,
) -> Result<Measured> {
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
    let mut load = tools::spawn(&mut pgbench)?;

    let stop = Arc::new(AtomicBool::new(false));
    let first = *last_id + 1;
    let prober = {
        let (stop, url) = (stop.clone(), db.url());
        std::thread::spawn(move || probe(&url, first, &stop))
    };
    let mut poller = Poller {
        seen: first - 1,
        latencies_ms: Vec::new(),
        polls_ms: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(seconds + 120);
    let load_result = loop {
        let paced = Instant::now() + poll_every;
        if let Some(status) = load
            .try_wait()
            .map_err(BenchError::io("waiting for pgbench"))?
        {
            break status;
        }
        if Instant::now() > deadline {
            let _ = load.kill();
            return Err(BenchError::Other("pgbench ran past its deadline".into()));
        }
        poller.poll(tw)?;
        std::thread::sleep(paced.saturating_duration_since(Instant::now()));
    };
    stop.store(true, Ordering::Relaxed);
    let last = prober
        .join()
        .unwrap_or_else(|_| Err(BenchError::Other("the probe thread panicked".into())))?;
    let mut out = String::new();
    if let Some(mut pipe) = load.stdout.take() {
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
            poller.poll(tw)?;
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
    fn poll(&mut self, tw: &mut Tidewater) -> Result<()> {
        let asked = Instant::now();
        let sql = format!(
            "SELECT id, epoch_us(committed_at) FROM public.bench_probe WHERE id > {} ORDER BY id",
            self.seen
        );
        let rows = tw.query(&sql, 100_000)?;
        let now_us = unix_seconds(SystemTime::now()) * 1e6;
        self.polls_ms.push(asked.elapsed().as_secs_f64() * 1e3);
        for row in rows {
            let id = row.first().and_then(|v| v.as_u64());
            let us = row.get(1).and_then(|v| v.as_f64());
            let (Some(id), Some(us)) = (id, us) else {
                return Err(BenchError::Tidewater(format!(
                    "unexpected probe row {row:?}"
                )));
            };
            self.seen = id;
            self.latencies_ms.push((now_us - us) / 1e3);
        }
        Ok(())
    }
}

/// Commits a probe row every [`PROBE_EVERY`] until `stop`; returns the last id.
fn probe(url: &str, first: u64, stop: &AtomicBool) -> Result<u64> {
    let client = PgClient::connect(url)?;
    let started = Instant::now();
    let mut id = first - 1;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        client.execute(&format!(
            "INSERT INTO bench_probe VALUES ({id}, clock_timestamp())"
        ))?;
        let next = started + PROBE_EVERY * (id - first + 1) as u32;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(id)
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
