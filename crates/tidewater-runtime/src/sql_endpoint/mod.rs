//! The PostgreSQL wire-protocol endpoint of a running `tidewater run` (`[sql] listen`), so
//! that psql, BI tools and PostgreSQL drivers can read the live replica.
//!
//! Every statement, from the simple protocol (`Query`) or the extended one (Parse / Bind /
//! Describe / Execute), runs through the same `QueryGate` as `POST /query`: the read-only
//! check, a read-only transaction on a connection of its own, no external access, the row
//! limit and the timeout. Refusals and errors are ErrorResponses with the message
//! `POST /query` gives. Transaction blocks and `SHOW` of a session parameter are answered
//! here (`session`); psql's catalog queries (`\dt`, `\d`, `\dn`) and `SHOW TABLES` are
//! answered from the replica's own catalog (`Replica::catalog_statement`).
//!
//! Clients on the loopback interface only (the address must be one), without a password;
//! no TLS. Results in text or binary format, as the client asks.

mod binary;
mod encode;
mod session;

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeResponse, DescribeStatementResponse, Response,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::NoticeResponse;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tidewater_core::replica::Param;
use tidewater_core::{Error, Result};
use tokio::net::TcpListener;
use tracing::debug;

use crate::config::SqlEndpoint;
use crate::query::exec::{Cells, Params, TextResult};
use crate::query::gate::QueryGate;
use session::Local;

/// Binds `config.listen` and serves until the process ends. Returns the bound address.
pub async fn start(config: SqlEndpoint, queries: Arc<QueryGate>) -> Result<SocketAddr> {
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        Error::config(format!(
            "sql.listen = \"{}\": cannot listen there ({e}); choose a free address",
            config.listen
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::config(format!("sql.listen: {e}")))?;
    let endpoint = Arc::new(Endpoint {
        queries,
        limit: config.limit,
        timeout: config.timeout,
        parser: Arc::new(Parser),
        pids: RandomPidSecretKeyGenerator::default(),
    });
    tokio::spawn(accept(listener, Handlers(endpoint)));
    Ok(addr)
}

async fn accept(listener: TcpListener, handlers: Handlers) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let handlers = handlers.clone();
                tokio::spawn(async move {
                    if let Err(e) = pgwire::tokio::process_socket(stream, None, handlers).await {
                        debug!("sql connection from {peer}: {e}");
                    }
                });
            }
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                debug!("sql accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Endpoint {
    queries: Arc<QueryGate>,
    limit: usize,
    timeout: Duration,
    parser: Arc<Parser>,
    pids: RandomPidSecretKeyGenerator,
}

/// What a statement gets.
enum Answer {
    /// A command tag only (transaction blocks).
    Tag(Response),
    Rows(TextResult),
}

#[derive(Clone)]
struct Handlers(Arc<Endpoint>);

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.0.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.0.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.0.clone()
    }
}

impl Endpoint {
    /// One statement through the gate, at most `limit` rows.
    async fn run(&self, sql: &str, params: Params, limit: usize) -> PgWireResult<TextResult> {
        let result = self
            .queries
            .run(sql.to_string(), params, limit, self.timeout, Cells::Text)
            .await;
        match &result {
            Ok(r) => debug!(rows = r.rows.len(), ms = r.elapsed_ms, "sql query served"),
            Err(e) => debug!(error = %e, "sql query refused or failed"),
        }
        result.map_err(|e| encode::error(&e))
    }

    /// The answer to `sql`: given here (`session`), or its rows from the replica, at most
    /// `limit`.
    async fn answer(&self, sql: &str, params: Params, limit: usize) -> PgWireResult<Answer> {
        let catalog = self.queries.catalog_statement(sql);
        let sql = catalog.as_deref().unwrap_or(sql);
        match session::local(sql) {
            Some(Local::Transaction(tag)) => return Ok(Answer::Tag(tag)),
            Some(Local::Show(result)) => return Ok(Answer::Rows(result)),
            None => {}
        }
        Ok(Answer::Rows(self.run(sql, params, limit).await?))
    }

