//! `kubebid serve <component>` and `kubebid cert`: the long-running services and their development
//! certificates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kubebid_server::Shutdown;
use kubebid_server::http::Process;
use kubebid_webhook::metrics::Metrics;
use kubebid_webhook::server::WebhookServer;
use kubebid_webhook::tls::{ReloadingCert, server_config};

use crate::check;

#[derive(clap::Subcommand)]
pub enum ServeCommand {
    /// The validating and mutating admission webhook (HTTPS; /validate, /mutate, /healthz, /readyz, /metrics).
    Webhook(WebhookArgs),
    /// The KMS v2 plugin for the API server's Secret encryption (gRPC on a unix socket; root key in an HSM).
    Kms(crate::kms_cmd::KmsServeArgs),
    /// The tenant-aware cluster DNS server (UDP and TCP; /metrics and /healthz on --metrics-listen).
    Dns(crate::dns_cmd::DnsArgs),
    /// The audit sink: the API server's audit webhook backend, one signed Merkle-tree log per tenant (HTTPS;
    /// POST /events, GET /trails/<tenant>/events, /healthz, /readyz, /metrics).
    Audit(Box<crate::audit_cmd::AuditServeArgs>),
    /// The tenant layer for Secrets between the API server and etcd: a tenant namespace's Secrets are
    /// sealed under the tenant's key on the way in and opened on the way out (HTTP/2 gRPC).
    EtcdProxy(crate::etcd_cmd::EtcdProxyArgs),
    /// The node sensor: BPF programs on the kernel's tracepoints, every process attributed to its
    /// container, pod and tenant, and the `syscall` rules (KubeBid's and Falco's) over what they see.
    Sensor(crate::runtime_cmd::SensorArgs),
    /// The node agent: attests this node (KVM, Kata with Firecracker, memory encryption, cache
    /// partitioning, the CPU manager), labels and taints it, and keeps tenants' pods in their cache
    /// partitions.
    Node(crate::node_cmd::NodeArgs),
    /// The tenant operator: keeps every object KubeBid renders for each Tenant in place (needs a cluster).
    Operator(OperatorArgs),
    /// The posture scanner: judges the objects already in the cluster with the admission policy and keeps
    /// `wgpolicyk8s.io/v1alpha2` `PolicyReport`s (per namespace) and a `ClusterPolicyReport` up to date as
    /// objects change (needs a cluster; /metrics, /healthz on --metrics-listen).
    Scanner(crate::scan_cmd::ScannerArgs),
}

#[derive(clap::Args)]
pub struct OperatorArgs {
    /// Address of the plain-HTTP /metrics and /healthz endpoint.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// Namespace of the `kubebid-operator` Lease [default: `$POD_NAMESPACE`, else the kubeconfig context's
    /// namespace (in a pod: the pod's own)].
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(clap::Args)]
pub struct WebhookArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Serving certificate (PEM); reloaded when the file changes.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// Serving private key (PEM); reloaded when the file changes.
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    /// Serve only clients presenting a certificate signed by this CA (the API server's client certificate).
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Standalone mode: KubeBidConfig, Tenant and PolicyException objects from files (file or directory,
    /// repeatable). Without it the webhook watches them in the cluster (kubeconfig or in-cluster account).
    #[arg(short, long, value_name = "FILE|DIR")]
    pub config: Vec<String>,
    /// Seconds between checks of the certificate files.
    #[arg(long, default_value_t = 1.0)]
    pub reload_interval: f64,
    /// Most connections served at once.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
}

#[derive(clap::Subcommand)]
pub enum CertCommand {
    /// Write a development CA, a serving certificate and a client certificate.
    Generate {
        /// Directory for ca.crt, ca.key, tls.crt, tls.key, client.crt and client.key.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Host names and IP addresses the serving certificate is valid for. Repeatable.
        #[arg(long = "host", value_name = "NAME", required = true)]
        hosts: Vec<String>,
    },
}

pub fn cert(cmd: &CertCommand) -> ExitCode {
    match cmd {
        CertCommand::Generate { out, hosts } => {
            match kubebid_webhook::certs::generate(out, hosts) {
                Ok(w) => {
                    println!(
                        "wrote {}, {}, {}, {}, {}, {}",
                        w.ca_cert.display(),
                        w.ca_key.display(),
                        w.server_cert.display(),
                        w.server_key.display(),
                        w.client_cert.display(),
                        w.client_key.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kubebid cert generate: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

pub fn run(cmd: ServeCommand) -> ExitCode {
    match cmd {
        ServeCommand::Webhook(args) => webhook(&args),
        ServeCommand::Operator(args) => operator(&args),
        ServeCommand::Dns(args) => crate::dns_cmd::run(&args),
        ServeCommand::Kms(args) => crate::kms_cmd::serve(&args),
        ServeCommand::Audit(args) => crate::audit_cmd::serve(&args),
        ServeCommand::EtcdProxy(args) => crate::etcd_cmd::serve(&args),
        ServeCommand::Sensor(args) => crate::runtime_cmd::serve_sensor(&args),
        ServeCommand::Node(args) => crate::node_cmd::serve(&args),
        ServeCommand::Scanner(args) => crate::scan_cmd::serve(&args),
    }
}

fn operator(args: &OperatorArgs) -> ExitCode {
    let runtime = match crate::serve::runtime("operator", crate::serve::Threads::Workers) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kubebid serve operator: no cluster to reconcile ({e})");
                return ExitCode::from(2);
            }
        };
        let process = Process::new(Shutdown::on_signals());
        let metrics = Arc::new(kubebid_tenancy::metrics::OperatorMetrics::new(
            &process.registry,
        ));
        kubebid_tenancy::metrics::add_checks(&metrics, &process.health);
        if let Err(code) = metrics_endpoint(
            &process,
            "operator",
            "operator-metrics",
            args.metrics_listen,
        )
        .await
        {
            return code;
        }
        let namespace = args
            .namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            })
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("kubebid-operator-{}", std::process::id()));
        tracing::info!(%identity, %namespace, "operator campaigning for the leader lease");
        let result = kubebid_tenancy::operator::run_elected(
            client,
            &namespace,
            identity,
            metrics,
            process.shutdown.requested(),
        )
        .await;
        finished("operator", result)
    })
}

