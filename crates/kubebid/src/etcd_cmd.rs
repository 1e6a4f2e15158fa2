//! `kubebid serve etcd-proxy`: the tenant layer for Secrets between the API server and etcd.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use kubebid_etcd::layer::Layer;
use kubebid_etcd::metrics::ProxyFamilies;
use kubebid_etcd::path::SecretKeys;
use kubebid_etcd::seal::{KeyWrapper, SealError, Sealer};
use kubebid_kms::tenant_proto::tenant_key_service_client::TenantKeyServiceClient;
use kubebid_kms::tenant_proto::{UnwrapKeyRequest, WrapKeyRequest};
use kubebid_server::Shutdown;
use kubebid_server::http::Process;
use kubebid_server::tls::ReloadingCert;
use zeroize::Zeroizing;

/// How to reach etcd (shared by the proxy and `kubebid secrets rewrap`).
#[derive(clap::Args)]
pub struct EtcdConnArgs {
    /// etcd's client URL: `https://…` with --etcd-ca (and --etcd-cert/--etcd-key when etcd asks for
    /// client certificates), or `http://` on loopback.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:2379")]
    pub etcd: String,
    /// CA that signed etcd's serving certificate (the system's roots are not used).
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate presented to etcd (re-read when it changes).
    #[arg(long, value_name = "FILE", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// The API server's `--etcd-prefix`.
    #[arg(long, default_value = kubebid_etcd::path::DEFAULT_PREFIX)]
    pub etcd_prefix: String,
    /// The KMS plugin's tenant key socket (`kubebid serve kms --tenant-socket`): tenants' data keys are
    /// wrapped there by their keys in the HSM.
    #[arg(long, value_name = "PATH")]
    pub tenant_key_socket: PathBuf,
    /// KubeBidConfig and Tenant objects (file or directory, repeatable): which namespaces are whose.
    #[arg(short, long, value_name = "FILE|DIR", required = true)]
    pub config: Vec<String>,
}

#[derive(clap::Args)]
pub struct EtcdProxyArgs {
    /// Address the API server's `--etcd-servers` points at. Without --tls-cert only a loopback address
    /// is accepted.
    #[arg(long, default_value = "127.0.0.1:2378")]
    pub listen: SocketAddr,
    /// Serving certificate (PEM), re-read when it changes.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "client_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA of the API server's etcd client certificate (`--etcd-certfile`): every client must present a
    /// certificate it signed.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Accept only client certificates issued to this DNS name (repeatable; any the CA signed if none).
    #[arg(long, value_name = "NAME", requires = "client_ca")]
    pub client_name: Vec<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:9155")]
    pub metrics_listen: SocketAddr,
    #[command(flatten)]
    pub conn: EtcdConnArgs,
}

#[derive(clap::Subcommand)]
pub enum SecretsCommand {
    /// Re-seal tenants' Secrets in etcd online: values sealed under an older tenant key version, and
    /// values still in the clear. Each rewrite is a transaction guarded by the key's `mod_revision`, so a
    /// concurrent write is never overwritten.
    ///
    /// Exit status: 0 when every selected value is current, 1 when some could not be rewritten, 2 on a
    /// usage or connection error.
    Rewrap(RewrapArgs),
}

#[derive(clap::Args)]
pub struct RewrapArgs {
    /// Only this tenant's Secrets.
    #[arg(long)]
    pub tenant: Option<String>,
    #[command(flatten)]
    pub conn: EtcdConnArgs,
}

/// What every wrapped data key is bound to in the tenant key service (its "volume").
const PURPOSE: &str = "kubebid.io/etcd-secrets";

/// Wraps data keys through the tenant key service. Called from the proxy's message path, which is
/// synchronous: each call runs on the key service's own runtime (a thread of its own) and the caller
/// waits for it. Rare: once per data key the proxy has not seen (a cache holds them), and once per tenant
/// for each new data key.
struct TenantKeyService {
    client: TenantKeyServiceClient<tonic::transport::Channel>,
    keys: tokio::runtime::Handle,
}

