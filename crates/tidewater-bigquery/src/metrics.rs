//! The BigQuery sink's own `/metrics` (`tidewater_core::replica::SinkMetrics`): the bytes
//! its commit transactions processed, which on-demand pricing bills.

use tidewater_core::replica::{SinkMetric, SinkMetrics};

use crate::cost::BqCost;

impl SinkMetrics for BqCost {
    fn metrics(&self) -> Vec<SinkMetric> {
        vec![
            SinkMetric {
                name: "tidewater_bigquery_bytes_processed_total",
                counter: true,
                help: "Bytes BigQuery processed in this process's commit transactions (what on-demand pricing bills).",
                samples: vec![(None, self.bytes_processed_total())],
            },
            SinkMetric {
                name: "tidewater_bigquery_last_merge_bytes",
                counter: false,
                help: "Bytes processed by the last commit transaction that MERGEd into the table.",
                samples: self
                    .last_merge_bytes()
                    .into_iter()
                    .map(|(table, bytes)| (Some(("table", table)), bytes))
                    .collect(),
            },
        ]
    }
}