/// Binds `addr` and serves the process's `/metrics`, `/healthz` and `/readyz` there (plain HTTP, its
/// requests counted as `server`); if it cannot bind, the exit status, said.
pub async fn metrics_endpoint(
    process: &Process,
    service: &str,
    server: &'static str,
    addr: SocketAddr,
) -> Result<(), ExitCode> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        eprintln!("kubebid serve {service}: --metrics-listen {addr}: {e}");
        ExitCode::from(2)
    })?;
    let endpoint = process.clone();
    tokio::spawn(async move {
        kubebid_server::http::serve_endpoint(&endpoint, server, listener).await;
    });
    Ok(())
}

/// The exit status of a service that has stopped, logged.
fn finished(service: &str, result: Result<(), impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(()) => {
            tracing::info!("{service} stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubebid serve {service}: {e}");
            ExitCode::from(1)
        }
    }
}

fn webhook(args: &WebhookArgs) -> ExitCode {
    run_webhook(
        args,
        |addr| tracing::info!(listen = %addr, mutual_tls = args.client_ca.is_some(), "webhook serving"),
    )
}

/// Loads configuration and certificates, binds, calls `on_bound` with the address, and serves until a
/// shutdown signal.
pub fn run_webhook(args: &WebhookArgs, on_bound: impl FnOnce(SocketAddr)) -> ExitCode {
    run_webhook_in(args, &Process::new(Shutdown::new()), on_bound)
}

/// [`run_webhook`] as one server of `process` (whose registry, checks and shutdown it shares with the
/// process's other servers); SIGTERM and Ctrl-C trigger the process's shutdown.
pub fn run_webhook_in(
    args: &WebhookArgs,
    process: &Process,
    on_bound: impl FnOnce(SocketAddr),
) -> ExitCode {
    let standalone = !args.config.is_empty();
    let policy = if standalone {
        match check::load_policy(&args.config) {
            Ok(p) => Some(p),
            Err(errors) => {
                for e in errors {
                    eprintln!("config error: {e}");
                }
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let setup = || -> Result<_, kubebid_webhook::tls::TlsError> {
        let cert = Arc::new(ReloadingCert::new(&args.tls_cert, &args.tls_key)?);
        let tls = Arc::new(server_config(cert.clone(), args.client_ca.as_deref())?);
        Ok((cert, tls))
    };
    let (cert, tls) = match setup() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("kubebid serve webhook: {e}");
            return ExitCode::from(2);
        }
    };
    if !(args.reload_interval.is_finite() && args.reload_interval > 0.0) {
        eprintln!("kubebid serve webhook: --reload-interval must be a positive number of seconds");
        return ExitCode::from(2);
    }
    let runtime = match crate::serve::runtime("webhook", crate::serve::Threads::Workers) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        process.shutdown.watch_signals();
        let (policy_tx, policy_rx) = tokio::sync::watch::channel(policy);
        if !standalone {
            let client = kube::Client::try_default().await.map_err(|e| {
                std::io::Error::other(format!("no --config, and no cluster to watch ({e}); give --config for standalone mode"))
            })?;
            tracing::info!("cluster mode: watching KubeBidConfig, Tenant, PolicyException and Namespace objects");
            tokio::spawn(kubebid_webhook::cluster::run(client, policy_tx, std::future::pending()));
        }
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        on_bound(listener.local_addr()?);
        let policy = policy_rx;
        let server = WebhookServer {
            tls,
            reloading_cert: Some(cert),
            policy,
            metrics: Arc::new(Metrics::new(&process.registry)),
            reload_interval: Duration::from_secs_f64(args.reload_interval),
            max_connections: args.max_connections,
            drain_timeout: Duration::from_secs(25),
            client_auth: args.client_ca.is_some(),
        };
        server.serve_in(process, listener).await
    });
    finished("webhook", result)
}

/// How many threads run a service's async work.
#[derive(Clone, Copy, Debug)]
pub enum Threads {
    /// One per core (tokio's default).
    Workers,
    /// One: for a service whose calls are microseconds of CPU, where a second worker only adds wake-ups
    /// between threads (blocking calls still go to tokio's blocking pool).
    One,
}

/// The runtime a service runs on; if it cannot start, the exit status, said.
pub fn runtime(service: &str, threads: Threads) -> Result<tokio::runtime::Runtime, ExitCode> {
    match threads {
        Threads::Workers => tokio::runtime::Builder::new_multi_thread(),
        Threads::One => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build()
    .map_err(|e| {
        eprintln!("kubebid serve {service}: cannot start the runtime: {e}");
        ExitCode::from(1)
    })
}
