//! One query in, one decision out, without I/O: an authoritative answer from the cluster zone, a denial that
//! looks exactly like a name that does not exist, an error for a malformed or unsupported request, or a
//! request to forward an external name.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use kubebid_model::address::ProtectedRanges;

use crate::zone::{Client, Zone, ptr_record, reverse_address};

/// The largest UDP payload advertised in answers (RFC 9715's recommendation against fragmentation).
pub const EDNS_PAYLOAD: u16 = 1232;

/// Why a cluster name was answered NXDOMAIN although it exists, for metrics and the query log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The name belongs to a namespace or service the client may not see.
    OtherTenant,
    /// A wildcard label in a cluster name.
    Wildcard,
    /// AXFR, IXFR or ANY in the cluster zone.
    Enumeration,
    /// The client's tenant may not resolve external names.
    External,
    /// A reverse lookup of another tenant's address.
    Reverse,
}

impl Denial {
    /// The label in metrics and the query log.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::OtherTenant => "other_tenant",
            Denial::Wildcard => "wildcard",
            Denial::Enumeration => "enumeration",
            Denial::External => "external",
            Denial::Reverse => "reverse",
        }
    }
}

/// Where an answer came from, for the query log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The cluster zone (an answer, a denial or an error decided here).
    Zone,
    /// A forwarded query answered from the cache.
    Cache,
    /// A forwarded query sent upstream (answered, or SERVFAIL when no upstream answered).
    Upstream,
}

impl Source {
    /// The label in the query log: `cluster`, `cache` or `upstream`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Zone => "cluster",
            Source::Cache => "cache",
            Source::Upstream => "upstream",
        }
    }
}

/// What to do with a request.
#[derive(Debug)]
pub enum Action {
    /// Send this response.
    Reply(Message),
    /// Resolve `query` upstream (or from the cache), then answer with [`forwarded`].
    Forward(Query),
    /// Send nothing (a response, not a query).
    Drop,
}

/// The decision and what the metrics and the log need to know about it.
#[derive(Debug)]
pub struct Decision {
    pub action: Action,
    pub tenant: Option<String>,
    pub denial: Option<Denial>,
    /// Whether forwarded answers must lose their records in protected ranges (every client but the
    /// platform's: its pods may rely on an external name for a node or metadata address).
    pub drop_protected: bool,
}

fn response_to(request: &Message, code: ResponseCode, authoritative: bool) -> Message {
    let mut m = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    m.metadata.recursion_desired = request.metadata.recursion_desired;
    m.metadata.checking_disabled = request.metadata.checking_disabled;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = authoritative;
    m.metadata.response_code = code;
    m.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        m.set_edns(e);
    }
    m
}

/// FORMERR for a request whose header could be read but whose body could not.
#[must_use]
pub fn format_error(id: u16) -> Message {
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
    m.metadata.response_code = ResponseCode::FormErr;
    m
}

fn nxdomain(request: &Message, zone: &Zone, soa_owner: Option<&Name>) -> Message {
    let mut m = response_to(request, ResponseCode::NXDomain, true);
    let mut soa = zone.soa().clone();
    if let Some(owner) = soa_owner {
        soa.name = owner.clone();
    }
    m.add_authority(soa);
    m
}

fn reverse_apex(ip: IpAddr) -> Name {
    let apex = if ip.is_ipv4() {
        "in-addr.arpa."
    } else {
        "ip6.arpa."
    };
    Name::from_ascii(apex).unwrap_or_default()
}

/// Decides one request from `client_ip`.
#[must_use]
pub fn decide(zone: &Zone, client_ip: IpAddr, request: &Message) -> Decision {
    let client = zone.client(client_ip);
    let tenant = client.tenant().map(str::to_owned);
    let drop_protected = !matches!(client, Client::Platform);
    let done = |action, denial| Decision {
        action,
        tenant: tenant.clone(),
        denial,
        drop_protected,
    };
    if request.metadata.message_type == MessageType::Response {
        return done(Action::Drop, None);
    }
    if request.metadata.op_code != OpCode::Query {
        return done(
            Action::Reply(response_to(request, ResponseCode::NotImp, false)),
            None,
        );
    }
    let [query] = request.queries.as_slice() else {
        return done(
            Action::Reply(response_to(request, ResponseCode::FormErr, false)),
            None,
        );
    };
    if query.query_class() != DNSClass::IN {
        return done(
            Action::Reply(response_to(request, ResponseCode::NotImp, false)),
            None,
        );
    }
    let qname = query.name();
    let qtype = query.query_type();

    if zone.contains(qname) {
        let (message, denial) = cluster_answer(zone, client, request, qname, qtype);
        return done(Action::Reply(message), denial);
    }
    if qtype == RecordType::PTR
        && let Some(ip) = reverse_address(qname)
    {
        if let Some((owner, target)) = zone.reverse(ip) {
            if zone.may_see(client, owner) {
                let mut m = response_to(request, ResponseCode::NoError, true);
                m.add_answer(ptr_record(qname, target));
                return done(Action::Reply(m), None);
            }
            return done(
                Action::Reply(nxdomain(request, zone, Some(&reverse_apex(ip)))),
                Some(Denial::Reverse),
            );
        }
        if zone.in_cluster_range(ip) {
            // An unused cluster address: the same answer as another tenant's.
            return done(
                Action::Reply(nxdomain(request, zone, Some(&reverse_apex(ip)))),
                None,
            );
        }
    }
    if !zone.may_resolve_external(client) {
        let mut m = response_to(request, ResponseCode::NXDomain, false);
        m.metadata.authoritative = false;
        return done(Action::Reply(m), Some(Denial::External));
    }
    done(Action::Forward(query.clone()), None)
}

