//! The BigQuery REST calls the sink makes, through `gcp-bigquery-client`, each retried and
//! classified (`errors`). No driver type leaves this crate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::data_format_options::DataFormatOptions;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::dataset_reference::DatasetReference;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_query::JobConfigurationQuery;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_row::TableRow;
use gcp_bigquery_client::model::table_schema::TableSchema as BqSchema;
use gcp_bigquery_client::Client;
use serde_json::Value as Json;
use tidewater_core::{Error, Result};

use crate::errors::{check_errors, check_insert, from_client, with_retry};

/// Where Google serves the API (REST under `/bigquery/v2`, uploads under `/upload`).
const GOOGLE_API_ROOT: &str = "https://bigquery.googleapis.com";
/// How long one query call waits on the server before polling again.
const QUERY_WAIT_MS: i32 = 10_000;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Connection {
    pub project: String,
    pub dataset: String,
    /// The dataset's location (`US`, `EU`, `europe-west1`); jobs run there.
    pub location: Option<String>,
    /// A service-account key file; `None`: application-default credentials, or no
    /// authentication at all when `endpoint` is set (an emulator).
    pub credentials: Option<PathBuf>,
    /// `http://host:port` of an emulator instead of Google's endpoint.
    pub endpoint: Option<String>,
}

/// A connected client for one dataset.
#[derive(Clone)]
pub struct BqClient {
    client: Client,
    /// For what the client cannot send (load-job uploads, `load`): the same HTTP client
    /// and tokens, and `https://host[:port]` of the API.
    pub(crate) http: reqwest::Client,
    pub(crate) auth: Arc<dyn Authenticator>,
    pub(crate) api_root: String,
    pub project: String,
    pub dataset: String,
    pub location: Option<String>,
}

/// How [`BqClient::query_pages`] reads a result.
pub struct Paging<'a> {
    pub page_rows: i32,
    pub poll_ms: i32,
    /// Whether to stop (an interrupted statement).
    pub stop: &'a (dyn Fn() -> bool + Sync),
}

/// One page of a query result.
pub struct Page {
    /// The result's columns.
    pub fields: Vec<TableFieldSchema>,
    pub rows: Rows,
    /// Rows in the whole result.
    pub total_rows: u64,
}

/// Rows of a query answer: one JSON cell per column (a string, null, or for arrays an
/// array of `{"v": ...}`), as BigQuery sends them.
pub type Rows = Vec<Vec<Json>>;

/// A completed query: its rows, and the bytes BigQuery processed (what on-demand pricing
/// bills; 0 when the answer does not say).
pub struct Answer {
    pub rows: Rows,
    pub bytes_processed: u64,
}

fn number(s: Option<&String>) -> u64 {
    s.and_then(|b| b.parse().ok()).unwrap_or(0)
}

