//! The server shell around [`crate::answer::decide`]: UDP on one OS thread per core (`SO_REUSEPORT`
//! sockets with blocking reads: no wake-ups on the hot path), TCP on tokio with limits on connections,
//! message size and idle time. What it answers is [`crate::answer`]'s, forwarding and the cache are
//! [`crate::forward`]'s, per-client limits [`crate::limit`]'s and the query log [`crate::querylog`]'s:
//! this module reads and writes sockets and wires those together.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, ResponseCode};
use kubebid_server::Shutdown;
use kubebid_server::accept::{AcceptConfig, WhenFull};
use kubebid_server::http::Process;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::answer::{
    Action, Decision, Source, decide, format_error, parse_request, truncated, udp_limit,
};
use crate::forward::Forwarder;
use crate::limit::{ClientLimiter, InFlight};
use crate::metrics::{DnsMetrics, Dropped};
pub use crate::querylog::QueryLog;
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

/// How often [`Shared::upkeep`] runs.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Everything the UDP threads and TCP tasks share.
pub struct Shared {
    pub current: ArcSwap<Generation>,
    pub forwarder: Forwarder,
    pub metrics: Arc<DnsMetrics>,
    pub limiter: ClientLimiter,
    pub in_flight: InFlight,
    pub log: Option<QueryLog>,
    pub limits: Limits,
    /// When [`Shared::upkeep`] is next due, in milliseconds since `epoch`.
    next_upkeep: AtomicU64,
    epoch: Instant,
}

