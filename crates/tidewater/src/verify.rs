//! `tidewater verify`: the source and the replica compared row by row; exit 0 when equal, 1
//! when not.

use std::path::PathBuf;

use tidewater_core::{Error, Result};
use tidewater_runtime::config::Config;
use tidewater_runtime::verify::{run_somewhere, VerifyRequest};

pub struct VerifyArgs {
    pub config: PathBuf,
    pub tables: Vec<String>,
    pub max_examples: usize,
}

pub async fn verify(args: VerifyArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let request = VerifyRequest {
        tables: args.tables,
        max_examples: args.max_examples,
    };
    let report = run_somewhere(&config, &request).await?;
    crate::stdout::print(&report.render())?;
    match report.differences() {
        0 => Ok(()),
        d => Err(Error::check(format!(
            "the replica differs from the source: {d} difference{} in {} table{}",
            if d == 1 { "" } else { "s" },
            report.tables_differing(),
            if report.tables_differing() == 1 {
                ""
            } else {
                "s"
            }
        ))),
    }
}
