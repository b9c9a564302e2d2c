//! The configured source, whichever kind it is: one type for the pipeline to run, one entry
//! point for `check`.

use std::sync::Arc;

use tidewater_core::check::CheckItem;
use tidewater_core::{Result, Source, SourceContext, TableSchema};
use tidewater_mysql::{MySqlSource, MySqlSourceConfig, ZeroDates};
use tidewater_postgres::{PgSource, PgSourceConfig};

use crate::config::{Config, DEFAULT_SERVER_ID};

pub enum AnySource {
    Postgres(PgSource),
    MySql(MySqlSource),
}

pub fn is_mysql(config: &Config) -> bool {
    config.source.kind == "mysql"
}

pub fn pg_config(config: &Config) -> PgSourceConfig {
    PgSourceConfig {
        url: config.source.url.clone(),
        tables: config.source.tables.clone(),
        slot: config.source.slot.clone(),
        publication: config.source.publication.clone(),
    }
}

pub fn mysql_config(config: &Config) -> MySqlSourceConfig {
    MySqlSourceConfig {
        url: config.source.url.clone(),
        tables: config.source.tables.clone(),
        server_id: config.source.server_id.unwrap_or(DEFAULT_SERVER_ID),
        zero_dates: match config.source.zero_dates.as_deref() {
            Some("error") => ZeroDates::Error,
            _ => ZeroDates::Null,
        },
    }
}

/// Connects and resolves the tables (the preflight part of every run).
pub async fn connect(config: &Config) -> Result<AnySource> {
    Ok(if is_mysql(config) {
        AnySource::MySql(MySqlSource::connect(mysql_config(config)).await?)
    } else {
        AnySource::Postgres(PgSource::connect(pg_config(config)).await?)
    })
}

/// `tidewater check` items for the configured source.
pub async fn checks(config: &Config) -> Vec<CheckItem> {
    if is_mysql(config) {
        tidewater_mysql::check::run_checks(&mysql_config(config)).await
    } else {
        tidewater_postgres::check::run_checks(&pg_config(config)).await
    }
}

impl Source for AnySource {
    fn tables(&self) -> Vec<Arc<TableSchema>> {
        match self {
            AnySource::Postgres(s) => s.tables(),
            AnySource::MySql(s) => s.tables(),
        }
    }

    async fn run(&mut self, ctx: SourceContext) -> Result<()> {
        match self {
            AnySource::Postgres(s) => s.run(ctx).await,
            AnySource::MySql(s) => s.run(ctx).await,
        }
    }
}
