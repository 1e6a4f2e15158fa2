//! The rule language: loading several files, appends and overrides, lists, macros, exceptions, operators,
//! errors with locations, and the report.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use kubebid_rules::{AuditEvent, Engine, K8sAudit, Loader, Priority, RuleSet, RuleStatus, Scratch};
use serde_json::{Value, json};

const BASE: &str = r#"
- list: verbs_a
  items: [create]
- list: verbs_b
  items: [verbs_a, update]
- macro: m_write
  condition: ka.verb in (verbs_b)
- rule: Writes
  desc: writes
  condition: m_write and ka.target.resource=pods
  output: "write by %ka.user.name to %(ka.target.name) uri %ka.uri.param[dryRun]"
  priority: notice
  source: k8s_audit
  tags: [a]
- rule: Syscall Rule
  desc: not for this source
  condition: proc.name = sh
  output: "%proc.name"
  priority: warning
- rule: Unknown Field Rule
  desc: uses a field k8s_audit lacks
  condition: ka.verb = get and container.id exists
  output: x
  priority: info
  source: k8s_audit
- rule: Skipped Rule
  desc: skipped silently
  condition: fd.name exists
  output: x
  priority: debug
  source: k8s_audit
  skip-if-unknown-filter: true
"#;

fn event(verb: &str, user: &str, resource: &str) -> Value {
    json!({"auditID": "1", "stage": "ResponseComplete", "verb": verb, "user": {"username": user, "groups": ["g1", "g2"]},
           "objectRef": {"resource": resource, "name": "p1", "namespace": "ns"}, "requestURI": "/api?dryRun=All",
           "responseStatus": {"code": 200}, "stageTimestamp": "2026-01-02T03:04:05.000000006Z"})
}

fn names(engine: &Engine<K8sAudit>, ev: &Value) -> Vec<String> {
    let mut s = Scratch::new();
    engine
        .matches(&AuditEvent::new(ev), &mut s)
        .iter()
        .map(|&i| engine.rules()[i as usize].name().to_owned())
        .collect()
}

