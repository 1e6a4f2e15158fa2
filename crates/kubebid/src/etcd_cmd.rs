//! `kubebid serve etcd-proxy`: the tenant layer for Secrets between the API server and etcd.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use kubebid_etcd::layer::Layer;
use kubebid_etcd::path::SecretKeys;
use kubebid_etcd::seal::{KeyWrapper, SealError, Sealer};
use kubebid_kms::tenant_proto::tenant_key_service_client::TenantKeyServiceClient;
use kubebid_kms::tenant_proto::{UnwrapKeyRequest, WrapKeyRequest};
use kubebid_server::Shutdown;
use zeroize::Zeroizing;

#[derive(clap::Args)]
pub struct EtcdProxyArgs {
    /// Address the API server's `--etcd-servers` points at (HTTP/2 without TLS for now: loopback only).
    #[arg(long, default_value = "127.0.0.1:2378")]
    pub listen: SocketAddr,
    /// etcd's client URL (HTTP/2 without TLS for now).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:2379")]
    pub etcd: String,
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

/// What every wrapped data key is bound to in the tenant key service (its "volume").
const PURPOSE: &str = "kubebid.io/etcd-secrets";

/// Wraps data keys through the tenant key service. Called from the proxy's message path, which is
/// synchronous: each call leaves the worker thread for the round trip.
struct TenantKeyService {
    client: TenantKeyServiceClient<tonic::transport::Channel>,
    runtime: tokio::runtime::Handle,
}

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
        let res = tokio::task::block_in_place(|| self.runtime.block_on(client.wrap_key(req)))
            .map_err(|s| key_error(tenant, &s))?
            .into_inner();
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
        let res = tokio::task::block_in_place(|| self.runtime.block_on(client.unwrap_key(req)))
            .map_err(|s| key_error(tenant, &s))?
            .into_inner();
        Ok(Zeroizing::new(res.plaintext))
    }
}

/// Every second, asks the tenant key service about each tenant whose keys are cached: a tenant whose key
/// was destroyed is forgotten (its cached data keys dropped: its Secrets stop opening), and one whose key
/// was rotated gets a new data key under the newest version for what it writes next.
async fn follow_keys(
    client: TenantKeyServiceClient<tonic::transport::Channel>,
    sealer: Arc<Sealer>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut current: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => return,
        }
        for tenant in sealer.tenants() {
            let mut c = client.clone();
            let req = kubebid_kms::tenant_proto::KeyStatusRequest {
                tenant: tenant.clone(),
            };
            match c.key_status(req).await {
                Ok(s) => {
                    let now = s.into_inner().current_key_id;
                    if current
                        .insert(tenant.clone(), now.clone())
                        .is_some_and(|before| before != now)
                    {
                        tracing::info!(%tenant, key = %now, "tenant key rotated: new writes use it");
                        sealer.rotate(&tenant);
                    }
                }
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::NotFound | tonic::Code::FailedPrecondition
                    ) =>
                {
                    tracing::warn!(%tenant, reason = %s.message(), "tenant key gone: its Secrets no longer open");
                    sealer.forget(&tenant);
                    current.remove(&tenant);
                }
                Err(s) => {
                    tracing::warn!(%tenant, error = %s.message(), "tenant key status unavailable");
                }
            }
        }
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("kubebid serve etcd-proxy: {e}");
    ExitCode::from(2)
}

/// `kubebid serve etcd-proxy`.
pub fn serve(args: &EtcdProxyArgs) -> ExitCode {
    let tenancy = match crate::check::load_config_set(&args.config) {
        Ok(set) => {
            let t = set.tenancy();
            if let Some(r) = t.rejected().first() {
                // Fail closed: a tenant that cannot be modelled would have its Secrets written unsealed.
                return fail(format!(
                    "tenant {} cannot be loaded: {:?}",
                    r.tenant, r.problems
                ));
            }
            Arc::new(t)
        }
        Err(errors) => {
            for e in errors {
                eprintln!("config error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let upstream: hyper::Uri = match args.etcd.parse() {
        Ok(u) => u,
        Err(e) => return fail(format!("--etcd: {e}")),
    };
    let runtime = match crate::serve::runtime("etcd-proxy", crate::serve::Threads::Workers) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let shutdown = Shutdown::new();
    let result: Result<(), String> = runtime.block_on(async {
        shutdown.watch_signals();
        let client = kubebid_kms::server::connect_tenant_keys(&args.tenant_key_socket)
            .await
            .map_err(|e| {
                format!(
                    "--tenant-key-socket {}: {e}",
                    args.tenant_key_socket.display()
                )
            })?;
        let wrapper = Arc::new(TenantKeyService {
            client,
            runtime: tokio::runtime::Handle::current(),
        });
        let tenant_of = Arc::new(move |ns: &str| tenancy.tenant_of(ns).map(|t| t.name.clone()));
        let sealer = Arc::new(Sealer::new(wrapper.clone()));
        tokio::spawn(follow_keys(
            wrapper.client.clone(),
            sealer.clone(),
            shutdown.requested(),
        ));
        let layer = Layer::new(SecretKeys::new(&args.etcd_prefix), tenant_of, sealer);
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("--listen {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(listen = %addr, etcd = %upstream, "etcd proxy serving");
        let upstream = Arc::new(kubebid_etcd::proxy::H2c::new(upstream));
        kubebid_etcd::proxy::serve(listener, layer, upstream, shutdown.requested()).await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
