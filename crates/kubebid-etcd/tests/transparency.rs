//! Transparency: random sequences of etcd calls (puts with and without previous values, gets of keys and
//! prefixes with limits, revisions, counts and sorting, deletes, transactions with nested operations,
//! compactions) go to one fresh etcd directly and to another through the proxy, and every answer must be
//! the same: revisions, counts, `more`, values, previous values, errors, and finally every watch event
//! with its previous value. A tenant's Secrets are sealed in the second etcd, and that must not show. The
//! one call the proxy refuses on purpose, a sort by value over tenants' Secrets, must be refused.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::FakeHsm;
use common::etcd::{ctl, etcd_missing, start_etcd};
use kubebid_etcd::client::{Client, Status};
use kubebid_etcd::layer::Layer;
use kubebid_etcd::path::SecretKeys;
use kubebid_etcd::proto::{
    CompactionRequest, Compare, DeleteRangeRequest, Event, KeyValue, PutRequest, RangeRequest,
    RequestOp, ResponseHeader, TxnRequest, WatchCreateRequest, compare, request_op,
};
use kubebid_etcd::proxy::{Etcd, serve};
use kubebid_etcd::seal::{MAGIC, Sealer};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message as _;

const KEYS: &[&str] = &[
    "/registry/secrets/acme-prod/a",
    "/registry/secrets/acme-prod/b",
    "/registry/secrets/acme-dev/c",
    "/registry/secrets/kube-system/d",
    "/registry/configmaps/acme-prod/e",
    "/registry/secrets/",
    "/z",
];

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: usize,
        value: Vec<u8>,
        prev_kv: bool,
    },
    Get {
        key: usize,
        prefix: bool,
        limit: i64,
        back: i64,
        keys_only: bool,
        count_only: bool,
        sort: (i32, i32),
    },
    Delete {
        key: usize,
        prefix: bool,
        prev_kv: bool,
    },
    Txn {
        key: usize,
        target: i32,
        result: i32,
        against: i64,
        success: Vec<Op>,
        failure: Vec<Op>,
    },
    Compact {
        back: i64,
    },
}

fn key() -> impl Strategy<Value = usize> {
    0..KEYS.len()
}

fn simple() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), proptest::collection::vec(any::<u8>(), 0..48), any::<bool>())
            .prop_map(|(key, value, prev_kv)| Op::Put { key, value, prev_kv }),
        3 => (key(), any::<bool>(), 0i64..3, 0i64..4, any::<bool>(), any::<bool>(), (0i32..3, 0i32..5))
            .prop_map(|(key, prefix, limit, back, keys_only, count_only, sort)| Op::Get {
                key, prefix, limit, back, keys_only, count_only, sort,
            }),
        1 => (key(), any::<bool>(), any::<bool>())
            .prop_map(|(key, prefix, prev_kv)| Op::Delete { key, prefix, prev_kv }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => simple(),
        // MOD, VERSION or CREATE (never VALUE: the proxy refuses value compares of Secrets on purpose).
        2 => (key(), prop_oneof![Just(0), Just(1), Just(2)], 0i32..4, 0i64..8,
              proptest::collection::vec(simple(), 0..3), proptest::collection::vec(simple(), 0..3))
            .prop_map(|(key, target, result, against, success, failure)| Op::Txn {
                key, target, result, against, success, failure,
            }),
        1 => (1i64..6).prop_map(|back| Op::Compact { back }),
    ]
}

fn prefix_end(k: &[u8]) -> Vec<u8> {
    kubebid_etcd::rewrap::prefix_end(k)
}

