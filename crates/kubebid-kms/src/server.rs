//! The gRPC shell: `v2.KeyManagementService` on a unix socket created with mode 0600, with a limit on
//! request size, metrics, and graceful shutdown. Errors become gRPC statuses with a clear message. The
//! per-tenant key service (`kubebid.kms.v1alpha1.TenantKeyService`) is served the same way on a socket of
//! its own, so the API server and a volume component each get only the socket they need.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use kubebid_server::metrics::{Component, Registered};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tonic::{Request, Response, Status};

use crate::envelope::{Envelope, EnvelopeError, MAX_PLAINTEXT};
use crate::keystore::KeyError;
use crate::proto::key_management_service_server::{
    KeyManagementService, KeyManagementServiceServer,
};
use crate::proto::{
    DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse, StatusRequest, StatusResponse,
};
use crate::tenant::{TenantKeyError, TenantKeys};
use crate::tenant_proto::tenant_key_service_server::{TenantKeyService, TenantKeyServiceServer};
use crate::tenant_proto::{
    KeyStatusRequest, KeyStatusResponse, UnwrapKeyRequest, UnwrapKeyResponse, WrapKeyRequest,
    WrapKeyResponse,
};

/// Largest request accepted: a maximal plaintext plus room for the envelope and annotations.
pub const MAX_REQUEST: usize = MAX_PLAINTEXT + 64 * 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub method: &'static str,
    pub result: &'static str,
}

/// The plugin's metrics, registered in the process's registry.
pub type KmsMetrics = Registered<KmsFamilies>;

/// The plugin's families.
pub struct KmsFamilies {
    pub calls: Family<CallLabels, Counter>,
    pub duration: Family<CallLabels, Histogram>,
    pub unwraps: Counter,
}

impl Component for KmsFamilies {
    const PREFIX: &'static str = "kubebid_kms";

    fn register(r: &mut prometheus_client::registry::Registry) -> Self {
        let this = Self {
            calls: Family::default(),
            duration: Family::new_with_constructor(
                kubebid_server::metrics::latency_histogram as fn() -> Histogram,
            ),
            unwraps: Counter::default(),
        };
        r.register(
            "calls",
            "KMS calls by method and result",
            this.calls.clone(),
        );
        r.register(
            "call_duration_seconds",
            "Time to answer a KMS call",
            this.duration.clone(),
        );
        r.register(
            "kek_unwraps",
            "KEKs opened by the root key (HSM round trips)",
            this.unwraps.clone(),
        );
        this
    }
}

