//! `kubebid serve audit` and `kubebid audit keygen|verify|query|proof|check-proof|heads`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use kubebid_audit::head::{KeyFile, PublicKey, SignedHead, Signer as _};
use kubebid_audit::log::LogConfig;
use kubebid_audit::metrics::AuditMetrics;
use kubebid_audit::query::Filter;
use kubebid_audit::sink::{KubeAccess, SinkState};
use kubebid_audit::store::Store;
use kubebid_audit::verify::{trail_named, verify_dir};
use kubebid_model::tenancy::Tenancy;
use kubebid_server::Shutdown;
use kubebid_server::http::{Process, Transport};

use crate::kms_cmd::HsmArgs;

#[derive(clap::Args)]
pub struct AuditServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8444")]
    pub listen: SocketAddr,
    /// Data directory: one log per tenant, the platform's log, the witness heads.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Ed25519 signing key of the tree heads (PKCS#8 PEM; `kubebid audit keygen` writes one).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "hsm_key",
        conflicts_with = "hsm_key"
    )]
    pub signing_key: Option<PathBuf>,
    /// Sign tree heads with this Ed25519 key held in the HSM (`kubebid audit keygen --hsm-key` makes
    /// one): the private key never leaves the token.
    #[arg(long, value_name = "LABEL")]
    pub hsm_key: Option<String>,
    #[command(flatten)]
    pub hsm: HsmArgs,
    /// Serving certificate (PEM); reloaded when the file changes. Without it the sink speaks plain HTTP,
    /// for development on loopback only.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Accept events only from clients presenting a certificate this CA signed (the API server's).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// And only if the certificate is issued to this name (a DNS name in its subject alternative names);
    /// repeatable. Without it, any certificate the CA signed is accepted: give one when the CA also signs
    /// other clients' certificates.
    #[arg(long, value_name = "NAME", requires = "client_ca")]
    pub client_name: Vec<String>,
    /// KubeBidConfig and Tenant objects (file or directory, repeatable), for attribution. Without it the
    /// sink has no tenants and every event goes to the platform's log.
    #[arg(short, long, value_name = "FILE|DIR")]
    pub config: Vec<String>,
    /// Serve tenants' trail queries, authenticated and authorized through the cluster (a `TokenReview`,
    /// then a `SubjectAccessReview` for `get auditevents.kubebid.io`).
    #[arg(long)]
    pub queries: bool,
    /// Close a segment at this size (MiB).
    #[arg(long, default_value_t = 64)]
    pub segment_mib: u64,
    /// Close a segment at this age (seconds).
    #[arg(long, default_value_t = 3600)]
    pub segment_seconds: u64,
    /// Delete segments whose events are all older than this many days (default: keep forever). A Tenant's
    /// `auditRetentionDays` overrides it for its trail.
    #[arg(long, value_name = "DAYS")]
    pub retention_days: Option<u64>,
    /// Largest batch accepted (MiB); a larger one is answered 413.
    #[arg(long, default_value_t = 16)]
    pub max_batch_mib: usize,
    /// Falco rules files for the `k8s_audit` source, loaded after KubeBid's own rules (so they may append
    /// to or override them). Repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// Do not load KubeBid's own rules.
    #[arg(long)]
    pub no_builtin_rules: bool,
    /// Turn detection off.
    #[arg(long)]
    pub no_detection: bool,
    /// Where alerts go as JSON lines in Falco's format: a file (appended) or `-` for standard output.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    pub alerts: String,
    /// Also post each alert to this URL (http or https), as Falco's `http_output` does.
    #[arg(long, value_name = "URL")]
    pub alert_webhook: Option<String>,
    /// Export every trail, in order and with its signed tree heads, to this OTLP/HTTP logs endpoint
    /// (`http://collector:4318/v1/logs`): for clusters whose trails outgrow one disk.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Lowest priority that raises an alert (emergency ... debug).
    #[arg(long, default_value = "debug")]
    pub min_priority: String,
}

/// Compiles the `k8s_audit` rules: KubeBid's (unless left out), then `files` in order.
pub fn audit_engine(
    files: &[PathBuf],
    builtin: bool,
) -> Result<kubebid_rules::Engine<kubebid_rules::K8sAudit>, String> {
    let own = builtin.then_some((
        kubebid_rules::KUBEBID_AUDIT_RULES_FILE,
        kubebid_rules::kubebid_audit_rules(),
    ));
    crate::runtime_cmd::engine(own, files, kubebid_rules::K8sAudit::new())
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "kubebid-audit".into())
}

