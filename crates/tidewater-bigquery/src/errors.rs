//! BigQuery failures, classified once: which are worth retrying (rate limits, quotas, 5xx,
//! network) and which stop the pipeline with a message naming the fix (permissions, missing
//! objects, schema and SQL errors).
//!
//! BigQuery reports many failures inside a 200 response: a query's `errors` array, an
//! insertAll's per-row `insertErrors`. Those are never success.

use std::future::Future;
use std::time::{Duration, Instant};

use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::error_proto::ErrorProto;
use gcp_bigquery_client::model::table_data_insert_all_response::TableDataInsertAllResponse;
use tidewater_core::{Error, ErrorKind, Result};

/// How long one call is retried before the error goes to the pipeline (which then resumes
/// from the committed position with its own backoff).
const RETRY_FOR: Duration = Duration::from_secs(120);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(16);

/// `reason` values of BigQuery's error objects that go away by themselves.
const RETRYABLE_REASONS: &[&str] = &[
    "backendError",
    "internalError",
    "rateLimitExceeded",
    "quotaExceeded",
    "jobRateLimitExceeded",
    "jobBackendError",
    "jobInternalError",
    "tableUnavailable",
    "timeout",
];

/// What an error needs: a retry, or a person.
fn classify(reason: &str, message: &str) -> ErrorKind {
    // Two transactions touched the same table: BigQuery aborts one; it can run again.
    let conflict = message.contains("concurrent update") || message.contains("aborted due to");
    // DML cannot touch rows streamed in the last ~30 minutes yet; they become deletable.
    let streaming = message.contains("streaming buffer");
    if RETRYABLE_REASONS.contains(&reason) || conflict || streaming {
        ErrorKind::SinkRetryable
    } else {
        ErrorKind::Sink
    }
}

/// The fix for an error, from its reason and message (BigQuery names the quota or the
/// missing permission only in the message: "Quota exceeded: Your table exceeded quota for
/// ...", "User does not have bigquery.jobs.create permission in project p.").
fn hint(reason: &str, message: &str) -> Option<&'static str> {
    let has = |s: &str| message.contains(s);
    Some(match reason {
        "quotaExceeded" | "rateLimitExceeded" if has("DML") => {
            "too many DML statements against one table (BigQuery runs 2 and queues 20 per \
             table): raise [sink] merge_interval_ms so that fewer commits run, and check that \
             nothing else writes the replica tables"
        }
        "quotaExceeded" if has("per day") || has("daily") => {
            "a daily BigQuery quota of the project is used up (it refills over 24 hours): raise \
             [sink] merge_interval_ms so that fewer jobs run, or ask for a higher quota in the \
             Google Cloud console (IAM & Admin > Quotas); tidewater retries meanwhile"
        }
        "quotaExceeded" | "rateLimitExceeded" if has("table") => {
            "too many changes of one table: raise [sink] merge_interval_ms so that fewer \
             commits run; tidewater retries meanwhile"
        }
        "quotaExceeded" => {
            "a BigQuery quota of the project is used up (the message names it): raise [sink] \
             merge_interval_ms, or ask for a higher quota in the Google Cloud console (IAM & \
             Admin > Quotas); tidewater retries meanwhile"
        }
        "accessDenied" | "forbidden" if has("bigquery.jobs.create") => {
            "grant the service account roles/bigquery.jobUser on the project (tidewater's \
             commits and reads are query jobs)"
        }
        "accessDenied" | "forbidden" if has("bigquery.datasets.create") => {
            "create the dataset (in [sink] location), or grant the service account \
             roles/bigquery.dataEditor on the project so that tidewater creates it"
        }
        "accessDenied" | "forbidden" => {
            "the credentials lack a permission: grant roles/bigquery.dataEditor on the dataset \
             and roles/bigquery.jobUser on the project, see the README's BigQuery section"
        }
        "notFound" if has("Dataset") => {
            "the dataset does not exist, or is in another location: check [sink] project, \
             dataset and location (tidewater creates a missing dataset at start)"
        }
        "notFound" => "check [sink] project and dataset, and the location",
        "billingNotEnabled" => "enable billing on the project",
        "invalid" | "invalidQuery" => {
            "a schema or SQL error: if a replica or _log table was changed by hand, restore it \
             or drop it with the _tidewater_state table to take a new snapshot"
        }
        _ => return None,
    })
}

/// An error from the objects BigQuery returns (`errors` arrays); the first one decides.
pub fn from_protos(what: &str, errors: &[ErrorProto]) -> Error {
    let first = errors.first();
    let reason = first.and_then(|e| e.reason.as_deref()).unwrap_or("");
    let messages: Vec<&str> = errors
        .iter()
        .filter_map(|e| e.message.as_deref())
        .take(3)
        .collect();
    let message = messages.join("; ");
    let kind = classify(reason, &message);
    let e = Error::new(kind, format!("{what}: {message} [{reason}]"));
    typed(with_hint(e, hint(reason, &message)), &message)
}

fn with_hint(e: Error, fix: Option<&str>) -> Error {
    match fix {
        Some(fix) => e.with_fix(fix),
        None => e,
    }
}

