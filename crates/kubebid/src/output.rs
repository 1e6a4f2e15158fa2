//! Renders a check report as text (grouped by object, coloured on a terminal), JSON or SARIF 2.1.0.

use std::io::Write;

use anstyle::{AnsiColor, Style};
use kubebid_model::Action;
use kubebid_policy::RULES;
use serde::Serialize;
use serde_json::json;

use crate::check::Report;

/// Version of the JSON output schema; bumped only on incompatible change.
pub const JSON_SCHEMA_VERSION: &str = "kubebid.io/check/v1";

const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const BLUE: Style = AnsiColor::Blue.on_default();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();
const GREEN: Style = AnsiColor::Green.on_default().bold();

fn action_style(a: Action) -> Style {
    match a {
        Action::Enforce => RED,
        Action::Warn => YELLOW,
        Action::Audit | Action::Off => BLUE,
    }
}

/// Text output. `out` strips colour when it is not a terminal (anstream).
pub fn text(report: &Report, out: &mut dyn Write, verbose: bool) -> std::io::Result<()> {
    for e in &report.errors {
        writeln!(out, "{RED}error{RED:#} {e}")?;
    }
    for o in &report.objects {
        if o.decision.findings.is_empty() && (!verbose || o.decision.notes.is_empty()) {
            continue;
        }
        let ns = o
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        let tenant = o
            .decision
            .tenant
            .as_deref()
            .map(|t| format!("tenant {t}, "))
            .unwrap_or_default();
        let profile = o
            .decision
            .profile
            .map(|p| p.to_string())
            .unwrap_or_default();
        // Objects read from a cluster have no line (0): their place is the file alone.
        let place = if o.line == 0 {
            o.file.to_string()
        } else {
            format!("{}:{}", o.file, o.line)
        };
        writeln!(
            out,
            "{BOLD}{place}{BOLD:#} {} {ns}{} {DIM}({tenant}{profile}){DIM:#}",
            o.kind, o.name
        )?;
        for (f, line) in o.findings() {
            let style = if f.exception.is_some() {
                DIM
            } else {
                action_style(f.action)
            };
            let label = if f.exception.is_some() {
                "excepted"
            } else {
                f.action.as_str()
            };
            let at = if line == 0 {
                String::new()
            } else {
                format!(" {DIM}(line {line}){DIM:#}")
            };
            writeln!(
                out,
                "  {style}{label:<8}{style:#} {BOLD}{}{BOLD:#} {DIM}[{}]{DIM:#} {}{at}",
                f.rule.id,
                f.rule.severity.as_str(),
                f.path
            )?;
            writeln!(out, "           {}", f.message)?;
            match &f.exception {
                Some(e) => writeln!(out, "           {DIM}lifted by PolicyException {e}{DIM:#}")?,
                None => writeln!(out, "           {DIM}fix: {}{DIM:#}", f.rule.remediation)?,
            }
        }
        if verbose {
            for n in &o.decision.notes {
                writeln!(out, "  {DIM}note     {n}{DIM:#}")?;
            }
        }
    }
    let s = Summary::of(report);
    let verdict = if s.errors > 0 {
        format!("{RED}input errors{RED:#}")
    } else if s.denied_objects > 0 {
        format!("{RED}denied{RED:#}")
    } else {
        format!("{GREEN}ok{GREEN:#}")
    };
    writeln!(
        out,
        "{verdict}: {} objects in {} files; {} denied; findings: {} enforce, {} warn, {} audit, {} excepted; {} errors",
        s.objects, s.files, s.denied_objects, s.enforce, s.warn, s.audit, s.excepted, s.errors
    )
}

/// Totals, also part of the JSON output.
#[derive(Serialize, Default)]
pub struct Summary {
    pub files: usize,
    pub objects: usize,
    pub denied_objects: usize,
    pub findings: usize,
    pub enforce: usize,
    pub warn: usize,
    pub audit: usize,
    pub excepted: usize,
    pub errors: usize,
}

impl Summary {
    pub fn of(report: &Report) -> Self {
        let mut s = Summary {
            files: report.files,
            objects: report.objects.len(),
            errors: report.errors.len(),
            ..Default::default()
        };
        s.denied_objects = report.denied_objects();
        for o in &report.objects {
            for f in &o.decision.findings {
                s.findings += 1;
                if f.exception.is_some() {
                    s.excepted += 1;
                    continue;
                }
                match f.action {
                    Action::Enforce => s.enforce += 1,
                    Action::Warn => s.warn += 1,
                    Action::Audit => s.audit += 1,
                    Action::Off => {}
                }
            }
        }
        s
    }
}

