//! Address ranges: a range is a span of one subnet; a range set is the pool one address
//! is taken from. Addresses are handled as u128 (IPv4 as its 32-bit value).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

pub fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    /// First and last allocatable addresses (inclusive).
    pub start: u128,
    pub end: u128,
    pub gateway: Option<IpAddr>,
}

impl Range {
    /// Defaults as host-local: start = network + 1, end = the last address (the one before
    /// the broadcast for IPv4), gateway = network + 1. Errors are the reason only.
    pub fn new(subnet: IpNet, start: Option<IpAddr>, end: Option<IpAddr>, gateway: Option<IpAddr>) -> Result<Range, String> {
        if subnet.addr() != subnet.network() {
            return Err(format!("subnet {subnet} has host bits set (network is {})", subnet.trunc()));
        }
        let v4 = subnet.addr().is_ipv4();
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(format!("subnet {subnet} is too small to allocate from"));
        }
        let net = to_u128(subnet.network());
        let last = to_u128(subnet.broadcast()) - if v4 { 1 } else { 0 };
        let family = |ip: IpAddr| ip.is_ipv4() == v4;
        let start = match start {
            None => net + 1,
            Some(s) if family(s) && subnet.contains(&s) && to_u128(s) > net && to_u128(s) <= last => to_u128(s),
            Some(s) => return Err(format!("rangeStart {s} is not a usable address of {subnet}")),
        };
        let end = match end {
            None => last,
            Some(e) if family(e) && subnet.contains(&e) && to_u128(e) > net && to_u128(e) <= last => to_u128(e),
            Some(e) => return Err(format!("rangeEnd {e} is not a usable address of {subnet}")),
        };
        if start > end {
            return Err(format!("rangeStart {} is after rangeEnd {}", from_u128(start, v4), from_u128(end, v4)));
        }
        let gateway = match gateway {
            None => Some(from_u128(net + 1, v4)),
            Some(g) if family(g) => Some(g),
            Some(g) => return Err(format!("gateway {g} is not of the subnet's address family")),
        };
        Ok(Range { subnet, start, end, gateway })
    }

    pub fn v4(&self) -> bool {
        self.subnet.addr().is_ipv4()
    }

    pub fn first(&self) -> IpAddr {
        from_u128(self.start, self.v4())
    }

    pub fn last(&self) -> IpAddr {
        from_u128(self.end, self.v4())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.v4() && (self.start..=self.end).contains(&to_u128(ip))
    }

    fn overlaps(&self, o: &Range) -> bool {
        self.v4() == o.v4() && self.start <= o.end && o.start <= self.end
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}-{})", self.subnet, self.first(), self.last())
    }
}

/// The ranges one address is taken from, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    pub ranges: Vec<Range>,
}

/// A place in a range set: (range index, address).
pub type Pos = (usize, u128);

impl RangeSet {
    pub fn new(ranges: Vec<Range>) -> Result<RangeSet, String> {
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[..i] {
                if a.v4() != b.v4() {
                    return Err(format!("ranges {b} and {a} differ in address family"));
                }
                if a.overlaps(b) {
                    return Err(format!("ranges {b} and {a} overlap"));
                }
            }
        }
        Ok(RangeSet { ranges })
    }

    pub fn overlaps(&self, o: &RangeSet) -> bool {
        self.ranges.iter().any(|a| o.ranges.iter().any(|b| a.overlaps(b)))
    }

    pub fn position(&self, ip: IpAddr) -> Option<Pos> {
        self.ranges.iter().position(|r| r.contains(ip)).map(|i| (i, to_u128(ip)))
    }

    pub fn ip(&self, p: Pos) -> IpAddr {
        from_u128(p.1, self.ranges[p.0].v4())
    }

    /// The address after `p`, wrapping to the next range and from the last to the first.
    pub fn next(&self, p: Pos) -> Pos {
        let r = &self.ranges[p.0];
        if p.1 < r.end {
            (p.0, p.1 + 1)
        } else {
            let n = (p.0 + 1) % self.ranges.len();
            (n, self.ranges[n].start)
        }
    }

    /// Where round-robin allocation starts: after the last reserved address when it is
    /// still in this set, else at the first address.
    pub fn start_after(&self, last: Option<IpAddr>) -> Pos {
        match last.and_then(|ip| self.position(ip)) {
            Some(p) => self.next(p),
            None => (0, self.ranges[0].start),
        }
    }

    /// Candidates in round-robin order from `start`, once around, without gateways.
    pub fn candidates(&self, start: Pos) -> impl Iterator<Item = IpAddr> + '_ {
        let mut pos = Some(start);
        std::iter::from_fn(move || loop {
            let p = pos?;
            let n = self.next(p);
            pos = (n != start).then_some(n);
            let ip = self.ip(p);
            if self.ranges[p.0].gateway != Some(ip) {
                return Some(ip);
            }
        })
    }
}

impl std::fmt::Display for RangeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.ranges.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Range {
        Range::new(s.parse().unwrap(), None, None, None).unwrap()
    }

    #[test]
    fn candidates_skip_gateway_network_broadcast() {
        let set = RangeSet::new(vec![r("10.0.0.0/29")]).unwrap();
        let all: Vec<String> = set.candidates(set.start_after(None)).map(|i| i.to_string()).collect();
        assert_eq!(all, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        // Round robin from the last reserved, wrapping.
        let from: Vec<String> = set.candidates(set.start_after(Some("10.0.0.5".parse().unwrap()))).map(|i| i.to_string()).collect();
        assert_eq!(from, ["10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]);
        // A last reserved address outside the set restarts at the beginning.
        assert_eq!(set.start_after(Some("10.9.0.5".parse().unwrap())), (0, set.ranges[0].start));
    }

    #[test]
    fn several_ranges_and_v6() {
        let a = Range::new("10.0.0.0/24".parse().unwrap(), Some("10.0.0.10".parse().unwrap()), Some("10.0.0.11".parse().unwrap()), None).unwrap();
        let b = Range::new("10.1.0.0/24".parse().unwrap(), Some("10.1.0.1".parse().unwrap()), Some("10.1.0.2".parse().unwrap()), Some("10.1.0.254".parse().unwrap())).unwrap();
        let set = RangeSet::new(vec![a, b]).unwrap();
        let all: Vec<String> = set.candidates(set.start_after(Some("10.0.0.11".parse().unwrap()))).map(|i| i.to_string()).collect();
        assert_eq!(all, ["10.1.0.1", "10.1.0.2", "10.0.0.10", "10.0.0.11"]);

        let v6 = RangeSet::new(vec![r("fd00::/126")]).unwrap();
        let all: Vec<String> = v6.candidates(v6.start_after(None)).map(|i| i.to_string()).collect();
        assert_eq!(all, ["fd00::2", "fd00::3"]);
    }
}
