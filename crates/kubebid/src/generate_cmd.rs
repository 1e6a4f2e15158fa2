//! `kubebid generate ...`: the objects a cluster needs, as YAML on standard output.

use std::path::PathBuf;
use std::process::ExitCode;

use kube::CustomResourceExt;
use kubebid_model::config::{KubeBidConfig, PolicyException, Tenant};
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
        /// KubeBid configuration, for the platform's namespaces (which the webhook never sees) and KubeBid's
        /// own account. Repeatable; the built-in defaults without it.
        #[arg(short, long, value_name = "FILE|DIR")]
        config: Vec<String>,
    },
    /// The CustomResourceDefinitions of KubeBid's configuration objects.
    Crds,
    /// `ValidatingAdmissionPolicy` objects and bindings: the rules CEL can carry, enforced by the API server
    /// itself when the webhook cannot be reached. The output begins with the list of rules it carries.
    Vap {
        /// KubeBid configuration: tenants' runtime classes, priority classes, load-balancer rights, and the
        /// platform's namespaces. Repeatable; regenerate when Tenants change.
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
            config,
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
            let policy = match crate::check::load_policy(config) {
                Ok(p) => p,
                Err(errors) => return config_errors(&errors),
            };
            let settings = WebhookSettings::for_cluster(policy.tenancy(), target, pem, *timeout);
            match (
                typed(&validating(&settings), "ValidatingWebhookConfiguration"),
                typed(&mutating(&settings), "MutatingWebhookConfiguration"),
            ) {
                (Ok(a), Ok(b)) => to_yaml_stream(&[a, b]).map_err(String::from),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        GenerateCommand::Crds => {
            to_yaml_stream(&[KubeBidConfig::crd(), Tenant::crd(), PolicyException::crd()])
                .map_err(String::from)
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

fn config_errors(errors: &[kubebid_model::SourceError]) -> ExitCode {
    for e in errors {
        eprintln!("config error: {e}");
    }
    ExitCode::from(2)
}

fn vap(config: &[String]) -> Result<String, String> {
    let policy = crate::check::load_policy(config).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("config error: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let (policies, bindings) = kubebid_policy::vap::policies(&policy);
    let mut values = Vec::new();
    for p in &policies {
        values.push(typed(p, "ValidatingAdmissionPolicy")?);
    }
    for b in &bindings {
        values.push(typed(b, "ValidatingAdmissionPolicyBinding")?);
    }
    let mut out = String::from(
        "# KubeBid's ValidatingAdmissionPolicy backstop: what the API server enforces when the webhook cannot\n# be reached. It carries these rules (the webhook carries all of them):\n",
    );
    for (id, coverage) in kubebid_policy::vap::CARRIED {
        let how = match coverage {
            kubebid_policy::vap::Coverage::Full => "in full",
            kubebid_policy::vap::Coverage::Partial => "in part",
        };
        out.push_str("#   ");
        out.push_str(id);
        out.push_str(" (");
        out.push_str(how);
        out.push_str(")\n");
    }
    out.push_str(&to_yaml_stream(&values)?);
    Ok(out)
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
        /// Also write the API server's audit policy, encryption configuration, audit webhook kubeconfig
        /// and the flags that use them (`kube-apiserver-flags.txt`) into this directory, the KMS plugin's
        /// and the etcd proxy's static pods for the control-plane nodes (`kubebid-kms.yaml`,
        /// `kubebid-etcd-proxy.yaml`), and the tenants the proxy seals Secrets for (`tenants.yaml`).
        #[arg(long, value_name = "DIR")]
        api_server_dir: Option<PathBuf>,
        /// The audit sink's events URL as the API server reaches it (it resolves names with the node's
        /// resolver, not the cluster's DNS: a Service's cluster IP or a node-local address is safest).
        #[arg(
            long,
            value_name = "URL",
            default_value = "https://kubebid-audit.kubebid-system.svc:8444/events"
        )]
        audit_sink: String,
    },
}

/// Reads Tenant, `KubeBidConfig` and `PolicyException` objects, and the Services that `sharedServices`
/// grants name (`kubectl get svc -n platform registry -o yaml`), from `paths`.
fn load_render_inputs(
    paths: &[String],
) -> Result<
    (
        kubebid_model::load::ConfigSet,
        Vec<k8s_openapi::api::core::v1::Service>,
    ),
    Vec<kubebid_model::SourceError>,
> {
    let (inputs, expand_errors) = kubebid_model::input::expand(paths);
    let mut errors: Vec<kubebid_model::SourceError> =
        expand_errors.into_iter().map(Into::into).collect();
    let mut set = kubebid_model::load::ConfigSet::default();
    let mut services = Vec::new();
    for input in &inputs {
        let text = match kubebid_model::input::read(input) {
            Ok(t) => t,
            Err(e) => {
                errors.push(e.into());
                continue;
            }
        };
        let (items, problems) = kubebid_model::load::manifest_items(&input.name(), &text);
        errors.extend(problems);
        for item in items {
            if item.value["kind"] == "Service" && item.value["apiVersion"] == "v1" {
                match serde_path_to_error::deserialize(item.value.clone()) {
                    Ok(svc) => services.push(svc),
                    Err(e) => errors.push(item.origin.error(
                        &kubebid_model::load::path_of(e.path()),
                        e.into_inner().to_string(),
                    )),
                }
            } else if let Err(e) = set.add_item(item) {
                errors.extend(e);
            }
        }
    }
    if errors.is_empty() {
        Ok((set, services))
    } else {
        Err(errors)
    }
}

pub fn tenant(cmd: &TenantCommand) -> ExitCode {
    let TenantCommand::Render {
        paths,
        api_server_dir,
        audit_sink,
    } = cmd;
    let (set, services) = match load_render_inputs(paths) {
        Ok(s) => s,
        Err(errors) => return config_errors(&errors),
    };
    // The same checks the webhook and the operator apply, through the one tenancy model.
    if let Err(errors) = kubebid_policy::PolicySet::from_config(&set) {
        return config_errors(&errors);
    }
    if set.tenants.is_empty() {
        return fail("no Tenant objects in the given files");
    }
    let cluster = set.cluster_spec();
    let model = set.tenancy();
    let renderer =
        kubebid_tenancy::render::TenantRenderer::new(&cluster, &model).with_services(&services);
    let mut objects = kubebid_tenancy::render::cluster(&cluster);
    for t in &set.tenants {
        match renderer.render(&t.object) {
            Ok(r) => {
                for w in &r.warnings {
                    eprintln!(
                        "warning: tenant {}: {w}",
                        t.object.metadata.name.as_deref().unwrap_or_default()
                    );
                }
                objects.extend(r.objects);
            }
            Err(problems) => {
                for p in problems {
                    eprintln!("config error: {}", t.origin.error(&p.path, p.message));
                }
                return ExitCode::from(2);
            }
        }
    }
    if let Some(dir) = api_server_dir
        && let Err(e) = write_api_server_dir(dir, &set, audit_sink)
    {
        return fail(&e);
    }
    match to_yaml_stream(&objects) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// Writes the API server's files for KubeBid into `dir`: audit policy, encryption configuration, audit
/// webhook kubeconfig, the KMS plugin's and the etcd proxy's static pods, the proxy's tenants and the flags.
fn write_api_server_dir(
    dir: &std::path::Path,
    set: &kubebid_model::load::ConfigSet,
    audit_sink: &str,
) -> Result<(), String> {
    let tenants: Vec<_> = set.tenants.iter().map(|t| t.object.clone()).collect();
    // What the etcd proxy needs of the configuration: the Tenants, and the KubeBidConfig if any.
    let mut tenancy_objects: Vec<serde_json::Value> = Vec::new();
    if let Some(c) = &set.config
        && let Ok(v) = serde_json::to_value(&c.object)
    {
        tenancy_objects.push(v);
    }
    for t in &tenants {
        if let Ok(v) = serde_json::to_value(t) {
            tenancy_objects.push(v);
        }
    }
    let tenants_text = match to_yaml_stream(&tenancy_objects) {
        Ok(t) => t,
        Err(e) => return Err(e.to_string()),
    };
    let tenants_sha = ring::digest::digest(&ring::digest::SHA256, tenants_text.as_bytes())
        .as_ref()
        .iter()
        .fold(String::new(), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        });
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
            "audit-webhook.kubeconfig",
            kubebid_tenancy::render::audit_webhook_kubeconfig(audit_sink),
        ),
        (
            "kubebid-kms.yaml",
            kubebid_tenancy::render::kms_static_pod(&format!(
                "ghcr.io/kubebid/kubebid-kms:{}",
                env!("CARGO_PKG_VERSION")
            )),
        ),
        (
            "kubebid-etcd-proxy.yaml",
            kubebid_tenancy::render::etcd_proxy_static_pod(
                &format!("ghcr.io/kubebid/kubebid:{}", env!("CARGO_PKG_VERSION")),
                &tenants_sha,
            ),
        ),
    ];
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Err(format!("{}: {e}", dir.display()));
    }
    for (name, value) in files {
        let path = dir.join(name);
        let text = match to_yaml_stream(&[value]) {
            Ok(t) => t,
            Err(e) => return Err(e.to_string()),
        };
        if let Err(e) = std::fs::write(&path, text) {
            return Err(format!("{}: {e}", path.display()));
        }
        eprintln!("wrote {}", path.display());
    }
    let tenants_path = dir.join("tenants.yaml");
    if let Err(e) = std::fs::write(&tenants_path, &tenants_text) {
        return Err(format!("{}: {e}", tenants_path.display()));
    }
    eprintln!("wrote {}", tenants_path.display());
    let flags = dir.join("kube-apiserver-flags.txt");
    let flag_text =
        kubebid_tenancy::render::audit_flags() + &kubebid_tenancy::render::etcd_proxy_flags();
    if let Err(e) = std::fs::write(&flags, flag_text) {
        return Err(format!("{}: {e}", flags.display()));
    }
    eprintln!(
        "wrote {} (copy the files to {} on every control-plane node and add these flags)",
        flags.display(),
        kubebid_tenancy::render::API_SERVER_DIR
    );
    Ok(())
}
