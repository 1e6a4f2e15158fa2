//! `kubebid up`: KubeBid's services in one process on loopback, with built-in defaults and no cluster.
//! The first run creates a state directory with development certificates, an example configuration of
//! three tenants and sample AdmissionReviews; later runs reuse them.

use kubebid_server::Shutdown;
use kubebid_server::http::Process;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::serve::{WebhookArgs, run_webhook_in};

#[derive(clap::Args)]
pub struct UpArgs {
    /// State directory [default: `$XDG_STATE_HOME/kubebid`, else `~/.local/state/kubebid`]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Address of the admission webhook.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub webhook_listen: SocketAddr,
    /// Address of the DNS server (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:5353")]
    pub dns_listen: SocketAddr,
    /// Address of the DNS server's /metrics.
    #[arg(long, default_value = "127.0.0.1:9153")]
    pub dns_metrics_listen: SocketAddr,
    /// Address of the audit sink.
    #[arg(long, default_value = "127.0.0.1:8444")]
    pub audit_listen: SocketAddr,
}

const CONFIG: &str = include_str!("../../../examples/config/kubebid.yaml");
const EXCEPTIONS: &str = include_str!("../../../examples/config/exceptions.yaml");
const CLUSTER_STATE: &str = include_str!("../../../examples/dns/cluster-state.yaml");

fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("kubebid");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/state/kubebid"),
        None => PathBuf::from(".kubebid"),
    }
}

fn review(uid: &str, pod: &serde_json::Value) -> String {
    let r = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"},
        "name": pod["metadata"]["name"], "namespace": "tenant-acme", "operation": "CREATE",
        "userInfo": {"username": "alice@acme.example", "groups": ["acme-admins", "system:authenticated"]}, "object": pod}});
    serde_json::to_string_pretty(&r).unwrap_or_default()
}

fn samples() -> [(&'static str, String); 2] {
    let allowed = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "tenant-acme"},
        "spec": {"securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "web", "image": "ghcr.io/acme/web:1.4.2",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}}]}});
    let mut denied = allowed.clone();
    denied["metadata"]["name"] = "escape".into();
    denied["spec"]["hostPID"] = true.into();
    denied["spec"]["containers"][0]["securityContext"] = serde_json::json!({"privileged": true});
    // The allowed pod leaves the runtime class, seccomp and capabilities to /mutate; /validate denies it
    // as sent and admits it once mutated. The mutated form is what the API server would validate.
    let mut mutated = allowed;
    mutated["spec"]["runtimeClassName"] = "kubebid-secure".into();
    mutated["spec"]["securityContext"]["seccompProfile"] =
        serde_json::json!({"type": "RuntimeDefault"});
    mutated["spec"]["containers"][0]["securityContext"] =
        serde_json::json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    [
        (
            "allowed.json",
            review("3f0c8e1a-0001-4000-8000-000000000001", &mutated),
        ),
        (
            "denied.json",
            review("3f0c8e1a-0002-4000-8000-000000000002", &denied),
        ),
    ]
}

fn write_once(path: &Path, contents: &str) -> std::io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    std::fs::write(path, contents)?;
    Ok(true)
}

fn prepare(dir: &Path) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    for sub in ["", "certs", "config", "requests", "dns", "kms", "audit"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        // The state directory holds private keys.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io(dir, e))?;
    }
    if !dir.join("certs/tls.crt").exists() {
        kubebid_webhook::certs::generate(
            &dir.join("certs"),
            &["localhost".into(), "127.0.0.1".into()],
        )
        .map_err(|e| e.to_string())?;
        println!(
            "created development certificates in {}",
            dir.join("certs").display()
        );
    }
    for (name, text) in [("kubebid.yaml", CONFIG), ("exceptions.yaml", EXCEPTIONS)] {
        let p = dir.join("config").join(name);
        if write_once(&p, text).map_err(|e| io(&p, e))? {
            println!(
                "wrote the example configuration (three tenants) to {}",
                p.display()
            );
        }
    }
    let state = dir.join("dns/cluster-state.yaml");
    if write_once(&state, CLUSTER_STATE).map_err(|e| io(&state, e))? {
        println!(
            "wrote an example cluster state for the DNS server to {}",
            state.display()
        );
    }
    for (name, text) in samples() {
        let p = dir.join("requests").join(name);
        write_once(&p, &text).map_err(|e| io(&p, e))?;
    }
    let key = dir.join("audit/signing-key.pem");
    if !key.exists() {
        let pem = kubebid_audit::head::KeyFile::generate_pem().map_err(|e| e.to_string())?;
        crate::audit_cmd::write_private(&key, pem.as_bytes()).map_err(|e| io(&key, e))?;
    }
    let events = dir.join("requests/audit-events.json");
    write_once(&events, AUDIT_EVENTS).map_err(|e| io(&events, e))?;
    Ok(())
}

