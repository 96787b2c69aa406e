//! The subscriber: one task per node that hears every committed message on
//! the channel and hands it to the hub, room by room in id order, each once.
//!
//! A message past the next expected id means some were missed (pub/sub
//! drops messages when a connection falters): they are read from the
//! room's stream first. After every (re)connection it subscribes first,
//! then catches up every room from the streams, so nothing published in
//! between is lost and nothing is delivered twice. A lost connection is
//! retried with backoff, and the node keeps its clients meanwhile.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::RedisError;
use tokio_util::sync::CancellationToken;

use super::cursor::{Position, Sequence};
use super::{Shared, lock, sequence_of, store};
use crate::log::Committed;

/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How many stored messages a gap or a catch-up reads at a time.
const PAGE: usize = 256;

/// Subscribes, catches up and delivers until `stop`, reconnecting as needed.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    let mut connected_before = false;
    loop {
        let session = listen(&shared, &mut connected_before);
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = session => outcome,
        };
        let due = lock(&shared.cursors).set_subscribed(false);
        for (sender, message) in due {
            sender.send(Ok(message));
        }
        match outcome {
            Ok(Listened::AWhile) => backoff = MIN_BACKOFF,
            Ok(Listened::Briefly) => {}
            Err(err) => tracing::warn!(
                "lost the subscription to Redis at {} ({err}); reconnecting",
                shared.target
            ),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How a subscription that ended without an error went.
enum Listened {
    /// It delivered messages: the next attempt need not wait long.
    AWhile,
    /// It ended before anything came.
    Briefly,
}

/// One subscription: subscribe, catch up, deliver until the connection ends.
async fn listen(shared: &Shared, connected_before: &mut bool) -> Result<Listened, RedisError> {
    let mut pubsub = shared.client.get_async_pubsub().await?;
    pubsub.subscribe(store::CHANNEL).await?;
    if std::mem::replace(connected_before, true) {
        metrics::counter!("switchboard_redis_reconnects_total").increment(1);
        tracing::info!("subscribed to Redis at {} again", shared.target);
    }
    catch_up(shared).await?;
    lock(&shared.cursors).set_subscribed(true);
    shared.subscribed_once.send_replace(true);
    let mut heard = Listened::Briefly;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        if let Some(committed) = store::announcement(message.get_payload_bytes()) {
            deliver_in_order(shared, committed).await?;
            heard = Listened::AWhile;
        }
    }
    Ok(heard)
}

/// Delivers what every room (and the direct messages) gained while this
/// node was not listening.
async fn catch_up(shared: &Shared) -> Result<(), RedisError> {
    let mut connection = shared.connection.clone();
    for (room, last) in store::rooms(&mut connection).await? {
        fill_up_to(shared, Sequence::Room(&room), last).await?;
    }
    let last = store::last_direct(&mut connection).await?;
    fill_up_to(shared, Sequence::Direct, last).await
}

/// Delivers `message` in its place: after the stored messages it follows,
/// if some were missed; not at all if it was delivered already.
async fn deliver_in_order(shared: &Shared, message: Committed) -> Result<(), RedisError> {
    let (sequence, id) = sequence_of(&message);
    let position = lock(&shared.cursors).position(sequence, id);
    match position {
        Position::Repeat => return Ok(()),
        Position::Next => {}
        Position::After { .. } => fill_up_to(shared, sequence, id - 1).await?,
    }
    deliver(shared, vec![message]);
    Ok(())
}

/// Delivers the stored messages of `sequence` after its cursor, up to
/// `last`, a page at a time. Messages no longer stored (trimmed, or lost
/// with Redis's data) are passed over: the cursor moves to `last`.
async fn fill_up_to(shared: &Shared, sequence: Sequence<'_>, last: u64) -> Result<(), RedisError> {
    let mut connection = shared.connection.clone();
    loop {
        let cursor = lock(&shared.cursors).last(sequence);
        if cursor >= last {
            return Ok(());
        }
        let page: Vec<Committed> = match sequence {
            Sequence::Room(room) => store::room_range(&mut connection, room, cursor, last, PAGE)
                .await?
                .into_iter()
                .map(Committed::Room)
                .collect(),
            Sequence::Direct => store::direct_range(&mut connection, cursor, last, PAGE)
                .await?
                .into_iter()
                .map(Committed::Direct)
                .collect(),
        };
        if page.is_empty() {
            let due = lock(&shared.cursors).delivered(sequence, last);
            for (sender, message) in due {
                sender.send(Ok(message));
            }
            return Ok(());
        }
        deliver(shared, page);
    }
}

/// Hands `messages` (one sequence, in id order) to the hub, then moves the
/// cursors and acknowledges the senders who waited for them.
fn deliver(shared: &Shared, messages: Vec<Committed>) {
    if let Some(deliver) = shared.deliver.get() {
        deliver.deliver(&messages);
    }
    let due: Vec<_> = {
        let mut cursors = lock(&shared.cursors);
        messages
            .iter()
            .flat_map(|message| {
                let (sequence, id) = sequence_of(message);
                cursors.delivered(sequence, id)
            })
            .collect()
    };
    for (sender, message) in due {
        sender.send(Ok(message));
    }
}
