//! `kubebid serve dns`: the tenant-aware cluster DNS server, standalone from files or fed by the cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kubebid_dns::metrics::DnsMetrics;
use kubebid_dns::querylog::QueryLog;
use kubebid_dns::server::{Limits, Shared};
use kubebid_dns::upstream::{Upstreams, from_resolv_conf, parse_server};
use kubebid_dns::zone::{UnknownClients, Zone};
use kubebid_server::Shutdown;
use kubebid_server::http::Process;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum UnknownClientsArg {
    /// Cluster names are NXDOMAIN; external names resolve.
    Deny,
    /// Unknown clients see everything, like platform pods.
    Allow,
}

#[derive(clap::Args, Clone, Debug)]
pub struct DnsArgs {
    /// Address for UDP and TCP.
    #[arg(long, default_value = "0.0.0.0:53")]
    pub listen: SocketAddr,
    /// Standalone mode: the cluster state as a Kubernetes List (`kubectl get ns,svc,endpointslices,pods -A
    /// -o yaml`), a file or a directory (read recursively, as `check` reads one), repeatable; reloaded
    /// when it changes. Tenants and `KubeBidConfig` here are an error: they belong in --config. Without
    /// it the server watches the cluster.
    #[arg(long, value_name = "FILE|DIR")]
    pub state: Vec<PathBuf>,
    /// `KubeBidConfig` and Tenant objects (file or directory, repeatable). Standalone mode only; in a
    /// cluster they are watched.
    #[arg(short, long, value_name = "FILE|DIR")]
    pub config: Vec<PathBuf>,
    /// Upstream resolver for external names, `IP` or `IP:PORT`, repeatable [default: the nameservers of
    /// /etc/resolv.conf].
    #[arg(long, value_name = "ADDR")]
    pub upstream: Vec<String>,
    /// Seconds to wait for one upstream before trying the next.
    #[arg(long, default_value_t = 2.0)]
    pub upstream_timeout: f64,
    /// Address of the plain-HTTP /metrics and /healthz endpoint.
    #[arg(long, default_value = "0.0.0.0:9153")]
    pub metrics_listen: SocketAddr,
    /// Append one JSON line per query to this file (audit).
    #[arg(long, value_name = "FILE")]
    pub query_log: Option<PathBuf>,
    /// What clients whose address is no known pod may resolve.
    #[arg(long, value_enum, default_value_t = UnknownClientsArg::Deny)]
    pub unknown_clients: UnknownClientsArg,
    /// Queries per second allowed per client address, bursts of twice that; 0 turns the limit off.
    #[arg(long, default_value_t = 1000)]
    pub client_qps: u32,
    /// Forwarded queries in flight per client address.
    #[arg(long, default_value_t = 64)]
    pub client_forwards: usize,
    /// Open TCP connections at once.
    #[arg(long, default_value_t = 256)]
    pub tcp_max_connections: usize,
    /// Seconds a TCP connection may stay idle.
    #[arg(long, default_value_t = 10.0)]
    pub tcp_idle_timeout: f64,
    /// UDP worker threads [default: one per core].
    #[arg(long)]
    pub udp_workers: Option<usize>,
    /// Seconds between checks of the state and configuration files.
    #[arg(long, default_value_t = 1.0)]
    pub reload_interval: f64,
}

fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    if value.is_finite() && value > 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("{flag} must be a positive number of seconds"))
    }
}

fn upstreams(args: &DnsArgs) -> Result<Upstreams, String> {
    let servers = if args.upstream.is_empty() {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        from_resolv_conf(&text)
    } else {
        args.upstream
            .iter()
            .map(|u| parse_server(u).map_err(|e| format!("--upstream {e}")))
            .collect::<Result<_, _>>()?
    };
    if servers.is_empty() {
        tracing::warn!("no upstream resolver: external names will get SERVFAIL");
    }
    Ok(Upstreams {
        servers,
        timeout: seconds(args.upstream_timeout, "--upstream-timeout")?,
    })
}

/// The server's limits from the flags.
fn limits(args: &DnsArgs) -> Result<Limits, String> {
    let mut limits = Limits {
        client_qps: args.client_qps,
        client_forwards: args.client_forwards.max(1),
        tcp_connections: args.tcp_max_connections.max(1),
        tcp_idle: seconds(args.tcp_idle_timeout, "--tcp-idle-timeout")?,
        ..Limits::default()
    };
    if let Some(n) = args.udp_workers {
        limits.udp_workers = n.clamp(1, 64);
    }
    Ok(limits)
}

