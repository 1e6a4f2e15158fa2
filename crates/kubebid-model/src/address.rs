//! Addresses no tenant may name, in any door: loopback, link-local (where cloud metadata services live), the
//! unspecified network, the clouds' metadata endpoints, and the cluster's own pod, service and node ranges.
//! A `NetworkPolicy` ipBlock, an `ExternalName` target, an endpoint address and a tenant's egress CIDRs are
//! all checked against the same [`ProtectedRanges`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why a range is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protected {
    /// `127.0.0.0/8`, `::1`: the node or pod itself.
    Loopback,
    /// `169.254.0.0/16`, `fe80::/10`: link-local, where cloud metadata services answer.
    LinkLocal,
    /// `0.0.0.0/8`, `::`: "this host".
    Unspecified,
    /// A cloud's metadata or platform endpoint outside link-local.
    Metadata,
    /// The cluster's pod network.
    PodNetwork,
    /// The cluster's service network.
    ServiceNetwork,
    /// The nodes' addresses.
    NodeNetwork,
}

impl Protected {
    /// What the range is, for messages.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Protected::Loopback => "loopback",
            Protected::LinkLocal => "link-local (cloud metadata)",
            Protected::Unspecified => "unspecified (this host)",
            Protected::Metadata => "a cloud metadata endpoint",
            Protected::PodNetwork => "the pod network",
            Protected::ServiceNetwork => "the service network",
            Protected::NodeNetwork => "the node network",
        }
    }
}

/// The built-in protected ranges, whatever the cluster: (CIDR, why).
const BUILTIN: &[(&str, Protected)] = &[
    ("127.0.0.0/8", Protected::Loopback),
    ("::1/128", Protected::Loopback),
    ("169.254.0.0/16", Protected::LinkLocal),
    ("fe80::/10", Protected::LinkLocal),
    ("0.0.0.0/8", Protected::Unspecified),
    ("::/128", Protected::Unspecified),
    // AWS's IPv6 instance metadata, Azure's wire server, Alibaba's metadata service.
    ("fd00:ec2::254/128", Protected::Metadata),
    ("168.63.129.16/32", Protected::Metadata),
    ("100.100.100.200/32", Protected::Metadata),
];

/// Every protected range of a cluster.
#[derive(Clone, Debug, Default)]
pub struct ProtectedRanges {
    ranges: Vec<(IpNet, Protected)>,
}

impl ProtectedRanges {
    /// The built-in ranges plus the cluster's pod, service and node networks.
    #[must_use]
    pub fn new(pods: &[IpNet], services: &[IpNet], nodes: &[IpNet]) -> Self {
        let mut ranges: Vec<(IpNet, Protected)> = BUILTIN
            .iter()
            .filter_map(|(c, why)| c.parse().ok().map(|n| (n, *why)))
            .collect();
        ranges.extend(pods.iter().map(|n| (*n, Protected::PodNetwork)));
        ranges.extend(services.iter().map(|n| (*n, Protected::ServiceNetwork)));
        ranges.extend(nodes.iter().map(|n| (*n, Protected::NodeNetwork)));
        Self { ranges }
    }

    /// Every range, with why it is protected.
    pub fn iter(&self) -> impl Iterator<Item = &(IpNet, Protected)> {
        self.ranges.iter()
    }

    /// The protected range an address falls in, if any (IPv4-mapped IPv6 addresses count as IPv4).
    #[must_use]
    pub fn of_address(&self, ip: IpAddr) -> Option<(IpNet, Protected)> {
        let ip = canonical(ip);
        self.ranges.iter().find(|(n, _)| n.contains(&ip)).copied()
    }

    /// Each protected range `cidr` overlaps, with the overlap: the whole range when `cidr` covers it, else
    /// `cidr` itself.
    pub fn overlaps(&self, cidr: IpNet) -> impl Iterator<Item = (IpNet, IpNet, Protected)> + '_ {
        let cidr = canonical_net(cidr);
        self.ranges.iter().filter_map(move |(range, why)| {
            if cidr.contains(range) {
                Some((*range, *range, *why))
            } else if range.contains(&cidr) {
                Some((cidr, *range, *why))
            } else {
                None
            }
        })
    }

    /// The protected ranges `cidr` overlaps that none of `except` fully covers, as (overlap, range, why).
    #[must_use]
    pub fn uncovered(&self, cidr: IpNet, except: &[IpNet]) -> Vec<(IpNet, IpNet, Protected)> {
        let except: Vec<IpNet> = except.iter().map(|e| canonical_net(*e)).collect();
        self.overlaps(cidr)
            .filter(|(overlap, _, _)| !except.iter().any(|e| e.contains(overlap)))
            .collect()
    }
}

