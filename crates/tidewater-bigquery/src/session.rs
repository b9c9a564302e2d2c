//! `tidewater query` on BigQuery: one read-only statement in the dataset, its result as text.
//!
//! Read-only is BigQuery's own word, not a guess from the text: before it runs, the
//! statement is dry-run (nothing executes, nothing is billed) and runs only when BigQuery
//! calls it a `SELECT`. DML, DDL, scripts (several statements, `BEGIN`, `DECLARE`),
//! `EXPORT DATA` and procedure calls have other statement types and are refused. Unqualified
//! table names resolve in the pipeline's dataset.
//!
//! Memory is bounded by the limit: the result is read page by page (`limit + 1` rows at
//! most) and the job is cancelled when the statement is interrupted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use serde_json::Value as Json;
use tidewater_core::replica::{
    Cells, ColumnKind, Interrupt, Params, QueryError, QueryErrorKind, ReadSession, ResultColumn,
    TextResult,
};
use tidewater_core::time::format_utc_micros;
use tokio::runtime::Handle;

use crate::client::{BqClient, Page, Paging};

/// How long one call waits on BigQuery before the interrupt flag is looked at again.
const POLL_MS: i32 = 1000;

pub struct BqSession {
    rt: Handle,
    client: Arc<BqClient>,
    stop: Arc<AtomicBool>,
}

impl BqSession {
    pub fn new(rt: Handle, client: Arc<BqClient>) -> BqSession {
        BqSession {
            rt,
            client,
            stop: Arc::default(),
        }
    }

