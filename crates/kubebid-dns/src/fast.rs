//! The UDP hot path. Within one zone generation the answer to a question is a pure function of the
//! question, the request's RD/CD bits, whether it carries EDNS, and the asking client's visibility class
//! (its tenant, its namespace of no tenant, the platform, or unknown). So the first answer is computed by [`crate::answer::decide`] and
//! kept as wire bytes; later identical questions are answered by reading the header and question straight
//! off the packet (no allocation), one hash lookup, a copy and the request's ID. Anything unusual
//! (compression in the question, several records, EDNS options we would have to echo, an EDNS version
//! other than 0) takes the general path.

use std::collections::HashMap;
use std::sync::RwLock;

use prometheus_client::metrics::counter::Counter;

/// Longest key: client class (5 bytes), flags, EDNS marker, type, class, and a name of at most 255 bytes.
pub const MAX_KEY: usize = 5 + 1 + 1 + 2 + 2 + 255;

/// Entries per generation; beyond that new answers are not kept (a query flood over random names must
/// not grow memory).
pub const CAPACITY: usize = 65_536;

/// A question read off the wire.
#[derive(Debug)]
pub struct Question {
    pub id: u16,
    /// The client's UDP buffer: 512 without EDNS, else its payload size clamped to what we advertise.
    pub udp_limit: usize,
    key: [u8; MAX_KEY],
    key_len: usize,
    /// End of the question's name in the packet (it starts at 12).
    name_end: usize,
}

/// Reads a plain query: QR=0, opcode QUERY, one question without compression, no answer or authority
/// records, and at most an EDNS(0) OPT record without options. `None` for anything else.
#[must_use]
pub fn parse(packet: &[u8]) -> Option<Question> {
    let header = packet.get(..12)?;
    let flags = header[2];
    if flags & 0xF8 != 0 {
        // QR set, or an opcode other than QUERY.
        return None;
    }
    let counts = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let (qd, an, ns, ar) = (counts(4), counts(6), counts(8), counts(10));
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let mut key = [0u8; MAX_KEY];
    // Bytes 0..5 are the client class, filled in by `with_class`; 5 is the RD/CD bits; 6 the EDNS marker;
    // 7..11 type and class; the name from 11.
    key[5] = (flags & 0x01) | (header[3] & 0x10);
    let mut at = 12;
    let mut k = 11;
    loop {
        let len = usize::from(*packet.get(at)?);
        if len == 0 {
            at += 1;
            key[k] = 0;
            k += 1;
            break;
        }
        if len > 63 || k + 1 + len >= MAX_KEY {
            // A compression pointer or an oversized label: the general path decides.
            return None;
        }
        key[k] = u8::try_from(len).ok()?;
        let label = packet.get(at + 1..at + 1 + len)?;
        for (i, b) in label.iter().enumerate() {
            key[k + 1 + i] = b.to_ascii_lowercase();
        }
        k += 1 + len;
        at += 1 + len;
    }
    let name_end = at;
    let qtype = packet.get(at..at + 2)?;
    let qclass = packet.get(at + 2..at + 4)?;
    key[7..9].copy_from_slice(qtype);
    key[9..11].copy_from_slice(qclass);
    at += 4;
    let mut udp_limit = 512;
    if ar == 1 {
        // OPT: root owner, type 41, class = payload size, TTL = extended rcode/version/flags, no options.
        let opt = packet.get(at..at + 11)?;
        if opt[0] != 0 || opt[1..3] != [0, 41] || opt[6] != 0 || opt[9..11] != [0, 0] {
            return None;
        }
        let payload = usize::from(u16::from_be_bytes([opt[3], opt[4]]));
        udp_limit = payload.clamp(512, usize::from(crate::answer::EDNS_PAYLOAD));
        key[6] = 1;
        at += 11;
    }
    if at != packet.len() {
        return None;
    }
    Some(Question {
        id: u16::from_be_bytes([header[0], header[1]]),
        udp_limit,
        key,
        key_len: k,
        name_end,
    })
}

impl Question {
    /// Sets who is asking: `tag` 0 platform, 1 unknown, 2 a tenant, 3 a namespace of no tenant (`tenant` the
    /// index of either).
    pub fn with_class(&mut self, (tag, tenant): (u8, u32)) {
        self.key[0] = tag;
        self.key[1..5].copy_from_slice(&tenant.to_be_bytes());
    }

    #[must_use]
    pub fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }
}

