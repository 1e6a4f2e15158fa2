//! The checks that decide whether a node may run tenants' microVMs, each a pass or a failure with the
//! reason, read from the node itself: its devices, kernel parameters, CPU flags, and the configuration of
//! Kata Containers, containerd and the kubelet. A configuration file that is present but broken fails its
//! check with the file and line; nothing is ever guessed.

use std::time::{Duration, Instant};

use crate::host::{ConfigError, Host, parse_toml, toml_key_line};

/// The `KVM_GET_API_VERSION` every KVM since Linux 2.6.22 answers.
pub const KVM_API_VERSION: i32 = 12;

/// The runtime handler tenants' pods run under (the `kubebid-secure` `RuntimeClass`).
pub const KATA_FC_HANDLER: &str = "kata-fc";
/// The handlers of the confidential `RuntimeClasses`, by technology.
pub const SNP_HANDLER: &str = "kata-qemu-snp";
pub const TDX_HANDLER: &str = "kata-qemu-tdx";

/// Where Kata's Firecracker configuration is looked for when containerd's runtime options name none.
pub const KATA_FC_CONFIGS: &[&str] = &[
    "/etc/kata-containers/configuration-fc.toml",
    "/opt/kata/share/defaults/kata-containers/configuration-fc.toml",
    "/usr/share/defaults/kata-containers/configuration-fc.toml",
];

/// containerd's configuration.
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// The kubelet's configuration file (kubeadm's place).
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";

/// A check's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// Not present, and not required: the node just lacks the feature (no memory encryption, no cache
    /// allocation).
    Absent,
}

/// One check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Stable ID, for metrics and conditions: `kvm`, `kata-firecracker`, ...
    pub id: &'static str,
    /// Whether `kubebid.io/secure-runtime` needs it.
    pub required: bool,
    pub status: Status,
    /// What was found, or why it failed.
    pub detail: String,
}

/// Memory encryption the node can give a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Technology {
    SevSnp,
    Tdx,
}

impl Technology {
    /// The `kubebid.io/memory-encryption` label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::SevSnp => "sev-snp",
            Self::Tdx => "tdx",
        }
    }

    fn handler(self) -> &'static str {
        match self {
            Self::SevSnp => SNP_HANDLER,
            Self::Tdx => TDX_HANDLER,
        }
    }
}

/// The cache allocation the node offers (resctrl's `info/L3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheInfo {
    /// Where resctrl is mounted on the node.
    pub mount: String,
    /// Classes of service, the default group's included.
    pub closids: u32,
    /// Bits (ways) of a capacity mask.
    pub cbm_bits: u32,
    /// Fewest bits a mask may have.
    pub min_cbm_bits: u32,
    /// Memory bandwidth allocation is there too.
    pub mba: bool,
}

/// One full attestation.
#[derive(Clone, Debug)]
pub struct Attestation {
    pub checks: Vec<Check>,
    /// The technology the node can run confidential guests with (checks passed and the handler registered).
    pub memory_encryption: Option<Technology>,
    pub cache: Option<CacheInfo>,
    pub took: Duration,
}

impl Attestation {
    /// Every required check passed.
    #[must_use]
    pub fn secure_runtime(&self) -> bool {
        self.checks
            .iter()
            .filter(|c| c.required)
            .all(|c| c.status == Status::Pass)
    }

    /// The required checks that failed.
    #[must_use]
    pub fn failures(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| c.required && c.status != Status::Pass)
            .collect()
    }
}

/// Where to read the node.
#[derive(Clone, Debug)]
pub struct Options {
    pub host: Host,
    /// The kubelet's configuration file, as the node names it.
    pub kubelet_config: String,
    /// Whether the kubelet's CPU manager (dedicated cores) is required for the secure runtime.
    pub require_cpu_manager: bool,
}

impl Options {
    #[must_use]
    pub fn new(host: Host) -> Self {
        Self {
            host,
            kubelet_config: KUBELET_CONFIG.to_owned(),
            require_cpu_manager: true,
        }
    }
}

