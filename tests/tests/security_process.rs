//! The crash half of the security catalogue (the rest is `server/tests/security.rs`): bodies that
//! could take the relay down — JSON nested 100,000 levels deep, gzip bombs, bodies over the
//! limit — sent to a real relay process on loopback. Each is refused with its precise status and
//! JSON error code, and after each the same process (same pid) still answers `/healthz` quickly
//! and syncs; its log holds no panic.
//!
//! `cargo test -p shidao-tests --test security_process -- --nocapture` prints
//! `security_process: attacks=NN refused=NN`.

use std::io::Write as _;
use std::time::{Duration, Instant};

use shidao_core::sync::protocol::{self, SyncRequest, PROTOCOL};
use shidao_tests::{programme, Relay};

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn post(&self, path: &str, token: Option<&str>, gzip: bool, body: Vec<u8>) -> (u16, serde_json::Value) {
        let mut req = self.http.post(format!("{}{path}", self.url)).body(body);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if gzip {
            req = req.header("content-encoding", "gzip");
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// The relay still answers, quickly, and is the same process as before.
    async fn still_up(&self, relay: &mut Relay, pid: u32, after: &str) {
        let start = Instant::now();
        let resp = self.http.get(format!("{}/healthz", self.url)).send().await.unwrap_or_else(|e| panic!("after {after}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "after {after}");
        let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
        assert_eq!(v["status"], "ok", "after {after}");
        assert!(start.elapsed() < Duration::from_secs(2), "after {after}: /healthz took {:?}", start.elapsed());
        assert_eq!(relay.pid(), pid);
        assert_eq!(relay.wait_exit(Duration::from_millis(30)), None, "after {after}: the relay exited");
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

fn nested(depth: usize, open: &str, close: &str) -> Vec<u8> {
    format!("{}{}", open.repeat(depth), close.repeat(depth)).into_bytes()
}

#[tokio::test]
async fn hostile_bodies_do_not_take_the_relay_down() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let codes = programme(&db);
    let mut relay = Relay::start(env!("CARGO_BIN_EXE_relay").as_ref(), &db);
    let pid = relay.pid();
    let (mut tried, mut refused) = (0, 0);

    // 1. A tablet enrols (through the app's own client, which also sets up the TLS crypto that
    //    reqwest needs), so the sync endpoint reads what it is sent.
    let tablet = shidao_core::sync::http::HttpSync::new(&relay.url, None).expect("client");
    let token = tablet.enrol(&codes[0].1, "测试平板").await.expect("enrol").token;
    let client = Client { http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client"), url: relay.url.clone() };
    client.still_up(&mut relay, pid, "enrolment").await;

    // 2. JSON nested 100,000 levels deep, plain and gzip, on sync; 10,000 on enrolment (its
    //    limit is 64 KiB, so 100,000 levels are refused as too large before any parsing).
    // (what, path, gzip, body, status, code)
    type Attack = (String, &'static str, bool, Vec<u8>, u16, &'static str);
    let attacks: Vec<Attack> = vec![
        ("sync: 100k nested arrays".into(), "/v1/sync", false, nested(100_000, "[", "]"), 400, "bad_request"),
        ("sync: 100k nested arrays, gzip".into(), "/v1/sync", true, gzip(&nested(100_000, "[", "]")), 400, "bad_request"),
        ("sync: 100k nested objects".into(), "/v1/sync", false, nested(100_000, r#"{"a":"#, "}"), 400, "bad_request"),
        ("sync: 100k unclosed arrays, gzip".into(), "/v1/sync", true, gzip(&"[".repeat(100_000).into_bytes()), 400, "bad_request"),
        (
            "sync: 100k nested arrays in the push list".into(),
            "/v1/sync",
            false,
            format!(r#"{{"protocol":1,"request_id":"r","cursor":0,"push":{}}}"#, String::from_utf8(nested(100_000, "[", "]")).expect("utf8")).into_bytes(),
            400,
            "bad_request",
        ),
        ("enrol: 10k nested arrays".into(), "/v1/enrol", false, nested(10_000, "[", "]"), 400, "bad_request"),
        ("enrol: 10k nested objects".into(), "/v1/enrol", false, nested(10_000, r#"{"a":"#, "}"), 400, "bad_request"),
        ("enrol: 100k nested arrays".into(), "/v1/enrol", false, nested(100_000, "[", "]"), 413, "too_large"),
        // 3. A gzip bomb: about 65 KB that inflate past the 64 MiB limit.
        (
            "sync: gzip bomb".into(),
            "/v1/sync",
            true,
            gzip(&vec![b' '; protocol::MAX_DECOMPRESSED_BYTES as usize + 1024]),
            413,
            "too_large",
        ),
        // 4. A body over the 16 MiB limit.
        ("sync: 16 MiB + 1 byte".into(), "/v1/sync", true, vec![0u8; protocol::MAX_BODY_BYTES + 1], 413, "too_large"),
    ];
    for (what, path, gz, body, status, code) in attacks {
        tried += 1;
        let start = Instant::now();
        let (got, v) = client.post(path, Some(&token), gz, body).await;
        assert_eq!((got, v["code"].as_str()), (status, Some(code)), "{what}: {v}");
        assert!(start.elapsed() < Duration::from_secs(10), "{what} took {:?}", start.elapsed());
        client.still_up(&mut relay, pid, &what).await;
        refused += 1;
    }

    // 5. Four gzip bombs at once: all refused, the relay stays up and answers at once.
    tried += 1;
    let bomb = gzip(&vec![b'0'; protocol::MAX_DECOMPRESSED_BYTES as usize + 1024]);
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (http, url, token, bomb) = (client.http.clone(), client.url.clone(), token.clone(), bomb.clone());
        handles.push(tokio::spawn(async move {
            let c = Client { http, url };
            c.post("/v1/sync", Some(&token), true, bomb).await
        }));
    }
    for h in handles {
        let (status, v) = h.await.expect("task");
        assert_eq!((status, v["code"].as_str()), (413, Some("too_large")), "{v}");
    }
    assert!(start.elapsed() < Duration::from_secs(20), "four bombs took {:?}", start.elapsed());
    client.still_up(&mut relay, pid, "four gzip bombs at once").await;
    refused += 1;

    // 6. The relay still syncs, and its log shows no panic.
    let req = SyncRequest { protocol: PROTOCOL, request_id: "after-the-attacks".into(), cursor: 0, scope: None, reference: None, push: vec![], max_pull_bytes: None, want_forms: vec![], set_aside: vec![], app: None };
    let (status, _) = client.post("/v1/sync", Some(&token), true, protocol::encode(&req).expect("encode")).await;
    assert_eq!(status, 200);
    let log = relay.log();
    assert!(!log.contains("panicked") && !log.contains("overflow"), "{log}");
    println!("security_process: attacks={tried} refused={refused}");
}
