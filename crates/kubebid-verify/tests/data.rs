//! The data probe against a real etcd (Debian's etcd-server; `scripts/test` installs it): values written
//! as the API server and KubeBid's tenant layer write them, read back by the probe straight from etcd.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "../../kubebid-etcd/tests/common/etcd.rs"]
mod etcd;

use std::sync::Arc;

use kubebid_etcd::client::Client;
use kubebid_etcd::proto::PutRequest;
use kubebid_etcd::seal::{KeyWrapper, SealError, Sealer};
use kubebid_verify::data::{Stored, classify, not_checked, probe};
use zeroize::Zeroizing;

mod common;

const TENANTS: &str = "apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {namespaces: [acme-prod, acme-dev]}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: globex}
spec: {namespaces: [globex]}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: initech}
spec: {namespaces: [initech]}
";

/// Wraps data keys by XOR with a per-tenant byte: enough to make real sealed values.
struct TestKeys;

impl KeyWrapper for TestKeys {
    fn wrap(&self, tenant: &str, key: &[u8]) -> Result<Vec<u8>, SealError> {
        let k = tenant.as_bytes()[0];
        Ok(key.iter().map(|b| b ^ k).collect())
    }
    fn unwrap(&self, tenant: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        Ok(Zeroizing::new(self.wrap(tenant, wrapped)?))
    }
}

fn kms(name: &str) -> Vec<u8> {
    let mut v = format!("k8s:enc:kms:v2:{name}:").into_bytes();
    v.extend_from_slice(&[0x0a, 0x20, 0xff, 0x00, 0x13]);
    v
}

async fn put(c: &Client, key: &str, value: Vec<u8>) {
    c.put(&PutRequest {
        key: key.as_bytes().to_vec(),
        value,
        ..PutRequest::default()
    })
    .await
    .unwrap();
}

fn client(addr: std::net::SocketAddr) -> Client {
    let up =
        kubebid_etcd::proxy::Etcd::new(format!("http://{addr}").parse().unwrap(), None).unwrap();
    Client::new(Arc::new(up))
}

#[test]
fn values_are_classified_by_what_protects_them() {
    assert_eq!(
        classify(&kms("kubebid-kms")),
        Stored::KmsV2("kubebid-kms".into())
    );
    let weak = |v: &[u8]| matches!(classify(v), Stored::Weak(_));
    assert!(weak(b"k8s\0\x0a\x09v1\x12Secret"));
    assert!(weak(b"{\"kind\":\"Secret\"}"));
    assert!(weak(b"k8s:enc:aescbc:v1:key1:xxxx"));
    assert!(weak(b"k8s:enc:kms:v1:old:xxxx"));
    assert!(weak(b"k8s:enc:kubebid-tenant:v1:\xff"));
    assert!(weak(b""));
    let sealer = Sealer::new(Arc::new(TestKeys));
    let sealed = sealer
        .seal(
            "acme",
            b"/registry/secrets/acme-prod/db",
            &kms("kubebid-kms"),
        )
        .unwrap();
    assert_eq!(classify(&sealed), Stored::TenantLayer("acme".into()));
}