fn check(id: &'static str, required: bool, result: Result<String, String>) -> Check {
    let (status, detail) = match result {
        Ok(d) => (Status::Pass, d),
        Err(d) => (Status::Fail, d),
    };
    Check {
        id,
        required,
        status,
        detail,
    }
}

/// Runs every check.
#[must_use]
pub fn attest(opts: &Options) -> Attestation {
    let started = Instant::now();
    let host = &opts.host;
    let mut checks = vec![check("kvm", true, kvm(host))];
    let containerd = containerd(host);
    let fc_config = containerd
        .as_ref()
        .ok()
        .and_then(|c| c.handlers.iter().find(|h| h.name == KATA_FC_HANDLER))
        .and_then(|h| h.config_path.clone());
    checks.push(check(
        "containerd-kata-fc",
        true,
        containerd.as_ref().map_err(Clone::clone).and_then(|c| {
            c.handlers
                .iter()
                .find(|h| h.name == KATA_FC_HANDLER)
                .map(|h| {
                    format!(
                        "{}: handler {KATA_FC_HANDLER} runs {}",
                        c.file, h.runtime_type
                    )
                })
                .ok_or_else(|| {
                    format!(
                        "{}: no runtime handler {KATA_FC_HANDLER} is registered",
                        c.file
                    )
                })
        }),
    ));
    checks.push(check(
        "kata-firecracker",
        true,
        kata_firecracker(host, fc_config.as_deref()),
    ));
    checks.push(check(
        "cpu-manager",
        opts.require_cpu_manager,
        kubelet(host, &opts.kubelet_config),
    ));
    let (enc_check, technology) = memory_encryption(host);
    let registered = |t: Technology| {
        containerd
            .as_ref()
            .is_ok_and(|c| c.handlers.iter().any(|h| h.name == t.handler()))
    };
    let memory_encryption = technology.filter(|t| registered(*t));
    checks.push(match (technology, memory_encryption) {
        (Some(t), None) => Check {
            id: "memory-encryption",
            required: false,
            status: Status::Fail,
            detail: format!(
                "{} is on, but containerd registers no runtime handler {}",
                t.label(),
                t.handler()
            ),
        },
        _ => enc_check,
    });
    let (cache_check, cache) = cache_allocation(host);
    checks.push(cache_check);
    Attestation {
        checks,
        memory_encryption,
        cache,
        took: started.elapsed(),
    }
}

/// `/dev/kvm` opens, answers the stable API version, and creates a VM.
///
/// # Errors
/// Why KVM is not usable.
pub fn kvm(host: &Host) -> Result<String, String> {
    let path = host.path("/dev/kvm");
    if !path.exists() {
        return Err(
            "/dev/kvm is missing: no KVM in this kernel, or not exposed to the agent".into(),
        );
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "/dev/kvm: a path with a NUL".to_owned())?;
    let kvm =
        kvm_ioctls::Kvm::new_with_path(&c).map_err(|e| format!("/dev/kvm: cannot open: {e}"))?;
    let version = kvm.get_api_version();
    if version != KVM_API_VERSION {
        return Err(format!(
            "/dev/kvm answers API version {version}, not {KVM_API_VERSION}"
        ));
    }
    let vm = kvm
        .create_vm()
        .map_err(|e| format!("/dev/kvm: cannot create a VM: {e}"))?;
    let vcpus = kvm.get_max_vcpus();
    drop(vm);
    Ok(format!(
        "/dev/kvm: API version {version}, a VM was created, up to {vcpus} vCPUs"
    ))
}

/// A runtime handler containerd's CRI plugin registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handler {
    pub name: String,
    pub runtime_type: String,
    /// Kata's configuration file for it (`options.ConfigPath`), when named.
    pub config_path: Option<String>,
}

/// What the agent reads of containerd's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Containerd {
    pub file: String,
    pub handlers: Vec<Handler>,
}

/// The CRI plugin's tables, by configuration version: containerd 1.x (`version = 2`) and 2.x (`version = 3`).
const CRI_PLUGINS: &[&str] = &["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"];