/// What `start` needs and gives back.
pub struct Started {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub running: kubebid_dns::server::Running,
}

/// Loads, binds and starts serving on the current tokio runtime as part of `process` (its registry, its
/// checks, its shutdown); returns once bound.
///
/// # Errors
/// A usage, file or bind error, as a message.
pub async fn start(args: &DnsArgs, process: &Process) -> Result<Started, String> {
    let unknown = match args.unknown_clients {
        UnknownClientsArg::Deny => UnknownClients::Deny,
        UnknownClientsArg::Allow => UnknownClients::Allow,
    };
    let upstreams = upstreams(args)?;
    let reload = seconds(args.reload_interval, "--reload-interval")?;
    let limits = limits(args)?;
    let standalone = !args.state.is_empty();
    if !standalone && !args.config.is_empty() {
        return Err(
            "--config needs --state (in a cluster the configuration objects are watched)".into(),
        );
    }
    let zone = if standalone {
        let zone = kubebid_dns::state::build_zone(&args.state, &args.config, unknown).map_err(
            |errors| {
                errors
                    .iter()
                    .map(|e| format!("state error: {e}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            },
        )?;
        for w in &zone.warnings {
            tracing::warn!(warning = %w, "object skipped");
        }
        zone
    } else {
        // Until the reflectors have synced, the zone is empty: every cluster name is NXDOMAIN.
        Zone::build(
            &kubebid_dns::zone::ClusterObjects::default(),
            &kubebid_model::config::KubeBidConfigSpec::default(),
            &[],
            unknown,
        )
    };
    let metrics = Arc::new(DnsMetrics::new(&process.registry));
    let mut shared = Shared::new(zone, upstreams, limits, metrics.clone());
    if let Some(path) = &args.query_log {
        shared.log = Some(
            QueryLog::open(path, metrics.clone())
                .map_err(|e| format!("--query-log {}: {e}", path.display()))?,
        );
    }
    let shared = Arc::new(shared);
    if standalone {
        let s = shared.clone();
        let counted = shared.clone();
        tokio::spawn(kubebid_dns::state::watch_reporting(
            args.state.clone(),
            args.config.clone(),
            unknown,
            reload,
            move |zone| s.set_zone(zone),
            // Logged by the watch; the zone in service stays.
            move |_| {
                counted.metrics.zone_reload_failures.inc();
            },
            process.shutdown.requested(),
        ));
    } else {
        let client = kube::Client::try_default().await.map_err(|e| {
            format!("no --state, and no cluster to watch ({e}); give --state for standalone mode")
        })?;
        let (ready, _) = tokio::sync::watch::channel(false);
        tracing::info!(
            "cluster mode: watching Namespaces, Services, EndpointSlices, Pods, Tenants and KubeBidConfigs"
        );
        tokio::spawn(kubebid_dns::cluster::feed(
            client,
            unknown,
            shared.clone(),
            ready,
            process.shutdown.requested(),
        ));
    }
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .map_err(|e| format!("--metrics-listen {}: {e}", args.metrics_listen))?;
    let metrics_addr = metrics_listener.local_addr().map_err(|e| e.to_string())?;
    let endpoint = process.clone();
    tokio::spawn(async move {
        kubebid_server::http::serve_endpoint(&endpoint, "dns-metrics", metrics_listener).await;
    });
    let running = kubebid_dns::server::start_in(shared, args.listen, process)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    Ok(Started {
        addr: running.addr,
        metrics_addr,
        running,
    })
}

pub fn run(args: &DnsArgs) -> ExitCode {
    let runtime = match crate::serve::runtime("dns", crate::serve::Threads::Workers) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let process = Process::new(Shutdown::on_signals());
        let started = match start(args, &process).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kubebid serve dns: {e}");
                return ExitCode::from(2);
            }
        };
        tracing::info!(listen = %started.addr, metrics = %started.metrics_addr, "dns serving");
        process.shutdown.requested().await;
        tracing::info!("shutting down");
        started.running.shutdown().await;
        tracing::info!("dns stopped");
        ExitCode::SUCCESS
    })
}