#[tokio::test]
async fn stored_secrets_are_read_from_etcd_and_judged() {
    if etcd::etcd_missing() {
        return;
    }
    let (_etcd, addr) = etcd::start_etcd();
    let c = client(addr);
    let set = common::config(TENANTS);
    let tenancy = set.tenancy();
    put(&c, "/registry/secrets/acme-prod/db", kms("kubebid-kms")).await;
    put(&c, "/registry/secrets/acme-dev/tls", kms("kubebid-kms")).await;
    put(&c, "/registry/secrets/globex/api", kms("kubebid-kms")).await;
    put(
        &c,
        "/registry/secrets/globex/plain",
        b"k8s\0\x0a\x09v1\x12Secret".to_vec(),
    )
    .await;
    put(
        &c,
        "/registry/secrets/globex/local",
        b"k8s:enc:aescbc:v1:key1:zzzz".to_vec(),
    )
    .await;
    // Another kind's value under a key the probe must not read as a Secret.
    put(
        &c,
        "/registry/configmaps/initech/cfg",
        b"k8s\0plain".to_vec(),
    )
    .await;

    let found = probe(&c, "/registry", &tenancy, None, 5).await.unwrap();
    let by: std::collections::BTreeMap<_, _> =
        found.iter().map(|f| (f.tenant.as_str(), f)).collect();
    assert!(by["acme"].passed && !by["acme"].skipped, "{:?}", by["acme"]);
    assert!(
        by["acme"]
            .evidence
            .iter()
            .any(|e| e.contains("acme-prod: 1 sampled, all encrypted by KMS v2 (kubebid-kms)"))
    );
    let g = by["globex"];
    assert!(!g.passed, "{g:?}");
    assert!(
        g.evidence
            .iter()
            .any(|e| e == "globex/plain: stored in the clear (protobuf)"),
        "{g:?}"
    );
    assert!(
        g.evidence
            .iter()
            .any(|e| e.starts_with("globex/local: encrypted by \"aescbc\"")),
        "{g:?}"
    );
    assert!(!g.evidence.iter().any(|e| e.starts_with("globex/api:")));
    // initech stores no Secret: nothing to judge, and said so.
    assert!(
        by["initech"].skipped && by["initech"].passed,
        "{:?}",
        by["initech"]
    );
    assert!(by["initech"].evidence[0].contains("no Secrets stored"));

    // The sample is bounded per namespace.
    let one = probe(&c, "/registry", &tenancy, Some("globex"), 1)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert!(
        one[0].evidence[0].starts_with("globex: 1 sampled"),
        "{:?}",
        one[0]
    );

    // Once the tenant layer is deployed, every tenant value must carry it, sealed for its own tenant.
    let sealer = Sealer::new(Arc::new(TestKeys));
    let key = "/registry/secrets/acme-prod/db";
    put(
        &c,
        key,
        sealer
            .seal("acme", key.as_bytes(), &kms("kubebid-kms"))
            .unwrap(),
    )
    .await;
    let key = "/registry/secrets/initech/moved";
    put(
        &c,
        key,
        sealer
            .seal("globex", key.as_bytes(), &kms("kubebid-kms"))
            .unwrap(),
    )
    .await;
    let found = probe(&c, "/registry", &tenancy, None, 5).await.unwrap();
    let by: std::collections::BTreeMap<_, _> =
        found.iter().map(|f| (f.tenant.as_str(), f)).collect();
    let a = by["acme"];
    assert!(!a.passed, "{a:?}");
    assert!(
        a.evidence
            .iter()
            .any(|e| e.contains("acme-prod: 1 sampled, all sealed for acme")),
        "{a:?}"
    );
    assert!(a.evidence.iter().any(|e| e == "acme-dev/tls: encrypted by the KMS but not under the tenant layer, which is deployed"), "{a:?}");
    assert!(
        by["initech"]
            .evidence
            .iter()
            .any(|e| e == "initech/moved: sealed for tenant \"globex\", not \"initech\""),
        "{:?}",
        by["initech"]
    );

    // Every Secret, page by page, with a sample of 0: more than a page of them, a plaintext one last.
    for i in 0..(kubebid_verify::data::PAGE + 7) {
        put(
            &c,
            &format!("/registry/secrets/initech/s{i:04}"),
            kms("kubebid-kms"),
        )
        .await;
    }
    put(&c, "/registry/secrets/initech/zz-plain", b"k8s\0x".to_vec()).await;
    let all = probe(&c, "/registry", &tenancy, Some("initech"), 0)
        .await
        .unwrap();
    assert!(
        all[0].evidence[0].starts_with("initech: 509 sampled"),
        "{:?}",
        &all[0].evidence[..2]
    );
    assert!(
        all[0]
            .evidence
            .iter()
            .any(|e| e == "initech/zz-plain: stored in the clear (protobuf)")
    );
    let five = probe(&c, "/registry", &tenancy, Some("initech"), 5)
        .await
        .unwrap();
    assert!(
        five[0].evidence[0].starts_with("initech: 5 sampled"),
        "{:?}",
        five[0].evidence
    );

    // etcd gone: an error, not a pass.
    drop(_etcd);
    assert!(probe(&c, "/registry", &tenancy, None, 5).await.is_err());
}

#[test]
fn without_etcd_every_tenant_says_what_was_not_checked() {
    let set = common::config(TENANTS);
    let f = not_checked(&set.tenancy(), Some("acme"));
    assert_eq!(f.len(), 1);
    assert!(f[0].skipped && f[0].passed);
    assert!(f[0].evidence[0].contains("no --etcd given"));
}
