//! `kubebid node check` and `kubebid serve node`: the node agent from the command line.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kubebid_node::checks::{Attestation, Options, Status, attest};
use kubebid_node::host::Host;
use kubebid_node::metrics::{CheckLabels, NodeFamilies};
use kubebid_node::resctrl::{Plan, Resctrl, place_pods, plan};

/// Where the node is read.
#[derive(clap::Args, Clone)]
pub struct HostArgs {
    /// The node's root file system (`/host` when the host's root is mounted there).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
    /// The kubelet's configuration file, as the node names it.
    #[arg(long, value_name = "FILE", default_value = kubebid_node::checks::KUBELET_CONFIG)]
    pub kubelet_config: String,
    /// Do not require the kubelet's static CPU manager for `kubebid.io/secure-runtime` (it is still
    /// checked and shown).
    #[arg(long)]
    pub no_require_cpu_manager: bool,
}

impl HostArgs {
    fn options(&self) -> Options {
        let mut o = Options::new(Host::new(&self.host_root));
        o.kubelet_config.clone_from(&self.kubelet_config);
        o.require_cpu_manager = !self.no_require_cpu_manager;
        o
    }
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum CheckFormat {
    Text,
    Json,
}

#[derive(clap::Subcommand)]
pub enum NodeCommand {
    /// Attest this node as the agent does and print every check.
    ///
    /// Exit status: 0 when every required check passes (the node would be labelled
    /// `kubebid.io/secure-runtime=true`), 1 when one fails.
    Check {
        #[command(flatten)]
        host: HostArgs,
        #[arg(short, long, value_enum, default_value_t = CheckFormat::Text)]
        output: CheckFormat,
    },
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "FAIL",
        Status::Absent => "absent",
    }
}

/// The checks as a table, like `kata-runtime check`.
fn table(a: &Attestation) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let width = a
        .checks
        .iter()
        .map(|c| c.id.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:width$}  {:8}  {:6}  DETAIL",
        "CHECK", "REQUIRED", "RESULT"
    );
    for c in &a.checks {
        let _ = writeln!(
            out,
            "{:width$}  {:8}  {:6}  {}",
            c.id,
            if c.required { "yes" } else { "no" },
            status_word(c.status),
            c.detail
        );
    }
    let _ = write!(
        out,
        "\nkubebid.io/secure-runtime: {}",
        if a.secure_runtime() {
            "true"
        } else {
            "not set (a required check fails)"
        }
    );
    if let Some(t) = a.memory_encryption.filter(|_| a.secure_runtime()) {
        let _ = write!(out, "\nkubebid.io/memory-encryption: {}", t.label());
    }
    if a.cache.is_some() && a.secure_runtime() {
        out.push_str("\nkubebid.io/cache-partitioning: true");
    }
    let _ = writeln!(out, "\n(attested in {:.1} ms)", a.took.as_secs_f64() * 1e3);
    out
}

fn json(a: &Attestation) -> serde_json::Value {
    serde_json::json!({
        "secureRuntime": a.secure_runtime(),
        "memoryEncryption": a.memory_encryption.filter(|_| a.secure_runtime()).map(kubebid_node::checks::Technology::label),
        "cachePartitioning": a.cache.is_some() && a.secure_runtime(),
        "cache": a.cache.as_ref().map(|c| serde_json::json!({
            "mount": c.mount, "closids": c.closids, "cbmBits": c.cbm_bits,
            "minCbmBits": c.min_cbm_bits, "mba": c.mba})),
        "tookMicros": a.took.as_micros(),
        "checks": a.checks.iter().map(|c| serde_json::json!({
            "id": c.id, "required": c.required, "result": status_word(c.status).to_ascii_lowercase(),
            "detail": c.detail})).collect::<Vec<_>>(),
    })
}

/// `kubebid node …`.
pub fn run(cmd: &NodeCommand) -> ExitCode {
    match cmd {
        NodeCommand::Check { host, output } => {
            let a = attest(&host.options());
            let text = match output {
                CheckFormat::Text => table(&a),
                CheckFormat::Json => format!("{}\n", json(&a)),
            };
            let _ = anstream::stdout().write_all(text.as_bytes());
            if a.secure_runtime() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

#[derive(clap::Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub host: HostArgs,
    /// This node's name (the `DaemonSet` passes `spec.nodeName`).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Attest and partition only: no Node labels, taint, condition or Events (no cluster needed).
    #[arg(long)]
    pub offline: bool,
    /// KubeBidConfig and Tenant objects (file or directory, repeatable): each tenant's cache share and
    /// namespaces. Without it, they are watched in the cluster.
    #[arg(short, long, value_name = "FILE|DIR")]
    pub config: Vec<String>,
    /// The pods on this node (`kubectl get pods --field-selector spec.nodeName=NODE -o json`), re-read when
    /// it changes; without it, the node's pods are watched through the API server.
    #[arg(long, value_name = "FILE")]
    pub pods: Option<PathBuf>,
    /// The node's cgroup v2 hierarchy, as the agent sees it; found in `/proc/self/mounts` without it.
    #[arg(long, value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
    /// Seconds between attestations.
    #[arg(long, default_value_t = 30)]
    pub interval: u64,
    /// Attestations in a row that must agree before a label is added.
    #[arg(long, default_value_t = 3)]
    pub rise: u32,
    /// Attestations in a row that must agree before a label is removed (and the node tainted).
    #[arg(long, default_value_t = 2)]
    pub fall: u32,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "127.0.0.1:9157")]
    pub metrics_listen: std::net::SocketAddr,
    /// Stop after this many seconds (tests and benchmarks).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
}

