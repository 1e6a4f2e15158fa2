//! Runtime detection: the `syscall` rules the node sensor evaluates (KubeBid's and Falco's files).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use kubebid_sensor::sensor::{Pod, Sensor};

/// KubeBid's runtime rules (unless `builtin` is false) and then `files`, compiled for the `syscall` source.
///
/// # Errors
/// A file that cannot be read, or does not load (with its file and line).
pub fn runtime_engine(
    files: &[PathBuf],
    builtin: bool,
) -> Result<kubebid_rules::Engine<kubebid_rules::Syscall>, String> {
    runtime_engine_tiers(files, builtin, builtin)
}

/// KubeBid's exec tier (`exec`), its system call tier (`syscalls`), then `files`.
///
/// # Errors
/// A file that cannot be read, or does not load (with its file and line).
pub fn runtime_engine_tiers(
    files: &[PathBuf],
    exec: bool,
    syscalls: bool,
) -> Result<kubebid_rules::Engine<kubebid_rules::Syscall>, String> {
    let mut own = String::new();
    if exec || syscalls {
        own.push_str(kubebid_rules::kubebid_runtime_rules());
    }
    if syscalls {
        own.push('\n');
        own.push_str(kubebid_rules::kubebid_runtime_syscall_rules());
    }
    let builtin =
        (exec || syscalls).then_some((kubebid_rules::KUBEBID_RUNTIME_RULES_FILE, own.as_str()));
    engine(builtin, files, kubebid_rules::Syscall::new())
}

/// Rules files compiled for `source`: `own` (a built-in file's name and text) first, then `files`.
///
/// # Errors
/// A file that cannot be read, or does not load (with its file and line).
pub fn engine<S: kubebid_rules::Source>(
    own: Option<(&str, &str)>,
    files: &[PathBuf],
    source: S,
) -> Result<kubebid_rules::Engine<S>, String> {
    let mut loader = kubebid_rules::Loader::new();
    if let Some((name, text)) = own {
        loader.add(name, text).map_err(|e| e.to_string())?;
    }
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        loader
            .add(&f.display().to_string(), &text)
            .map_err(|e| e.to_string())?;
    }
    let set = loader.finish().map_err(|e| e.to_string())?;
    kubebid_rules::Engine::compile(&set, source).map_err(|e| e.to_string())
}

#[derive(clap::Args)]
pub struct SensorArgs {
    /// KubeBidConfig and Tenant objects (file or directory, repeatable): which namespaces are whose.
    /// Without it, the Tenant and KubeBidConfig objects are watched in the cluster.
    #[arg(short, long, value_name = "FILE|DIR")]
    pub config: Vec<String>,
    /// The node's cgroup v2 hierarchy (in a container: the host's, mounted from the node); found in
    /// `/proc/self/mounts` without it.
    #[arg(long, value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
    /// The pods running on this node (`kubectl get pods --field-selector spec.nodeName=NODE -o json`),
    /// re-read when the file changes. Without it, the pods of `--node` are watched through the API
    /// server (in-cluster or `KUBECONFIG`).
    #[arg(long, value_name = "FILE", conflicts_with = "node")]
    pub pods: Option<PathBuf>,
    /// This node's name, whose pods are watched (the `DaemonSet` passes `spec.nodeName`).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Falco rules files (`falco_rules.yaml`), loaded after KubeBid's own.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// Do not load KubeBid's own rules.
    #[arg(long)]
    pub no_builtin: bool,
    /// Also load KubeBid's system call tier (mount, setns, unshare, ptrace, module loading, bpf()): the
    /// sensor then attaches to the system call tracepoints, which every system call passes.
    #[arg(long)]
    pub syscall_rules: bool,
    /// A path whose opens are reported (repeatable; a directory ends in `/` and covers everything below
    /// it). Replaces KubeBid's default set (credentials, sudo and PAM files, root's SSH keys, the node's
    /// Kubernetes credentials, the loader's preload list, the core dump helper).
    #[arg(long = "watch-path", value_name = "PATH")]
    pub watch_paths: Vec<String>,
    /// Append alerts here as JSON lines (Falco's format); standard output without it.
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<PathBuf>,
    /// Also post each alert (Falco's JSON) to this URL, as Falco's `http_output` does.
    #[arg(long, value_name = "URL")]
    pub alert_webhook: Option<String>,
    /// Also file each alert in the trail of the tenant whose pod raised it: the audit sink's `/events`
    /// URL (`https://kubebid-audit.kubebid-system:8443/events`).
    #[arg(long, value_name = "URL")]
    pub audit_sink: Option<String>,
    /// The CA that signed the audit sink's serving certificate.
    #[arg(long, value_name = "FILE", requires = "audit_sink")]
    pub audit_sink_ca: Option<PathBuf>,
    /// This sensor's client certificate for the audit sink (with `--audit-sink-key`), re-read when it
    /// changes.
    #[arg(long, value_name = "FILE", requires_all = ["audit_sink_key", "audit_sink_ca"])]
    pub audit_sink_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "audit_sink_cert")]
    pub audit_sink_key: Option<PathBuf>,
    /// Where `/metrics` (events, lost events, alerts by rule), `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "127.0.0.1:9156")]
    pub metrics_listen: std::net::SocketAddr,
    /// Stop after this many seconds (for tests and one-off captures).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
}

