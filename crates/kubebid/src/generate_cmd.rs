//! `kubebid generate ...`: the objects a cluster needs, as YAML on standard output.

use std::path::PathBuf;
use std::process::ExitCode;

use kube::CustomResourceExt;
use kubebid_model::config::{KubeBidConfig, KubeBidConfigSpec, PolicyException, Tenant};
use kubebid_model::emit::to_yaml_stream;
use kubebid_webhook::generate::{Target, WebhookSettings, mutating, validating};

#[derive(clap::Subcommand)]
pub enum GenerateCommand {
    /// The ValidatingWebhookConfiguration and MutatingWebhookConfiguration.
    Webhooks {
        /// PEM file of the CA that signed the webhook's serving certificate.
        #[arg(long, value_name = "FILE")]
        ca_bundle: PathBuf,
        /// Reach the webhook at this HTTPS URL (development)...
        #[arg(long, conflicts_with = "service", required_unless_present = "service")]
        url: Option<String>,
        /// ...or through this Service, `namespace/name`, port 443.
        #[arg(long, value_name = "NS/NAME")]
        service: Option<String>,
        /// Seconds the API server waits for an answer.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=30))]
        timeout: i32,
    },
    /// The CustomResourceDefinitions of KubeBid's configuration objects.
    Crds,
}

pub fn run(cmd: &GenerateCommand) -> ExitCode {
    let out = match cmd {
        GenerateCommand::Webhooks {
            ca_bundle,
            url,
            service,
            timeout,
        } => {
            let pem = match std::fs::read(ca_bundle) {
                Ok(p) if String::from_utf8_lossy(&p).contains("-----BEGIN CERTIFICATE-----") => p,
                Ok(_) => return fail(&format!("{}: not a PEM certificate", ca_bundle.display())),
                Err(e) => return fail(&format!("{}: {e}", ca_bundle.display())),
            };
            let target = match (url, service) {
                (Some(u), _) if u.starts_with("https://") => Target::Url(u.clone()),
                (Some(u), _) => {
                    return fail(&format!(
                        "--url {u:?}: the API server calls webhooks over https:// only"
                    ));
                }
                (None, Some(s)) => match s.split_once('/') {
                    Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Target::Service {
                        namespace: ns.into(),
                        name: name.into(),
                    },
                    _ => return fail(&format!("--service {s:?}: expected namespace/name")),
                },
                (None, None) => return fail("give --url or --service"),
            };
            let sa = KubeBidConfigSpec::default().service_account;
            let (ns, name) = sa.split_once('/').unwrap_or(("kubebid-system", "kubebid"));
            let settings = WebhookSettings {
                target,
                ca_bundle: pem,
                service_account_user: format!("system:serviceaccount:{ns}:{name}"),
                timeout_seconds: *timeout,
            };
            let v = (
                serde_json::to_value(validating(&settings)),
                serde_json::to_value(mutating(&settings)),
            );
            match v {
                (Ok(a), Ok(b)) => to_yaml_stream(&[
                    with_type(a, "ValidatingWebhookConfiguration"),
                    with_type(b, "MutatingWebhookConfiguration"),
                ]),
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            }
        }
        GenerateCommand::Crds => {
            to_yaml_stream(&[KubeBidConfig::crd(), Tenant::crd(), PolicyException::crd()])
        }
    };
    match out {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// k8s-openapi writes apiVersion and kind through its own Serialize impl; keep them first for readers.
fn with_type(v: serde_json::Value, kind: &str) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert(
        "apiVersion".into(),
        "admissionregistration.k8s.io/v1".into(),
    );
    out.insert("kind".into(), kind.into());
    if let serde_json::Value::Object(m) = v {
        for (k, val) in m {
            out.entry(k).or_insert(val);
        }
    }
    serde_json::Value::Object(out)
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("kubebid generate: {msg}");
    ExitCode::from(2)
}
