//! The DNS probe: KubeBid's DNS server, asked as one of A's pods for B's names, must answer NXDOMAIN.
//!
//! The server knows a client by its source address, so the probe sends from an address of one of A's
//! running pods. It can only do so where that address is local (the verifier runs in the pod network of a
//! node, or in a test, on loopback); where none of A's addresses is, the finding is skipped and says so.
//! Before B's names, the probe asks for one of A's own Services: if A cannot resolve its own names, the
//! server does not know the probe's address as A's pod, and an NXDOMAIN for B would prove nothing. B's
//! names are its Services' (`<service>.<namespace>.svc.<domain>`, asked for A and AAAA records) and the
//! reverse names of their cluster addresses (PTR): NXDOMAIN with no answer passes; an answer, or NOERROR
//! without one (the name exists), fails; so does any other code or silence.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use kubebid_model::tenancy::{Tenancy, TenantScope};
use tokio::net::UdpSocket;

use crate::{Finding, Verifier, VerifyError};

/// Where KubeBid's DNS server listens, and the cluster's domain.
#[derive(Clone, Debug)]
pub struct DnsTarget {
    pub server: SocketAddr,
    pub domain: String,
    /// How long to wait for each answer (each query is sent twice at most).
    pub timeout: Duration,
}

/// B's names asked for, at most, per pair.
pub const NAMES_PER_TENANT: usize = 4;

static NEXT_ID: AtomicU16 = AtomicU16::new(0);

/// What the server answered: its code and the answers' data, or why there was none.
async fn ask(
    from: IpAddr,
    target: &DnsTarget,
    qname: Name,
    qtype: RecordType,
) -> Result<(ResponseCode, Vec<String>), String> {
    let sock = UdpSocket::bind(SocketAddr::new(from, 0))
        .await
        .map_err(|e| format!("binding {from}: {e}"))?;
    let mut m = Message::query();
    let seed = u16::try_from(std::process::id() & 0xffff).unwrap_or_default();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed).wrapping_mul(40_503) ^ seed;
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(qname, qtype));
    let bytes = m.to_vec().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    for _ in 0..2 {
        sock.send_to(&bytes, target.server)
            .await
            .map_err(|e| format!("sending to {}: {e}", target.server))?;
        let deadline = tokio::time::Instant::now() + target.timeout;
        loop {
            let Ok(got) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await else {
                break;
            };
            let (n, peer) = got.map_err(|e| e.to_string())?;
            let Some(reply) = buf.get(..n).and_then(|b| Message::from_vec(b).ok()) else {
                continue;
            };
            if peer != target.server || reply.metadata.id != id {
                continue;
            }
            let data = reply.answers.iter().map(|r| r.data.to_string()).collect();
            return Ok((reply.metadata.response_code, data));
        }
    }
    Err(format!(
        "no answer from {} within {:?}, twice",
        target.server, target.timeout
    ))
}

/// The first of `ips` a socket can be bound to here.
fn local_address(ips: &[IpAddr]) -> Option<IpAddr> {
    ips.iter()
        .copied()
        .find(|ip| std::net::UdpSocket::bind(SocketAddr::new(*ip, 0)).is_ok())
}

/// A tenant's running pods' addresses and Services' names.
#[derive(Default)]
struct Seen {
    addresses: Vec<IpAddr>,
    /// Each Service's name and cluster address (none for a headless one).
    services: Vec<(String, Option<IpAddr>)>,
}

fn skipped(tenant: &str, other: Option<&str>, why: String) -> Finding {
    Finding {
        probe: "dns/foreign-names",
        tenant: tenant.to_owned(),
        other: other.map(str::to_owned),
        identity: "(a pod address)".into(),
        namespace: None,
        passed: true,
        skipped: true,
        evidence: vec![format!("not checked: {why}")],
    }
}

impl Verifier {
    async fn seen(
        &self,
        tenancy: &Tenancy,
        domain: &str,
    ) -> Result<BTreeMap<String, Seen>, VerifyError> {
        let mut out: BTreeMap<String, Seen> = BTreeMap::new();
        for t in tenancy.tenants() {
            let seen = out.entry(t.name.clone()).or_default();
            for ns in &t.namespaces {
                for p in self.list(&format!("/api/v1/namespaces/{ns}/pods")).await? {
                    if p["status"]["phase"] != "Running" || p["spec"]["hostNetwork"] == true {
                        continue;
                    }
                    seen.addresses.extend(
                        p["status"]["podIPs"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|i| i["ip"].as_str()?.parse::<IpAddr>().ok())
                            .chain(p["status"]["podIP"].as_str().and_then(|i| i.parse().ok())),
                    );
                }
                let services = self
                    .list(&format!("/api/v1/namespaces/{ns}/services"))
                    .await?;
                seen.services.extend(services.iter().filter_map(|s| {
                    Some((
                        format!("{}.{ns}.svc.{domain}.", s["metadata"]["name"].as_str()?),
                        s["spec"]["clusterIP"].as_str().and_then(|i| i.parse().ok()),
                    ))
                }));
            }
            seen.addresses.sort_unstable();
            seen.addresses.dedup();
        }
        Ok(out)
    }