/// The pods in a `kubectl get pods -o json` (or YAML) text, by UID, with their containers' IDs.
pub(crate) fn read_pods(path: &std::path::Path) -> Result<HashMap<String, Pod>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut pods = HashMap::new();
    for doc in kubebid_model::yaml::parse_documents(&text) {
        let doc = doc.map_err(|e| format!("{}: {e}", path.display()))?;
        let v = doc.value;
        let items = match v["kind"].as_str() {
            Some("List" | "PodList") => v["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![v],
        };
        for p in items {
            let Some(uid) = p["metadata"]["uid"].as_str() else {
                continue;
            };
            let containers = p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    let id = c["containerID"].as_str()?;
                    let id = id.split_once("://").map_or(id, |(_, id)| id);
                    Some((id.to_owned(), c["name"].as_str()?.to_owned()))
                })
                .collect();
            pods.insert(
                uid.to_owned(),
                Pod {
                    namespace: p["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    name: p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    containers,
                },
            );
        }
    }
    Ok(pods)
}

/// The system calls some loaded rule needs (by its `evt.type` constraints): only those leave the kernel.
/// A rule that matches any event type needs every call the sensor can watch.
fn wanted(engine: &kubebid_rules::Engine<kubebid_rules::Syscall>) -> Vec<&'static str> {
    let needed = engine.required_values("evt.type", None);
    kubebid_sensor::event::SYSCALLS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| needed.as_ref().is_none_or(|n| n.iter().any(|v| v == name)))
        .collect()
}

/// Serves the sensor's metrics (and the health endpoints) on `addr` from a thread of its own; the families
/// to count in.
fn metrics_endpoint(
    addr: std::net::SocketAddr,
) -> Result<(kubebid_sensor::sensor::SensorFamilies, std::net::SocketAddr), String> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
    let process = kubebid_server::http::Process::new(kubebid_server::Shutdown::new());
    let families = process.registry.register(
        <kubebid_sensor::sensor::SensorFamilies as kubebid_server::metrics::Component>::PREFIX,
        <kubebid_sensor::sensor::SensorFamilies as kubebid_server::metrics::Component>::register,
    );
    on_own_thread(async move {
        if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
            kubebid_server::http::serve_endpoint(&process, "sensor-metrics", listener).await;
        }
    });
    Ok((families, bound))
}

/// Where the sensor's pods come from: a file re-read when it changes, or the node-local watch.
struct PodSource {
    file: Option<PathBuf>,
    stamp: Option<std::time::SystemTime>,
    node: Option<kubebid_sensor::pods::NodePods>,
    generation: u64,
}

impl PodSource {
    /// Hands the sensor the pods when they changed.
    fn refresh(&mut self, sensor: &mut Sensor) {
        if let Some((g, pods)) = self
            .node
            .as_ref()
            .and_then(|n| n.changed_since(self.generation))
        {
            self.generation = g;
            sensor.set_pods(pods);
        }
        if let Some(p) = &self.file {
            let stamp = std::fs::metadata(p).and_then(|m| m.modified()).ok();
            if stamp != self.stamp {
                self.stamp = stamp;
                match read_pods(p) {
                    Ok(pods) => sensor.set_pods(pods),
                    Err(e) => {
                        tracing::warn!(error = %e, "pods file does not load; the previous pods stay");
                    }
                }
            }
        }
    }
}

