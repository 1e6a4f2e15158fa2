//! `kubebid serve kms` (the KMS v2 plugin) and `kubebid kms` (root key rotation and per-tenant keys).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use kubebid_kms::envelope::Envelope;
use kubebid_kms::keystore::{KeyError, KeyStore, Pkcs11Store, SoftwareStore};
use kubebid_kms::server::{KmsMetrics, Plugin, TenantKeyPlugin};
use kubebid_kms::tenant::TenantKeys;
use kubebid_server::Shutdown;
use kubebid_server::http::Process;
use zeroize::Zeroizing;

/// The HSM: its PKCS#11 module, token and PIN.
#[derive(clap::Args, Clone, Debug)]
pub struct HsmArgs {
    /// PKCS#11 module of the HSM.
    #[arg(
        long,
        default_value = "/usr/lib/softhsm/libsofthsm2.so",
        value_name = "FILE"
    )]
    pub pkcs11_module: PathBuf,
    /// Label of the HSM token.
    #[arg(long, default_value = "kubebid", value_name = "LABEL")]
    pub token: String,
    /// File holding the token's user PIN (else the `KUBEBID_KMS_PIN` environment variable). Never on the
    /// command line, where other users can read it.
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
}

impl HsmArgs {
    /// Opens the token and logs in.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn open(&self) -> Result<Pkcs11Store, String> {
        let pin = pin(self)?;
        Pkcs11Store::open(&self.pkcs11_module, &self.token, &pin).map_err(|e| e.to_string())
    }
}

/// Where the root keys are.
#[derive(clap::Args, Clone, Debug)]
pub struct KeyStoreArgs {
    #[command(flatten)]
    pub hsm: HsmArgs,
    /// Development only: keep root keys in DIR/root-keys.json instead of an HSM. NOT HSM-backed.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["pin_file"])]
    pub software_keys: Option<PathBuf>,
}

fn pin(args: &HsmArgs) -> Result<Zeroizing<String>, String> {
    if let Some(f) = &args.pin_file {
        let text = Zeroizing::new(
            std::fs::read_to_string(f).map_err(|e| format!("--pin-file {}: {e}", f.display()))?,
        );
        return Ok(Zeroizing::new(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        ));
    }
    std::env::var("KUBEBID_KMS_PIN")
        .map(Zeroizing::new)
        .map_err(|_| "give the token's PIN in --pin-file or KUBEBID_KMS_PIN".to_owned())
}

/// Opens the key store the arguments name.
///
/// # Errors
/// A message naming what is wrong.
pub fn open_store(args: &KeyStoreArgs) -> Result<Arc<dyn KeyStore>, String> {
    if let Some(dir) = &args.software_keys {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("--software-keys {}: {e}", dir.display()))?;
        tracing::warn!(
            dir = %dir.display(),
            "KMS root keys are in a file, NOT in an HSM: anyone who can read it can decrypt every Secret. Development only."
        );
        return SoftwareStore::open(dir)
            .map(|s| Arc::new(s) as Arc<dyn KeyStore>)
            .map_err(|e| e.to_string());
    }
    args.hsm.open().map(|s| Arc::new(s) as Arc<dyn KeyStore>)
}

