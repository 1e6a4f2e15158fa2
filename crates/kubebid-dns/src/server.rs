//! The server shell around [`crate::answer::decide`]: UDP on one OS thread per core (`SO_REUSEPORT`
//! sockets with blocking reads: no wake-ups on the hot path), TCP on tokio with limits on connections,
//! message size and idle time, per-client rate limits and forwarding limits so a flood from one client
//! cannot starve the others, the cache and the upstream forwarder, metrics and an optional query log.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, Query, ResponseCode};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::answer::{
    Action, Decision, decide, format_error, forwarded, parse_request, server_failure, truncated,
    udp_limit,
};
use crate::cache::{Cache, Key};
use crate::metrics::DnsMetrics;
use crate::upstream::Upstreams;
use crate::zone::Zone;

/// Largest DNS query accepted over TCP. Queries are a header, a question and perhaps an OPT record;
/// anything this large is not a query.
pub const MAX_TCP_QUERY: usize = 4096;

/// Limits and sizes.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Queries per second allowed per client address (0: no limit), with bursts of twice that.
    pub client_qps: u32,
    /// Forwarded queries in flight per client address.
    pub client_forwards: usize,
    /// Open TCP connections at once.
    pub tcp_connections: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_idle: Duration,
    /// UDP worker threads.
    pub udp_workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            client_qps: 1000,
            client_forwards: 64,
            tcp_connections: 256,
            tcp_idle: Duration::from_secs(10),
            udp_workers: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        }
    }
}

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

/// The optional query log: one JSON line per query, written by its own thread so the hot path never waits
/// on the disk. When the writer falls behind, lines are dropped and counted, never queued without bound.
pub struct QueryLog {
    tx: SyncSender<String>,
}

impl QueryLog {
    /// Appends to `path`.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path, metrics: Arc<DnsMetrics>) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(16_384);
        std::thread::Builder::new()
            .name("kubebid-dns-querylog".into())
            .spawn(move || write_log(file, &rx, &metrics))?;
        Ok(Self { tx })
    }

    fn record(&self, line: String, metrics: &DnsMetrics) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            metrics.discard("query_log_full");
        }
    }
}

fn write_log(file: std::fs::File, rx: &Receiver<String>, metrics: &DnsMetrics) {
    let mut out = io::BufWriter::new(file);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if writeln!(out, "{line}").is_err() {
                    metrics.discard("query_log_write");
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = out.flush();
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
    }
}

/// One zone and the wire answers computed from it; replaced whole when the zone changes.
pub struct Generation {
    pub zone: Zone,
    pub answers: crate::fast::Answers,
}

impl Generation {
    #[must_use]
    pub fn new(zone: Zone) -> Self {
        Self {
            zone,
            answers: crate::fast::Answers::default(),
        }
    }
}

/// Everything the UDP threads and TCP tasks share.
pub struct Shared {
    pub current: ArcSwap<Generation>,
    pub cache: Cache,
    pub metrics: Arc<DnsMetrics>,
    pub upstreams: Upstreams,
    pub limiter: RateLimiter,
    pub in_flight: InFlight,
    pub log: Option<QueryLog>,
    pub limits: Limits,
}

impl Shared {
    #[must_use]
    pub fn new(zone: Zone, upstreams: Upstreams, limits: Limits, metrics: Arc<DnsMetrics>) -> Self {
        metrics
            .zone_names
            .set(i64::try_from(zone.len()).unwrap_or(i64::MAX));
        Self {
            current: ArcSwap::from_pointee(Generation::new(zone)),
            cache: Cache::new(10_000, 3600),
            metrics,
            upstreams,
            limiter: RateLimiter::new(limits.client_qps),
            in_flight: InFlight::new(limits.client_forwards),
            log: None,
            limits,
        }
    }

    /// Replaces the zone (a rebuild after a change).
    pub fn set_zone(&self, zone: Zone) {
        self.metrics
            .zone_names
            .set(i64::try_from(zone.len()).unwrap_or(i64::MAX));
        self.metrics.zone_reloads.inc();
        self.current.store(Arc::new(Generation::new(zone)));
    }