    async fn run(&self, sql: &str, limit: usize, cells: Cells) -> Result<TextResult, QueryError> {
        let started = Instant::now();
        let sql_error =
            |e: tidewater_core::Error| QueryError::new(QueryErrorKind::Sql, e.message());
        let kind = self.client.statement_type(sql).await.map_err(sql_error)?;
        if kind != "SELECT" {
            return Err(QueryError::new(
                QueryErrorKind::Refused,
                format!(
                    "only read-only queries run on BigQuery (a SELECT), and BigQuery says this \
                     statement is {}",
                    if kind.is_empty() { "not one" } else { &kind }
                ),
            ));
        }
        let mut columns = Vec::new();
        let mut rows = Vec::new();
        let mut truncated = false;
        let stop = self.stop.clone();
        let stopped = move || stop.load(Ordering::Relaxed);
        let paging = Paging {
            page_rows: i32::try_from(limit + 1).unwrap_or(i32::MAX),
            poll_ms: POLL_MS,
            stop: &stopped,
        };
        let mut take = |page: Page| {
            if columns.is_empty() {
                columns = page.fields;
            }
            for row in page.rows {
                if rows.len() == limit {
                    truncated = true;
                    return Ok(false);
                }
                rows.push(render_row(&columns, row, cells));
            }
            truncated |= page.total_rows > limit as u64;
            Ok(rows.len() < limit)
        };
        let what = "running the query";
        self.client
            .query_pages(what, sql, paging, &mut take)
            .await
            .map_err(|e| {
                if self.stop.load(Ordering::Relaxed) {
                    QueryError::new(QueryErrorKind::Timeout, e.message())
                } else {
                    sql_error(e)
                }
            })?;
        Ok(TextResult {
            columns: columns.iter().map(result_column).collect(),
            rows,
            truncated,
            parameters: 0,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
}

impl ReadSession for BqSession {
    fn query(
        &mut self,
        sql: &str,
        params: &Params,
        limit: usize,
        cells: Cells,
    ) -> Result<TextResult, QueryError> {
        if matches!(params, Params::Values(v) if !v.is_empty()) {
            return Err(QueryError::new(
                QueryErrorKind::Refused,
                "statement parameters are not supported on BigQuery",
            ));
        }
        self.stop.store(false, Ordering::Relaxed);
        self.rt.block_on(self.run(sql, limit, cells))
    }

    fn interrupt(&self) -> Interrupt {
        let stop = self.stop.clone();
        Arc::new(move || stop.store(true, Ordering::Relaxed))
    }
}

fn kind(f: &TableFieldSchema) -> ColumnKind {
    if f.mode.as_deref() == Some("REPEATED") {
        return ColumnKind::Text;
    }
    match f.r#type {
        FieldType::Integer | FieldType::Int64 => ColumnKind::Int64,
        FieldType::Float | FieldType::Float64 => ColumnKind::Float64,
        FieldType::Numeric | FieldType::Bignumeric => ColumnKind::Numeric,
        FieldType::Boolean | FieldType::Bool => ColumnKind::Bool,
        FieldType::Bytes => ColumnKind::Bytes,
        FieldType::Date => ColumnKind::Date,
        FieldType::Datetime => ColumnKind::Timestamp,
        FieldType::Timestamp => ColumnKind::TimestampTz,
        FieldType::Time => ColumnKind::Time,
        _ => ColumnKind::Text,
    }
}

fn result_column(f: &TableFieldSchema) -> ResultColumn {
    let ty = serde_json::to_value(&f.r#type)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let repeated = f.mode.as_deref() == Some("REPEATED");
    ResultColumn {
        name: f.name.clone(),
        type_name: if repeated { format!("ARRAY<{ty}>") } else { ty },
        kind: kind(f),
    }
}

fn render_row(fields: &[TableFieldSchema], row: Vec<Json>, cells: Cells) -> Vec<Option<String>> {
    row.into_iter()
        .zip(fields)
        .map(|(cell, f)| {
            if cell.is_null() {
                return None;
            }
            let json = value(f, cell);
            Some(match (cells, json) {
                (Cells::Text, Json::String(s)) => s,
                (_, json) => json.to_string(),
            })
        })
        .collect()
}

/// A cell as a JSON value: numbers as numbers (decimals as strings, to stay exact), bytes
/// as hex, timestamps as text, arrays and records as arrays and objects.
fn value(f: &TableFieldSchema, cell: Json) -> Json {
    if f.mode.as_deref() == Some("REPEATED") {
        let scalar = TableFieldSchema {
            mode: None,
            ..f.clone()
        };
        let items = match cell {
            Json::Array(items) => items,
            other => vec![other],
        };
        let items = items.into_iter().map(|v| match v {
            Json::Object(mut o) => value(&scalar, o.remove("v").unwrap_or(Json::Null)),
            other => value(&scalar, other),
        });
        return Json::Array(items.collect());
    }
    if let Some(children) = f.fields.as_ref().filter(|_| is_record(f)) {
        let cells = match cell {
            Json::Object(mut o) => match o.remove("f") {
                Some(Json::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let object = children.iter().zip(cells).map(|(child, v)| {
            let v = match v {
                Json::Object(mut o) => o.remove("v").unwrap_or(Json::Null),
                other => other,
            };
            (child.name.clone(), value(child, v))
        });
        return Json::Object(object.collect());
    }
    let Json::String(text) = cell else {
        return cell;
    };
    let parsed = match f.r#type {
        FieldType::Integer | FieldType::Int64 => text.parse::<i64>().ok().map(Json::from),
        FieldType::Float | FieldType::Float64 => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number),
        FieldType::Boolean | FieldType::Bool => text.parse::<bool>().ok().map(Json::Bool),
        FieldType::Bytes => base64::engine::general_purpose::STANDARD
            .decode(&text)
            .ok()
            .map(|b| Json::String(b.iter().map(|x| format!("{x:02x}")).collect())),
        FieldType::Timestamp => text
            .parse::<i64>()
            .ok()
            .map(|us| Json::String(format!("{}:00", format_utc_micros(us)))),
        FieldType::Datetime => Some(Json::String(text.replacen('T', " ", 1))),
        FieldType::Json => serde_json::from_str(&text).ok(),
        _ => None,
    };
    parsed.unwrap_or(Json::String(text))
}

fn is_record(f: &TableFieldSchema) -> bool {
    matches!(f.r#type, FieldType::Record | FieldType::Struct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str, t: FieldType, repeated: bool) -> TableFieldSchema {
        let mut f = TableFieldSchema::new(name, t);
        f.mode = Some(if repeated { "REPEATED" } else { "NULLABLE" }.into());
        f
    }

    #[test]
    fn cells_render_as_the_endpoints_expect() {
        let fields = vec![
            field("n", FieldType::Integer, false),
            field("d", FieldType::Numeric, false),
            field("b", FieldType::Bytes, false),
            field("ts", FieldType::Timestamp, false),
            field("dt", FieldType::Datetime, false),
            field("tags", FieldType::Integer, true),
            field("s", FieldType::String, false),
            field("gone", FieldType::String, false),
        ];
        let row = vec![
            json!("5"),
            json!("1.50"),
            json!("AP8="),
            json!("1704164645500000"),
            json!("2024-01-02T03:04:05"),
            json!([{"v": "1"}, {"v": "2"}]),
            json!("text"),
            Json::Null,
        ];
        let json = render_row(&fields, row.clone(), Cells::Json);
        let json: Vec<Option<&str>> = json.iter().map(Option::as_deref).collect();
        assert_eq!(
            json,
            [
                Some("5"),
                Some("\"1.50\""),
                Some("\"00ff\""),
                Some("\"2024-01-02 03:04:05.500000+00:00\""),
                Some("\"2024-01-02 03:04:05\""),
                Some("[1,2]"),
                Some("\"text\""),
                None
            ]
        );
        let text = render_row(&fields, row, Cells::Text);
        assert_eq!(text[1].as_deref(), Some("1.50"));
        assert_eq!(text[6].as_deref(), Some("text"));
        assert_eq!(kind(&fields[3]), ColumnKind::TimestampTz);
        assert_eq!(result_column(&fields[5]).type_name, "ARRAY<INTEGER>");
    }
}
