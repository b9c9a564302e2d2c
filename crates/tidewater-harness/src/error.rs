use std::fmt;
use std::time::Duration;

/// Everything that can go wrong while driving a throwaway server.
///
/// Messages name the command involved and carry its stderr (or the tail of
/// the server log) so a failing test explains itself without a rerun.
#[derive(Debug)]
#[non_exhaustive]
pub enum HarnessError {
    /// A binary could not be spawned at all (missing, not executable, ...).
    Spawn {
        command: String,
        source: std::io::Error,
    },
    /// A command ran but exited unsuccessfully.
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// The server did not come up (or exited); includes the log tail.
    Start {
        /// Which server: "PostgreSQL" or "MariaDB".
        server: &'static str,
        reason: String,
        log_tail: String,
    },
    /// A `wait_until` condition did not hold before its deadline.
    Timeout { what: String, timeout: Duration },
    /// Filesystem trouble around the temp directory or log file.
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spawn { command, source } => write!(f, "failed to run `{command}`: {source}"),
            Self::Command {
                command,
                status,
                stderr,
            } => {
                write!(f, "`{command}` failed ({status})")?;
                if !stderr.trim().is_empty() {
                    write!(f, ":\n{}", stderr.trim_end())?;
                }
                Ok(())
            }
            Self::Start {
                server,
                reason,
                log_tail,
            } => write!(
                f,
                "{server} failed to start: {reason}\n--- server log tail ---\n{}",
                log_tail.trim_end()
            ),
            Self::Timeout { what, timeout } => {
                write!(f, "timed out after {timeout:?} waiting for {what}")
            }
            Self::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Spawn { source, .. } | Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