/// Watches `node`'s pods through the API server (in-cluster or `KUBECONFIG`) on a thread of its own.
pub(crate) fn watch_node_pods(node: String) -> kubebid_sensor::pods::NodePods {
    let pods = kubebid_sensor::pods::NodePods::default();
    let out = pods.clone();
    on_own_thread(async move {
        match kube::Client::try_default().await {
            Ok(client) => kubebid_sensor::pods::watch(client, &node, out).await,
            Err(e) => tracing::error!(error = %e, "no cluster to watch this node's pods in"),
        }
    });
    pods
}

/// Runs `task` to completion on a thread of its own, on a single-threaded runtime: the sensor's own loop
/// blocks on the ring buffer.
pub(crate) fn on_own_thread(task: impl Future<Output = ()> + Send + 'static) {
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(task);
        }
    });
}

/// Where alerts go: JSON lines (a file, or standard output), the webhook, the tenants' trails.
struct Outputs {
    lines: Box<dyn std::io::Write>,
    webhook: Option<kubebid_audit::detect::Forward>,
    trail: Option<kubebid_audit::forward::TrailForward>,
    /// The posting tasks' runtime and the trail task, drained at the end.
    runtime: Option<(tokio::runtime::Runtime, tokio::task::JoinHandle<()>)>,
}