/// The node's pods (UID → namespace), from a file or the node-local watch.
struct Pods {
    file: Option<PathBuf>,
    stamp: Option<std::time::SystemTime>,
    watch: Option<kubebid_sensor::pods::NodePods>,
    generation: u64,
    current: BTreeMap<String, String>,
}

impl Pods {
    fn refresh(&mut self) {
        if let Some((g, pods)) = self
            .watch
            .as_ref()
            .and_then(|w| w.changed_since(self.generation))
        {
            self.generation = g;
            self.current = pods.into_iter().map(|(u, p)| (u, p.namespace)).collect();
        }
        if let Some(f) = &self.file {
            let stamp = std::fs::metadata(f).and_then(|m| m.modified()).ok();
            if stamp != self.stamp {
                self.stamp = stamp;
                match crate::runtime_cmd::read_pods(f) {
                    Ok(p) => self.current = p.into_iter().map(|(u, p)| (u, p.namespace)).collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "pods file does not load; the previous pods stay");
                    }
                }
            }
        }
    }
}

/// Binds the metrics endpoint and spawns it on `rt`.
fn metrics(
    addr: std::net::SocketAddr,
    rt: &tokio::runtime::Runtime,
) -> Result<(NodeFamilies, std::net::SocketAddr), String> {
    let at = |e: std::io::Error| format!("--metrics-listen {addr}: {e}");
    let listener = std::net::TcpListener::bind(addr).map_err(at)?;
    let bound = listener.local_addr().map_err(at)?;
    listener.set_nonblocking(true).map_err(at)?;
    let process = kubebid_server::http::Process::new(kubebid_server::Shutdown::new());
    let families = process.registry.register(
        <NodeFamilies as kubebid_server::metrics::Component>::PREFIX,
        <NodeFamilies as kubebid_server::metrics::Component>::register,
    );
    let listener = {
        let _in_rt = rt.enter();
        tokio::net::TcpListener::from_std(listener).map_err(at)?
    };
    rt.spawn(async move {
        kubebid_server::http::serve_endpoint(&process, "node-metrics", listener).await;
    });
    Ok((families, bound))
}

/// A flag set on SIGTERM or SIGINT, by a task on `rt`.
fn stop_on_signals(rt: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    use tokio::signal::unix::{SignalKind, signal};
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _in_rt = rt.enter();
    if let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        rt.spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            flag.store(true, Ordering::Relaxed);
        });
    }
    stop
}

/// The node's pods watched through the API server, on `rt`.
fn watch_pods(
    client: kube::Client,
    node: String,
    rt: &tokio::runtime::Runtime,
) -> kubebid_sensor::pods::NodePods {
    let pods = kubebid_sensor::pods::NodePods::default();
    let out = pods.clone();
    rt.spawn(async move { kubebid_sensor::pods::watch(client, &node, out).await });
    pods
}

fn record(families: &NodeFamilies, a: &Attestation) {
    families.attestations.inc();
    families
        .attestation_micros
        .set(i64::try_from(a.took.as_micros()).unwrap_or(i64::MAX));
    for c in &a.checks {
        families
            .check
            .get_or_create(&CheckLabels {
                check: c.id.to_owned(),
            })
            .set(i64::from(c.status == Status::Pass));
    }
}

/// The cache partitions this node should have now, from the tenancy and the last attestation.
fn wanted_plan(
    a: &Attestation,
    host: &Host,
    tenancy: &kubebid_model::tenancy::Tenancy,
) -> Option<(Plan, Resctrl)> {
    let cache = a.cache.as_ref().filter(|_| a.secure_runtime())?;
    let shares: BTreeMap<String, u8> = tenancy
        .tenants()
        .iter()
        .filter_map(|t| t.cache_share.map(|s| (t.name.clone(), s)))
        .collect();
    Some((plan(&shares, cache), Resctrl::new(host.path(&cache.mount))))
}

