//! What several of these tests share: a SoftHSM2 token of their own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Initialises a SoftHSM2 token labelled `kubebid` (user PIN 1234) whose files live in `dir/tokens`;
/// returns its configuration file, for `SOFTHSM2_CONF`. scripts/test installs softhsm2.
pub fn softhsm_token(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "kubebid",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util is installed (scripts/test installs softhsm2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}