#[derive(clap::Args, Clone, Debug)]
pub struct KmsServeArgs {
    /// The unix socket the API server's EncryptionConfiguration names (created with mode 0600).
    #[arg(
        long,
        default_value = "/var/run/kmsplugin/socket.sock",
        value_name = "PATH"
    )]
    pub socket: PathBuf,
    /// Also serve the per-tenant key service (`kubebid.kms.v1alpha1.TenantKeyService`: wrap and unwrap
    /// volume keys under tenants' HSM keys) on this unix socket (mode 0600), for the volume component.
    #[arg(long, value_name = "PATH")]
    pub tenant_socket: Option<PathBuf>,
    /// Address of the plain-HTTP /metrics and /healthz endpoint.
    #[arg(long, default_value = "127.0.0.1:9154")]
    pub metrics_listen: SocketAddr,
    #[command(flatten)]
    pub keys: KeyStoreArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum KmsCommand {
    /// Create a new root key version in the HSM. The running plugin picks it up at the API server's next
    /// Status call and reports its key ID, so the API server re-encrypts; older ciphertexts still decrypt.
    Rotate(KeyStoreArgs),
    /// Per-tenant keys (for encrypted volumes), kept in the HSM beside the root keys.
    TenantKey {
        #[command(subcommand)]
        command: TenantKeyCommand,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum TenantKeyCommand {
    /// Create the tenant's first key (refused if it has one; use rotate).
    Create {
        tenant: String,
        #[command(flatten)]
        keys: KeyStoreArgs,
    },
    /// List a tenant's key versions, or every tenant's with no name.
    List {
        tenant: Option<String>,
        #[command(flatten)]
        keys: KeyStoreArgs,
    },
    /// Create the tenant's next key version.
    Rotate {
        tenant: String,
        #[command(flatten)]
        keys: KeyStoreArgs,
    },
    /// Destroy every version of the tenant's key in the HSM (crypto-shredding): every volume key they
    /// wrapped becomes unreadable, for good. Offboards a tenant whose data must not survive it.
    Destroy {
        tenant: String,
        /// Required: this cannot be undone.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        keys: KeyStoreArgs,
    },
}

fn fail(message: &str) -> ExitCode {
    eprintln!("kubebid kms: {message}");
    ExitCode::from(2)
}

pub fn run(cmd: &KmsCommand) -> ExitCode {
    let result: Result<String, String> = match cmd {
        KmsCommand::Rotate(keys) => open_store(keys)
            .and_then(|s| s.rotate_root().map_err(|e| e.to_string()))
            .map(|label| format!("created root key {label}")),
        KmsCommand::TenantKey { command } => tenant_key(command),
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn tenant_key(cmd: &TenantKeyCommand) -> Result<String, String> {
    let e = |e: KeyError| e.to_string();
    match cmd {
        TenantKeyCommand::Create { tenant, keys } => {
            let store = open_store(keys)?;
            if !store.tenant_keys(tenant).map_err(e)?.is_empty() {
                return Err(format!(
                    "tenant {tenant} has a key already; `kubebid kms tenant-key rotate {tenant}` makes a new version"
                ));
            }
            store
                .rotate_tenant(tenant)
                .map(|l| format!("created {l}"))
                .map_err(e)
        }
        TenantKeyCommand::Rotate { tenant, keys } => {
            let store = open_store(keys)?;
            store
                .rotate_tenant(tenant)
                .map(|l| format!("created {l}"))
                .map_err(e)
        }
        TenantKeyCommand::Destroy { tenant, yes, keys } => {
            if !yes {
                return Err(format!(
                    "destroying tenant {tenant}'s keys makes every volume key they wrapped unreadable, for good; add --yes to go on"
                ));
            }
            let store = open_store(keys)?;
            let destroyed = store.destroy_tenant(tenant).map_err(e)?;
            if destroyed.is_empty() {
                return Err(format!("tenant {tenant} has no key"));
            }
            Ok(destroyed
                .iter()
                .map(|l| format!("destroyed {l}"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
        TenantKeyCommand::List { tenant, keys } => {
            let store = open_store(keys)?;
            let labels = if let Some(t) = tenant {
                store.tenant_keys(t).map_err(e)?
            } else {
                let mut all: Vec<String> = store
                    .labels()
                    .map_err(e)?
                    .into_iter()
                    .filter(|l| l.starts_with("kubebid-tenant-"))
                    .collect();
                all.sort();
                all
            };
            Ok(labels.join("\n"))
        }
    }
}

/// Binds a 0600 unix socket, creating its directory; refuses one another process serves on.
fn bind_socket(flag: &str, path: &std::path::Path) -> Result<tokio::net::UnixListener, String> {
    kubebid_server::unix::bind(path).map_err(|e| format!("{flag} {e}"))
}

/// Opens the key store (creating the first root key if there is none), binds the sockets and the
/// metrics endpoint, and starts serving as part of `process`. Returns the task that ends when both
/// sockets have drained after the process's shutdown, the metrics address, and whether the root key is
/// HSM-backed. Used by `serve kms` and `kubebid up`.
///
/// # Errors
/// A message naming what is wrong.
pub async fn start(
    args: &KmsServeArgs,
    process: &Process,
) -> Result<(tokio::task::JoinHandle<()>, SocketAddr, bool), String> {
    let store = open_store(&args.keys)?;
    if matches!(store.current_root(), Err(KeyError::NoRootKey)) {
        let label = store.rotate_root().map_err(|e| e.to_string())?;
        tracing::info!(key = %label, "no root key yet: created the first version");
    }
    let hsm = store.hsm_backed();
    let tenant_keys = Arc::new(TenantKeys::new(store.clone()));
    let envelope = Arc::new(Envelope::new(store).map_err(|e| e.to_string())?);
    let listener = bind_socket("--socket", &args.socket)?;
    let tenant_listener = match &args.tenant_socket {
        Some(path) => Some((bind_socket("--tenant-socket", path)?, path.clone())),
        None => None,
    };
    let metrics = Arc::new(KmsMetrics::new(&process.registry));
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .map_err(|e| format!("--metrics-listen {}: {e}", args.metrics_listen))?;
    let metrics_addr = metrics_listener.local_addr().map_err(|e| e.to_string())?;
    let endpoint = process.clone();
    tokio::spawn(async move {
        kubebid_server::http::serve_endpoint(&endpoint, "kms-metrics", metrics_listener).await;
    });
    let tenant_task = tenant_listener.map(|(listener, path)| {
        let plugin = TenantKeyPlugin {
            keys: tenant_keys,
            metrics: metrics.clone(),
        };
        let shutdown = process.shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) =
                kubebid_kms::server::serve_tenant_keys(plugin, listener, &path, &shutdown).await
            {
                tracing::error!(error = %e, "tenant key server failed");
            }
        })
    });
    let plugin = Plugin { envelope, metrics };
    let socket = args.socket.clone();
    let shutdown = process.shutdown.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = kubebid_kms::server::serve(plugin, listener, &socket, &shutdown).await {
            tracing::error!(error = %e, "KMS server failed");
        }
        // Both servers stop on the same signal; the task ends when both have drained.
        if let Some(t) = tenant_task {
            let _ = t.await;
        }
    });
    Ok((task, metrics_addr, hsm))
}

pub fn serve(args: &KmsServeArgs) -> ExitCode {
    // One async thread: a KMS call is a few microseconds of AES once its KEK is open, and HSM calls go
    // to the blocking pool; a second async worker only adds wake-ups between threads to every call.
    let runtime = match crate::serve::runtime("kms", crate::serve::Threads::One) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let process = Process::new(Shutdown::on_signals());
        let (task, metrics_addr, hsm) = match start(args, &process).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("kubebid serve kms: {e}");
                return ExitCode::from(2);
            }
        };
        tracing::info!(
            socket = %args.socket.display(),
            tenant_socket = args.tenant_socket.as_ref().map(|p| p.display().to_string()),
            metrics = %metrics_addr,
            hsm_backed = hsm,
            "kms serving"
        );
        let _ = task.await;
        tracing::info!("kms stopped");
        ExitCode::SUCCESS
    })
}