/// The runtime handlers containerd registers, from its configuration and the files it imports.
///
/// # Errors
/// A missing or broken file, with its line.
pub fn containerd(host: &Host) -> Result<Containerd, String> {
    let text = host
        .read(CONTAINERD_CONFIG)?
        .ok_or_else(|| format!("{CONTAINERD_CONFIG} is missing"))?;
    let mut handlers = Vec::new();
    let table = parse_toml(CONTAINERD_CONFIG, &text).map_err(|e| e.to_string())?;
    collect_handlers(&table, CONTAINERD_CONFIG, &text, &mut handlers)?;
    for import in imports(host, &table) {
        if let Some(t) = host.read(&import)? {
            let imported = parse_toml(&import, &t).map_err(|e| e.to_string())?;
            collect_handlers(&imported, &import, &t, &mut handlers)?;
        }
    }
    Ok(Containerd {
        file: CONTAINERD_CONFIG.to_owned(),
        handlers,
    })
}

/// The files `imports` names: exact paths, or `dir/*.toml` patterns.
fn imports(host: &Host, table: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    for item in table
        .get("imports")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_str)
    {
        if let Some((dir, pattern)) = item.rsplit_once('/')
            && let Some(suffix) = pattern.strip_prefix('*')
        {
            let mut names: Vec<String> = std::fs::read_dir(host.path(dir))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(suffix))
                .map(|n| format!("{dir}/{n}"))
                .collect();
            names.sort();
            out.extend(names);
        } else {
            out.push(item.to_owned());
        }
    }
    out
}

fn collect_handlers(
    table: &toml::Table,
    file: &str,
    text: &str,
    out: &mut Vec<Handler>,
) -> Result<(), String> {
    let plugins = table.get("plugins").and_then(toml::Value::as_table);
    for plugin in CRI_PLUGINS {
        let Some(runtimes) = plugins
            .and_then(|p| p.get(*plugin))
            .and_then(|p| p.get("containerd"))
            .and_then(|c| c.get("runtimes"))
        else {
            continue;
        };
        let Some(runtimes) = runtimes.as_table() else {
            return Err(ConfigError {
                file: file.to_owned(),
                line: toml_key_line(text, "runtimes"),
                message: format!("plugins.\"{plugin}\".containerd.runtimes is not a table"),
            }
            .to_string());
        };
        for (name, r) in runtimes {
            let runtime_type = r
                .get("runtime_type")
                .and_then(toml::Value::as_str)
                .unwrap_or_default();
            if runtime_type.is_empty() {
                return Err(ConfigError {
                    file: file.to_owned(),
                    line: text
                        .lines()
                        .position(|l| l.contains(&format!("runtimes.{name}")))
                        .map_or(1, |i| i + 1),
                    message: format!("runtime {name} has no runtime_type"),
                }
                .to_string());
            }
            out.push(Handler {
                name: name.clone(),
                runtime_type: runtime_type.to_owned(),
                config_path: r
                    .get("options")
                    .and_then(|o| o.get("ConfigPath"))
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned),
            });
        }
    }
    Ok(())
}

/// Kata's configuration names Firecracker, with the jailer and the VMM's seccomp filters on.
///
/// # Errors
/// Why not, with the file and line where the file says otherwise.
pub fn kata_firecracker(host: &Host, config: Option<&str>) -> Result<String, String> {
    let candidates: Vec<&str> = match config {
        Some(c) => vec![c],
        None => KATA_FC_CONFIGS.to_vec(),
    };
    let mut found = None;
    for c in &candidates {
        if let Some(text) = host.read(c)? {
            found = Some(((*c).to_owned(), text));
            break;
        }
    }
    let Some((file, text)) = found else {
        return Err(format!(
            "no Kata configuration for Firecracker ({})",
            candidates.join(", ")
        ));
    };
    let table = parse_toml(&file, &text).map_err(|e| e.to_string())?;
    let at = |key: &str, message: String| {
        ConfigError {
            file: file.clone(),
            line: toml_key_line(&text, key),
            message,
        }
        .to_string()
    };
    let Some(fc) = table
        .get("hypervisor")
        .and_then(|h| h.get("firecracker"))
        .and_then(toml::Value::as_table)
    else {
        return Err(format!(
            "{file}: no [hypervisor.firecracker] section: Kata is not configured for Firecracker"
        ));
    };
    let string = |key: &str| {
        fc.get(key)
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
    };
    let vmm = string("path");
    if vmm.is_empty() {
        return Err(at("path", "hypervisor.firecracker.path is not set".into()));
    }
    if !host.exists(vmm) {
        return Err(at(
            "path",
            format!("the Firecracker binary {vmm} is missing"),
        ));
    }
    let jailer = string("jailer_path");
    if jailer.is_empty() {
        return Err(at(
            "jailer_path",
            "jailer_path is not set: Firecracker would run without the jailer's chroot, namespaces and dropped privileges".into(),
        ));
    }
    if !host.exists(jailer) {
        return Err(at("jailer_path", format!("the jailer {jailer} is missing")));
    }
    if fc.get("disable_seccomp").and_then(toml::Value::as_bool) == Some(true) {
        return Err(at(
            "disable_seccomp",
            "disable_seccomp = true turns off the VMM's seccomp filters".into(),
        ));
    }
    let guest = table
        .get("runtime")
        .and_then(|r| r.get("disable_guest_seccomp"))
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    Ok(format!(
        "{file}: Firecracker {vmm}, jailer {jailer}, VMM seccomp on, guest seccomp {}",
        if guest { "off" } else { "on" }
    ))
}