/// One finding in the JSON output. Field names and meanings are stable within [`JSON_SCHEMA_VERSION`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonResult<'a> {
    file: &'a str,
    document: usize,
    line: usize,
    api_version: &'a str,
    kind: &'a str,
    namespace: Option<&'a str>,
    name: &'a str,
    tenant: Option<&'a str>,
    profile: Option<kubebid_model::Profile>,
    rule: &'a str,
    severity: kubebid_policy::Severity,
    action: Action,
    message: &'a str,
    path: &'a str,
    remediation: &'a str,
    exception: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonError<'a> {
    file: &'a str,
    document: usize,
    line: usize,
    field: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct JsonNote<'a> {
    file: &'a str,
    document: usize,
    kind: &'a str,
    name: &'a str,
    note: &'a str,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    schema: &'static str,
    results: Vec<JsonResult<'a>>,
    errors: Vec<JsonError<'a>>,
    notes: Vec<JsonNote<'a>>,
    summary: Summary,
}

/// JSON output; schema in docs/check-output.md.
pub fn json(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let results = report
        .objects
        .iter()
        .flat_map(|o| {
            o.findings().map(move |(f, line)| JsonResult {
                file: &o.file,
                document: o.document,
                line,
                api_version: &o.api_version,
                kind: &o.kind,
                namespace: o.namespace.as_deref(),
                name: &o.name,
                tenant: o.decision.tenant.as_deref(),
                profile: o.decision.profile,
                rule: f.rule.id,
                severity: f.rule.severity,
                action: f.action,
                message: &f.message,
                path: &f.path,
                remediation: f.rule.remediation,
                exception: f.exception.as_deref(),
            })
        })
        .collect();
    let notes = report
        .objects
        .iter()
        .flat_map(|o| {
            o.decision.notes.iter().map(move |n| JsonNote {
                file: &o.file,
                document: o.document,
                kind: &o.kind,
                name: &o.name,
                note: n,
            })
        })
        .collect();
    let errors = report
        .errors
        .iter()
        .map(|e| JsonError {
            file: &e.file,
            document: e.document,
            line: e.line,
            field: &e.field,
            message: &e.message,
        })
        .collect();
    let doc = JsonReport {
        schema: JSON_SCHEMA_VERSION,
        results,
        errors,
        notes,
        summary: Summary::of(report),
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

/// SARIF 2.1.0 output for code scanning.
pub fn sarif(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    use serde_sarif::sarif::{
        ArtifactLocation, Location, Message, MultiformatMessageString, PhysicalLocation, Region,
        ReportingDescriptor, Result as SarifResult, ResultLevel, Run, Sarif, Tool, ToolComponent,
    };
    let rules: Vec<ReportingDescriptor> = RULES
        .iter()
        .map(|r| {
            ReportingDescriptor::builder()
                .id(r.id)
                .name(r.title)
                .short_description(MultiformatMessageString::builder().text(r.title).build())
                .full_description(
                    MultiformatMessageString::builder()
                        .text(r.description)
                        .build(),
                )
                .help(
                    MultiformatMessageString::builder()
                        .text(r.remediation)
                        .build(),
                )
                .properties(
                    serde_sarif::sarif::PropertyBag::builder()
                        .additional_properties(std::collections::BTreeMap::from([
                            ("severity".to_owned(), json!(r.severity)),
                            ("profiles".to_owned(), json!(r.level.profiles())),
                        ]))
                        .build(),
                )
                .build()
        })
        .collect();
    let mut results = Vec::new();
    for o in &report.objects {
        for (f, line) in o.findings() {
            let level = match (f.exception.is_some(), f.action) {
                (false, Action::Enforce) => ResultLevel::Error,
                (false, Action::Warn) => ResultLevel::Warning,
                _ => ResultLevel::Note,
            };
            let region = Region::builder()
                .start_line(i64::try_from(line.max(1)).unwrap_or(i64::MAX))
                .build();
            let location = Location::builder()
                .physical_location(
                    PhysicalLocation::builder()
                        .artifact_location(
                            ArtifactLocation::builder().uri(o.file.to_string()).build(),
                        )
                        .region(region)
                        .build(),
                )
                .build();
            let text = format!(
                "{} {}/{}: {} ({})",
                o.kind,
                o.namespace.as_deref().unwrap_or("-"),
                o.name,
                f.message,
                f.path
            );
            let mut r = SarifResult::builder()
                .rule_id(f.rule.id)
                .message(Message::builder().text(text).build())
                .level(level)
                .locations(vec![location])
                .build();
            r.rule_index = RULES
                .iter()
                .position(|x| std::ptr::eq(x, f.rule))
                .and_then(|i| i64::try_from(i).ok());
            results.push(r);
        }
    }
    let driver = ToolComponent::builder()
        .name("kubebid")
        .version(env!("CARGO_PKG_VERSION"))
        .information_uri("https://kubebid.io")
        .rules(rules)
        .build();
    let run = Run::builder()
        .tool(Tool::builder().driver(driver).build())
        .results(results)
        .build();
    let sarif = Sarif::builder()
        .version(json!("2.1.0"))
        .schema(serde_sarif::sarif::SCHEMA_URL)
        .runs(vec![run])
        .build();
    serde_json::to_writer_pretty(&mut *out, &sarif)?;
    writeln!(out)
}
