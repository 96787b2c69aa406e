//! Parsing and resolving the `host:port` addresses users type.
//!
//! Accepted forms: `host:port`, `[v6]:port`, `:port` (no host) and a bare
//! `port`. Parsing does no I/O; [`HostPort::resolve`] asks the resolver.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::error::{Error, Result};

/// A `host:port` pair as the user typed it, checked but not resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// The host name or IP literal, without brackets; empty when none was given.
    pub host: String,
    /// The port number.
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port`, `[v6]:port`, `:port` or a bare `port`.
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] naming what is wrong with `input`.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidAddress {
            input: input.to_string(),
            reason,
        };
        let (host, port) = split_host_port(input).ok_or_else(|| invalid("expected HOST:PORT"))?;
        if host.contains(char::is_whitespace) {
            return Err(invalid("the host must not contain spaces"));
        }
        let port =
            parse_port(port).ok_or_else(|| invalid("the port must be a number from 0 to 65535"))?;
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }

    /// Like [`HostPort::parse`], but an address for a client: no port 0, and
    /// an empty host means `localhost`.
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] naming what is wrong with `input`.
    pub fn parse_remote(input: &str) -> Result<Self> {
        let mut target = Self::parse(input)?;
        if target.port == 0 {
            return Err(Error::InvalidAddress {
                input: input.to_string(),
                reason: "port 0 cannot be connected to",
            });
        }
        if target.host.is_empty() {
            target.host = String::from("localhost");
        }
        Ok(target)
    }

    /// The host as an IP address, when it is a literal rather than a name.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// Resolves the host to socket addresses, in the resolver's order.
    ///
    /// # Errors
    /// [`Error::Resolve`] when the name does not resolve to any address.
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>> {
        if let Some(ip) = self.ip() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let unresolved = || Error::Resolve {
            host: self.host.clone(),
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|_| unresolved())?
            .collect();
        if addrs.is_empty() {
            return Err(unresolved());
        }
        Ok(addrs)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Splits `input` into host and port text; a bare port has an empty host.
fn split_host_port(input: &str) -> Option<(&str, &str)> {
    if let Some(rest) = input.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some((host, after.strip_prefix(':')?));
    }
    match input.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => None,
        Some((host, port)) => Some((host, port)),
        None => Some(("", input)),
    }
}

/// Parses a decimal port number, rejecting signs, spaces and overflow.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The address as a user reads it: IPv4-mapped IPv6 peers shown as plain IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_every_accepted_form() {
        assert_eq!(
            HostPort::parse("localhost:3000").unwrap(),
            hp("localhost", 3000)
        );
        assert_eq!(HostPort::parse("[::1]:80").unwrap(), hp("::1", 80));
        assert_eq!(HostPort::parse(":8080").unwrap(), hp("", 8080));
        assert_eq!(HostPort::parse("3000").unwrap(), hp("", 3000));
        assert_eq!(HostPort::parse("0.0.0.0:0").unwrap(), hp("0.0.0.0", 0));
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "host:",
            "host:port",
            "host:70000",
            "host:-1",
            "::1:80",
            "[::1]80",
            "[::1",
            "a b:1",
            "host:+80",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn remote_addresses_need_a_port_and_default_to_localhost() {
        assert!(HostPort::parse_remote("localhost:0").is_err());
        assert_eq!(
            HostPort::parse_remote("3000").unwrap(),
            hp("localhost", 3000)
        );
    }

    #[test]
    fn displays_ipv6_in_brackets() {
        assert_eq!(hp("::1", 3000).to_string(), "[::1]:3000");
        assert_eq!(hp("example.org", 1).to_string(), "example.org:1");
    }

    #[test]
    fn canonical_unmaps_ipv4_peers() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert_eq!(canonical(mapped).to_string(), "127.0.0.1:5000");
    }
}