/// The kubelet's static CPU manager with `full-pcpus-only` and a topology manager policy: whole cores,
/// never shared between pods.
///
/// # Errors
/// Why not, with the file and line.
pub fn kubelet(host: &Host, file: &str) -> Result<String, String> {
    let text = host
        .read(file)?
        .ok_or_else(|| format!("{file} is missing"))?;
    let doc = kubebid_model::yaml::parse_documents(&text)
        .into_iter()
        .next()
        .ok_or_else(|| format!("{file}: empty"))?
        .map_err(|e| format!("{file}:{}: {}", e.line, e.message))?;
    let v = &doc.value;
    let line = |field: &str| doc.lines.line_of(field).map_or(doc.line, |l| l as usize);
    let at = |field: &str, message: String| {
        ConfigError {
            file: file.to_owned(),
            line: line(field),
            message,
        }
        .to_string()
    };
    if v.get("kind").and_then(|k| k.as_str()) != Some("KubeletConfiguration") {
        return Err(at("kind", "not a KubeletConfiguration".into()));
    }
    let policy = v
        .get("cpuManagerPolicy")
        .and_then(|p| p.as_str())
        .unwrap_or("none");
    if policy != "static" {
        return Err(at(
            "cpuManagerPolicy",
            format!("cpuManagerPolicy is {policy:?}, not \"static\": pods share every core"),
        ));
    }
    let full = v
        .get("cpuManagerPolicyOptions")
        .and_then(|o| o.get("full-pcpus-only"))
        .and_then(|f| {
            f.as_str()
                .map(str::to_owned)
                .or_else(|| f.as_bool().map(|b| b.to_string()))
        });
    if full.as_deref() != Some("true") {
        return Err(at(
            "cpuManagerPolicyOptions.full-pcpus-only",
            "cpuManagerPolicyOptions has no full-pcpus-only: \"true\": a pod could get half a core, its sibling thread another tenant's".into(),
        ));
    }
    let topology = v
        .get("topologyManagerPolicy")
        .and_then(|p| p.as_str())
        .unwrap_or("none");
    if !matches!(topology, "best-effort" | "restricted" | "single-numa-node") {
        return Err(at(
            "topologyManagerPolicy",
            format!(
                "topologyManagerPolicy is {topology:?}: no topology manager aligns the pinned cores"
            ),
        ));
    }
    Ok(format!(
        "{file}: cpuManagerPolicy static, full-pcpus-only, topologyManagerPolicy {topology}"
    ))
}

