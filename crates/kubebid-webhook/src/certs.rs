//! Development certificates: a CA, a serving certificate for the webhook's host names, and a client
//! certificate (standing in for the API server when `--client-ca` is used). Private keys are written with
//! mode 0600 and wiped from memory after writing. For production, use cert-manager or the cluster's CA.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use zeroize::Zeroize;

/// Why certificates could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0:?} is neither a DNS name nor an IP address")]
    Host(String),
}

/// Paths of the files written.
#[derive(Debug)]
pub struct Written {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn params(common_name: &str, days: i64) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "KubeBid development");
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    let today = jiff::Zoned::now().date();
    let start = today
        .checked_sub(jiff::Span::new().days(1))
        .unwrap_or(today);
    let end = today
        .checked_add(jiff::Span::new().days(days))
        .unwrap_or(today);
    let ymd = |d: jiff::civil::Date| {
        rcgen::date_time_ymd(
            i32::from(d.year()),
            d.month().unsigned_abs(),
            d.day().unsigned_abs(),
        )
    };
    p.not_before = ymd(start);
    p.not_after = ymd(end);
    Ok(p)
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 });
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Writes `ca.crt`, `ca.key`, `tls.crt`, `tls.key`, `client.crt` and `client.key` into `dir` (created if
/// missing). `hosts` become the serving certificate's subject alternative names.
///
/// # Errors
/// A host that is neither a DNS name nor an IP, or a file that cannot be written.
pub fn generate(dir: &Path, hosts: &[String]) -> Result<Written, CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut sans = Vec::new();
    for h in hosts {
        if let Ok(ip) = h.parse::<IpAddr>() {
            sans.push(SanType::IpAddress(ip));
        } else if kubebid_model::config::is_dns_subdomain(h) || h == "localhost" {
            sans.push(SanType::DnsName(h.clone().try_into()?));
        } else {
            return Err(CertError::Host(h.clone()));
        }
    }
    let ca_key = KeyPair::generate()?;
    let mut ca = params("KubeBid development CA", 365)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let server_key = KeyPair::generate()?;
    let mut server = params(hosts.first().map_or("kubebid-webhook", String::as_str), 90)?;
    server.subject_alt_names = sans;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut client = params("kube-apiserver", 90)?;
    // Named in a subject alternative name too, which is what a server pinning its client's name checks.
    client.subject_alt_names = vec![SanType::DnsName("kube-apiserver".try_into()?)];
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer)?;

    let out = Written {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        server_cert: dir.join("tls.crt"),
        server_key: dir.join("tls.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
    };
    write(&out.ca_cert, &ca_cert.pem(), false)?;
    write(&out.server_cert, &server_cert.pem(), false)?;
    write(&out.client_cert, &client_cert.pem(), false)?;
    for (path, key) in [
        (&out.ca_key, &ca_key),
        (&out.server_key, &server_key),
        (&out.client_key, &client_key),
    ] {
        let mut pem = key.serialize_pem();
        let written = write(path, &pem, true);
        pem.zeroize();
        written?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_a_usable_chain_with_private_keys_0600() {
        let dir = std::env::temp_dir().join(format!("kubebid-certs-{}", std::process::id()));
        let w = generate(
            &dir,
            &[
                "localhost".into(),
                "127.0.0.1".into(),
                "kubebid-webhook.kubebid-system.svc".into(),
            ],
        )
        .expect("generates");
        for key in [&w.ca_key, &w.server_key, &w.client_key] {
            assert_eq!(
                std::fs::metadata(key).expect("exists").permissions().mode() & 0o777,
                0o600
            );
        }
        crate::tls::load_certified_key(&w.server_cert, &w.server_key).expect("serving pair loads");
        crate::tls::load_certified_key(&w.client_cert, &w.client_key).expect("client pair loads");
        assert!(matches!(
            generate(&dir, &["not a host!".into()]),
            Err(CertError::Host(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