    /// `sql` with the values bound to it, answered in the result `formats` asked for, at most
    /// `sql.limit` rows (the client is warned when the result was cut).
    async fn respond<C>(
        &self,
        client: &mut C,
        sql: &str,
        params: Vec<Param>,
        formats: &Format,
    ) -> PgWireResult<Response>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let answer = self.answer(sql, Params::Values(params), self.limit).await?;
        Ok(match answer {
            Answer::Tag(tag) => tag,
            Answer::Rows(result) => {
                if result.truncated {
                    let warning = ErrorInfo::new(
                        "WARNING".into(),
                        "01000".into(),
                        format!(
                            "the result was cut at {} rows (sql.limit in tidewater's config)",
                            result.rows.len()
                        ),
                    );
                    let notice = NoticeResponse::from(warning);
                    client
                        .feed(PgWireBackendMessage::NoticeResponse(notice))
                        .await?;
                }
                let fields = encode::fields(&result, formats);
                Response::Query(encode::response(result, fields))
            }
        })
    }
}

#[async_trait]
impl StartupHandler for Endpoint {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let PgWireFrontendMessage::Startup(startup) = message else {
            return Ok(());
        };
        if !client.socket_addr().ip().is_loopback() {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "tidewater's SQL endpoint serves clients on this machine (loopback) only".into(),
            ))));
        }
        protocol_negotiation(client, &startup).await?;
        save_startup_parameters_to_metadata(client, &startup);
        let (pid, secret_key) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret_key);
        // Trust: no password (loopback only, like POST /query).
        finish_authentication(client, &session::Parameters).await
    }
}

#[async_trait]
impl SimpleQueryHandler for Endpoint {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let response = self
            .respond(client, query, Vec::new(), &Format::UnifiedText)
            .await?;
        Ok(vec![response])
    }
}

/// Parse: a statement is its SQL, refused at once when it is not a single read.
struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = String;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<String>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if session::local(sql).is_none() {
            crate::query::exec::check_read_only(sql).map_err(|e| encode::error(&e))?;
        }
        Ok(Some(sql.to_string()))
    }

    fn get_parameter_types(&self, _stmt: &String) -> PgWireResult<Vec<Type>> {
        Ok(Vec::new())
    }

    fn get_result_schema(
        &self,
        _stmt: &String,
        _column_format: Option<&Format>,
    ) -> PgWireResult<Vec<pgwire::api::results::FieldInfo>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Endpoint {
    type Statement = String;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// The columns of a statement not bound yet: it runs once with NULL parameters (and no
    /// rows kept); parameters are described as the client declared them, else as text.
    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<String>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let answer = self.answer(&target.statement, Params::AllNull, 0).await?;
        let Answer::Rows(result) = answer else {
            return Ok(DescribeStatementResponse::no_data());
        };
        let parameters = (0..result.parameters)
            .map(|i| encode::param_type(&target.parameter_types, i))
            .collect();
        let fields = encode::fields(&result, &Format::UnifiedText);
        Ok(DescribeStatementResponse::new(
            parameters,
            fields.as_ref().clone(),
        ))
    }

    /// The columns of a bound portal: it runs now, and Execute sends the rows it got.
    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<String>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (sql, params) = (&portal.statement.statement, encode::params(portal)?);
        let response = self
            .respond(client, sql, params, &portal.result_column_format)
            .await?;
        let Response::Query(rows) = response else {
            // Execute answers it again.
            return Ok(DescribePortalResponse::no_data());
        };
        let fields = rows.row_schema().as_ref().clone();
        portal.start(rows).await;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<String>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (sql, params) = (&portal.statement.statement, encode::params(portal)?);
        self.respond(client, sql, params, &portal.result_column_format)
            .await
    }
}
