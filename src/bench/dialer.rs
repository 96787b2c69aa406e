//! Opening many connections quickly: spread over several loopback source
//! addresses (each has only ~28,000 ephemeral ports toward one server), bound
//! with `IP_BIND_ADDRESS_NO_PORT` so the kernel picks the port at connect time
//! (binding port 0 up front searches the whole range per socket), and at a
//! bounded number in flight so the server's listen queue is not overrun.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use futures_util::{StreamExt, stream};
use std::os::fd::AsRawFd;
use tokio::net::{TcpSocket, TcpStream};

use crate::error::{Error, Result, describe_io};
use crate::net::addr::HostPort;

/// How many connects may be in flight at once.
const CONNECTS_IN_FLIGHT: usize = 256;

/// Opens connections to one server from a rotating set of source addresses.
#[derive(Clone, Debug)]
pub struct Dialer {
    target: SocketAddr,
    sources: Vec<Ipv4Addr>,
}

impl Dialer {
    /// A dialer for `target`; to an IPv4 loopback target it uses `sources`
    /// source addresses 127.0.0.1, 127.0.0.2, … (other targets use the default).
    pub fn new(target: SocketAddr, sources: usize) -> Self {
        let sources = match target.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => (1..=sources.clamp(1, 250) as u8)
                .map(|last| Ipv4Addr::new(127, 0, 0, last))
                .collect(),
            _ => Vec::new(),
        };
        Self { target, sources }
    }

    /// Opens connection number `index`.
    ///
    /// # Errors
    /// The connect failure (refused, no ports left, …).
    pub async fn connect(&self, index: usize) -> io::Result<TcpStream> {
        let socket = if self.target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if !self.sources.is_empty() {
            let source = self.sources[index % self.sources.len()];
            set_bind_address_no_port(&socket)?;
            socket.bind(SocketAddr::from((source, 0)))?;
        }
        let stream = socket.connect(self.target).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Opens `count` connections, at most [`CONNECTS_IN_FLIGHT`] at a time,
    /// and returns those that opened and the errors of those that did not.
    pub async fn connect_many(&self, count: usize) -> (Vec<TcpStream>, Vec<io::Error>) {
        let mut opened = Vec::with_capacity(count);
        let mut failed = Vec::new();
        let mut attempts = stream::iter(0..count)
            .map(|index| self.connect(index))
            .buffer_unordered(CONNECTS_IN_FLIGHT);
        while let Some(attempt) = attempts.next().await {
            match attempt {
                Ok(stream) => opened.push(stream),
                Err(err) => failed.push(err),
            }
        }
        (opened, failed)
    }
}

impl Dialer {
    /// Like [`Dialer::connect_many`], for a benchmark that needs at least one
    /// connection: returns the opened ones and how many failed.
    ///
    /// # Errors
    /// [`Error::Connect`] with the first failure when none opened.
    pub async fn connect_some(
        &self,
        count: usize,
        target: &HostPort,
    ) -> Result<(Vec<TcpStream>, usize)> {
        let (opened, failed) = self.connect_many(count).await;
        if opened.is_empty() {
            return Err(Error::Connect {
                addr: target.to_string(),
                reason: failed
                    .first()
                    .map_or_else(|| "no connection".into(), describe_io),
            });
        }
        Ok((opened, failed.len()))
    }
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`, deferring port choice to `connect`.
fn set_bind_address_no_port(socket: &TcpSocket) -> io::Result<()> {
    let enable: libc::c_int = 1;
    let fd = socket.as_raw_fd();
    // SAFETY: fd is a live socket; the option value is a c_int of the given size.
    let result = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const enable).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