/// Audit events as the API server's webhook backend posts them: alice of acme reads a Secret of globex
/// (an alert: a read across tenants), then opens a shell in one of acme's pods (an alert: exec).
const AUDIT_EVENTS: &str = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5b1f0c2e-0001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/tenant-globex/secrets/db","verb":"get","user":{"username":"alice@acme.example","groups":["acme-admins","system:authenticated"]},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.35.0","objectRef":{"resource":"secrets","namespace":"tenant-globex","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-29T10:00:00.000000Z","stageTimestamp":"2026-11-29T10:00:00.002000Z"},
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"5b1f0c2e-0002","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/tenant-acme/pods/web/exec?command=sh&container=web&stdin=true&tty=true","verb":"create","user":{"username":"alice@acme.example","groups":["acme-admins","system:authenticated"]},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.35.0","objectRef":{"resource":"pods","namespace":"tenant-acme","name":"web","apiVersion":"v1","subresource":"exec"},"responseStatus":{"metadata":{},"code":101},"requestReceivedTimestamp":"2026-11-29T10:00:05.000000Z","stageTimestamp":"2026-11-29T10:00:05.001000Z"}
]}
"#;

pub fn run(args: &UpArgs) -> ExitCode {
    let dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    if let Err(e) = prepare(&dir) {
        eprintln!("kubebid up: {e}");
        return ExitCode::from(2);
    }
    let certs = dir.join("certs");
    let webhook = WebhookArgs {
        listen: args.webhook_listen,
        tls_cert: certs.join("tls.crt"),
        tls_key: certs.join("tls.key"),
        client_ca: None,
        config: vec![dir.join("config").display().to_string()],
        reload_interval: 1.0,
        max_connections: 4096,
    };
    let kms_socket = dir.join("kms/kms.sock");
    // One process: one registry, one set of checks, one shutdown for the four services.
    let process = Process::new(Shutdown::new());
    if let Err(e) = start_kms(&dir, &kms_socket, &process) {
        eprintln!("kubebid up: kms: {e}");
        return ExitCode::from(2);
    }
    let dns = match start_dns(args, &dir, &process) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kubebid up: dns: {e}");
            return ExitCode::from(2);
        }
    };
    let audit = match start_audit(args, &dir, &process) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kubebid up: audit: {e}");
            return ExitCode::from(2);
        }
    };
    run_webhook_in(&webhook, &process, |addr| {
        announce(addr, &dir, dns, audit);
    })
}

