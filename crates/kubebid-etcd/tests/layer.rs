//! The tenant layer on etcd's messages: what a tenant's Secret key writes is sealed, what comes back opens,
//! at any depth of a transaction and in watch events; everything else is left as it came.

// Test fixtures fail the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::FakeHsm;
use kubebid_etcd::layer::{Layer, LayerError};
use kubebid_etcd::path::SecretKeys;
use kubebid_etcd::proto::{
    Compare, DeleteRangeResponse, Event, KeyValue, PutRequest, RangeResponse, RequestOp,
    ResponseOp, TxnRequest, TxnResponse, WatchResponse, compare, request_op, response_op,
};
use kubebid_etcd::seal::{MAGIC, Sealer};
use prost::Message as _;

const ACME: &[u8] = b"/registry/secrets/acme-prod/db";
const PLAIN: &[u8] = b"k8s:enc:kms:v2:kubebid-kms:\x0a\x20...";

fn layer() -> (Arc<FakeHsm>, Layer) {
    let hsm = Arc::new(FakeHsm::default());
    hsm.add("acme");
    hsm.add("globex");
    let tenant_of = Arc::new(|ns: &str| match ns {
        "acme-prod" => Some("acme".to_owned()),
        "globex" => Some("globex".to_owned()),
        _ => None,
    });
    let l = Layer::new(
        SecretKeys::new("/registry"),
        tenant_of,
        Arc::new(Sealer::new(hsm.clone())),
    );
    (hsm, l)
}

fn put(key: &[u8], value: &[u8]) -> PutRequest {
    PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        ..PutRequest::default()
    }
}

fn kv(key: &[u8], value: Vec<u8>) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        value,
        mod_revision: 7,
        ..KeyValue::default()
    }
}

fn sealed(l: &Layer, key: &[u8]) -> Vec<u8> {
    let mut p = put(key, PLAIN);
    assert_eq!(l.put_request(&mut p), Ok(true));
    p.value
}

#[test]
fn a_tenant_secret_is_sealed_on_the_way_in_and_opened_on_the_way_out() {
    let (_, l) = layer();
    let stored = sealed(&l, ACME);
    assert!(stored.starts_with(MAGIC));
    assert!(
        !stored.windows(PLAIN.len()).any(|w| w == PLAIN),
        "neither plaintext nor the bare KMS envelope is stored"
    );
    let mut range = RangeResponse {
        kvs: vec![
            kv(ACME, stored.clone()),
            kv(b"/registry/configmaps/acme-prod/c", b"cm".to_vec()),
        ],
        count: 2,
        ..RangeResponse::default()
    };
    assert_eq!(l.range_response(&mut range), Ok(true));
    assert_eq!(range.kvs[0].value, PLAIN);
    assert_eq!(
        range.kvs[0].mod_revision, 7,
        "everything but the value as it was"
    );
    assert_eq!(range.kvs[1].value, b"cm");

    // prev_kv of deletes and watch events open too.
    let mut del = DeleteRangeResponse {
        deleted: 1,
        prev_kvs: vec![kv(ACME, stored.clone())],
        ..DeleteRangeResponse::default()
    };
    assert_eq!(l.delete_response(&mut del), Ok(true));
    assert_eq!(del.prev_kvs[0].value, PLAIN);
    let mut watch = WatchResponse {
        events: vec![Event {
            r#type: 0,
            kv: Some(kv(ACME, stored.clone())),
            prev_kv: Some(kv(ACME, stored)),
        }],
        ..WatchResponse::default()
    };
    assert_eq!(l.watch_response(&mut watch), Ok(true));
    let e = &watch.events[0];
    assert_eq!(
        (
            e.kv.as_ref().map(|k| k.value.clone()),
            e.prev_kv.as_ref().map(|k| k.value.clone())
        ),
        (Some(PLAIN.to_vec()), Some(PLAIN.to_vec()))
    );
}

