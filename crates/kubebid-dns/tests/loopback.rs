//! The server over real sockets on loopback: a Rust DNS client and Debian's `dig`, each bound to the
//! 127.0.0.x address of a pod in `examples/dns/cluster-state.yaml`, and a real `unbound` as the upstream
//! resolver for `example.test`. `scripts/test` installs dig and unbound when they are missing.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use kubebid_dns::metrics::DnsMetrics;
use kubebid_dns::server::{Limits, QueryLog, Running, Shared, start};
use kubebid_dns::upstream::Upstreams;
use kubebid_dns::zone::UnknownClients;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kubebid-dns-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real unbound serving `example.test` as local data; killed on drop.
struct Unbound {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn unbound(name: &str) -> Unbound {
    let dir = temp_dir(&format!("unbound-{name}"));
    let port = free_port();
    let conf = format!(
        "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-daemonize: no\n  use-syslog: no\n  logfile: \"\"\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  num-threads: 1\n  access-control: 127.0.0.0/8 allow\n  do-ip6: no\n  local-zone: \"example.test.\" static\n  local-data: \"example.test. 60 IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 30\"\n  local-data: \"www.example.test. 300 IN A 192.0.2.10\"\n  local-data: \"short.example.test. 1 IN A 192.0.2.11\"\n  local-data: \"rebind.example.test. 300 IN A 169.254.169.254\"\n  local-data: \"rebind.example.test. 300 IN A 192.0.2.12\"\n  local-data: \"inside.example.test. 300 IN A 10.96.0.10\"\n  local-data: \"mapped.example.test. 300 IN AAAA ::ffff:10.244.1.5\"\n  local-data: \"pods.example.test. 300 IN CNAME inside.example.test.\"\nremote-control:\n  control-enable: no\n",
        dir = dir.display()
    );
    let path = dir.join("unbound.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("unbound")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unbound is installed (scripts/test installs it)");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let u = Unbound { child, addr };
    for _ in 0..100 {
        if let Ok(m) = try_udp(
            addr,
            Ipv4Addr::LOCALHOST,
            "www.example.test.",
            RecordType::A,
        )
        .await
            && !m.answers.is_empty()
        {
            return u;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("unbound did not start");
}

struct Server {
    running: Running,
    shared: Arc<Shared>,
    addr: SocketAddr,
}

async fn server(upstream: SocketAddr, limits: Limits, log: Option<&Path>) -> Server {
    let zone = kubebid_dns::state::build_zone(
        &[root().join("examples/dns/cluster-state.yaml")],
        &[root().join("examples/config")],
        UnknownClients::Deny,
    )
    .unwrap();
    let metrics = Arc::new(DnsMetrics::default());
    let mut shared = Shared::new(
        zone,
        Upstreams {
            servers: vec![upstream],
            timeout: Duration::from_secs(2),
        },
        limits,
        metrics.clone(),
    );
    if let Some(p) = log {
        shared.log = Some(QueryLog::open(p, metrics).unwrap());
    }
    let shared = Arc::new(shared);
    let running = start(shared.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Server {
        addr: running.addr,
        running,
        shared,
    }
}

fn limits() -> Limits {
    Limits {
        client_qps: 0,
        udp_workers: 2,
        ..Limits::default()
    }
}

fn pod(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn query_bytes(name: &str, qtype: RecordType) -> (u16, Vec<u8>) {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    (m.metadata.id, m.to_vec().unwrap())
}

async fn try_udp(
    server: SocketAddr,
    from: Ipv4Addr,
    name: &str,
    qtype: RecordType,
) -> std::io::Result<Message> {
    let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(from), 0)).await?;
    let (id, bytes) = query_bytes(name, qtype);
    sock.send_to(&bytes, server).await?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("no answer"))??;
    let m = Message::from_vec(&buf[..n]).map_err(|e| std::io::Error::other(e.to_string()))?;
    assert_eq!(m.metadata.id, id);
    Ok(m)
}

async fn udp(server: SocketAddr, from: u8, name: &str, qtype: RecordType) -> Message {
    try_udp(server, pod(from), name, qtype).await.unwrap()
}

async fn tcp(server: SocketAddr, from: u8, name: &str, qtype: RecordType) -> Message {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(IpAddr::V4(pod(from)), 0))
        .unwrap();
    let mut s = sock.connect(server).await.unwrap();
    let (id, bytes) = query_bytes(name, qtype);
    s.write_all(&u16::try_from(bytes.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    s.write_all(&bytes).await.unwrap();
    let n = s.read_u16().await.unwrap();
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await.unwrap();
    let m = Message::from_vec(&buf).unwrap();
    assert_eq!(m.metadata.id, id);
    m
}

fn ips(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_matrix_over_udp_and_tcp() {
    let up = unbound("matrix").await;
    let s = server(up.addr, limits(), None).await;
    let nx = ResponseCode::NXDomain;
    let ok = ResponseCode::NoError;
    let cases: &[(u8, &str, RecordType, ResponseCode)] = &[
        (11, "web.tenant-acme.svc.cluster.local.", RecordType::A, ok),
        (
            11,
            "web.tenant-acme-staging.svc.cluster.local.",
            RecordType::A,
            ok,
        ),
        (
            11,
            "prometheus.monitoring.svc.cluster.local.",
            RecordType::A,
            ok,
        ),
        (
            11,
            "api.tenant-globex.svc.cluster.local.",
            RecordType::A,
            nx,
        ),
        (11, "www.example.test.", RecordType::A, ok),
        (11, "*.tenant-acme.svc.cluster.local.", RecordType::A, nx),
        (11, "10.20.96.10.in-addr.arpa.", RecordType::PTR, nx),
        (11, "10.10.96.10.in-addr.arpa.", RecordType::PTR, ok),
        (
            21,
            "registry.platform.svc.cluster.local.",
            RecordType::A,
            ok,
        ),
        (
            21,
            "internal.platform.svc.cluster.local.",
            RecordType::A,
            nx,
        ),
        (21, "web.tenant-acme.svc.cluster.local.", RecordType::A, nx),
        (
            31,
            "app.tenant-initech.svc.cluster.local.",
            RecordType::A,
            ok,
        ),
        (31, "www.example.test.", RecordType::A, nx),
        (99, "web.tenant-acme.svc.cluster.local.", RecordType::A, nx),
        (99, "www.example.test.", RecordType::A, ok),
        (
            41,
            "api.tenant-globex.svc.cluster.local.",
            RecordType::A,
            ok,
        ),
    ];
    for &(from, name, qtype, want) in cases {
        for (transport, m) in [
            ("udp", udp(s.addr, from, name, qtype).await),
            ("tcp", tcp(s.addr, from, name, qtype).await),
        ] {
            assert_eq!(
                m.metadata.response_code, want,
                "{transport} from 127.0.0.{from}: {name} {qtype}"
            );
            assert_eq!(m.answers.is_empty(), want == nx, "{transport} {name}");
        }
    }
    assert_eq!(
        ips(&udp(
            s.addr,
            11,
            "web.tenant-acme.svc.cluster.local.",
            RecordType::A
        )
        .await),
        ["10.96.10.10"]
    );
    // AXFR over TCP, as a zone transfer is asked: NXDOMAIN, nothing listed.
    let axfr = tcp(s.addr, 41, "cluster.local.", RecordType::AXFR).await;
    assert_eq!((axfr.metadata.response_code, axfr.answers.len()), (nx, 0));
    let metrics = s.shared.metrics.encode();
    assert!(
        metrics.contains("kubebid_dns_denials_total{tenant=\"acme\",reason=\"other_tenant\"} 2"),
        "{metrics}"
    );
    s.running.shutdown().await;
}

fn dig(server: SocketAddr, from: u8, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "-b",
            &pod(from).to_string(),
        ])
        .args(["+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("dig is installed (scripts/test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_what_each_tenant_may_see() {
    let up = unbound("dig").await;
    let s = server(up.addr, limits(), None).await;
    let a = s.addr;
    // dig blocks; run it off the runtime's workers.
    let run = |from: u8, args: Vec<&'static str>| {
        tokio::task::spawn_blocking(move || dig(a, from, &args))
    };
    let short = run(11, vec!["+short", "web.tenant-acme.svc.cluster.local"])
        .await
        .unwrap();
    assert_eq!(short.trim(), "10.96.10.10");
    let denied = run(11, vec!["api.tenant-globex.svc.cluster.local"])
        .await
        .unwrap();
    assert!(denied.contains("status: NXDOMAIN"), "{denied}");
    assert!(
        denied.contains("flags: qr aa rd ra"),
        "authoritative, like any missing name: {denied}"
    );
    let srv = run(
        11,
        vec![
            "+short",
            "SRV",
            "_postgres._tcp.db.tenant-acme.svc.cluster.local",
        ],
    )
    .await
    .unwrap();
    let mut lines: Vec<&str> = srv.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "0 100 5432 db-0.db.tenant-acme.svc.cluster.local.",
            "0 100 5432 db-1.db.tenant-acme.svc.cluster.local."
        ]
    );
    let ptr = run(11, vec!["+short", "-x", "10.96.10.10"]).await.unwrap();
    assert_eq!(ptr.trim(), "web.tenant-acme.svc.cluster.local.");
    let external = run(21, vec!["+short", "www.example.test"]).await.unwrap();
    assert_eq!(external.trim(), "192.0.2.10");
    let no_external = run(31, vec!["www.example.test"]).await.unwrap();
    assert!(no_external.contains("status: NXDOMAIN"), "{no_external}");
    let tcp = run(
        21,
        vec!["+tcp", "+short", "registry.platform.svc.cluster.local"],
    )
    .await
    .unwrap();
    assert_eq!(tcp.trim(), "10.96.50.10");
    let axfr = run(41, vec!["AXFR", "cluster.local"]).await.unwrap();
    assert!(
        !axfr.contains("web.tenant-acme") && !axfr.contains("10.96."),
        "a zone transfer lists nothing: {axfr}"
    );
    let any = run(41, vec!["ANY", "web.tenant-acme.svc.cluster.local"])
        .await
        .unwrap();
    assert!(any.contains("status: NXDOMAIN"), "{any}");
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_goes_through_a_cache_that_counts_ttls_down() {
    let up = unbound("cache").await;
    let s = server(up.addr, limits(), None).await;
    let first = udp(s.addr, 11, "www.example.test.", RecordType::A).await;
    assert_eq!(ips(&first), ["192.0.2.10"]);
    assert_eq!(first.answers[0].ttl, 300);
    assert!(first.metadata.recursion_available && !first.metadata.authoritative);
    let second = udp(s.addr, 21, "WWW.example.test.", RecordType::A).await;
    assert_eq!(ips(&second), ["192.0.2.10"]);
    assert!(second.answers[0].ttl <= 300);
    // Negative answers are cached too, with the upstream's SOA.
    let nx = udp(s.addr, 11, "nope.example.test.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities.len(), 1);
    let nx2 = udp(s.addr, 11, "nope.example.test.", RecordType::A).await;
    assert_eq!(nx2.metadata.response_code, ResponseCode::NXDomain);
    let m = s.shared.metrics.encode();
    assert!(m.contains("kubebid_dns_cache_hits_total 2"), "{m}");
    assert!(m.contains("kubebid_dns_cache_misses_total 2"), "{m}");
    assert!(
        m.contains("kubebid_dns_upstream_duration_seconds_count 2"),
        "{m}"
    );
    drop(up);
    // The upstream is gone: cached names still answer, new ones fail with SERVFAIL.
    assert_eq!(
        ips(&udp(s.addr, 11, "www.example.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    let gone = udp(s.addr, 11, "other.example.test.", RecordType::A).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::ServFail);
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_apply_without_a_restart() {
    let up = unbound("state").await;
    let s = server(up.addr, limits(), None).await;
    let dir = temp_dir("state");
    let state = dir.join("state.yaml");
    let base = std::fs::read_to_string(root().join("examples/dns/cluster-state.yaml")).unwrap();
    std::fs::write(&state, &base).unwrap();
    let shared = s.shared.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(kubebid_dns::state::watch(
        vec![state.clone()],
        vec![root().join("examples/config")],
        UnknownClients::Deny,
        Duration::from_millis(50),
        move |z| shared.set_zone(z),
        async move {
            let _ = stopped.await;
        },
    ));
    let name = "cache.tenant-acme.svc.cluster.local.";
    assert_eq!(
        udp(s.addr, 11, name, RecordType::A)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    let added = format!(
        "{base}- apiVersion: v1\n  kind: Service\n  metadata: {{name: cache, namespace: tenant-acme}}\n  spec: {{clusterIP: 10.96.10.30, ports: [{{name: redis, port: 6379}}]}}\n"
    );
    std::fs::write(&state, added).unwrap();
    let mut resolved = false;
    for _ in 0..200 {
        if ips(&udp(s.addr, 11, name, RecordType::A).await) == ["10.96.10.30"] {
            resolved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(resolved, "the new service resolves without a restart");
    // Still invisible to another tenant.
    assert_eq!(
        udp(s.addr, 21, name, RecordType::A)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    // A broken file is not applied: the last good zone stays.
    std::fs::write(&state, "apiVersion: v1\nkind: List\nitems: [ {kind: Service, apiVersion: v1, metadata: {name: x}, spec: {ports: 7}} ]\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ips(&udp(s.addr, 11, name, RecordType::A).await),
        ["10.96.10.30"]
    );
    let _ = stop.send(());
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_formerr_or_nothing_and_the_server_goes_on() {
    let up = unbound("malformed").await;
    let s = server(up.addr, limits(), None).await;
    let sock = UdpSocket::bind("127.0.0.11:0").await.unwrap();
    // A header and garbage: FORMERR with the same ID.
    let mut garbage = vec![
        0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff,
    ];
    sock.send_to(&garbage, s.addr).await.unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (0xbeef, ResponseCode::FormErr)
    );
    // Too short to be a header, or flagged as a response: no answer at all.
    sock.send_to(&[1, 2, 3], s.addr).await.unwrap();
    garbage[2] = 0x81;
    sock.send_to(&garbage, s.addr).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sock.recv(&mut buf))
            .await
            .is_err()
    );
    // Over TCP: a length of 0 or beyond any query closes the connection.
    for len in [0u16, 60000] {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(&len.to_be_bytes()).await.unwrap();
        let mut b = [0u8; 2];
        let r = tokio::time::timeout(Duration::from_secs(3), c.read(&mut b))
            .await
            .unwrap();
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "closed after a length of {len}"
        );
    }
    // And the server still answers.
    assert_eq!(
        ips(&udp(
            s.addr,
            11,
            "web.tenant-acme.svc.cluster.local.",
            RecordType::A
        )
        .await),
        ["10.96.10.10"]
    );
    let m = s.shared.metrics.encode();
    assert!(
        m.contains("kubebid_dns_dropped_total{reason=\"malformed\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("kubebid_dns_dropped_total{reason=\"tcp_oversize\"} 2"),
        "{m}"
    );
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_limited_in_number_and_idle_time() {
    let up = unbound("tcp").await;
    let s = server(
        up.addr,
        Limits {
            tcp_connections: 2,
            tcp_idle: Duration::from_millis(300),
            ..limits()
        },
        None,
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // Let the server account for both before the third arrives.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = TcpStream::connect(s.addr).await.unwrap();
    let mut b = [0u8; 2];
    let r = tokio::time::timeout(Duration::from_secs(3), third.read(&mut b))
        .await
        .unwrap();
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "the third connection is closed at once"
    );
    // Idle connections are closed by the server, which frees the slots.
    for c in &mut held {
        let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "idle connection closed");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let m = tcp(
        s.addr,
        11,
        "web.tenant-acme.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(ips(&m), ["10.96.10.10"]);
    assert!(
        s.shared
            .metrics
            .encode()
            .contains("kubebid_dns_dropped_total{reason=\"tcp_connections\"} 1")
    );
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_client_does_not_starve_another() {
    let up = unbound("flood").await;
    let s = server(
        up.addr,
        Limits {
            client_qps: 200,
            ..limits()
        },
        None,
    )
    .await;
    // globex's pod sends 5,000 queries as fast as it can and reads none of the answers.
    let flood = UdpSocket::bind("127.0.0.21:0").await.unwrap();
    let (_, bytes) = query_bytes("api.tenant-globex.svc.cluster.local.", RecordType::A);
    for _ in 0..5000 {
        flood.send_to(&bytes, s.addr).await.unwrap();
    }
    // acme's pod is still answered, every time.
    for _ in 0..20 {
        let m = udp(
            s.addr,
            11,
            "web.tenant-acme.svc.cluster.local.",
            RecordType::A,
        )
        .await;
        assert_eq!(ips(&m), ["10.96.10.10"]);
    }
    let m = s.shared.metrics.encode();
    let dropped: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("kubebid_dns_dropped_total{reason=\"rate_limit\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // At most the burst (400) plus what 200/s refills in the flood's time got through.
    assert!(dropped >= 1000, "{m}");
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_log_records_tenant_answer_and_denial() {
    let up = unbound("log").await;
    let dir = temp_dir("log");
    let log = dir.join("queries.jsonl");
    let s = server(up.addr, limits(), Some(&log)).await;
    udp(
        s.addr,
        11,
        "web.tenant-acme.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    udp(
        s.addr,
        11,
        "api.tenant-globex.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    udp(s.addr, 31, "www.example.test.", RecordType::A).await;
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect();
        if lines.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    // A line is written after its answer is sent, so the next query's line may come first: found by name.
    let line = |name: &str| {
        lines
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no line for {name}: {lines:?}"))
    };
    let own = line("web.tenant-acme.svc.cluster.local.");
    assert_eq!(own["tenant"], "acme");
    assert_eq!(own["rcode"], "NOERROR");
    assert_eq!(own["client"], "127.0.0.11");
    let other = line("api.tenant-globex.svc.cluster.local.");
    assert_eq!(other["denied"], "other_tenant");
    assert_eq!(other["rcode"], "NXDOMAIN");
    let external = line("www.example.test.");
    assert_eq!(external["tenant"], "initech");
    assert_eq!(external["denied"], "external");
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let up = unbound("large").await;
    let s = server(up.addr, limits(), None).await;
    // A headless service with 100 ready endpoints.
    let mut text = std::fs::read_to_string(root().join("examples/dns/cluster-state.yaml")).unwrap();
    text.push_str("- apiVersion: v1\n  kind: Service\n  metadata: {name: big, namespace: tenant-acme}\n  spec: {clusterIP: None}\n");
    text.push_str("- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  metadata: {name: big-1, namespace: tenant-acme, labels: {kubernetes.io/service-name: big}}\n  addressType: IPv4\n  endpoints:\n");
    for i in 0..100 {
        text.push_str(&format!("  - addresses: [10.244.9.{i}]\n"));
    }
    let dir = temp_dir("large");
    std::fs::write(dir.join("state.yaml"), text).unwrap();
    let zone = kubebid_dns::state::build_zone(
        &[dir.join("state.yaml")],
        &[root().join("examples/config")],
        UnknownClients::Deny,
    )
    .unwrap();
    s.shared.set_zone(zone);
    let name = "big.tenant-acme.svc.cluster.local.";
    let over_udp = udp(s.addr, 11, name, RecordType::A).await;
    assert!(over_udp.metadata.truncation);
    assert!(over_udp.answers.is_empty());
    let over_tcp = tcp(s.addr, 11, name, RecordType::A).await;
    assert!(!over_tcp.metadata.truncation);
    assert_eq!(over_tcp.answers.len(), 100);
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_kept_on_the_hot_path_stay_per_tenant_exact_and_counted() {
    let up = unbound("hot").await;
    let s = server(up.addr, limits(), None).await;
    let name = "web.tenant-acme.svc.cluster.local.";
    // Alternate between tenants several times: the second and later answers come from the kept bytes.
    for _ in 0..3 {
        let acme = udp(s.addr, 11, name, RecordType::A).await;
        assert_eq!(ips(&acme), ["10.96.10.10"]);
        let globex = udp(s.addr, 21, name, RecordType::A).await;
        assert_eq!(globex.metadata.response_code, ResponseCode::NXDomain);
        assert!(globex.answers.is_empty());
    }
    assert!(
        !s.shared.current.load().answers.is_empty(),
        "answers were kept"
    );
    // Denials answered from kept bytes are still counted, once per query.
    let m = s.shared.metrics.encode();
    assert!(
        m.contains("kubebid_dns_denials_total{tenant=\"globex\",reason=\"other_tenant\"} 3"),
        "{m}"
    );
    // The question comes back spelt exactly as asked (resolvers randomise case and check it).
    let mixed = "WeB.TeNaNt-AcMe.SvC.ClUsTeR.LoCaL.";
    let sock = UdpSocket::bind("127.0.0.11:0").await.unwrap();
    for _ in 0..2 {
        let (id, bytes) = query_bytes(mixed, RecordType::A);
        sock.send_to(&bytes, s.addr).await.unwrap();
        let mut buf = [0u8; 1500];
        let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let r = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(r.metadata.id, id);
        assert_eq!(r.queries[0].name().to_ascii(), mixed);
        assert_eq!(ips(&r), ["10.96.10.10"]);
    }
    // A new zone starts with nothing kept: a removed service stops resolving at once.
    let dir = temp_dir("hot");
    let text = std::fs::read_to_string(root().join("examples/dns/cluster-state.yaml"))
        .unwrap()
        .replace(
            "name: web\n    namespace: tenant-acme\n",
            "name: web2\n    namespace: tenant-acme\n",
        );
    std::fs::write(dir.join("state.yaml"), text).unwrap();
    let zone = kubebid_dns::state::build_zone(
        &[dir.join("state.yaml")],
        &[root().join("examples/config")],
        UnknownClients::Deny,
    )
    .unwrap();
    s.shared.set_zone(zone);
    assert_eq!(
        udp(s.addr, 11, name, RecordType::A)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    s.running.shutdown().await;
}

/// An external name an attacker controls, resolving to the metadata service or into the cluster's own
/// networks, would turn every name check into a way past them (DNS rebinding): such records never reach a
/// tenant's pod, and the metric counts them; the rest of the answer stays. The platform's pods get the
/// whole answer (they may rely on an external name for a node or metadata address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_answers_naming_protected_addresses_are_dropped() {
    let up = unbound("rebind").await;
    let s = server(up.addr, limits(), None).await;
    // Mixed: the public address stays, the metadata address goes.
    let mixed = udp(s.addr, 11, "rebind.example.test.", RecordType::A).await;
    assert_eq!(mixed.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ips(&mixed), ["192.0.2.12"]);
    // Wholly inside the service network: NODATA, over TCP too (the cached copy is the filtered one).
    let inside = tcp(s.addr, 21, "inside.example.test.", RecordType::A).await;
    assert_eq!(inside.metadata.response_code, ResponseCode::NoError);
    assert!(ips(&inside).is_empty(), "{inside:?}");
    let again = udp(s.addr, 11, "inside.example.test.", RecordType::A).await;
    assert!(ips(&again).is_empty(), "{again:?}");
    // An IPv4-mapped IPv6 address of the pod network is the pod network.
    let mapped = udp(s.addr, 11, "mapped.example.test.", RecordType::AAAA).await;
    assert!(ips(&mapped).is_empty(), "{mapped:?}");
    // A CNAME chain into a protected address keeps the CNAME and loses the address.
    let chain = udp(s.addr, 11, "pods.example.test.", RecordType::A).await;
    assert!(
        chain
            .answers
            .iter()
            .all(|r| r.record_type() != RecordType::A),
        "{chain:?}"
    );
    assert!(
        chain
            .answers
            .iter()
            .any(|r| r.record_type() == RecordType::CNAME),
        "{chain:?}"
    );
    // Public names are untouched.
    assert_eq!(
        ips(&udp(s.addr, 11, "www.example.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    // The same names for a platform pod (127.0.0.41), from the cache: whole.
    assert_eq!(
        ips(&udp(s.addr, 41, "rebind.example.test.", RecordType::A).await),
        ["169.254.169.254", "192.0.2.12"]
    );
    assert_eq!(
        ips(&udp(s.addr, 41, "inside.example.test.", RecordType::A).await),
        ["10.96.0.10"]
    );
    // One record per answer served to a tenant: rebind, inside (twice), mapped, and the chain's address if
    // unbound follows its own CNAME.
    let upstream_chain = try_udp(
        up.addr,
        Ipv4Addr::LOCALHOST,
        "pods.example.test.",
        RecordType::A,
    )
    .await
    .unwrap();
    let chased = upstream_chain
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .count();
    let m = s.shared.metrics.encode();
    assert!(
        m.contains(&format!(
            "kubebid_dns_rebinding_records_dropped_total {}",
            4 + chased
        )),
        "{m}"
    );
    s.running.shutdown().await;
}
