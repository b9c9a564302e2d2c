//! Process-level shutdown: SIGINT and SIGTERM turn into a watch the pipeline and the demo
//! loop select on.

use tokio::sync::watch;
use tracing::info;

/// A watch that turns true on SIGINT or SIGTERM. The handlers are registered before this
/// returns, so a signal that arrives at any later moment is never lost.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        info!("shutdown requested: finishing the open batch");
        let _ = tx.send(true);
    });
    rx
}