fn request(op: &Op, rev: i64) -> RequestOp {
    let range_end = |key: usize, prefix: bool| {
        if prefix {
            prefix_end(KEYS[key].as_bytes())
        } else {
            Vec::new()
        }
    };
    let request = match op {
        Op::Put {
            key,
            value,
            prev_kv,
        } => request_op::Request::RequestPut(PutRequest {
            key: KEYS[*key].into(),
            value: value.clone(),
            prev_kv: *prev_kv,
            ..PutRequest::default()
        }),
        Op::Get {
            key,
            prefix,
            limit,
            back,
            keys_only,
            count_only,
            sort,
        } => request_op::Request::RequestRange(RangeRequest {
            key: KEYS[*key].into(),
            range_end: range_end(*key, *prefix),
            limit: *limit,
            revision: if *back > 0 { (rev - back).max(0) } else { 0 },
            keys_only: *keys_only,
            count_only: *count_only,
            sort_order: sort.0,
            sort_target: sort.1,
            ..RangeRequest::default()
        }),
        Op::Delete {
            key,
            prefix,
            prev_kv,
        } => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: KEYS[*key].into(),
            range_end: range_end(*key, *prefix),
            prev_kv: *prev_kv,
        }),
        Op::Txn {
            key,
            target,
            result,
            against,
            success,
            failure,
        } => request_op::Request::RequestTxn(TxnRequest {
            compare: vec![Compare {
                result: *result,
                target: *target,
                key: KEYS[*key].into(),
                target_union: Some(match target {
                    0 => compare::TargetUnion::Version(*against),
                    1 => compare::TargetUnion::CreateRevision(rev - against),
                    _ => compare::TargetUnion::ModRevision(rev - against),
                }),
                range_end: Vec::new(),
            }],
            success: success.iter().map(|o| request(o, rev)).collect(),
            failure: failure.iter().map(|o| request(o, rev)).collect(),
        }),
        Op::Compact { .. } => unreachable!("not inside a transaction"),
    };
    RequestOp {
        request: Some(request),
    }
}

