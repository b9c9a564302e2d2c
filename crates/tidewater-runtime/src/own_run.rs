//! `tidewater check` while this config's own `run` is running. The source then shows a
//! reader in use: the PostgreSQL slot is active (held by a walsender), the MySQL server_id
//! belongs to a connected replica. Those items are failures (or warnings) when some other
//! process holds them, and advice such as `pg_terminate_backend` would kill the pipeline
//! itself. When the replica's status file names a live `tidewater run` (the one writer of
//! this replica, see `single_writer`), that run is the holder: the item is reported as
//! running, not failed.

use tidewater_core::check::{ok, CheckItem, CheckStatus};

use crate::config::Config;
use crate::status_file::read_published;

/// The pid of the live `tidewater run` writing this config's replica, if one runs.
pub fn live_run(config: &Config) -> Option<u32> {
    read_published(config.sink.local_file()?)?.pid
}

/// Rewrites the "in use" items of `items` when they are this config's own running pipeline.
pub fn recognise(items: &mut [CheckItem], config: &Config) {
    let Some(pid) = live_run(config) else {
        return;
    };
    for item in items.iter_mut().filter(|i| held_by_a_reader(i)) {
        *item = ok(
            item.name.clone(),
            format!(
                "{}: this config's `tidewater run` (pid {pid}), running",
                item.detail
            ),
        );
    }
}

/// The items that report the source's reader as taken (see the source crates' checks).
pub(crate) fn held_by_a_reader(item: &CheckItem) -> bool {
    item.reader_in_use && item.status != CheckStatus::Ok
}
