//! `kubebid`: zero-trust multi-tenancy for Kubernetes.
//!
//! One binary, one subcommand per job. `check` runs the admission policy engine over manifests offline,
//! with exactly the rules, IDs and configuration the in-cluster components use.

#![deny(clippy::pedantic)]

mod audit_cmd;
mod check;
mod dns_cmd;
mod etcd_cmd;
mod generate_cmd;
mod kms_cmd;
mod node_cmd;
mod output;
mod rules_cmd;
mod runtime_cmd;
mod scan_cmd;
mod serve;
mod up;
mod verify_cmd;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kubebid_model::{Profile, PssVersion};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kubebid",
    version,
    about = "Zero-trust multi-tenancy for Kubernetes",
    propagate_version = true
)]
struct Cli {
    /// When to colour output.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto)]
    color: ColorWhen,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Check manifests against the admission policy, offline.
    ///
    /// Exit status: 0 when no finding is at enforce level, 1 when one is, 2 on a usage or input error.
    Check(CheckArgs),
    /// List every rule: ID, severity, profiles and title.
    Rules {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = RulesFormat::Text)]
        output: RulesFormat,
        #[command(subcommand)]
        detection: Option<RulesDetection>,
    },
    /// Run one of KubeBid's services.
    #[command(subcommand)]
    Serve(serve::ServeCommand),
    /// Certificates for development.
    #[command(subcommand)]
    Cert(serve::CertCommand),
    /// Start KubeBid's services on loopback with built-in defaults (no cluster needed).
    Up(up::UpArgs),
    /// Tenants: render what KubeBid manages for them.
    #[command(subcommand)]
    Tenant(generate_cmd::TenantCommand),
    /// Audit trails: verify them, query them, prove an event is in one, check such a proof offline.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// This node, as the node agent attests it: KVM, Kata with Firecracker, memory encryption, cache
    /// partitioning, the kubelet's CPU manager.
    #[command(subcommand)]
    Node(node_cmd::NodeCommand),
    /// Prove isolation on a live cluster: act as each tenant's identities against every other tenant and
    /// judge what the API server allows and admits, what the network, DNS, etcd and the audit sink show
    /// (probes that cannot run here are skipped with the reason).
    ///
    /// Exit status: 0 when every probe passes, 1 when one fails, 2 when the proof could not be made.
    Verify(verify_cmd::VerifyArgs),
    /// Judge the objects already in a cluster with the admission policy, as they stand now (objects made
    /// before the webhook, or under exceptions since expired), in `check`'s formats; `--write-reports`
    /// also keeps them as `PolicyReport`s.
    ///
    /// Exit status: 0 when no object has a finding at enforce level, 1 when one has, 2 when the scan could
    /// not be made.
    Scan(scan_cmd::ScanArgs),
    /// KMS keys: rotate the root key, manage per-tenant keys.
    #[command(subcommand)]
    Kms(kms_cmd::KmsCommand),
    /// Tenants' Secrets in etcd: re-seal them under their tenants' current keys.
    #[command(subcommand)]
    Secrets(etcd_cmd::SecretsCommand),
    /// Print objects for a cluster: webhook configurations, CRDs.
    #[command(subcommand)]
    Generate(generate_cmd::GenerateCommand),
}

/// Detection rules (Falco's language) instead of admission rules.
#[derive(Subcommand)]
enum RulesDetection {
    /// The `k8s_audit` rules the audit sink runs: KubeBid's and the files given, each evaluable or why not.
    ///
    /// Exit status: 0 when the files load, 2 when one does not.
    Audit {
        /// Falco rules files, loaded after KubeBid's own rules.
        files: Vec<std::path::PathBuf>,
        /// Do not load KubeBid's own rules.
        #[arg(long)]
        no_builtin: bool,
    },
    /// The `syscall` rules the node sensor runs: KubeBid's and the files given (Falco's
    /// `falco_rules.yaml`), each evaluable with the sensor's fields or why not.
    ///
    /// Exit status: 0 when the files load, 2 when one does not.
    Runtime {
        /// Falco rules files, loaded after KubeBid's own rules.
        files: Vec<std::path::PathBuf>,
        /// Do not load KubeBid's own rules.
        #[arg(long)]
        no_builtin: bool,
    },
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Files or directories to check (YAML, JSON, `kind: List`); `-` reads standard input.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// `KubeBid` configuration (`KubeBidConfig`, Tenant and `PolicyException` objects): a file or directory. Repeatable.
    #[arg(short, long, value_name = "FILE|DIR")]
    config: Vec<String>,
    /// Apply this profile to every tenant, overriding the configuration.
    #[arg(short, long, value_parser = parse_profile)]
    profile: Option<Profile>,
    /// Pod Security Standards version: `latest` or `v1.0` … `v1.37`.
    #[arg(long, value_name = "VERSION", value_parser = parse_pss_version)]
    pss_version: Option<PssVersion>,
    /// Namespace for objects that do not name one.
    #[arg(short, long)]
    namespace: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = CheckFormat::Text)]
    output: CheckFormat,
    /// Also print notes (excluded namespaces, kinds without rules, ...) in text output.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum CheckFormat {
    Text,
    Json,
    Sarif,
}

#[derive(Clone, Copy, ValueEnum)]
enum RulesFormat {
    Text,
    Json,
    Markdown,
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::parse(s)
        .ok_or_else(|| format!("{s:?} is not a profile (baseline, restricted, zero-trust)"))
}