/// SEV-SNP or TDX, on in the kernel and the CPU.
fn memory_encryption(host: &Host) -> (Check, Option<Technology>) {
    let flags = host.cpu_flags();
    let flag = |f: &str| flags.iter().any(|x| x == f);
    let mut seen = Vec::new();
    let snp = host.param_on("/sys/module/kvm_amd/parameters/sev_snp");
    if host.param_on("/sys/module/kvm_amd/parameters/sev") {
        seen.push("SEV");
    }
    if host.param_on("/sys/module/kvm_amd/parameters/sev_es") {
        seen.push("SEV-ES");
    }
    let result = |status, detail: String| Check {
        id: "memory-encryption",
        required: false,
        status,
        detail,
    };
    if snp {
        let mut missing = Vec::new();
        if !flag("sev_snp") {
            missing.push("the CPU flag sev_snp");
        }
        if !host.exists("/dev/sev") {
            missing.push("/dev/sev (the AMD secure processor)");
        }
        return if missing.is_empty() {
            (
                result(
                    Status::Pass,
                    "SEV-SNP: kvm_amd sev_snp=Y, CPU flag sev_snp, /dev/sev".into(),
                ),
                Some(Technology::SevSnp),
            )
        } else {
            (
                result(
                    Status::Fail,
                    format!("kvm_amd has sev_snp=Y but lacks {}", missing.join(" and ")),
                ),
                None,
            )
        };
    }
    if host.param_on("/sys/module/kvm_intel/parameters/tdx") {
        let mut missing = Vec::new();
        if !host.exists("/sys/firmware/tdx") {
            missing.push("/sys/firmware/tdx (the TDX module)");
        }
        if !flag("tdx_host_platform") {
            missing.push("the CPU flag tdx_host_platform");
        }
        return if missing.is_empty() {
            (
                result(
                    Status::Pass,
                    "TDX: kvm_intel tdx=Y, TDX module loaded, CPU flag tdx_host_platform".into(),
                ),
                Some(Technology::Tdx),
            )
        } else {
            (
                result(
                    Status::Fail,
                    format!("kvm_intel has tdx=Y but lacks {}", missing.join(" and ")),
                ),
                None,
            )
        };
    }
    let detail = if seen.is_empty() {
        "no SEV-SNP (kvm_amd sev_snp) and no TDX (kvm_intel tdx)".to_owned()
    } else {
        format!(
            "{} only, without SNP's integrity protection: not labelled",
            seen.join(" and ")
        )
    };
    (result(Status::Absent, detail), None)
}

/// resctrl mounted with L3 cache allocation.
fn cache_allocation(host: &Host) -> (Check, Option<CacheInfo>) {
    let result = |status, detail: String| Check {
        id: "cache-partitioning",
        required: false,
        status,
        detail,
    };
    let Some(mount) = host.mount_of("resctrl") else {
        return (
            result(
                Status::Absent,
                "resctrl is not mounted (mount -t resctrl resctrl /sys/fs/resctrl)".into(),
            ),
            None,
        );
    };
    let info = format!("{mount}/info/L3");
    if !host.exists(&info) {
        return (
            result(
                Status::Absent,
                format!("resctrl at {mount} has no L3 cache allocation ({info})"),
            ),
            None,
        );
    }
    let num = |f: &str| host.value(&format!("{info}/{f}"));
    let closids = num("num_closids").and_then(|v| v.parse::<u32>().ok());
    let mask = num("cbm_mask").and_then(|v| u64::from_str_radix(&v, 16).ok());
    let min = num("min_cbm_bits").and_then(|v| v.parse::<u32>().ok());
    match (closids, mask, min) {
        (Some(closids), Some(mask), Some(min)) if mask != 0 && (mask + 1) & mask == 0 => {
            let cbm_bits = mask.count_ones();
            let mba = host.exists(&format!("{mount}/info/MB"));
            (
                result(
                    Status::Pass,
                    format!(
                        "L3 allocation at {mount}: {closids} classes, {cbm_bits}-way mask (at least {min}){}",
                        if mba {
                            ", memory bandwidth allocation"
                        } else {
                            ""
                        }
                    ),
                ),
                Some(CacheInfo {
                    mount,
                    closids,
                    cbm_bits,
                    min_cbm_bits: min.max(1),
                    mba,
                }),
            )
        }
        _ => (
            result(
                Status::Fail,
                format!(
                    "{info}: num_closids, cbm_mask (contiguous hex) or min_cbm_bits unreadable"
                ),
            ),
            None,
        ),
    }
}