impl KmsFamilies {
    fn record(&self, method: &'static str, ok: bool, started: Instant) {
        let labels = CallLabels {
            method,
            result: if ok { "ok" } else { "error" },
        };
        self.calls.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

/// The service.
pub struct Plugin {
    pub envelope: Arc<Envelope>,
    pub metrics: Arc<KmsMetrics>,
}

fn status_of(e: &EnvelopeError) -> Status {
    match e {
        EnvelopeError::TooLarge(_)
        | EnvelopeError::Malformed(_)
        | EnvelopeError::NoKek
        | EnvelopeError::Tampered => Status::invalid_argument(e.to_string()),
        EnvelopeError::BadKeyId(_) | EnvelopeError::Key(KeyError::UnknownKey(_)) => {
            Status::not_found(e.to_string())
        }
        EnvelopeError::Key(_) => Status::unavailable(e.to_string()),
    }
}

#[tonic::async_trait]
impl KeyManagementService for Plugin {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let started = Instant::now();
        let envelope = self.envelope.clone();
        let result = tokio::task::spawn_blocking(move || envelope.status())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        self.metrics.record("status", result.is_ok(), started);
        // The API server reads healthz; an error is reported there, not as a failed call.
        let (healthz, key_id) = match result {
            Ok(k) => ("ok".to_owned(), k),
            Err(e) => (e.to_string(), String::new()),
        };
        Ok(Response::new(StatusResponse {
            version: "v2".into(),
            healthz,
            key_id,
        }))
    }

    async fn encrypt(
        &self,
        request: Request<EncryptRequest>,
    ) -> Result<Response<EncryptResponse>, Status> {
        let started = Instant::now();
        let r = request.into_inner();
        let plaintext = zeroize::Zeroizing::new(r.plaintext);
        let result = self.envelope.encrypt(&plaintext);
        self.metrics.record("encrypt", result.is_ok(), started);
        match result {
            Ok(sealed) => Ok(Response::new(EncryptResponse {
                ciphertext: sealed.ciphertext,
                key_id: sealed.key_id,
                annotations: sealed.annotations,
            })),
            Err(e) => {
                tracing::warn!(uid = %r.uid, error = %e, "encrypt refused");
                Err(status_of(&e))
            }
        }
    }

    async fn decrypt(
        &self,
        request: Request<DecryptRequest>,
    ) -> Result<Response<DecryptResponse>, Status> {
        let started = Instant::now();
        let r = request.into_inner();
        // With the KEK open already (every call but the first of each KEK), the decrypt is microseconds
        // of CPU: answered here. Opening a KEK is an HSM round trip: off the async workers.
        let before = self
            .envelope
            .unwraps
            .load(std::sync::atomic::Ordering::Relaxed);
        let cached = self
            .envelope
            .decrypt_cached(&r.ciphertext, &r.key_id, &r.annotations);
        let (result, r) = if let Some(result) = cached {
            (result, r)
        } else {
            let envelope = self.envelope.clone();
            tokio::task::spawn_blocking(move || {
                let res = envelope.decrypt(&r.ciphertext, &r.key_id, &r.annotations);
                (res, r)
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
        };
        let after = self
            .envelope
            .unwraps
            .load(std::sync::atomic::Ordering::Relaxed);
        self.metrics.unwraps.inc_by(after.saturating_sub(before));
        self.metrics.record("decrypt", result.is_ok(), started);
        match result {
            Ok(plaintext) => Ok(Response::new(DecryptResponse {
                plaintext: plaintext.to_vec(),
            })),
            Err(e) => {
                tracing::warn!(uid = %r.uid, key_id = %r.key_id, error = %e, "decrypt refused");
                Err(status_of(&e))
            }
        }
    }
}

/// Binds the plugin's socket: 0600, its directory created, a live socket never replaced (the shell's
/// [`kubebid_server::unix::bind`]).
///
/// # Errors
/// The socket is served by another process, the path is not a socket, or binding fails.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    Ok(kubebid_server::unix::bind(path)?)
}

/// Serves the KMS v2 service on `listener` (bound at `path`) until `shutdown`, then removes the socket.
///
/// # Errors
/// A transport error.
pub async fn serve(
    plugin: Plugin,
    listener: tokio::net::UnixListener,
    path: &Path,
    shutdown: &kubebid_server::Shutdown,
) -> Result<(), tonic::transport::Error> {
    let service = KeyManagementServiceServer::new(plugin)
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(MAX_REQUEST);
    kubebid_server::unix::serve_grpc(
        tonic::service::Routes::new(service),
        listener,
        path,
        shutdown,
    )
    .await
}

/// A gRPC channel over the unix socket at `path`.
///
/// # Errors
/// The socket does not answer.
pub async fn channel(path: &Path) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_owned();
    tonic::transport::Endpoint::from_static("http://kms.local")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}

/// A KMS v2 client over the unix socket at `path` (for tests, benchmarks and `kubebid kms` commands).
///
/// # Errors
/// The socket does not answer.
pub async fn connect(
    path: &Path,
) -> Result<
    crate::proto::key_management_service_client::KeyManagementServiceClient<
        tonic::transport::Channel,
    >,
    tonic::transport::Error,
> {
    Ok(
        crate::proto::key_management_service_client::KeyManagementServiceClient::new(
            channel(path).await?,
        )
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(MAX_REQUEST),
    )
}

/// Largest tenant key request: a maximal wrapped key and names, with room to spare.
pub const MAX_TENANT_REQUEST: usize = 4 * 1024;

/// The per-tenant key service.
pub struct TenantKeyPlugin {
    pub keys: Arc<TenantKeys>,
    pub metrics: Arc<KmsMetrics>,
}

fn tenant_status_of(e: &TenantKeyError) -> Status {
    match e {
        TenantKeyError::BadTenant(_)
        | TenantKeyError::BadVolume(_)
        | TenantKeyError::BadDataKey(_)
        | TenantKeyError::BadWrapped(_)
        | TenantKeyError::Tampered => Status::invalid_argument(e.to_string()),
        TenantKeyError::NoKey(_) => Status::failed_precondition(e.to_string()),
        TenantKeyError::NotTenantKey { .. } => Status::permission_denied(e.to_string()),
        TenantKeyError::UnknownKey(_) => Status::not_found(e.to_string()),
        TenantKeyError::Store(_) => Status::unavailable(e.to_string()),
    }
}

impl TenantKeyPlugin {
    /// Runs `f` off the async workers (every call is an HSM round trip), records it, and maps errors.
    async fn call<T: Send + 'static>(
        &self,
        method: &'static str,
        f: impl FnOnce(&TenantKeys) -> Result<T, TenantKeyError> + Send + 'static,
    ) -> Result<T, Status> {
        let started = Instant::now();
        let keys = self.keys.clone();
        let result = tokio::task::spawn_blocking(move || f(&keys))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        self.metrics.record(method, result.is_ok(), started);
        result.map_err(|e| {
            tracing::warn!(method, error = %e, "tenant key call refused");
            tenant_status_of(&e)
        })
    }
}

