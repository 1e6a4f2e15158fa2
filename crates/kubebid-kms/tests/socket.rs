//! The plugin's unix sockets: created 0600, a stale socket (nobody answers) replaced, a live one never taken
//! over, and any other file at the path refused.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;

use kubebid_kms::server::bind;

#[tokio::test]
async fn a_live_socket_is_never_taken_over_and_a_stale_one_is_replaced() {
    let dir = std::env::temp_dir().join(format!("kubebid-kms-sock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kms.sock");
    let _ = std::fs::remove_file(&path);

    let first = bind(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Someone serves on it: a second plugin refuses, and the first one's socket still answers.
    let err = bind(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        err.to_string().contains("another process serves on it"),
        "{err}"
    );
    let accepted = tokio::spawn(async move { first.accept().await.is_ok() });
    tokio::net::UnixStream::connect(&path).await.unwrap();
    assert!(accepted.await.unwrap());

    // The first plugin is gone (its listener dropped, the file left behind): the stale socket is replaced.
    assert!(path.exists());
    let second = bind(&path).unwrap();
    drop(second);

    // Not a socket: refused, and the file is left alone.
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, "keep me").unwrap();
    let err = bind(&path).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    let _ = std::fs::remove_dir_all(dir);
}
