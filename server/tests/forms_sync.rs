//! Form delivery through the sync protocol, crafted as devices would send it, through the router
//! without a socket: a device gets the definitions its programme lists and no other programme's;
//! a device that has not seen the programme's list gets a pulled record's form in the same
//! answer; a record of a version its programme did not publish, or of a retired version made
//! after the retirement, is refused and stores nothing; an oversized want list is a clear 400.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use shidao_core::record::Record;
use shidao_core::sync::protocol::{self, Outcome, Push, SyncRequest, SyncResponse, PROTOCOL};
use shidao_core::template::{definition_hash, Role, Template};
use shidao_core::{Clock, DeviceId, Editor, NewRecord, RecordId, SchoolId, UserId};
use shidao_server::{accounts, app, db, forms, AppState};
use tower::ServiceExt;

/// A district's own guidance log: the built-in one under another id.
fn district_form(version: u32) -> String {
    let json = shidao_core::template::builtin_source("guidance-log").expect("source").replace(r#""id": "guidance-log""#, r#""id": "district-log""#);
    let mut def: serde_json::Value = serde_json::from_str(&json).expect("json");
    def["version"] = version.into();
    def.to_string()
}

struct World {
    state: AppState,
    _dir: tempfile::TempDir,
    /// (user, device, token) of the expert in `p` and the expert in `q`.
    devices: Vec<(String, String, String)>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("dir");
        let conn = db::open(&dir.path().join("central.db")).expect("db");
        accounts::add_programme(&conn, "p", "甲区项目", None).expect("programme");
        accounts::add_programme(&conn, "q", "乙区项目", None).expect("programme");
        accounts::add_school(&conn, "p", "s-p", "甲校", "", "").expect("school");
        accounts::add_school(&conn, "q", "s-q", "乙校", "", "").expect("school");
        accounts::add_user(&conn, "ep", "甲专家", Role::Expert, Some("p"), &["s-p".into()], None, 0).expect("user");
        accounts::add_user(&conn, "eq", "乙专家", Role::Expert, Some("q"), &["s-q".into()], None, 0).expect("user");
        for v in [1, 2] {
            let form = forms::check_file("district-log.json", district_form(v).as_bytes(), false).expect("form");
            forms::publish(&conn, "p", &form, "file", "admin", 0).expect("publish");
        }
        let now = Clock::system().now();
        let mut devices = Vec::new();
        for u in ["ep", "eq"] {
            let code = accounts::new_enrol_code(&conn, u, now).expect("code");
            let (device, token, _) = accounts::enrol(&conn, &code, "平板", now).expect("enrol");
            devices.push((u.to_string(), device, token));
        }
        World { state: AppState::with_connection(conn, dir.path().join("att")), _dir: dir, devices }
    }

    fn editor(&self, i: usize) -> Editor {
        Editor { user: UserId::new(&self.devices[i].0).expect("id"), device: DeviceId::new(&self.devices[i].1).expect("id"), role: Role::Expert }
    }

    async fn post(&self, i: usize, req: &SyncRequest) -> (StatusCode, Vec<u8>) {
        let http = Request::post("/v1/sync")
            .header("authorization", format!("Bearer {}", self.devices[i].2))
            .header("content-encoding", "gzip")
            .body(Body::from(protocol::encode(req).expect("encode")))
            .expect("request");
        let resp = app(self.state.clone()).oneshot(http).await.expect("response");
        let status = resp.status();
        (status, axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body").to_vec())
    }

    async fn sync(&self, i: usize, req: &SyncRequest) -> SyncResponse {
        let (status, body) = self.post(i, req).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("json")
    }

    fn count(&self, sql: &str) -> i64 {
        self.state.with_db(|c| c.query_row(sql, [], |r| r.get(0)).expect("count"))
    }
}

fn request(reference: Option<String>, want: Vec<String>, push: Vec<Push>) -> SyncRequest {
    SyncRequest {
        protocol: PROTOCOL,
        request_id: uuid::Uuid::new_v4().to_string(),
        cursor: 0,
        scope: None,
        reference,
        push,
        max_pull_bytes: None,
        want_forms: want,
        set_aside: vec![],
        app: None,
    }
}

fn record_of(json: &str, school: &str, editor: &Editor, clock: Clock) -> Record {
    let t = std::sync::Arc::new(Template::from_json("d.json", json).expect("template"));
    Record::create(t, NewRecord { id: RecordId::random(), school: SchoolId::new(school).expect("id") }, editor.clone(), clock).expect("record")
}

fn push_of(r: &Record) -> Push {
    Push { record: r.id().to_string(), changes: r.save(), heads: r.heads().iter().map(|h| h.to_string()).collect() }
}

#[tokio::test]
async fn definitions_travel_by_hash_within_their_programme() {
    let w = World::new();
    let canonical = |v| Template::from_json("d.json", &district_form(v)).expect("template").definition();
    let (h1, h2) = (definition_hash(&canonical(1)), definition_hash(&canonical(2)));

    // 1. The expert of `p` learns the programme's list with hashes, the built-in library's and the
    //    district's two versions.
    let resp = w.sync(0, &request(None, vec![], vec![])).await;
    let reference = resp.reference.expect("reference data");
    let listed: Vec<(String, u32, Option<String>)> = reference.templates.iter().map(|t| (t.id.clone(), t.version, t.hash.clone())).collect();
    assert!(listed.contains(&("district-log".into(), 1, Some(h1.clone()))) && listed.contains(&("district-log".into(), 2, Some(h2.clone()))));
    assert!(listed.iter().any(|(id, ..)| id == "classroom-observation"));

    // 2. Asked by hash, the definitions come; each hashes to its name.
    let resp = w.sync(0, &request(Some(reference.version.clone()), vec![h1.clone(), h2.clone(), h1.clone()], vec![])).await;
    assert_eq!(resp.forms.iter().map(|f| f.hash.clone()).collect::<Vec<_>>(), [h1.clone(), h2.clone()]);
    for f in &resp.forms {
        assert_eq!(definition_hash(&f.definition), f.hash);
    }
    // A sync that asks for nothing carries no forms.
    let resp = w.sync(0, &request(Some(reference.version.clone()), vec![], vec![])).await;
    assert!(resp.forms.is_empty() && resp.reference.is_none());

    // 3. The expert of `q` asking for `p`'s form by its hash gets nothing: `q` never published it.
    let resp = w.sync(1, &request(None, vec![h1.clone()], vec![])).await;
    assert!(resp.forms.is_empty());
    assert!(!resp.reference.expect("q's reference").templates.iter().any(|t| t.id == "district-log"));

    // 4. A record of `p`'s form pushed into `q`'s school is refused `unknown_template` and
    //    stores nothing.
    let stray = record_of(&district_form(2), "s-q", &w.editor(1), Clock::system());
    let resp = w.sync(1, &request(None, vec![], vec![push_of(&stray)])).await;
    assert_eq!((resp.results[0].outcome, resp.results[0].code.as_deref()), (Outcome::Refused, Some("unknown_template")));
    assert_eq!(w.count(&format!("SELECT COUNT(*) FROM records WHERE id = '{}'", stray.id())), 0);

    // 5. The expert of `p` fills a v2 record; a tablet that has not yet seen the programme's
    //    list (a new one of the same expert) gets the record and its form in one answer.
    let log = record_of(&district_form(2), "s-p", &w.editor(0), Clock::system());
    let resp = w.sync(0, &request(Some(reference.version.clone()), vec![], vec![push_of(&log)])).await;
    assert_eq!(resp.results[0].outcome, Outcome::Accepted, "{:?}", resp.results);
    let conn_user = |c: &rusqlite::Connection| {
        let code = accounts::new_enrol_code(c, "ep", Clock::system().now())?;
        accounts::enrol(c, &code, "第二台平板", Clock::system().now())
    };
    let (_, token, _) = w.state.with_db(conn_user).expect("second tablet");
    let http = Request::post("/v1/sync")
        .header("authorization", format!("Bearer {token}"))
        .header("content-encoding", "gzip")
        .body(Body::from(protocol::encode(&request(None, vec![], vec![])).expect("encode")))
        .expect("request");
    let resp = app(w.state.clone()).oneshot(http).await.expect("response");
    let resp: SyncResponse = serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body")).expect("json");
    assert!(resp.pull.iter().any(|p| p.record == log.id().as_str()));
    assert_eq!(resp.forms.iter().map(|f| f.hash.clone()).collect::<Vec<_>>(), [h2.clone()], "the pulled record's form comes with it");

    // 6. Once v1 is retired, a v1 record made after the retirement is refused `retired_form`;
    //    one made before it (an inspector offline since) is accepted.
    let now = Clock::system().now();
    w.state.with_db(|c| forms::retire(c, "p", "district-log", 1, now)).expect("retire");
    let late = record_of(&district_form(1), "s-p", &w.editor(0), Clock::fixed(now + 60));
    let early = record_of(&district_form(1), "s-p", &w.editor(0), Clock::fixed(now - 3600));
    let resp = w.sync(0, &request(None, vec![], vec![push_of(&late), push_of(&early)])).await;
    let outcomes: Vec<(Outcome, Option<&str>)> = resp.results.iter().map(|r| (r.outcome, r.code.as_deref())).collect();
    assert_eq!(outcomes, [(Outcome::Refused, Some("retired_form")), (Outcome::Accepted, None)]);
    assert_eq!(w.count(&format!("SELECT COUNT(*) FROM records WHERE id = '{}'", late.id())), 0);

    // 7. A want list longer than any programme's is a clear 400, and nothing is stored.
    let (status, body) = w.post(0, &request(None, (0..1001).map(|i| format!("{i:064x}")).collect(), vec![push_of(&late)])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("want_forms"));
    assert_eq!(w.count(&format!("SELECT COUNT(*) FROM records WHERE id = '{}'", late.id())), 0);
}
