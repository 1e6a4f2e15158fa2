//! Runs every upstream Pod Security Admission fixture (kept in `tests/data/psa`, with upstream's licence and
//! the commit they come from) at its level and version, and checks that `KubeBid` decides as PSA does.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use kubebid_model::load::manifest_items;
use kubebid_model::{Object, Profile, PssVersion};
use kubebid_policy::{PolicySet, Request};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/psa")
}

/// The check that replaces `check` at restricted in version `minor`, as in PSA's overrides.
fn restricted_replacement(check: &str, minor: u16) -> Option<&'static str> {
    match check {
        "capabilities_baseline" if minor >= 22 => Some("capabilities_restricted"),
        "hostPathVolumes" => Some("restrictedVolumes"),
        "seccompProfile_baseline" if minor >= 19 => Some("seccompProfile_restricted"),
        "procMount" if minor >= 35 => Some("procMount_restricted"),
        _ => None,
    }
}

#[test]
fn every_psa_fixture_agrees() {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; the PSA fixtures are required",
            dir.join("manifest.tsv").display()
        )
    });
    let mut policies = std::collections::HashMap::new();
    let (mut total, mut agreed) = (0usize, 0usize);
    let mut failures = Vec::new();
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(cols.len() >= 5, "malformed manifest row {line:?}");
        let (level, version, expected, check, path) = (cols[0], cols[1], cols[2], cols[3], cols[4]);
        let substring = cols.get(5).copied().unwrap_or_default();
        total += 1;
        let profile = Profile::parse(level).expect("level is a profile");
        let v = PssVersion::parse(version).expect("version parses");
        let policy = policies
            .entry((level.to_owned(), version.to_owned()))
            .or_insert_with(|| {
                PolicySet::builtin()
                    .with_profile(profile)
                    .with_pss_version(v)
            });
        let text = std::fs::read_to_string(dir.join(path)).expect("fixture readable");
        let (items, errors) = manifest_items(path, &text);
        assert!(errors.is_empty(), "{path}: {errors:?}");
        assert_eq!(items.len(), 1, "{path}: one object per fixture");
        let object =
            Object::from_value(items[0].value.clone()).unwrap_or_else(|e| panic!("{path}: {e}"));
        let decision = policy.evaluate(&Request::create(&object));
        let ok = if expected == "pass" {
            !decision.denied()
        } else {
            let wanted = format!("pss/{check}");
            let replacement = (level == "restricted")
                .then(|| restricted_replacement(check, v.minor))
                .flatten()
                .map(|r| format!("pss/{r}"));
            decision.denied()
                && decision.findings.iter().any(|f| {
                    (f.rule.id == wanted || Some(f.rule.id) == replacement.as_deref())
                        && f.message.contains(substring)
                })
        };
        if ok {
            agreed += 1;
        } else {
            let got: Vec<String> = decision
                .findings
                .iter()
                .map(|f| format!("{} {} ({})", f.rule.id, f.path, f.message))
                .collect();
            failures.push(format!(
                "{level} {version} {expected} {check} {path}: {got:?}"
            ));
        }
    }
    println!("PSA conformance: {agreed}/{total} fixtures agree");
    assert!(
        failures.is_empty(),
        "{} of {total} disagree:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(total, 4537, "the corpus should hold 4,537 fixtures");
}
