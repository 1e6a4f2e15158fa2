//! TLS for every KubeBid server: TLS 1.2 and 1.3 only (rustls with the ring provider), HTTP/2 and HTTP/1.1
//! by ALPN, a certificate that is reloaded when its files change (new handshakes get the new certificate,
//! open connections are not touched), and, with a client CA, only certificates it signed (a server decides
//! per request which paths need one; the health endpoints do not).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroize;

/// A TLS setup problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn file_err(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a certificate chain and its private key. The key's bytes are wiped from memory once parsed.
///
/// # Errors
/// A [`TlsError`] naming the file that is missing, not PEM, empty, or whose key does not fit.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(file_err(cert, "no certificate in the file"));
    }
    let mut pem =
        std::fs::read(key).map_err(|e| file_err(key, format!("cannot read the key: {e}")))?;
    let parsed = PrivateKeyDer::from_pem_slice(&pem);
    pem.zeroize();
    let mut der = parsed.map_err(|e| file_err(key, format!("not a PEM private key: {e}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der);
    der.zeroize();
    let signing = signing.map_err(|e| file_err(key, format!("unsupported key: {e}")))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| {
        file_err(
            key,
            format!("the key does not belong to the certificate: {e}"),
        )
    })?;
    Ok(ck)
}

/// The serving certificate, reloaded from its files when they change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamps: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl ReloadingCert {
    /// Loads the certificate now.
    ///
    /// # Errors
    /// As [`load_certified_key`].
    pub fn new(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let ck = load_certified_key(cert, key)?;
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(ck)),
            stamps: Mutex::new((mtime(cert), mtime(key))),
        })
    }

    /// Reloads when either file's modification time changed. Returns whether a new certificate is in use.
    /// A pair that does not load (half-written, mismatched) leaves the old certificate serving.
    ///
    /// # Errors
    /// The load error of a changed pair; it is retried at the next call.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = (mtime(&self.cert), mtime(&self.key));
        {
            let stamps = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
            if *stamps == now {
                return Ok(false);
            }
        }
        let ck = load_certified_key(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ck);
        *self.stamps.lock().unwrap_or_else(PoisonError::into_inner) = now;
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The server's TLS configuration.
///
/// # Errors
/// An unreadable or empty client CA file, or a rustls configuration error.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, TlsError> {
    build(cert, client_ca, None)
}

/// As [`server_config`], but with a client CA every client must present a certificate it signed: the
/// handshake fails without one, before any request is read. For a service no probe or scraper without a
/// certificate needs (the audit sink: anyone else could make it read their bodies).
///
/// # Errors
/// An unreadable or empty client CA file, or a rustls configuration error.
pub fn server_config_requiring_client(
    cert: Arc<ReloadingCert>,
    client_ca: &Path,
    names: &[String],
) -> Result<rustls::ServerConfig, TlsError> {
    build(cert, Some(client_ca), Some(names))
}

/// Checks a client certificate with the CA's verifier, then, when `names` is not empty, that the
/// certificate is issued to one of them (a DNS name in its subject alternative names): a CA that signs
/// other clients' certificates too does not let them in.
#[derive(Debug)]
struct NamedClients {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    names: Vec<rustls_pki_types::ServerName<'static>>,
}

impl rustls::server::danger::ClientCertVerifier for NamedClients {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.names.is_empty() {
            return Ok(verified);
        }
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if self
            .names
            .iter()
            .any(|n| cert.verify_is_valid_for_subject_name(n).is_ok())
        {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The CA certificates in `ca` (PEM), as trust roots; `what` names the file's role in errors.
fn roots(ca: &Path, what: &str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| file_err(ca, format!("cannot read the {what}: {e}")))?;
    for c in certs {
        let c = c.map_err(|e| file_err(ca, format!("not a PEM certificate: {e}")))?;
        roots
            .add(c)
            .map_err(|e| file_err(ca, format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(file_err(ca, "no CA certificate in the file"));
    }
    Ok(roots)
}

/// `required`: `None` lets a client without a certificate through to the service (which decides per
/// request); `Some(names)` requires one in the handshake, issued to one of `names` if any are given.
fn build(
    cert: Arc<ReloadingCert>,
    client_ca: Option<&Path>,
    required: Option<&[String]>,
) -> Result<rustls::ServerConfig, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        Some(ca) => {
            let roots = roots(ca, "client CA")?;
            // A client that presents a certificate must present one the CA signed; one that presents none
            // gets only the health, readiness and metrics endpoints (the kubelet's probes carry none), which
            // the server enforces per request.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if required.is_some() {
                verifier
            } else {
                verifier.allow_unauthenticated()
            }
            .build()
            .map_err(|e| file_err(ca, format!("client verifier: {e}")))?;
            let names = required
                .unwrap_or_default()
                .iter()
                .map(|n| {
                    rustls_pki_types::ServerName::try_from(n.clone())
                        .map_err(|e| file_err(ca, format!("client name {n:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if names.is_empty() {
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_client_cert_verifier(Arc::new(NamedClients {
                    inner: verifier,
                    names,
                }))
            }
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Looks at `cert`'s files every `interval` until `shutdown` is requested, and loads them when they
/// change. A pair that does not load leaves the previous certificate serving; both outcomes are counted
/// in `kubebid_server_certificate_reloads_total{server}` and logged.
pub fn spawn_reloader(
    cert: Arc<ReloadingCert>,
    interval: Duration,
    server: &'static str,
    metrics: crate::metrics::ShellMetrics,
    shutdown: &crate::Shutdown,
) {
    let stop = shutdown.requested();
    tokio::spawn(async move {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut stop => return,
            }
            let result = match cert.reload_if_changed() {
                Ok(false) => continue,
                Ok(true) => {
                    tracing::info!(server, "serving certificate reloaded");
                    "ok"
                }
                Err(e) => {
                    tracing::warn!(server, error = %e, "changed certificate did not load; still serving the previous one");
                    "error"
                }
            };
            metrics
                .certificate_reloads
                .get_or_create(&crate::metrics::ReloadLabels { server, result })
                .inc();
        }
    });
}

/// The same reloading certificate, presented as a client certificate (the etcd proxy's to etcd): each new
/// connection presents the certificate loaded last.
impl rustls::client::ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client's TLS configuration: TLS 1.2 and 1.3 only, servers checked against `ca` alone (not the
/// system's roots), `cert` presented when the server asks, and ALPN `h2` (gRPC).
///
/// # Errors
/// An unreadable or empty CA file, or a rustls configuration error.
pub fn client_config(
    ca: &Path,
    cert: Option<Arc<ReloadingCert>>,
) -> Result<rustls::ClientConfig, TlsError> {
    let roots = roots(ca, "CA")?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let mut config = match cert {
        Some(c) => builder.with_client_cert_resolver(c),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