fn load(files: &[&str]) -> RuleSet {
    let mut l = Loader::new();
    for (i, f) in files.iter().enumerate() {
        l.add(&format!("f{i}.yaml"), f)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    l.finish().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn lists_macros_and_report() {
    let set = load(&[BASE]);
    let e = Engine::compile(&set, K8sAudit::new()).unwrap();
    assert_eq!(names(&e, &event("update", "bob", "pods")), vec!["Writes"]);
    assert_eq!(names(&e, &event("create", "bob", "pods")), vec!["Writes"]);
    assert!(names(&e, &event("get", "bob", "pods")).is_empty());
    let alert = e
        .alerts(
            &AuditEvent::new(&event("create", "bob", "pods")),
            &mut Scratch::new(),
        )
        .remove(0);
    assert_eq!(alert.message, "write by bob to p1 uri All");
    assert_eq!(alert.priority, Priority::Notice);
    let r = e.report();
    let status = |n: &str| r.rules.iter().find(|x| x.name == n).unwrap().status.clone();
    assert_eq!(status("Writes"), RuleStatus::Evaluable);
    assert_eq!(status("Syscall Rule"), RuleStatus::OtherSource);
    assert_eq!(
        status("Unknown Field Rule"),
        RuleStatus::UnsupportedFields {
            fields: vec!["container.id".into()],
            skipped: false
        }
    );
    assert_eq!(
        status("Skipped Rule"),
        RuleStatus::UnsupportedFields {
            fields: vec!["fd.name".into()],
            skipped: true
        }
    );
    let text = r.to_string();
    assert!(
        text.contains("Syscall Rule: not evaluable: source syscall is not loaded"),
        "{text}"
    );
    assert!(text.contains("unsupported fields container.id"), "{text}");
}

#[test]
fn appends_and_overrides_across_files() {
    let later = r#"
- list: verbs_a
  items: [delete]
  append: true
- macro: m_write
  condition: or ka.verb = patch
  append: true
- rule: Writes
  condition: and not ka.user.name in (admin)
  output: "(appended)"
  tags: [b]
  append: true
- rule: Syscall Rule
  enabled: false
"#;
    let set = load(&[BASE, later]);
    let e = Engine::compile(&set, K8sAudit::new()).unwrap();
    assert_eq!(
        names(&e, &event("delete", "bob", "pods")),
        vec!["Writes"],
        "list append"
    );
    assert_eq!(
        names(&e, &event("patch", "bob", "pods")),
        vec!["Writes"],
        "macro append"
    );
    assert!(
        names(&e, &event("create", "admin", "pods")).is_empty(),
        "rule condition append"
    );
    let w = set.rule("Writes").unwrap();
    assert_eq!(w.tags, vec!["a", "b"]);
    assert!(w.output.ends_with("(appended)"));
    assert!(!set.rule("Syscall Rule").unwrap().enabled);

    let replace = r#"
- rule: Writes
  condition: ka.verb = get
  priority: critical
  override:
    condition: replace
    priority: replace
"#;
    let set = load(&[BASE, replace]);
    let e = Engine::compile(&set, K8sAudit::new()).unwrap();
    assert_eq!(names(&e, &event("get", "x", "secrets")), vec!["Writes"]);
    assert_eq!(set.rule("Writes").unwrap().priority, Priority::Critical);
}

#[test]
fn exceptions_compile_into_the_condition() {
    let rules = r#"
- list: trusted
  items: [ci, deployer]
- rule: R
  desc: d
  condition: ka.verb = create
  output: o
  priority: info
  source: k8s_audit
  exceptions:
    - name: by_user_and_resource
      fields: [ka.user.name, ka.target.resource]
      values:
        - [alice, pods]
    - name: by_prefix
      fields: [ka.user.name]
      comps: [startswith]
      values:
        - ["system:"]
    - name: single_field
      fields: ka.user.name
      values: [trusted, carol]
"#;
    let set = load(&[rules]);
    let e = Engine::compile(&set, K8sAudit::new()).unwrap();
    assert_eq!(names(&e, &event("create", "alice", "secrets")), vec!["R"]);
    assert!(names(&e, &event("create", "alice", "pods")).is_empty());
    assert!(names(&e, &event("create", "system:kube-scheduler", "pods")).is_empty());
    assert!(
        names(&e, &event("create", "deployer", "pods")).is_empty(),
        "list name expanded in values"
    );
    assert!(names(&e, &event("create", "carol", "pods")).is_empty());
    assert_eq!(names(&e, &event("create", "dave", "pods")), vec!["R"]);

    let appended = r#"
- rule: R
  exceptions:
    - name: single_field
      values: [dave]
  append: true
"#;
    let set = load(&[rules, appended]);
    let e = Engine::compile(&set, K8sAudit::new()).unwrap();
    assert!(names(&e, &event("create", "dave", "pods")).is_empty());
}

#[test]
fn operators() {
    let cond = |c: &str| {
        format!(
            "- rule: R\n  desc: d\n  condition: '{c}'\n  output: o\n  priority: info\n  source: k8s_audit\n"
        )
    };
    let ev = event("create", "Bob.Smith", "pods");
    for (c, want) in [
        ("ka.user.name icontains bob", true),
        ("ka.user.name contains bob", false),
        ("ka.user.name glob \"B*.S?ith\"", true),
        ("ka.user.groups intersects (g2, g9)", true),
        ("ka.user.groups in (g1, g2, g3)", true),
        ("ka.user.groups in (g1)", false),
        ("ka.response.code >= 200 and ka.response.code < 300", true),
        ("ka.response.code > 200", false),
        ("ka.target.namespace != other", true),
        ("ka.impuser.name != other", false),
        ("ka.impuser.name exists", false),
        ("not ka.impuser.name exists", true),
        ("ka.uri startswith /api and ka.uri endswith All", true),
        ("ka.uri pmatch (/zzz, \"/api?dryRun=All\")", true),
        ("ka.uri pmatch (/ap)", false),
        ("ka.user.name bcontains 426f62", true),
        ("ka.user.name bstartswith 6f", false),
        ("ka.target.name = val(ka.target.name)", true),
        ("ka.target.name != val(ka.target.namespace)", true),
        ("jevt.rawtime = 1767323045000000006", true),
        (
            "jevt.value[/objectRef/name] = p1 and ka.verb == \"create\"",
            true,
        ),
        (
            "(ka.verb = get or ka.verb = create) and not (ka.verb = get)",
            true,
        ),
    ] {
        let set = load(&[&cond(c)]);
        let e = Engine::compile(&set, K8sAudit::new()).unwrap_or_else(|err| panic!("{c}: {err}"));
        assert_eq!(names(&e, &ev) == vec!["R"], want, "{c}");
    }
}

#[test]
fn errors_name_file_item_and_line() {
    let mut l = Loader::new();
    l.add("a.yaml", BASE).unwrap();
    let e = l
        .add(
            "b.yaml",
            "- rule: Broken\n  desc: d\n  condition: x\n  output: o\n  priority: urgent\n",
        )
        .unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.item.as_deref(), e.line),
        ("b.yaml", Some("rule \"Broken\""), Some(1))
    );
    assert!(e.message.contains("unknown priority"), "{e}");

    let e = l
        .add(
            "c.yaml",
            "- list: l\n  items: [a]\n- macro: m\n  condition: x\n  append: true\n",
        )
        .unwrap_err();
    assert_eq!((e.item.as_deref(), e.line), (Some("macro \"m\""), Some(3)));

    let e = l.add("d.yaml", "- rule: R\n  desc: d\n").unwrap_err();
    assert!(
        e.message.contains("missing condition, output, priority"),
        "{e}"
    );

    let e = l.add("e.yaml", "- rule: [unclosed\n").unwrap_err();
    assert_eq!((e.file.as_str(), e.item.as_deref()), ("e.yaml", None));
    assert!(e.line.is_some(), "{e}");

    let e = l.add("f.yaml", "- something: else\n").unwrap_err();
    assert!(e.message.contains("unknown top-level item"), "{e}");

    let mut l = Loader::new();
    l.add("g.yaml", "\n\n- rule: Bad Syntax\n  desc: d\n  condition: ka.verb = get and\n  output: o\n  priority: info\n").unwrap();
    let e = l.finish().unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.item.as_deref(), e.line),
        ("g.yaml", Some("rule \"Bad Syntax\""), Some(3))
    );
    assert!(
        e.to_string()
            .starts_with("g.yaml:3: rule \"Bad Syntax\": condition:"),
        "{e}"
    );

    let set = RuleSet::from_yaml("h.yaml", "- rule: R\n  desc: d\n  condition: no_such_macro\n  output: o\n  priority: info\n  source: k8s_audit\n").unwrap();
    let e = Engine::compile(&set, K8sAudit::new()).unwrap_err();
    assert!(
        e.message.contains("undefined macro \"no_such_macro\""),
        "{e}"
    );

    let set = RuleSet::from_yaml("i.yaml", "- macro: a\n  condition: b\n- macro: b\n  condition: a\n- rule: R\n  desc: d\n  condition: a\n  output: o\n  priority: info\n  source: k8s_audit\n").unwrap();
    assert!(
        Engine::compile(&set, K8sAudit::new())
            .unwrap_err()
            .message
            .contains("refers to itself")
    );

    let set = RuleSet::from_yaml("j.yaml", "- list: a\n  items: [b]\n- list: b\n  items: [a]\n- rule: R\n  desc: d\n  condition: ka.verb in (a)\n  output: o\n  priority: info\n  source: k8s_audit\n").unwrap();
    assert!(
        Engine::compile(&set, K8sAudit::new())
            .unwrap_err()
            .message
            .contains("nests too deeply")
    );
}

#[test]
fn priorities_order_and_parse() {
    assert!(Priority::Emergency > Priority::Alert && Priority::Notice > Priority::Informational);
    assert_eq!("WARNING".parse::<Priority>(), Ok(Priority::Warning));
    assert_eq!("info".parse::<Priority>(), Ok(Priority::Informational));
    assert!("urgent".parse::<Priority>().is_err());
    let mut all = Priority::ALL;
    all.sort();
    assert_eq!(all.first(), Some(&Priority::Debug));
    assert_eq!(Priority::Informational.to_string(), "Informational");
}
