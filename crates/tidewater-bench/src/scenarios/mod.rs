//! One module per scenario of issue 6 (and issue 16's BigQuery ones); `drain` is the
//! backlog-draining measurement the streaming, memory and scaling scenarios share.

mod bigquery_freshness;
mod bigquery_snapshot;
mod drain;
mod freshness;
mod memory;
mod scaling;
mod snapshot;
mod stream;

use crate::error::Result;
use crate::report::Figure;
use crate::{Bench, Scenario};

pub fn run(bench: &Bench, scenario: Scenario) -> Result<Vec<Figure>> {
    match scenario {
        Scenario::PgStream => stream::run(bench, crate::Kind::Postgres),
        Scenario::MysqlStream => stream::run(bench, crate::Kind::MariaDb),
        Scenario::Snapshot => snapshot::run(bench),
        Scenario::Freshness => freshness::run(bench),
        Scenario::Memory => memory::run(bench),
        Scenario::Scaling => scaling::run(bench),
        Scenario::BigQueryFreshness => bigquery_freshness::run(bench),
        Scenario::BigQuerySnapshot => bigquery_snapshot::run(bench),
    }
}

/// How the scenario measures, for BENCHMARKS.md.
pub fn method(bench: &Bench, scenario: Scenario) -> String {
    match scenario {
        Scenario::PgStream => stream::method(crate::Kind::Postgres),
        Scenario::MysqlStream => stream::method(crate::Kind::MariaDb),
        Scenario::Snapshot => snapshot::METHOD.into(),
        Scenario::Freshness => freshness::method(bench),
        Scenario::Memory => memory::METHOD.into(),
        Scenario::Scaling => scaling::METHOD.into(),
        Scenario::BigQueryFreshness => bigquery_freshness::method(bench),
        Scenario::BigQuerySnapshot => bigquery_snapshot::METHOD.into(),
    }
}
