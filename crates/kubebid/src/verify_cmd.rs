//! `kubebid verify`: the isolation proof on a live cluster: control-plane, admission, compute, network,
//! DNS, data and audit probes, as text, JSON, SARIF, `JUnit` or an HTML report.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use kubebid_model::config::{KubeBidConfig, Tenant};

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFormat {
    Text,
    Json,
    /// SARIF 2.1.0: one rule per probe, one result per failed finding.
    Sarif,
    /// `JUnit` XML: one test suite per probe, one test case per finding (CI dashboards read it).
    Junit,
    /// One self-contained HTML page: the evidence an auditor receives, readable with no tools.
    Html,
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
    #[command(flatten)]
    pub probes: ProbeArgs,
}

/// Where the probes beyond the API server look: etcd, the DNS server, the audit sink.
#[derive(clap::Args)]
#[allow(clippy::struct_field_names)]
pub struct ProbeArgs {
    /// etcd's client URL, to read how Secrets are stored (`https://…` with --etcd-ca, or `http://` on
    /// loopback). Without it the data probe says what was not checked.
    #[arg(long, value_name = "URL")]
    pub etcd: Option<String>,
    /// CA that signed etcd's serving certificate.
    #[arg(long, value_name = "FILE", requires = "etcd")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate presented to etcd.
    #[arg(long, value_name = "FILE", requires_all = ["etcd_key", "etcd_ca"])]
    pub etcd_cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// The API server's `--etcd-prefix`.
    #[arg(long, default_value = kubebid_etcd::path::DEFAULT_PREFIX)]
    pub etcd_prefix: String,
    /// Secrets read per namespace; 0 reads every one (page by page).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
    pub etcd_sample: i64,
    /// KubeBid's DNS server (`ADDR:PORT`), asked as an address of each tenant's pods for other tenants'
    /// names. Without it the DNS probe says why it was skipped.
    #[arg(long, value_name = "ADDR")]
    pub dns: Option<std::net::SocketAddr>,
    /// Seconds to wait for each DNS answer.
    #[arg(long, default_value_t = 2.0)]
    pub dns_timeout: f64,
    /// KubeBid's audit sink (`https://…`), whose trails must hold the probes' requests.
    #[arg(long, value_name = "URL", requires = "audit_token_file")]
    pub audit_sink: Option<String>,
    /// A bearer token allowed to read the tenants' trails.
    #[arg(long, value_name = "FILE", requires = "audit_sink")]
    pub audit_token_file: Option<PathBuf>,
    /// CA of the sink's certificate [default: the system's roots].
    #[arg(long, value_name = "FILE", requires = "audit_sink")]
    pub audit_ca: Option<PathBuf>,
    /// Seconds to wait for the probes' events to arrive in the trails.
    #[arg(long, default_value_t = 30.0)]
    pub audit_wait: f64,
}

/// A client of the cluster `kubeconfig` names (or the inferred one), and the API server's URL.
pub(crate) async fn client(kubeconfig: Option<&PathBuf>) -> Result<(kube::Client, String), String> {
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
    let server = config.cluster_url.to_string();
    Ok((
        kube::Client::try_from(config).map_err(|e| e.to_string())?,
        server,
    ))
}

/// What identifies the run: the cluster (its URL, the `kube-system` UID, its version) and this KubeBid.
async fn meta(
    client: &kube::Client,
    server: String,
    tenant: Option<&str>,
) -> kubebid_verify::report::Meta {
    let cluster_id = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .get("kube-system")
        .await
        .ok()
        .and_then(|n| n.metadata.uid)
        .unwrap_or_else(|| "unknown (kube-system could not be read)".into());
    let server_version = client
        .apiserver_version()
        .await
        .map_or_else(|e| format!("unknown ({e})"), |v| v.git_version);
    kubebid_verify::report::Meta {
        server,
        cluster_id,
        server_version,
        kubebid_version: env!("CARGO_PKG_VERSION").into(),
        tenant: tenant.map(str::to_owned),
        ..Default::default()
    }
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
    cluster_config(client, false, "kubebid verify").await
}

