//! The cache in front of the upstream resolvers: whole responses keyed by question, kept for the smallest
//! TTL among their answers (capped), negative answers for the SOA's negative TTL (RFC 2308), served with
//! their TTLs counted down. No I/O and no clock of its own: callers pass `now`, so tests control time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

/// Question identity: lower-case name, type, class.
pub type Key = (String, u16, u16);

#[derive(Debug)]
struct Entry {
    response: Message,
    stored: Instant,
    ttl: u32,
}

const SHARDS: usize = 16;

/// A bounded, sharded TTL cache.
#[derive(Debug)]
pub struct Cache {
    shards: Vec<Mutex<HashMap<Key, Entry>>>,
    per_shard: usize,
    max_ttl: u32,
}

/// How long a response may be kept, or `None` when it must not be cached.
#[must_use]
pub fn cacheable_ttl(response: &Message, max_ttl: u32) -> Option<u32> {
    let code = response.metadata.response_code;
    let positive = code == ResponseCode::NoError && !response.answers.is_empty();
    let ttl = if positive {
        response
            .answers
            .iter()
            .filter(|r| r.record_type() != RecordType::OPT)
            .map(|r| r.ttl)
            .min()?
    } else if code == ResponseCode::NXDomain || code == ResponseCode::NoError {
        // RFC 2308 section 5: the negative TTL is the lesser of the SOA's own TTL and its MINIMUM.
        response.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })?
    } else {
        return None;
    };
    (ttl > 0).then_some(ttl.min(max_ttl))
}

impl Cache {
    /// A cache of at most `capacity` responses, none kept longer than `max_ttl` seconds.
    #[must_use]
    pub fn new(capacity: usize, max_ttl: u32) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            max_ttl,
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Entry>> {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        let i = usize::try_from(h.finish() % SHARDS as u64).unwrap_or(0);
        &self.shards[i]
    }

    /// The cached response to `key` with TTLs reduced by its age, if still fresh.
    #[must_use]
    pub fn get(&self, key: &Key, now: Instant) -> Option<Message> {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = shard.get(key)?;
        let age = now.saturating_duration_since(entry.stored).as_secs();
        let age = u32::try_from(age).unwrap_or(u32::MAX);
        if age >= entry.ttl {
            shard.remove(key);
            return None;
        }
        let mut m = entry.response.clone();
        for r in m
            .answers
            .iter_mut()
            .chain(m.authorities.iter_mut())
            .chain(m.additionals.iter_mut())
        {
            r.ttl = r.ttl.min(entry.ttl).saturating_sub(age);
        }
        Some(m)
    }

    /// Stores `response` if it may be cached. Returns the TTL it was stored for.
    pub fn put(&self, key: Key, response: &Message, now: Instant) -> Option<u32> {
        let ttl = cacheable_ttl(response, self.max_ttl)?;
        let mut shard = self
            .shard(&key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| {
                now.saturating_duration_since(e.stored) < Duration::from_secs(u64::from(e.ttl))
            });
            if shard.len() >= self.per_shard {
                // Still full of fresh entries: drop the oldest.
                if let Some(oldest) = shard
                    .iter()
                    .min_by_key(|(_, e)| e.stored)
                    .map(|(k, _)| k.clone())
                {
                    shard.remove(&oldest);
                }
            }
        }
        let mut stored = response.clone();
        stored.edns = None;
        shard.insert(
            key,
            Entry {
                response: stored,
                stored: now,
                ttl,
            },
        );
        Some(ttl)
    }

    /// Number of entries (fresh or not yet evicted).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    /// Whether the cache holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record};

    use super::{Cache, cacheable_ttl};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap_or_default()
    }

    fn answer(ttl: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_answer(Record::from_rdata(
            name("www.example.test."),
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        m
    }

    fn negative(code: ResponseCode, soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = code;
        m.add_authority(Record::from_rdata(
            name("example.test."),
            soa_ttl,
            RData::SOA(SOA::new(
                name("ns.example.test."),
                name("admin.example.test."),
                1,
                3600,
                600,
                86400,
                minimum,
            )),
        ));
        m
    }

    fn key() -> super::Key {
        ("www.example.test.".into(), 1, 1)
    }

    #[test]
    fn ttls_count_down_and_entries_expire() {
        let c = Cache::new(100, 3600);
        let t0 = Instant::now();
        assert_eq!(c.put(key(), &answer(300), t0), Some(300));
        let later = c.get(&key(), t0 + Duration::from_secs(100));
        assert_eq!(later.map(|m| m.answers[0].ttl), Some(200));
        assert!(c.get(&key(), t0 + Duration::from_secs(300)).is_none());
        assert!(c.is_empty(), "an expired entry is removed when met");
    }

    #[test]
    fn negative_answers_use_the_soa_and_others_are_not_kept() {
        // RFC 2308: the lesser of the SOA record's TTL and its MINIMUM field.
        assert_eq!(
            cacheable_ttl(&negative(ResponseCode::NXDomain, 60, 30), 3600),
            Some(30)
        );
        assert_eq!(
            cacheable_ttl(&negative(ResponseCode::NXDomain, 20, 30), 3600),
            Some(20)
        );
        // NODATA (NOERROR, no answers) likewise.
        assert_eq!(
            cacheable_ttl(&negative(ResponseCode::NoError, 60, 30), 3600),
            Some(30)
        );
        // Without a SOA a negative answer is not cached; SERVFAIL and REFUSED never are.
        let mut bare = negative(ResponseCode::NXDomain, 60, 30);
        bare.authorities.clear();
        assert_eq!(cacheable_ttl(&bare, 3600), None);
        assert_eq!(
            cacheable_ttl(&negative(ResponseCode::ServFail, 60, 30), 3600),
            None
        );
        assert_eq!(
            cacheable_ttl(&negative(ResponseCode::Refused, 60, 30), 3600),
            None
        );
        // TTL 0 means do not cache; a huge TTL is capped.
        assert_eq!(cacheable_ttl(&answer(0), 3600), None);
        assert_eq!(cacheable_ttl(&answer(86400 * 7), 3600), Some(3600));
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let c = Cache::new(32, 3600);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let k = (format!("n{i}.example.test."), 1, 1);
            c.put(k, &answer(300), t0 + Duration::from_millis(u64::from(i)));
        }
        // 16 shards of at most 2 each.
        assert!(c.len() <= 32, "{}", c.len());
        // The newest entry is there.
        assert!(
            c.get(
                &("n999.example.test.".into(), 1, 1),
                t0 + Duration::from_secs(1)
            )
            .is_some()
        );
    }
}
