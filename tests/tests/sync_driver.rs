//! The HTTP driver as an app uses it: progress after every round, cancellation of a sync that
//! hangs, clear errors for a bad address and an unreachable server, and retries that ride out a
//! relay restart.

use std::time::{Duration, Instant};

use shidao_core::sample::{fill_completely, Rng};
use shidao_core::sync::http::{Cancel, DriverError, HttpSync, RetryPolicy};
use shidao_tests::{programme, school, Relay, Tablet};

#[tokio::test]
async fn progress_cancel_errors_and_retries() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let codes = programme(&db);
    let mut relay = Relay::start(env!("CARGO_BIN_EXE_relay").as_ref(), &db);
    let mut wang = Tablet::enrol(&relay.url, &codes[0].1, &dir.path().join("wang.db")).await.expect("enrol");

    // 1. Many records in small requests: progress is reported after every round, ending done.
    let mut rng = Rng::new(5);
    for _ in 0..12 {
        let mut r = wang.store.create("classroom-observation", &school("ouhai-a"), &wang.editor).expect("create");
        wang.store.edit(&mut r, |r| fill_completely(r, 1, &mut rng)).expect("fill");
    }
    wang.http.sync.max_push_bytes = 4 * 1024;
    let mut seen = Vec::new();
    let summary = wang.http.sync(&wang.store, &wang.token, &wang.editor, &Cancel::new(), |p| seen.push(p.clone())).await.expect("sync");
    assert_eq!(summary.accepted, 12);
    assert!(seen.len() >= 3, "several rounds: {}", seen.len());
    assert!(seen.windows(2).all(|w| w[1].pushed >= w[0].pushed && w[1].round == w[0].round + 1));
    assert!(seen.last().expect("progress").done && seen.last().expect("progress").bytes_sent > 0);

    // 2. A relay that stops answering (SIGSTOP): cancelling ends the sync at once.
    let pid = relay.pid().to_string();
    std::process::Command::new("kill").args(["-STOP", &pid]).status().expect("stop");
    let cancel = Cancel::new();
    let c = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c.cancel();
    });
    let r = wang.store.create("inspection-visit", &school("ouhai-a"), &wang.editor).expect("create");
    let start = Instant::now();
    let err = wang.http.sync(&wang.store, &wang.token, &wang.editor, &cancel, |_| {}).await.expect_err("cancelled");
    assert!(matches!(err, DriverError::Cancelled), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(5), "cancel took {:?}", start.elapsed());
    std::process::Command::new("kill").args(["-CONT", &pid]).status().expect("continue");
    assert!(wang.store.contains(r.id()).expect("kept"), "the unsent record is still on the tablet");

    // 3. A bad address and an unreachable server give errors an app can show.
    assert!(matches!(HttpSync::new("not a url", None), Err(DriverError::Address(_))));
    let mut nowhere = HttpSync::new("http://127.0.0.1:9", None).expect("client");
    nowhere.policy = RetryPolicy { attempts: 1, ..RetryPolicy::default() };
    let err = nowhere.sync(&wang.store, &wang.token, &wang.editor, &Cancel::new(), |_| {}).await.expect_err("unreachable");
    assert!(matches!(err, DriverError::Network(_)), "{err:?}");

    // 4. Retries with backoff ride out a restart that happens while the tablet is retrying.
    let old_url = relay.url.clone();
    let port = old_url.rsplit(':').next().expect("port").to_string();
    relay.kill();
    let mut retrying = HttpSync::new(&old_url, None).expect("client");
    retrying.policy = RetryPolicy { attempts: 6, first_delay: Duration::from_millis(200), ..RetryPolicy::default() };
    let db2 = db.clone();
    let bin = env!("CARGO_BIN_EXE_relay").to_string();
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        // Same port, so the retrying client finds it again.
        std::process::Command::new(bin)
            .args(["--db", &db2.display().to_string(), "serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("restart")
    });
    let summary = retrying.sync(&wang.store, &wang.token, &wang.editor, &Cancel::new(), |_| {}).await.expect("retried sync");
    assert!(summary.accepted >= 1);
    let mut second = restarter.join().expect("restarter");
    let _ = second.kill();
    let _ = second.wait();
    wang.reconnect(&old_url);
}