impl TenantKeyService {
    fn call<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
    ) -> Result<T, tonic::Status> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let task = self.keys.spawn(async move {
            let _ = tx.send(call.await);
        });
        // The proxy's one thread waits: bounded, so that a stalled HSM costs a failed tenant call, not every
        // call of every tenant.
        if let Ok(r) = rx.recv_timeout(KEY_CALL_TIMEOUT) {
            r.map(tonic::Response::into_inner)
        } else {
            task.abort();
            Err(tonic::Status::deadline_exceeded(format!(
                "the tenant key service did not answer within {} s",
                KEY_CALL_TIMEOUT.as_secs()
            )))
        }
    }
}

/// How long the proxy waits for the tenant key service.
const KEY_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The runtime the tenant key service's client lives on: one thread of its own, so that the proxy's
/// (single-threaded) runtime can wait for a key without stopping the client's I/O.
fn key_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("kubebid-keys")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the key service runtime: {e}"))
}

/// An unwrap that failed. Never taken for shredding on its own (a lagging replica, a forged key ID):
/// only the key's status, followed by [`follow_keys`], marks a tenant destroyed.
fn key_error(tenant: &str, status: &tonic::Status) -> SealError {
    SealError::Key {
        tenant: tenant.to_owned(),
        reason: status.message().to_owned(),
    }
}

impl KeyWrapper for TenantKeyService {
    fn wrap(&self, tenant: &str, key: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut client = self.client.clone();
        let req = WrapKeyRequest {
            tenant: tenant.to_owned(),
            volume_id: PURPOSE.to_owned(),
            plaintext: key.to_vec(),
        };
        // A tenant with no key cannot write: that is not a shredded value, so no `KeyGone` here.
        let res = self
            .call(async move { client.wrap_key(req).await })
            .map_err(|s| SealError::Key {
                tenant: tenant.to_owned(),
                reason: s.message().to_owned(),
            })?;
        // key ID length, key ID, wrapped key: the value carries all the service needs to unwrap.
        let id = res.key_id.as_bytes();
        let len = u16::try_from(id.len()).map_err(|_| SealError::Malformed("key ID too long"))?;
        let mut out = Vec::with_capacity(2 + id.len() + res.wrapped.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&res.wrapped);
        Ok(out)
    }

    fn unwrap(&self, tenant: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let (len, rest) = wrapped
            .split_at_checked(2)
            .ok_or(SealError::Malformed("wrapped key cut short"))?;
        let (id, key) = rest
            .split_at_checked(usize::from(u16::from_be_bytes([len[0], len[1]])))
            .ok_or(SealError::Malformed("wrapped key cut short"))?;
        let key_id =
            std::str::from_utf8(id).map_err(|_| SealError::Malformed("key ID is not UTF-8"))?;
        let mut client = self.client.clone();
        let req = UnwrapKeyRequest {
            tenant: tenant.to_owned(),
            volume_id: PURPOSE.to_owned(),
            key_id: key_id.to_owned(),
            wrapped: key.to_vec(),
        };
        let res = self
            .call(async move { client.unwrap_key(req).await })
            .map_err(|s| key_error(tenant, &s))?;
        Ok(Zeroizing::new(res.plaintext))
    }
}

/// Every second, asks the tenant key service about every tenant of the config and every tenant whose keys
/// are cached: a tenant with no key (destroyed) is forgotten and marked so (its Secrets read as shredded),
/// one that has a key again is revived, and when the current key version is not the one that wrapped the
/// tenant's current data key (a rotation, even one that happened before the first look), new writes get a
/// new data key under the newest version.
async fn follow_keys(
    client: TenantKeyServiceClient<tonic::transport::Channel>,
    sealer: Arc<Sealer>,
    tenancy: Arc<std::sync::RwLock<Arc<kubebid_model::tenancy::Tenancy>>>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut destroyed = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => return,
        }
        let mut tenants: Vec<String> = tenancy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tenants()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        tenants.extend(sealer.tenants());
        tenants.sort();
        tenants.dedup();
        for tenant in tenants {
            let mut c = client.clone();
            let req = kubebid_kms::tenant_proto::KeyStatusRequest {
                tenant: tenant.clone(),
            };
            match c.key_status(req).await {
                Ok(s) => {
                    let now = s.into_inner().current_key_id;
                    if destroyed.remove(&tenant) {
                        tracing::info!(%tenant, key = %now, "tenant has a key again");
                        sealer.revive(&tenant);
                    }
                    let sealing_with = sealer
                        .current_wrapped(&tenant)
                        .and_then(|w| key_id_of(&w).map(str::to_owned));
                    if sealing_with.as_ref().is_some_and(|k| *k != now) {
                        tracing::info!(%tenant, key = %now, "tenant key rotated: new writes use it");
                        sealer.rotate(&tenant);
                    }
                }
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                    if destroyed.insert(tenant.clone()) {
                        tracing::warn!(%tenant, reason = %s.message(), "tenant has no key (destroyed): its Secrets are shredded");
                    }
                    sealer.forget(&tenant);
                }
                Err(s) => {
                    tracing::warn!(%tenant, error = %s.message(), "tenant key status unavailable");
                }
            }
        }
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("kubebid: {e}");
    ExitCode::from(2)
}

