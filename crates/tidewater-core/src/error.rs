//! One error type for the whole pipeline, classified once: `kind` decides the exit code
//! and whether `run` retries.

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
    message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
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
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::SourceRetryable | ErrorKind::SinkRetryable
        )
    }
    /// Exit code per ARCHITECTURE.md: 1 check/verify, 2 usage/config, 3 source/destination.
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
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