fn parse_pss_version(s: &str) -> Result<PssVersion, String> {
    match PssVersion::parse(s) {
        Some(v) if v == PssVersion::LATEST || v.minor <= kubebid_policy::pss::LATEST_MINOR => Ok(v),
        Some(_) => Err(format!(
            "{s:?} is newer than the newest known version v1.{}",
            kubebid_policy::pss::LATEST_MINOR
        )),
        None => Err(format!("{s:?}: expected \"latest\" or \"v1.N\"")),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUBEBID_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.color {
        ColorWhen::Auto => {}
        ColorWhen::Always => anstream::ColorChoice::Always.write_global(),
        ColorWhen::Never => anstream::ColorChoice::Never.write_global(),
    }
    let mut stdout = anstream::stdout();
    let result = match cli.command {
        Command::Check(args) => run_check(&args, &mut stdout),
        Command::Serve(cmd) => Ok(serve::run(cmd)),
        Command::Cert(cmd) => Ok(serve::cert(&cmd)),
        Command::Generate(cmd) => Ok(generate_cmd::run(&cmd)),
        Command::Up(args) => Ok(up::run(&args)),
        Command::Tenant(cmd) => Ok(generate_cmd::tenant(&cmd)),
        Command::Kms(cmd) => Ok(kms_cmd::run(&cmd)),
        Command::Node(cmd) => Ok(node_cmd::run(&cmd)),
        Command::Verify(args) => Ok(verify_cmd::run(&args)),
        Command::Scan(args) => Ok(scan_cmd::run(&args)),
        Command::Secrets(cmd) => Ok(etcd_cmd::secrets(&cmd)),
        Command::Audit(cmd) => Ok(audit_cmd::run(&cmd)),
        Command::Rules {
            detection: Some(RulesDetection::Audit { files, no_builtin }),
            ..
        } => match audit_cmd::audit_engine(&files, !no_builtin) {
            Ok(engine) => write!(stdout, "{}", engine.report()).map(|()| ExitCode::SUCCESS),
            Err(e) => {
                let _ = writeln!(anstream::stderr(), "kubebid rules audit: {e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Rules {
            detection: Some(RulesDetection::Runtime { files, no_builtin }),
            ..
        } => match runtime_cmd::runtime_engine(&files, !no_builtin) {
            Ok(engine) => write!(stdout, "{}", engine.report()).map(|()| ExitCode::SUCCESS),
            Err(e) => {
                let _ = writeln!(anstream::stderr(), "kubebid rules runtime: {e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Rules { output, .. } => {
            let text = match output {
                RulesFormat::Text => rules_cmd::text(),
                RulesFormat::Json => rules_cmd::json(),
                RulesFormat::Markdown => rules_cmd::markdown(),
            };
            stdout
                .write_all(text.as_bytes())
                .map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(anstream::stderr(), "kubebid: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_check(args: &CheckArgs, out: &mut dyn Write) -> std::io::Result<ExitCode> {
    let mut policy = match check::load_policy(&args.config) {
        Ok(p) => p,
        Err(errors) => {
            let mut err = anstream::stderr();
            for e in errors {
                writeln!(err, "config error: {e}")?;
            }
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(p) = args.profile {
        policy = policy.with_profile(p);
    }
    if let Some(v) = args.pss_version {
        policy = policy.with_pss_version(v);
    }
    let (inputs, expand_errors) = kubebid_model::input::expand(&args.paths);
    let bar = progress_bar(inputs.len());
    let tick = || bar.inc(1);
    let mut report = check::run(
        &policy,
        &inputs,
        args.namespace.as_deref(),
        jiff::Timestamp::now(),
        &tick,
    );
    bar.finish_and_clear();
    report
        .errors
        .splice(0..0, expand_errors.into_iter().map(Into::into));
    if report.objects.is_empty() && report.errors.is_empty() {
        // A gate that was pointed at the wrong path must not pass.
        let what = if inputs.is_empty() {
            "no manifest files (.yaml, .yml, .json)"
        } else {
            "no Kubernetes objects"
        };
        writeln!(
            anstream::stderr(),
            "kubebid check: {what} found in {}",
            args.paths.join(", ")
        )?;
        return Ok(ExitCode::from(2));
    }
    // Render into memory and write once: the colour-stripping stream is unbuffered.
    let mut rendered = Vec::with_capacity(64 * 1024);
    match args.output {
        CheckFormat::Text => output::text(&report, &mut rendered, args.verbose)?,
        CheckFormat::Json => output::json(&report, &mut rendered)?,
        CheckFormat::Sarif => output::sarif(&report, &mut rendered)?,
    }
    if matches!(args.output, CheckFormat::Text) {
        out.write_all(&rendered)?;
        out.flush()?;
    } else {
        // JSON and SARIF carry no colour: skip the stripping stream.
        let mut raw = std::io::stdout().lock();
        raw.write_all(&rendered)?;
        raw.flush()?;
    }
    Ok(if !report.errors.is_empty() {
        ExitCode::from(2)
    } else if report.denied_objects() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A progress bar on stderr for large trees, only when stderr is a terminal.
fn progress_bar(files: usize) -> indicatif::ProgressBar {
    if files < 200 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(files as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} checking {pos}/{len} files {wide_bar} {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}
