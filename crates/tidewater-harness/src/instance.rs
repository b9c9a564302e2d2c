//! What every throwaway server has: a temp dir with its log and socket dir,
//! a port, and (while running) a process.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Child;

use tempfile::TempDir;

use crate::HarnessError;

/// `sun_path` is 108 bytes including the NUL terminator.
const MAX_SOCKET_PATH: usize = 107;

pub(crate) struct Instance {
    /// Which server, for errors: "PostgreSQL" or "MariaDB".
    pub(crate) server: &'static str,
    pub(crate) port: u16,
    /// The server process (or the wrapper running it); `None` while stopped.
    pub(crate) child: Option<Child>,
    /// `data/` in the temp dir, for the server to fill.
    pub(crate) data_dir: PathBuf,
    pub(crate) sock_dir: PathBuf,
    pub(crate) log_path: PathBuf,
    /// Declared last: dropped after the server's `Drop::drop` has stopped it.
    tmp: TempDir,
}

impl Instance {
    /// A fresh `/tmp/<prefix>XXXXXX` holding an empty `sock/` (refused when
    /// `sock/<socket_file>` would be too long for a unix socket) and an
    /// empty `server.log`; `data/` is not created. The port is 0 until set.
    pub(crate) fn create(
        server: &'static str,
        prefix: &str,
        socket_file: &str,
    ) -> Result<Self, HarnessError> {
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(short_tmp_root())
            .map_err(HarnessError::io("creating temp dir"))?;
        let sock_dir = tmp.path().join("sock");
        let socket = sock_dir.join(socket_file);
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(HarnessError::Start {
                server,
                reason: format!("socket {} is too long for a unix socket", socket.display()),
                log_tail: String::new(),
            });
        }
        fs::create_dir(&sock_dir).map_err(HarnessError::io("creating socket dir"))?;
        let log_path = tmp.path().join("server.log");
        File::create(&log_path).map_err(HarnessError::io("creating server log"))?;
        Ok(Self {
            server,
            port: 0,
            child: None,
            data_dir: tmp.path().join("data"),
            sock_dir,
            log_path,
            tmp,
        })
    }

    /// The temp dir; everything of the server's lives below it.
    pub(crate) fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// How far the log has got: pass it to [`log_since`](Self::log_since).
    pub(crate) fn log_len(&self) -> u64 {
        fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0)
    }

    /// Two appending handles on the log, for the server's stdout and stderr.
    pub(crate) fn log_outputs(&self) -> Result<(File, File), HarnessError> {
        let opening = HarnessError::io("opening server log");
        let log = OpenOptions::new().append(true).open(&self.log_path);
        let both = log.and_then(|log| Ok((log.try_clone()?, log)));
        both.map_err(opening)
    }

    /// Everything written to the log since byte `offset`.
    pub(crate) fn log_since(&self, offset: u64) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.seek(SeekFrom::Start(offset));
            let mut bytes = Vec::new();
            let _ = f.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    }

    /// A [`HarnessError::Start`] carrying the last 40 log lines since `offset`.
    pub(crate) fn start_error(&self, reason: String, offset: u64) -> HarnessError {
        let text = self.log_since(offset);
        let lines: Vec<&str> = text.lines().collect();
        HarnessError::Start {
            server: self.server,
            reason,
            log_tail: lines[lines.len().saturating_sub(40)..].join("\n"),
        }
    }

    /// The fields a server's `Debug` shows.
    pub(crate) fn debug(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("running", &self.child.is_some())
            .finish()
    }
}

/// `/tmp` keeps the socket path short even when `TMPDIR` is deep.
fn short_tmp_root() -> PathBuf {
    let tmp = Path::new("/tmp");
    if tmp.is_dir() {
        tmp.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
