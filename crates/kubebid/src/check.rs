//! `kubebid check`: runs the policy engine over manifests, offline.

use std::sync::Arc;

use jiff::Timestamp;
use kubebid_model::load::{ConfigSet, manifest_items};
use kubebid_model::{Object, SourceError};
use kubebid_policy::{Decision, Finding, PolicySet, Request};

use kubebid_model::input::{self as inputs, Input};

/// One object and what the engine decided.
pub struct ObjectReport {
    pub file: Arc<str>,
    pub document: usize,
    pub line: usize,
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub decision: Decision,
    /// Line of each finding's field, in the order of `decision.findings`.
    pub finding_lines: Vec<usize>,
}

impl ObjectReport {
    pub fn findings(&self) -> impl Iterator<Item = (&Finding, usize)> {
        self.decision
            .findings
            .iter()
            .zip(self.finding_lines.iter().copied())
    }
}

/// Everything `check` found.
#[derive(Default)]
pub struct Report {
    pub files: usize,
    pub objects: Vec<ObjectReport>,
    pub errors: Vec<SourceError>,
}

impl Report {
    pub fn denied_objects(&self) -> usize {
        self.objects.iter().filter(|o| o.decision.denied()).count()
    }
}

/// Reads `--config` paths into a policy set.
pub fn load_policy(config_paths: &[String]) -> Result<PolicySet, Vec<SourceError>> {
    if config_paths.is_empty() {
        return Ok(PolicySet::builtin());
    }
    PolicySet::from_config(&load_config_set(config_paths)?)
}

/// Reads `--config` paths into configuration objects.
pub fn load_config_set(config_paths: &[String]) -> Result<ConfigSet, Vec<SourceError>> {
    let (config_inputs, expand_errors) = inputs::expand(config_paths);
    let mut errors: Vec<SourceError> = expand_errors.into_iter().map(SourceError::from).collect();
    let mut set = ConfigSet::default();
    for input in &config_inputs {
        match inputs::read(input) {
            Ok(text) => errors.extend(set.add_text(&input.name(), &text)),
            Err(e) => errors.push(e.into()),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(set)
}

/// Checks every input. `progress` is called once per file read.
pub fn run(
    policy: &PolicySet,
    inputs: &[Input],
    namespace: Option<&str>,
    now: Timestamp,
    progress: &dyn Fn(),
) -> Report {
    let mut report = Report::default();
    for input in inputs {
        report.files += 1;
        let text = match inputs::read(input) {
            Ok(t) => t,
            Err(e) => {
                report.errors.push(e.into());
                progress();
                continue;
            }
        };
        check_text(policy, &input.name(), &text, namespace, now, &mut report);
        progress();
    }
    report
}

/// Checks the objects in one file's text.
pub fn check_text(
    policy: &PolicySet,
    file: &str,
    text: &str,
    namespace: Option<&str>,
    now: Timestamp,
    report: &mut Report,
) {
    let (items, errors) = manifest_items(file, text);
    report.errors.extend(errors);
    for item in items {
        let origin = item.origin;
        let object = match Object::from_value(item.value) {
            Ok(o) => o,
            Err(e) => {
                let field = if origin.prefix.is_empty() {
                    e.path.clone()
                } else {
                    format!("{}.{}", origin.prefix, e.path)
                };
                report.errors.push(SourceError {
                    file: origin.file.clone(),
                    document: origin.document,
                    line: origin.line_of(&e.path),
                    field,
                    message: e.message,
                });
                continue;
            }
        };
        let req = Request {
            namespace,
            now: Some(now),
            ..Request::create(&object)
        };
        let decision = policy.evaluate(&req);
        let finding_lines = decision
            .findings
            .iter()
            .map(|f| origin.line_of(&f.path))
            .collect();
        report.objects.push(ObjectReport {
            file: origin.file.clone(),
            document: origin.document,
            line: origin.line,
            api_version: object.api_version.clone(),
            kind: object.kind.clone(),
            namespace: object
                .namespace()
                .map(str::to_owned)
                .or_else(|| namespace.map(str::to_owned)),
            name: object.name().to_owned(),
            decision,
            finding_lines,
        });
    }
}
