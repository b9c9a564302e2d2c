//! `tidewater query`: one read-only statement on the replica, printed as a table, CSV or JSON.

pub mod render;

use tidewater_core::Result;
use tidewater_runtime::query::QueryArgs;

use render::Format;

pub async fn query(args: QueryArgs, format: Format) -> Result<()> {
    let result = tidewater_runtime::query::query(&args).await?;
    crate::stdout::print(&render::render(&result, format))?;
    if result.truncated && format != Format::Table {
        eprintln!(
            "note: the result was cut at {} rows; raise --limit for more",
            result.rows.len()
        );
    }
    Ok(())
}
