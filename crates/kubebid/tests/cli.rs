//! The `kubebid` binary end to end: exit codes, output formats, inputs, configuration errors, docs in step.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kubebid(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubebid runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("kubebid finishes")
}

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn examples_pass_and_fail_with_the_documented_exit_codes() {
    let ok = kubebid(
        &[
            "check",
            "--config",
            "examples/config",
            "examples/manifests/pass",
        ],
        None,
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let bad = kubebid(
        &[
            "check",
            "--config",
            "examples/config",
            "examples/manifests/fail",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(1));
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(text.contains("pss/privileged"), "{text}");
    assert!(
        text.contains("spec.containers[0].securityContext.privileged (line 16)"),
        "{text}"
    );
    assert!(
        !text.contains("\u{1b}["),
        "no colour when stdout is not a terminal"
    );
}

#[test]
fn json_output_follows_the_documented_schema() {
    let o = kubebid(
        &[
            "check",
            "--config",
            "examples/config",
            "-o",
            "json",
            "examples/manifests",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let v = json_out(&o);
    assert_eq!(v["schema"], "kubebid.io/check/v1");
    let results = v["results"].as_array().expect("results");
    assert!(!results.is_empty());
    for r in results {
        for key in [
            "file",
            "document",
            "line",
            "kind",
            "namespace",
            "name",
            "rule",
            "action",
            "message",
            "path",
            "severity",
        ] {
            assert!(r.get(key).is_some(), "result lacks {key}: {r}");
        }
    }
    let priv_ = results
        .iter()
        .find(|r| r["rule"] == "pss/privileged")
        .expect("privileged finding");
    assert_eq!(
        priv_["file"],
        "examples/manifests/fail/escape-attempts.yaml"
    );
    assert_eq!(priv_["document"], 0);
    assert_eq!(priv_["namespace"], "tenant-acme");
    assert_eq!(priv_["action"], "enforce");
    // The NFS share of globex's legacy job: restricted volumes and inline storage, both lifted.
    let excepted: Vec<&str> = results
        .iter()
        .filter(|r| r["exception"] == "globex-legacy-nfs")
        .filter_map(|r| r["rule"].as_str())
        .collect();
    assert_eq!(
        excepted,
        ["pss/restrictedVolumes", "tenant/inline-volumes"],
        "excepted findings"
    );
    let s = &v["summary"];
    assert_eq!(s["files"], 3);
    assert_eq!(s["excepted"], 2);
    assert!(s["enforce"].as_u64().expect("count") >= 30);
    assert_eq!(s["denied_objects"], 11);
}

#[test]
fn sarif_output_is_sarif_2_1_0_with_locations() {
    let o = kubebid(&["check", "-o", "sarif", "examples/manifests/fail"], None);
    assert_eq!(o.status.code(), Some(1));
    let v = json_out(&o);
    assert_eq!(v["version"], "2.1.0");
    assert!(v["$schema"].as_str().is_some_and(|s| s.contains("sarif")));
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "kubebid");
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let results = run["results"].as_array().expect("results");
    assert!(!results.is_empty());
    for r in results {
        let idx = usize::try_from(r["ruleIndex"].as_u64().expect("ruleIndex")).expect("index");
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        assert!(
            r["locations"][0]["physicalLocation"]["region"]["startLine"]
                .as_u64()
                .expect("line")
                >= 1
        );
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().expect("level")));
    }
}

#[test]
fn malformed_documents_are_reported_and_the_rest_still_checked() {
    let input = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec: {containers: [{name: c}], hostPID: true}\n---\nkind: [broken\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec:\n  containers:\n  - name: c\n    securityContext: {privileged: 3}\n";
    let o = kubebid(
        &["check", "--profile", "baseline", "-o", "json", "-"],
        Some(input),
    );
    assert_eq!(o.status.code(), Some(2), "input errors exit 2");
    let v = json_out(&o);
    let errors = v["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0]["file"], "-");
    assert_eq!(errors[0]["document"], 1);
    assert_eq!(
        errors[0]["line"], 7,
        "where the parser found the unclosed ["
    );
    assert!(
        errors[0]["message"]
            .as_str()
            .expect("message")
            .contains("starts at line 6"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[1]["document"], 2);
    assert_eq!(errors[1]["line"], 14);
    assert_eq!(
        errors[1]["field"],
        "spec.containers[0].securityContext.privileged"
    );
    assert_eq!(v["results"][0]["rule"], "pss/hostNamespaces");
    assert_eq!(v["results"][0]["name"], "a");
}

#[test]
fn lists_directories_and_json_files_are_read() {
    let dir = tempdir();
    std::fs::create_dir_all(dir.join("nested/.hidden")).expect("mkdir");
    std::fs::write(
        dir.join("nested/list.json"),
        r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np", "namespace": "t"}, "spec": {"type": "NodePort"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "t"}}]}"#,
    )
    .expect("write");
    std::fs::write(dir.join("nested/.hidden/skip.yaml"), "kind: [").expect("write");
    std::fs::write(dir.join("notes.txt"), "not a manifest").expect("write");
    let o = kubebid(&["check", "-o", "json", dir.to_str().expect("utf8")], None);
    assert_eq!(o.status.code(), Some(1));
    let v = json_out(&o);
    assert_eq!(v["summary"]["files"], 1);
    assert_eq!(v["summary"]["objects"], 2);
    assert_eq!(v["results"][0]["rule"], "tenant/service-nodeport");
    assert_eq!(v["results"][0]["line"], 2);
    assert!(v["notes"].as_array().expect("notes").iter().any(|n| {
        n["note"]
            .as_str()
            .is_some_and(|s| s.contains("has no rules"))
    }));
}

#[test]
fn configuration_errors_exit_2_with_file_line_and_field() {
    let dir = tempdir();
    let cfg = dir.join("bad.yaml");
    std::fs::write(&cfg, "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: t}\nspec:\n  namespaces: [t]\n  allowLoadbalancer: true\n").expect("write");
    let o = kubebid(
        &[
            "check",
            "--config",
            cfg.to_str().expect("utf8"),
            "examples/manifests/pass",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.yaml:6: spec.allowLoadbalancer: unknown field"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        kubebid(&["check", "--profile", "lenient", "x"], None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        kubebid(&["check", "--pss-version", "v1.99", "x"], None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(kubebid(&["check"], None).status.code(), Some(2));
    let missing = kubebid(&["check", "/nonexistent/path.yaml"], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stdout).contains("cannot read"));
}

#[test]
fn pss_version_flag_changes_the_verdict() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  securityContext:\n    sysctls: [{name: net.ipv4.tcp_keepalive_time, value: '60'}]\n  containers: [{name: c}]\n";
    assert_eq!(
        kubebid(
            &["check", "-p", "baseline", "--pss-version", "v1.28", "-"],
            Some(pod)
        )
        .status
        .code(),
        Some(1)
    );
    assert_eq!(
        kubebid(
            &["check", "-p", "baseline", "--pss-version", "v1.29", "-"],
            Some(pod)
        )
        .status
        .code(),
        Some(0)
    );
}

#[test]
fn the_rule_reference_in_docs_is_generated_from_the_rule_table() {
    let o = kubebid(&["rules", "-o", "markdown"], None);
    assert_eq!(o.status.code(), Some(0));
    let generated = String::from_utf8(o.stdout).expect("utf8");
    let checked_in =
        std::fs::read_to_string(root().join("docs/rules.md")).expect("docs/rules.md exists");
    assert!(
        generated == checked_in,
        "docs/rules.md is stale: run `cargo run -q -- rules -o markdown > docs/rules.md`"
    );
    let listing = String::from_utf8(kubebid(&["rules"], None).stdout).expect("utf8");
    for id in [
        "pss/hostProbesAndHostLifecycle",
        "tenant/runtime-class",
        "tenant/netpol-namespace-selector",
    ] {
        assert!(listing.contains(id) && generated.contains(id), "{id}");
    }
    let rules: Value =
        serde_json::from_slice(&kubebid(&["rules", "-o", "json"], None).stdout).expect("json");
    assert_eq!(
        rules.as_array().expect("array").len(),
        kubebid_rule_count(&listing)
    );
}

fn kubebid_rule_count(listing: &str) -> usize {
    listing
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count()
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("kubebid-cli-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn serve_dns_refuses_a_bad_state_file_naming_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("kubebid-cli-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.yaml");
    std::fs::write(
        &state,
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: web, namespace: a}\n  spec:\n    ports: seven\n",
    )
    .unwrap();
    let out = kubebid(
        &[
            "serve",
            "dns",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--state",
            state.to_str().unwrap(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("state.yaml:8") && stderr.contains("items[0].spec.ports"),
        "{stderr}"
    );
    // A bad flag value is a usage error too, with the flag named.
    let out = kubebid(
        &[
            "serve",
            "dns",
            "--state",
            state.to_str().unwrap(),
            "--upstream",
            "resolver.example",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upstream"));
    let _ = std::fs::remove_dir_all(dir);
}

/// A Tenant put in a `--state` file instead of `--config` would leave every pod of its namespaces with the
/// platform's view: the server refuses to start, naming the file, the object and where it belongs.
#[test]
fn serve_dns_refuses_a_tenant_in_the_state_files() {
    let dir = std::env::temp_dir().join(format!("kubebid-cli-dns-tenant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.yaml");
    let mut text = std::fs::read_to_string(root().join("examples/dns/cluster-state.yaml")).unwrap();
    text.push_str("---\napiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec:\n  namespaces: [tenant-acme]\n");
    std::fs::write(&state, text).unwrap();
    let out = kubebid(
        &[
            "serve",
            "dns",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:1",
            "--state",
            state.to_str().unwrap(),
            "--config",
            "examples/config",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(out.status.code().is_some(), "exits, not killed: {stderr}");
    assert!(
        stderr.contains("state.yaml:")
            && stderr.contains("Tenant \"acme\"")
            && stderr.contains("Tenant objects belong in --config"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A CI gate pointed at the wrong path must not pass: a directory without manifests, or files without
/// objects, exit 2 with a message saying so.
#[test]
fn a_path_without_manifests_is_an_error_not_a_pass() {
    let dir = std::env::temp_dir().join(format!("kubebid-empty-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("notes.txt"), "not a manifest").expect("write");
    let o = kubebid(&["check", dir.to_str().expect("utf8")], None);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no manifest files"), "{err}");
    std::fs::write(dir.join("empty.yaml"), "# nothing here\n---\n").expect("write");
    let o = kubebid(&["check", dir.to_str().expect("utf8")], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no Kubernetes objects"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_sensor_refuses_a_bad_rule_file_or_watched_path_before_it_starts() {
    let d = tempdir();
    let tenants = d.join("tenants.yaml");
    std::fs::write(
        &tenants,
        "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec: {namespaces: [acme-prod]}\n",
    )
    .expect("write");
    let bad = d.join("bad.yaml");
    std::fs::write(
        &bad,
        "- rule: Typo\n  desc: d\n  condition: evt.type = execve and prc.name = sh\n  output: o\n  priority: INFO\n",
    )
    .expect("write");
    let run = |extra: &[&str]| {
        let mut args = vec!["serve", "sensor", "-c", tenants.to_str().expect("utf8")];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--duration", "1", "--metrics-listen", "127.0.0.1:0"]);
        kubebid(&args, None)
    };
    let out = run(&["--rules", bad.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:1: rule \"Typo\"", bad.display())) && err.contains("prc.name"),
        "{err}"
    );
    let out = run(&["--watch-path", "/etc/../etc/shadow"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--watch-path") && err.contains("plain spelling"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