    /// Answers a forwarded query: from the cache, else upstream (then cached), else SERVFAIL. The cache
    /// keeps upstream's answer whole; with `drop_protected` (every client but the platform's) the answer
    /// loses its records in protected ranges.
    pub async fn forward(
        &self,
        request: &Message,
        query: &Query,
        drop_protected: bool,
    ) -> (Message, &'static str) {
        let (mut answer, source) = self.forward_whole(request, query).await;
        if drop_protected {
            let dropped = crate::answer::drop_protected(
                &mut answer,
                &self.current.load().zone.tenancy().cluster().protected,
            );
            if dropped > 0 {
                self.metrics
                    .rebinding
                    .inc_by(u64::try_from(dropped).unwrap_or(u64::MAX));
                tracing::debug!(name = %query.name(), dropped, "forwarded answer named protected addresses; dropped");
            }
        }
        (answer, source)
    }

    async fn forward_whole(&self, request: &Message, query: &Query) -> (Message, &'static str) {
        let key: Key = (
            query.name().to_lowercase().to_ascii(),
            u16::from(query.query_type()),
            u16::from(query.query_class()),
        );
        if let Some(hit) = self.cache.get(&key, Instant::now()) {
            self.metrics.cache_hits.inc();
            return (forwarded(request, &hit), "cache");
        }
        self.metrics.cache_misses.inc();
        match self.upstreams.resolve(query).await {
            Ok((response, _server, took)) => {
                self.metrics.upstream_duration.observe(took.as_secs_f64());
                self.cache.put(key, &response, Instant::now());
                (forwarded(request, &response), "upstream")
            }
            Err(e) => {
                self.metrics.upstream_failures.inc();
                tracing::warn!(error = %e, name = %query.name(), "forwarding failed");
                (server_failure(request), "upstream")
            }
        }
    }

    fn finish(
        &self,
        client: SocketAddr,
        request: &Message,
        response: &Message,
        decision: &Decision,
        source: &str,
    ) {
        self.metrics.response(response.metadata.response_code);
        if let Some(denial) = decision.denial {
            self.metrics
                .denial(decision.tenant.as_deref(), denial.as_str());
        }
        if let Some(log) = &self.log {
            let q = request.queries.first();
            let line = serde_json::json!({
                "time": jiff::Timestamp::now().to_string(),
                "client": client.ip().to_string(),
                "tenant": decision.tenant,
                "name": q.map(|q| q.name().to_ascii()),
                "type": q.map(|q| q.query_type().to_string()),
                "rcode": response_code_name(response.metadata.response_code),
                "denied": decision.denial.map(crate::answer::Denial::as_str),
                "source": source,
            });
            log.record(line.to_string(), &self.metrics);
        }
    }
}

fn response_code_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => u16::from(other).to_string(),
    }
}

/// The UDP bytes of `response`, truncated to what the client can take.
fn udp_bytes(request: &Message, response: &Message) -> Option<Vec<u8>> {
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= udp_limit(request) {
        return Some(bytes);
    }
    truncated(request, response).to_vec().ok()
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_recv_buffer_size(4 << 20).ok();
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    // Wake up now and then to notice shutdown.
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(socket)
}

/// Packets read or written per system call.
const BATCH: usize = 32;

