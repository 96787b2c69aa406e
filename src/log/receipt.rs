//! The sender's side of an append: a one-shot channel from the engine, which
//! resolves it once the message is committed (or refused).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::log::{Committed, LogError};

/// Resolves with the committed message, or with why it was not stored.
#[derive(Debug)]
pub struct Receipt(oneshot::Receiver<Result<Committed, LogError>>);

/// The engine's end of a [`Receipt`].
#[derive(Debug)]
pub struct Sender(oneshot::Sender<Result<Committed, LogError>>);

/// A receipt and the sender that resolves it.
pub fn receipt() -> (Sender, Receipt) {
    let (sender, receiver) = oneshot::channel();
    (Sender(sender), Receipt(receiver))
}

impl Sender {
    /// Resolves the receipt; a sender that stopped waiting is not an error.
    pub fn send(self, outcome: Result<Committed, LogError>) {
        let _ = self.0.send(outcome);
    }
}

impl Receipt {
    /// A receipt resolved already.
    pub fn ready(outcome: Result<Committed, LogError>) -> Self {
        let (sender, receipt) = receipt();
        sender.send(outcome);
        receipt
    }
}

impl Future for Receipt {
    type Output = Result<Committed, LogError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // An engine that dropped the sender stopped before committing.
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(LogError::Closed)))
    }
}
