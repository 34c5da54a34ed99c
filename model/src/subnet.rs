//! IPv4 prefixes (`172.18.0.0/16`), parsed once wherever a subnet, an
//! ip-range or an address with its prefix arrives as text: IPAM, the plan
//! executor, the firewall and the drivers share this one reading.

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 prefix, stored with its host bits as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Subnet {
    /// Parses `a.b.c.d/len` (surrounding blanks allowed); `None` if it is not IPv4 CIDR.
    pub fn parse(s: &str) -> Option<Subnet> {
        let (ip, len) = s.trim().split_once('/')?;
        let addr: Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = len.parse().ok()?;
        (prefix <= 32 && !len.starts_with('+')).then_some(Subnet { addr, prefix })
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix as u32)
        }
    }

    /// The same prefix with the host bits cleared.
    pub fn masked(&self) -> Subnet {
        Subnet { addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()), prefix: self.prefix }
    }

    /// The network address, as a number.
    pub fn first(&self) -> u32 {
        u32::from(self.addr) & self.mask()
    }

    /// The broadcast address, as a number.
    pub fn last(&self) -> u32 {
        self.first() | !self.mask()
    }

    /// Whether `ip` lies in this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.mask()) == self.first()
    }

    /// Whether the two prefixes share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_mask_contain_and_overlap() {
        let s = Subnet::parse("172.72.3.4/16").expect("parse");
        assert_eq!((s.addr, s.prefix), (Ipv4Addr::new(172, 72, 3, 4), 16), "host bits kept as given");
        assert_eq!(s.masked().to_string(), "172.72.0.0/16");
        assert!(s.contains(Ipv4Addr::new(172, 72, 255, 1)) && !s.contains(Ipv4Addr::new(172, 73, 0, 1)));
        assert!(s.overlaps(&Subnet::parse("172.72.5.0/24").expect("parse")));
        assert!(!s.overlaps(&Subnet::parse("172.73.0.0/16").expect("parse")));
        assert_eq!(Subnet::parse(" 10.0.0.0/8 "), Subnet::parse("10.0.0.0/8"));
        assert_eq!(Subnet::parse("0.0.0.0/0").map(|s| (s.first(), s.last())), Some((0, u32::MAX)));
        for bad in ["10.0.0.0/33", "10.0.0/8", "10.0.0.0", "10.0.0.0/+8", "fd00::/64", "10.0.0.0/x"] {
            assert_eq!(Subnet::parse(bad), None, "{bad}");
        }
    }
}