fn std_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// One UDP thread: reads up to [`BATCH`] packets per system call (`recvmmsg`), answers those the hot path
/// knows into a batch sent with one `sendmmsg`, and hands the rest to the general path.
fn udp_worker(
    shared: &Arc<Shared>,
    socket: &Arc<UdpSocket>,
    runtime: &tokio::runtime::Handle,
    stop: &AtomicBool,
) {
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;

    use nix::errno::Errno;
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

    let fd = socket.as_raw_fd();
    let mut inbox = vec![[0u8; 4096]; BATCH];
    let mut outbox = vec![[0u8; crate::answer::EDNS_PAYLOAD as usize]; BATCH];
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut received: Vec<(usize, Option<SocketAddr>)> = Vec::with_capacity(BATCH);
    let mut replies: Vec<(usize, usize, SockaddrStorage)> = Vec::with_capacity(BATCH);
    while !stop.load(Ordering::Relaxed) {
        received.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = inbox
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            match recvmmsg(
                fd,
                &mut recv_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => {
                    received
                        .extend(results.map(|r| (r.bytes, r.address.as_ref().and_then(std_addr))));
                }
                Err(Errno::EAGAIN | Errno::EINTR | Errno::ETIMEDOUT) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "UDP receive failed");
                    continue;
                }
            }
        }
        replies.clear();
        let generation = shared.current.load();
        for (i, &(n, peer)) in received.iter().enumerate() {
            let Some(peer) = peer else { continue };
            let packet = &inbox[i][..n.min(4096)];
            shared.metrics.udp_queries.inc();
            if !shared.limiter.allow(peer.ip(), Instant::now()) {
                shared.metrics.discard("rate_limit");
                continue;
            }
            // The question read off the packet (when it is a plain one), for the hot path and, on a
            // miss, for keeping the general path's answer.
            let plain = if shared.log.is_none() {
                crate::fast::parse(packet).map(|mut q| {
                    q.with_class(generation.zone.class_of(peer.ip()));
                    q
                })
            } else {
                None
            };
            let slot = &mut outbox[replies.len()];
            match plain
                .as_ref()
                .and_then(|q| hot_answer(&generation, q, packet, slot))
            {
                Some(len) => replies.push((replies.len(), len, SockaddrStorage::from(peer))),
                None => general_udp(
                    shared,
                    &generation,
                    socket,
                    runtime,
                    packet,
                    peer,
                    plain.as_ref(),
                ),
            }
        }
        if !replies.is_empty() {
            let slices: Vec<[IoSlice<'_>; 1]> = replies
                .iter()
                .map(|&(slot, len, _)| [IoSlice::new(&outbox[slot][..len])])
                .collect();
            let addrs: Vec<Option<SockaddrStorage>> = replies.iter().map(|r| Some(r.2)).collect();
            if let Err(e) = sendmmsg(
                fd,
                &mut send_headers,
                slices.iter(),
                addrs,
                [],
                MsgFlags::empty(),
            ) {
                tracing::debug!(error = %e, "UDP send failed");
            }
        }
    }
}

/// The hot path: a plain question asked before by a client of the same class, answered into `out`.
/// Not reached when every query must be logged (no question is read for it then).
fn hot_answer(
    generation: &Generation,
    q: &crate::fast::Question,
    packet: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    generation.answers.answer(q, packet, out, |e| {
        e.rcode.inc();
        if let Some(d) = &e.denial {
            d.inc();
        }
    })
}

/// The general path for one UDP packet: parse, decide, reply (keeping the answer for the hot path), or
/// forward on the runtime.
fn general_udp(
    shared: &Arc<Shared>,
    generation: &Generation,
    socket: &Arc<UdpSocket>,
    runtime: &tokio::runtime::Handle,
    bytes: &[u8],
    peer: SocketAddr,
    plain: Option<&crate::fast::Question>,
) {
    let m = &shared.metrics;
    let request = match parse_request(bytes) {
        Ok(r) => r,
        Err(Some(id)) => {
            m.response(ResponseCode::FormErr);
            if let Ok(b) = format_error(id).to_vec() {
                let _ = socket.send_to(&b, peer);
            }
            return;
        }
        Err(None) => {
            m.discard("malformed");
            return;
        }
    };
    let decision = decide(&generation.zone, peer.ip(), &request);
    match &decision.action {
        Action::Drop => m.discard("not_a_query"),
        Action::Reply(response) => {
            if let Some(b) = udp_bytes(&request, response) {
                let _ = socket.send_to(&b, peer);
                // Only whole answers are kept: a truncated one depends on this client's buffer size.
                let whole = b.get(2).is_some_and(|flags| flags & 0x02 == 0);
                if let Some(q) = plain
                    && whole
                {
                    generation.answers.keep(
                        q,
                        &b,
                        m.rcode_counter(response.metadata.response_code),
                        decision
                            .denial
                            .map(|d| m.denial_counter(decision.tenant.as_deref(), d.as_str())),
                    );
                }
            }
            shared.finish(peer, &request, response, &decision, "cluster");
        }
        Action::Forward(query) => {
            let query = query.clone();
            let (shared, socket) = (shared.clone(), socket.clone());
            runtime.spawn(async move {
                let Some(_slot) = shared.in_flight.acquire(peer.ip()) else {
                    shared.metrics.discard("forward_limit");
                    return;
                };
                let (response, source) = shared
                    .forward(&request, &query, decision.drop_protected)
                    .await;
                if let Some(b) = udp_bytes(&request, &response) {
                    let _ = socket.send_to(&b, peer);
                }
                shared.finish(peer, &request, &response, &decision, source);
            });
        }
    }
}