/// Cluster and member IDs differ between the two etcds, and nothing else may.
fn same_header(h: &mut Option<ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

/// One call's answer, headers normalized, as bytes of the message (or the error's code).
async fn call(c: &Client, op: &Op, rev: i64) -> Result<Vec<u8>, u32> {
    let code = |s: Status| s.code;
    match op {
        Op::Compact { back } => {
            let mut r = c
                .compact(&CompactionRequest {
                    revision: (rev - back).max(1),
                    physical: false,
                })
                .await
                .map_err(code)?;
            same_header(&mut r.header);
            Ok(r.encode_to_vec())
        }
        other => match request(other, rev).request {
            Some(request_op::Request::RequestPut(p)) => {
                let mut r = c.put(&p).await.map_err(code)?;
                same_header(&mut r.header);
                Ok(r.encode_to_vec())
            }
            Some(request_op::Request::RequestRange(q)) => {
                let mut r = c.range(&q).await.map_err(code)?;
                same_header(&mut r.header);
                Ok(r.encode_to_vec())
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                let mut r = c.delete_range(&d).await.map_err(code)?;
                same_header(&mut r.header);
                Ok(r.encode_to_vec())
            }
            Some(request_op::Request::RequestTxn(t)) => {
                let mut r = c.txn(&t).await.map_err(code)?;
                same_header(&mut r.header);
                Ok(r.encode_to_vec())
            }
            None => unreachable!(),
        },
    }
}

async fn revision(c: &Client) -> i64 {
    c.range(&RangeRequest {
        key: b"/".to_vec(),
        count_only: true,
        ..RangeRequest::default()
    })
    .await
    .unwrap()
    .header
    .unwrap()
    .revision
}

/// Every event from `from` up to `to`, with previous values.
async fn events(c: &Client, from: i64, to: i64) -> Result<Vec<Event>, String> {
    let mut stream = c
        .watch(WatchCreateRequest {
            key: b"/".to_vec(),
            range_end: vec![0],
            start_revision: from,
            prev_kv: true,
            ..WatchCreateRequest::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let read = async {
        while out
            .last()
            .and_then(|e: &Event| e.kv.as_ref())
            .is_none_or(|kv| kv.mod_revision < to)
        {
            match stream.next().await {
                Some(Ok(r)) if r.canceled => {
                    return Err(format!("watch canceled: {}", r.cancel_reason));
                }
                Some(Ok(r)) => out.extend(r.events),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the watch ended".into()),
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| format!("no event up to revision {to} within 10 s"))??;
    Ok(out)
}

struct Pair {
    direct: Client,
    proxied: Client,
    sealed_etcd: SocketAddr,
}

/// Whether the proxy refuses `op` on purpose: a Range sorted by value that can reach a tenant's Secrets
/// (etcd would sort the sealed bytes), at any depth of a transaction. etcd is then not asked at all.
fn refused(op: &Op) -> bool {
    match op {
        Op::Get {
            key, prefix, sort, ..
        } => {
            sort.1 == 4
                && if *prefix {
                    KEYS[*key].starts_with("/registry/secrets/")
                } else {
                    KEYS[*key].starts_with("/registry/secrets/acme-")
                }
        }
        Op::Txn {
            success, failure, ..
        } => success.iter().chain(failure).any(refused),
        _ => false,
    }
}

async fn case(p: &Pair, ops: &[Op]) -> Result<(), TestCaseError> {
    let start = revision(&p.direct).await;
    let mut compacted = 0;
    for (i, op) in ops.iter().enumerate() {
        let rev = revision(&p.direct).await;
        if refused(op) {
            prop_assert_eq!(
                call(&p.proxied, op, rev).await,
                Err(3),
                "{:?} was not refused",
                op
            );
            continue;
        }
        let (a, b) = (
            call(&p.direct, op, rev).await,
            call(&p.proxied, op, rev).await,
        );
        prop_assert_eq!(&a, &b, "answer {} to {:?} differs", i, op);
        if let (Op::Compact { back }, Ok(_)) = (op, &a) {
            compacted = (rev - back).max(1);
        }
    }
    let end = revision(&p.direct).await;
    prop_assert_eq!(end, revision(&p.proxied).await);
    let from = (start + 1).max(compacted + 1);
    if end >= from {
        let a = events(&p.direct, from, end)
            .await
            .map_err(TestCaseError::fail)?;
        let b = events(&p.proxied, from, end)
            .await
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(a, b, "watch events from {} differ", from);
    }
    // What the second etcd holds for acme's Secrets is sealed.
    let raw = Client::new(Arc::new(
        Etcd::new(format!("http://{}", p.sealed_etcd).parse().unwrap(), None).unwrap(),
    ));
    let held = raw
        .range(&RangeRequest {
            key: b"/registry/secrets/acme-".to_vec(),
            range_end: prefix_end(b"/registry/secrets/acme-"),
            ..RangeRequest::default()
        })
        .await
        .unwrap();
    for KeyValue { key, value, .. } in held.kvs {
        prop_assert!(
            value.is_empty() || value.starts_with(MAGIC),
            "{} is held unsealed",
            String::from_utf8_lossy(&key)
        );
    }
    Ok(())
}

#[test]
fn every_answer_through_the_proxy_is_the_answer_of_etcd() {
    if etcd_missing() {
        return;
    }
    let (_a, a) = start_etcd();
    let (_b, b) = start_etcd();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pair = rt.block_on(async {
        let hsm = Arc::new(FakeHsm::default());
        hsm.add("acme");
        let tenant_of = Arc::new(|ns: &str| ns.starts_with("acme-").then(|| "acme".to_owned()));
        let layer = Layer::new(
            SecretKeys::new("/registry"),
            tenant_of,
            Arc::new(Sealer::new(hsm)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        let upstream = Arc::new(Etcd::new(format!("http://{b}").parse().unwrap(), None).unwrap());
        tokio::spawn(serve(
            listener,
            None,
            layer,
            upstream,
            std::future::pending(),
        ));
        let client = |addr: SocketAddr| {
            Client::new(Arc::new(
                Etcd::new(format!("http://{addr}").parse().unwrap(), None).unwrap(),
            ))
        };
        Pair {
            direct: client(a),
            proxied: client(proxy),
            sealed_etcd: b,
        }
    });
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        rt.block_on(case(&pair, &ops))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The run wrote tenant Secrets, and etcdctl sees the same through the proxy as directly.
    assert!(ctl(a, &["get", "/", "--prefix", "--keys-only"]).0);
}
