//! `kubebid scan` (the cluster's objects judged once, in `check`'s formats) and `kubebid serve scanner`
//! (the same, kept as `PolicyReport`s as objects change).

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kubebid_policy::PolicySet;
use kubebid_server::Shutdown;
use kubebid_server::http::Process;

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum ScanFormat {
    Text,
    Json,
    Sarif,
}

#[derive(clap::Args)]
pub struct ScanArgs {
    /// The cluster's kubeconfig [default: KUBECONFIG, ~/.kube/config, or in-cluster].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The configuration from these files instead of the cluster's KubeBidConfig, Tenant and
    /// PolicyException objects.
    #[arg(short, long, value_name = "FILE|DIR")]
    pub config: Vec<String>,
    /// Scan only this namespace.
    #[arg(short, long)]
    pub namespace: Option<String>,
    #[arg(short, long, value_enum, default_value_t = ScanFormat::Text)]
    pub output: ScanFormat,
    /// Also write the findings as `PolicyReport`s (server-side apply; the CRDs must be installed).
    #[arg(long)]
    pub write_reports: bool,
    /// Also print notes (excluded namespaces, kinds without rules, ...) in text output.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(clap::Args)]
pub struct ScannerArgs {
    /// Address of the plain-HTTP /metrics, /healthz and /readyz endpoint.
    #[arg(long, default_value = "0.0.0.0:9158")]
    pub metrics_listen: SocketAddr,
    /// Seconds between whole-cluster scans (exceptions expire with time, not with an event).
    #[arg(long, default_value_t = 300.0)]
    pub resync: f64,
    /// Seconds of quiet after a change before its namespace is scanned again.
    #[arg(long, default_value_t = 2.0)]
    pub debounce: f64,
}

/// The policy: from files, or the cluster's configuration objects listed once.
async fn policy(args: &ScanArgs, client: &kube::Client) -> Result<PolicySet, String> {
    let joined = |errors: Vec<kubebid_model::SourceError>| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    if !args.config.is_empty() {
        return crate::check::load_policy(&args.config).map_err(joined);
    }
    let set = crate::verify_cmd::cluster_config(client, true, "kubebid scan").await?;
    PolicySet::from_config(&set).map_err(joined)
}

/// What a scan found, as `check` reports it: one "file" per object, named by where it lives.
fn as_check_report(scan: &kubebid_verify::scan::Scan) -> crate::check::Report {
    let objects = scan
        .judged
        .iter()
        .map(|j| crate::check::ObjectReport {
            file: Arc::from(format!(
                "cluster:{}{}/{}",
                j.namespace
                    .as_deref()
                    .map_or(String::new(), |n| format!("{n}/")),
                j.kind,
                j.name
            )),
            document: 0,
            line: 0,
            api_version: j.api_version.clone(),
            kind: j.kind.clone(),
            namespace: j.namespace.clone(),
            name: j.name.clone(),
            decision: j.decision.clone(),
            finding_lines: vec![0; j.decision.findings.len()],
        })
        .collect();
    crate::check::Report {
        files: kubebid_verify::scan::targets().len(),
        objects,
        errors: Vec::new(),
    }
}

/// `kubebid scan`.
pub fn run(args: &ScanArgs) -> ExitCode {
    let fail = |e: String| {
        eprintln!("kubebid scan: {e}");
        ExitCode::from(2)
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e.to_string()),
    };
    let result = rt.block_on(async {
        let (client, _) = crate::verify_cmd::client(args.kubeconfig.as_ref()).await?;
        let policy = policy(args, &client).await?;
        let bar = if std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new(kubebid_verify::scan::targets().len() as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} listing {msg} {wide_bar} {pos}/{len}",
        ) {
            bar.set_style(style);
        }
        let progress = |t: &kubebid_verify::scan::Target| {
            bar.set_message(t.resource);
            bar.inc(1);
        };
        let scan = kubebid_verify::scan::scan(
            &client,
            &policy,
            args.namespace.as_deref(),
            jiff::Timestamp::now(),
            &progress,
        )
        .await
        .map_err(|e| e.to_string())?;
        bar.finish_and_clear();
        if args.write_reports {
            for r in &scan.reports {
                kubebid_verify::scan::apply(&client, r)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok::<_, String>(scan)
    });
    let scan = match result {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    for u in &scan.unreadable {
        eprintln!("kubebid scan: an object could not be read: {u}");
    }
    let report = as_check_report(&scan);
    let mut rendered = Vec::with_capacity(64 * 1024);
    let written = match args.output {
        ScanFormat::Text => crate::output::text(&report, &mut rendered, args.verbose),
        ScanFormat::Json => crate::output::json(&report, &mut rendered),
        ScanFormat::Sarif => crate::output::sarif(&report, &mut rendered),
    };
    if let Err(e) = written {
        return fail(e.to_string());
    }
    let _ = if args.output == ScanFormat::Text {
        anstream::stdout().write_all(&rendered)
    } else {
        std::io::stdout().lock().write_all(&rendered)
    };
    if report.denied_objects() > 0 || !scan.unreadable.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `kubebid serve scanner`.
pub fn serve(args: &ScannerArgs) -> ExitCode {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !(positive(args.resync) && args.debounce.is_finite() && args.debounce >= 0.0) {
        eprintln!("kubebid serve scanner: --resync must be positive and --debounce not negative");
        return ExitCode::from(2);
    }
    let runtime = match crate::serve::runtime("scanner", crate::serve::Threads::Workers) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kubebid serve scanner: no cluster to scan ({e})");
                return ExitCode::from(2);
            }
        };
        let process = Process::new(Shutdown::on_signals());
        let metrics = Arc::new(kubebid_verify::scanner::ScannerMetrics::new(
            &process.registry,
        ));
        if let Err(code) = crate::serve::metrics_endpoint(
            &process,
            "scanner",
            "scanner-metrics",
            args.metrics_listen,
        )
        .await
        {
            return code;
        }
        let (policy_tx, policy_rx) = tokio::sync::watch::channel(None);
        tracing::info!(
            "watching KubeBidConfig, Tenant, PolicyException and Namespace objects for the policy"
        );
        tokio::spawn(kubebid_webhook::cluster::run(
            client.clone(),
            policy_tx,
            std::future::pending(),
        ));
        kubebid_verify::scanner::run(
            client,
            policy_rx,
            kubebid_verify::scanner::ScannerConfig {
                resync: Duration::from_secs_f64(args.resync),
                debounce: Duration::from_secs_f64(args.debounce),
            },
            metrics,
            process.shutdown.requested(),
        )
        .await;
        tracing::info!("scanner stopped");
        ExitCode::SUCCESS
    })
}
