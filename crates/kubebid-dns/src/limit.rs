//! Per-client limits, so a flood from one client cannot starve the others: queries per second (a token
//! bucket per address) and forwarded queries in flight.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

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

/// A token bucket per client address.
pub struct RateLimiter {
    qps: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
}

impl RateLimiter {
    /// `qps` per address (0: unlimited), bursts of twice that.
    #[must_use]
    pub fn new(qps: u32) -> Self {
        Self {
            qps: f64::from(qps),
            burst: f64::from(qps) * 2.0,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Whether one more query from `ip` at `now` is within its rate.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        if self.qps <= 0.0 {
            return true;
        }
        let mut shard = self.shards[shard_of(ip)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() > 65_536 {
            // Forget clients idle long enough to have a full bucket again.
            shard.retain(|_, (_, last)| {
                now.saturating_duration_since(*last) < Duration::from_secs(10)
            });
        }
        let (tokens, last) = shard.entry(ip).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.qps;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
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
