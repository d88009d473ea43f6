//! The relay over HTTPS: a tablet that trusts the server's certificate enrols and syncs; one that
//! does not trust it cannot connect at all.

use std::process::Command;

use shidao_core::sync::http::{DriverError, HttpSync};
use shidao_tests::{programme, school, Relay, Tablet};

#[tokio::test]
async fn tablets_sync_over_https() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    // 1. A self-signed certificate for localhost (openssl is part of the base system).
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed to test HTTPS (Debian package `openssl`)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));

    // 2. The relay serves HTTPS with it.
    let db = dir.path().join("central.db");
    let codes = programme(&db);
    let relay = Relay::start_with(
        env!("CARGO_BIN_EXE_relay").as_ref(),
        &db,
        &["--tls-cert", &cert.display().to_string(), "--tls-key", &key.display().to_string()],
    );
    assert!(relay.url.starts_with("https://"), "{}", relay.url);
    let url = relay.url.replace("127.0.0.1", "localhost");

    // 3. A tablet that does not trust the certificate cannot even enrol.
    let untrusting = HttpSync::new(&url, None).expect("client");
    let err = untrusting.enrol(&codes[0].1, "平板").await.expect_err("untrusted certificate");
    assert!(matches!(err, DriverError::Network(_)), "{err:?}");

    // 4. One that trusts it enrols and syncs a record.
    let pem = std::fs::read(&cert).expect("cert");
    let wang = Tablet::enrol_trusting(&url, &codes[0].1, &dir.path().join("wang.db"), Some(&pem)).await.expect("enrol");
    wang.store.create("inspection-visit", &school("ouhai-a"), &wang.editor).expect("record");
    let summary = wang.sync().await.expect("sync over https");
    assert_eq!(summary.accepted, 1);
}
