//! Bad input and the rules on write, through the router without a socket: every refusal is a
//! clear JSON answer and changes nothing.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Author, Automerge, ReadDoc, ROOT};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use shidao_core::record::{Answer, Record};
use shidao_core::sync::protocol::{self, ErrorBody, Outcome, Push, SyncRequest, SyncResponse, PROTOCOL};
use shidao_core::template::Role;
use shidao_core::{Clock, DeviceId, Editor, FieldRef, NewRecord, RecordId, SchoolId, UserId};
use shidao_server::{accounts, app, db, AppState};
use tower::ServiceExt;

struct World {
    state: AppState,
    _dir: tempfile::TempDir,
    /// (user, device, token)
    devices: Vec<(String, String, String)>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("dir");
        let conn = db::open(&dir.path().join("central.db")).expect("db");
        accounts::add_programme(&conn, "p", "测试项目", None).unwrap();
        accounts::add_school(&conn, "p", "s-a", "甲校", "优质", "").unwrap();
        accounts::add_school(&conn, "p", "s-b", "乙校", "潜质", "").unwrap();
        accounts::add_user(&conn, "insp", "视导员", Role::Inspector, Some("p"), &["s-a".into()], None, 0).unwrap();
        accounts::add_user(&conn, "other", "另一位", Role::Inspector, Some("p"), &["s-a".into()], None, 0).unwrap();
        accounts::add_user(&conn, "sup", "督导", Role::Supervisor, Some("p"), &[], None, 0).unwrap();
        let now = Clock::system().now();
        let mut devices = Vec::new();
        for u in ["insp", "other", "sup"] {
            let code = accounts::new_enrol_code(&conn, u, now).unwrap();
            let (device, token, _) = accounts::enrol(&conn, &code, "平板", now).unwrap();
            devices.push((u.to_string(), device, token));
        }
        let state = AppState::with_connection(conn, dir.path().join("att"));
        World { state, _dir: dir, devices }
    }

    fn editor(&self, i: usize, role: Role) -> Editor {
        Editor { user: UserId::new(&self.devices[i].0).unwrap(), device: DeviceId::new(&self.devices[i].1).unwrap(), role }
    }

    async fn call(&self, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        let resp = app(self.state.clone()).oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, bytes.to_vec())
    }

    async fn sync(&self, token: &str, push: Vec<Push>) -> SyncResponse {
        let req = SyncRequest {
            protocol: PROTOCOL,
            request_id: uuid::Uuid::new_v4().to_string(),
            cursor: 0,
            scope: None,
            reference: None,
            push,
            max_pull_bytes: None,
            want_forms: vec![],
            set_aside: vec![],
            app: None,
        };
        let (status, body) = self.call(sync_request(token, protocol::encode(&req).expect("encode"), true)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("json response")
    }

    fn count(&self, sql: &str) -> i64 {
        self.state.with_db(|c| c.query_row(sql, [], |r| r.get(0)).expect("count"))
    }
}

fn sync_request(token: &str, body: Vec<u8>, gzip: bool) -> Request<Body> {
    let mut b = Request::post("/v1/sync").header("authorization", format!("Bearer {token}"));
    if gzip {
        b = b.header("content-encoding", "gzip");
    }
    b.body(Body::from(body)).expect("request")
}

fn error_of(body: &[u8]) -> ErrorBody {
    serde_json::from_slice(body).unwrap_or_else(|_| panic!("not a JSON error: {}", String::from_utf8_lossy(body)))
}

fn new_record(template: &str, school: &str, editor: &Editor) -> Record {
    let t = shidao_core::builtin(template).unwrap();
    Record::create(t, NewRecord { id: RecordId::random(), school: SchoolId::new(school).unwrap() }, editor.clone(), Clock::system()).unwrap()
}

fn push_of(r: &Record) -> Push {
    Push { record: r.id().to_string(), changes: r.save(), heads: r.heads().iter().map(|h| h.to_string()).collect() }
}

fn outcome(resp: &SyncResponse) -> (Outcome, String) {
    let r = &resp.results[0];
    (r.outcome, r.code.clone().unwrap_or_default())
}