#[tokio::test]
async fn photos_travel_by_hash_and_only_within_scope() {
    use shidao_core::record::{Answer, AttachmentRef};
    use shidao_core::template::FieldKind;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let codes = programme(&db);
    let relay = Relay::start(env!("CARGO_BIN_EXE_relay").as_ref(), &db);
    let code = |who: &str| codes.iter().find(|(u, _)| u == who).expect("code").1.clone();
    let wang = Tablet::enrol(&relay.url, &code("wang"), &dir.path().join("wang.db")).await.expect("enrol");
    let li = Tablet::enrol(&relay.url, &code("li"), &dir.path().join("li.db")).await.expect("enrol");
    let chen = Tablet::enrol(&relay.url, &code("chen"), &dir.path().join("chen.db")).await.expect("enrol");

    // 1. Wang photographs the lesson plans he checked and attaches the photo to the visit.
    let photo: Vec<u8> = (0..2_500_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let hash = wang.store.put_attachment(&photo, "image/jpeg").expect("stored");
    let mut visit = wang.store.create("inspection-visit", &school("ouhai-a"), &wang.editor).expect("visit");
    let field = visit.template().fields.iter().find(|f| f.kind() == FieldKind::Attachment).expect("attachment field").clone();
    let at = match field.parent {
        shidao_core::template::Parent::Top => shidao_core::FieldRef::top(field.id()),
        shidao_core::template::Parent::Repeat(gi) => {
            let group = visit.template().fields[gi].id().to_string();
            let row = wang.store.edit(&mut visit, |r| r.add_row(&group, None)).expect("row");
            shidao_core::FieldRef::in_row(field.id(), &row)
        }
    };
    let att = AttachmentRef { hash: hash.clone(), name: "教案检查.jpg".into(), mime: "image/jpeg".into(), size: photo.len() as u64 };
    wang.store.edit(&mut visit, |r| r.set_answer(&at, Answer::Attachment(att))).expect("attach");

    // 2. Sync uploads the file (in pieces) before the record; a second sync sends nothing again.
    let s = wang.sync().await.expect("sync");
    assert_eq!(s.uploaded, 1);
    assert_eq!(wang.sync().await.expect("again").uploaded, 0);

    // 3. Li, in the same school, gets the record and downloads the photo, intact.
    li.sync().await.expect("li");
    let (bytes, mime) = li.http.download_attachment(&li.token, &hash).await.expect("download");
    assert_eq!((bytes == photo, mime.as_str()), (true, "image/jpeg"));

    // 4. Chen, in another school, cannot.
    let err = chen.http.download_attachment(&chen.token, &hash).await.expect_err("out of scope");
    assert!(matches!(err, DriverError::Refused { status: 404, .. }), "{err:?}");
}

#[tokio::test]
async fn a_stopping_relay_finishes_the_sync_in_flight() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let codes = programme(&db);
    let mut relay = Relay::start(env!("CARGO_BIN_EXE_relay").as_ref(), &db);
    let wang = Tablet::enrol(&relay.url, &codes[0].1, &dir.path().join("wang.db")).await.expect("enrol");
    let mut rng = Rng::new(8);
    for _ in 0..60 {
        let mut r = wang.store.create("classroom-observation", &school("ouhai-a"), &wang.editor).expect("create");
        wang.store.edit(&mut r, |r| fill_completely(r, 2, &mut rng)).expect("fill");
    }
    // The request is on its way when SIGTERM lands; the relay applies it, answers, then exits.
    let client = shidao_core::sync::SyncClient { max_push_bytes: usize::MAX, ..Default::default() };
    let prepared = client.prepare(&wang.store).expect("prepare");
    assert_eq!(prepared.request.push.len(), 60);
    let http = reqwest::Client::builder().tls_backend_rustls().build().expect("client");
    let send = http
        .post(format!("{}/v1/sync", relay.url))
        .bearer_auth(&wang.token)
        .header("content-encoding", "gzip")
        .header("accept-encoding", "gzip")
        .body(shidao_core::sync::protocol::encode(&prepared.request).expect("encode"))
        .send();
    let pid = relay.pid().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("term");
    });
    let resp = send.await.expect("the request in flight is answered");
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.expect("body");
    let answer: shidao_core::sync::protocol::SyncResponse = shidao_core::sync::protocol::decode(&body, true).expect("decode");
    let round = client.absorb(&wang.store, &wang.editor, prepared, answer).expect("absorb");
    assert_eq!(round.accepted, 60);
    let status = relay.wait_exit(Duration::from_secs(10));
    assert_eq!(status, Some(true), "the relay exits cleanly after finishing");
    // The order in the log proves the request was in flight when the stop began.
    let log = relay.log();
    let stop = log.find("shutting down").expect("the relay logged its stop");
    let done = log.rfind("path=/v1/sync").expect("the sync was logged");
    assert!(stop < done, "SIGTERM arrived only after the sync finished; the test proved nothing:\n{log}");
}