/// The cluster's `KubeBidConfig` and Tenant objects (and `PolicyException`s, with `exceptions`), listed
/// once; objects that do not validate are left out, each said on standard error by `who`.
pub(crate) async fn cluster_config(
    client: &kube::Client,
    exceptions: bool,
    who: &str,
) -> Result<kubebid_model::load::ConfigSet, String> {
    let lp = kube::api::ListParams::default();
    let tenants = kube::Api::<Tenant>::all(client.clone())
        .list(&lp)
        .await
        .map_err(|e| format!("listing Tenants: {e}"))?;
    let configs = kube::Api::<KubeBidConfig>::all(client.clone())
        .list(&lp)
        .await
        .map_err(|e| format!("listing KubeBidConfigs: {e}"))?;
    let exceptions = if exceptions {
        kube::Api::<kubebid_model::config::PolicyException>::all(client.clone())
            .list(&lp)
            .await
            .map_err(|e| format!("listing PolicyExceptions: {e}"))?
            .items
    } else {
        Vec::new()
    };
    let (set, invalid) =
        kubebid_model::load::ConfigSet::from_cluster(configs.items, tenants.items, exceptions);
    for e in invalid {
        eprintln!("{who}: left out: {e}");
    }
    Ok(set)
}

/// SARIF 2.1.0: one rule per probe (its benchmark check and controls as properties), one result per
/// failed finding.
fn sarif(findings: &[kubebid_verify::Finding]) -> String {
    use serde_sarif::sarif::{
        Message, MultiformatMessageString, PropertyBag, ReportingDescriptor, Result as SarifResult,
        ResultLevel, Run, Sarif, Tool, ToolComponent,
    };
    let mut probes: Vec<&str> = findings.iter().map(|f| f.probe).collect();
    probes.sort_unstable();
    probes.dedup();
    let rules: Vec<ReportingDescriptor> = probes
        .iter()
        .map(|p| {
            let (mtb, controls) = kubebid_verify::coverage(p);
            ReportingDescriptor::builder()
                .id(*p)
                .short_description(MultiformatMessageString::builder().text(mtb).build())
                .properties(
                    PropertyBag::builder()
                        .additional_properties(std::collections::BTreeMap::from([(
                            "controls".to_owned(),
                            serde_json::json!(controls),
                        )]))
                        .build(),
                )
                .build()
        })
        .collect();
    let results: Vec<SarifResult> = findings
        .iter()
        .filter(|f| !f.passed)
        .map(|f| {
            SarifResult::builder()
                .rule_id(f.probe)
                .level(ResultLevel::Error)
                .message(
                    Message::builder()
                        .text(format!(
                            "tenant {} as {}{}: {}",
                            f.tenant,
                            f.identity,
                            f.namespace
                                .as_deref()
                                .map_or(String::new(), |n| format!(" in {n}")),
                            f.evidence.join("; ")
                        ))
                        .build(),
                )
                .properties(
                    PropertyBag::builder()
                        .additional_properties(std::collections::BTreeMap::from([
                            ("tenant".to_owned(), serde_json::json!(f.tenant)),
                            ("identity".to_owned(), serde_json::json!(f.identity)),
                            ("namespace".to_owned(), serde_json::json!(f.namespace)),
                            ("otherTenant".to_owned(), serde_json::json!(f.other)),
                        ]))
                        .build(),
                )
                .build()
        })
        .collect();
    let log = Sarif::builder()
        .version(serde_json::json!("2.1.0"))
        .schema("https://json.schemastore.org/sarif-2.1.0.json")
        .runs(vec![
            Run::builder()
                .tool(
                    Tool::builder()
                        .driver(
                            ToolComponent::builder()
                                .name("kubebid verify")
                                .version(env!("CARGO_PKG_VERSION"))
                                .rules(rules)
                                .build(),
                        )
                        .build(),
                )
                .results(results)
                .build(),
        ])
        .build();
    let mut out = serde_json::to_string_pretty(&log).unwrap_or_default();
    out.push('\n');
    out
}

