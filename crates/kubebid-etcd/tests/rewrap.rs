//! `kubebid secrets rewrap`'s core against a real etcd: after a tenant key rotation, every value of the
//! tenant is re-sealed under the newest key version, values still in the clear are sealed, other
//! namespaces are not touched, what the proxy reads does not change, a second run finds nothing to do,
//! and a write that lands between the read and the rewrite is never overwritten.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::FakeHsm;
use common::etcd::{ctl, etcd_missing, start_etcd};
use kubebid_etcd::client::Client;
use kubebid_etcd::layer::{Layer, TenantOf};
use kubebid_etcd::path::SecretKeys;
use kubebid_etcd::proxy::{Etcd, serve};
use kubebid_etcd::rewrap::{Report, Rewrap};
use kubebid_etcd::seal::{Sealer, wrapped_key};

const A: &str = "/registry/secrets/acme-prod/a";
const B: &str = "/registry/secrets/acme-prod/b";
const C: &str = "/registry/secrets/acme-prod/c";
const D: &str = "/registry/secrets/kube-system/d";

/// The key version (FakeHsm's first byte of a wrapped key) of the value at `key` in raw etcd.
fn version(etcd: std::net::SocketAddr, key: &str) -> Option<u8> {
    let raw = ctl(etcd, &["get", key, "--print-value-only"]).1;
    wrapped_key(raw.trim_end_matches('\n').as_bytes()).and_then(|w| w.first().copied())
}

#[test]
fn rewrap_reseals_under_the_newest_key_and_never_overwrites_a_concurrent_write() {
    if etcd_missing() {
        return;
    }
    let (_etcd, etcd) = start_etcd();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hsm = Arc::new(FakeHsm::default());
    hsm.add("acme");
    let tenant_of: TenantOf = Arc::new(|ns: &str| (ns == "acme-prod").then(|| "acme".to_owned()));
    let keys = SecretKeys::new("/registry");
    let proxy = rt.block_on(async {
        let layer = Layer::new(
            keys.clone(),
            tenant_of.clone(),
            Arc::new(Sealer::new(hsm.clone())),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(Etcd::new(format!("http://{etcd}").parse().unwrap(), None).unwrap());
        tokio::spawn(serve(listener, None, layer, up, std::future::pending()));
        addr
    });
    // Two Secrets through the proxy (key version 0), one written in the clear before the proxy, and one
    // of a namespace no tenant owns.
    assert!(ctl(proxy, &["put", A, "alpha"]).0);
    assert!(ctl(proxy, &["put", B, "beta"]).0);
    assert!(ctl(etcd, &["put", C, "gamma-in-the-clear"]).0);
    assert!(ctl(etcd, &["put", D, "platform"]).0);
    assert_eq!(version(etcd, A), Some(0));
    assert_eq!(version(etcd, C), None);

    let client = Client::new(Arc::new(
        Etcd::new(format!("http://{etcd}").parse().unwrap(), None).unwrap(),
    ));
    let run = |current: u8, race: Option<&AtomicBool>| {
        // A process of its own: a fresh sealer, as `kubebid secrets rewrap` has.
        let sealer = Sealer::new(hsm.clone());
        let is_current = move |_: &str, w: &[u8]| {
            if let Some(flag) = race
                && !flag.swap(true, Ordering::Relaxed)
            {
                // The API server writes A between the rewrap's read and its rewrite.
                assert!(ctl(proxy, &["put", A, "written-meanwhile"]).0);
            }
            w.first() == Some(&current)
        };
        let mut pages = 0;
        let report: Report = rt
            .block_on(
                Rewrap {
                    client: &client,
                    keys: &keys,
                    tenant_of: &tenant_of,
                    sealer: &sealer,
                    only: None,
                    is_current: &is_current,
                }
                .run(|_, total| {
                    pages += 1;
                    assert_eq!(total, 4);
                }),
            )
            .unwrap();
        assert_eq!(pages, 1);
        report
    };

    // Rotation: version 1 becomes the tenant's current key.
    hsm.add("acme");
    let r = run(1, None);
    assert_eq!(
        (r.scanned, r.resealed, r.sealed, r.not_selected, r.current),
        (4, 2, 1, 1, 0),
        "{}",
        r.summary()
    );
    assert!(r.failed.is_empty(), "{}", r.summary());
    for k in [A, B, C] {
        assert_eq!(version(etcd, k), Some(1), "{k}");
    }
    assert_eq!(
        ctl(etcd, &["get", D, "--print-value-only"]).1.trim_end(),
        "platform"
    );
    for (k, v) in [(A, "alpha"), (B, "beta"), (C, "gamma-in-the-clear")] {
        assert_eq!(
            ctl(proxy, &["get", k, "--print-value-only"]).1.trim_end(),
            v
        );
    }
    // Nothing left to do.
    let again = run(1, None);
    assert_eq!((again.current, again.resealed, again.sealed), (3, 0, 0));

    // Another rotation, and a write racing the rewrap on A: the write stays.
    hsm.add("acme");
    let raced = AtomicBool::new(false);
    let r = run(2, Some(&raced));
    assert_eq!(r.changed_concurrently, 1, "{}", r.summary());
    assert_eq!(r.resealed, 2, "{}", r.summary());
    assert_eq!(
        ctl(proxy, &["get", A, "--print-value-only"]).1.trim_end(),
        "written-meanwhile"
    );
}
