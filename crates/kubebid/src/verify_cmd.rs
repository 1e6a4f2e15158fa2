//! `kubebid verify`: the isolation proof on a live cluster (the control-plane, admission, compute and
//! default-deny probes, so far).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use kubebid_model::config::{KubeBidConfig, Tenant};

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The cluster's kubeconfig [default: KUBECONFIG, ~/.kube/config, or in-cluster].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Verify only this tenant (against every other).
    #[arg(long)]
    pub tenant: Option<String>,
    /// The tenancy from these files instead of the cluster's Tenant and KubeBidConfig objects.
    #[arg(short, long, value_name = "FILE|DIR")]
    pub config: Vec<String>,
    /// Reviews in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[arg(short, long, value_enum, default_value_t = VerifyFormat::Text)]
    pub output: VerifyFormat,
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(p) => {
            let k = kube::config::Kubeconfig::read_from(p)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            kube::Config::from_custom_kubeconfig(k, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no cluster: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// The configuration: from files, or the Tenant and `KubeBidConfig` objects listed once from the cluster.
async fn configuration(
    args: &VerifyArgs,
    client: &kube::Client,
) -> Result<kubebid_model::load::ConfigSet, String> {
    if !args.config.is_empty() {
        return crate::check::load_config_set(&args.config).map_err(|e| {
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        });
    }
    let lp = kube::api::ListParams::default();
    let tenants = kube::Api::<Tenant>::all(client.clone())
        .list(&lp)
        .await
        .map_err(|e| format!("listing Tenants: {e}"))?;
    let configs = kube::Api::<KubeBidConfig>::all(client.clone())
        .list(&lp)
        .await
        .map_err(|e| format!("listing KubeBidConfigs: {e}"))?;
    let (set, invalid) =
        kubebid_model::load::ConfigSet::from_cluster(configs.items, tenants.items, Vec::new());
    for e in invalid {
        eprintln!("kubebid verify: left out: {e}");
    }
    Ok(set)
}

fn text(findings: &[kubebid_verify::Finding]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for f in findings {
        let _ = writeln!(
            out,
            "{}  {:<32} {:<8} {:<44} {}{}",
            if f.passed { "pass" } else { "FAIL" },
            f.probe,
            f.tenant,
            f.identity,
            f.namespace.as_deref().unwrap_or("(cluster)"),
            f.other
                .as_deref()
                .map_or(String::new(), |o| format!(" (tenant {o})"))
        );
        for e in &f.evidence {
            let _ = writeln!(out, "      {e}");
        }
    }
    let failed = findings.iter().filter(|f| !f.passed).count();
    let _ = writeln!(
        out,
        "\n{} probes, {} passed, {failed} failed",
        findings.len(),
        findings.len() - failed
    );
    out
}

/// `kubebid verify`.
pub fn run(args: &VerifyArgs) -> ExitCode {
    let fail = |e: String| {
        eprintln!("kubebid verify: {e}");
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
        let client = client(args.kubeconfig.as_ref()).await?;
        let set = configuration(args, &client).await?;
        let tenancy = set.tenancy();
        if let Some(t) = &args.tenant
            && tenancy.tenant(t).is_none()
        {
            return Err(format!("no tenant {t:?}"));
        }
        let bar = if std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new(0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} reviews {pos}/{len} {wide_bar} {eta}",
        ) {
            bar.set_style(style);
        }
        let progress = |done: usize, total: usize| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        };
        let verifier = kubebid_verify::Verifier::new(client, args.concurrency);
        let mut findings = verifier
            .control_plane(&tenancy, args.tenant.as_deref(), &progress)
            .await
            .map_err(|e| e.to_string())?;
        findings.extend(
            verifier
                .admission(&tenancy, args.tenant.as_deref(), &progress)
                .await
                .map_err(|e| e.to_string())?,
        );
        findings.extend(
            verifier
                .compute(&tenancy, args.tenant.as_deref())
                .await
                .map_err(|e| e.to_string())?,
        );
        findings.extend(
            verifier
                .network(&set, args.tenant.as_deref())
                .await
                .map_err(|e| e.to_string())?,
        );
        bar.finish_and_clear();
        Ok(findings)
    });
    let findings = match result {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let out = match args.output {
        VerifyFormat::Text => text(&findings),
        VerifyFormat::Json => {
            let mut out = String::new();
            for f in &findings {
                out.push_str(&kubebid_verify::to_json(f).to_string());
                out.push('\n');
            }
            out
        }
    };
    let _ = anstream::stdout().write_all(out.as_bytes());
    if findings.iter().all(|f| f.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
