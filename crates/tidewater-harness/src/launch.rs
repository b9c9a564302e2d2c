//! Starting a server process on a free port and waiting, with a deadline,
//! until it is ready; retrying when another process took the port first.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bins::describe;
use crate::instance::Instance;
use crate::{free_port, HarnessError};

pub(crate) const HOST: &str = "127.0.0.1";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const START_ATTEMPTS: usize = 3;

/// Why a single launch attempt failed; only a lost port race is worth retrying.
pub(crate) enum Launch {
    PortTaken(HarnessError),
    Fatal(HarnessError),
}

impl Launch {
    pub(crate) fn into_error(self) -> HarnessError {
        match self {
            Self::PortTaken(e) | Self::Fatal(e) => e,
        }
    }
}

/// One kind of throwaway server, as far as launching it goes.
pub(crate) trait Launchable {
    /// The server program, for messages: "postgres", "mariadbd".
    const PROGRAM: &'static str;
    /// What ready means, for the timeout error: "accepting connections".
    const READY_MEANS: &'static str;
    /// Give up as soon as the log shows the port was taken, rather than
    /// waiting for the server to exit (which `mariadbd` takes a while to do).
    const QUIT_ON_PORT_TAKEN: bool;

    fn instance(&self) -> &Instance;
    fn instance_mut(&mut self) -> &mut Instance;
    /// The command line that runs the server on `instance().port`.
    fn server_command(&self) -> Command;
    /// Whether `log`, written since the launch, shows a lost race for the port.
    fn port_taken(log: &str) -> bool;
    /// Whether the server answers, and it is ours; `log` as for `port_taken`.
    fn is_ready(&self, log: &str) -> bool;
    /// Stops the server at once (like a crash), as `stop()` does.
    fn stop_now(&mut self) -> Result<(), HarnessError>;
}

/// Launches `server` on a free port, trying another one when the port
/// turns out to be taken.
pub(crate) fn start_on_free_port<S: Launchable>(mut server: S) -> Result<S, HarnessError> {
    let mut last = None;
    for attempt in 1..=START_ATTEMPTS {
        server.instance_mut().port = free_port();
        match launch(&mut server) {
            Ok(()) => return Ok(server),
            Err(Launch::Fatal(e)) => return Err(e),
            Err(Launch::PortTaken(e)) => {
                let port = server.instance().port;
                tracing::debug!(attempt, port, "port taken, retrying");
                last = Some(e);
            }
        }
    }
    Err(last.expect("at least one attempt"))
}

/// Stops `server` with `shutdown`, then launches it again on the same port.
pub(crate) fn restart<S: Launchable>(
    server: &mut S,
    shutdown: impl FnOnce(&mut S) -> Result<(), HarnessError>,
) -> Result<(), HarnessError> {
    let started = Instant::now();
    shutdown(server)?;
    launch(server).map_err(Launch::into_error)?;
    let port = server.instance().port;
    tracing::debug!(elapsed = ?started.elapsed(), port, "restarted");
    Ok(())
}

/// What a server's `Drop` does: stop it at once, warning if that fails.
pub(crate) fn stop_on_drop<S: Launchable>(server: &mut S) {
    if let Err(e) = server.stop_now() {
        let server = server.instance().server;
        tracing::warn!(error = %e, "failed to stop throwaway {server}");
    }
}

/// Spawns the server on its port, output to its log, and waits until it is ready.
pub(crate) fn launch<S: Launchable>(server: &mut S) -> Result<(), Launch> {
    let log_offset = server.instance().log_len();
    let (stdout, stderr) = server.instance().log_outputs().map_err(Launch::Fatal)?;
    let mut cmd = server.server_command();
    cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    let started = Instant::now();
    let command = describe(&cmd);
    let child = cmd
        .spawn()
        .map_err(|source| Launch::Fatal(HarnessError::Spawn { command, source }))?;
    server.instance_mut().child = Some(child);

    let deadline = started + READY_TIMEOUT;
    loop {
        let instance = server.instance_mut();
        let port = instance.port;
        let child = instance.child.as_mut().expect("just spawned");
        let exited = child.try_wait().ok().flatten();
        let log = instance.log_since(log_offset);
        let port_taken = S::port_taken(&log);
        if exited.is_some() || (port_taken && S::QUIT_ON_PORT_TAKEN) {
            let _ = server.stop_now();
            let program = S::PROGRAM;
            let reason = match exited {
                Some(status) => format!("{program} on port {port} exited with {status}"),
                None => format!("{program} could not bind port {port}; killed it"),
            };
            let err = server.instance().start_error(reason, log_offset);
            return Err(if port_taken {
                Launch::PortTaken(err)
            } else {
                Launch::Fatal(err)
            });
        }
        if server.is_ready(&log) {
            tracing::debug!(elapsed = ?started.elapsed(), port, "{} ready", S::PROGRAM);
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = server.stop_now();
            let reason = format!("not {} after {READY_TIMEOUT:?}", S::READY_MEANS);
            return Err(Launch::Fatal(
                server.instance().start_error(reason, log_offset),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The retry in [`start_on_free_port`] hinges on recognising a lost bind
/// race: relaunching the running `server` on a squatted port must fail as
/// `PortTaken`, with `expected` in the error, and leave no process behind.
#[cfg(test)]
pub(crate) fn assert_taken_port_is_retryable<S: Launchable>(mut server: S, expected: &str) {
    server.stop_now().unwrap();
    let squatter = std::net::TcpListener::bind((HOST, 0)).unwrap();
    server.instance_mut().port = squatter.local_addr().unwrap().port();
    match launch(&mut server) {
        Err(Launch::PortTaken(e)) => assert!(e.to_string().contains(expected), "{e}"),
        Err(Launch::Fatal(e)) => panic!("expected PortTaken, got fatal: {e}"),
        Ok(()) => panic!("started on a taken port"),
    }
    assert!(server.instance().child.is_none());
}