/// The tenancy from the config; a tenant that cannot be modelled fails the start (its Secrets would be
/// written unsealed).
fn tenancy(config: &[String]) -> Result<Arc<kubebid_model::tenancy::Tenancy>, String> {
    match crate::check::load_config_set(config) {
        Ok(set) => {
            let t = set.tenancy();
            if let Some(r) = t.rejected().first() {
                return Err(format!(
                    "tenant {} cannot be loaded: {:?}",
                    r.tenant, r.problems
                ));
            }
            Ok(Arc::new(t))
        }
        Err(errors) => Err(errors
            .iter()
            .map(|e| format!("config error: {e}"))
            .collect::<Vec<_>>()
            .join("\n")),
    }
}

/// The connection to etcd, and the client certificate to reload when it changes.
fn upstream(
    conn: &EtcdConnArgs,
) -> Result<(kubebid_etcd::proxy::Etcd, Option<Arc<ReloadingCert>>), String> {
    let base: hyper::Uri = conn.etcd.parse().map_err(|e| format!("--etcd: {e}"))?;
    let cert = match (&conn.etcd_cert, &conn.etcd_key) {
        (Some(c), Some(k)) => Some(Arc::new(
            ReloadingCert::new(c, k).map_err(|e| e.to_string())?,
        )),
        _ => None,
    };
    let tls = match &conn.etcd_ca {
        Some(ca) => {
            Some(kubebid_server::tls::client_config(ca, cert.clone()).map_err(|e| e.to_string())?)
        }
        None if cert.is_some() => return Err("--etcd-cert needs --etcd-ca".into()),
        None => None,
    };
    let etcd = kubebid_etcd::proxy::Etcd::new(base, tls).map_err(|e| format!("--etcd {e}"))?;
    Ok((etcd, cert))
}

async fn tenant_keys(
    conn: &EtcdConnArgs,
) -> Result<TenantKeyServiceClient<tonic::transport::Channel>, String> {
    kubebid_kms::server::connect_tenant_keys(&conn.tenant_key_socket)
        .await
        .map_err(|e| {
            format!(
                "--tenant-key-socket {}: {e}",
                conn.tenant_key_socket.display()
            )
        })
}