/// One kept answer.
#[derive(Debug)]
pub struct Entry {
    /// The response on the wire, ID bytes to be replaced.
    pub bytes: Box<[u8]>,
    /// Counters to bump when it is sent: its rcode, and the denial it stands for.
    pub rcode: Counter,
    pub denial: Option<Counter>,
}

const SHARDS: usize = 16;

/// The answers of one zone generation.
#[derive(Debug)]
pub struct Answers {
    shards: Vec<RwLock<HashMap<Box<[u8]>, Entry>>>,
}

impl Default for Answers {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }
}

fn shard_of(key: &[u8]) -> usize {
    // FNV-1a over the key; cheap and good enough to spread names.
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    usize::try_from(h).unwrap_or(0) % SHARDS
}

impl Answers {
    /// Writes the kept answer to `q` into `out` with `q`'s ID and its question name spelt exactly as asked
    /// (resolvers that randomise the case of names check it), and returns its length, if there is one and
    /// it fits the client's buffer. `on_hit` gets the entry (for metrics).
    pub fn answer(
        &self,
        q: &Question,
        packet: &[u8],
        out: &mut [u8],
        on_hit: impl FnOnce(&Entry),
    ) -> Option<usize> {
        let key = q.key();
        let shard = self.shards[shard_of(key)]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = shard.get(key)?;
        let n = e.bytes.len();
        if n > q.udp_limit || n > out.len() || n < q.name_end {
            return None;
        }
        out[..n].copy_from_slice(&e.bytes);
        out[..2].copy_from_slice(&q.id.to_be_bytes());
        out[12..q.name_end].copy_from_slice(packet.get(12..q.name_end)?);
        on_hit(e);
        Some(n)
    }

    /// Keeps `bytes` as the answer to `q`'s question (unless the generation is full).
    pub fn keep(&self, q: &Question, bytes: &[u8], rcode: Counter, denial: Option<Counter>) {
        let key = q.key();
        let mut shard = self.shards[shard_of(key)]
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.len() >= CAPACITY / SHARDS {
            return;
        }
        shard.insert(
            key.into(),
            Entry {
                bytes: bytes.into(),
                rcode,
                denial,
            },
        );
    }

    /// Number of kept answers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    use super::parse;

    fn wire(name: &str, edns: bool, rd: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = rd;
        m.add_query(Query::query(
            Name::from_ascii(name).unwrap_or_default(),
            RecordType::A,
        ));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            m.set_edns(e);
        }
        m.to_vec().unwrap_or_default()
    }

    #[test]
    fn plain_queries_are_read_and_keyed_case_insensitively() {
        let a = parse(&wire("Web.Tenant-Acme.svc.cluster.local.", false, true));
        let b = parse(&wire("web.tenant-acme.svc.cluster.local.", false, true));
        let (Some(a), Some(b)) = (a, b) else {
            unreachable!("both parse")
        };
        assert_eq!(a.key(), b.key());
        assert_eq!((a.id, a.udp_limit), (0x1234, 512));
        // RD and EDNS are part of the key: they change the answer's bytes.
        let no_rd = parse(&wire("web.tenant-acme.svc.cluster.local.", false, false));
        assert_ne!(no_rd.map(|q| q.key().to_vec()), Some(a.key().to_vec()));
        let edns = parse(&wire("web.tenant-acme.svc.cluster.local.", true, true));
        assert_eq!(edns.as_ref().map(|q| q.udp_limit), Some(1232));
        assert_ne!(edns.map(|q| q.key().to_vec()), Some(a.key().to_vec()));
    }

    #[test]
    fn anything_unusual_takes_the_general_path() {
        let good = wire("web.tenant-acme.svc.cluster.local.", false, true);
        assert!(parse(&good).is_some());
        // Trailing bytes, a response, another opcode, two questions, truncation at every length.
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse(&trailing).is_none());
        let mut response = good.clone();
        response[2] |= 0x80;
        assert!(parse(&response).is_none());
        let mut notify = good.clone();
        notify[2] |= 4 << 3;
        assert!(parse(&notify).is_none());
        let mut two = good.clone();
        two[5] = 2;
        assert!(parse(&two).is_none());
        for n in 0..good.len() {
            assert!(parse(&good[..n]).is_none(), "cut at {n}");
        }
        // A compression pointer in the question.
        let mut pointer = good[..12].to_vec();
        pointer.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
        assert!(parse(&pointer).is_none());
    }
}
