//! The Helm chart under `deploy/kubebid`, rendered here with a Go template engine that carries Helm's
//! functions (no `helm` binary is needed; when one is on PATH it is run too). Every rendered object must be
//! of a known kind and survive a typed round trip (a misspelt or misplaced field would be dropped), and the
//! chart must agree with the code: the webhook configurations with `kubebid generate webhooks`, the CRDs
//! with `kubebid generate crds`, the cluster-wide objects with the renderer, the container arguments with
//! the CLI, and the operator's RBAC with what it renders (and nothing more).

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gtmpl_ng::helm_functions::{HELM_FUNCTIONS, serde_json_value_to_gtmpl_value};
use gtmpl_ng::{Context, Template};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
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

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let mut docs = parse_documents(&text);
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    docs.remove(0).unwrap().value
}

/// Overrides merged into the chart's values, as `--set`/`-f` do.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Renders every template of the chart; the text of each, or the first error.
fn render_text(namespace: &str, overrides: &Value) -> Result<Vec<(String, String)>, String> {
    let dir = chart_dir();
    let chart = yaml_file(&dir.join("Chart.yaml"));
    let mut values = yaml_file(&dir.join("values.yaml"));
    merge(&mut values, overrides);
    let context = json!({
        "Values": values,
        "Release": {"Name": "kubebid", "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
    });
    let context = Context::from(serde_json_value_to_gtmpl_value(context));
    let helpers = std::fs::read_to_string(dir.join("templates/_helpers.tpl")).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let mut t = Template::default();
        t.add_funcs(HELM_FUNCTIONS);
        t.add_template("_helpers.tpl", helpers.clone())
            .map_err(|e| format!("_helpers.tpl: {e}"))?;
        t.parse(std::fs::read_to_string(&file).unwrap())
            .map_err(|e| format!("{name}: {e}"))?;
        let text = t.render(&context).map_err(|e| format!("{name}: {e}"))?;
        out.push((name, text));
    }
    Ok(out)
}

/// Renders the chart into objects; panics on a template or YAML error.
fn render(namespace: &str, overrides: &Value) -> Vec<Value> {
    let mut objects = Vec::new();
    for (name, text) in render_text(namespace, overrides).unwrap() {
        for doc in parse_documents(&text) {
            let doc = doc.unwrap_or_else(|e| panic!("{name}: not YAML: {e:?}\n{text}"));
            if !doc.value.is_null() {
                objects.push(doc.value);
            }
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
        "RuntimeClass/kubebid-secure",
        "StorageClass/encrypted-ssd",
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
    assert_eq!(
        config.spec.service_account,
        KubeBidConfigSpec::default().service_account,
        "the chart's defaults and the built-in ones name the same account"
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

fn settings(namespace: &str, ca: Vec<u8>) -> WebhookSettings {
    WebhookSettings {
        target: Target::Service {
            namespace: namespace.into(),
            name: "kubebid-webhook".into(),
        },
        ca_bundle: ca,
        service_account_user: format!("system:serviceaccount:{namespace}:kubebid"),
        timeout_seconds: 7,
    }
}

#[test]
fn webhook_configurations_are_the_ones_kubebid_generates() {
    let ns = "platform-security";
    let objects = render(ns, &json!({"webhook": {"timeoutSeconds": 7}}));
    let ca = secret_pem(&objects, "ca.crt");
    assert!(String::from_utf8_lossy(&ca).contains("BEGIN CERTIFICATE"));
    let s = settings(ns, ca);
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
    assert!(
        err.contains("\"vault\": expected helm, certManager or secret"),
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

fn strip_chart_labels(mut o: Value) -> Value {
    if let Some(labels) = o["metadata"]["labels"].as_object_mut() {
        labels.retain(|k, _| !k.starts_with("app.kubernetes.io/") && !k.starts_with("helm.sh/"));
    }
    o
}

#[test]
fn cluster_wide_objects_are_the_renderers() {
    let objects = render(
        "kubebid-system",
        &json!({"cluster": {"ciliumEncryption": true}}),
    );
    let rendered = kubebid_tenancy::render::cluster();
    assert_eq!(rendered.len(), 3);
    for want in rendered {
        let kind = want["kind"].as_str().unwrap();
        let name = want["metadata"]["name"].as_str().unwrap();
        let got = strip_chart_labels(find(&objects, kind, name).clone());
        assert_eq!(got, want, "{kind} {name}");
    }
    let none = render(
        "kubebid-system",
        &json!({"cluster": {"runtimeClass": false, "storageClass": {"create": false}}}),
    );
    assert!(
        !none
            .iter()
            .any(|o| o["kind"] == "RuntimeClass" || o["kind"] == "StorageClass")
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
    let cluster = set
        .config
        .as_ref()
        .map(|c| c.object.spec.clone())
        .unwrap_or_default();
    let tenants: Vec<Tenant> = set.tenants.iter().map(|t| t.object.clone()).collect();
    assert!(tenants.len() >= 3);
    let mut kinds = BTreeSet::new();
    for t in &tenants {
        for o in kubebid_tenancy::render::tenant(t, &cluster) {
            let api = o["apiVersion"].as_str().unwrap();
            let group = api.rsplit_once('/').map_or("", |(g, _)| g).to_owned();
            let kind = o["kind"].as_str().unwrap().to_lowercase();
            let resource = match kind.strip_suffix('y') {
                Some(stem) => format!("{stem}ies"),
                None => format!("{kind}s"),
            };
            let name = o["metadata"]["name"].as_str().unwrap().to_owned();
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
    // Exactly the escalate/bind needed: another Role name is not covered.
    assert!(!grants(
        &operator,
        "rbac.authorization.k8s.io",
        "roles",
        "bind",
        "admin"
    ));
    // The controller watches Tenants, KubeBidConfigs and what it owns.
    for (group, resource) in [
        ("kubebid.io", "tenants"),
        ("kubebid.io", "kubebidconfigs"),
        ("networking.k8s.io", "networkpolicies"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("", "resourcequotas"),
        ("", "limitranges"),
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
                !r.verbs
                    .iter()
                    .any(|v| v == "delete" || v == "deletecollection")
            );
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

/// With `helm` on PATH, the real thing must lint the chart and render the same objects.
#[test]
fn helm_itself_agrees_when_installed() {
    let Ok(version) = Command::new("helm").arg("version").output() else {
        eprintln!(
            "skipped: helm is not installed; the chart was rendered by the built-in engine only"
        );
        return;
    };
    assert!(version.status.success());
    let dir = chart_dir();
    let lint = Command::new("helm").arg("lint").arg(&dir).output().unwrap();
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let out = Command::new("helm")
        .args(["template", "kubebid", "--namespace", "kubebid-system"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut theirs = BTreeSet::new();
    for d in parse_documents(&text) {
        let v = d.unwrap().value;
        if !v.is_null() {
            theirs.insert(format!("{}/{}", v["kind"], v["metadata"]["name"]));
        }
    }
    let ours: BTreeSet<String> = render("kubebid-system", &json!({}))
        .iter()
        .map(|v| format!("{}/{}", v["kind"], v["metadata"]["name"]))
        .collect();
    assert_eq!(theirs, ours);
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
