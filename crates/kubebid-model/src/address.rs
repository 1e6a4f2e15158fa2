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
    /// `cidr` itself. An IPv6 network wide enough to hold the IPv4-mapped or NAT64 space (`::/0`,
    /// `64:ff9b::/95`) reaches every IPv4 address through it, so it overlaps every IPv4 range too.
    pub fn overlaps(&self, cidr: IpNet) -> impl Iterator<Item = (IpNet, IpNet, Protected)> + '_ {
        let cidr = canonical_net(cidr);
        let all_v4 = carries_all_v4(cidr).then(|| IpNet::V4(Ipv4Net::default()));
        self.ranges.iter().filter_map(move |(range, why)| {
            let within = |c: IpNet| {
                // Networks of different families never hold one another.
                if matches!(c, IpNet::V4(_)) != matches!(range, IpNet::V4(_)) {
                    None
                } else if c.contains(range) {
                    Some((*range, *range, *why))
                } else if range.contains(&c) {
                    Some((c, *range, *why))
                } else {
                    None
                }
            };
            within(cidr).or_else(|| all_v4.and_then(within))
        })
    }

    /// The protected ranges `cidr` overlaps that none of `except` fully covers, as (overlap, range, why).
    /// An except counts only in the family it is written in, which is the one the network plugin applies
    /// it to: `::ffff:169.254.0.0/112` does not carve anything out of `0.0.0.0/0`.
    #[must_use]
    pub fn uncovered(&self, cidr: IpNet, except: &[IpNet]) -> Vec<(IpNet, IpNet, Protected)> {
        let family = |n: &IpNet| matches!(n, IpNet::V4(_));
        let except: Vec<IpNet> = except
            .iter()
            .filter(|e| family(e) == family(&cidr))
            .map(|e| canonical_net(*e))
            .collect();
        self.overlaps(cidr)
            .filter(|(overlap, _, _)| !except.iter().any(|e| e.contains(overlap)))
            .collect()
    }
}

impl ProtectedRanges {
    /// What an `ipBlock` with `cidr` must list in `except` to leave out every protected range, written in
    /// `cidr`'s own family (an IPv4 range inside an IPv6 block is written through each IPv4-carrying space
    /// the block holds: `::ffff:169.254.0.0/112`, `64:ff9b::a9fe:0/112`). A range that holds the whole block
    /// is not listed: the block is wholly protected, which the webhook refuses.
    #[must_use]
    pub fn excepts_for(&self, cidr: IpNet) -> Vec<IpNet> {
        let mut out: Vec<IpNet> = Vec::new();
        for (overlap, _, _) in self.overlaps(cidr) {
            match (cidr, overlap) {
                (IpNet::V6(block), IpNet::V4(v4)) => {
                    for carrier in [Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), NAT64] {
                        let bits = u128::from(carrier) | u128::from(u32::from(v4.network()));
                        if let Ok(n) = Ipv6Net::new(Ipv6Addr::from(bits), 96 + v4.prefix_len())
                            && block.contains(&n)
                            && n != block
                        {
                            out.push(IpNet::V6(n));
                        }
                    }
                }
                (c, o) if o != c && o != canonical_net(c) => out.push(o),
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Whether an IPv6 network holds a whole IPv4-carrying space (`::ffff:0:0/96` or `64:ff9b::/96`).
fn carries_all_v4(net: IpNet) -> bool {
    let IpNet::V6(v6) = net else { return false };
    [Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), NAT64]
        .into_iter()
        .filter_map(|a| Ipv6Net::new(a, 96).ok())
        .any(|space| v6.contains(&space))
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
    if p.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (hex, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    // Digits only (no sign, no space), with as many leading zeros as anyone cares to write: `strtoul`
    // reads `00000000000251` as 169 (octal), and a value past 64 bits is refused as it refuses it.
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        // "0", "00", and "0x" alone are 0 to inet_aton.
        return Some(0);
    }
    u64::from_str_radix(significant, radix).ok()
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
            // As many leading zeros as strtoul reads.
            "00000000000251.0376.0251.0376",
            "0x00000000a9.0xfe.169.254",
            "00000000000000025177524776",
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
            "+169.254.169.254",
            " 169.254.169.254",
            "0x1ffffffffffffffff",
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

    #[test]
    fn excepts_count_in_the_family_they_are_written_in() {
        let r = ranges();
        let n = |s: &str| s.parse::<IpNet>().expect("cidr");
        // Excepts written as IPv4-mapped IPv6 cut nothing out of an IPv4 block.
        let mapped: Vec<IpNet> = r
            .iter()
            .filter_map(|(range, _)| match range {
                IpNet::V4(v4) => Ipv6Net::new(v4.network().to_ipv6_mapped(), 96 + v4.prefix_len())
                    .ok()
                    .map(IpNet::V6),
                IpNet::V6(_) => None,
            })
            .collect();
        assert!(!r.uncovered(n("0.0.0.0/0"), &mapped).is_empty());
        // IPv6 blocks that hold an IPv4-carrying space reach every IPv4 range through it.
        for block in ["::/0", "64:ff9b::/95", "::ffff:0:0/96", "::/64"] {
            let uncovered = r.uncovered(n(block), &[]);
            assert!(
                uncovered.iter().any(|(_, _, w)| *w == Protected::LinkLocal
                    && uncovered
                        .iter()
                        .any(|(o, _, _)| o.contains(&n("169.254.169.254/32")))),
                "{block}: {uncovered:?}"
            );
        }
        assert!(r.uncovered(n("2001:db8::/32"), &[]).is_empty());
    }

    #[test]
    fn rendered_excepts_leave_nothing_protected_and_stay_in_family() {
        let r = ranges();
        for block in [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "::/0",
            "64:ff9b::/95",
            "::ffff:0:0/96",
            "::ffff:169.254.0.0/104",
            "fe80::/9",
            "203.0.113.0/24",
        ] {
            let cidr: IpNet = block.parse().expect("cidr");
            let excepts = r.excepts_for(cidr);
            for e in &excepts {
                assert_eq!(
                    matches!(e, IpNet::V4(_)),
                    matches!(cidr, IpNet::V4(_)),
                    "{block}: {e} is of the other family"
                );
                assert!(cidr.contains(e) && *e != cidr, "{block}: {e} not inside");
            }
            assert!(
                r.uncovered(cidr, &excepts).is_empty(),
                "{block}: {:?} left",
                r.uncovered(cidr, &excepts)
            );
        }
    }
}