impl BqClient {
    pub async fn connect(c: &Connection) -> Result<BqClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::sink(format!("building the HTTP client: {e}")))?;
        let mut builder = ClientBuilder::new();
        builder.with_client(http.clone());
        let mut api_root = GOOGLE_API_ROOT.to_string();
        if let Some(endpoint) = &c.endpoint {
            let base = endpoint.trim_end_matches('/');
            let root = base.trim_end_matches("/bigquery/v2");
            api_root = root.to_string();
            builder.with_v2_base_url(format!("{root}/bigquery/v2"));
        }
        let auth = match (&c.credentials, &c.endpoint) {
            (Some(key), _) => crate::auth::from_key_file(key).await,
            (None, Some(_)) => Ok(crate::auth::none()),
            (None, None) => crate::auth::application_default().await,
        };
        let auth = auth.map_err(|e| match &c.credentials {
            Some(key) => Error::config(format!(
                "[sink] credentials = {:?}: not a usable service-account key file ({e}); \
                 download a JSON key of the service account, or leave `credentials` out to use \
                 application-default credentials",
                key.display()
            )),
            None => Error::config(format!(
                "no application-default credentials for BigQuery ({e}): set [sink] credentials \
                 to a service-account key file, set GOOGLE_APPLICATION_CREDENTIALS, or run on a \
                 machine with a service account"
            )),
        })?;
        let client = builder
            .build_from_authenticator(auth.clone())
            .await
            .map_err(|e| Error::sink(format!("building the BigQuery client: {e}")))?;
        Ok(BqClient {
            client,
            http,
            auth,
            api_root,
            project: c.project.clone(),
            dataset: c.dataset.clone(),
            location: c.location.clone(),
        })
    }

    /// Creates the dataset when it does not exist.
    pub async fn ensure_dataset(&self) -> Result<()> {
        let what = format!("looking up dataset {}.{}", self.project, self.dataset);
        let found = with_retry(&what, |_| async {
            match self
                .client
                .dataset()
                .get(&self.project, &self.dataset)
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if is_status(&e, 404) => Ok(false),
                Err(e) => Err(from_client(&what, e)),
            }
        })
        .await?;
        if found {
            return Ok(());
        }
        let what = format!("creating dataset {}.{}", self.project, self.dataset);
        with_retry(&what, |_| async {
            let mut dataset = Dataset::new(&self.project, &self.dataset);
            if let Some(l) = &self.location {
                dataset = dataset.location(l);
            }
            match self.client.dataset().create(dataset).await {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, 409) => Ok(()),
                Err(e) => Err(from_client(&what, e)),
            }
        })
        .await?;
        tracing::info!(dataset = %self.dataset, "created the BigQuery dataset");
        Ok(())
    }

    /// The columns of a table, or `None` when it does not exist.
    pub async fn table_fields(&self, table: &str) -> Result<Option<Vec<TableFieldSchema>>> {
        let what = format!("looking up table {}.{table}", self.dataset);
        with_retry(&what, |_| async {
            match self
                .client
                .table()
                .get(&self.project, &self.dataset, table, None)
                .await
            {
                Ok(t) => Ok(Some(t.schema.fields().clone().unwrap_or_default())),
                Err(e) if is_status(&e, 404) => Ok(None),
                Err(e) => Err(from_client(&what, e)),
            }
        })
        .await
    }

    /// Sets a table's schema in its metadata (`tables.patch`), after DDL changed its columns
    /// (see `evolve`).
    pub async fn patch_fields(&self, table: &str, fields: Vec<TableFieldSchema>) -> Result<()> {
        let what = format!("updating the schema of table {}.{table}", self.dataset);
        let patch = Table::new(&self.project, &self.dataset, table, BqSchema::new(fields));
        with_retry(&what, |_| async {
            self.client
                .table()
                .patch(&self.project, &self.dataset, table, patch.clone())
                .await
                .map(drop)
                .map_err(|e| from_client(&what, e))
        })
        .await
    }

    /// Creates a table; one that appeared meanwhile is fine.
    pub async fn create_table(&self, table: Table) -> Result<()> {
        let what = format!("creating table {}.{}", self.dataset, table.table_id());
        with_retry(&what, |_| async {
            match self.client.table().create(table.clone()).await {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, 409) => Ok(()),
                Err(e) => Err(from_client(&what, e)),
            }
        })
        .await
    }

    /// Appends rows with `tabledata.insertAll`. Each row carries its `insertId`, so BigQuery
    /// drops the copy a retried request would add (best effort, as BigQuery documents it).
    pub async fn insert_all(
        &self,
        table: &str,
        rows: Vec<TableDataInsertAllRequestRows>,
    ) -> Result<()> {
        let what = format!("appending {} rows to {}.{table}", rows.len(), self.dataset);
        let mut request = TableDataInsertAllRequest::new();
        request
            .add_rows(rows)
            .map_err(|e| Error::sink(format!("{what}: {e}")))?;
        with_retry(&what, |_| async {
            let answer = self
                .client
                .tabledata()
                .insert_all(&self.project, &self.dataset, table, request.clone())
                .await
                .map_err(|e| from_client(&what, e))?;
            check_insert(&what, &answer)
        })
        .await
    }

    /// Runs a query or script to completion and returns the rows of its result. A
    /// `request_id` makes a retried call return the first call's job instead of running
    /// the statement again (BigQuery keeps it for a few minutes).
    pub async fn query(&self, what: &str, sql: &str, request_id: Option<&str>) -> Result<Rows> {
        Ok(self.query_answer(what, sql, request_id).await?.rows)
    }

    /// [`BqClient::query`], with the job's bytes processed.
    pub async fn query_answer(
        &self,
        what: &str,
        sql: &str,
        request_id: Option<&str>,
    ) -> Result<Answer> {
        with_retry(what, |_| self.query_once(what, sql, request_id)).await
    }

    async fn query_once(&self, what: &str, sql: &str, request_id: Option<&str>) -> Result<Answer> {
        let mut request = QueryRequest::new(sql);
        request.location = self.location.clone();
        request.timeout_ms = Some(QUERY_WAIT_MS);
        request.request_id = request_id.map(str::to_string);
        request.use_query_cache = Some(false);
        let answer = self
            .client
            .job()
            .query(&self.project, request)
            .await
            .map_err(|e| from_client(what, e))?;
        check_errors(what, answer.errors.as_ref())?;
        let mut rows = answer.rows;
        let mut bytes_processed = number(answer.total_bytes_processed.as_ref());
        if answer.job_complete != Some(true) {
            let job = answer
                .job_reference
                .and_then(|j| j.job_id)
                .ok_or_else(|| Error::sink(format!("{what}: BigQuery returned no job id")))?;
            (rows, bytes_processed) = self.wait_for_job(what, &job).await?;
        }
        Ok(Answer {
            rows: rows.unwrap_or_default().into_iter().map(cells).collect(),
            bytes_processed,
        })
    }

    /// Polls a job that outlasted the query call until it completes.
    async fn wait_for_job(&self, what: &str, job: &str) -> Result<(Option<Vec<TableRow>>, u64)> {
        loop {
            let parameters = GetQueryResultsParameters {
                location: self.location.clone(),
                timeout_ms: Some(QUERY_WAIT_MS),
                ..Default::default()
            };
            let answer = self
                .client
                .job()
                .get_query_results(&self.project, job, parameters)
                .await
                .map_err(|e| from_client(what, e))?;
            check_errors(what, answer.errors.as_ref())?;
            if answer.job_complete == Some(true) {
                return Ok((answer.rows, number(answer.total_bytes_processed.as_ref())));
            }
        }
    }

    /// The `status` of a job (`state`, `errorResult`, `errors`), as JSON.
    pub async fn job_status(&self, what: &str, job: &str) -> Result<Json> {
        let location = self.location.as_deref();
        with_retry(what, |_| async {
            let job = self
                .client
                .job()
                .get_job(&self.project, job, location)
                .await
                .map_err(|e| from_client(what, e))?;
            serde_json::to_value(job.status).map_err(|e| Error::sink(format!("{what}: {e}")))
        })
        .await
    }

    /// What BigQuery says `sql` is (`SELECT`, `INSERT`, `SCRIPT`, `CREATE_TABLE`, ...), from a
    /// dry run: nothing runs and nothing is billed. An invalid statement is an error.
    pub async fn statement_type(&self, sql: &str) -> Result<String> {
        let what = "checking the statement";
        let query = JobConfigurationQuery {
            query: sql.to_string(),
            use_legacy_sql: Some(false),
            default_dataset: Some(self.dataset_reference()),
            ..Default::default()
        };
        let job = Job {
            configuration: Some(JobConfiguration {
                dry_run: Some(true),
                query: Some(query),
                ..Default::default()
            }),
            ..Default::default()
        };
        let job = with_retry(what, |_| async {
            self.client
                .job()
                .insert(&self.project, job.clone())
                .await
                .map_err(|e| from_client(what, e))
        })
        .await?;
        let statistics = job.statistics.and_then(|s| s.query);
        Ok(statistics
            .and_then(|q| q.statement_type)
            .unwrap_or_default())
    }

    /// Runs a query and hands its result to `page`, one page of at most `page_rows` rows at a
    /// time (memory holds one page), until `page` returns false or the rows end. Timestamps
    /// come as microseconds since the epoch. `stop` is polled between calls (at least every
    /// `poll_ms`): once true, the job is cancelled and the call fails. Not retried: a
    /// half-read result cannot be resumed safely by the caller's callback.
    pub async fn query_pages(
        &self,
        what: &str,
        sql: &str,
        paging: Paging<'_>,
        page: &mut (dyn FnMut(Page) -> Result<bool> + Send),
    ) -> Result<()> {
        let mut request = QueryRequest::new(sql);
        request.location = self.location.clone();
        request.timeout_ms = Some(paging.poll_ms);
        request.max_results = Some(paging.page_rows);
        request.default_dataset = Some(self.dataset_reference());
        request.use_query_cache = Some(false);
        request.format_options = Some(DataFormatOptions {
            use_int64_timestamp: Some(true),
        });
        let answer = self
            .client
            .job()
            .query(&self.project, request)
            .await
            .map_err(|e| from_client(what, e))?;
        check_errors(what, answer.errors.as_ref())?;
        let job = answer
            .job_reference
            .as_ref()
            .and_then(|j| j.job_id.clone())
            .ok_or_else(|| Error::sink(format!("{what}: BigQuery returned no job id")))?;
        let mut next = match answer.job_complete {
            Some(true) => deliver(
                page,
                answer.schema,
                answer.rows,
                answer.total_rows.as_ref(),
                answer.page_token,
            )?,
            _ => Some(None),
        };
        while let Some(token) = next {
            if (paging.stop)() {
                let location = self.location.as_deref();
                let _ = self
                    .client
                    .job()
                    .cancel_job(&self.project, &job, location)
                    .await;
                return Err(Error::sink(format!("{what}: cancelled")));
            }
            let parameters = GetQueryResultsParameters {
                location: self.location.clone(),
                timeout_ms: Some(paging.poll_ms),
                max_results: Some(paging.page_rows),
                page_token: token,
                format_options: Some(DataFormatOptions {
                    use_int64_timestamp: Some(true),
                }),
                ..Default::default()
            };
            let answer = self
                .client
                .job()
                .get_query_results(&self.project, &job, parameters)
                .await
                .map_err(|e| from_client(what, e))?;
            check_errors(what, answer.errors.as_ref())?;
            next = match answer.job_complete {
                Some(true) => deliver(
                    page,
                    answer.schema,
                    answer.rows,
                    answer.total_rows.as_ref(),
                    answer.page_token,
                )?,
                _ => Some(None),
            };
        }
        Ok(())
    }

    /// The dataset, where unqualified table names of a read-only query resolve.
    fn dataset_reference(&self) -> DatasetReference {
        DatasetReference {
            dataset_id: self.dataset.clone(),
            project_id: self.project.clone(),
        }
    }

    /// `project.dataset.table`, quoted for SQL.
    pub fn qualified(&self, table: &str) -> String {
        format!("`{}.{}.{table}`", self.project, self.dataset)
    }
}

/// Hands one page of a complete answer to `page`; returns the next page's token to read
/// (`Some`) or `None` when the rows ended or `page` has enough.
fn deliver(
    page: &mut (dyn FnMut(Page) -> Result<bool> + Send),
    schema: Option<BqSchema>,
    rows: Option<Vec<TableRow>>,
    total_rows: Option<&String>,
    token: Option<String>,
) -> Result<Option<Option<String>>> {
    let more = page(Page {
        fields: schema.and_then(|s| s.fields).unwrap_or_default(),
        rows: rows.unwrap_or_default().into_iter().map(cells).collect(),
        total_rows: number(total_rows),
    })?;
    Ok(token.filter(|_| more).map(Some))
}

fn cells(row: TableRow) -> Vec<Json> {
    row.columns
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.value.unwrap_or(Json::Null))
        .collect()
}

fn is_status(e: &BQError, code: i64) -> bool {
    matches!(e, BQError::ResponseError { error } if error.error.code == code)
}
