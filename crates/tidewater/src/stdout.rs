//! Command output on stdout. `print!` panics when the reader has gone away
//! (`tidewater status | head -1`: "failed printing to stdout: Broken pipe", exit 101); a
//! command's output ends quietly instead, with exit 0, as `ls | head` does.

use std::io::{ErrorKind, Write};

use tidewater_core::{Error, Result};

/// Writes `text` to stdout and flushes it. A closed pipe is not an error: the reader has
/// what it wanted. Any other write failure (a full disk behind a redirect) is one.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::sink(format!(
            "writing the output failed: {e}; check where stdout is redirected to"
        ))),
    }
}
