//! Per-client limits, so a flood from one client cannot starve the others: queries per second
//! ([`ClientLimiter`], governor's keyed GCRA limiter) and forwarded queries in flight ([`InFlight`]).
//!
//! Governor replaced a hand-written limiter (16 mutex-guarded shards of token buckets) because it measured
//! faster on every case of `cargo bench -p kubebid-dns --bench answer -- "client rate limit"` (criterion
//! estimates per check over two runs on 2 cores with another build running, governor against
//! hand-written): one address 23-24 ns against 52-53 ns, 100,000 addresses round robin 128-147 ns against
//! 191-201 ns, one address checked from 2 threads 27-29 ns against 78-80 ns. The hot path has no need of
//! its own limiter.
//!
//! A spoofed-source flood makes one entry per source address. [`ClientLimiter::retain_recent`] forgets
//! the addresses whose allowance is whole again (any address idle for 2 ms at the default 1,000 per
//! second), and the server calls it every second, so what is kept is bounded by the addresses seen in
//! about a second, not by every address ever seen.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// Governor's keyed limiter over client addresses, on clock `C`.
type Keyed<C> =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Queries per second per client address, with bursts of twice that.
pub struct ClientLimiter<C: Clock = DefaultClock> {
    /// `None` when the limit is off.
    keyed: Option<Keyed<C>>,
}

impl ClientLimiter {
    /// `qps` per address (0: unlimited), bursts of twice that.
    #[must_use]
    pub fn new(qps: u32) -> Self {
        Self::with_clock(qps, DefaultClock::default())
    }
}

impl<C: Clock> ClientLimiter<C> {
    /// As [`ClientLimiter::new`], on `clock` (tests move a fake one).
    #[must_use]
    pub fn with_clock(qps: u32, clock: C) -> Self {
        let keyed = NonZeroU32::new(qps).map(|qps| {
            let burst = qps.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            RateLimiter::new(
                Quota::per_second(qps).allow_burst(burst),
                DefaultKeyedStateStore::default(),
                clock,
            )
        });
        Self { keyed }
    }

    /// Whether one more query from `ip` now is within its rate.
    pub fn allow(&self, ip: IpAddr) -> bool {
        self.keyed.as_ref().is_none_or(|k| k.check_key(&ip).is_ok())
    }

    /// Forgets the addresses whose allowance is whole again (they would start afresh anyway), and gives
    /// memory back once most are gone.
    pub fn retain_recent(&self) {
        if let Some(k) = &self.keyed {
            let before = k.len();
            k.retain_recent();
            if k.len() < before / 2 {
                k.shrink_to_fit();
            }
        }
    }

    /// Addresses with state kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keyed.as_ref().map_or(0, RateLimiter::len)
    }

    /// Whether no address has state kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Locks [`InFlight`] spreads its clients over.
const SHARDS: usize = 16;

/// The shard of a client address: a multiplicative hash of (a fold of) its bits.
fn shard_of(ip: IpAddr) -> usize {
    let folded = match ip {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            u32::from_be_bytes([o[12], o[13], o[14], o[15]])
                ^ u32::from_be_bytes([o[0], o[1], o[2], o[3]])
        }
    };
    usize::try_from(folded.wrapping_mul(0x9E37_79B9) >> 28).unwrap_or(0) % SHARDS
}

/// Forwarded queries in flight per client.
pub struct InFlight {
    limit: usize,
    shards: Vec<Mutex<HashMap<IpAddr, usize>>>,
}

/// Releases one in-flight slot when dropped.
pub struct InFlightGuard<'a> {
    owner: &'a InFlight,
    ip: IpAddr,
}

impl InFlight {
    /// At most `limit` forwarded queries in flight per client address.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// A slot for `ip`, or `None` when it has `limit` queries in flight already.
    pub fn acquire(&self, ip: IpAddr) -> Option<InFlightGuard<'_>> {
        let mut shard = self.shards[shard_of(ip)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = shard.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(InFlightGuard { owner: self, ip })
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut shard = self.owner.shards[shard_of(self.ip)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = shard.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                shard.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::{ClientLimiter, InFlight};

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn bursts_of_twice_the_rate_then_the_rate() {
        let clock = FakeRelativeClock::default();
        let limiter = ClientLimiter::with_clock(100, clock.clone());
        assert_eq!((0..300).filter(|_| limiter.allow(ip(1))).count(), 200);
        // Another address has its own allowance.
        assert!(limiter.allow(ip(2)));
        clock.advance(Duration::from_millis(100));
        assert_eq!((0..300).filter(|_| limiter.allow(ip(1))).count(), 10);
    }

    #[test]
    fn zero_is_no_limit_and_keeps_nothing() {
        let limiter = ClientLimiter::new(0);
        assert!((0..10_000).all(|_| limiter.allow(ip(1))));
        assert!(limiter.is_empty());
    }

    /// A spoofed-source flood: one entry per address, all forgotten once their allowance is whole again.
    #[test]
    fn state_of_a_spoofed_flood_is_forgotten() {
        let clock = FakeRelativeClock::default();
        let limiter = ClientLimiter::with_clock(1000, clock.clone());
        for n in 0..100_000 {
            assert!(limiter.allow(ip(n)));
        }
        assert_eq!(limiter.len(), 100_000);
        // Nothing is whole yet: nothing goes.
        limiter.retain_recent();
        assert_eq!(limiter.len(), 100_000);
        // One address is still flooding when the rest have gone quiet.
        clock.advance(Duration::from_secs(1));
        for _ in 0..3000 {
            limiter.allow(ip(7));
        }
        limiter.retain_recent();
        assert_eq!(limiter.len(), 1);
        assert!(
            !limiter.allow(ip(7)),
            "the flooding address keeps its state"
        );
    }

    #[test]
    fn in_flight_slots_are_per_client_and_given_back() {
        let f = InFlight::new(2);
        let a = f.acquire(ip(1));
        let b = f.acquire(ip(1));
        assert!(a.is_some() && b.is_some());
        assert!(f.acquire(ip(1)).is_none());
        assert!(f.acquire(ip(2)).is_some());
        drop(a);
        assert!(f.acquire(ip(1)).is_some());
    }
}
