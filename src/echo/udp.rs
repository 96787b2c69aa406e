//! The echo server over UDP: one reply datagram per datagram received.
//!
//! There are no connections, so peers are logged per datagram at debug level
//! only. Each datagram is echoed on its own: in line mode its lines are
//! prefixed, a last line without newline included.

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::echo::reply::{Echoer, ReplyStyle};
use crate::net::addr::canonical;

/// The largest UDP payload there is.
const MAX_DATAGRAM: usize = 65_535;

/// Echoes datagrams on `socket` until `shutdown` is cancelled.
pub async fn serve(socket: UdpSocket, style: &ReplyStyle, shutdown: &CancellationToken) {
    let mut input = vec![0; MAX_DATAGRAM];
    let mut reply = Vec::with_capacity(MAX_DATAGRAM);
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = socket.recv_from(&mut input) => received,
        };
        let (len, from) = match received {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!("udp receive failed: {err}");
                continue;
            }
        };
        tracing::debug!("datagram of {len} bytes from {}", canonical(from));
        reply.clear();
        let mut echoer = Echoer::new(style);
        echoer.feed(&input[..len], &mut reply);
        echoer.finish(&mut reply);
        if let Err(err) = socket.send_to(&reply, from).await {
            tracing::debug!("udp reply to {} failed: {err}", canonical(from));
        }
    }
}