/// The proxy's TLS configuration (HTTP/2 only, the API server's client certificate required), with its
/// serving certificate reloaded when its files change; `None` without `--tls-cert`.
fn serving_tls(
    args: &EtcdProxyArgs,
    process: &Process,
) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let (Some(cert), Some(key), Some(ca)) = (&args.tls_cert, &args.tls_key, &args.client_ca) else {
        return Ok(None);
    };
    let serving = Arc::new(ReloadingCert::new(cert, key).map_err(|e| e.to_string())?);
    let mut config =
        kubebid_server::tls::server_config_requiring_client(serving.clone(), ca, &args.client_name)
            .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    kubebid_server::tls::spawn_reloader(
        serving,
        RELOAD,
        "etcd-proxy",
        process.metrics.clone(),
        &process.shutdown,
    );
    Ok(Some(Arc::new(config)))
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr`; the address bound.
async fn metrics_endpoint(addr: SocketAddr, process: &Process) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let endpoint = process.clone();
    tokio::spawn(async move {
        kubebid_server::http::serve_endpoint(&endpoint, "etcd-proxy-metrics", listener).await;
    });
    Ok(bound)
}

/// `kubebid serve etcd-proxy`.
pub fn serve(args: &EtcdProxyArgs) -> ExitCode {
    let tenancy = match tenancy(&args.conn.config) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if args.tls_cert.is_none() && !args.listen.ip().is_loopback() {
        return fail(format!(
            "--listen {}: without --tls-cert the proxy listens on loopback only",
            args.listen
        ));
    }
    // One thread: a call is microseconds of HTTP/2 and AES; a second worker only adds wake-ups between
    // threads, and takes CPU etcd (on the same node) needs.
    let runtime = match crate::serve::runtime("etcd-proxy", crate::serve::Threads::One) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let keys_rt = match key_runtime() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let client = match keys_rt.block_on(tenant_keys(&args.conn)) {
        Ok(c) => c,
        Err(e) => return fail(format!("serve etcd-proxy: {e}")),
    };
    let result: Result<(), String> = runtime.block_on(async {
        let process = Process::new(Shutdown::on_signals());
        let (etcd, client_cert) = upstream(&args.conn)?;
        let tls = serving_tls(args, &process)?;
        if let Some(cert) = client_cert {
            kubebid_server::tls::spawn_reloader(
                cert,
                RELOAD,
                "etcd-proxy-client",
                process.metrics.clone(),
                &process.shutdown,
            );
        }
        let wrapper = Arc::new(TenantKeyService {
            client,
            keys: keys_rt.handle().clone(),
        });
        let tenancy = Arc::new(std::sync::RwLock::new(tenancy));
        let follow_tenancy = tenancy.clone();
        tokio::spawn(follow_config(
            args.conn.config.clone(),
            tenancy.clone(),
            process.shutdown.requested(),
        ));
        let tenant_of = Arc::new(move |ns: &str| {
            tenancy
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .tenant_of(ns)
                .map(|t| t.name.clone())
        });
        let sealer = Arc::new(Sealer::new(wrapper.clone()));
        tokio::spawn(follow_keys(
            wrapper.client.clone(),
            sealer.clone(),
            follow_tenancy,
            process.shutdown.requested(),
        ));
        let families = Arc::new(process.registry.register(
            <ProxyFamilies as kubebid_server::metrics::Component>::PREFIX,
            <ProxyFamilies as kubebid_server::metrics::Component>::register,
        ));
        let layer = Layer::new(SecretKeys::new(&args.conn.etcd_prefix), tenant_of, sealer)
            .with_metrics(families);
        let metrics_addr = metrics_endpoint(args.metrics_listen, &process).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("--listen {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(
            listen = %addr,
            tls = tls.is_some(),
            etcd = %args.conn.etcd,
            metrics = %metrics_addr,
            "etcd proxy serving"
        );
        kubebid_etcd::proxy::serve(
            listener,
            tls,
            layer,
            Arc::new(etcd),
            process.shutdown.requested(),
        )
        .await;
        tracing::info!("etcd proxy stopped");
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("serve etcd-proxy: {e}")),
    }
}

/// What identifies the config's current contents cheaply: each file's (and each directory entry's)
/// path, size and modification time.
fn fingerprint(paths: &[String]) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut out = Vec::new();
    for p in paths {
        let p = PathBuf::from(p);
        let mut add = |p: PathBuf| {
            let m = std::fs::metadata(&p).ok();
            out.push((
                p,
                m.as_ref().map_or(0, std::fs::Metadata::len),
                m.and_then(|m| m.modified().ok()),
            ));
        };
        match std::fs::read_dir(&p) {
            Ok(entries) => {
                let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
                names.sort();
                names.into_iter().for_each(&mut add);
            }
            Err(_) => add(p),
        }
    }
    out
}

/// Re-reads the tenancy when the config changes (a tenant added, a namespace moved), every 2 seconds. A
/// config that does not load, or has a tenant that cannot be modelled, leaves the previous one in use.
async fn follow_config(
    paths: Vec<String>,
    tenancy: Arc<std::sync::RwLock<Arc<kubebid_model::tenancy::Tenancy>>>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut seen = fingerprint(&paths);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => return,
        }
        let now = fingerprint(&paths);
        if now == seen {
            continue;
        }
        seen = now;
        match self::tenancy(&paths) {
            Ok(t) => {
                tracing::info!(
                    tenants = t.tenants().len(),
                    "config changed: tenancy reloaded"
                );
                *tenancy
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = t;
            }
            Err(e) => {
                tracing::error!(error = %e, "config changed but does not load: the previous tenancy stays");
            }
        }
    }
}

/// How often certificate files are looked at.
const RELOAD: std::time::Duration = std::time::Duration::from_secs(2);

/// The key ID in a wrapped data key as [`TenantKeyService`] writes it.
fn key_id_of(wrapped: &[u8]) -> Option<&str> {
    let (len, rest) = wrapped.split_at_checked(2)?;
    let (id, _) = rest.split_at_checked(usize::from(u16::from_be_bytes([len[0], len[1]])))?;
    std::str::from_utf8(id).ok()
}

/// `kubebid secrets …`.
pub fn secrets(cmd: &SecretsCommand) -> ExitCode {
    match cmd {
        SecretsCommand::Rewrap(args) => rewrap(args),
    }
}

fn rewrap(args: &RewrapArgs) -> ExitCode {
    let tenancy = match tenancy(&args.conn.config) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if let Some(t) = &args.tenant
        && !tenancy.tenants().iter().any(|x| &x.name == t)
    {
        return fail(format!("--tenant {t}: no such tenant in the config"));
    }
    let runtime = match crate::serve::runtime("secrets-rewrap", crate::serve::Threads::Workers) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let keys_rt = match key_runtime() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let keys = match keys_rt.block_on(tenant_keys(&args.conn)) {
        Ok(c) => c,
        Err(e) => return fail(format!("secrets rewrap: {e}")),
    };
    let result: Result<kubebid_etcd::rewrap::Report, String> = runtime.block_on(async {
        let (etcd, _) = upstream(&args.conn)?;
        let client = kubebid_etcd::client::Client::new(Arc::new(etcd));
        // Each tenant's current key version, asked once: a value whose data key it wrapped is left.
        let mut current = std::collections::HashMap::new();
        for t in tenancy.tenants() {
            if args.tenant.as_ref().is_some_and(|only| only != &t.name) {
                continue;
            }
            let mut c = keys.clone();
            let req = kubebid_kms::tenant_proto::KeyStatusRequest {
                tenant: t.name.clone(),
            };
            match c.key_status(req).await {
                Ok(s) => {
                    current.insert(t.name.clone(), s.into_inner().current_key_id);
                }
                Err(s) => {
                    tracing::warn!(tenant = %t.name, reason = %s.message(), "tenant has no usable key: its Secrets cannot be rewrapped");
                }
            }
        }
        let wrapper = Arc::new(TenantKeyService {
            client: keys,
            keys: keys_rt.handle().clone(),
        });
        let sealer = Sealer::new(wrapper);
        let tenancy2 = tenancy.clone();
        let tenant_of: kubebid_etcd::layer::TenantOf =
            Arc::new(move |ns: &str| tenancy2.tenant_of(ns).map(|t| t.name.clone()));
        let secret_keys = SecretKeys::new(&args.conn.etcd_prefix);
        let is_current = |tenant: &str, wrapped: &[u8]| {
            key_id_of(wrapped).is_some_and(|id| current.get(tenant).is_some_and(|c| c == id))
        };
        let bar = crate::progress_bar(0);
        let run = kubebid_etcd::rewrap::Rewrap {
            client: &client,
            keys: &secret_keys,
            tenant_of: &tenant_of,
            sealer: &sealer,
            only: args.tenant.as_deref(),
            is_current: &is_current,
        };
        let report = run
            .run(|r, total| {
                bar.set_length(total);
                bar.set_position(r.scanned);
            })
            .await
            .map_err(|e| format!("etcd: {e}"))?;
        bar.finish_and_clear();
        Ok(report)
    });
    match result {
        Ok(report) => {
            println!("{}", report.summary());
            if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(format!("secrets rewrap: {e}")),
    }
}
