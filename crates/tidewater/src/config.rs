//! `tidewater config --print-defaults`: every config key of every source and sink type with
//! its default, as a commented `tidewater.toml` (`tidewater_runtime::config_template`).

use tidewater_core::Result;

use crate::stdout;

pub fn print_defaults() -> Result<()> {
    stdout::print(&tidewater_runtime::config_template::print_defaults())
}
