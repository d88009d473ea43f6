//! The example of `docs/protocol.md`, run: one tablet, one round trip, through the real router.
//! `cargo test -p shidao-server --test protocol_example -- --nocapture` prints the messages.

use axum::body::Body;
use axum::http::Request;
use shidao_core::store::Store;
use shidao_core::sync::protocol::{self, Outcome, SyncResponse};
use shidao_core::sync::SyncClient;
use shidao_core::template::Role;
use shidao_core::{Clock, DeviceId, Editor, SchoolId, UserId};
use shidao_server::{accounts, app, db, AppState};
use tower::ServiceExt;

/// The server: a programme, a school, an inspector, and an enrolled tablet (its device and token).
fn relay() -> (tempfile::TempDir, AppState, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let conn = db::open(&dir.path().join("central.db")).unwrap();
    accounts::add_programme(&conn, "ouhai", "瓯海区初中全面提升行动", None).unwrap();
    accounts::add_school(&conn, "ouhai", "ouhai-033", "瓯海区实验中学", "示范", "智慧课堂").unwrap();
    accounts::add_user(&conn, "wang", "王老师", Role::Inspector, Some("ouhai"), &["ouhai-033".into()], None, 0).unwrap();
    let now = Clock::system().now();
    let code = accounts::new_enrol_code(&conn, "wang", now).unwrap();
    let (device, token, _) = accounts::enrol(&conn, &code, "王老师的平板", now).unwrap();
    let state = AppState::with_connection(conn, dir.path().join("attachments"));
    (dir, state, device, token)
}

#[tokio::test]
async fn one_round_trip() {
    let (_dir, state, device, token) = relay();

    // The tablet: a new visit record, offline.
    let tablet = Store::open_in_memory().unwrap();
    let me = Editor { user: UserId::new("wang").unwrap(), device: DeviceId::new(&device).unwrap(), role: Role::Inspector };
    tablet.create("inspection-visit", &SchoolId::new("ouhai-033").unwrap(), &me).unwrap();

    // 1. prepare: the store's unacknowledged changes become a request.
    let client = SyncClient::default();
    let prepared = client.prepare(&tablet).unwrap();
    let mut shown = serde_json::to_value(&prepared.request).unwrap();
    shown["push"][0]["changes"] = format!("<{} bytes of Automerge changes, base64>", prepared.request.push[0].changes.len()).into();
    println!("POST /v1/sync (gzip JSON):\n{}", serde_json::to_string_pretty(&shown).unwrap());

    // 2. One HTTP round trip.
    let req = Request::post("/v1/sync")
        .header("authorization", format!("Bearer {token}"))
        .header("content-encoding", "gzip")
        .header("accept-encoding", "gzip")
        .body(Body::from(protocol::encode(&prepared.request).expect("encode")))
        .unwrap();
    let resp = app(state).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let answer: SyncResponse = protocol::decode(&body, true).unwrap();
    let mut shown = serde_json::to_value(&answer).unwrap();
    if let Some(r) = shown.get_mut("reference") {
        r["tasks"] = serde_json::json!([]);
        r["templates"] = format!("<{} templates>", answer.reference.as_ref().map_or(0, |r| r.templates.len())).into();
    }
    println!("200 OK (gzip JSON):\n{}", serde_json::to_string_pretty(&shown).unwrap());

    // 3. absorb: the record is acknowledged, the cursor and reference data saved.
    assert_eq!(answer.results[0].outcome, Outcome::Accepted);
    let round = client.absorb(&tablet, &me, prepared, answer).unwrap();
    assert_eq!(round.accepted, 1);
    assert!(client.prepare(&tablet).unwrap().request.push.is_empty(), "nothing left to send");
    assert_eq!(SyncClient::reference(&tablet).unwrap().unwrap().schools[0].name, "瓯海区实验中学");
}