/// The NAT64 well-known prefix (RFC 6052): `64:ff9b::a.b.c.d` reaches IPv4 address `a.b.c.d`.
const NAT64: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`) or through the NAT64 well-known
/// prefix (`64:ff9b::a.b.c.d`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    (v6.segments()[..6] == NAT64.segments()[..6]).then(|| {
        let o = v6.octets();
        Ipv4Addr::new(o[12], o[13], o[14], o[15])
    })
}

/// An IPv6 address that carries an IPv4 one (mapped, NAT64) as that IPv4 address; others unchanged.
#[must_use]
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// An IPv6 network inside an IPv4-carrying range (`::ffff:a.b.c.d/96+n`, `64:ff9b::a.b.c.d/96+n`) as the IPv4
/// network it covers.
#[must_use]
pub fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = embedded_v4(v6.network())
        && let Ok(n) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(n);
    }
    net
}

/// Parses an address the way the C library's resolver does before it asks DNS: dotted quads, but also the
/// numeric shorthands `inet_aton` accepts (`127.1`, `2130706433`, `0x7f.0.0.1`, octal `0177.0.0.1`), and any
/// IPv6 literal. A name such as `2852039166` is a valid DNS name to the API server, yet every pod that
/// resolves it connects to 169.254.169.254.
#[must_use]
pub fn parse_host_address(name: &str) -> Option<IpAddr> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(v6) = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .and_then(|n| n.parse::<Ipv6Addr>().ok())
    {
        return Some(IpAddr::V6(v6));
    }
    inet_aton(name).map(IpAddr::V4)
}

fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for p in &parts {
        values.push(numeric_part(p)?);
    }
    let (last, leading) = values.split_last()?;
    // Each leading part is one byte; the last fills the remaining bytes.
    if leading.iter().any(|v| *v > 0xff) {
        return None;
    }
    // At most three leading parts (checked above), so the count fits.
    let remaining_bits = 8 * (4 - u32::try_from(leading.len()).unwrap_or(3));
    if remaining_bits < 32 && *last >= (1u64 << remaining_bits) {
        return None;
    }
    if *last > u64::from(u32::MAX) {
        return None;
    }
    let mut addr: u64 = 0;
    for v in leading {
        addr = (addr << 8) | v;
    }
    addr = (addr << remaining_bits) | last;
    u32::try_from(addr).ok().map(Ipv4Addr::from)
}

fn numeric_part(p: &str) -> Option<u64> {
    if p.is_empty() || p.len() > 12 {
        return None;
    }
    let (digits, radix) = if let Some(hex) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (hex, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        // "0x" alone is 0 to inet_aton.
        return (radix == 16).then_some(0);
    }
    u64::from_str_radix(digits, radix).ok()
}

/// The IPv6 network of a single address, or the IPv4 one.
#[must_use]
pub fn host_net(ip: IpAddr) -> IpNet {
    match canonical(ip) {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::from(v6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges() -> ProtectedRanges {
        let n = |s: &str| s.parse::<IpNet>().expect("cidr");
        ProtectedRanges::new(&[n("10.244.0.0/16")], &[n("10.96.0.0/12")], &[])
    }

    #[test]
    fn numeric_spellings_of_the_metadata_address_are_recognised() {
        let metadata = Some(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)));
        for spelling in [
            "169.254.169.254",
            "169.254.169.254.",
            "2852039166",
            "0xa9fea9fe",
            "0251.0376.0251.0376",
            "169.254.43518",
            "169.16689662",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::169.254.169.254",
        ] {
            let ip = parse_host_address(spelling).map(canonical);
            assert_eq!(ip, metadata, "{spelling}");
        }
        for name in [
            "example.com",
            "1.2.3.4.5",
            "256.1.1.1",
            "09.1.1.1",
            "1.2.3.256",
            "a.b",
        ] {
            assert_eq!(parse_host_address(name), None, "{name}");
        }
        assert_eq!(
            parse_host_address("127.1"),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }

    #[test]
    fn overlaps_must_be_excepted_whole() {
        let r = ranges();
        let all: IpNet = "0.0.0.0/0".parse().expect("cidr");
        let uncovered = r.uncovered(all, &[]);
        assert!(uncovered.iter().any(|(_, _, w)| *w == Protected::LinkLocal));
        assert!(
            uncovered
                .iter()
                .any(|(_, _, w)| *w == Protected::PodNetwork)
        );
        let excepts: Vec<IpNet> = r.iter().map(|(n, _)| *n).collect();
        assert!(r.uncovered(all, &excepts).is_empty());
        let metadata: IpNet = "169.254.169.254/32".parse().expect("cidr");
        assert_eq!(r.uncovered(metadata, &[]).len(), 1);
        let public: IpNet = "203.0.113.0/24".parse().expect("cidr");
        assert!(r.uncovered(public, &[]).is_empty());
        let mapped: IpNet = "::ffff:169.254.0.0/112".parse().expect("cidr");
        assert_eq!(r.uncovered(mapped, &[])[0].2, Protected::LinkLocal);
    }
}
