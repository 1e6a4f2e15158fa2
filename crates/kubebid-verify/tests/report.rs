//! The HTML report: escaped and complete as text, and, rendered by a real headless Chromium (Debian's
//! package; `scripts/test` installs it), laid out as specified: a banner in the verdict's colour, then one
//! band per finding in its result's colour, failures first.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use kubebid_verify::Finding;
use kubebid_verify::report::{FAIL_RGB, Meta, PASS_RGB, SKIP_RGB, html};

fn finding(
    probe: &'static str,
    tenant: &str,
    passed: bool,
    skipped: bool,
    evidence: &str,
) -> Finding {
    Finding {
        probe,
        tenant: tenant.into(),
        other: Some("globex".into()),
        identity: "alice@acme.example".into(),
        namespace: Some("acme-prod".into()),
        passed,
        skipped,
        evidence: vec![evidence.into()],
    }
}

fn findings() -> Vec<Finding> {
    vec![
        finding(
            "control-plane/foreign-namespace",
            "acme",
            true,
            false,
            "no rule beyond the baseline",
        ),
        finding(
            "network/reachability",
            "acme",
            false,
            false,
            "acme-prod → globex: out by acme-prod/out egress rule 1; in by globex/partner ingress rule 1",
        ),
        finding(
            "admission/hostile",
            "acme",
            true,
            false,
            "privileged pod: refused (403): <script>alert(1)</script>",
        ),
        finding(
            "dns/foreign-names",
            "acme",
            true,
            true,
            "not checked: no --dns given",
        ),
        finding(
            "data/secrets-at-rest",
            "globex",
            false,
            false,
            "globex/plain: stored in the clear (protobuf)",
        ),
        finding("compute/pods", "globex", true, false, ""),
    ]
}

fn meta() -> Meta {
    Meta {
        server: "https://api.prod.example:6443".into(),
        cluster_id: "6f1c0d1e-8a7b-4c55-9d0e-3b2a1f4e5d6c".into(),
        server_version: "v1.35.0".into(),
        started: "2026-11-29T10:00:00Z".into(),
        finished: "2026-11-29T10:00:41Z".into(),
        kubebid_version: env!("CARGO_PKG_VERSION").into(),
        tenant: None,
    }
}

#[test]
fn the_report_names_the_run_and_escapes_what_the_cluster_said() {
    let page = html(&meta(), &findings());
    assert!(page.starts_with("<!DOCTYPE html>"));
    for must in [
        "https://api.prod.example:6443",
        "6f1c0d1e-8a7b-4c55-9d0e-3b2a1f4e5d6c",
        "v1.35.0",
        "2026-11-29T10:00:41Z",
        "FAIL: 6 probes, 3 passed, 2 failed, 1 skipped",
        "PCI DSS 1.3",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
    ] {
        assert!(page.contains(must), "{must} missing");
    }
    assert!(!page.contains("<script>"), "nothing runs in the report");
    assert!(
        !page.contains("http://") && !page.contains("src="),
        "nothing is fetched"
    );
    assert_eq!(page.matches("<tr class=\"fail\">").count(), 2);
    assert_eq!(page.matches("<tr class=\"pass\">").count(), 3);
    assert_eq!(page.matches("<tr class=\"skip\">").count(), 1);
    let all_pass: Vec<Finding> = findings().into_iter().filter(|f| f.passed).collect();
    assert!(html(&meta(), &all_pass).contains("<header class=\"pass\">"));
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Renders `page` to a PNG screenshot: its width, height and RGB pixels.
fn screenshot(browser: &str, page: &str, dir: &Path) -> (usize, usize, Vec<u8>) {
    let file = dir.join("report.html");
    std::fs::write(&file, page).unwrap();
    let shot = dir.join("report.png");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(["--window-size=1100,1400"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", file.display()))
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // For the docs: KUBEBID_REPORT_SHOT=path keeps a copy of the first screenshot.
    if let Some(keep) =
        std::env::var_os("KUBEBID_REPORT_SHOT").filter(|_| !dir.join("kept").exists())
    {
        std::fs::copy(&shot, keep).unwrap();
        std::fs::write(dir.join("kept"), "").unwrap();
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let rgb: Vec<u8> = buf[..info.buffer_size()]
        .chunks(channels)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width as usize, info.height as usize, rgb)
}

fn near(p: &[u8], (r, g, b): (u8, u8, u8)) -> bool {
    p[0].abs_diff(r) <= 3 && p[1].abs_diff(g) <= 3 && p[2].abs_diff(b) <= 3
}

#[test]
fn headless_chromium_shows_a_verdict_banner_and_one_band_per_finding() {
    let Some(browser) = chromium() else {
        println!("SKIPPED: no Chromium here (scripts/test installs Debian's chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (w, h, px) = screenshot(browser, &html(&meta(), &findings()), dir.path());
    assert_eq!((w, h), (1100, 1400));
    let at = |x: usize, y: usize| &px[(y * w + x) * 3..(y * w + x) * 3 + 3];
    // The banner: the verdict's colour across the page, from the top.
    assert!(near(at(3, 3), FAIL_RGB) && near(at(w - 4, 3), FAIL_RGB));
    let banner = (0..h).find(|y| !near(at(3, *y), FAIL_RGB)).unwrap();
    assert!(banner > 20, "banner {banner}px");
    // Down the findings' first column (main is padded 24px; the band is 10px wide): one run of colour
    // per finding, failures first, then passes, then skips.
    let x = 24 + 5;
    let mut runs = Vec::new();
    let mut last = None;
    for y in banner..h {
        let p = at(x, y);
        let c = [("F", FAIL_RGB), ("P", PASS_RGB), ("S", SKIP_RGB)]
            .into_iter()
            .find(|(_, c)| near(p, *c))
            .map(|(n, _)| n);
        if let Some(now) = c
            && c != last
        {
            runs.push(now);
        }
        last = c;
    }
    assert_eq!(runs, ["F", "F", "P", "P", "P", "S"]);
    // All passing: the banner is the pass colour.
    let passing: Vec<Finding> = findings().into_iter().filter(|f| f.passed).collect();
    let (w2, _, px2) = screenshot(browser, &html(&meta(), &passing), dir.path());
    assert!(near(&px2[(3 * w2 + 3) * 3..(3 * w2 + 3) * 3 + 3], PASS_RGB));
}
