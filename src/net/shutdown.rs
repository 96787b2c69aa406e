//! Graceful shutdown on Ctrl-C and SIGTERM.
//!
//! A server runs with a [`CancellationToken`]; the first signal cancels it, the
//! server stops accepting, tells its connections and returns once they are done.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Resolves when the process receives SIGINT (Ctrl-C) or SIGTERM.
pub async fn signalled() {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot listen for signals; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}

/// Runs `server` to completion, cancelling `shutdown` on the first signal so the
/// server can wind down, and returns what the server returns.
pub async fn run_until_signalled<F: Future>(server: F, shutdown: CancellationToken) -> F::Output {
    tokio::pin!(server);
    tokio::select! {
        output = &mut server => return output,
        _ = signalled() => {
            tracing::info!("shutting down");
            shutdown.cancel();
        }
    }
    server.await
}
