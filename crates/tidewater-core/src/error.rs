//! One error type for the whole pipeline, classified once: `kind` decides the exit code
//! and whether `run` retries. What the user should do about it travels in `fix`, never inside
//! the message text, so that `check`, the command line and the logs show it without parsing.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad configuration or usage: never retried (exit code 2).
    Config,
    /// A failed preflight check or verification (exit code 1).
    Check,
    /// Source problem that will not go away by retrying (missing privilege, bad password,
    /// wal_level, schema problem): stop with the message (exit code 3).
    SourceFatal,
    /// Source problem that may go away (connection lost, server restart): retried with backoff.
    SourceRetryable,
    /// Destination problem (exit code 3); never retried because it is rarely transient for a
    /// local file and a retry could hide corruption.
    Sink,
    /// Destination problem that may go away (a remote warehouse's rate limit, 5xx or network
    /// error that outlasted the sink's own retries): `run` resumes from the committed position
    /// with backoff, like a retryable source error.
    SinkRetryable,
    /// Shutdown requested (SIGINT/SIGTERM).
    Shutdown,
}

#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    /// What went wrong (with the context it happened in).
    message: String,
    /// What to run or change, when the code that found the problem knows.
    fix: Option<String>,
    /// The underlying error, kept for `std::error::Error::source`.
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            fix: None,
            source: None,
        }
    }
    /// The same error with what to do about it.
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
    /// The same error caused by `source`.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn check(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Check, message)
    }
    pub fn source_fatal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::SourceFatal, message)
    }
    pub fn source_retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::SourceRetryable, message)
    }
    pub fn sink(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Sink, message)
    }
    pub fn sink_retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::SinkRetryable, message)
    }
    pub fn shutdown() -> Self {
        Self::new(ErrorKind::Shutdown, "shutdown requested")
    }
    /// What went wrong, without the fix.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// What to run or change, if known.
    pub fn fix(&self) -> Option<&str> {
        self.fix.as_deref()
    }
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::SourceRetryable | ErrorKind::SinkRetryable
        )
    }
    /// Exit code (README.md "Commands"): 1 check/verify, 2 usage/config, 3 source/destination.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Check => 1,
            ErrorKind::Config => 2,
            ErrorKind::SourceFatal
            | ErrorKind::SourceRetryable
            | ErrorKind::Sink
            | ErrorKind::SinkRetryable => 3,
            ErrorKind::Shutdown => 0,
        }
    }
    /// Adds context in front of the message, keeping the kind.
    pub fn context(self, what: impl fmt::Display) -> Self {
        Error {
            message: format!("{what}: {}", self.message),
            ..self
        }
    }
}

/// The message, then `; fix: ...` when there is a fix (one line, for logs).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_is_a_field_shown_after_the_message() {
        let e = Error::source_fatal("wal_level is replica").with_fix("set wal_level = logical");
        assert_eq!(e.message(), "wal_level is replica");
        assert_eq!(e.fix(), Some("set wal_level = logical"));
        assert_eq!(
            e.to_string(),
            "wal_level is replica; fix: set wal_level = logical"
        );
        let e = e.context("connecting");
        assert_eq!(e.message(), "connecting: wal_level is replica");
        assert_eq!(e.fix(), Some("set wal_level = logical"));
        assert_eq!(Error::sink("x").to_string(), "x");
    }
}
