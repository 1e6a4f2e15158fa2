//! Loading `--state` and `--config` files: each kind has one place (a Tenant among the state would leave its
//! pods with the platform's view, so it is refused, not ignored), kinds the zone does not use are counted,
//! and directories are walked as every other command walks them.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

use kubebid_dns::state::{StateError, build_zone, load_config, load_state};
use kubebid_dns::zone::UnknownClients;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kubebid-dns-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const TENANT: &str = "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec:\n  namespaces: [tenant-acme]\n";

#[test]
fn a_tenant_given_as_state_is_refused_naming_file_line_kind_and_name() {
    let d = temp_dir("tenant");
    let state = std::fs::read_to_string(root().join("examples/dns/cluster-state.yaml")).unwrap();
    std::fs::write(d.join("state.yaml"), format!("{state}---\n{TENANT}")).unwrap();
    let errors = load_state(&[d.join("state.yaml")]).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    match &errors[0] {
        StateError::ConfigInState { at, kind, name } => {
            assert!(at.file.ends_with("state.yaml"), "{at}");
            assert_eq!(at.document, 1);
            assert_eq!((kind.as_str(), name.as_str()), ("Tenant", "acme"));
        }
        other => panic!("{other:?}"),
    }
    let message = errors[0].to_string();
    assert!(
        message.contains("state.yaml:")
            && message.contains("Tenant \"acme\"")
            && message.contains("Tenant objects belong in --config"),
        "{message}"
    );
    // The zone is not built from such files either.
    assert!(build_zone(&[d.join("state.yaml")], &[], UnknownClients::Deny).is_err());
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_kubebid_config_inside_a_list_is_refused_with_its_item() {
    let d = temp_dir("list");
    std::fs::write(
        d.join("state.yaml"),
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: kubebid.io/v1alpha1\n  kind: KubeBidConfig\n  metadata: {name: kubebid}\n  spec: {}\n",
    )
    .unwrap();
    let errors = load_state(&[d.join("state.yaml")]).unwrap_err();
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        message.contains("state.yaml:7: items[1]: KubeBidConfig \"kubebid\"")
            && message.contains("KubeBidConfig objects belong in --config"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn kinds_the_zone_does_not_use_are_ignored_and_counted() {
    let d = temp_dir("ignored");
    std::fs::write(
        d.join("state.yaml"),
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c, namespace: a}\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: d, namespace: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: e, namespace: a}\n",
    )
    .unwrap();
    let loaded = load_state(&[d.join("state.yaml")]).unwrap();
    assert_eq!(loaded.objects.namespaces.len(), 1);
    assert_eq!(loaded.ignored, 3);
    assert_eq!(loaded.warnings.len(), 1, "one warning per load");
    assert!(
        loaded.warnings[0].contains("3 objects")
            && loaded.warnings[0].contains("ConfigMap x2")
            && loaded.warnings[0].contains("Deployment x1"),
        "{}",
        loaded.warnings[0]
    );
    // The example state has nothing to ignore.
    let example = load_state(&[root().join("examples/dns/cluster-state.yaml")]).unwrap();
    assert_eq!(example.ignored, 0);
    assert!(example.warnings.is_empty());
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn state_given_as_config_is_refused() {
    let d = temp_dir("config");
    std::fs::write(
        d.join("config.yaml"),
        format!("{TENANT}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: tenant-acme}}\nspec: {{containers: [{{name: c}}]}}\n"),
    )
    .unwrap();
    let errors = load_config(&[d.join("config.yaml")]).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(&errors[0], StateError::StateInConfig { kind, name, .. } if kind == "Pod" && name == "p")
    );
    let message = errors[0].to_string();
    assert!(
        message.contains("config.yaml:7 (document 2): Pod \"p\"")
            && message.contains("Pod objects belong in --state"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(d);
}

/// `--state DIR` reads what `--config DIR` and `kubebid check DIR` read: nested directories in name order,
/// without hidden entries or files of other extensions.
#[test]
fn state_directories_are_walked_as_config_directories() {
    let d = temp_dir("walk");
    std::fs::create_dir_all(d.join("nested/deeper")).unwrap();
    std::fs::create_dir_all(d.join(".hidden")).unwrap();
    let ns = |n: &str| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n");
    std::fs::write(d.join("a.yaml"), ns("a")).unwrap();
    std::fs::write(d.join("nested/b.yml"), ns("b")).unwrap();
    std::fs::write(
        d.join("nested/deeper/c.json"),
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}"#,
    )
    .unwrap();
    std::fs::write(d.join(".hidden/tenant.yaml"), TENANT).unwrap();
    std::fs::write(d.join("notes.txt"), TENANT).unwrap();
    let loaded = load_state(std::slice::from_ref(&d)).unwrap();
    let names: Vec<_> = loaded
        .objects
        .namespaces
        .iter()
        .map(|n| n.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let (files, errors) = kubebid_dns::state::files_of(std::slice::from_ref(&d));
    assert!(errors.is_empty());
    let (inputs, _) = kubebid_model::input::expand(std::slice::from_ref(&d));
    assert_eq!(
        inputs,
        files
            .into_iter()
            .map(kubebid_model::input::Input::File)
            .collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn standard_input_and_missing_paths_are_errors() {
    let errors = load_state(&[PathBuf::from("-")]).unwrap_err();
    assert!(matches!(errors[..], [StateError::Stdin]), "{errors:?}");
    let errors = load_state(&[PathBuf::from("/nonexistent/state.yaml")]).unwrap_err();
    assert!(matches!(errors[..], [StateError::Input(_)]), "{errors:?}");
    assert!(
        errors[0]
            .to_string()
            .contains("/nonexistent/state.yaml: cannot read")
    );
}

/// On reload a change that does not load (here a Tenant slipped into the state) is handed to the failure
/// callback, which the server counts, and no zone is published: the one in service stays.
#[tokio::test]
async fn a_change_that_does_not_load_is_reported_not_published() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    let d = temp_dir("reload");
    let state = d.join("state.yaml");
    let good = std::fs::read_to_string(root().join("examples/dns/cluster-state.yaml")).unwrap();
    std::fs::write(&state, &good).unwrap();
    let published = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = tokio::spawn(kubebid_dns::state::watch_reporting(
        vec![state.clone()],
        vec![root().join("examples/config")],
        UnknownClients::Deny,
        Duration::from_millis(20),
        {
            let published = published.clone();
            move |_| {
                published.fetch_add(1, Ordering::SeqCst);
            }
        },
        {
            let failed = failed.clone();
            move |errors: &[StateError]| {
                assert!(
                    errors
                        .iter()
                        .any(|e| matches!(e, StateError::ConfigInState { .. }))
                );
                failed.fetch_add(1, Ordering::SeqCst);
            }
        },
        async move {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(60)).await;
    std::fs::write(&state, format!("{good}---\n{TENANT}")).unwrap();
    for _ in 0..200 {
        if failed.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(failed.load(Ordering::SeqCst), 1);
    assert_eq!(published.load(Ordering::SeqCst), 0);
    // Fixed again: published.
    std::fs::write(&state, &good).unwrap();
    for _ in 0..200 {
        if published.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(published.load(Ordering::SeqCst), 1);
    let _ = stop.send(());
    watch.await.unwrap();
    let _ = std::fs::remove_dir_all(d);
}