    /// The DNS probe for every ordered pair of tenants (A = `only` if given); every finding skipped, with
    /// the reason, without a `target`.
    ///
    /// # Errors
    /// A list the API server refused.
    pub async fn dns(
        &self,
        tenancy: &Tenancy,
        only: Option<&str>,
        target: Option<&DnsTarget>,
    ) -> Result<Vec<Finding>, VerifyError> {
        let tenants = tenancy.tenants();
        let Some(target) = target else {
            return Ok(tenants
                .iter()
                .filter(|t| only.is_none_or(|o| o == t.name))
                .map(|t| {
                    skipped(
                        &t.name,
                        None,
                        "no --dns given: where KubeBid's DNS server listens is not known".into(),
                    )
                })
                .collect());
        };
        let domain = target.domain.trim_end_matches('.');
        let seen = self.seen(tenancy, domain).await?;
        let empty = Seen::default();
        let mut work = Vec::new();
        for a in tenants.iter().filter(|t| only.is_none_or(|o| o == t.name)) {
            let mine = seen.get(&a.name).unwrap_or(&empty);
            work.push((
                a.name.as_str(),
                mine,
                tenants.iter().filter(|b| b.name != a.name),
            ));
        }
        let findings: Vec<Vec<Finding>> = futures::stream::iter(work)
            .map(|(a, mine, others)| pairs(a, mine, others.collect(), &seen, target))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut out: Vec<Finding> = findings.into_iter().flatten().collect();
        out.sort_by(|x, y| (&x.tenant, &x.other).cmp(&(&y.tenant, &y.other)));
        Ok(out)
    }
}

/// The questions asked about each of B's Services: its name's A and AAAA records, and the reverse (PTR)
/// name of its cluster address, which would give the name away as well.
fn questions(services: &[(String, Option<IpAddr>)]) -> Vec<(String, Name, RecordType)> {
    let mut out = Vec::new();
    for (name, ip) in services.iter().take(NAMES_PER_TENANT) {
        if let Ok(n) = Name::from_ascii(name) {
            out.push((format!("{name} A"), n.clone(), RecordType::A));
            out.push((format!("{name} AAAA"), n, RecordType::AAAA));
        }
        if let Some(ip) = ip {
            out.push((format!("{ip} PTR"), Name::from(*ip), RecordType::PTR));
        }
    }
    out
}

/// What B's names answer when asked from `from`: the control's outcome, then each question's.
async fn foreign(
    from: IpAddr,
    target: &DnsTarget,
    control: &Result<String, String>,
    services: &[(String, Option<IpAddr>)],
) -> (bool, Vec<String>) {
    let mut evidence = Vec::new();
    let mut passed = true;
    match control {
        Ok(c) => evidence.push(c.clone()),
        Err(c) => {
            passed = false;
            evidence.push(c.clone());
        }
    }
    for (name, qname, qtype) in questions(services) {
        let line = match ask(from, target, qname, qtype).await {
            Ok((ResponseCode::NXDomain, data)) if data.is_empty() => format!("{name}: NXDOMAIN"),
            Ok((ResponseCode::NXDomain, data)) => {
                passed = false;
                format!("{name}: NXDOMAIN, yet with answers: {}", data.join(", "))
            }
            Ok((ResponseCode::NoError, data)) if data.is_empty() => {
                passed = false;
                format!("{name}: NOERROR without an answer: the name's existence is visible")
            }
            Ok((ResponseCode::NoError, data)) => {
                passed = false;
                format!("{name}: resolved to {}", data.join(", "))
            }
            Ok((code, _)) => {
                passed = false;
                format!("{name}: answered {code}, not NXDOMAIN")
            }
            Err(e) => {
                passed = false;
                format!("{name}: {e}")
            }
        };
        evidence.push(line);
    }
    (passed, evidence)
}

/// Tenant `a`'s findings against each of `others`.
async fn pairs(
    a: &str,
    mine: &Seen,
    others: Vec<&TenantScope>,
    seen: &BTreeMap<String, Seen>,
    target: &DnsTarget,
) -> Vec<Finding> {
    let Some(from) = local_address(&mine.addresses) else {
        let why = if mine.addresses.is_empty() {
            format!("tenant {a} has no running pod to ask as")
        } else {
            format!(
                "no address of {a}'s pods ({}) is local here: run verify in the pod network to ask as one",
                mine.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return vec![skipped(a, None, why)];
    };
    let control = match mine.services.first() {
        None => Err(format!(
            "tenant {a} has no Service of its own to confirm the server knows {from} as its pod"
        )),
        Some((own, _)) => match Name::from_ascii(own) {
            Err(e) => Err(format!("control: {own}: {e}")),
            Ok(qname) => match ask(from, target, qname, RecordType::A).await {
                Ok((ResponseCode::NoError, data)) if !data.is_empty() => {
                    Ok(format!("control: {a}'s own {own} resolves from {from}"))
                }
                Ok((code, _)) => Err(format!(
                    "control: {a}'s own {own} answered {code} from {from}, so the server does not know this address as {a}'s pod and an NXDOMAIN proves nothing"
                )),
                Err(e) => Err(format!("control: {own}: {e}")),
            },
        },
    };
    let mut out = Vec::new();
    for b in others {
        let theirs = seen.get(&b.name).map_or(&[][..], |s| s.services.as_slice());
        if theirs.is_empty() {
            out.push(skipped(
                a,
                Some(&b.name),
                format!("tenant {} has no Service to ask for", b.name),
            ));
            continue;
        }
        let (passed, evidence) = foreign(from, target, &control, theirs).await;
        out.push(Finding {
            probe: "dns/foreign-names",
            tenant: a.to_owned(),
            other: Some(b.name.clone()),
            identity: format!("(pod address {from})"),
            namespace: None,
            passed,
            skipped: false,
            evidence,
        });
    }
    out
}
