//! The file-descriptor diary, live (docs/PROTOCOL.md 5.3): `/api/connections`
//! upgraded to a WebSocket sends the whole diary, then every connection as it
//! opens, changes (an HTTP connection's next request) and closes, and the
//! whole diary again every second (bytes, nicks and rooms move). The diary
//! page (`GET /diary`) draws it.
//!
//! A watcher that falls behind gets the whole diary instead of what it
//! missed; one that stops reading is dropped. The connection lists itself:
//! it is a connection like any other.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use crate::hub::{ConnectionInfo, DiaryChange, Hub, Transport};
use crate::net::websocket::{self, UpgradedSocket};
use crate::transport::http::Origin;

/// The largest message a diary watcher may send (it has nothing to say).
pub const MAX_MESSAGE: usize = 1024;

/// How often the whole diary is sent again.
const REFRESH: Duration = Duration::from_secs(1);

/// How long one message to a watcher may take to go out before it is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends the diary on `socket` as it changes, until the watcher leaves, stops
/// reading, or the server stops (`shutdown`: close 1001).
pub async fn stream(
    mut socket: UpgradedSocket,
    origin: Origin,
    hub: Hub,
    shutdown: CancellationToken,
) {
    // Watching first: the diary it sends next is no older than the first change.
    let mut changes = hub.watch_diary();
    let info = ConnectionInfo::now(origin.peer.fd, origin.peer.addr, Transport::Ws, origin.tls);
    let visit = hub.visit(info);
    visit.serving("GET /api/connections".into());
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let update = tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                let frame = CloseFrame {
                    code: CloseCode::Away,
                    reason: "server shutting down".into(),
                };
                let _ = tokio::time::timeout(SEND_TIMEOUT, socket.close(Some(frame))).await;
                break;
            }
            received = socket.next() => match received {
                // Pings are answered as they are read; nothing else is expected.
                Some(Ok(message)) if !message.is_close() => continue,
                _ => break,
            },
            change = changes.recv() => match change {
                Ok(change) => change_message(&change),
                Err(RecvError::Lagged(_)) => whole(&hub),
                Err(RecvError::Closed) => break,
            },
            _ = refresh.tick() => whole(&hub),
        };
        let text = update.to_string();
        let bytes = text.len();
        match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::text(text))).await {
            Ok(Ok(())) => visit.traffic().sent(bytes),
            _ => break,
        }
    }
    websocket::write_out(&mut socket).await;
}

/// The whole diary, as one message.
fn whole(hub: &Hub) -> Value {
    json!({"type": "connections", "connections": hub.diary()})
}

/// One change, as one message.
fn change_message(change: &Arc<DiaryChange>) -> Value {
    let (kind, entry) = match change.as_ref() {
        DiaryChange::Opened(entry) => ("opened", entry),
        DiaryChange::Changed(entry) => ("changed", entry),
        DiaryChange::Closed(entry) => ("closed", entry),
    };
    json!({"type": kind, "connection": entry})
}