/// The commit script's guard stopped it: the state row no longer holds the ordinal this
/// process last committed (`merge::STATE_MOVED`). Carried as the error's source, so that the
/// sink tells it apart without reading message text.
#[derive(Debug)]
pub struct StateMoved;

impl std::fmt::Display for StateMoved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the pipeline state moved")
    }
}

impl std::error::Error for StateMoved {}

/// Whether `e` is the commit guard's refusal ([`StateMoved`]).
pub fn is_state_moved(e: &Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<StateMoved>())
}

/// BigQuery's `ERROR()` reaches us only as message text: the marker our own guard raises is
/// recognised here, where the answer arrives, and from then on travels typed.
fn typed(e: Error, remote_message: &str) -> Error {
    if remote_message.contains(crate::merge::STATE_MOVED) {
        e.with_source(StateMoved)
    } else {
        e
    }
}

/// A query or job answer carrying `errors` is a failure, whatever its HTTP status was.
pub fn check_errors(what: &str, errors: Option<&Vec<ErrorProto>>) -> Result<()> {
    match errors {
        Some(errors) if !errors.is_empty() => Err(from_protos(what, errors)),
        _ => Ok(()),
    }
}

/// insertAll answers 200 even when rows were refused; every refused row is an error.
pub fn check_insert(what: &str, response: &TableDataInsertAllResponse) -> Result<()> {
    let Some(failed) = response.insert_errors.as_ref().filter(|e| !e.is_empty()) else {
        return Ok(());
    };
    let protos: Vec<ErrorProto> = failed
        .iter()
        .flat_map(|row| row.errors.clone().unwrap_or_default())
        // BigQuery marks the rows of a request that failed only because another row did.
        .filter(|e| e.reason.as_deref() != Some("stopped"))
        .collect();
    let first_row = failed.first().and_then(|r| r.index).unwrap_or(0);
    let what = format!(
        "{what}: {} rows refused, first row {first_row}",
        failed.len()
    );
    if protos.is_empty() {
        return Err(Error::sink(format!("{what} (no reason given)")));
    }
    Err(from_protos(&what, &protos))
}

/// An error of the client library: transport problems and HTTP error answers.
pub fn from_client(what: &str, e: BQError) -> Error {
    match e {
        BQError::ResponseError { error } => {
            let nested = &error.error;
            let reason = nested
                .errors
                .first()
                .and_then(|e| e.get("reason"))
                .map(String::as_str)
                .unwrap_or("");
            let code = nested.code;
            let mut kind = classify(reason, &nested.message);
            if code == 429 || code >= 500 {
                kind = ErrorKind::SinkRetryable;
            }
            let mut fix = hint(reason, &nested.message);
            if code == 401 {
                fix = Some(
                    "the credentials were rejected: check the [sink] credentials key file, or \
                     the application-default credentials",
                );
            }
            let e = Error::new(
                kind,
                format!("{what}: HTTP {code}: {} [{reason}]", nested.message),
            );
            typed(with_hint(e, fix), &nested.message)
        }
        BQError::RequestError(r) => {
            // Connection refused/reset, timeouts: the network or the service is away.
            let kind = if r.is_connect() || r.is_timeout() || r.is_request() || r.is_body() {
                ErrorKind::SinkRetryable
            } else {
                ErrorKind::Sink
            };
            Error::new(kind, format!("{what}: {r}"))
        }
        BQError::AuthError(_) | BQError::YupAuthError(_) | BQError::NoToken => {
            Error::sink(format!("{what}: getting an access token failed ({e})")).with_fix(
                "check the [sink] credentials key file, or the application-default credentials \
                 (GOOGLE_APPLICATION_CREDENTIALS, gcloud auth application-default login, or the \
                 metadata server)",
            )
        }
        other => Error::sink(format!("{what}: {other}")),
    }
}

