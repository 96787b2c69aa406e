//! Making outgoing connections for the clients (`send`, `connect`, `bench`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpStream, UdpSocket};

use crate::error::{Error, Result, describe_io};
use crate::net::addr::HostPort;

/// Connects to the first address of `target` that accepts, trying each
/// resolved address in turn (so `localhost` works over IPv6 or IPv4).
///
/// # Errors
/// [`Error::Resolve`] for a name that does not resolve, [`Error::Connect`]
/// with the last address's reason when none accepts.
pub async fn tcp(target: &HostPort) -> Result<TcpStream> {
    let mut last_failure = None;
    for addr in target.resolve().await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Interactive and request/reply traffic: do not wait to coalesce.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => last_failure = Some(err),
        }
    }
    Err(Error::Connect {
        addr: target.to_string(),
        reason: last_failure.map_or_else(|| "no address".into(), |e| describe_io(&e)),
    })
}

/// Opens a UDP socket connected to the first resolved address of `target`.
///
/// # Errors
/// As [`tcp`].
pub async fn udp(target: &HostPort) -> Result<UdpSocket> {
    let addr = target.resolve().await?[0];
    let local: SocketAddr = if addr.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let connect_error = |err: std::io::Error| Error::Connect {
        addr: target.to_string(),
        reason: describe_io(&err),
    };
    let socket = UdpSocket::bind(local).await.map_err(connect_error)?;
    socket.connect(addr).await.map_err(connect_error)?;
    Ok(socket)
}
