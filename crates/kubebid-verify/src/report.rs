//! The HTML report: the evidence an auditor receives. One self-contained page (no scripts, no fetched
//! styles or fonts), readable in any browser and printable: which cluster, when, by which KubeBid, a
//! verdict, a table of every probe with the benchmark check and the compliance controls it covers, and
//! every finding with its evidence. Each finding's row starts with a band in its result's colour, so the
//! page's structure can be checked from a screenshot.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::{Finding, coverage, result};

/// What identifies a run.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// The API server's URL.
    pub server: String,
    /// The cluster's identity: the `kube-system` Namespace's UID.
    pub cluster_id: String,
    /// The API server's version (`/version`'s `gitVersion`).
    pub server_version: String,
    /// When the run began and ended (RFC 3339).
    pub started: String,
    pub finished: String,
    /// The KubeBid that ran it.
    pub kubebid_version: String,
    /// The tenant the run was limited to, if one.
    pub tenant: Option<String>,
}

/// The colours of results: pass, fail, skip (also what a screenshot is checked against).
pub const PASS_RGB: (u8, u8, u8) = (0x1a, 0x7f, 0x37);
pub const FAIL_RGB: (u8, u8, u8) = (0xc6, 0x28, 0x28);
pub const SKIP_RGB: (u8, u8, u8) = (0x8a, 0x8f, 0x98);

fn rgb((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Text as HTML character data or a quoted attribute value.
#[must_use]
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && !matches!(c, '\n' | '\t') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn style() -> String {
    format!(
        "body{{font-family:'DejaVu Sans',Arial,sans-serif;margin:0;color:#1d1f23;background:#fff}}\
main{{padding:0 24px 24px}}\
header{{padding:16px 24px;color:#fff}}\
header.pass{{background:{pass}}}header.fail{{background:{fail}}}\
h1{{margin:0 0 4px;font-size:22px}}h2{{font-size:17px;margin:22px 0 8px}}\
table{{border-collapse:collapse;width:100%;font-size:13px}}\
th,td{{text-align:left;vertical-align:top;padding:4px 8px;border-bottom:1px solid #e3e5e8}}\
th{{background:#f3f4f6}}\
dl{{display:grid;grid-template-columns:max-content auto;gap:2px 16px;font-size:13px}}dt{{font-weight:bold}}dd{{margin:0}}\
td.band{{width:10px;padding:0}}\
tr.pass td.band{{background:{pass}}}tr.fail td.band{{background:{fail}}}tr.skip td.band{{background:{skip}}}\
td.result{{font-weight:bold;width:40px}}\
ul{{margin:0;padding-left:16px}}code{{font-size:12px}}\
@media print{{header{{-webkit-print-color-adjust:exact;print-color-adjust:exact}}}}",
        pass = rgb(PASS_RGB),
        fail = rgb(FAIL_RGB),
        skip = rgb(SKIP_RGB)
    )
}

/// The report for `findings` of the run `meta` describes.
#[must_use]
pub fn html(meta: &Meta, findings: &[Finding]) -> String {
    let count = |r: &str| findings.iter().filter(|f| result(f) == r).count();
    let (passed, failed, skipped) = (count("pass"), count("fail"), count("skip"));
    let verdict = if failed == 0 { "pass" } else { "fail" };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>KubeBid isolation report: {}</title><style>{}</style></head><body>\n",
        escaped(&meta.server),
        style()
    );
    let _ = writeln!(
        out,
        "<header class=\"{verdict}\"><h1>KubeBid isolation report: {}</h1><div id=\"verdict\">{}: {} probes, {passed} passed, {failed} failed, {skipped} skipped</div></header><main>",
        if failed == 0 {
            "isolation holds"
        } else {
            "isolation FAILS"
        },
        if failed == 0 { "PASS" } else { "FAIL" },
        findings.len()
    );
    out.push_str("<h2>Run</h2><dl>");
    for (k, v) in [
        ("Cluster", meta.server.as_str()),
        ("Cluster ID (kube-system UID)", meta.cluster_id.as_str()),
        ("Kubernetes", meta.server_version.as_str()),
        ("Started", meta.started.as_str()),
        ("Finished", meta.finished.as_str()),
        ("KubeBid", meta.kubebid_version.as_str()),
        ("Tenants", meta.tenant.as_deref().unwrap_or("all")),
    ] {
        let _ = write!(out, "<dt>{k}</dt><dd>{}</dd>", escaped(v));
    }
    out.push_str("</dl>\n<h2>Probes and what they cover</h2><table id=\"coverage\"><tr><th>Probe</th><th>Multi-tenancy benchmark check</th><th>Controls</th><th>Pass</th><th>Fail</th><th>Skip</th></tr>\n");
    let mut by_probe: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for f in findings {
        let e = by_probe.entry(f.probe).or_default();
        match result(f) {
            "pass" => e.0 += 1,
            "fail" => e.1 += 1,
            _ => e.2 += 1,
        }
    }
    for (probe, (p, f, s)) in &by_probe {
        let (mtb, controls) = coverage(probe);
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{p}</td><td>{f}</td><td>{s}</td></tr>",
            escaped(probe),
            escaped(mtb),
            escaped(&controls.join(", "))
        );
    }
    out.push_str("</table>\n<h2>Findings</h2><table id=\"findings\"><tr><th></th><th>Result</th><th>Probe</th><th>Tenant</th><th>Other tenant</th><th>As</th><th>Namespace</th><th>Evidence</th></tr>\n");
    // Failures first: an auditor reads them before the passes.
    let mut ordered: Vec<&Finding> = findings.iter().collect();
    ordered.sort_by_key(|f| match result(f) {
        "fail" => 0,
        "skip" => 2,
        _ => 1,
    });
    for f in ordered {
        let r = result(f);
        let evidence: String = f
            .evidence
            .iter()
            .map(|e| format!("<li>{}</li>", escaped(e)))
            .collect();
        let _ = writeln!(
            out,
            "<tr class=\"{r}\"><td class=\"band\"></td><td class=\"result\">{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><ul>{evidence}</ul></td></tr>",
            r.to_uppercase(),
            escaped(f.probe),
            escaped(&f.tenant),
            escaped(f.other.as_deref().unwrap_or("")),
            escaped(&f.identity),
            escaped(f.namespace.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table></main></body></html>\n");
    out
}