/// Prints every endpoint and requests to try, then the line scripts wait for.
fn announce(addr: SocketAddr, dir: &Path, dns: (SocketAddr, SocketAddr), audit: SocketAddr) {
    let certs = dir.join("certs");
    let requests = dir.join("requests");
    let kms_socket = dir.join("kms/kms.sock");
    let ca = certs.join("ca.crt");
    println!();
    println!(
        "KubeBid is up (state in {}). Ctrl-C stops it.",
        dir.display()
    );
    println!("  admission webhook  https://{addr}/validate  /mutate  /healthz  /readyz  /metrics");
    println!(
        "  DNS                udp+tcp {}  metrics http://{}/metrics",
        dns.0, dns.1
    );
    println!(
        "  KMS v2 plugin      unix://{}  (software key store in {}: NOT HSM-backed, development only)",
        kms_socket.display(),
        dir.join("kms").display()
    );
    println!(
        "  tenant keys        unix://{}  (volume keys wrapped per tenant)",
        dir.join("kms/tenant-keys.sock").display()
    );
    println!(
        "  audit sink         https://{audit}/events  (mutual TLS; trails in {}, alerts in {})",
        dir.join("audit/data").display(),
        dir.join("audit/alerts.jsonl").display()
    );
    println!();
    println!("Try an allowed and a denied review:");
    for name in ["allowed.json", "denied.json"] {
        println!(
            "  curl -s --cacert {} https://{addr}/validate -d @{}",
            ca.display(),
            requests.join(name).display()
        );
    }
    println!();
    println!("Resolve as a pod of tenant acme (127.0.0.11), then as one of globex (127.0.0.21):");
    for from in ["127.0.0.11", "127.0.0.21"] {
        println!(
            "  dig -b {from} @{} -p {} web.tenant-acme.svc.cluster.local",
            dns.0.ip(),
            dns.0.port()
        );
    }
    println!();
    println!("Post audit events as the API server would, then check and read the trails:");
    println!(
        "  curl -s --cacert {} --cert {} --key {} https://{audit}/events -d @{}",
        ca.display(),
        certs.join("client.crt").display(),
        certs.join("client.key").display(),
        requests.join("audit-events.json").display()
    );
    println!(
        "  kubebid audit verify {}",
        dir.join("audit/data").display()
    );
    println!(
        "  kubebid audit query {} --tenant globex",
        dir.join("audit/data").display()
    );
    println!();
    // Scripts wait for this line.
    println!("ready: https://{addr}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// Starts the DNS server on its own thread and runtime; returns its addresses once bound.
fn start_dns(
    args: &UpArgs,
    dir: &Path,
    process: &Process,
) -> Result<(SocketAddr, SocketAddr), String> {
    let dns_args = crate::dns_cmd::DnsArgs {
        listen: args.dns_listen,
        state: vec![dir.join("dns")],
        config: vec![dir.join("config")],
        upstream: Vec::new(),
        upstream_timeout: 2.0,
        metrics_listen: args.dns_metrics_listen,
        query_log: None,
        unknown_clients: crate::dns_cmd::UnknownClientsArg::Deny,
        client_qps: 1000,
        client_forwards: 64,
        tcp_max_connections: 256,
        tcp_idle_timeout: 10.0,
        udp_workers: Some(1),
        reload_interval: 1.0,
    };
    let process = process.clone();
    on_own_runtime("kubebid-up-dns", async move {
        let started = crate::dns_cmd::start(&dns_args, &process).await?;
        let addrs = (started.addr, started.metrics_addr);
        // Serves until the process ends with the webhook. The server's handle is held here: dropping it
        // would end the TCP side.
        let running = started.running;
        Ok((addrs, async move {
            let _running = running;
            std::future::pending::<()>().await;
        }))
    })
}

/// Starts the audit sink on its own thread and runtime, with the example tenants, the development
/// certificates (the client certificate stands in for the API server's) and a signing key in the state
/// directory; returns its address once bound.
fn start_audit(args: &UpArgs, dir: &Path, process: &Process) -> Result<SocketAddr, String> {
    let certs = dir.join("certs");
    let audit_args = crate::audit_cmd::AuditServeArgs {
        listen: args.audit_listen,
        data: dir.join("audit/data"),
        signing_key: Some(dir.join("audit/signing-key.pem")),
        hsm_key: None,
        hsm: crate::kms_cmd::HsmArgs {
            pkcs11_module: PathBuf::new(),
            token: String::new(),
            pin_file: None,
        },
        tls_cert: Some(certs.join("tls.crt")),
        tls_key: Some(certs.join("tls.key")),
        client_ca: Some(certs.join("ca.crt")),
        client_name: Vec::new(),
        config: vec![dir.join("config").display().to_string()],
        queries: false,
        segment_mib: 64,
        segment_seconds: 3600,
        retention_days: None,
        max_batch_mib: 16,
        rules: Vec::new(),
        no_builtin_rules: false,
        no_detection: false,
        alerts: dir.join("audit/alerts.jsonl").display().to_string(),
        alert_webhook: None,
        otlp_endpoint: None,
        min_priority: "debug".into(),
    };
    let process = process.clone();
    on_own_runtime("kubebid-up-audit", async move {
        match crate::audit_cmd::start(&audit_args, &process).await {
            Ok(started) => Ok(started),
            Err(crate::audit_cmd::Failure::Io(e)) => Err(e.to_string()),
            Err(crate::audit_cmd::Failure::Said(_)) => Err("see above".into()),
        }
    })
}

/// Starts the KMS plugin on a unix socket in the state directory, with a software key store beside it.
fn start_kms(dir: &Path, socket: &Path, process: &Process) -> Result<(), String> {
    // Every example tenant gets a volume key on the first run, so the tenant key socket answers at once.
    {
        use kubebid_kms::keystore::KeyStore;
        let store = kubebid_kms::keystore::SoftwareStore::open(&dir.join("kms"))
            .map_err(|e| e.to_string())?;
        let mut set = kubebid_model::load::ConfigSet::default();
        let _ = set.add_text("kubebid.yaml", CONFIG);
        for t in &set.tenants {
            let name = t.object.metadata.name.clone().unwrap_or_default();
            if store
                .tenant_keys(&name)
                .map_err(|e| e.to_string())?
                .is_empty()
            {
                store.rotate_tenant(&name).map_err(|e| e.to_string())?;
            }
        }
    }
    let args = crate::kms_cmd::KmsServeArgs {
        socket: socket.to_owned(),
        tenant_socket: Some(dir.join("kms/tenant-keys.sock")),
        metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        keys: crate::kms_cmd::KeyStoreArgs {
            hsm: crate::kms_cmd::HsmArgs {
                pkcs11_module: PathBuf::new(),
                token: String::new(),
                pin_file: None,
            },
            software_keys: Some(dir.join("kms")),
        },
    };
    let process = process.clone();
    on_own_runtime("kubebid-up-kms", async move {
        let (task, _, _) = crate::kms_cmd::start(&args, &process).await?;
        Ok(((), async move {
            let _ = task.await;
        }))
    })
}

/// Runs `start` on a thread with its own single-worker runtime. Returns what `start` gives once it has
/// bound its sockets, then keeps running the future it hands back (the service) on that thread.
fn on_own_runtime<T, F, S>(name: &str, start: S) -> Result<T, String>
where
    T: Send + 'static,
    F: std::future::Future<Output = ()> + 'static,
    S: std::future::Future<Output = Result<(T, F), String>> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            runtime.block_on(async move {
                match start.await {
                    Ok((value, serving)) => {
                        let _ = tx.send(Ok(value));
                        serving.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())?
}