/// One attestation: through the agent (which updates the Node) when there is a cluster, else alone.
fn attest_once(
    agent: Option<&mut kubebid_node::agent::Agent>,
    rt: &tokio::runtime::Runtime,
    opts: &Options,
    families: &NodeFamilies,
) -> Attestation {
    let Some(agent) = agent else {
        let a = attest(opts);
        families.secure_runtime.set(i64::from(a.secure_runtime()));
        return a;
    };
    match rt.block_on(agent.round()) {
        Ok(r) => {
            families.secure_runtime.set(i64::from(r.verdict.secure));
            if r.changed {
                tracing::info!(secure = r.verdict.secure, "attestation verdict changed");
            }
            r.attestation
        }
        Err(e) => {
            families.api_errors.inc();
            tracing::warn!(error = %e, "the Node could not be updated; trying next round");
            attest(opts)
        }
    }
}

/// Writes a new plan into resctrl; whether it took.
fn apply_plan(p: &Plan, resctrl: &Resctrl, families: &NodeFamilies) -> bool {
    families
        .partitions_refused
        .set(i64::try_from(p.refused.len()).unwrap_or(0));
    for (t, why) in &p.refused {
        tracing::warn!(tenant = %t, reason = %why, "no cache partition for the tenant on this node");
    }
    match resctrl.apply(p) {
        Ok(()) => true,
        Err(errors) => {
            families.resctrl_errors.inc_by(errors.len() as u64);
            tracing::warn!(errors = ?errors, "resctrl refused the partitions");
            false
        }
    }
}

/// Moves the planned tenants' pods' new threads into their groups.
fn place(
    p: &Plan,
    resctrl: &Resctrl,
    cgroup_root: &std::path::Path,
    pods: &BTreeMap<String, String>,
    tenant_of: &dyn Fn(&str) -> Option<String>,
    families: &NodeFamilies,
) {
    let planned: BTreeSet<String> = p.partitions.iter().map(|x| x.tenant.clone()).collect();
    let (moved, errors) = place_pods(resctrl, cgroup_root, pods, tenant_of, &planned);
    families.tasks_placed.inc_by(moved as u64);
    if moved > 0 {
        tracing::info!(threads = moved, "placed in tenants' cache partitions");
    }
    if !errors.is_empty() {
        families.resctrl_errors.inc_by(errors.len() as u64);
        tracing::warn!(errors = ?errors, "threads not placed");
    }
}

/// `kubebid serve node`.
pub fn serve(args: &NodeArgs) -> ExitCode {
    let fail = |e: String| {
        eprintln!("kubebid serve node: {e}");
        ExitCode::from(2)
    };
    let Some(node) = args
        .node
        .clone()
        .or_else(|| std::env::var("NODE_NAME").ok())
    else {
        return fail("--node is required (or NODE_NAME)".into());
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("the runtime: {e}")),
    };
    // One thread and one client: the metrics endpoint, the signals and the watches are tasks on this
    // runtime, which runs while the loop below waits, and the watches and the Node updates share a client.
    let client = if args.offline {
        None
    } else {
        match rt.block_on(kube::Client::try_default()) {
            Ok(c) => Some(c),
            Err(e) => {
                return fail(format!(
                    "no cluster to label the node in ({e}); --offline attests only"
                ));
            }
        }
    };
    let tenancy =
        match crate::runtime_cmd::tenancy_on(&args.config, Some((rt.handle(), client.clone()))) {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
    let cgroup_root = match crate::runtime_cmd::cgroup_root(args.cgroup_root.as_ref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (families, addr) = match metrics(args.metrics_listen, &rt) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let mut pods = Pods {
        file: args.pods.clone(),
        stamp: None,
        watch: client
            .as_ref()
            .filter(|_| args.pods.is_none())
            .map(|c| watch_pods(c.clone(), node.clone(), &rt)),
        generation: 0,
        current: BTreeMap::new(),
    };
    let mut agent = client.map(|c| {
        kubebid_node::agent::Agent::new(c, node.clone(), args.host.options(), args.rise, args.fall)
    });
    let stop = stop_on_signals(&rt);
    tracing::info!(node = %node, metrics = %addr, offline = args.offline, "node agent running");
    let started = Instant::now();
    let mut next_attest = Instant::now();
    let mut applied: Option<Plan> = None;
    let mut partition: Option<(Plan, Resctrl)> = None;
    let opts = args.host.options();
    while !stop.load(Ordering::Relaxed)
        && args
            .duration
            .is_none_or(|d| started.elapsed().as_secs() < d)
    {
        if Instant::now() >= next_attest {
            next_attest = Instant::now() + Duration::from_secs(args.interval.max(1));
            let a = attest_once(agent.as_mut(), &rt, &opts, &families);
            record(&families, &a);
            partition = wanted_plan(&a, &opts.host, &tenancy.load());
        }
        if let Some((p, resctrl)) = &partition {
            if applied.as_ref() != Some(p) && apply_plan(p, resctrl, &families) {
                applied = Some(p.clone());
            }
            pods.refresh();
            let t = tenancy.load();
            let tenant_of = |ns: &str| t.tenant_of(ns).map(|x| x.name.clone());
            place(
                p,
                resctrl,
                &cgroup_root,
                &pods.current,
                &tenant_of,
                &families,
            );
        }
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    }
    tracing::info!("node agent stopped");
    ExitCode::SUCCESS
}