/// Text as XML character data or an attribute value.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `JUnit` XML: a suite per probe, a case per finding, a failure carrying its evidence.
fn junit(findings: &[kubebid_verify::Finding]) -> String {
    use std::fmt::Write as _;
    let mut suites: std::collections::BTreeMap<&str, Vec<&kubebid_verify::Finding>> =
        std::collections::BTreeMap::new();
    for f in findings {
        suites.entry(f.probe).or_default().push(f);
    }
    let failures = findings.iter().filter(|f| !f.passed).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"kubebid verify\" tests=\"{}\" failures=\"{failures}\">",
        findings.len()
    );
    for (probe, cases) in suites {
        let failed = cases.iter().filter(|f| !f.passed).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" skipped=\"{}\">",
            xml(probe),
            cases.len(),
            cases.iter().filter(|f| f.skipped).count()
        );
        for f in cases {
            let name = format!(
                "{} as {}{}",
                f.tenant,
                f.identity,
                f.namespace
                    .as_deref()
                    .map_or(String::new(), |n| format!(" in {n}"))
            );
            if f.skipped {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{}\" name=\"{}\">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml(probe),
                    xml(&name),
                    xml(&f.evidence.join("; "))
                );
            } else if f.passed {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{}\" name=\"{}\"/>",
                    xml(probe),
                    xml(&name)
                );
            } else {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{}\" name=\"{}\">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    xml(probe),
                    xml(&name),
                    xml(f.evidence.first().map_or("", String::as_str)),
                    xml(&f.evidence.join("\n"))
                );
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn text(findings: &[kubebid_verify::Finding]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for f in findings {
        let _ = writeln!(
            out,
            "{}  {:<32} {:<8} {:<44} {}{}",
            match kubebid_verify::result(f) {
                "fail" => "FAIL",
                r => r,
            },
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
    let count = |r: &str| {
        findings
            .iter()
            .filter(|f| kubebid_verify::result(f) == r)
            .count()
    };
    let _ = writeln!(
        out,
        "\n{} probes, {} passed, {} failed, {} skipped",
        findings.len(),
        count("pass"),
        count("fail"),
        count("skip")
    );
    out
}

/// The data probe: through etcd when `--etcd` is given.
async fn data(
    probes: &ProbeArgs,
    tenancy: &kubebid_model::tenancy::Tenancy,
    only: Option<&str>,
) -> Result<Vec<kubebid_verify::Finding>, String> {
    let Some(url) = &probes.etcd else {
        return Ok(kubebid_verify::data::not_checked(tenancy, only));
    };
    let base: hyper::Uri = url.parse().map_err(|e| format!("--etcd {url}: {e}"))?;
    let cert = match (&probes.etcd_cert, &probes.etcd_key) {
        (Some(c), Some(k)) => Some(std::sync::Arc::new(
            kubebid_server::tls::ReloadingCert::new(c, k).map_err(|e| e.to_string())?,
        )),
        _ => None,
    };
    let tls = match &probes.etcd_ca {
        Some(ca) => Some(kubebid_server::tls::client_config(ca, cert).map_err(|e| e.to_string())?),
        None => None,
    };
    let etcd = kubebid_etcd::proxy::Etcd::new(base, tls).map_err(|e| format!("--etcd {e}"))?;
    let client = kubebid_etcd::client::Client::new(std::sync::Arc::new(etcd));
    kubebid_verify::data::probe(
        &client,
        &probes.etcd_prefix,
        tenancy,
        only,
        probes.etcd_sample,
    )
    .await
    .map_err(|e| e.to_string())
}

/// The audit sink to read, when `--audit-sink` is given.
fn audit_sink(probes: &ProbeArgs) -> Result<Option<kubebid_verify::audit::AuditSink>, String> {
    let (Some(url), Some(token)) = (&probes.audit_sink, &probes.audit_token_file) else {
        return Ok(None);
    };
    // The bearer token and the sink's verdict on its chain travel in the clear over http: only on
    // loopback.
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("--audit-sink {url}: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) | (Some("http"), Some("127.0.0.1" | "localhost" | "[::1]")) => {}
        _ => {
            return Err(format!(
                "--audit-sink {url}: an https:// URL (http:// only on loopback)"
            ));
        }
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(token)
            .map_err(|e| format!("--audit-token-file {}: {e}", token.display()))?,
    );
    let trimmed = zeroize::Zeroizing::new(text.trim().to_owned());
    if trimmed.is_empty() {
        return Err(format!("--audit-token-file {}: empty", token.display()));
    }
    let tls = match &probes.audit_ca {
        Some(ca) => Some(kubebid_server::tls::client_config(ca, None).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(Some(kubebid_verify::audit::AuditSink {
        url: url.clone(),
        token: trimmed,
        tls,
        wait: std::time::Duration::from_secs_f64(probes.audit_wait.clamp(0.0, 600.0)),
    }))
}

/// Every probe family, in order, as the CLI's arguments select them.
async fn probes(
    args: &VerifyArgs,
    verifier: &kubebid_verify::Verifier,
    set: &kubebid_model::load::ConfigSet,
    progress: &(dyn Fn(usize, usize) + Sync),
    started: jiff::Timestamp,
) -> Result<Vec<kubebid_verify::Finding>, String> {
    let tenancy = set.tenancy();
    let mut findings = verifier
        .control_plane(&tenancy, args.tenant.as_deref(), progress)
        .await
        .map_err(|e| e.to_string())?;
    findings.extend(
        verifier
            .admission(&tenancy, args.tenant.as_deref(), progress)
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
            .network(set, args.tenant.as_deref())
            .await
            .map_err(|e| e.to_string())?,
    );
    findings.extend(
        verifier
            .reachability(set, args.tenant.as_deref())
            .await
            .map_err(|e| e.to_string())?,
    );
    findings.push(verifier.encryption().await.map_err(|e| e.to_string())?);
    let dns = args
        .probes
        .dns
        .map(|server| kubebid_verify::dns::DnsTarget {
            server,
            domain: set.cluster_spec().cluster_domain.clone(),
            timeout: std::time::Duration::from_secs_f64(args.probes.dns_timeout.clamp(0.05, 60.0)),
        });
    findings.extend(
        verifier
            .dns(&tenancy, args.tenant.as_deref(), dns.as_ref())
            .await
            .map_err(|e| e.to_string())?,
    );
    findings.extend(data(&args.probes, &tenancy, args.tenant.as_deref()).await?);
    let made = kubebid_verify::admission_subjects(&tenancy, args.tenant.as_deref());
    findings.extend(match audit_sink(&args.probes)? {
        Some(sink) => kubebid_verify::audit::probe(&sink, &made, started).await,
        None => kubebid_verify::audit::not_checked(&made),
    });
    Ok(findings)
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
    let started = jiff::Timestamp::now();
    let result = rt.block_on(async {
        let (client, server) = client(args.kubeconfig.as_ref()).await?;
        let meta = meta(&client, server, args.tenant.as_deref()).await;
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
        let verifier = kubebid_verify::Verifier::new(client, args.concurrency)
            .with_bindable(set.cluster_spec().allowed_cluster_roles);
        let findings = probes(args, &verifier, &set, &progress, started).await?;
        bar.finish_and_clear();
        Ok((findings, meta))
    });
    let (findings, mut meta) = match result {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    meta.started = started.to_string();
    meta.finished = jiff::Timestamp::now().to_string();
    let out = match args.output {
        VerifyFormat::Text => text(&findings),
        VerifyFormat::Sarif => sarif(&findings),
        VerifyFormat::Junit => junit(&findings),
        VerifyFormat::Html => kubebid_verify::report::html(&meta, &findings),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn findings() -> Vec<kubebid_verify::Finding> {
        vec![
            kubebid_verify::Finding {
                probe: "control-plane/foreign-namespace",
                tenant: "acme".into(),
                other: Some("globex".into()),
                identity: "kubebid-verify:acme:acme-admins".into(),
                namespace: Some("globex".into()),
                passed: false,
                skipped: false,
                evidence: vec!["get on secrets <\"&\u{1}>".into()],
            },
            kubebid_verify::Finding {
                probe: "compute/pods",
                tenant: "acme".into(),
                other: None,
                identity: "(verifier)".into(),
                namespace: None,
                passed: true,
                skipped: false,
                evidence: Vec::new(),
            },
        ]
    }

    #[test]
    fn sarif_is_the_schema_s_and_names_only_failures() {
        let text = sarif(&findings());
        let log: serde_sarif::sarif::Sarif = serde_json::from_str(&text).expect("SARIF 2.1.0");
        let run = &log.runs[0];
        assert_eq!(run.results.as_ref().map(Vec::len), Some(1));
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            v["runs"][0]["results"][0]["ruleId"],
            "control-plane/foreign-namespace"
        );
        assert_eq!(
            v["runs"][0]["results"][0]["properties"]["otherTenant"],
            "globex"
        );
        assert_eq!(
            v["runs"][0]["tool"]["driver"]["rules"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn junit_escapes_what_the_api_server_said() {
        let x = junit(&findings());
        assert!(x.starts_with("<?xml"));
        assert!(x.contains("<testsuites name=\"kubebid verify\" tests=\"2\" failures=\"1\">"));
        assert!(
            x.contains("get on secrets &lt;&quot;&amp;\u{fffd}&gt;"),
            "{x}"
        );
        assert!(!x.contains('\u{1}'));
        assert_eq!(x.matches("<testcase ").count(), 2);
        assert_eq!(
            x.matches("<testsuite ").count(),
            x.matches("</testsuite>").count()
        );
    }
}