fn cluster_answer(
    zone: &Zone,
    client: Client<'_>,
    request: &Message,
    qname: &Name,
    qtype: RecordType,
) -> (Message, Option<Denial>) {
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR | RecordType::ANY) {
        return (nxdomain(request, zone, None), Some(Denial::Enumeration));
    }
    if qname.iter().any(|l| l == b"*") {
        return (nxdomain(request, zone, None), Some(Denial::Wildcard));
    }
    let Some(node) = zone.lookup(qname) else {
        return (nxdomain(request, zone, None), None);
    };
    if !zone.may_see(client, &node.owner) {
        return (nxdomain(request, zone, None), Some(Denial::OtherTenant));
    }
    let mut m = response_to(request, ResponseCode::NoError, true);
    let cname = node
        .records
        .iter()
        .find(|r| r.record_type() == RecordType::CNAME);
    match cname {
        Some(c) if qtype != RecordType::CNAME => {
            m.add_answer(c.clone());
        }
        _ => {
            let answers: Vec<Record> = node
                .records
                .iter()
                .filter(|r| r.record_type() == qtype)
                .cloned()
                .collect();
            if answers.is_empty() {
                // NODATA: the name exists (and is visible), the type does not.
                m.add_authority(zone.soa().clone());
            } else {
                if qtype == RecordType::SRV {
                    m.add_additionals(node.additionals.iter().cloned());
                }
                m.add_answers(answers);
            }
        }
    }
    (m, None)
}

/// The client's response built from an upstream (or cached) response to the forwarded query.
#[must_use]
pub fn forwarded(request: &Message, upstream: &Message) -> Message {
    let mut m = response_to(request, upstream.metadata.response_code, false);
    m.metadata.authentic_data = upstream.metadata.authentic_data;
    m.add_answers(upstream.answers.iter().cloned());
    m.add_authorities(upstream.authorities.iter().cloned());
    m.add_additionals(
        upstream
            .additionals
            .iter()
            .filter(|r| r.record_type() != RecordType::OPT)
            .cloned(),
    );
    m
}

/// Drops the address records of a forwarded answer that name a protected address (loopback, link-local
/// metadata, the pod, service and node networks): an external name an attacker controls must not become a
/// way past the checks on `ExternalName`s, ingress URLs and egress rules (DNS rebinding). CNAMEs and the
/// rest stay, so a name whose every address was dropped answers NODATA. Returns how many were dropped.
pub fn drop_protected(response: &mut Message, protected: &ProtectedRanges) -> usize {
    let is_protected = |r: &Record| {
        let ip = match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => return false,
        };
        protected.of_address(ip).is_some()
    };
    let before = response.answers.len() + response.additionals.len();
    response.answers.retain(|r| !is_protected(r));
    response.additionals.retain(|r| !is_protected(r));
    before - response.answers.len() - response.additionals.len()
}

/// SERVFAIL, when no upstream answered.
#[must_use]
pub fn server_failure(request: &Message) -> Message {
    response_to(request, ResponseCode::ServFail, false)
}

/// Shrinks a UDP response that does not fit the client's buffer: the header, the question and TC=1, so the
/// client retries over TCP.
#[must_use]
pub fn truncated(request: &Message, response: &Message) -> Message {
    let mut m = response_to(
        request,
        response.metadata.response_code,
        response.metadata.authoritative,
    );
    m.metadata.truncation = true;
    m
}

/// The client's UDP buffer size: 512 without EDNS, else what it advertises (at least 512, at most ours).
#[must_use]
pub fn udp_limit(request: &Message) -> usize {
    request.edns.as_ref().map_or(512, |e| {
        usize::from(e.max_payload().clamp(512, EDNS_PAYLOAD))
    })
}

/// Decodes a request, distinguishing a message that cannot be read at all (dropped) from one whose header
/// can (FORMERR with its ID).
///
/// # Errors
/// `Err(Some(id))` when only the header could be read, `Err(None)` when not even that.
pub fn parse_request(bytes: &[u8]) -> Result<Message, Option<u16>> {
    match Message::from_vec(bytes) {
        Ok(m) => Ok(m),
        Err(_) if bytes.len() >= 12 => {
            // A response-flagged garbage packet is dropped, not answered, to avoid reflection loops.
            if bytes[2] & 0x80 != 0 {
                Err(None)
            } else {
                Err(Some(u16::from_be_bytes([bytes[0], bytes[1]])))
            }
        }
        Err(_) => Err(None),
    }
}