/// The same round trip in the binary envelope (CBOR in deflate), which the apps send: the relay
/// answers in it, and it is smaller on the wire than the gzip JSON of the same request.
#[tokio::test]
async fn one_round_trip_in_the_binary_envelope() {
    let (_dir, state, device, token) = relay();

    let tablet = Store::open_in_memory().unwrap();
    let me = Editor { user: UserId::new("wang").unwrap(), device: DeviceId::new(&device).unwrap(), role: Role::Inspector };
    for _ in 0..20 {
        tablet.create("inspection-visit", &SchoolId::new("ouhai-033").unwrap(), &me).unwrap();
    }
    let client = SyncClient::default();
    let prepared = client.prepare(&tablet).unwrap();
    let binary = protocol::Envelope::Binary;
    let body = binary.encode(&prepared.request).expect("encode");
    let json = protocol::encode(&prepared.request).expect("encode");
    assert!(body.len() * 10 < json.len() * 8, "binary {} B is not a fifth smaller than gzip JSON {} B", body.len(), json.len());

    let req = Request::post("/v1/sync")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", binary.content_type())
        .header("content-encoding", "deflate")
        .body(Body::from(body))
        .unwrap();
    let resp = app(state).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], protocol::BINARY_CONTENT_TYPE);
    assert_eq!(resp.headers()["content-encoding"], "deflate");
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let answer: SyncResponse = binary.decode(&bytes).expect("a binary answer");
    assert!(answer.results.iter().all(|r| r.outcome == Outcome::Accepted), "{:?}", answer.results);
    let round = client.absorb(&tablet, &me, prepared, answer).unwrap();
    assert_eq!(round.accepted, 20);
}

/// An app meets a relay older than the binary envelope (one that read every body as JSON and
/// answered 400 "body is not a valid message"): the app sends the same round again as gzip JSON,
/// the record arrives once, and the app keeps to JSON with that relay.
#[tokio::test]
async fn an_app_falls_back_to_json_with_a_relay_older_than_the_binary_envelope() {
    use shidao_core::sync::http::{Cancel, HttpSync};
    let (_dir, state, device, token) = relay();

    // The old relay: what it answered to a body that was not gzip JSON, else the real router.
    let binary_seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = binary_seen.clone();
    let old = axum::Router::new().fallback(move |req: Request<Body>| {
        let (state, seen) = (state.clone(), seen.clone());
        async move {
            let binary = req.headers().get("content-type").is_some_and(|v| v.as_bytes() == protocol::BINARY_CONTENT_TYPE.as_bytes());
            if binary {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = r#"{"code":"bad_request","reason":"body is not a valid message: expected value at line 1 column 1"}"#;
                return axum::response::Response::builder().status(400).header("content-type", "application/json").body(Body::from(body)).unwrap();
            }
            app(state).oneshot(req).await.unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, old).await.unwrap() });

    let tablet = Store::open_in_memory().unwrap();
    let me = Editor { user: UserId::new("wang").unwrap(), device: DeviceId::new(&device).unwrap(), role: Role::Inspector };
    tablet.create("inspection-visit", &SchoolId::new("ouhai-033").unwrap(), &me).unwrap();
    let http = HttpSync::new(&url, None).unwrap();
    assert_eq!(http.envelope(), protocol::Envelope::Binary, "an app starts with the binary envelope");
    let summary = http.sync(&tablet, &token, &me, &Cancel::new(), |_| {}).await.expect("sync through the old relay");
    assert_eq!(summary.accepted, 1);
    assert_eq!(binary_seen.load(std::sync::atomic::Ordering::SeqCst), 1, "one binary attempt, then JSON");
    assert_eq!(http.envelope(), protocol::Envelope::Json { gzip: true });
    tablet.create("inspection-visit", &SchoolId::new("ouhai-033").unwrap(), &me).unwrap();
    assert_eq!(http.sync(&tablet, &token, &me, &Cancel::new(), |_| {}).await.expect("second sync").accepted, 1);
    assert_eq!(binary_seen.load(std::sync::atomic::Ordering::SeqCst), 1, "JSON from then on");
}