#[tokio::test]
async fn tokens_missing_wrong_or_revoked_get_401() {
    let w = World::new();
    let (s, b) = w.call(Request::post("/v1/sync").body(Body::empty()).unwrap()).await;
    assert_eq!((s, error_of(&b).code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (s, b) = w.call(sync_request(&"ab".repeat(32), vec![], true)).await;
    assert_eq!((s, error_of(&b).code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    w.state.with_db(|c| accounts::revoke_device(c, &w.devices[0].1, 0)).unwrap();
    let (s, b) = w.call(sync_request(&w.devices[0].2, protocol::encode(&serde_json::json!({})).expect("encode"), true)).await;
    assert_eq!((s, error_of(&b).code.as_str()), (StatusCode::UNAUTHORIZED, "revoked"));
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_clearly() {
    let w = World::new();
    let token = &w.devices[0].2;
    let (s, b) = w.call(sync_request(token, b"\x1f\x8b garbage".to_vec(), true)).await;
    assert_eq!((s, error_of(&b).code.as_str()), (StatusCode::BAD_REQUEST, "bad_request"));
    let (s, b) = w.call(sync_request(token, br#"{"protocol": 1, "cursor": "x"}"#.to_vec(), false)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&b).reason.contains("not a valid message"), "{:?}", error_of(&b));
    let wrong = SyncRequest { protocol: 99, request_id: "r".into(), cursor: 0, scope: None, reference: None, push: vec![], max_pull_bytes: None, want_forms: vec![], set_aside: vec![], app: None };
    let (s, b) = w.call(sync_request(token, protocol::encode(&wrong).expect("encode"), true)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&b).reason.contains("protocol 99"));
    let huge = vec![7u8; protocol::MAX_BODY_BYTES + 1];
    let (s, b) = w.call(sync_request(token, huge, true)).await;
    assert_eq!((s, error_of(&b).code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
    let (s, b) = w.call(Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!((s, error_of(&b).code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(w.count("SELECT COUNT(*) FROM changes"), 0);
}

#[tokio::test]
async fn corrupt_bytes_and_unknown_templates_are_refused_per_record() {
    let w = World::new();
    let insp = w.editor(0, Role::Inspector);
    let good = new_record("classroom-observation", "s-a", &insp);
    let bad = Push { record: RecordId::random().to_string(), changes: b"\x85\x6f\x4a\x83 not automerge".to_vec(), heads: vec![] };
    // A record of a template version this server does not know.
    let mut doc = Automerge::load(&good.save()).unwrap();
    doc.set_author(Some(insp.author()));
    let other_id = RecordId::random();
    let mut unknown = Automerge::new();
    unknown.set_author(Some(insp.author()));
    unknown
        .transact_with::<_, _, automerge::AutomergeError, _>(|_| CommitOptions::default().with_time(0), |tx| {
            let meta = tx.put_object(ROOT, "meta", automerge::ObjType::Map)?;
            tx.put(&meta, "id", other_id.as_str())?;
            tx.put(&meta, "template", "classroom-observation")?;
            tx.put(&meta, "version", 99i64)?;
            tx.put(&meta, "school", "s-a")?;
            tx.put(&meta, "created_by", "insp")?;
            Ok(())
        })
        .unwrap();
    let unknown_push = Push { record: other_id.to_string(), changes: unknown.save(), heads: vec![] };
    let resp = w.sync(&w.devices[0].2, vec![bad, push_of(&good), unknown_push]).await;
    let codes: Vec<(Outcome, Option<String>)> = resp.results.iter().map(|r| (r.outcome, r.code.clone())).collect();
    assert_eq!(codes[0], (Outcome::Refused, Some("corrupt".into())));
    assert_eq!(codes[1], (Outcome::Accepted, None), "a refused record does not stop the rest");
    assert_eq!(codes[2], (Outcome::Refused, Some("unknown_template".into())));
    assert_eq!(w.count("SELECT COUNT(*) FROM records"), 1);
}

#[tokio::test]
async fn crafted_changes_are_refused_and_store_nothing() {
    let w = World::new();
    let insp = w.editor(0, Role::Inspector);
    let token = w.devices[0].2.clone();
    let mut r = new_record("inspection-visit", "s-a", &insp);
    let f = r.template().top_fields().find(|f| f.kind() == shidao_core::template::FieldKind::Text).unwrap().id().to_string();
    r.set_answer(&FieldRef::top(&f), Answer::Text("原始".into())).unwrap();
    assert_eq!(outcome(&w.sync(&token, vec![push_of(&r)]).await).0, Outcome::Accepted);
    let changes_before = w.count("SELECT COUNT(*) FROM changes");

    let craft = |author: Author<'static>, edit: &dyn Fn(&mut automerge::transaction::Transaction<'_>)| -> Push {
        let mut doc = Automerge::load(&r.save()).unwrap();
        let before = doc.get_heads();
        doc.set_author(Some(author));
        doc.transact_with::<_, _, automerge::AutomergeError, _>(|_| CommitOptions::default().with_time(0), |tx| {
            edit(tx);
            Ok(())
        })
        .unwrap();
        Push { record: r.id().to_string(), changes: doc.save_after(&before), heads: vec![] }
    };
    // An inspector approves a record.
    let approve = craft(insp.author(), &|tx| tx.put(ROOT, "status", "approved").unwrap());
    assert_eq!(outcome(&w.sync(&token, vec![approve]).await), (Outcome::Refused, "status_not_allowed".into()));
    // A change that claims another author.
    let other = w.editor(1, Role::Inspector);
    let forged = craft(other.author(), &|tx| {
        let answers = tx.get(ROOT, "answers").unwrap().unwrap().1;
        tx.put(&answers, f.as_str(), "冒名").unwrap();
    });
    assert_eq!(outcome(&w.sync(&token, vec![forged]).await), (Outcome::Refused, "foreign_author".into()));
    // A signature made out to someone else.
    let sig = r.template().top_fields().find(|f| f.kind() == shidao_core::template::FieldKind::Signature).unwrap().id().to_string();
    let fake_sig = craft(insp.author(), &|tx| {
        let answers = tx.get(ROOT, "answers").unwrap().unwrap().1;
        let m = tx.put_object(&answers, sig.as_str(), automerge::ObjType::Map).unwrap();
        tx.put(&m, "user", "sup").unwrap();
    });
    assert_eq!(outcome(&w.sync(&token, vec![fake_sig]).await), (Outcome::Refused, "foreign_signature".into()));
    // Rewriting the record's school.
    let moved = craft(insp.author(), &|tx| {
        let meta = tx.get(ROOT, "meta").unwrap().unwrap().1;
        tx.put(&meta, "school", "s-b").unwrap();
    });
    assert_eq!(outcome(&w.sync(&token, vec![moved]).await).0, Outcome::Refused);
    assert_eq!(w.count("SELECT COUNT(*) FROM changes"), changes_before, "a refused push stored something");

    // A supervisor approves (after the inspector submits); the sealed record refuses any edit.
    let mut filled = r.fork(insp.clone());
    shidao_core::sample::fill_completely(&mut filled, 1, &mut shidao_core::sample::Rng::new(4)).unwrap();
    filled.submit().unwrap();
    assert_eq!(outcome(&w.sync(&token, vec![push_of(&filled)]).await).0, Outcome::Accepted);
    let mut as_sup = filled.fork(w.editor(2, Role::Supervisor));
    as_sup.approve(None).unwrap();
    assert_eq!(outcome(&w.sync(&w.devices[2].2, vec![push_of(&as_sup)]).await).0, Outcome::Accepted);
    let late = {
        let mut doc = Automerge::load(&filled.save()).unwrap();
        let before = doc.get_heads();
        doc.set_author(Some(insp.author()));
        doc.transact_with::<_, _, automerge::AutomergeError, _>(|_| CommitOptions::default().with_time(0), |tx| {
            let answers = tx.get(ROOT, "answers").unwrap().unwrap().1;
            tx.put(&answers, f.as_str(), "批准后修改").unwrap();
            Ok(())
        })
        .unwrap();
        Push { record: r.id().to_string(), changes: doc.save_after(&before), heads: vec![] }
    };
    assert_eq!(outcome(&w.sync(&token, vec![late]).await), (Outcome::Refused, "sealed".into()));
    let status: String = w.state.with_db(|c| c.query_row("SELECT status FROM records WHERE id = ?1", [r.id().as_str()], |x| x.get(0)).unwrap());
    assert_eq!(status, "approved");
}

#[tokio::test]
async fn records_outside_the_scope_answer_403() {
    let w = World::new();
    let insp = w.editor(0, Role::Inspector);
    let r = new_record("inspection-visit", "s-a", &insp);
    assert_eq!(outcome(&w.sync(&w.devices[0].2, vec![push_of(&r)]).await).0, Outcome::Accepted);
    // In scope: the inspector gets it.
    let get = |token: &str, id: &str| Request::get(format!("/v1/records/{id}")).header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
    let (s, _) = w.call(get(&w.devices[0].2, r.id().as_str())).await;
    assert_eq!(s, StatusCode::OK);
    // Another school's inspector, after a scope change: 403, same as an id that does not exist.
    w.state.with_db(|c| accounts::add_user(c, "other", "另一位", Role::Inspector, Some("p"), &["s-b".into()], None, 0)).unwrap();
    let (s, b) = w.call(get(&w.devices[1].2, r.id().as_str())).await;
    assert_eq!((s, error_of(&b).code.as_str()), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, _) = w.call(get(&w.devices[1].2, &RecordId::random().to_string())).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// A piece of the upload of `file` (named by its hash), from `offset`.
fn put_piece(token: &str, file: &[u8], offset: usize, piece: &[u8]) -> Request<Body> {
    Request::put(format!("/v1/attachments/{}", shidao_core::store::content_hash(file)))
        .header("authorization", format!("Bearer {token}"))
        .header("upload-offset", offset.to_string())
        .header("upload-length", file.len().to_string())
        .header("content-type", "image/jpeg")
        .body(Body::from(piece.to_vec()))
        .unwrap()
}

/// `HEAD` of the file named by the hash of `file`.
fn head_of(token: &str, file: &[u8]) -> Request<Body> {
    Request::head(format!("/v1/attachments/{}", shidao_core::store::content_hash(file)))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn attachments_resume_deduplicate_and_check_their_hash() {
    let w = World::new();
    let token = w.devices[0].2.clone();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let hash = shidao_core::store::content_hash(&bytes);
    let put = |offset: usize, piece: &[u8]| put_piece(&token, &bytes, offset, piece);
    let head = || head_of(&token, &bytes);
    assert_eq!(w.call(head()).await.0, StatusCode::NOT_FOUND);
    // First piece, then the connection "drops"; HEAD says where to resume.
    assert_eq!(w.call(put(0, &bytes[..100_000])).await.0, StatusCode::OK);
    let resp = app(w.state.clone()).oneshot(head()).await.unwrap();
    assert_eq!(resp.headers()["upload-offset"], "100000");
    // Resuming at the wrong offset is a conflict; at the right one it completes.
    assert_eq!(w.call(put(50_000, &bytes[50_000..])).await.0, StatusCode::CONFLICT);
    assert_eq!(w.call(put(100_000, &bytes[100_000..])).await.0, StatusCode::OK);
    let resp = app(w.state.clone()).oneshot(head()).await.unwrap();
    assert_eq!(resp.headers()["upload-complete"], "1");
    // Uploading it again stores nothing new; downloading gives the same bytes.
    assert_eq!(w.call(put(0, &bytes)).await.0, StatusCode::OK);
    let get = Request::get(format!("/v1/attachments/{hash}")).header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
    let (s, back) = w.call(get).await;
    assert_eq!((s, back == bytes), (StatusCode::OK, true));
    // Bytes that do not match their name are discarded; names that are not hashes are refused.
    let wrong = "0".repeat(64);
    let bad = Request::put(format!("/v1/attachments/{wrong}"))
        .header("authorization", format!("Bearer {token}"))
        .header("upload-offset", "0")
        .header("upload-length", "3")
        .body(Body::from("abc"))
        .unwrap();
    assert_eq!(w.call(bad).await.0, StatusCode::BAD_REQUEST);
    let traversal = Request::get("/v1/attachments/..%2F..%2Fetc%2Fpasswd").header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
    assert_eq!(w.call(traversal).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn abandoned_uploads_are_swept_and_start_again() {
    use shidao_server::attachments::{sweep_abandoned, Swept, ABANDONED_UPLOAD_SECS};
    let w = World::new();
    let token = w.devices[0].2.clone();
    let photo = |n: u32| -> Vec<u8> { (0..200_000u32).map(|i| ((i * n) % 253) as u8).collect() };
    let (cut, whole) = (photo(3), photo(7));
    let put = |bytes: &[u8], offset: usize, piece: &[u8]| put_piece(&token, bytes, offset, piece);
    let head = |bytes: &[u8]| head_of(&token, bytes);
    // 1. One photo uploaded whole, another cut after 80,000 bytes; a stray part file beside them.
    assert_eq!(w.call(put(&whole, 0, &whole)).await.0, StatusCode::OK);
    assert_eq!(w.call(put(&cut, 0, &cut[..80_000])).await.0, StatusCode::OK);
    let dir = w.state.attachments_dir.clone();
    std::fs::write(dir.join(format!("{}.0123.part", "a".repeat(64))), b"left by a crash").unwrap();
    let uploads = || w.state.with_db(|c| c.query_row("SELECT COUNT(*) FROM attachment_uploads", [], |r| r.get::<_, i64>(0)).unwrap());
    assert_eq!(uploads(), 1);
    // 2. A day later nothing is swept: the upload may still be resumed.
    let now = Clock::system().now();
    let sweep = |at: i64| w.state.with_db(|c| sweep_abandoned(c, &dir, at, ABANDONED_UPLOAD_SECS)).unwrap();
    assert_eq!(sweep(now + 24 * 3600), Swept::default());
    let resp = app(w.state.clone()).oneshot(head(&cut)).await.unwrap();
    assert_eq!(resp.headers()["upload-offset"], "80000");
    // 3. Fifteen days later the cut upload and the stray file go; the stored photo stays.
    assert_eq!(sweep(now + 15 * 24 * 3600), Swept { uploads: 2, bytes: 80_000 + 15 });
    assert_eq!(uploads(), 0);
    let parts: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".part")).collect();
    assert!(parts.is_empty(), "{parts:?}");
    let get = Request::get(format!("/v1/attachments/{}", shidao_core::store::content_hash(&whole)))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (s, back) = w.call(get).await;
    assert_eq!((s, back == whole), (StatusCode::OK, true));
    // 4. The tablet finds nothing held of the cut photo and sends it again from the start.
    assert_eq!(w.call(head(&cut)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(w.call(put(&cut, 80_000, &cut[80_000..])).await.0, StatusCode::CONFLICT);
    assert_eq!(w.call(put(&cut, 0, &cut)).await.0, StatusCode::OK);
    let resp = app(w.state.clone()).oneshot(head(&cut)).await.unwrap();
    assert_eq!(resp.headers()["upload-complete"], "1");
}

/// A device's report of changes it set aside is kept once, for records in its scope only; a
/// report about another school's record is left out, and a request with over 100 is a clear 400.
#[tokio::test]
async fn set_aside_reports_are_kept_once_and_only_within_scope() {
    use shidao_core::sync::protocol::SetAsideReport;
    let w = World::new();
    let (insp, sup) = (w.editor(0, Role::Inspector), w.editor(2, Role::Supervisor));
    let mine = new_record("inspection-visit", "s-a", &insp);
    let theirs = new_record("baseline-assessment", "s-b", &sup);
    assert_eq!(outcome(&w.sync(&w.devices[0].2, vec![push_of(&mine)]).await).0, Outcome::Accepted);
    assert_eq!(outcome(&w.sync(&w.devices[2].2, vec![push_of(&theirs)]).await).0, Outcome::Accepted);
    let report = |record: &Record| SetAsideReport {
        record: record.id().to_string(),
        at: 1_790_000_000,
        code: "sealed".into(),
        reason: "approved meanwhile".into(),
        fields: vec!["visit_focus".into()],
        acts: vec![],
        reapplied: vec![],
        changes: vec![],
    };
    let send = |reports: Vec<SetAsideReport>| {
        let req = SyncRequest {
            protocol: PROTOCOL,
            request_id: uuid::Uuid::new_v4().to_string(),
            cursor: 0,
            scope: None,
            reference: None,
            push: vec![],
            max_pull_bytes: None,
            want_forms: vec![],
            set_aside: reports,
            app: None,
        };
        sync_request(&w.devices[0].2, protocol::encode(&req).expect("encode"), true)
    };
    // Twice the same report, and one about a school the inspector does not work in.
    for _ in 0..2 {
        let (s, b) = w.call(send(vec![report(&mine), report(&theirs)])).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    }
    assert_eq!(w.count(&format!("SELECT COUNT(*) FROM set_asides WHERE record_id = '{}'", mine.id())), 1);
    assert_eq!(w.count(&format!("SELECT COUNT(*) FROM set_asides WHERE record_id = '{}'", theirs.id())), 0);
    let (s, b) = w.call(send((0..101).map(|_| report(&mine)).collect())).await;
    assert_eq!((s, error_of(&b).code.as_str()), (StatusCode::BAD_REQUEST, "bad_request"));
}