async fn handle_tcp(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let idle = shared.limits.tcp_idle;
    loop {
        let len = tokio::select! {
            r = tokio::time::timeout(idle, stream.read_u16()) => match r {
                Ok(Ok(n)) => usize::from(n),
                _ => return,
            },
            _ = stop.changed() => return,
        };
        if len == 0 || len > MAX_TCP_QUERY {
            shared.metrics.discard("tcp_oversize");
            return;
        }
        let mut buf = vec![0u8; len];
        if !matches!(
            tokio::time::timeout(idle, stream.read_exact(&mut buf)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        shared.metrics.tcp_queries.inc();
        if !shared.limiter.allow(peer.ip(), Instant::now()) {
            shared.metrics.discard("rate_limit");
            continue;
        }
        let (request, decision) = match parse_request(&buf) {
            Ok(r) => {
                let generation = shared.current.load();
                let d = decide(&generation.zone, peer.ip(), &r);
                (r, d)
            }
            Err(Some(id)) => {
                shared.metrics.response(ResponseCode::FormErr);
                if write_tcp(&mut stream, &format_error(id), idle)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Err(None) => {
                shared.metrics.discard("malformed");
                return;
            }
        };
        let (response, source) = match &decision.action {
            Action::Drop => {
                shared.metrics.discard("not_a_query");
                continue;
            }
            Action::Reply(r) => (r.clone(), "cluster"),
            Action::Forward(q) => {
                let Some(_slot) = shared.in_flight.acquire(peer.ip()) else {
                    shared.metrics.discard("forward_limit");
                    continue;
                };
                shared.forward(&request, q, decision.drop_protected).await
            }
        };
        shared.finish(peer, &request, &response, &decision, source);
        if write_tcp(&mut stream, &response, idle).await.is_err() {
            return;
        }
    }
}

async fn write_tcp(stream: &mut TcpStream, m: &Message, idle: Duration) -> io::Result<()> {
    let bytes = m.to_vec().map_err(|e| io::Error::other(e.to_string()))?;
    let len = u16::try_from(bytes.len())
        .map_err(|_| io::Error::other("response longer than 65535 bytes"))?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes);
    tokio::time::timeout(idle, stream.write_all(&out))
        .await
        .map_err(|_| io::Error::other("write timed out"))?
}

/// A running server: its address, and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tcp_stop: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tcp: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, ends idle TCP connections and waits for the UDP threads.
    pub async fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.tcp_stop.send(true);
        let _ = self.tcp.await;
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Binds UDP and TCP on `listen` (port 0 picks one, the same for both) and starts serving.
///
/// # Errors
/// A socket could not be bound.
// Async although it does not await: it must run inside the runtime it spawns the TCP server and the
// forwarders on, and being async makes that a compile-time fact instead of a panic.
#[allow(clippy::unused_async)]
pub async fn start(shared: Arc<Shared>, listen: SocketAddr) -> io::Result<Running> {
    let first = bind_udp(listen)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..shared.limits.udp_workers.max(1) {
        sockets.push(bind_udp(addr)?);
    }
    let tcp = {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())?
    };
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Handle::current();
    let mut threads = Vec::new();
    for (i, s) in sockets.into_iter().enumerate() {
        let (shared, stop, runtime) = (shared.clone(), stop.clone(), runtime.clone());
        let socket = Arc::new(s);
        threads.push(
            std::thread::Builder::new()
                .name(format!("kubebid-dns-udp-{i}"))
                .spawn(move || udp_worker(&shared, &socket, &runtime, &stop))?,
        );
    }
    let (tcp_stop, tcp_stopped) = tokio::sync::watch::channel(false);
    let active = Arc::new(AtomicUsize::new(0));
    let tcp_task = tokio::spawn(async move {
        let mut stopped = tcp_stopped.clone();
        loop {
            let (stream, peer) = tokio::select! {
                r = tcp.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped.changed() => return,
            };
            if active.load(Ordering::Relaxed) >= shared.limits.tcp_connections {
                shared.metrics.discard("tcp_connections");
                drop(stream);
                continue;
            }
            active.fetch_add(1, Ordering::Relaxed);
            shared.metrics.tcp_connections.inc();
            let (shared, active, stop) = (shared.clone(), active.clone(), tcp_stopped.clone());
            tokio::spawn(async move {
                handle_tcp(shared.clone(), stream, peer, stop).await;
                active.fetch_sub(1, Ordering::Relaxed);
                shared.metrics.tcp_connections.dec();
            });
        }
    });
    Ok(Running {
        addr,
        stop,
        tcp_stop,
        threads,
        tcp: tcp_task,
    })
}
