//! Graceful shutdown on Ctrl-C and SIGTERM.
//!
//! A server runs with a [`CancellationToken`]; the first signal cancels it, the
//! server stops accepting, tells its connections and returns once they are done.

use std::future::Future;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment this is made: make it
/// before announcing the server, so a signal sent as soon as the
/// `listening on` line appears stops the server gracefully rather than
/// killing it.
pub struct StopSignals {
    /// Both signals, or `None` when they cannot be listened for.
    signals: Option<(Signal, Signal)>,
}

impl StopSignals {
    /// Starts catching the signals.
    pub fn catch() -> Self {
        let signals = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(interrupt), Ok(terminate)) => Some((interrupt, terminate)),
            _ => {
                tracing::warn!("cannot listen for signals; stop the server with SIGKILL");
                None
            }
        };
        Self { signals }
    }

    /// Resolves when one of the signals arrives.
    async fn received(&mut self) {
        match &mut self.signals {
            Some((interrupt, terminate)) => tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            },
            None => std::future::pending().await,
        }
    }
}

/// Runs `server` to completion, cancelling `shutdown` on the first of
/// `signals` so the server can wind down, and returns what the server returns.
pub async fn run_until_signalled<F: Future>(
    server: F,
    shutdown: CancellationToken,
    mut signals: StopSignals,
) -> F::Output {
    tokio::pin!(server);
    tokio::select! {
        output = &mut server => return output,
        () = signals.received() => {
            tracing::info!("shutting down");
            shutdown.cancel();
        }
    }
    server.await
}
