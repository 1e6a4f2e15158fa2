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
    /// `ValidatingAdmissionPolicy` objects and bindings: the core rules in CEL, enforced by the API server
    /// itself when the webhook cannot be reached.
    Vap {
        /// KubeBid configuration, for the tenants' runtime classes. Repeatable.
        #[arg(short, long, value_name = "FILE|DIR")]
        config: Vec<String>,
    },
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
            match (
                typed(&validating(&settings), "ValidatingWebhookConfiguration"),
                typed(&mutating(&settings), "MutatingWebhookConfiguration"),
            ) {
                (Ok(a), Ok(b)) => to_yaml_stream(&[a, b]),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        GenerateCommand::Crds => {
            to_yaml_stream(&[KubeBidConfig::crd(), Tenant::crd(), PolicyException::crd()])
        }
        GenerateCommand::Vap { config } => vap(config),
    };
    match out {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// An admissionregistration.k8s.io/v1 object as JSON with `apiVersion` and `kind` first, for readers.
fn typed<T: serde::Serialize>(object: &T, kind: &str) -> Result<serde_json::Value, String> {
    let v = serde_json::to_value(object).map_err(|e| e.to_string())?;
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
    Ok(serde_json::Value::Object(out))
}

fn vap(config: &[String]) -> Result<String, String> {
    let mut classes: Vec<String> = Vec::new();
    if !config.is_empty() {
        let set = crate::check::load_config_set(config).map_err(|errors| {
            errors
                .iter()
                .map(|e| format!("config error: {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        for t in &set.tenants {
            classes.extend(t.object.spec.runtime_classes.allowed.iter().cloned());
        }
    }
    if classes.is_empty() {
        classes.push(kubebid_model::config::DEFAULT_RUNTIME_CLASS.into());
    }
    classes.sort();
    classes.dedup();
    let (policies, bindings) = kubebid_webhook::vap::policies(&classes);
    let mut values = Vec::new();
    for p in &policies {
        values.push(typed(p, "ValidatingAdmissionPolicy")?);
    }
    for b in &bindings {
        values.push(typed(b, "ValidatingAdmissionPolicyBinding")?);
    }
    to_yaml_stream(&values)
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("kubebid generate: {msg}");
    ExitCode::from(2)
}

#[derive(clap::Subcommand)]
pub enum TenantCommand {
    /// Print every object KubeBid manages for the Tenants in FILE... (offline, for GitOps): the cluster-wide
    /// objects, then each tenant's namespaces, network policies, RBAC, quota and limits.
    Render {
        /// Files or directories with Tenant (and optionally KubeBidConfig) objects.
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<String>,
        /// Also write the API server's audit policy and encryption configuration into this directory, and
        /// the KMS plugin's static pod for the control-plane nodes (`kubebid-kms.yaml`).
        #[arg(long, value_name = "DIR")]
        api_server_dir: Option<PathBuf>,
    },
}

pub fn tenant(cmd: &TenantCommand) -> ExitCode {
    let TenantCommand::Render {
        paths,
        api_server_dir,
    } = cmd;
    let set = match crate::check::load_config_set(paths) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("config error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    // The same cross-checks the webhook applies: one namespace, domain and owner per tenant.
    if let Err(errors) = kubebid_policy::PolicySet::from_config(&set) {
        for e in errors {
            eprintln!("config error: {e}");
        }
        return ExitCode::from(2);
    }
    if set.tenants.is_empty() {
        return fail("no Tenant objects in the given files");
    }
    let cluster = set
        .config
        .as_ref()
        .map(|c| c.object.spec.clone())
        .unwrap_or_default();
    let mut objects = kubebid_tenancy::render::cluster();
    for t in &set.tenants {
        objects.extend(kubebid_tenancy::render::tenant(&t.object, &cluster));
    }
    if let Some(dir) = api_server_dir {
        let tenants: Vec<_> = set.tenants.iter().map(|t| t.object.clone()).collect();
        let files = [
            (
                "audit-policy.yaml",
                kubebid_tenancy::render::audit_policy(&tenants),
            ),
            (
                "encryption-config.yaml",
                kubebid_tenancy::render::encryption_config(),
            ),
            (
                "kubebid-kms.yaml",
                kubebid_tenancy::render::kms_static_pod(&format!(
                    "ghcr.io/kubebid/kubebid:{}",
                    env!("CARGO_PKG_VERSION")
                )),
            ),
        ];
        if let Err(e) = std::fs::create_dir_all(dir) {
            return fail(&format!("{}: {e}", dir.display()));
        }
        for (name, value) in files {
            let path = dir.join(name);
            let text = match to_yaml_stream(&[value]) {
                Ok(t) => t,
                Err(e) => return fail(&e),
            };
            if let Err(e) = std::fs::write(&path, text) {
                return fail(&format!("{}: {e}", path.display()));
            }
            eprintln!("wrote {}", path.display());
        }
    }
    match to_yaml_stream(&objects) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}