#[tonic::async_trait]
impl TenantKeyService for TenantKeyPlugin {
    async fn wrap_key(
        &self,
        request: Request<WrapKeyRequest>,
    ) -> Result<Response<WrapKeyResponse>, Status> {
        let r = request.into_inner();
        let plaintext = zeroize::Zeroizing::new(r.plaintext);
        let w = self
            .call("wrap_key", move |k| {
                k.wrap(&r.tenant, &r.volume_id, &plaintext)
            })
            .await?;
        Ok(Response::new(WrapKeyResponse {
            key_id: w.key_id,
            wrapped: w.wrapped,
        }))
    }

    async fn unwrap_key(
        &self,
        request: Request<UnwrapKeyRequest>,
    ) -> Result<Response<UnwrapKeyResponse>, Status> {
        let r = request.into_inner();
        let plaintext = self
            .call("unwrap_key", move |k| {
                k.unwrap(&r.tenant, &r.volume_id, &r.key_id, &r.wrapped)
            })
            .await?;
        Ok(Response::new(UnwrapKeyResponse {
            plaintext: plaintext.to_vec(),
        }))
    }

    async fn key_status(
        &self,
        request: Request<KeyStatusRequest>,
    ) -> Result<Response<KeyStatusResponse>, Status> {
        let tenant = request.into_inner().tenant;
        let (v, hsm_backed) = self
            .call("key_status", move |k| {
                k.versions(&tenant).map(|v| (v, k.hsm_backed()))
            })
            .await?;
        Ok(Response::new(KeyStatusResponse {
            current_key_id: v.current,
            key_ids: v.all,
            hsm_backed,
        }))
    }
}

/// Serves the tenant key service on `listener` until `shutdown` completes; calls in flight finish first.
///
/// # Errors
/// The transport failed.
pub async fn serve_tenant_keys(
    plugin: TenantKeyPlugin,
    listener: tokio::net::UnixListener,
    path: &Path,
    shutdown: &kubebid_server::Shutdown,
) -> Result<(), tonic::transport::Error> {
    let service = TenantKeyServiceServer::new(plugin)
        .max_decoding_message_size(MAX_TENANT_REQUEST)
        .max_encoding_message_size(MAX_TENANT_REQUEST);
    kubebid_server::unix::serve_grpc(
        tonic::service::Routes::new(service),
        listener,
        path,
        shutdown,
    )
    .await
}

/// A tenant key client over the unix socket at `path`.
///
/// # Errors
/// The socket does not answer.
pub async fn connect_tenant_keys(
    path: &Path,
) -> Result<
    crate::tenant_proto::tenant_key_service_client::TenantKeyServiceClient<
        tonic::transport::Channel,
    >,
    tonic::transport::Error,
> {
    Ok(
        crate::tenant_proto::tenant_key_service_client::TenantKeyServiceClient::new(
            channel(path).await?,
        )
        .max_decoding_message_size(MAX_TENANT_REQUEST)
        .max_encoding_message_size(MAX_TENANT_REQUEST),
    )
}