#[test]
fn what_belongs_to_no_tenant_is_left_as_it_came() {
    let (_, l) = layer();
    for key in [
        &b"/registry/configmaps/acme-prod/c"[..],
        b"/registry/secrets/kube-system/token",
        b"/registry/secrets/acme-prod",
    ] {
        let mut p = put(key, PLAIN);
        let before = p.encode_to_vec();
        assert_eq!(
            l.put_request(&mut p),
            Ok(false),
            "{}",
            String::from_utf8_lossy(key)
        );
        assert_eq!(p.encode_to_vec(), before);
    }
    // A value written before the layer existed still reads (a rewrap seals it).
    let mut range = RangeResponse {
        kvs: vec![kv(ACME, PLAIN.to_vec())],
        ..RangeResponse::default()
    };
    assert_eq!(l.range_response(&mut range), Ok(false));
    // ignore_value keeps the stored value: nothing to seal.
    let mut keep = put(ACME, b"");
    keep.ignore_value = true;
    assert_eq!(l.put_request(&mut keep), Ok(false));
}

#[test]
fn transactions_are_sealed_and_opened_at_every_depth() {
    let (_, l) = layer();
    let nested = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put(ACME, PLAIN))),
        }],
        ..TxnRequest::default()
    };
    let mut txn = TxnRequest {
        compare: vec![Compare {
            target: 2,
            key: ACME.to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(7)),
            ..Compare::default()
        }],
        success: vec![
            RequestOp {
                request: Some(request_op::Request::RequestPut(put(ACME, PLAIN))),
            },
            RequestOp {
                request: Some(request_op::Request::RequestTxn(nested)),
            },
        ],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put(
                b"/registry/secrets/globex/x",
                PLAIN,
            ))),
        }],
    };
    assert_eq!(l.txn_request(&mut txn), Ok(true));
    let value = |op: &RequestOp| match &op.request {
        Some(request_op::Request::RequestPut(p)) => p.value.clone(),
        Some(request_op::Request::RequestTxn(t)) => match &t.success[0].request {
            Some(request_op::Request::RequestPut(p)) => p.value.clone(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    for op in txn.success.iter().chain(&txn.failure) {
        assert!(value(op).starts_with(MAGIC));
    }
    let stored = value(&txn.success[0]);
    let mut resp = TxnResponse {
        succeeded: true,
        responses: vec![ResponseOp {
            response: Some(response_op::Response::ResponseTxn(TxnResponse {
                responses: vec![ResponseOp {
                    response: Some(response_op::Response::ResponseRange(RangeResponse {
                        kvs: vec![kv(ACME, stored)],
                        ..RangeResponse::default()
                    })),
                }],
                ..TxnResponse::default()
            })),
        }],
        ..TxnResponse::default()
    };
    assert_eq!(l.txn_response(&mut resp), Ok(true));
    let Some(response_op::Response::ResponseTxn(inner)) = &resp.responses[0].response else {
        panic!("nested")
    };
    let Some(response_op::Response::ResponseRange(r)) = &inner.responses[0].response else {
        panic!("range")
    };
    assert_eq!(r.kvs[0].value, PLAIN);
}

#[test]
fn a_sealed_value_cannot_be_compared_moved_or_read_once_its_key_is_gone() {
    let (hsm, l) = layer();
    let mut by_value = TxnRequest {
        compare: vec![Compare {
            target: 3,
            key: ACME.to_vec(),
            target_union: Some(compare::TargetUnion::Value(PLAIN.to_vec())),
            ..Compare::default()
        }],
        ..TxnRequest::default()
    };
    assert!(matches!(
        l.txn_request(&mut by_value),
        Err(LayerError::ValueCompare { .. })
    ));
    let stored = sealed(&l, ACME);
    // Copied under another tenant's key: it does not open there.
    let mut moved = RangeResponse {
        kvs: vec![kv(b"/registry/secrets/globex/db", stored.clone())],
        ..RangeResponse::default()
    };
    assert!(matches!(
        l.range_response(&mut moved),
        Err(LayerError::Seal { .. })
    ));
    // Under a namespace no tenant owns any more: not given out.
    let mut orphan = RangeResponse {
        kvs: vec![kv(b"/registry/secrets/old-ns/db", stored.clone())],
        ..RangeResponse::default()
    };
    assert!(l.range_response(&mut orphan).is_err());
    // Crypto-shredding: the tenant key destroyed and the cache forgotten, nothing opens and nothing is
    // written in the clear.
    hsm.destroy("acme");
    let fresh = {
        let tenant_of = Arc::new(|ns: &str| (ns == "acme-prod").then(|| "acme".to_owned()));
        Layer::new(
            SecretKeys::new("/registry"),
            tenant_of,
            Arc::new(Sealer::new(hsm.clone())),
        )
    };
    let mut gone = RangeResponse {
        kvs: vec![kv(ACME, stored)],
        ..RangeResponse::default()
    };
    assert!(fresh.range_response(&mut gone).is_err());
    assert!(fresh.put_request(&mut put(ACME, PLAIN)).is_err());
}

#[test]
fn a_shredded_tenant_reads_as_gone_in_lists_and_watches_and_fails_a_single_read() {
    let (hsm, l) = layer();
    let acme = sealed(&l, ACME);
    let gk: &[u8] = b"/registry/secrets/globex/db";
    let globex = sealed(&l, gk);
    let cm: &[u8] = b"/registry/secrets/kube-system/t";
    hsm.destroy("acme");
    l.sealer().forget("acme");
    // A list of every Secret: acme's is left out (and out of the count), the rest opens.
    let mut list = RangeResponse {
        kvs: vec![
            kv(ACME, acme.clone()),
            kv(gk, globex.clone()),
            kv(cm, b"plain".to_vec()),
        ],
        count: 3,
        ..RangeResponse::default()
    };
    assert_eq!(l.range_listing_response(&mut list), Ok(true));
    assert_eq!(list.count, 2);
    assert_eq!(
        list.kvs
            .iter()
            .map(|k| k.key.as_slice())
            .collect::<Vec<_>>(),
        vec![gk, cm]
    );
    assert_eq!(list.kvs[0].value, PLAIN);
    // A read of that one key says why.
    let mut one = RangeResponse {
        kvs: vec![kv(ACME, acme.clone())],
        count: 1,
        ..RangeResponse::default()
    };
    let err = l.range_response(&mut one).unwrap_err();
    assert!(err.is_key_gone(), "{err}");
    assert!(err.to_string().contains("acme"), "{err}");
    // A watch: the event of acme's Secret is left out, globex's opens.
    let mut w = WatchResponse {
        events: vec![
            Event {
                kv: Some(kv(ACME, acme.clone())),
                ..Event::default()
            },
            Event {
                kv: Some(kv(gk, globex.clone())),
                prev_kv: Some(kv(gk, globex)),
                ..Event::default()
            },
        ],
        ..WatchResponse::default()
    };
    assert_eq!(l.watch_response(&mut w), Ok(true));
    assert_eq!(w.events.len(), 1);
    assert_eq!(w.events[0].kv.as_ref().unwrap().value, PLAIN);
    // A value that can never open for another reason (moved under another tenant's key) is left out of a
    // list too, and fails a read of its one key.
    let mut moved = RangeResponse {
        kvs: vec![kv(gk, acme.clone()), kv(cm, b"plain".to_vec())],
        count: 2,
        ..RangeResponse::default()
    };
    assert_eq!(l.range_listing_response(&mut moved), Ok(true));
    assert_eq!((moved.kvs.len(), moved.count), (1, 1));
    let mut one = RangeResponse {
        kvs: vec![kv(gk, acme)],
        count: 1,
        ..RangeResponse::default()
    };
    let err = l.range_response(&mut one).unwrap_err();
    assert!(err.is_permanent() && !err.is_key_gone(), "{err}");
}