/// Tree heads signed inside the HSM.
struct HsmSigner {
    store: kubebid_kms::keystore::Pkcs11Store,
    label: String,
    public: PublicKey,
}

impl kubebid_audit::head::Signer for HsmSigner {
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], kubebid_audit::head::KeyError> {
        self.store
            .sign_ed25519(&self.label, message)
            .map_err(|e| kubebid_audit::head::KeyError::Sign(e.to_string()))
    }

    fn public_key(&self) -> PublicKey {
        self.public
    }
}

/// The signer the arguments name: a key file, or a key in the HSM.
fn signer(args: &AuditServeArgs) -> Result<Arc<dyn kubebid_audit::head::Signer>, String> {
    if let Some(label) = &args.hsm_key {
        let store = args.hsm.open()?;
        let public = store
            .ed25519_public(label)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "--hsm-key: no Ed25519 key labelled {label:?} in token {:?}",
                    args.hsm.token
                )
            })?;
        return Ok(Arc::new(HsmSigner {
            store,
            label: label.clone(),
            public: PublicKey(public),
        }));
    }
    let path = args
        .signing_key
        .as_deref()
        .ok_or("give --signing-key or --hsm-key")?;
    KeyFile::load(path)
        .map(|k| Arc::new(k) as Arc<dyn kubebid_audit::head::Signer>)
        .map_err(|e| e.to_string())
}

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600) and its public key beside it (`.pub`); with
    /// `--hsm-key`, create the key in the HSM instead and write only the public key to `--out`.
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Create the key in the HSM under this label.
        #[arg(long, value_name = "LABEL")]
        hsm_key: Option<String>,
        #[command(flatten)]
        hsm: HsmArgs,
    },
    /// Check every event of every trail (or one) against the signed tree heads.
    ///
    /// Exit status: 0 when everything verifies, 1 when something does not, 2 on a usage error.
    Verify {
        /// The sink's data directory.
        dir: PathBuf,
        /// Only this tenant's trail (`_platform` for the platform's).
        #[arg(long)]
        tenant: Option<String>,
        /// The sink's public key [default: DIR/signing-key.pub; give one from elsewhere to trust less].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Signed heads kept elsewhere (JSON lines of {"trail":..., "head":...}, as `kubebid audit heads`
        /// prints): the log must still extend each.
        #[arg(long, value_name = "FILE")]
        heads: Option<PathBuf>,
        #[arg(short, long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
    /// Print each trail's last signed head, to keep apart from the log (for `verify --heads`).
    Heads {
        dir: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Events of one trail, filtered.
    Query {
        dir: PathBuf,
        #[arg(long)]
        tenant: String,
        /// RFC 3339 time, or a duration back from now (`1h`, `30m`, `2d`).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        verb: Option<String>,
        /// `secrets`, or `pods/exec`.
        #[arg(long)]
        resource: Option<String>,
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        #[arg(short, long, value_enum, default_value_t = QueryFormat::Table)]
        output: QueryFormat,
    },
    /// Write the inclusion proof of one event against its trail's last signed head (`--index`), or the
    /// consistency proof from a head kept earlier to the last one (`--since-head`).
    Proof {
        dir: PathBuf,
        #[arg(long)]
        tenant: String,
        #[arg(
            long,
            required_unless_present = "since_head",
            conflicts_with = "since_head"
        )]
        index: Option<u64>,
        /// A head kept earlier: a line of `kubebid audit heads`, or a head as JSON.
        #[arg(long, value_name = "FILE")]
        since_head: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Where to write the proof [default: standard output].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check an inclusion or consistency proof offline, with the sink's public key only.
    ///
    /// Exit status: 0 when the proof holds, 1 when it does not, 2 on a usage error.
    CheckProof {
        proof: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum QueryFormat {
    Table,
    Json,
}

fn fail(cmd: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("kubebid audit {cmd}: {e}");
    ExitCode::from(2)
}

fn serve_fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("kubebid serve audit: {e}");
    ExitCode::from(2)
}

fn public_key(dir: &Path, key: Option<&Path>) -> Result<PublicKey, String> {
    if key.is_none() {
        eprintln!(
            "note: using the public key in {}; whoever can rewrite the logs can rewrite it too: give --key from a place you trust",
            dir.join("signing-key.pub").display()
        );
    }
    let path = key.map_or_else(|| dir.join("signing-key.pub"), Path::to_path_buf);
    PublicKey::load(&path).map_err(|e| e.to_string())
}

pub fn run(cmd: &AuditCommand) -> ExitCode {
    match cmd {
        AuditCommand::Keygen {
            out,
            hsm_key: Some(label),
            hsm,
        } => keygen_hsm(out, label, hsm),
        AuditCommand::Keygen { out, .. } => keygen(out),
        AuditCommand::Verify {
            dir,
            tenant,
            key,
            heads,
            output,
        } => verify(
            dir,
            tenant.as_deref(),
            key.as_deref(),
            heads.as_deref(),
            *output,
        ),
        AuditCommand::Heads { dir, key } => heads(dir, key.as_deref()),
        AuditCommand::Query {
            dir,
            tenant,
            since,
            user,
            verb,
            resource,
            namespace,
            limit,
            key,
            output,
        } => {
            let since = match since.as_deref().map(parse_since).transpose() {
                Ok(s) => s,
                Err(e) => return fail("query", format!("--since: {e}")),
            };
            let filter = Filter {
                since,
                until: None,
                user: user.clone(),
                verb: verb.clone(),
                resource: resource.clone(),
                namespace: namespace.clone(),
                limit: *limit,
            };
            query(dir, tenant, key.as_deref(), &filter, *output)
        }
        AuditCommand::Proof {
            dir,
            tenant,
            index: Some(index),
            key,
            out,
            ..
        } => proof(dir, tenant, *index, key.as_deref(), out.as_deref()),
        AuditCommand::Proof {
            dir,
            tenant,
            since_head: Some(head),
            key,
            out,
            ..
        } => consistency(dir, tenant, head, key.as_deref(), out.as_deref()),
        AuditCommand::Proof { .. } => fail("proof", "give --index or --since-head"),
        AuditCommand::CheckProof { proof, key } => check_proof(proof, key),
    }
}

fn keygen(out: &Path) -> ExitCode {
    let write = || -> Result<PathBuf, String> {
        let pem = KeyFile::generate_pem().map_err(|e| e.to_string())?;
        write_private(out, pem.as_bytes()).map_err(|e| format!("{}: {e}", out.display()))?;
        let key = KeyFile::load(out).map_err(|e| e.to_string())?;
        let public = out.with_extension("pub");
        std::fs::write(&public, key.public_key().to_pem())
            .map_err(|e| format!("{}: {e}", public.display()))?;
        Ok(public)
    };
    match write() {
        Ok(public) => {
            println!(
                "wrote {} (private, 0600) and {}",
                out.display(),
                public.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail("keygen", e),
    }
}

fn keygen_hsm(out: &Path, label: &str, hsm: &HsmArgs) -> ExitCode {
    let make = || -> Result<(), String> {
        let store = hsm.open()?;
        let public = store.create_ed25519(label).map_err(|e| e.to_string())?;
        std::fs::write(out, PublicKey(public).to_pem())
            .map_err(|e| format!("{}: {e}", out.display()))
    };
    match make() {
        Ok(()) => {
            println!(
                "created Ed25519 key {label:?} in token {:?} (not extractable); wrote its public key to {}",
                hsm.token,
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail("keygen", e),
    }
}

/// Writes a new file readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[derive(serde::Deserialize)]
struct KeptHead {
    trail: String,
    head: SignedHead,
}

fn verify(
    dir: &Path,
    tenant: Option<&str>,
    key: Option<&Path>,
    heads: Option<&Path>,
    output: Format,
) -> ExitCode {
    let key = match public_key(dir, key) {
        Ok(k) => k,
        Err(e) => return fail("verify", e),
    };
    let mut external = Vec::new();
    if let Some(path) = heads {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return fail("verify", format!("{}: {e}", path.display())),
        };
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            match serde_json::from_str::<KeptHead>(line) {
                Ok(k) => external.push((k.trail, k.head)),
                Err(e) => return fail("verify", format!("{}:{}: {e}", path.display(), n + 1)),
            }
        }
    }
    let started = std::time::Instant::now();
    let report = match verify_dir(dir, &key, tenant, &external) {
        Ok(r) => r,
        Err(e) => return fail("verify", format!("{}: {e}", dir.display())),
    };
    let took = started.elapsed();
    match output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        Format::Text => {
            for t in &report.trails {
                let state = if t.ok() { "ok" } else { "FAILED" };
                let size = t.last_head.as_ref().map_or(0, |h| h.tree_size);
                println!(
                    "{:<24} {state:<6} {} events (from index {}), {} signed heads, tree size {size}",
                    t.trail, t.events, t.oldest, t.heads
                );
                for p in &t.problems {
                    let seg = if p.segment.is_empty() {
                        String::new()
                    } else {
                        format!("segment {}, ", p.segment)
                    };
                    println!("  problem: {seg}event {}: {}", p.index, p.what);
                }
                for w in &t.warnings {
                    println!("  warning: {w}");
                }
            }
            for d in &report.damaged {
                println!("damaged log kept aside by the sink: {}", d.display());
            }
            #[allow(clippy::cast_precision_loss)] // a rate for people
            let rate = report.events() as f64 / took.as_secs_f64().max(1e-9);
            println!(
                "{} events in {:.3} s ({rate:.0}/s): {}",
                report.events(),
                took.as_secs_f64(),
                if report.ok() {
                    "verified"
                } else {
                    "NOT verified"
                }
            );
        }
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn heads(dir: &Path, key: Option<&Path>) -> ExitCode {
    let key = match public_key(dir, key) {
        Ok(k) => k,
        Err(e) => return fail("heads", e),
    };
    let report = match verify_dir(dir, &key, None, &[]) {
        Ok(r) => r,
        Err(e) => return fail("heads", format!("{}: {e}", dir.display())),
    };
    for t in &report.trails {
        if let Some(h) = &t.last_head {
            println!("{}", serde_json::json!({"trail": t.trail, "head": h}));
        }
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// An RFC 3339 time, or a span back from now (`90s`, `30m`, `1h`, `2d`).
fn parse_since(s: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a span like 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{s:?}: a span's unit is s, m, h or d")),
    };
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(secs))
        .map_err(|e| e.to_string())
}

fn query(
    dir: &Path,
    tenant: &str,
    key: Option<&Path>,
    filter: &Filter,
    output: QueryFormat,
) -> ExitCode {
    let key = match public_key(dir, key) {
        Ok(k) => k,
        Err(e) => return fail("query", e),
    };
    let (found, report) = match kubebid_audit::query::query(dir, &trail_named(tenant), &key, filter)
    {
        Ok(x) => x,
        Err(e) => return fail("query", format!("{}: {e}", dir.display())),
    };
    let mut out = std::io::stdout().lock();
    match output {
        QueryFormat::Json => {
            for f in &found {
                let _ = writeln!(out, "{}", f.event.get());
            }
        }
        QueryFormat::Table => {
            let _ = writeln!(
                out,
                "INDEX    TIME                        USER                         VERB     RESOURCE                         NAMESPACE/NAME"
            );
            for f in &found {
                let Ok(h) = kubebid_audit::event::head(f.event.get()) else {
                    continue;
                };
                let time = h
                    .request_received_timestamp
                    .as_deref()
                    .or(h.stage_timestamp.as_deref())
                    .unwrap_or("");
                let (res, target) =
                    h.object_ref
                        .as_ref()
                        .map_or((String::new(), String::new()), |o| {
                            let r = if o.subresource.is_empty() {
                                o.resource.clone()
                            } else {
                                format!("{}/{}", o.resource, o.subresource)
                            };
                            let t = if o.namespace.is_empty() {
                                o.name.clone()
                            } else {
                                format!("{}/{}", o.namespace, o.name)
                            };
                            (r, t)
                        });
                let _ = writeln!(
                    out,
                    "{:<8} {:<27} {:<28} {:<8} {:<32} {}",
                    f.index, time, h.user.username, h.verb, res, target
                );
            }
        }
    }
    if !report.ok() {
        eprintln!(
            "warning: the trail does not verify; run `kubebid audit verify {} --tenant {tenant}`",
            dir.display()
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn proof(dir: &Path, tenant: &str, index: u64, key: Option<&Path>, out: Option<&Path>) -> ExitCode {
    let key = match public_key(dir, key) {
        Ok(k) => k,
        Err(e) => return fail("proof", e),
    };
    let made = kubebid_audit::proof::prove(dir, &trail_named(tenant), &key, index);
    emit_proof(made, out, |p| {
        format!(
            "the proof of event {index} of {tenant} (tree size {})",
            p.head.tree_size
        )
    })
}

/// Writes a proof to `out` (saying so) or prints it; a proof that cannot be made exits 1.
fn emit_proof<P: serde::Serialize>(
    made: Result<P, kubebid_audit::proof::ProofError>,
    out: Option<&Path>,
    what: impl FnOnce(&P) -> String,
) -> ExitCode {
    match made {
        Ok(p) => {
            let text = serde_json::to_string_pretty(&p).unwrap_or_default();
            match out {
                Some(path) => {
                    if let Err(e) = std::fs::write(path, text + "\n") {
                        return fail("proof", format!("{}: {e}", path.display()));
                    }
                    eprintln!("wrote {} to {}", what(&p), path.display());
                }
                None => println!("{text}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubebid audit proof: {e}");
            ExitCode::from(1)
        }
    }
}

fn consistency(
    dir: &Path,
    tenant: &str,
    head: &Path,
    key: Option<&Path>,
    out: Option<&Path>,
) -> ExitCode {
    let key = match public_key(dir, key) {
        Ok(k) => k,
        Err(e) => return fail("proof", e),
    };
    let text = match std::fs::read(head) {
        Ok(t) => t,
        Err(e) => return fail("proof", format!("{}: {e}", head.display())),
    };
    let first = match serde_json::from_slice::<KeptHead>(&text)
        .map(|k| k.head)
        .or_else(|_| serde_json::from_slice::<SignedHead>(&text))
    {
        Ok(h) => h,
        Err(e) => {
            return fail(
                "proof",
                format!("{}: not a signed head: {e}", head.display()),
            );
        }
    };
    let made = kubebid_audit::proof::prove_consistency(dir, &trail_named(tenant), &key, &first);
    emit_proof(made, out, |p| {
        format!(
            "the consistency proof of {tenant} from {} to {} events",
            p.first.tree_size, p.second.tree_size
        )
    })
}

fn check_proof(path: &Path, key: &Path) -> ExitCode {
    let key = match PublicKey::load(key) {
        Ok(k) => k,
        Err(e) => return fail("check-proof", e),
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return fail("check-proof", format!("{}: {e}", path.display())),
    };
    if kubebid_audit::proof::kind_of(&bytes).as_deref() == Some("AuditConsistencyProof") {
        return match kubebid_audit::proof::check_consistency(&bytes, &key) {
            Ok(p) => {
                println!(
                    "proof holds: the tree of {} events of {} signed at {} is a prefix of the tree of {} signed at {}",
                    p.first.tree_size,
                    p.trail,
                    p.first.timestamp_ms,
                    p.second.tree_size,
                    p.second.timestamp_ms
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("proof does NOT hold: {e}");
                ExitCode::from(1)
            }
        };
    }
    match kubebid_audit::proof::check(&bytes, &key) {
        Ok(p) => {
            println!(
                "proof holds: event {} of {} is in the tree of {} events signed at {} (root {})",
                p.index,
                p.trail,
                p.head.tree_size,
                jiff::Timestamp::from_millisecond(p.head.timestamp_ms)
                    .map_or_else(|_| p.head.timestamp_ms.to_string(), |t| t.to_string()),
                kubebid_audit::head::hex32::to_hex(&p.head.root)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("proof does NOT hold: {e}");
            ExitCode::from(1)
        }
    }
}

/// The tenancy from `--config` (`None`: watch it in the cluster). A tenant that cannot be modelled fails
/// the start: its events would be attributed to no one.
fn load_tenancy(args: &AuditServeArgs) -> Result<Option<Tenancy>, ExitCode> {
    if args.config.is_empty() {
        return Ok(None);
    }
    match crate::check::load_config_set(&args.config) {
        Ok(set) => {
            let t = set.tenancy();
            if let Some(r) = t.rejected().first() {
                return Err(serve_fail(format!(
                    "tenant {} cannot be loaded: {:?}",
                    r.tenant, r.problems
                )));
            }
            Ok(Some(t))
        }
        Err(errors) => {
            for e in errors {
                eprintln!("config error: {e}");
            }
            Err(ExitCode::from(2))
        }
    }
}

/// The detection rules, unless detection is off.
fn load_rules(
    args: &AuditServeArgs,
) -> Result<Option<kubebid_rules::Engine<kubebid_rules::K8sAudit>>, ExitCode> {
    if args.no_detection {
        return Ok(None);
    }
    let min: kubebid_rules::Priority = args
        .min_priority
        .parse()
        .map_err(|e| serve_fail(format!("--min-priority: {e}")))?;
    let engine = audit_engine(&args.rules, !args.no_builtin_rules)
        .map_err(|e| serve_fail(format!("rules: {e}")))?
        .with_min_priority(min);
    let report = engine.report();
    tracing::info!(
        evaluable = report.evaluable_count(),
        rules = report.rules.len(),
        "k8s_audit rules loaded"
    );
    for r in report.unsupported() {
        tracing::warn!(rule = %r.name, status = ?r.status, "rule not evaluated");
    }
    Ok(Some(engine))
}

/// In a cluster: the tenancy from the Tenant and KubeBidConfig objects, as the webhook sees it; `ready`
/// once they have synced.
pub(crate) async fn watch_tenancy(
    tenancy: Arc<ArcSwap<Tenancy>>,
    ready: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        std::io::Error::other(format!(
            "no --config, and no cluster to watch Tenants in ({e}); give --config for standalone mode"
        ))
    })?;
    let (tx, mut rx) = tokio::sync::watch::channel(None);
    tokio::spawn(kubebid_webhook::cluster::run(
        client,
        tx,
        std::future::pending(),
    ));
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let loaded = rx.borrow_and_update().as_ref().map(|p| p.tenancy().clone());
            if let Some(model) = loaded {
                tenancy.store(Arc::new(model));
                ready.store(true, std::sync::atomic::Ordering::Release);
            }
        }
    });
    tracing::info!("cluster mode: attributing events through the Tenant and KubeBidConfig objects");
    Ok(())
}

/// The detector with its outputs: JSON lines (a file or standard output) and the outbound webhook.
fn start_detection(
    args: &AuditServeArgs,
    engine: kubebid_rules::Engine<kubebid_rules::K8sAudit>,
    tenancy: Arc<ArcSwap<Tenancy>>,
    metrics: &AuditMetrics,
) -> std::io::Result<kubebid_audit::detect::Detection> {
    use kubebid_audit::detect::{AlertOutput, JsonLines};
    let mut outputs: Vec<Box<dyn AlertOutput>> = Vec::new();
    if args.alerts == "-" {
        outputs.push(Box::new(JsonLines(std::io::stdout())));
    } else {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.alerts)
            .map_err(|e| std::io::Error::other(format!("--alerts {}: {e}", args.alerts)))?;
        outputs.push(Box::new(JsonLines(f)));
    }
    if let Some(url) = &args.alert_webhook {
        let url: hyper::Uri = url
            .parse()
            .map_err(|e| std::io::Error::other(format!("--alert-webhook: {e}")))?;
        let forward =
            kubebid_audit::detect::spawn_webhook(url, metrics.alert_webhook_failures.clone())
                .map_err(std::io::Error::other)?;
        outputs.push(Box::new(forward));
    }
    kubebid_audit::detect::start(engine, tenancy, outputs, hostname(), metrics.clone())
}

/// A tenant's own `auditRetentionDays`, else the sink's default, asked at every retention pass.
fn retention(
    tenancy: Arc<ArcSwap<Tenancy>>,
    default: Option<u64>,
) -> kubebid_audit::store::Retention {
    let days = |d: u64| Duration::from_secs(d * 86_400);
    Arc::new(move |trail: &kubebid_audit::store::Trail| {
        let own = match trail {
            kubebid_audit::store::Trail::Tenant(t) => tenancy
                .load()
                .tenant(t)
                .and_then(|s| s.audit_retention_days),
            kubebid_audit::store::Trail::Platform => None,
        };
        own.map(|d| days(u64::from(d))).or(default.map(days))
    })
}

/// TLS (with the certificate reloaded on change and, with a client CA, mutual TLS), else plain HTTP.
fn transport(args: &AuditServeArgs, process: &Process) -> std::io::Result<Transport> {
    if args.client_ca.is_none() {
        tracing::warn!(
            "no --client-ca: anyone who reaches the sink can post events into any tenant's trail; give the API server's client CA in production"
        );
    }
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(Transport::Plain);
    };
    let err = |e: kubebid_server::tls::TlsError| std::io::Error::other(e.to_string());
    let cert = Arc::new(kubebid_server::tls::ReloadingCert::new(cert, key).map_err(err)?);
    // With a client CA, the handshake itself requires the API server's certificate: a client without
    // one never gets to send a body (health and metrics too need it then).
    let tls = match &args.client_ca {
        Some(ca) => {
            kubebid_server::tls::server_config_requiring_client(cert.clone(), ca, &args.client_name)
        }
        None => kubebid_server::tls::server_config(cert.clone(), None),
    }
    .map_err(err)?;
    kubebid_server::tls::spawn_reloader(
        cert,
        Duration::from_secs(1),
        "audit",
        process.metrics.clone(),
        &process.shutdown,
    );
    Ok(Transport::Tls(Arc::new(tls)))
}

/// `kubebid serve audit`.
pub fn serve(args: &AuditServeArgs) -> ExitCode {
    let runtime = match crate::serve::runtime("audit", crate::serve::Threads::Workers) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let process = Process::new(Shutdown::new());
    runtime.block_on(async {
        process.shutdown.watch_signals();
        match start(args, &process).await {
            Ok((_, serving)) => {
                serving.await;
                ExitCode::SUCCESS
            }
            Err(Failure::Said(code)) => code,
            Err(Failure::Io(e)) => serve_fail(e),
        }
    })
}

/// Why the sink did not start: said already (with its exit status), or an error to say.
pub enum Failure {
    Said(ExitCode),
    Io(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Starts the sink as one server of `process`: returns its address once bound, and the future that
/// serves it until the process shuts down.
pub async fn start(
    args: &AuditServeArgs,
    process: &Process,
) -> Result<(SocketAddr, impl Future<Output = ()> + use<>), Failure> {
    let signer = signer(args).map_err(|e| Failure::Said(serve_fail(e)))?;
    let loaded = load_tenancy(args).map_err(Failure::Said)?;
    let engine = load_rules(args).map_err(Failure::Said)?;
    let config = LogConfig {
        max_segment_bytes: args.segment_mib.max(1) << 20,
        max_segment_age: Duration::from_secs(args.segment_seconds.max(1)),
        retention: args.retention_days.map(|d| Duration::from_secs(d * 86400)),
    };
    let metrics: AuditMetrics =
        Arc::new(kubebid_server::metrics::Registered::new(&process.registry));
    let public = signer.public_key();
    let (store, report, writer) = Store::start(&args.data, config, signer, metrics.clone())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    for (trail, aside, why) in &report.damaged {
        tracing::error!(trail, kept_at = %aside.display(), problem = why, "a log failed its checks");
    }
    let standalone = loaded.is_some();
    let tenancy = Arc::new(ArcSwap::from_pointee(
        loaded.unwrap_or_else(Tenancy::builtin),
    ));
    store
        .set_retention(retention(tenancy.clone(), args.retention_days))
        .await;
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(standalone));
    if !standalone {
        watch_tenancy(tenancy.clone(), ready.clone()).await?;
    }
    let access: Option<Arc<dyn kubebid_audit::sink::Access>> = if args.queries {
        let client = kube::Client::try_default().await.map_err(|e| {
            std::io::Error::other(format!(
                "--queries needs a cluster for TokenReview and SubjectAccessReview: {e}"
            ))
        })?;
        Some(Arc::new(KubeAccess { client }))
    } else {
        None
    };
    let transport = transport(args, process)?;
    let detection = match engine {
        Some(engine) => Some(start_detection(args, engine, tenancy.clone(), &metrics)?),
        None => None,
    };
    if let Some(url) = &args.otlp_endpoint {
        let url: hyper::Uri = url
            .parse()
            .map_err(|e| std::io::Error::other(format!("--otlp-endpoint: {e}")))?;
        let post = kubebid_audit::export::http_post(url).map_err(std::io::Error::other)?;
        tokio::spawn(kubebid_audit::export::run(
            args.data.clone(),
            post,
            metrics.clone(),
            process.shutdown.requested(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, data = %args.data.display(), mutual_tls = args.client_ca.is_some(), "audit sink serving");
    let state = Arc::new(SinkState {
        store,
        tenancy,
        metrics,
        client_auth: args.client_ca.is_some(),
        root: args.data.clone(),
        key: public,
        access,
        detection,
        ready,
        queries: Arc::new(tokio::sync::Semaphore::new(
            kubebid_audit::sink::CONCURRENT_QUERIES,
        )),
    });
    let (process, max_body) = (process.clone(), args.max_batch_mib << 20);
    Ok((addr, async move {
        kubebid_audit::sink::serve_in(&process, listener, transport, max_body, state).await;
        drop(writer);
    }))
}
