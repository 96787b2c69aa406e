//! Binding the sockets servers listen on.
//!
//! An empty host means every interface on IPv4 and IPv6 alike: one dual-stack
//! `[::]` socket, or `0.0.0.0` where the machine has no IPv6. Sockets are made
//! with `socket2` rather than tokio's `bind` so that the dual-stack option and
//! the listen backlog are set deliberately (tokio's `bind` uses a backlog of
//! 128, which 500 clients connecting at once overflow).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

use crate::error::{Error, Result};
use crate::net::addr::HostPort;

/// How many not-yet-accepted connections the kernel queues (capped by `somaxconn`).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds a TCP listener on `spec`.
///
/// # Errors
/// [`Error::Listen`] (port in use, address not on this machine, …) or
/// [`Error::Resolve`] for a host name that does not resolve.
pub async fn bind_tcp(spec: &HostPort) -> Result<TcpListener> {
    let socket = bind_socket(spec, Type::STREAM).await?;
    let listener = TcpListener::from_std(socket.into()).map_err(|cause| Error::Listen {
        addr: spec.to_string(),
        cause,
    })?;
    Ok(listener)
}

/// Binds a UDP socket on `spec`.
///
/// # Errors
/// As [`bind_tcp`].
pub async fn bind_udp(spec: &HostPort) -> Result<UdpSocket> {
    let socket = bind_socket(spec, Type::DGRAM).await?;
    let socket = UdpSocket::from_std(socket.into()).map_err(|cause| Error::Listen {
        addr: spec.to_string(),
        cause,
    })?;
    Ok(socket)
}

/// Creates, binds and (for TCP) starts listening on a non-blocking socket.
async fn bind_socket(spec: &HostPort, kind: Type) -> Result<Socket> {
    if !spec.host.is_empty() {
        let addr = spec.resolve().await?[0];
        return open(addr, kind).map_err(|cause| Error::Listen {
            addr: addr.to_string(),
            cause,
        });
    }
    let dual_stack = SocketAddr::from((Ipv6Addr::UNSPECIFIED, spec.port));
    match open(dual_stack, kind) {
        Ok(socket) => Ok(socket),
        Err(err) if ipv6_unavailable(&err) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, spec.port));
            open(v4, kind).map_err(|cause| Error::Listen {
                addr: v4.to_string(),
                cause,
            })
        }
        Err(cause) => Err(Error::Listen {
            addr: dual_stack.to_string(),
            cause,
        }),
    }
}

/// Whether `err` says the machine cannot do IPv6 at all.
fn ipv6_unavailable(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::AddrNotAvailable || err.raw_os_error() == Some(libc::EAFNOSUPPORT)
}

/// Opens one socket of `kind` bound to `addr`.
fn open(addr: SocketAddr, kind: Type) -> io::Result<Socket> {
    let protocol = if kind == Type::STREAM {
        Protocol::TCP
    } else {
        Protocol::UDP
    };
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    if kind == Type::STREAM {
        // Lets a restarted server bind while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if kind == Type::STREAM {
        socket.listen(LISTEN_BACKLOG)?;
    }
    Ok(socket)
}
