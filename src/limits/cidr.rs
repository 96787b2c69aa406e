//! Address ranges in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, a bare
//! address for one host) and the `--trust` list made of them.
//!
//! Small enough to write here rather than take a crate for: parsing is the
//! standard library's address parser plus a prefix length, and matching is
//! a mask over the address's bits.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};

/// One range of addresses: every address whose first `prefix` bits are
/// those of `network`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDRESS/PREFIX`, or an `ADDRESS` alone for that one host.
    /// Host bits below the prefix are ignored (`10.1.2.3/8` is `10.0.0.0/8`),
    /// and an IPv4-mapped IPv6 range is the IPv4 range it maps.
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] naming what is wrong with `input`.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidAddress {
            input: input.to_string(),
            reason,
        };
        let (address, prefix) = match input.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (input, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| invalid("expected an IP address or ADDRESS/PREFIX"))?;
        let bits = max_prefix(network);
        let prefix = match prefix {
            None => bits,
            Some(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text
                .parse()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .ok_or_else(|| invalid("the prefix length is too long for the address"))?,
            Some(_) => return Err(invalid("the prefix length must be a number")),
        };
        Ok(Self::new(network, prefix))
    }

    /// The range of `network`'s first `prefix` bits (at most the address's).
    fn new(network: IpAddr, prefix: u8) -> Self {
        let (network, prefix) = match network {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (network, prefix),
            },
            _ => (network, prefix),
        };
        let prefix = prefix.min(max_prefix(network));
        let network = match network {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & mask32(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask128(prefix))),
        };
        Self { network, prefix }
    }

    /// Whether `ip` (IPv4-mapped IPv6 taken as IPv4) is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                ip.to_bits() & mask32(self.prefix) == network.to_bits()
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                ip.to_bits() & mask128(self.prefix) == network.to_bits()
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.network) {
            write!(f, "{}", self.network)
        } else {
            write!(f, "{}/{}", self.network, self.prefix)
        }
    }
}

/// The longest prefix of `ip`'s family: 32 or 128.
fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The first `prefix` bits of 32 set.
fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// The first `prefix` bits of 128 set.
fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// The addresses the per-address limits do not apply to (`--trust`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustList(Vec<Cidr>);

impl TrustList {
    /// What `--trust` trusts unless told otherwise: loopback, because a
    /// reverse proxy on the same host makes every client look like
    /// 127.0.0.1, and local load tests open thousands of connections.
    pub const DEFAULT: &str = "127.0.0.0/8,::1";

    /// Parses `CIDR[,CIDR…]`; `none` or nothing at all trusts nobody.
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] for the first entry that is not a range.
    pub fn parse(input: &str) -> Result<Self> {
        let input = input.trim();
        if input.is_empty() || input.eq_ignore_ascii_case("none") {
            return Ok(Self::default());
        }
        input
            .split(',')
            .map(|entry| Cidr::parse(entry.trim()))
            .collect::<Result<_>>()
            .map(Self)
    }

    /// Whether `ip` is in one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }
}

impl fmt::Display for TrustList {
    /// The list as `--trust` reads it back (`none` when empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (n, range) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{range}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_hold_the_addresses_under_their_prefix() {
        let ten = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(ten.contains(ip("10.255.1.2")));
        assert!(!ten.contains(ip("11.0.0.1")));
        assert!(ten.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped is IPv4");
        let doc = Cidr::parse("2001:db8::/32").unwrap();
        assert!(doc.contains(ip("2001:db8:ffff::1")));
        assert!(!doc.contains(ip("2001:db9::1")));
        assert!(!doc.contains(ip("10.0.0.1")));
        let everything = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(everything.contains(ip("203.0.113.9")));
        assert!(!everything.contains(ip("::1")));
    }

    #[test]
    fn a_bare_address_is_one_host_and_host_bits_are_dropped() {
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.8")));
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(Cidr::parse("::1").unwrap().to_string(), "::1");
        let mapped = Cidr::parse("::ffff:192.0.2.0/120").unwrap();
        assert_eq!(mapped.to_string(), "192.0.2.0/24");
        assert!(mapped.contains(ip("192.0.2.200")));
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0/8",
            "localhost",
            "10.0.0.0/8/8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn trust_lists_parse_and_print_back() {
        let default = TrustList::parse(TrustList::DEFAULT).unwrap();
        assert!(default.contains(ip("127.0.0.2")));
        assert!(default.contains(ip("::1")));
        assert!(default.contains(ip("::ffff:127.0.0.1")));
        assert!(!default.contains(ip("192.0.2.1")));
        assert_eq!(default.to_string(), TrustList::DEFAULT);
        for nobody in ["none", "", " NONE "] {
            let list = TrustList::parse(nobody).unwrap();
            assert!(!list.contains(ip("127.0.0.1")));
            assert_eq!(list.to_string(), "none");
        }
        let spaced = TrustList::parse(" 10.0.0.0/8 , 2001:db8::/48").unwrap();
        assert_eq!(spaced.to_string(), "10.0.0.0/8,2001:db8::/48");
        assert!(TrustList::parse("10.0.0.0/8,").is_err());
        assert!(TrustList::parse("10.0.0.0/8,nonsense").is_err());
    }
}