impl Outputs {
    fn new(
        args: &SensorArgs,
        node: &str,
        families: &kubebid_sensor::sensor::SensorFamilies,
    ) -> Result<Self, String> {
        let lines: Box<dyn std::io::Write> = match &args.alerts {
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("--alerts {}: {e}", p.display()))?,
            ),
            None => Box::new(std::io::stdout()),
        };
        let mut this = Self {
            lines,
            webhook: None,
            trail: None,
            runtime: None,
        };
        if args.alert_webhook.is_none() && args.audit_sink.is_none() {
            return Ok(this);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kubebid-sensor-out")
            .enable_all()
            .build()
            .map_err(|e| format!("the alert outputs' runtime: {e}"))?;
        let in_rt = rt.enter();
        let label = |output: &str| kubebid_sensor::sensor::OutputLabels {
            output: output.to_owned(),
        };
        if let Some(url) = &args.alert_webhook {
            let url: hyper::Uri = url.parse().map_err(|e| format!("--alert-webhook: {e}"))?;
            let failures = families.delivery_failures.get_or_create(&label("webhook"));
            this.webhook = Some(
                kubebid_audit::detect::spawn_webhook(url, failures.clone())
                    .map_err(|e| format!("--alert-webhook: {e}"))?,
            );
        }
        let Some(url) = &args.audit_sink else {
            let nothing = tokio::spawn(async {});
            drop(in_rt);
            this.runtime = Some((rt, nothing));
            return Ok(this);
        };
        let url: hyper::Uri = url.parse().map_err(|e| format!("--audit-sink: {e}"))?;
        let cert = match (&args.audit_sink_cert, &args.audit_sink_key) {
            (Some(c), Some(k)) => Some(Arc::new(
                kubebid_server::tls::ReloadingCert::new(c, k)
                    .map_err(|e| format!("--audit-sink-cert: {e}"))?,
            )),
            _ => None,
        };
        let tls = match &args.audit_sink_ca {
            Some(ca) => Some(
                kubebid_server::tls::client_config(ca, cert)
                    .map_err(|e| format!("--audit-sink-ca: {e}"))?,
            ),
            None => None,
        };
        let counters = kubebid_audit::forward::ForwardCounters {
            dropped: families
                .alerts_dropped
                .get_or_create(&label("audit"))
                .clone(),
            failures: families
                .delivery_failures
                .get_or_create(&label("audit"))
                .clone(),
            delivered: families
                .alerts_delivered
                .get_or_create(&label("audit"))
                .clone(),
        };
        let (trail, task) =
            kubebid_audit::forward::spawn_trail_forward(url, tls, node.to_owned(), counters)
                .map_err(|e| format!("--audit-sink: {e}"))?;
        this.trail = Some(trail);
        drop(in_rt);
        this.runtime = Some((rt, task));
        Ok(this)
    }

    fn alert(
        &mut self,
        alert: &kubebid_rules::Alert,
        pod: Option<&kubebid_rules::PodInfo>,
        node: &str,
    ) {
        use kubebid_audit::detect::AlertOutput as _;
        let json = alert.to_json(node);
        let _ = writeln!(self.lines, "{json}");
        if let Some(w) = &mut self.webhook {
            w.alert(&json);
        }
        if let Some(t) = &self.trail {
            t.send(&json, pod.map(|p| (p.namespace.clone(), p.name.clone())));
        }
    }

    /// Flushes the lines and gives the trail up to five seconds to take what is queued.
    fn finish(mut self) {
        let _ = self.lines.flush();
        self.webhook = None;
        self.trail = None;
        if let Some((rt, task)) = self.runtime.take() {
            let _ = rt.block_on(tokio::time::timeout(
                std::time::Duration::from_secs(5),
                task,
            ));
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}

/// A flag set on SIGTERM or SIGINT (by a thread of its own: the sensor's loop is blocking).
pub(crate) fn stop_on_signals() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    on_own_thread(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    stop
}

fn joined(errors: &[impl ToString]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The tenancy from the config files, or, without any, from the Tenant and KubeBidConfig objects watched
/// in the cluster (empty until they have synced: alerts carry no tenant meanwhile).
pub(crate) fn sensor_tenancy(
    config: &[String],
) -> Result<Arc<ArcSwap<kubebid_model::tenancy::Tenancy>>, String> {
    tenancy_on(config, None)
}

/// The tenancy model from the cluster's `KubeBidConfig` and Tenant objects, rebuilt on every change once
/// both have listed. Only what the model needs is watched (not the admission policy's exceptions), for
/// the agents that run on every node.
async fn watch_tenancy(
    tenancy: Arc<ArcSwap<kubebid_model::tenancy::Tenancy>>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    client: Option<kube::Client>,
) -> Result<(), String> {
    use futures::StreamExt as _;
    use kubebid_model::config::{KubeBidConfig, Tenant};
    use kubebid_server::watch::{owned, watch_kind};
    let client = match client {
        Some(c) => c,
        None => kube::Client::try_default()
            .await
            .map_err(|e| format!("no --config, and no cluster to watch Tenants in ({e})"))?,
    };
    let (configs, s1) = watch_kind::<KubeBidConfig, _>(&client, 0u8);
    let (tenants, s2) = watch_kind::<Tenant, _>(&client, 1u8);
    let mut events = futures::stream::select(s1.boxed(), s2.boxed());
    let mut synced = [false; 2];
    while let Some((source, init_done)) = events.next().await {
        if init_done {
            synced[usize::from(source)] = true;
        }
        if !synced.iter().all(|s| *s) {
            continue;
        }
        let (set, invalid) = kubebid_model::load::ConfigSet::from_cluster(
            owned(&configs),
            owned(&tenants),
            Vec::new(),
        );
        for e in &invalid {
            tracing::warn!(error = %e, "invalid configuration object left out");
        }
        tenancy.store(Arc::new(set.tenancy()));
        if !ready.swap(true, std::sync::atomic::Ordering::AcqRel) {
            tracing::info!("tenancy synced from the cluster");
        }
    }
    Ok(())
}

/// [`sensor_tenancy`], the cluster watch spawned on `rt` with `client` when given (else on a thread of its
/// own, with a client of its own).
pub(crate) fn tenancy_on(
    config: &[String],
    rt: Option<(&tokio::runtime::Handle, Option<kube::Client>)>,
) -> Result<Arc<ArcSwap<kubebid_model::tenancy::Tenancy>>, String> {
    let (rt, client) = match rt {
        Some((h, c)) => (Some(h), c),
        None => (None, None),
    };
    let tenancy = Arc::new(ArcSwap::from_pointee(
        kubebid_model::tenancy::Tenancy::builtin(),
    ));
    if config.is_empty() {
        let (watched, ready) = (
            tenancy.clone(),
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        let watch = async move {
            if let Err(e) = watch_tenancy(watched, ready, client).await {
                tracing::error!(error = %e, "no tenancy: alerts carry no tenant");
            }
            std::future::pending::<()>().await;
        };
        match rt {
            Some(h) => drop(h.spawn(watch)),
            None => on_own_thread(watch),
        }
    } else {
        let set = crate::check::load_config_set(config).map_err(|e| joined(&e))?;
        tenancy.store(Arc::new(set.tenancy()));
    }
    Ok(tenancy)
}

/// The name alerts carry as `hostname`: the node's, else this host's.
fn node_name(args: &SensorArgs) -> String {
    args.node.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    })
}

/// The node's cgroup v2 hierarchy: as given, or where `/proc/self/mounts` says it is.
pub(crate) fn cgroup_root(given: Option<&PathBuf>) -> Result<PathBuf, String> {
    given
        .cloned()
        .or_else(kubebid_sensor::sensor::cgroup2_root)
        .ok_or_else(|| "no cgroup v2 hierarchy is mounted".to_owned())
}

/// The watched paths: those given, or KubeBid's defaults.
fn watch_set(given: &[String]) -> Result<kubebid_sensor::paths::WatchSet, String> {
    if given.is_empty() {
        Ok(kubebid_sensor::paths::WatchSet::defaults())
    } else {
        kubebid_sensor::paths::WatchSet::parse(given).map_err(|e| format!("--watch-path: {e}"))
    }
}

/// One decoded record through the rules, its alerts counted and sent out; how many.
fn raise(
    sensor: &mut Sensor,
    raw: &kubebid_sensor::event::Raw,
    families: &kubebid_sensor::sensor::SensorFamilies,
    out: &mut Outputs,
    hostname: &str,
) -> u64 {
    let found = sensor.handle(raw);
    for a in &found.alerts {
        families
            .alerts
            .get_or_create(&kubebid_sensor::sensor::RuleLabels {
                rule: a.rule.clone(),
            })
            .inc();
        out.alert(a, found.pod.as_ref(), hostname);
    }
    found.alerts.len() as u64
}

/// `kubebid serve sensor`.
pub fn serve_sensor(args: &SensorArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let fail = |e: String| {
        eprintln!("kubebid serve sensor: {e}");
        ExitCode::from(2)
    };
    let tenancy = match sensor_tenancy(&args.config) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let engine = match runtime_engine_tiers(&args.rules, !args.no_builtin, args.syscall_rules) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    let wanted = wanted(&engine);
    let watch = match watch_set(&args.watch_paths) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let cgroup_root = match cgroup_root(args.cgroup_root.as_ref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut probe = match kubebid_sensor::probe::Probe::load(&wanted, &watch) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let hostname = node_name(args);
    let tenant_of: kubebid_sensor::sensor::TenantOf =
        Box::new(move |ns: &str| tenancy.load().tenant_of(ns).map(|t| t.name.clone()));
    let mut sensor = Sensor::new(engine, &cgroup_root, tenant_of, hostname.clone());
    sensor.set_watch(watch);
    let stop = stop_on_signals();
    let mut pods = PodSource {
        file: args.pods.clone(),
        stamp: None,
        node: args
            .node
            .as_ref()
            .filter(|_| args.pods.is_none())
            .map(|n| watch_node_pods(n.clone())),
        generation: 0,
    };
    let (families, metrics_addr) = match metrics_endpoint(args.metrics_listen) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let mut out = match Outputs::new(args, &hostname, &families) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    tracing::info!(
        cgroup_root = %cgroup_root.display(),
        syscalls = ?wanted,
        metrics = %metrics_addr,
        rules = sensor.engine().rules().len(),
        "sensor running"
    );
    let started = std::time::Instant::now();
    let (mut events, mut alerts, mut bad) = (0u64, 0u64, 0u64);
    while !stop.load(std::sync::atomic::Ordering::Relaxed)
        && args
            .duration
            .is_none_or(|d| started.elapsed().as_secs() < d)
    {
        pods.refresh(&mut sensor);
        probe.poll(std::time::Duration::from_millis(200), |b| {
            events += 1;
            families.events.inc();
            match kubebid_sensor::event::decode(b) {
                Ok(raw) => alerts += raise(&mut sensor, &raw, &families, &mut out, &hostname),
                Err(e) => {
                    bad += 1;
                    families.malformed.inc();
                    tracing::warn!(error = %e, "a kernel record did not decode");
                }
            }
        });
        let _ = out.lines.flush();
        families
            .lost
            .set(i64::try_from(probe.lost()).unwrap_or(i64::MAX));
        families
            .opens_dropped
            .set(i64::try_from(sensor.opens_dropped).unwrap_or(i64::MAX));
    }
    out.finish();
    tracing::info!(
        events,
        alerts,
        malformed = bad,
        lost = probe.lost(),
        "sensor stopped"
    );
    ExitCode::SUCCESS
}