impl Shared {
    #[must_use]
    pub fn new(zone: Zone, upstreams: Upstreams, limits: Limits, metrics: Arc<DnsMetrics>) -> Self {
        metrics
            .zone_names
            .set(i64::try_from(zone.len()).unwrap_or(i64::MAX));
        Self {
            current: ArcSwap::from_pointee(Generation::new(zone)),
            forwarder: Forwarder::new(upstreams, &metrics),
            metrics,
            limiter: ClientLimiter::new(limits.client_qps),
            in_flight: InFlight::new(limits.client_forwards),
            log: None,
            limits,
            next_upkeep: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Periodic upkeep, done by whichever UDP thread comes first once [`UPKEEP_EVERY`] has passed (the
    /// threads wake at least every 200 ms, flood or not): forgets the rate-limit state of clients whose
    /// allowance is whole again, so a spoofed-source flood cannot grow it without bound.
    pub fn upkeep(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let due = self.next_upkeep.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let next = now.saturating_add(u64::try_from(UPKEEP_EVERY.as_millis()).unwrap_or(u64::MAX));
        if self
            .next_upkeep
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.limiter.retain_recent();
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

    /// Forwards `query` for `client`, within its limit of queries in flight; `None` (counted) when it has
    /// that many already. Answers to every client but the platform's lose their protected addresses
    /// (see [`Forwarder::forward`]).
    async fn forward(
        &self,
        client: SocketAddr,
        request: &Message,
        query: &hickory_proto::op::Query,
        decision: &Decision,
    ) -> Option<(Message, Source)> {
        let Some(_slot) = self.in_flight.acquire(client.ip()) else {
            self.metrics.discard(Dropped::ForwardLimit);
            return None;
        };
        let generation = self.current.load_full();
        let protected = decision
            .drop_protected
            .then(|| &generation.zone.tenancy().cluster().protected);
        Some(self.forwarder.forward(request, query, protected).await)
    }

    /// Counts the response and its denial, and logs the query when there is a query log.
    fn finish(
        &self,
        client: SocketAddr,
        request: &Message,
        response: &Message,
        decision: &Decision,
        source: Source,
    ) {
        self.metrics.response(response.metadata.response_code);
        if let Some(denial) = decision.denial {
            self.metrics
                .denial(decision.tenant.as_deref(), denial.as_str());
        }
        if let Some(log) = &self.log {
            log.query(client, request, response, decision, source, &self.metrics);
        }
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
        shared.upkeep();
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
            if !shared.limiter.allow(peer.ip()) {
                shared.metrics.discard(Dropped::RateLimit);
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
            m.discard(Dropped::Malformed);
            return;
        }
    };
    let decision = decide(&generation.zone, peer.ip(), &request);
    match &decision.action {
        Action::Drop => m.discard(Dropped::NotAQuery),
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
            shared.finish(peer, &request, response, &decision, Source::Zone);
        }
        Action::Forward(query) => {
            let query = query.clone();
            let (shared, socket) = (shared.clone(), socket.clone());
            runtime.spawn(async move {
                let Some((response, source)) =
                    shared.forward(peer, &request, &query, &decision).await
                else {
                    return;
                };
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
    stop: impl Future<Output = ()>,
) {
    let idle = shared.limits.tcp_idle;
    tokio::pin!(stop);
    loop {
        let len = tokio::select! {
            r = tokio::time::timeout(idle, stream.read_u16()) => match r {
                Ok(Ok(n)) => usize::from(n),
                _ => return,
            },
            () = &mut stop => return,
        };
        if len == 0 || len > MAX_TCP_QUERY {
            shared.metrics.discard(Dropped::TcpOversize);
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
        if !shared.limiter.allow(peer.ip()) {
            shared.metrics.discard(Dropped::RateLimit);
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
                shared.metrics.discard(Dropped::Malformed);
                return;
            }
        };
        let (response, source) = match &decision.action {
            Action::Drop => {
                shared.metrics.discard(Dropped::NotAQuery);
                continue;
            }
            Action::Reply(r) => (r.clone(), Source::Zone),
            Action::Forward(q) => {
                let Some(answer) = shared.forward(peer, &request, q, &decision).await else {
                    continue;
                };
                answer
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
    shutdown: Shutdown,
    threads: Vec<std::thread::JoinHandle<()>>,
    tcp: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, ends idle TCP connections and waits for the UDP threads.
    pub async fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.shutdown.trigger();
        let _ = self.tcp.await;
        // Connections still open end at the signal; the deadline only guards against a stuck write.
        self.shutdown.drain(Duration::from_secs(5)).await;
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Binds UDP and TCP on `listen` (port 0 picks one, the same for both) and starts serving, with a
/// process context of its own (for a program that runs nothing else, and tests).
///
/// # Errors
/// A socket could not be bound.
pub async fn start(shared: Arc<Shared>, listen: SocketAddr) -> io::Result<Running> {
    start_in(shared, listen, &Process::new(Shutdown::new())).await
}

/// The UDP sockets (one per worker) and the TCP listener on one address.
fn bind_pair(
    listen: SocketAddr,
    workers: usize,
) -> io::Result<(SocketAddr, Vec<UdpSocket>, TcpListener)> {
    let first = bind_udp(listen)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(bind_udp(addr)?);
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok((addr, sockets, TcpListener::from_std(socket.into())?))
}

/// Binds UDP and TCP on `listen` (port 0 picks one, the same for both) and starts serving as part of
/// `process`: TCP through the shell's accept loop, both stopped by the process's shutdown.
///
/// # Errors
/// A socket could not be bound.
// Async although it does not await: it must run inside the runtime it spawns the TCP server and the
// forwarders on, and being async makes that a compile-time fact instead of a panic.
#[allow(clippy::unused_async)]
pub async fn start_in(
    shared: Arc<Shared>,
    listen: SocketAddr,
    process: &Process,
) -> io::Result<Running> {
    // With port 0 the UDP socket picks the port and TCP takes the same one, which another process may
    // hold over TCP: then another port is picked.
    let mut attempt = 0;
    let (addr, sockets, tcp) = loop {
        match bind_pair(listen, shared.limits.udp_workers) {
            Err(e) if listen.port() == 0 && e.kind() == io::ErrorKind::AddrInUse && attempt < 8 => {
                attempt += 1;
            }
            other => break other?,
        }
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
    let refused = shared.metrics.clone();
    let config = AcceptConfig {
        server: "dns-tcp",
        max_connections: shared.limits.tcp_connections,
        when_full: WhenFull::Close(Arc::new(move || refused.discard(Dropped::TcpConnections))),
    };
    let (metrics, shutdown) = (process.metrics.clone(), process.shutdown.clone());
    let tcp_task = tokio::spawn(async move {
        kubebid_server::accept::serve_tcp(tcp, &config, &metrics, &shutdown, |stream, peer| {
            let (shared, stop) = (shared.clone(), shutdown.requested());
            async move {
                shared.metrics.tcp_connections.inc();
                handle_tcp(shared.clone(), stream, peer, stop).await;
                shared.metrics.tcp_connections.dec();
            }
        })
        .await;
    });
    Ok(Running {
        addr,
        stop,
        shutdown: process.shutdown.clone(),
        threads,
        tcp: tcp_task,
    })
}