/// Runs `call` until it succeeds, fails with an error that is not retryable, or has been
/// retried for [`RETRY_FOR`] (then its last error is returned, still retryable).
pub async fn with_retry<T, F, Fut>(what: &str, mut call: F) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    loop {
        match call(attempt).await {
            Err(e) if e.is_retryable() && started.elapsed() + backoff < RETRY_FOR => {
                tracing::warn!(error = %e, retry_in = ?backoff, "{what}: retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcp_bigquery_client::model::table_data_insert_all_response_insert_errors::TableDataInsertAllResponseInsertErrors;

    fn proto(reason: &str, message: &str) -> ErrorProto {
        ErrorProto {
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..Default::default()
        }
    }

    /// What the emulator (and BigQuery, for scripts) answers with HTTP 200.
    const FAILED_QUERY_200: &str = r#"{"kind":"bigquery#queryResponse","jobReference":{"projectId":"p","jobId":"j"},"jobComplete":true,"totalBytesProcessed":"0","schema":{"fields":[]},"rows":[],"totalRows":"0","errors":[{"reason":"invalidQuery","message":"Query execution failed: Binder Error: Referenced column \"nosuchcol\" not found","location":"query"}]}"#;

    #[test]
    fn a_200_answer_with_errors_is_an_error() {
        use gcp_bigquery_client::model::query_response::QueryResponse;
        let answer: QueryResponse = serde_json::from_str(FAILED_QUERY_200).unwrap();
        assert_eq!(answer.job_complete, Some(true));
        let e = check_errors("merging", answer.errors.as_ref()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Sink);
        assert!(e.to_string().contains("nosuchcol"), "{e}");
        assert!(e.to_string().contains("schema or SQL error"), "{e}");
        let fine: QueryResponse =
            serde_json::from_str(r#"{"jobComplete":true,"errors":[]}"#).unwrap();
        check_errors("merging", fine.errors.as_ref()).unwrap();
    }

    #[test]
    fn refused_rows_are_an_error_and_quota_is_retryable() {
        let ok: TableDataInsertAllResponse = serde_json::from_str(
            r#"{"kind":"bigquery#tableDataInsertAllResponse","insertErrors":[]}"#,
        )
        .unwrap();
        check_insert("appending", &ok).unwrap();
        let refused: TableDataInsertAllResponse = serde_json::from_str(
            r#"{"insertErrors":[{"index":3,"errors":[{"reason":"invalid","message":"no such field: x"}]},
                {"index":4,"errors":[{"reason":"stopped","message":""}]}]}"#,
        )
        .unwrap();
        let e = check_insert("appending", &refused).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Sink);
        assert!(e.to_string().contains("no such field: x"), "{e}");
        assert!(e.to_string().contains("first row 3"), "{e}");
        let throttled = TableDataInsertAllResponse {
            insert_errors: Some(vec![TableDataInsertAllResponseInsertErrors {
                index: Some(0),
                errors: Some(vec![proto("rateLimitExceeded", "slow down")]),
            }]),
            kind: None,
        };
        assert!(check_insert("appending", &throttled)
            .unwrap_err()
            .is_retryable());
        let denied = from_protos("merging", &[proto("accessDenied", "no")]);
        assert!(!denied.is_retryable());
        assert!(denied.to_string().contains("roles/bigquery.dataEditor"));
        assert!(from_protos(
            "merging",
            &[proto(
                "invalidQuery",
                "Transaction is aborted due to concurrent update"
            )]
        )
        .is_retryable());
    }

    /// HTTP error answers as BigQuery sends them (docs: "Troubleshoot quota and limit
    /// errors", "Error messages"): the status, `errors[].reason`, and the message naming the
    /// quota or permission.
    fn http_error(code: i64, reason: &str, message: &str) -> Error {
        let body = serde_json::json!({"error": {"code": code, "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
            "status": "PERMISSION_DENIED"}});
        let error = serde_json::from_value(body).unwrap();
        from_client("committing", BQError::ResponseError { error })
    }

    #[test]
    fn quota_permission_and_missing_dataset_errors_name_the_fix() {
        let dml = http_error(
            400,
            "quotaExceeded",
            "Resources exceeded during query execution: Too many DML statements outstanding \
             against table p:d.public_t, limit is 20.",
        );
        assert!(dml.is_retryable());
        assert!(dml.fix().unwrap().contains("merge_interval_ms"), "{dml:?}");
        let daily = http_error(
            403,
            "quotaExceeded",
            "Quota exceeded: Your project exceeded quota for query jobs per day. For more \
             information, see https://cloud.google.com/bigquery/docs/troubleshoot-quotas",
        );
        assert!(daily.is_retryable());
        assert!(
            daily.fix().unwrap().contains("refills over 24 hours"),
            "{daily:?}"
        );
        let table = http_error(
            403,
            "rateLimitExceeded",
            "Exceeded rate limits: too many table update operations for this table.",
        );
        assert!(table.is_retryable());
        assert!(table.fix().unwrap().contains("one table"), "{table:?}");
        let jobs = http_error(
            403,
            "accessDenied",
            "Access Denied: Project p: User does not have bigquery.jobs.create permission in \
             project p.",
        );
        assert!(!jobs.is_retryable());
        assert!(
            jobs.fix().unwrap().contains("roles/bigquery.jobUser"),
            "{jobs:?}"
        );
        let create = http_error(
            403,
            "accessDenied",
            "Access Denied: Project p: User does not have bigquery.datasets.create permission \
             in project p.",
        );
        assert!(
            create.fix().unwrap().contains("create the dataset"),
            "{create:?}"
        );
        let missing = http_error(404, "notFound", "Not found: Dataset p:replica");
        assert!(!missing.is_retryable());
        assert!(missing
            .fix()
            .unwrap()
            .contains("[sink] project, dataset and location"));
        assert!(missing
            .message()
            .contains("HTTP 404: Not found: Dataset p:replica"));
    }

    #[test]
    fn retries_stop_at_the_first_fatal_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let attempts = std::cell::Cell::new(0);
        let r: Result<()> = rt.block_on(with_retry("x", |n| {
            attempts.set(n + 1);
            async move {
                Err(if n < 2 {
                    Error::sink_retryable("busy")
                } else {
                    Error::sink("denied")
                })
            }
        }));
        assert_eq!(r.unwrap_err().to_string(), "denied");
        assert_eq!(attempts.get(), 3);
    }
}
