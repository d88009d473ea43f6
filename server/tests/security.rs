//! The security catalogue: every way we could think of to read or write another school's
//! records, to get past a revoked token or a signed-out session, to slip a forbidden change into a
//! record, to crash the server with a body, or to reach a file outside the attachments folder.
//!
//! Each attack asserts the precise refusal (status and JSON error code, a refusal code per pushed
//! record, or the page's redirect to sign-in) AND that nothing changed (rows counted, documents
//! compared byte for byte, earlier edits still in the record). One test function per family; the
//! numbered comments are the steps. Everything runs through the router without a socket (the
//! process-level crash checks are in `tests/tests/security_process.rs`).
//!
//! Run with `cargo test -p shidao-server --test security -- --nocapture` to see the tally:
//! `security: attacks=NN refused=NN` once every family has run.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Author, Automerge, ObjType, ReadDoc, ROOT};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use shidao_core::record::{Answer, AttachmentRef, Record};
use shidao_core::sync::protocol::{self, ErrorBody, Outcome, Push, SyncRequest, SyncResponse, PROTOCOL};
use shidao_core::template::Role;
use shidao_core::{Clock, DeviceId, Editor, FieldRef, NewRecord, RecordId, SchoolId, UserId};
use shidao_server::admin::{self, AdminCommand};
use shidao_server::listen::ClientAddr;
use shidao_server::{accounts, app, AppState};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------
// The tally: every attack is counted when tried and again once its refusal has been checked.
// ---------------------------------------------------------------------------------------------

/// The test functions below, one per family; the total is printed when all of them have run.
const FAMILIES: usize = 10;

static TOTAL: Mutex<(usize, usize, usize)> = Mutex::new((0, 0, 0));

struct Tally {
    family: &'static str,
    tried: usize,
    refused: usize,
    current: Option<String>,
}

impl Tally {
    fn new(family: &'static str) -> Tally {
        Tally { family, tried: 0, refused: 0, current: None }
    }

    /// Starts an attack; [`Tally::refused`] must follow once its refusal is checked.
    fn attack(&mut self, what: impl Into<String>) {
        assert!(self.current.is_none(), "attack {:?} was never checked", self.current);
        self.current = Some(what.into());
        self.tried += 1;
    }

    fn refused(&mut self) {
        assert!(self.current.take().is_some(), "refused() without attack()");
        self.refused += 1;
    }

    fn finish(self) {
        assert!(self.current.is_none(), "attack {:?} was never checked", self.current);
        println!("security[{}]: attacks={} refused={}", self.family, self.tried, self.refused);
        let mut total = TOTAL.lock().unwrap_or_else(|p| p.into_inner());
        total.0 += 1;
        total.1 += self.tried;
        total.2 += self.refused;
        if total.0 == FAMILIES {
            println!("security: attacks={} refused={}", total.1, total.2);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The world: two programmes, three schools, inspectors in each school, a supervisor each.
// ---------------------------------------------------------------------------------------------

const PASSWORD: &str = "correct-horse-battery";
/// Texts written into each school's records, so a leak is easy to spot in any page or export.
const MARK_A: &str = "甲校机密-A7f3";
const MARK_B: &str = "乙校机密-B9k2";
const MARK_C: &str = "丙校机密-C4q8";

/// One Argon2 hash for every test user (hashing is the slow part of a world).
fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| shidao_server::web::auth::hash_password(PASSWORD).expect("hash"))
}

#[derive(Clone)]
struct Dev {
    user: String,
    device: String,
    token: String,
    role: Role,
}

impl Dev {
    fn editor(&self) -> Editor {
        Editor { user: UserId::new(&self.user).expect("user"), device: DeviceId::new(&self.device).expect("device"), role: self.role }
    }
}

struct World {
    state: AppState,
    _dir: tempfile::TempDir,
    /// The root of everything the server may write (the store and the attachments folder).
    root: PathBuf,
    devs: BTreeMap<&'static str, Dev>,
}

/// Programme `p1`: schools `s-a` (甲校) and `s-b` (乙校); programme `p2`: school `s-c` (丙校).
/// Devices: `ins-a`, `ins-a2` (both in s-a), `ins-b` (s-b), `ins-c` (s-c), `sup1` (p1).
/// Web sign-in: `sup1` (p1), `sup2` (p2), and `ins-a` has a password too (inspectors may not sign in).
impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("dir");
        // The store and the attachments sit three folders deep, so a `../../` that escaped the
        // attachments folder would still land inside the temporary folder we watch.
        let root = dir.path().join("root");
        let data = root.join("srv").join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let mut state = AppState::open(&data.join("central.db")).expect("store");
        state.attachments_dir = data.join("attachments");
        let now = Clock::system().now();
        let devs = state.with_db(|c| {
            accounts::add_programme(c, "p1", "一号项目", None).expect("p1");
            accounts::add_programme(c, "p2", "二号项目", None).expect("p2");
            accounts::add_school(c, "p1", "s-a", "甲校", "示范", "").expect("s-a");
            accounts::add_school(c, "p1", "s-b", "乙校", "优质", "").expect("s-b");
            accounts::add_school(c, "p2", "s-c", "丙校", "潜质", "").expect("s-c");
            let people: [(&'static str, Role, &str, &[&str]); 6] = [
                ("ins-a", Role::Inspector, "p1", &["s-a"]),
                ("ins-a2", Role::Inspector, "p1", &["s-a"]),
                ("ins-b", Role::Inspector, "p1", &["s-b"]),
                ("ins-c", Role::Inspector, "p2", &["s-c"]),
                ("sup1", Role::Supervisor, "p1", &[]),
                ("sup2", Role::Supervisor, "p2", &[]),
            ];
            let mut devs = BTreeMap::new();
            for (user, role, programme, schools) in people {
                let schools: Vec<String> = schools.iter().map(|s| s.to_string()).collect();
                accounts::add_user(c, user, user, role, Some(programme), &schools, Some(password_hash()), 0).expect("user");
                if user != "sup2" {
                    let code = accounts::new_enrol_code(c, user, now).expect("code");
                    let (device, token, _) = accounts::enrol(c, &code, "平板", now).expect("enrol");
                    devs.insert(user, Dev { user: user.to_string(), device, token, role });
                }
            }
            devs
        });
        World { state, _dir: dir, root, devs }
    }

    fn dev(&self, user: &str) -> &Dev {
        &self.devs[user]
    }

    async fn call(&self, req: Request<Body>) -> Resp {
        self.call_on(self.state.clone(), req).await
    }

    async fn call_on(&self, state: AppState, req: Request<Body>) -> Resp {
        let resp = app(state).oneshot(req).await.expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body").to_vec();
        Resp { status, headers, body }
    }

    /// One sync round from cursor 0 (so the pull holds everything the device may see).
    async fn sync(&self, user: &str, push: Vec<Push>) -> SyncResponse {
        let r = self.sync_raw(&self.dev(user).token, &request(push)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        serde_json::from_slice(&r.body).expect("sync response")
    }

    async fn sync_raw(&self, token: &str, req: &SyncRequest) -> Resp {
        self.call(sync_post(token, protocol::encode(req).expect("encode"), true)).await
    }

    /// A new record of `template` by `user`, with `text` in its `visit_focus`, pushed and accepted.
    async fn record(&self, user: &str, school: &str, text: &str) -> Record {
        let mut r = new_record("inspection-visit", school, &self.dev(user).editor());
        r.set_answer(&FieldRef::top("visit_focus"), Answer::Text(text.into())).expect("answer");
        self.push_ok(user, &r).await;
        r
    }

    async fn push_ok(&self, user: &str, r: &Record) {
        let resp = self.sync(user, vec![push_of(r)]).await;
        assert_eq!(resp.results[0].outcome, Outcome::Accepted, "{:?}", resp.results[0]);
    }

    fn count(&self, sql: &str) -> i64 {
        self.state.with_db(|c| c.query_row(sql, [], |r| r.get(0)).expect("count"))
    }

    /// The central copy of a record, byte for byte.
    fn doc(&self, id: &RecordId) -> Vec<u8> {
        self.state.with_db(|c| c.query_row("SELECT doc FROM documents WHERE record_id = ?1", [id.as_str()], |r| r.get(0)).expect("doc"))
    }

    fn central(&self, id: &RecordId) -> Record {
        let doc = Automerge::load(&self.doc(id)).expect("central doc loads");
        Record::from_doc(doc, shidao_server::sync::template_of, shidao_server::sync::reader(), Clock::system()).expect("record")
    }

    fn status_of(&self, id: &RecordId) -> String {
        self.state.with_db(|c| c.query_row("SELECT status FROM records WHERE id = ?1", [id.as_str()], |r| r.get(0)).expect("status"))
    }

    /// Row counts of every table: what "nothing changed" means for the store as a whole
    /// (sessions and a device's last_seen aside, which reads legitimately touch).
    fn fingerprint(&self) -> BTreeMap<String, i64> {
        self.state.with_db(|c| {
            let tables: Vec<String> = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('sessions', 'sqlite_sequence') ORDER BY name")
                .expect("tables")
                .query_map([], |r| r.get(0))
                .expect("tables")
                .collect::<Result<_, _>>()
                .expect("tables");
            tables.into_iter().map(|t| {
                // The audit log records refused sign-ins (`sign_in.failed`): an attack leaves
                // those, and nothing else.
                let sql = if t == "audit_log" {
                    "SELECT COUNT(*) FROM audit_log WHERE action != 'sign_in.failed'".to_string()
                } else {
                    format!("SELECT COUNT(*) FROM \"{t}\"")
                };
                let n = c.query_row(&sql, [], |r| r.get(0)).expect("count");
                (t, n)
            }).collect()
        })
    }

    /// Every file under the temporary root (paths relative to it, with sizes).
    fn files(&self) -> BTreeMap<PathBuf, u64> {
        fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<PathBuf, u64>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    let rel = p.strip_prefix(base).expect("inside").to_path_buf();
                    // The store's own files change size with every write; only their names count.
                    let size = if rel.starts_with("srv/data/attachments") { e.metadata().map(|m| m.len()).unwrap_or(0) } else { 0 };
                    out.insert(rel, size);
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut out);
        out
    }

    /// Signs in through the form, as a browser would; returns the session.
    async fn sign_in(&self, user: &str, planted: Option<&str>) -> Session {
        let form = self.call(Request::get("/login").body(Body::empty()).expect("req")).await;
        let login_cookie = form.cookie("shidao_login").expect("login cookie");
        let csrf = hidden(&form.text(), "csrf");
        let mut cookie = format!("shidao_login={login_cookie}");
        if let Some(p) = planted {
            cookie.push_str(&format!("; shidao_session={p}"));
        }
        let r = self.call(form_post("/login", &cookie, &[("csrf", &csrf), ("user", user), ("password", PASSWORD)])).await;
        assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, Some("/")), "sign-in of {user}: {}", r.text());
        let id = r.cookie("shidao_session").expect("session cookie");
        let page = self.call(page_get("/", &id)).await;
        assert_eq!(page.status, StatusCode::OK);
        Session { id, csrf: hidden(&page.text(), "csrf"), set_cookie: r.set_cookies() }
    }
}

struct Session {
    id: String,
    csrf: String,
    set_cookie: Vec<String>,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    fn error(&self) -> ErrorBody {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("{}: not a JSON error: {}", self.status, self.text()))
    }

    /// The exact refusal: the status and the JSON error code.
    #[track_caller]
    fn refused(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(self.error().code, code, "{}", self.text());
    }

    /// A page that sends to sign-in (no session, or one that is no longer valid).
    #[track_caller]
    fn to_sign_in(&self) {
        assert_eq!((self.status, self.location()), (StatusCode::SEE_OTHER, Some("/login")), "{}", self.text());
    }

    fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=')?;
            (k == name && !v.is_empty()).then(|| v.to_string())
        })
    }
}

fn request(push: Vec<Push>) -> SyncRequest {
    SyncRequest {
        protocol: PROTOCOL,
        request_id: uuid::Uuid::new_v4().to_string(),
        cursor: 0,
        scope: None,
        reference: None,
        push,
        max_pull_bytes: Some(8 * 1024 * 1024),
        want_forms: vec![],
        set_aside: vec![],
        app: None,
    }
}

fn sync_post(token: &str, body: Vec<u8>, gzip: bool) -> Request<Body> {
    let mut b = Request::post("/v1/sync").header("authorization", format!("Bearer {token}"));
    if gzip {
        b = b.header("content-encoding", "gzip");
    }
    b.body(Body::from(body)).expect("request")
}

fn authed(method: &str, uri: &str, token: &str) -> Request<Body> {
    Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {token}")).body(Body::empty()).expect("request")
}

fn put_piece(uri: &str, token: &str, offset: u64, length: u64, piece: Vec<u8>) -> Request<Body> {
    Request::put(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("upload-offset", offset.to_string())
        .header("upload-length", length.to_string())
        .header("content-type", "image/jpeg")
        .body(Body::from(piece))
        .expect("request")
}

fn page_get(uri: &str, session: &str) -> Request<Body> {
    Request::get(uri).header("cookie", format!("shidao_session={session}")).body(Body::empty()).expect("request")
}

fn form_post(uri: &str, cookie: &str, form: &[(&str, &str)]) -> Request<Body> {
    let body = form.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&");
    Request::post(uri)
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request")
}

/// Percent-encodes everything but unreserved characters.
fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn hidden(html: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = html.find(&key).unwrap_or_else(|| panic!("no hidden {name} in {html}")) + key.len();
    html[at..].split('"').next().expect("value").to_string()
}

fn new_record(template: &str, school: &str, editor: &Editor) -> Record {
    let t = shidao_core::builtin(template).expect("template");
    Record::create(t, NewRecord { id: RecordId::random(), school: SchoolId::new(school).expect("school") }, editor.clone(), Clock::system())
        .expect("create")
}

fn push_of(r: &Record) -> Push {
    Push { record: r.id().to_string(), changes: r.save(), heads: r.heads().iter().map(|h| h.to_string()).collect() }
}

fn text_of(r: &Record, field: &str) -> Option<String> {
    match r.answer(&FieldRef::top(field)).expect("answer").answer {
        Some(Answer::Text(t)) => Some(t),
        _ => None,
    }
}

/// One change on top of `base` (a saved document) by `author` from `actor` (a fresh one if
/// `None`); returns the change bytes as a device would push them.
fn craft(base: &[u8], author: Option<Author<'static>>, actor: Option<ActorId>, edit: impl FnOnce(&mut Transaction<'_>)) -> Vec<u8> {
    let mut doc = Automerge::load(base).expect("load");
    let before = doc.get_heads();
    // (Setting the author picks a new actor, so the actor comes second.)
    doc.set_author(author);
    doc.set_actor(actor.unwrap_or_else(ActorId::random));
    doc.transact_with::<_, _, automerge::AutomergeError, _>(|_| CommitOptions::default().with_time(Clock::system().now()), |tx| {
        edit(tx);
        Ok(())
    })
    .expect("craft");
    doc.save_after(&before)
}

/// An edit to craft into a change.
type Edit<'a> = &'a dyn Fn(&mut Transaction<'_>);

fn obj(tx: &Transaction<'_>, key: &str) -> automerge::ObjId {
    tx.get(ROOT, key).expect("get").expect("key").1
}

/// The refusal code of each pushed record, in order.
fn outcomes(resp: &SyncResponse) -> Vec<(Outcome, String)> {
    resp.results.iter().map(|r| (r.outcome, r.code.clone().unwrap_or_default())).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

// ---------------------------------------------------------------------------------------------
// 1. Id guessing: reading and writing another school's records, pulls, attachments.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn family_1_id_guessing_reads_and_writes_nothing_of_another_school() {
    let mut t = Tally::new("1 id guessing");
    let w = World::new();
    // 1. School B's record (with a photo), school A's record, and programme 2's record.
    let ra = w.record("ins-a", "s-a", MARK_A).await;
    let mut rb = w.record("ins-b", "s-b", MARK_B).await;
    let rc = w.record("ins-c", "s-c", MARK_C).await;
    let photo: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let hash = shidao_core::store::content_hash(&photo);
    let b = w.dev("ins-b").clone();
    let up = w.call(put_piece(&format!("/v1/attachments/{hash}"), &b.token, 0, photo.len() as u64, photo.clone())).await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text());
    let att = AttachmentRef { hash: hash.clone(), name: "校园.jpg".into(), mime: "image/jpeg".into(), size: photo.len() as u64 };
    rb.set_answer(&FieldRef::top("walk_photo"), Answer::Attachment(att)).expect("photo");
    w.push_ok("ins-b", &rb).await;
    let a = w.dev("ins-a").clone();
    let rb_doc = w.doc(rb.id());
    let before = w.fingerprint();

    // 2. Reads: B's real id, random ids and malformed ids all answer the same 403, so ids cannot
    //    be probed; paths that leave the route are 404.
    let probes: Vec<(&str, String)> = vec![
        ("B's real record id", rb.id().to_string()),
        ("programme 2's real record id", rc.id().to_string()),
        ("a random UUID", RecordId::random().to_string()),
        ("an id of 4000 characters", "a".repeat(4000)),
        ("a percent-encoded path `../../etc/passwd`", "..%2F..%2Fetc%2Fpasswd".into()),
        ("SQL `' OR 1=1 --`", enc("' OR 1=1 --")),
        ("SQL `x' UNION SELECT doc FROM documents --`", enc("x' UNION SELECT doc FROM documents --")),
        ("B's id with a percent-encoded NUL after it", format!("{}%00", rb.id())),
        ("B's id in upper case", rb.id().as_str().to_uppercase()),
        ("a wildcard `%`", "%25".into()),
    ];
    for (what, id) in &probes {
        t.attack(format!("GET /v1/records/{{{what}}} as A"));
        let r = w.call(authed("GET", &format!("/v1/records/{id}"), &a.token)).await;
        r.refused(403, "forbidden");
        assert!(!r.text().contains(MARK_B), "the refusal leaks the record");
        t.refused();
    }
    for path in ["/v1/records/../../etc/passwd", "/v1/records/x/../../etc/passwd", "/v1/records/"] {
        t.attack(format!("GET {path}"));
        w.call(authed("GET", path, &a.token)).await.refused(404, "not_found");
        t.refused();
    }
    t.attack("GET a record with invalid UTF-8 in its id (%FF)");
    w.call(authed("GET", "/v1/records/%FF%FE", &a.token)).await.refused(400, "bad_request");
    t.refused();

    // 3. Writes: pushes onto B's record, however disguised, are refused one by one and the rest
    //    of the batch still goes in.
    let own = |n: usize| (0..n).map(|_| new_record("inspection-visit", "s-a", &a.editor())).collect::<Vec<_>>();
    let on_b = Push {
        record: rb.id().to_string(),
        changes: craft(&rb_doc, Some(a.editor().author()), None, |tx| {
            let answers = obj(tx, "answers");
            tx.put(&answers, "visit_focus", "被A改写").expect("put");
        }),
        heads: vec![],
    };
    let mut mine = new_record("inspection-visit", "s-a", &a.editor());
    mine.set_answer(&FieldRef::top("visit_focus"), Answer::Text("A自己的".into())).expect("answer");
    let same_id_as_b = Push { record: rb.id().to_string(), changes: mine.save(), heads: vec![] };
    let created_in_b = new_record("inspection-visit", "s-b", &a.editor());
    let created_in_c = new_record("inspection-visit", "s-c", &a.editor());
    let relabelled = Push { record: RecordId::random().to_string(), changes: rb_doc.clone(), heads: vec![] };
    let attacks: Vec<(&str, Push, &str)> = vec![
        ("an edit of B's record signed as A", on_b, "out_of_scope"),
        ("A's own new record under B's record id", same_id_as_b, "out_of_scope"),
        ("a new record in school B", push_of(&created_in_b), "out_of_scope"),
        ("a new record in programme 2's school", push_of(&created_in_c), "out_of_scope"),
        ("B's whole document under a random id", relabelled, "foreign_author"),
        ("a push to the id `../../etc/passwd`", Push { record: "../../etc/passwd".into(), changes: mine.save(), heads: vec![] }, "bad_record_id"),
        ("a push to the id `' OR 1=1 --`", Push { record: "' OR 1=1 --".into(), changes: mine.save(), heads: vec![] }, "bad_record_id"),
        ("a push to an id of 4000 characters", Push { record: "a".repeat(4000), changes: mine.save(), heads: vec![] }, "bad_record_id"),
        ("a push to an empty id", Push { record: String::new(), changes: mine.save(), heads: vec![] }, "bad_record_id"),
        ("a push to an id with a NUL", Push { record: format!("{}\0", rb.id()), changes: mine.save(), heads: vec![] }, "bad_record_id"),
    ];
    for ((what, push, code), good) in attacks.into_iter().zip(own(10)) {
        t.attack(format!("push {what}"));
        let resp = w.sync("ins-a", vec![push, push_of(&good)]).await;
        assert_eq!(outcomes(&resp), vec![(Outcome::Refused, code.to_string()), (Outcome::Accepted, String::new())], "{what}");
        assert_eq!(w.doc(rb.id()), rb_doc, "{what}: B's record changed");
        t.refused();
    }
    // Nothing of B's changed; the ten good records went in and nothing else did.
    let mut after = w.fingerprint();
    assert_eq!(after.remove("records"), before.get("records").map(|n| n + 10));
    assert_eq!(after.remove("changes"), before.get("changes").map(|n| n + 10));
    assert_eq!(after.remove("documents"), before.get("documents").map(|n| n + 10));
    for (table, n) in &after {
        if !["answers", "computed", "sync_requests", "actors"].contains(&table.as_str()) {
            assert_eq!(Some(n), before.get(table), "table {table} changed");
        }
    }
    assert_eq!(text_of(&w.central(rb.id()), "visit_focus").as_deref(), Some(MARK_B));

    // 4. Pulls: A's device, from cursor 0 and with any forged cursor or scope version, never
    //    receives B's or programme 2's records, nor their schools in the reference data.
    let sup_scope = w.sync("sup1", vec![]).await.scope;
    for (what, cursor, scope) in [
        ("from cursor 0", 0u64, None),
        ("with the supervisor's scope version", 0, Some(sup_scope.clone())),
        ("with cursor u64::MAX", u64::MAX, None),
        ("with cursor i64::MAX + 1", i64::MAX as u64 + 1, None),
    ] {
        t.attack(format!("pull {what}"));
        let mut req = request(vec![]);
        req.cursor = cursor;
        req.scope = scope;
        let r = w.sync_raw(&a.token, &req).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let resp: SyncResponse = serde_json::from_slice(&r.body).expect("response");
        let pulled: Vec<&str> = resp.pull.iter().map(|p| p.record.as_str()).collect();
        assert!(!pulled.contains(&rb.id().as_str()) && !pulled.contains(&rc.id().as_str()), "{what}: pulled {pulled:?}");
        if let Some(reference) = &resp.reference {
            let schools: Vec<&str> = reference.schools.iter().map(|s| s.id.as_str()).collect();
            assert_eq!(schools, ["s-a"], "{what}: reference data names other schools");
        }
        t.refused();
    }
    // (A's own pushes are not sent back to it; its colleague in school A gets them.)
    let resp = w.sync("ins-a2", vec![]).await;
    assert!(resp.pull.iter().any(|p| p.record == ra.id().as_str()), "school A's records still reach school A");
    t.attack("a supervisor of programme 1 pulls programme 2's record");
    let resp = w.sync("sup1", vec![]).await;
    assert!(!resp.pull.iter().any(|p| p.record == rc.id().as_str()));
    assert!(resp.pull.iter().any(|p| p.record == rb.id().as_str()), "but every school of its own programme");
    t.refused();

    // 5. Attachments: B's photo by its hash is not downloadable by A or by programme 2 (the
    //    same 404 as a file the server never had), and cannot be overwritten or spoiled.
    //    (Knowing the hash tells nothing either: see `a_hash_alone_...` below.)
    let unknown = "ab".repeat(32);
    let url = format!("/v1/attachments/{hash}");
    for who in ["ins-a", "ins-c"] {
        t.attack(format!("GET B's photo by hash as {who}"));
        let token = &w.dev(who).token;
        let r = w.call(authed("GET", &url, token)).await;
        r.refused(404, "not_found");
        assert_ne!(r.body, photo);
        let r2 = w.call(authed("GET", &format!("/v1/attachments/{unknown}"), token)).await;
        r2.refused(404, "not_found");
        assert_eq!(r.error().reason.replace(&hash, "H"), r2.error().reason.replace(&unknown, "H"), "same answer as a missing file");
        t.refused();
    }
    t.attack("PUT other bytes over B's photo as A");
    let r = w.call(put_piece(&url, &a.token, 0, photo.len() as u64, vec![0xEE; photo.len()])).await;
    r.refused(400, "bad_request");
    assert!(r.error().reason.contains("do not hash"), "{}", r.text());
    w.call(authed("GET", &url, &a.token)).await.refused(404, "not_found");
    t.refused();
    t.attack("A appends garbage to B's upload in progress");
    let photo2: Vec<u8> = (0..40_000u32).map(|i| (i * 13 % 241) as u8).collect();
    let hash2 = shidao_core::store::content_hash(&photo2);
    let url2 = format!("/v1/attachments/{hash2}");
    let len2 = photo2.len() as u64;
    assert_eq!(w.call(put_piece(&url2, &b.token, 0, len2, photo2[..20_000].to_vec())).await.status, StatusCode::OK);
    // A has no upload of its own to append to, and one of its own ends in the hash check.
    w.call(put_piece(&url2, &a.token, 20_000, len2, vec![0xEE; 20_000])).await.refused(409, "conflict");
    let r = w.call(put_piece(&url2, &a.token, 0, len2, vec![0xEE; len2 as usize])).await;
    r.refused(400, "bad_request");
    assert!(r.error().reason.contains("do not hash"), "{}", r.text());
    // B's upload is untouched: it resumes where it stopped and ends with the right bytes.
    let h = w.call(authed("HEAD", &url2, &b.token)).await;
    assert_eq!((h.status, h.headers.get("upload-offset").map(|v| v.as_bytes())), (StatusCode::OK, Some(&b"20000"[..])));
    assert_eq!(w.call(put_piece(&url2, &b.token, 20_000, len2, photo2[20_000..].to_vec())).await.status, StatusCode::OK);
    let r = w.call(authed("GET", &url2, &b.token)).await;
    assert_eq!((r.status, r.body == photo2), (StatusCode::OK, true));
    t.refused();
    // B still downloads its own photo, unchanged, and B's record is as it was.
    let r = w.call(authed("GET", &url, &b.token)).await;
    assert_eq!((r.status, r.body == photo), (StatusCode::OK, true));
    assert_eq!(w.doc(rb.id()), rb_doc);

    // 6. The web pages: a supervisor of programme 2 guesses programme 1's record ids.
    let s2 = w.sign_in("sup2", None).await;
    for (what, path) in [
        ("the record", format!("/records/{}", rb.id())),
        ("a field's history", format!("/records/{}/history?field=visit_focus", rb.id())),
    ] {
        t.attack(format!("programme 2's supervisor GETs {what} of programme 1"));
        let r = w.call(page_get(&path, &s2.id)).await;
        r.refused(403, "forbidden");
        assert!(!r.text().contains(MARK_B));
        t.refused();
    }
    for (what, path, form) in [
        ("approves", format!("/records/{}/review", rb.id()), vec![("action", "approve")]),
        ("resolves a field", format!("/records/{}/resolve", rb.id()), vec![("field", "visit_focus"), ("row", ""), ("pick", "0")]),
    ] {
        t.attack(format!("programme 2's supervisor {what} on programme 1's record"));
        let mut fields = vec![("csrf", s2.csrf.as_str())];
        fields.extend(form);
        w.call(form_post(&path, &format!("shidao_session={}", s2.id), &fields)).await.refused(403, "forbidden");
        assert_eq!(w.doc(rb.id()), rb_doc);
        t.refused();
    }
    t.finish();
}

/// The token with its last character replaced by a different one (never the same token again).
fn changed_last(token: &str) -> String {
    let last = if token.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &token[..token.len() - 1])
}

// ---------------------------------------------------------------------------------------------
// 2. Tokens replayed after revocation; users disabled.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn family_2_revoked_tokens_and_disabled_users_are_refused() {
    let mut t = Tally::new("2 revocation");
    let w = World::new();
    let a2 = w.dev("ins-a2").clone();
    // 1. ins-a2 writes a record and uploads a photo; both stay after the revocation.
    let mut r = w.record("ins-a2", "s-a", "撤销前的编辑").await;
    let photo = b"a small photo".to_vec();
    let hash = shidao_core::store::content_hash(&photo);
    let up = w.call(put_piece(&format!("/v1/attachments/{hash}"), &a2.token, 0, photo.len() as u64, photo.clone())).await;
    assert_eq!(up.status, StatusCode::OK);
    let doc = w.doc(r.id());

    // 2. The admin revokes the device (the `admin revoke-device` command).
    let out = w.state.with_db(|c| admin::run(c, AdminCommand::RevokeDevice { device: a2.device.clone() }, Clock::system().now())).expect("revoke");
    assert!(out.contains("revoked"), "{out}");
    let before = w.fingerprint();

    // 3. Every endpoint refuses the token with `revoked`.
    r.set_answer(&FieldRef::top("visit_focus"), Answer::Text("撤销后的编辑".into())).expect("edit");
    let body = protocol::encode(&request(vec![push_of(&r)])).expect("encode");
    let revoked: Vec<(&str, Request<Body>)> = vec![
        ("sync with a push", sync_post(&a2.token, body.clone(), true)),
        ("sync, uncompressed", sync_post(&a2.token, serde_json::to_vec(&request(vec![])).expect("json"), false)),
        ("GET its own record", authed("GET", &format!("/v1/records/{}", r.id()), &a2.token)),
        ("GET its own photo", authed("GET", &format!("/v1/attachments/{hash}"), &a2.token)),
        ("HEAD its own photo", authed("HEAD", &format!("/v1/attachments/{hash}"), &a2.token)),
        ("PUT a new photo", put_piece(&format!("/v1/attachments/{}", "cd".repeat(32)), &a2.token, 0, 3, b"abc".to_vec())),
    ];
    for (what, req) in revoked {
        t.attack(format!("revoked token: {what}"));
        let resp = w.call(req).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{what}");
        if !resp.body.is_empty() {
            assert_eq!(resp.error().code, "revoked", "{what}");
        }
        t.refused();
    }
    // Variants of the token are simply unknown.
    for (what, token) in [
        ("in upper case", a2.token.to_uppercase()),
        ("with a character changed", changed_last(&a2.token)),
        ("truncated", a2.token[..32].to_string()),
        ("with SQL after it", format!("{}' OR '1'='1", a2.token)),
        ("empty", String::new()),
    ] {
        t.attack(format!("revoked token {what}"));
        w.call(sync_post(&token, body.clone(), true)).await.refused(401, "unauthorized");
        t.refused();
    }
    t.attack("revoked token in a `Basic` header");
    let req = Request::post("/v1/sync").header("authorization", format!("Basic {}", a2.token)).body(Body::from(body.clone())).expect("req");
    w.call(req).await.refused(401, "unauthorized");
    t.refused();
    t.attack("revoking the device twice");
    let e = w.state.with_db(|c| admin::run(c, AdminCommand::RevokeDevice { device: a2.device.clone() }, 0)).expect_err("twice");
    assert!(e.to_string().contains("already revoked"), "{e}");
    t.refused();
    // Nothing changed, and the earlier edit and photo are still there.
    assert_eq!(w.fingerprint(), before);
    assert_eq!(w.doc(r.id()), doc);
    assert_eq!(text_of(&w.central(r.id()), "visit_focus").as_deref(), Some("撤销前的编辑"));
    let other = w.dev("ins-a").clone();
    let got = w.call(authed("GET", &format!("/v1/records/{}", r.id()), &other.token)).await;
    assert_eq!(got.status, StatusCode::OK, "the record stays readable by the school");
    // The photo's file is still there.
    assert!(w.files().keys().any(|p| p.ends_with(&hash)));

    // 4. A user disabled (users.active = 0; there is no admin command for it yet): their devices
    //    are `revoked`, their web session ends, they cannot sign in, no new enrolment code.
    let s1 = w.sign_in("sup1", None).await;
    let sup = w.dev("sup1").clone();
    let submitted = {
        let mut s = new_record("inspection-visit", "s-a", &other.editor());
        shidao_core::sample::fill_completely(&mut s, 1, &mut shidao_core::sample::Rng::new(7)).expect("fill");
        s.submit().expect("submit");
        w.push_ok("ins-a", &s).await;
        s
    };
    let sub_doc = w.doc(submitted.id());
    let pending = w.state.with_db(|c| accounts::new_enrol_code(c, "sup1", Clock::system().now())).expect("code");
    w.state.with_db(|c| c.execute("UPDATE users SET active = 0 WHERE id = 'sup1'", [])).expect("disable");
    let before = w.fingerprint();
    t.attack("disabled user's device syncs");
    w.call(sync_post(&sup.token, protocol::encode(&request(vec![])).expect("encode"), true)).await.refused(401, "revoked");
    t.refused();
    t.attack("disabled user's device reads a record");
    w.call(authed("GET", &format!("/v1/records/{}", submitted.id()), &sup.token)).await.refused(401, "revoked");
    t.refused();
    for path in ["/", "/records", "/exports", "/export/inspection-visit.csv", "/api/records?template=inspection-visit"] {
        t.attack(format!("disabled user's web session GETs {path}"));
        w.call(page_get(path, &s1.id)).await.to_sign_in();
        t.refused();
    }
    t.attack("disabled user's web session approves with a valid CSRF token");
    let r = w.call(form_post(&format!("/records/{}/review", submitted.id()), &format!("shidao_session={}", s1.id), &[("csrf", &s1.csrf), ("action", "approve")])).await;
    r.to_sign_in();
    assert_eq!((w.status_of(submitted.id()), w.doc(submitted.id())), ("submitted".to_string(), sub_doc.clone()));
    t.refused();
    t.attack("disabled user signs in again");
    let form = w.call(Request::get("/login").body(Body::empty()).expect("req")).await;
    let cookie = format!("shidao_login={}", form.cookie("shidao_login").expect("cookie"));
    let r = w.call(form_post("/login", &cookie, &[("csrf", &hidden(&form.text(), "csrf")), ("user", "sup1"), ("password", PASSWORD)])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("用户名或密码错误") && r.cookie("shidao_session").is_none());
    t.refused();
    t.attack("a code issued before the user was disabled enrols a tablet");
    let body = serde_json::json!({ "code": pending, "device_name": "新平板" }).to_string();
    w.call(Request::post("/v1/enrol").body(Body::from(body)).expect("req")).await.refused(401, "bad_code");
    t.refused();
    t.attack("a new enrolment code for a disabled user");
    let e = w.state.with_db(|c| accounts::new_enrol_code(c, "sup1", 0)).expect_err("inactive");
    assert!(e.to_string().contains("inactive"), "{e}");
    t.refused();
    assert_eq!(w.fingerprint(), before);
    t.finish();
}

// ---------------------------------------------------------------------------------------------
// 3. Crafted Automerge changes against the write rules.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn family_3_crafted_changes_are_refused_per_record() {
    let mut t = Tally::new("3 crafted changes");
    let w = World::new();
    let a = w.dev("ins-a").clone();
    let a2 = w.dev("ins-a2").clone();
    let sup = w.dev("sup1").clone();
    // 1. A record of A with an edit by ins-a2 too (whose actor is now bound to ins-a2's device),
    //    and a record submitted and returned with a comment by the supervisor.
    let r = w.record("ins-a", "s-a", MARK_A).await;
    let mut by_a2 = r.fork(a2.editor());
    by_a2.set_answer(&FieldRef::top("lessons_total"), Answer::Integer(12)).expect("a2 edit");
    w.push_ok("ins-a2", &by_a2).await;
    let a2_actor = by_a2.actor().clone();
    let mut returned = new_record("inspection-visit", "s-a", &a.editor());
    shidao_core::sample::fill_completely(&mut returned, 1, &mut shidao_core::sample::Rng::new(3)).expect("fill");
    returned.set_answer(&FieldRef::top("visit_focus"), Answer::Text(MARK_A.into())).expect("answer");
    returned.submit().expect("submit");
    w.push_ok("ins-a", &returned).await;
    let mut as_sup = w.central(returned.id()).fork(sup.editor());
    as_sup.return_for_correction("请补充证据").expect("return");
    w.push_ok("sup1", &as_sup).await;

    // Each attack goes in one request with a good new record of the same device after it: the
    // crafted record is refused with its code, stores nothing, and the good one is accepted.
    async fn try_push(w: &World, t: &mut Tally, user: &str, what: &str, target: &RecordId, changes: Vec<u8>, code: &str) {
        t.attack(format!("{user}: {what}"));
        let doc = w.doc(target);
        let status = w.status_of(target);
        let changes_before = w.count("SELECT COUNT(*) FROM changes");
        // A template both inspectors and supervisors fill.
        let good = new_record("baseline-assessment", "s-a", &w.dev(user).editor());
        let crafted = Push { record: target.to_string(), changes, heads: vec![] };
        let resp = w.sync(user, vec![crafted, push_of(&good)]).await;
        assert_eq!(outcomes(&resp), vec![(Outcome::Refused, code.to_string()), (Outcome::Accepted, String::new())], "{what}: {:?}", resp.results);
        assert_eq!(w.doc(target), doc, "{what}: the record changed");
        assert_eq!(w.status_of(target), status, "{what}: the status changed");
        assert_eq!(w.count("SELECT COUNT(*) FROM changes"), changes_before + 1, "{what}: only the good record is logged");
        t.refused();
    }
    let base = w.doc(r.id());
    let me = Some(a.editor().author());

    // 2. Review state set by a role that may not.
    for status in ["approved", "returned", "submitted ", "hacked"] {
        let c = craft(&base, me.clone(), None, |tx| tx.put(ROOT, "status", status).expect("put"));
        try_push(&w, &mut t, "ins-a", &format!("inspector sets status `{status}`"), r.id(), c, "status_not_allowed").await;
    }
    let c = craft(&base, me.clone(), None, |tx| tx.put(ROOT, "status", 7i64).expect("put"));
    try_push(&w, &mut t, "ins-a", "inspector sets status to a number", r.id(), c, "status_not_allowed").await;
    for (action, user, code) in [("approve", "ins-a", "status_not_allowed"), ("return", "ins-a", "status_not_allowed"), ("submit", "sup1", "foreign_author"), ("approve", "sup1", "foreign_author")] {
        let c = craft(&base, me.clone(), None, |tx| {
            let review = obj(tx, "review");
            let n = tx.length(&review);
            let e = tx.insert_object(&review, n, ObjType::Map).expect("entry");
            tx.put(&e, "action", action).expect("action");
            tx.put(&e, "user", user).expect("user");
        });
        try_push(&w, &mut t, "ins-a", &format!("inspector appends a review step `{action}` naming {user}"), r.id(), c, code).await;
    }
    let rbase = w.doc(returned.id());
    let c = craft(&rbase, me.clone(), None, |tx| tx.put(ROOT, "status", "approved").expect("put"));
    try_push(&w, &mut t, "ins-a", "inspector approves its returned record", returned.id(), c, "status_not_allowed").await;
    // (Setting `draft` on a draft record is no change at all; on a returned one it is refused.)
    let c = craft(&rbase, me.clone(), None, |tx| tx.put(ROOT, "status", "draft").expect("put"));
    try_push(&w, &mut t, "ins-a", "inspector sets its returned record back to `draft`", returned.id(), c, "status_not_allowed").await;

    // 3. Authors and actors that are not this user on this device.
    let forged: Vec<(&str, Option<Author<'static>>)> = vec![
        ("another inspector of the school", Some(a2.editor().author())),
        ("the supervisor", Some(sup.editor().author())),
        ("this user on another device", Some(Editor { device: DeviceId::new("someone-elses-tablet").expect("id"), ..a.editor() }.author())),
        ("the server itself", Some(shidao_server::sync::reader().author())),
        ("no author at all", None),
    ];
    for (who, author) in forged {
        let c = craft(&base, author, None, |tx| {
            let answers = obj(tx, "answers");
            tx.put(&answers, "visit_focus", "冒名").expect("put");
        });
        try_push(&w, &mut t, "ins-a", &format!("a change claiming to be by {who}"), r.id(), c, "foreign_author").await;
    }
    // Another device's actor: in a record where that actor already wrote, Automerge gives the
    // change that actor's first author (ins-a2), so it is a foreign author; in a record where
    // it never wrote, the author is ins-a's but the actor is bound to ins-a2's device.
    let c = craft(&base, me.clone(), Some(a2_actor.clone()), |tx| {
        let answers = obj(tx, "answers");
        tx.put(&answers, "visit_focus", "借用别人的 actor").expect("put");
    });
    try_push(&w, &mut t, "ins-a", "a change from ins-a2's actor, in a record it wrote", r.id(), c, "foreign_author").await;
    let c = craft(&w.doc(returned.id()), me.clone(), Some(a2_actor.clone()), |tx| {
        let answers = obj(tx, "answers");
        tx.put(&answers, "visit_focus", "借用别人的 actor").expect("put");
    });
    try_push(&w, &mut t, "ins-a", "a change from ins-a2's actor, in a record it never wrote", returned.id(), c, "foreign_actor").await;
    t.attack("ins-a: a new record claiming to be created by ins-a2");
    let mut stolen = new_record("inspection-visit", "s-a", &a2.editor());
    stolen.set_answer(&FieldRef::top("visit_focus"), Answer::Text("x".into())).expect("answer");
    let records = w.count("SELECT COUNT(*) FROM records");
    let resp = w.sync("ins-a", vec![push_of(&stolen)]).await;
    assert_eq!(outcomes(&resp), vec![(Outcome::Refused, "foreign_author".to_string())]);
    assert_eq!(w.count("SELECT COUNT(*) FROM records"), records);
    t.refused();
    t.attack("ins-a: a guidance log (only experts fill it)");
    let log = new_record("guidance-log", "s-a", &Editor { role: Role::Expert, ..a.editor() });
    let resp = w.sync("ins-a", vec![push_of(&log)]).await;
    assert_eq!(outcomes(&resp), vec![(Outcome::Refused, "not_allowed".to_string())]);
    assert_eq!(w.count("SELECT COUNT(*) FROM records"), records);
    t.refused();
    // Signatures made out to someone else.
    let c = craft(&base, me.clone(), None, |tx| {
        let answers = obj(tx, "answers");
        let sig = shidao_core::builtin("inspection-visit")
            .expect("t")
            .top_fields()
            .find(|f| f.kind() == shidao_core::template::FieldKind::Signature)
            .expect("signature field")
            .id()
            .to_string();
        let m = tx.put_object(&answers, sig.as_str(), ObjType::Map).expect("sig");
        tx.put(&m, "user", "sup1").expect("user");
    });
    try_push(&w, &mut t, "ins-a", "a signature made out to the supervisor", r.id(), c, "foreign_signature").await;

    // 4. Rewriting the record's identity or replacing its parts (by the supervisor, whose scope
    //    covers both schools, so only the identity rule can stop it; and by the inspector).
    let sbase = w.doc(r.id());
    let sup_author = Some(sup.editor().author());
    let identity: Vec<(&str, &str, Edit, &str)> = vec![
        ("ins-a", "moves the record to school B", &|tx| {
            let m = obj(tx, "meta");
            tx.put(&m, "school", "s-b").expect("put");
        }, "out_of_scope"),
        ("sup1", "moves the record to school B", &|tx| {
            let m = obj(tx, "meta");
            tx.put(&m, "school", "s-b").expect("put");
        }, "meta_changed"),
        ("sup1", "moves the record to programme 2's school", &|tx| {
            let m = obj(tx, "meta");
            tx.put(&m, "school", "s-c").expect("put");
        }, "out_of_scope"),
        // To another form published at the record's version (guidance-log v1, as the visit's).
        ("sup1", "changes the record's template", &|tx| {
            let m = obj(tx, "meta");
            tx.put(&m, "template", "guidance-log").expect("put");
        }, "meta_changed"),
        ("sup1", "changes the record's template version", &|tx| {
            let m = obj(tx, "meta");
            tx.put(&m, "version", 99i64).expect("put");
        }, "unknown_template"),
        ("sup1", "changes who created the record", &|tx| {
            let m = obj(tx, "meta");
            tx.put(&m, "created_by", "sup1").expect("put");
        }, "meta_changed"),
        ("sup1", "changes the record's id", &|tx| {
            let m = obj(tx, "meta");
            tx.put(&m, "id", RecordId::random().as_str()).expect("put");
        }, "wrong_record"),
        ("sup1", "replaces the answers object", &|tx| {
            tx.put_object(ROOT, "answers", ObjType::Map).expect("put");
        }, "structure"),
        ("sup1", "replaces the review list", &|tx| {
            tx.put_object(ROOT, "review", ObjType::List).expect("put");
        }, "structure"),
        ("sup1", "adds a key at the top of the record", &|tx| {
            tx.put(ROOT, "owner", "sup1").expect("put");
        }, "structure"),
    ];
    for (user, what, edit, code) in identity {
        let author = if user == "sup1" { sup_author.clone() } else { me.clone() };
        let c = craft(&sbase, author, None, edit);
        try_push(&w, &mut t, user, what, r.id(), c, code).await;
    }

    // 5. A sealed (approved) record refuses every change, even the supervisor's.
    let mut sealed = new_record("inspection-visit", "s-a", &a.editor());
    shidao_core::sample::fill_completely(&mut sealed, 1, &mut shidao_core::sample::Rng::new(5)).expect("fill");
    sealed.set_answer(&FieldRef::top("visit_focus"), Answer::Text(MARK_A.into())).expect("answer");
    sealed.submit().expect("submit");
    w.push_ok("ins-a", &sealed).await;
    let mut approve = w.central(sealed.id()).fork(sup.editor());
    approve.approve(None).expect("approve");
    w.push_ok("sup1", &approve).await;
    assert_eq!(w.status_of(sealed.id()), "approved");
    let sealed_doc = w.doc(sealed.id());
    let edits: Vec<(&str, &str, Edit)> = vec![
        ("ins-a", "edits an answer", &|tx| {
            let answers = obj(tx, "answers");
            tx.put(&answers, "visit_focus", "批准后修改").expect("put");
        }),
        ("sup1", "edits an answer", &|tx| {
            let answers = obj(tx, "answers");
            tx.put(&answers, "visit_focus", "督导批准后修改").expect("put");
        }),
        ("sup1", "returns it", &|tx| tx.put(ROOT, "status", "returned").expect("put")),
        ("ins-a", "sets it back to submitted", &|tx| tx.put(ROOT, "status", "submitted").expect("put")),
        ("ins-a", "deletes its status", &|tx| tx.delete(ROOT, "status").expect("delete")),
    ];
    for (user, what, edit) in edits {
        let author = if user == "sup1" { sup_author.clone() } else { me.clone() };
        let c = craft(&sealed_doc, author, None, edit);
        try_push(&w, &mut t, user, &format!("{what} of an approved record"), sealed.id(), c, "sealed").await;
    }
    // A replay of what the sealed record already holds is fine (and changes nothing).
    let resp = w.sync("ins-a", vec![push_of(&sealed)]).await;
    assert_eq!(outcomes(&resp), vec![(Outcome::Accepted, String::new())]);
    assert_eq!(w.doc(sealed.id()), sealed_doc);

    // 6. Every prior edit is still in the records.
    let central = w.central(r.id());
    assert_eq!(text_of(&central, "visit_focus").as_deref(), Some(MARK_A));
    assert_eq!(central.answer(&FieldRef::top("lessons_total")).expect("a").answer, Some(Answer::Integer(12)));
    assert_eq!(text_of(&w.central(sealed.id()), "visit_focus").as_deref(), Some(MARK_A));
    assert_eq!(w.status_of(returned.id()), "returned");
    t.finish();
}

/// Crafted changes inside what earlier changes wrote: an inspector of the school rewriting or
/// deleting the supervisor's review step or comment, deleting the status, re-signing a
/// colleague's signature inside its object, or submitting an incomplete record by setting the
/// status. Each is refused and the stored document stays byte for byte the same.
#[tokio::test]
async fn crafted_changes_cannot_rewrite_review_steps_signatures_or_submit_incomplete() {
    let w = World::new();
    let a = w.dev("ins-a").clone();
    let sup = w.dev("sup1").clone();
    let mut r = new_record("inspection-visit", "s-a", &a.editor());
    shidao_core::sample::fill_completely(&mut r, 1, &mut shidao_core::sample::Rng::new(3)).expect("fill");
    r.submit().expect("submit");
    w.push_ok("ins-a", &r).await;
    let mut as_sup = w.central(r.id()).fork(sup.editor());
    as_sup.return_for_correction("请补充证据").expect("return");
    w.push_ok("sup1", &as_sup).await;
    let base = w.doc(r.id());
    let me = Some(a.editor().author());
    let mut holes = Vec::new();
    let attacks: Vec<(&str, Edit)> = vec![
        ("rewrites the supervisor's `return` step into `approve`", &|tx| {
            let review = obj(tx, "review");
            let last = tx.length(&review) - 1;
            let e = tx.get(&review, last).expect("get").expect("entry").1;
            tx.put(&e, "action", "approve").expect("put");
        }),
        ("rewrites the supervisor's comment", &|tx| {
            let review = obj(tx, "review");
            let last = tx.length(&review) - 1;
            let e = tx.get(&review, last).expect("get").expect("entry").1;
            tx.put(&e, "comment", "无需修改").expect("put");
        }),
        ("deletes the supervisor's review step", &|tx| {
            let review = obj(tx, "review");
            let last = tx.length(&review) - 1;
            tx.delete(&review, last).expect("delete");
        }),
        ("deletes the status (reads as draft)", &|tx| tx.delete(ROOT, "status").expect("delete")),
    ];
    for (what, edit) in attacks {
        let c = craft(&base, me.clone(), None, edit);
        let resp = w.sync("ins-a", vec![Push { record: r.id().to_string(), changes: c, heads: vec![] }]).await;
        if resp.results[0].outcome != Outcome::Refused || w.doc(r.id()) != base {
            holes.push(format!("sync.rs: an inspector {what}: {:?}", resp.results[0]));
        }
        // Each attack starts from the original record again.
        w.state
            .with_db(|c| c.execute("UPDATE documents SET doc = ?2 WHERE record_id = ?1", rusqlite::params![r.id().as_str(), base]))
            .expect("reset");
    }
    // Submitting an empty record (the core refuses: answers missing) by setting the status.
    let empty = w.record("ins-a", "s-a", "空").await;
    let c = craft(&w.doc(empty.id()), me.clone(), None, |tx| tx.put(ROOT, "status", "submitted").expect("put"));
    let resp = w.sync("ins-a", vec![Push { record: empty.id().to_string(), changes: c, heads: vec![] }]).await;
    if resp.results[0].outcome == Outcome::Accepted && w.status_of(empty.id()) == "submitted" {
        holes.push("sync.rs: an inspector submits a record with missing answers (no validation on the server)".into());
    }
    // A colleague's signature, re-signed as one's own inside the existing signature object.
    let draft = w.record("ins-a", "s-a", "签名").await;
    let mut signed = w.central(draft.id()).fork(w.dev("ins-a2").editor());
    signed.sign(&FieldRef::top("leader_signature"), None, None).expect("sign");
    w.push_ok("ins-a2", &signed).await;
    let before = w.doc(draft.id());
    let c = craft(&before, me.clone(), None, |tx| {
        let answers = obj(tx, "answers");
        let sig = tx.get(&answers, "leader_signature").expect("get").expect("signature").1;
        tx.put(&sig, "user", "ins-a").expect("put");
    });
    let resp = w.sync("ins-a", vec![Push { record: draft.id().to_string(), changes: c, heads: vec![] }]).await;
    if resp.results[0].outcome == Outcome::Accepted && w.doc(draft.id()) != before {
        holes.push("sync.rs: an inspector rewrites a colleague's signature as their own".into());
    }
    assert!(holes.is_empty(), "refusals missing:\n{}", holes.join("\n"));
}

/// Attachments are named by their SHA-256, but the hash is not a key: knowing another school's
/// file's hash neither tells whether the server holds it (HEAD, PUT) nor opens it when referenced
/// from a record of one's own school. Only proving possession (uploading the bytes whole) does,
/// and then for one's own school only; the stored file never changes.
#[tokio::test]
async fn a_hash_alone_neither_reveals_nor_opens_another_schools_file() {
    let w = World::new();
    let a = w.dev("ins-a").clone();
    let b = w.dev("ins-b").clone();
    let photo: Vec<u8> = (0..30_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let hash = shidao_core::store::content_hash(&photo);
    let url = format!("/v1/attachments/{hash}");
    let len = photo.len() as u64;
    let stored = w.root.join("srv/data/attachments").join(&hash);
    // B uploads its photo and pushes the record that shows it, as a tablet does.
    let up = w.call(put_piece(&url, &b.token, 0, len, photo.clone())).await;
    assert_eq!((up.status, up.text().contains("\"complete\":true")), (StatusCode::OK, true), "{}", up.text());
    let mut rb = new_record("inspection-visit", "s-b", &b.editor());
    let att = AttachmentRef { hash: hash.clone(), name: "x.jpg".into(), mime: "image/jpeg".into(), size: len };
    rb.set_answer(&FieldRef::top("walk_photo"), Answer::Attachment(att.clone())).expect("photo");
    w.push_ok("ins-b", &rb).await;
    let modified = std::fs::metadata(&stored).expect("stored").modified().expect("mtime");

    // 1. HEAD: 404 to A (another school of the programme) and to programme 2, as for a file
    //    the server never had.
    for who in ["ins-a", "ins-c"] {
        let head = w.call(authed("HEAD", &url, &w.dev(who).token)).await;
        assert_eq!(head.status, StatusCode::NOT_FOUND, "{who}: upload-length {:?}", head.headers.get("upload-length"));
    }
    // 2. PUT of an empty piece starts A's own upload; it does not say `complete`.
    let put = w.call(put_piece(&url, &a.token, 0, len, vec![])).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    assert!(!put.text().contains("\"complete\":true"), "{}", put.text());
    assert!(put.text().contains("\"received\":0"), "{}", put.text());
    let head = w.call(authed("HEAD", &url, &a.token)).await;
    assert_eq!(head.headers.get("upload-complete").map(|v| v.as_bytes()), Some(&b"0"[..]));
    assert_eq!(head.headers.get("upload-offset").map(|v| v.as_bytes()), Some(&b"0"[..]));
    // 3. A references B's hash from a record of its own school: the record is accepted (a record
    //    may name any file), the file stays closed to A and to A's colleague.
    let mut ra = new_record("inspection-visit", "s-a", &a.editor());
    ra.set_answer(&FieldRef::top("walk_photo"), Answer::Attachment(att.clone())).expect("photo");
    w.push_ok("ins-a", &ra).await;
    for who in ["ins-a", "ins-a2", "ins-c"] {
        let got = w.call(authed("GET", &url, &w.dev(who).token)).await;
        got.refused(404, "not_found");
        assert_ne!(got.body, photo, "{who}");
        // (A's HEAD shows only its own empty upload.)
        let head = w.call(authed("HEAD", &url, &w.dev(who).token)).await;
        match who {
            "ins-a" => assert_eq!(head.headers.get("upload-complete").map(|v| v.as_bytes()), Some(&b"0"[..])),
            _ => assert_eq!(head.status, StatusCode::NOT_FOUND, "{who}"),
        }
    }
    // 4. Other bytes under B's hash are discarded; B's file is unchanged and B still reads it, as
    //    does programme 1's supervisor.
    w.call(put_piece(&url, &a.token, 0, len, vec![0xEE; photo.len()])).await.refused(400, "bad_request");
    assert_eq!(std::fs::read(&stored).expect("stored"), photo);
    for who in ["ins-b", "sup1"] {
        let got = w.call(authed("GET", &url, &w.dev(who).token)).await;
        assert_eq!((got.status, got.body == photo), (StatusCode::OK, true), "{who}");
    }

    // 5. The same photo really taken in school A (a copy of the file): A uploads it, cut and
    //    resumed, and becomes a holder; then A's colleague downloads it through A's record. The
    //    stored file is not rewritten.
    let first = w.call(put_piece(&url, &a.token, 0, len, photo[..10_000].to_vec())).await;
    assert!(first.text().contains("\"complete\":false"), "{}", first.text());
    let head = w.call(authed("HEAD", &url, &a.token)).await;
    assert_eq!((head.status, head.headers.get("upload-offset").map(|v| v.as_bytes())), (StatusCode::OK, Some(&b"10000"[..])));
    let rest = w.call(put_piece(&url, &a.token, 10_000, len, photo[10_000..].to_vec())).await;
    assert!(rest.text().contains("\"complete\":true"), "{}", rest.text());
    assert_eq!(std::fs::metadata(&stored).expect("stored").modified().expect("mtime"), modified);
    assert_eq!(std::fs::read(&stored).expect("stored"), photo);
    for who in ["ins-a", "ins-a2", "ins-b", "sup1"] {
        let got = w.call(authed("GET", &url, &w.dev(who).token)).await;
        assert_eq!((got.status, got.body == photo), (StatusCode::OK, true), "{who}");
        let head = w.call(authed("HEAD", &url, &w.dev(who).token)).await;
        assert_eq!(head.headers.get("upload-complete").map(|v| v.as_bytes()), Some(&b"1"[..]), "{who}");
    }
    w.call(authed("GET", &url, &w.dev("ins-c").token)).await.refused(404, "not_found");
    // No part file is left behind; the folder holds the one stored file.
    let names: Vec<String> = std::fs::read_dir(stored.parent().expect("dir"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, vec![hash.clone()]);
}

/// The dashboard's cards ("records this term", "awaiting review") count the supervisor's own
/// programme only (this suite found them counting every programme).
#[tokio::test]
async fn dashboard_counts_only_the_supervisors_programme() {
    let w = World::new();
    let mut holes: Vec<String> = Vec::new();
    // A submitted record in programme 1; programme 2's supervisor must not count it.
    let mut s = new_record("inspection-visit", "s-b", &w.dev("ins-b").editor());
    shidao_core::sample::fill_completely(&mut s, 1, &mut shidao_core::sample::Rng::new(4)).expect("fill");
    s.submit().expect("submit");
    w.push_ok("ins-b", &s).await;
    let s2 = w.sign_in("sup2", None).await;
    let dash = w.call(page_get("/", &s2.id)).await.text();
    if !dash.contains(r#"<a href="/records?status=submitted">0</a>"#) {
        holes.push("reports.rs: programme 2's dashboard counts programme 1's records awaiting review".into());
    }
    assert!(holes.is_empty(), "holes still open:\n{}", holes.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// 4. Oversized and deeply nested bodies.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn family_4_oversized_and_nested_bodies_are_refused_and_the_server_stays_up() {
    let mut t = Tally::new("4 bodies");
    let w = World::new();
    let a = w.dev("ins-a").clone();
    let r = w.record("ins-a", "s-a", MARK_A).await;
    let doc = w.doc(r.id());
    let before = w.fingerprint();
    let files = w.files();

    async fn still_up(w: &World, token: &str) {
        let start = std::time::Instant::now();
        let h = w.call(Request::get("/healthz").body(Body::empty()).expect("req")).await;
        assert_eq!(h.status, StatusCode::OK);
        let s = w.call(sync_post(token, protocol::encode(&request(vec![])).expect("encode"), true)).await;
        assert_eq!(s.status, StatusCode::OK, "{}", s.text());
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "slow after an attack: {:?}", start.elapsed());
    }

    // 1. Bodies over the limit: compressed, uncompressed, and on the enrolment endpoint.
    t.attack("a sync body one byte over 16 MiB");
    w.call(sync_post(&a.token, vec![b' '; protocol::MAX_BODY_BYTES + 1], true)).await.refused(413, "too_large");
    t.refused();
    t.attack("an uncompressed sync body one byte over 16 MiB");
    w.call(sync_post(&a.token, vec![b' '; protocol::MAX_BODY_BYTES + 1], false)).await.refused(413, "too_large");
    t.refused();
    t.attack("an enrolment body of 100 KB (limit 64 KiB)");
    let big = format!(r#"{{"code":"AAAAA-BBBBB","device_name":"{}"}}"#, "x".repeat(100_000));
    let r2 = w.call(Request::post("/v1/enrol").body(Body::from(big)).expect("req")).await;
    r2.refused(413, "too_large");
    t.refused();
    t.attack("an enrolment body of 3 MB");
    w.call(Request::post("/v1/enrol").body(Body::from(vec![b' '; 3_000_000])).expect("req")).await.refused(413, "too_large");
    t.refused();

    // 2. A gzip bomb: 65 KB that inflate past 64 MiB; refused quickly.
    t.attack("a gzip bomb (over 64 MiB once inflated)");
    let bomb = gzip(&vec![b' '; protocol::MAX_DECOMPRESSED_BYTES as usize + 1024]);
    assert!(bomb.len() < 200_000, "{}", bomb.len());
    let start = std::time::Instant::now();
    w.call(sync_post(&a.token, bomb.clone(), true)).await.refused(413, "too_large");
    assert!(start.elapsed() < std::time::Duration::from_secs(10), "the bomb took {:?}", start.elapsed());
    still_up(&w, &a.token).await;
    t.refused();
    t.attack("a gzip bomb hidden inside a gzip bomb");
    w.call(sync_post(&a.token, gzip(&bomb), true)).await.refused(400, "bad_request");
    t.refused();
    t.attack("gzip claimed but not gzip");
    w.call(sync_post(&a.token, b"\x1f\x8b\x08\x00 not really".to_vec(), true)).await.refused(400, "bad_request");
    t.refused();
    t.attack("a gzip body cut in the middle");
    let cut = protocol::encode(&request(vec![push_of(&r)])).expect("encode");
    w.call(sync_post(&a.token, cut[..cut.len() / 2].to_vec(), true)).await.refused(400, "bad_request");
    t.refused();
    t.attack("a sync body whose connection breaks off half-way");
    let half = cut[..cut.len() / 2].to_vec();
    let broken = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(axum::body::Bytes::from(half)),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset")),
    ]);
    let req = Request::post("/v1/sync")
        .header("authorization", format!("Bearer {}", a.token))
        .header("content-encoding", "gzip")
        .body(Body::from_stream(broken))
        .expect("request");
    // A 408 the tablet retries, not a 400 it would take for a request it must not send again.
    w.call(req).await.refused(408, "incomplete_body");
    t.refused();

    // 3. JSON nested 100,000 levels deep, every way in: a clear 400, no stack overflow. (The
    //    enrolment endpoint takes 64 KiB at most, so it gets 10,000 levels: still far past
    //    the parser's limit of 128; 100,000 are simply too large for it.)
    let shapes = |depth: usize| -> Vec<(&'static str, Vec<u8>)> {
        let deep = |open: &str, close: &str| format!("{}{}", open.repeat(depth), close.repeat(depth));
        vec![
            ("arrays", deep("[", "]").into_bytes()),
            ("objects", deep(r#"{"a":"#, "}").into_bytes()),
            ("in the push list", format!(r#"{{"protocol":1,"request_id":"r","cursor":0,"push":{}}}"#, deep("[", "]")).into_bytes()),
            (
                "in a record's heads",
                format!(r#"{{"protocol":1,"request_id":"r","cursor":0,"push":[{{"record":"x","changes":"","heads":{}}}]}}"#, deep("[", "]")).into_bytes(),
            ),
            ("in the enrolment code", format!(r#"{{"code":{},"device_name":"x"}}"#, deep("[", "]")).into_bytes()),
            ("unclosed", "[".repeat(depth).into_bytes()),
        ]
    };
    for (what, body) in shapes(100_000) {
        for gz in [false, true] {
            t.attack(format!("sync JSON nested 100k deep: {what}{}", if gz { ", gzip" } else { "" }));
            let payload = if gz { gzip(&body) } else { body.clone() };
            let resp = w.call(sync_post(&a.token, payload, gz)).await;
            resp.refused(400, "bad_request");
            assert!(resp.error().reason.contains("not a valid message"), "{}", resp.error().reason);
            t.refused();
        }
        t.attack(format!("enrol JSON nested 100k deep: {what}"));
        w.call(Request::post("/v1/enrol").body(Body::from(body)).expect("req")).await.refused(413, "too_large");
        t.refused();
    }
    for (what, body) in shapes(10_000) {
        t.attack(format!("enrol JSON nested 10k deep: {what}"));
        let resp = w.call(Request::post("/v1/enrol").body(Body::from(body)).expect("req")).await;
        resp.refused(400, "bad_request");
        assert!(resp.error().reason.contains("not an enrolment request"), "{}", resp.error().reason);
        t.refused();
    }
    still_up(&w, &a.token).await;

    // 3b. The binary envelope (CBOR in deflate): the same limits, its own ways to go wrong.
    let binary = |body: Vec<u8>| {
        Request::post("/v1/sync")
            .header("authorization", format!("Bearer {}", a.token))
            .header("content-type", protocol::BINARY_CONTENT_TYPE)
            .header("content-encoding", "deflate")
            .body(Body::from(body))
            .expect("request")
    };
    let deflate = |bytes: &[u8]| {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(bytes).expect("deflate");
        z.finish().expect("deflate")
    };
    t.attack("a deflate bomb in the binary envelope (over 64 MiB once inflated)");
    let start = std::time::Instant::now();
    w.call(binary(deflate(&vec![0u8; protocol::MAX_DECOMPRESSED_BYTES as usize + 1024]))).await.refused(413, "too_large");
    assert!(start.elapsed() < std::time::Duration::from_secs(10), "the bomb took {:?}", start.elapsed());
    t.refused();
    t.attack("a binary body one byte over 16 MiB");
    w.call(binary(vec![0u8; protocol::MAX_BODY_BYTES + 1])).await.refused(413, "too_large");
    t.refused();
    t.attack("a binary body cut in the middle");
    let good = protocol::Envelope::Binary.encode(&request(vec![push_of(&r)])).expect("encode");
    let resp = w.call(binary(good[..good.len() / 2].to_vec())).await;
    resp.refused(400, "bad_request");
    assert!(resp.error().reason.starts_with("body is not"), "{}", resp.error().reason);
    t.refused();
    for (what, cbor) in [
        ("CBOR arrays nested 100k deep", vec![0x81u8; 100_000]),
        ("a CBOR push list claiming 4 billion entries", [&[0xa1u8, 0x64][..], b"push", &[0x9a, 0xff, 0xff, 0xff, 0xff]].concat()),
        ("a CBOR byte string claiming 4 GiB", [&[0xa1u8, 0x6a][..], b"request_id", &[0x5a, 0xff, 0xff, 0xff, 0xff], b"xx"].concat()),
        ("JSON labelled as the binary envelope", serde_json::to_vec(&request(vec![])).expect("json")),
    ] {
        t.attack(format!("{what}, in deflate"));
        let resp = w.call(binary(deflate(&cbor))).await;
        resp.refused(400, "bad_request");
        assert!(resp.error().reason.contains("not a valid message"), "{what}: {}", resp.error().reason);
        t.refused();
    }
    for (what, content_type, encoding) in
        [("an unknown content type", "text/plain", None), ("the binary envelope in gzip", protocol::BINARY_CONTENT_TYPE, Some("gzip"))]
    {
        t.attack(format!("a sync body in {what}"));
        let mut req = Request::post("/v1/sync").header("authorization", format!("Bearer {}", a.token)).header("content-type", content_type);
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        let resp = w.call(req.body(Body::from(good.clone())).expect("request")).await;
        resp.refused(415, "unsupported_envelope");
        assert!(resp.error().reason.contains(protocol::BINARY_CONTENT_TYPE), "{}", resp.error().reason);
        t.refused();
    }
    still_up(&w, &a.token).await;

    // 4. A huge number of records in one push: each refused on its own, the request bounded.
    t.attack("20,000 records in one push (garbage), plus one good record");
    let good = new_record("inspection-visit", "s-a", &a.editor());
    let mut push: Vec<Push> = (0..20_000).map(|i| Push { record: format!("bogus/{i}"), changes: vec![0x85, 0x6f, 0x4a, 0x83], heads: vec![] }).collect();
    push.push(push_of(&good));
    let start = std::time::Instant::now();
    let resp = w.sync("ins-a", push).await;
    assert!(start.elapsed() < std::time::Duration::from_secs(30), "took {:?}", start.elapsed());
    assert_eq!(resp.results.len(), 20_001);
    assert!(resp.results[..20_000].iter().all(|x| x.outcome == Outcome::Refused && x.code.as_deref() == Some("bad_record_id")));
    assert_eq!(resp.results[20_000].outcome, Outcome::Accepted);
    assert_eq!(w.count("SELECT COUNT(*) FROM records"), before["records"] + 1);
    t.refused();
    t.attack("5,000 well-formed new-record ids with corrupt bytes");
    let push: Vec<Push> = (0..5_000).map(|_| Push { record: RecordId::random().to_string(), changes: b"\x85\x6f\x4a\x83 junk".to_vec(), heads: vec![] }).collect();
    let resp = w.sync("ins-a", push).await;
    assert!(resp.results.iter().all(|x| x.outcome == Outcome::Refused && x.code.as_deref() == Some("corrupt")));
    assert_eq!(w.count("SELECT COUNT(*) FROM records"), before["records"] + 1);
    t.refused();
    t.attack("the same record twice in one push");
    let twice = w.sync_raw(&a.token, &request(vec![push_of(&r), push_of(&r)])).await;
    twice.refused(400, "bad_request");
    t.refused();
    t.attack("a request id of 10,000 characters");
    let mut req = request(vec![push_of(&good)]);
    req.request_id = "r".repeat(10_000);
    w.sync_raw(&a.token, &req).await.refused(400, "bad_request");
    t.refused();
    t.attack("max_pull_bytes of u64::MAX");
    let mut req = request(vec![]);
    req.max_pull_bytes = Some(u64::MAX);
    assert_eq!(w.sync_raw(&a.token, &req).await.status, StatusCode::OK, "capped by the server, not refused");
    t.refused();

    // 5. Attachments over the allowed size.
    let h = "ef".repeat(32);
    let uri = format!("/v1/attachments/{h}");
    let max = shidao_server::attachments::MAX_ATTACHMENT;
    t.attack("an attachment declared one byte over 20 MiB");
    w.call(put_piece(&uri, &a.token, 0, max + 1, vec![1, 2, 3])).await.refused(413, "too_large");
    t.refused();
    t.attack("an attachment declared u64::MAX bytes");
    w.call(put_piece(&uri, &a.token, 0, u64::MAX, vec![1, 2, 3])).await.refused(413, "too_large");
    t.refused();
    t.attack("an attachment piece over 4 MiB");
    w.call(put_piece(&uri, &a.token, 0, max, vec![0; 4 * 1024 * 1024 + 1])).await.refused(413, "too_large");
    t.refused();
    t.attack("a piece that runs past the declared length");
    w.call(put_piece(&uri, &a.token, 0, 10, vec![0; 11])).await.refused(400, "bad_request");
    t.refused();
    t.attack("an attachment of length 0");
    w.call(put_piece(&uri, &a.token, 0, 0, vec![])).await.refused(413, "too_large");
    t.refused();
    t.attack("a first piece at offset 1,000,000");
    w.call(put_piece(&uri, &a.token, 1_000_000, 2_000_000, vec![0; 10])).await.refused(409, "conflict");
    t.refused();
    for (what, name, value) in [("negative offset", "upload-offset", "-1"), ("offset not a number", "upload-offset", "1e3"), ("length not a number", "upload-length", "lots")] {
        t.attack(format!("an attachment with a {what}"));
        let req = Request::put(&uri)
            .header("authorization", format!("Bearer {}", a.token))
            .header("upload-offset", if name == "upload-offset" { value } else { "0" })
            .header("upload-length", if name == "upload-length" { value } else { "3" })
            .body(Body::from("abc"))
            .expect("req");
        w.call(req).await.refused(400, "bad_request");
        t.refused();
    }
    t.attack("an attachment with a 200-character content type");
    let req = Request::put(&uri)
        .header("authorization", format!("Bearer {}", a.token))
        .header("upload-offset", "0")
        .header("upload-length", "3")
        .header("content-type", format!("image/{}", "x".repeat(200)))
        .body(Body::from("abc"))
        .expect("req");
    w.call(req).await.refused(400, "bad_request");
    t.refused();

    // Nothing was stored by any of it (but the one good record above), no file was written.
    let mut after = w.fingerprint();
    for table in ["records", "documents", "changes"] {
        assert_eq!(after.remove(table), before.get(table).map(|n| n + 1), "{table}");
    }
    for (table, n) in &after {
        if !["answers", "computed", "sync_requests", "actors"].contains(&table.as_str()) {
            assert_eq!(Some(n), before.get(table), "table {table} changed");
        }
    }
    assert_eq!(w.doc(r.id()), doc);
    let attachments: Vec<_> = w.files().into_keys().filter(|p| p.starts_with("srv/data/attachments")).collect();
    assert!(attachments.is_empty(), "files written: {attachments:?} (before: {files:?})");
    still_up(&w, &a.token).await;
    t.finish();
}

// ---------------------------------------------------------------------------------------------
// 5. Attachment names and hashes that try path traversal.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn family_5_attachment_paths_never_leave_the_attachments_folder() {
    let mut t = Tally::new("5 attachment paths");
    let w = World::new();
    let a = w.dev("ins-a").clone();
    // 1. A real attachment, so the folder exists, and a file beside the store we must not reach.
    let photo = b"real photo bytes".to_vec();
    let hash = shidao_core::store::content_hash(&photo);
    let up = w.call(put_piece(&format!("/v1/attachments/{hash}"), &a.token, 0, photo.len() as u64, photo.clone())).await;
    assert_eq!(up.status, StatusCode::OK);
    std::fs::write(w.root.join("srv").join("secret.txt"), b"root:x:0:0").expect("secret");
    let files = w.files();
    let before = w.fingerprint();

    // 2. Names that are not 64 lowercase hex digits: 400 (or 404 when they leave the route).
    let h63 = &hash[..63];
    let names: Vec<(&str, String, u16)> = vec![
        ("`../../etc/passwd` in the path", "../../etc/passwd".into(), 404),
        ("`../secret.txt` in the path", "../secret.txt".into(), 404),
        ("percent-encoded `../../etc/passwd`", "..%2F..%2Fetc%2Fpasswd".into(), 400),
        ("`%2e%2e%2f%2e%2e%2fsecret.txt`", "%2e%2e%2f%2e%2e%2fsecret.txt".into(), 400),
        ("`%2e%2e` alone", "%2e%2e".into(), 400),
        ("`..`", "..".into(), 400),
        ("a backslash path `..\\..\\secret.txt`", "..%5C..%5Csecret.txt".into(), 400),
        ("an absolute path", "%2Fetc%2Fpasswd".into(), 400),
        ("a hash with a slash in it", format!("{}%2F{}", &hash[..32], &hash[33..]), 400),
        ("the hash in upper case", hash.to_uppercase(), 400),
        ("63 hex digits", h63.to_string(), 400),
        ("65 hex digits", format!("{hash}0"), 400),
        ("the hash and a NUL", format!("{h63}%00"), 400),
        ("the hash's part file", format!("{hash}.part"), 400),
        ("the hash with `.` appended", format!("{h63}."), 400),
        ("64 non-hex letters", "g".repeat(64), 400),
        ("64 full-width digits", enc(&"０".repeat(64)), 400),
        ("an empty name", String::new(), 404),
        ("a name of 10,000 characters", "a".repeat(10_000), 400),
        ("invalid UTF-8 (`%FF`)", format!("{h63}%FF"), 400),
    ];
    for (what, name, status) in &names {
        for method in ["GET", "HEAD", "PUT"] {
            t.attack(format!("{method} an attachment named {what}"));
            let uri = format!("/v1/attachments/{name}");
            let req = if method == "PUT" { put_piece(&uri, &a.token, 0, 10, b"root:x:0:0".to_vec()) } else { authed(method, &uri, &a.token) };
            let r = w.call(req).await;
            assert_eq!(r.status.as_u16(), *status, "{method} {what}: {}", r.text());
            if method != "HEAD" {
                assert_eq!(r.error().code, if *status == 400 { "bad_request" } else { "not_found" }, "{method} {what}");
                assert!(!r.text().contains("root:x"), "{method} {what}: leaks the file");
            }
            t.refused();
        }
    }
    // 3. The attachments folder holds exactly what it held; nothing appeared anywhere else.
    assert_eq!(w.files(), files);
    assert_eq!(w.fingerprint(), before);
    let r = w.call(authed("GET", &format!("/v1/attachments/{hash}"), &a.token)).await;
    assert_eq!((r.status, r.body == photo), (StatusCode::OK, true));
    t.finish();
}

// ---------------------------------------------------------------------------------------------
// 6. SQL injection in the web pages' filters and the exports.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn family_6_sql_injection_in_filters_and_exports_finds_nothing() {
    let mut t = Tally::new("6 sql injection");
    let w = World::new();
    // 1. Records in every school, one submitted in school A.
    let ra = w.record("ins-a", "s-a", MARK_A).await;
    let rb = w.record("ins-b", "s-b", MARK_B).await;
    let rc = w.record("ins-c", "s-c", MARK_C).await;
    let s1 = w.sign_in("sup1", None).await;
    let s2 = w.sign_in("sup2", None).await;
    let tables = w.count("SELECT COUNT(*) FROM sqlite_master");
    let before = w.fingerprint();
    let p1_ids = [ra.id().to_string(), rb.id().to_string()];

    // 2. The plain pages first: programme 2's supervisor sees none of programme 1.
    let plain = [
        "/records",
        "/records?status=draft",
        "/records?template=inspection-visit",
        "/records?school=s-a",
        "/schools/s-a",
        "/export/inspection-visit.csv",
        "/export/inspection-visit.csv?authors=1&codes=1",
        "/export/inspection-visit.csv?school=s-a",
        "/export/inspection-visit.xlsx?school=s-a",
        "/api/records?template=inspection-visit",
        "/api/records?template=inspection-visit&school=s-a",
        "/",
    ];
    for path in plain {
        t.attack(format!("programme 2's supervisor GETs {path}"));
        let r = w.call(page_get(path, &s2.id)).await;
        let text = r.text();
        assert!(r.status == StatusCode::OK || r.status == StatusCode::FORBIDDEN || r.status == StatusCode::NOT_FOUND, "{path}: {}", r.status);
        for leak in [MARK_A, MARK_B, "甲校", "乙校", p1_ids[0].as_str(), p1_ids[1].as_str()] {
            assert!(!text.contains(leak), "{path} shows programme 1's `{leak}` to programme 2");
        }
        t.refused();
    }
    t.attack("programme 2's supervisor GETs programme 1's school report");
    w.call(page_get("/schools/s-a", &s2.id)).await.refused(403, "forbidden");
    t.refused();

    // 3. Every query parameter with injection payloads, as both supervisors.
    let payloads = [
        "' OR '1'='1",
        "s-a' OR '1'='1",
        "1; DROP TABLE records; --",
        "%' --",
        "' UNION SELECT id, doc, doc, doc, doc, doc, doc FROM documents --",
        "s-c') OR 1=1 --",
        "\" OR \"\"=\"",
        "*/ OR 1=1 /*",
        "\\' OR 1=1 -- ",
        "s-a\u{0}",
    ];
    let routes: Vec<(&str, Vec<&str>)> = vec![
        ("/records", vec!["school", "template", "status", "role", "from", "to"]),
        ("/schools/s-c", vec!["from", "to"]),
        ("/export/inspection-visit.csv", vec!["school", "codes", "authors"]),
        ("/api/records", vec!["template", "school", "after"]),
        ("/records/RC/history", vec!["field", "row"]),
    ];
    for (route, params) in &routes {
        for param in params {
            for payload in payloads {
                for (who, s) in [("sup1", &s1), ("sup2", &s2)] {
                    let route = route.replace("RC", rc.id().as_str());
                    let mut query = format!("{param}={}", enc(payload));
                    if route == "/api/records" && *param != "template" {
                        query.push_str("&template=inspection-visit");
                    }
                    if route.ends_with("/history") && *param == "row" {
                        query.push_str("&field=visit_focus");
                    }
                    let path = format!("{route}?{query}");
                    t.attack(format!("{who} GETs {path}"));
                    let r = w.call(page_get(&path, &s.id)).await;
                    let text = r.text();
                    let scoped_out = who == "sup1" && route.contains(rc.id().as_str());
                    match r.status.as_u16() {
                        200 => {}
                        400 | 404 => {}
                        403 if scoped_out || route == "/schools/s-c" && who == "sup1" => {}
                        other => panic!("{path} as {who}: {other} {text}"),
                    }
                    // An injected filter finds nothing it should not: no record at all where the
                    // filter is a payload, never another programme's data.
                    let foreign: &[&str] = if who == "sup2" { &[MARK_A, MARK_B, "甲校", "乙校"] } else { &[MARK_C, "丙校"] };
                    for leak in foreign {
                        assert!(!text.contains(leak), "{path} as {who} leaks `{leak}`");
                    }
                    if route == "/records" && r.status == StatusCode::OK && !["from", "to"].contains(param) {
                        assert!(text.contains("<span class=\"muted\">(0)</span>"), "{path} as {who} lists records: {text}");
                    }
                    if route == "/api/records" && r.status == StatusCode::OK && *param != "after" {
                        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
                        assert_eq!(v["records"].as_array().map(Vec::len), Some(0), "{path} as {who}");
                    }
                    if route.starts_with("/export") && r.status == StatusCode::OK && *param == "school" {
                        assert_eq!(text.lines().count(), 1, "{path} as {who}: only the header");
                    }
                    t.refused();
                }
            }
        }
    }
    // Injection in the path: record ids, school ids and export names.
    for payload in payloads {
        for path in [format!("/records/{}", enc(payload)), format!("/schools/{}", enc(payload)), format!("/export/{}.csv", enc(payload)), format!("/records/{}/history?field=x", enc(payload))] {
            t.attack(format!("sup2 GETs {path}"));
            let r = w.call(page_get(&path, &s2.id)).await;
            r.refused(404, "not_found");
            t.refused();
        }
    }
    // Numbers that are not numbers.
    for q in ["limit=-1", "limit=1e9", "limit=1%20OR%201%3D1", "limit=99999999999"] {
        t.attack(format!("sup1 GETs /api/records?template=inspection-visit&{q}"));
        let r = w.call(page_get(&format!("/api/records?template=inspection-visit&{q}"), &s1.id)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text());
        t.refused();
    }
    // Form fields of the review and resolve forms.
    for payload in payloads {
        for (what, path, form) in [
            ("review action", format!("/records/{}/review", ra.id()), vec![("action", payload)]),
            ("resolve field", format!("/records/{}/resolve", ra.id()), vec![("field", payload), ("row", ""), ("pick", "0")]),
            ("resolve row", format!("/records/{}/resolve", ra.id()), vec![("field", "visit_focus"), ("row", payload), ("pick", "0")]),
        ] {
            t.attack(format!("sup1 POSTs {what} = {payload:?}"));
            let mut fields = vec![("csrf", s1.csrf.as_str())];
            fields.extend(form);
            let r = w.call(form_post(&path, &format!("shidao_session={}", s1.id), &fields)).await;
            assert!(matches!(r.status.as_u16(), 400 | 404 | 409), "{what} {payload:?}: {} {}", r.status, r.text());
            t.refused();
        }
    }

    // 4. The store is intact: same tables, same rows, integrity ok, the records unchanged.
    assert_eq!(w.count("SELECT COUNT(*) FROM sqlite_master"), tables);
    assert_eq!(w.fingerprint(), before);
    let ok: String = w.state.with_db(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0))).expect("integrity");
    assert_eq!(ok, "ok");
    for (r, mark) in [(&ra, MARK_A), (&rb, MARK_B), (&rc, MARK_C)] {
        assert_eq!(text_of(&w.central(r.id()), "visit_focus").as_deref(), Some(mark));
    }
    // And the filters still work for what they are meant for.
    let r = w.call(page_get("/records?school=s-a", &s1.id)).await;
    assert!(r.text().contains(ra.id().as_str()) && !r.text().contains(rb.id().as_str()));
    t.finish();
}

// ---------------------------------------------------------------------------------------------
// 7. Session fixation, CSRF, signed-out sessions, cookie flags.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn family_7_sessions_and_csrf_hold() {
    let mut t = Tally::new("7 sessions and csrf");
    let w = World::new();
    let a = w.dev("ins-a").clone();
    let mut s = new_record("inspection-visit", "s-a", &a.editor());
    shidao_core::sample::fill_completely(&mut s, 1, &mut shidao_core::sample::Rng::new(9)).expect("fill");
    s.submit().expect("submit");
    w.push_ok("ins-a", &s).await;
    let doc = w.doc(s.id());
    let sessions = || w.count("SELECT COUNT(*) FROM sessions");

    // 1. Session fixation: an id planted before sign-in is not the one after.
    t.attack("a planted session id, then the victim signs in");
    w.call(page_get("/", "planted-by-the-attacker")).await.to_sign_in();
    let victim = w.sign_in("sup1", Some("planted-by-the-attacker")).await;
    assert_ne!(victim.id, "planted-by-the-attacker");
    assert_eq!(victim.id.len(), 64, "a fresh random id");
    w.call(page_get("/", "planted-by-the-attacker")).await.to_sign_in();
    t.refused();
    t.attack("the attacker plants their own real session, then the victim signs in");
    let attacker = w.sign_in("sup2", None).await;
    let victim2 = w.sign_in("sup1", Some(&attacker.id)).await;
    assert_ne!(victim2.id, attacker.id);
    // The attacker's session is still the attacker's: it cannot review the victim's programme.
    let r = w.call(form_post(&format!("/records/{}/review", s.id()), &format!("shidao_session={}", attacker.id), &[("csrf", &attacker.csrf), ("action", "approve")])).await;
    r.refused(403, "forbidden");
    assert_eq!(w.doc(s.id()), doc);
    t.refused();

    // 2. Login CSRF: the sign-in form needs its own cookie and token.
    let form = w.call(Request::get("/login").body(Body::empty()).expect("req")).await;
    let token = hidden(&form.text(), "csrf");
    let login_cookie = form.cookie("shidao_login").expect("cookie");
    let n = sessions();
    for (what, cookie, csrf) in [
        ("without the sign-in cookie", String::new(), token.clone()),
        ("with a wrong token", format!("shidao_login={login_cookie}"), "wrong".to_string()),
        ("with an empty token and empty cookie", "shidao_login=".to_string(), String::new()),
        ("with another form's token", format!("shidao_login={login_cookie}"), uuid::Uuid::new_v4().simple().to_string()),
    ] {
        t.attack(format!("sign-in {what}"));
        let r = w.call(form_post("/login", &cookie, &[("csrf", &csrf), ("user", "sup1"), ("password", PASSWORD)])).await;
        r.refused(403, "forbidden");
        assert!(r.cookie("shidao_session").is_none());
        assert_eq!(sessions(), n);
        t.refused();
    }
    t.attack("an inspector with a password signs in to the web pages");
    let r = w.call(form_post("/login", &format!("shidao_login={login_cookie}"), &[("csrf", &token), ("user", "ins-a"), ("password", PASSWORD)])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("只有督导和管理员") && r.cookie("shidao_session").is_none());
    assert_eq!(sessions(), n);
    t.refused();
    for (what, user, password) in [("a wrong password", "sup1", "wrong-password"), ("SQL in the user name", "' OR '1'='1' --", PASSWORD), ("an unknown user", "nobody", PASSWORD)] {
        t.attack(format!("sign-in with {what}"));
        let form = w.call(Request::get("/login").body(Body::empty()).expect("req")).await;
        let cookie = format!("shidao_login={}", form.cookie("shidao_login").expect("cookie"));
        let r = w.call(form_post("/login", &cookie, &[("csrf", &hidden(&form.text(), "csrf")), ("user", user), ("password", password)])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.text().contains("用户名或密码错误") && r.cookie("shidao_session").is_none());
        assert_eq!(sessions(), n);
        t.refused();
    }

    // 3. CSRF on every form: missing, empty, wrong, another session's token, no session.
    let cookie = format!("shidao_session={}", victim.id);
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/records/{}/review", s.id()), vec![("action", "approve")]),
        (format!("/records/{}/review", s.id()), vec![("action", "return"), ("comment", "伪造的退回")]),
        (format!("/records/{}/resolve", s.id()), vec![("field", "visit_focus"), ("row", ""), ("pick", "0")]),
        ("/logout".to_string(), vec![]),
    ];
    for (path, form) in &posts {
        for (what, csrf, cookie, expect) in [
            ("an empty CSRF token", Some(""), cookie.as_str(), 403),
            ("a wrong CSRF token", Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), cookie.as_str(), 403),
            ("another user's CSRF token", Some(attacker.csrf.as_str()), cookie.as_str(), 403),
            ("the same user's other session's token", Some(victim2.csrf.as_str()), cookie.as_str(), 403),
            ("the token in upper case", Some(&*victim.csrf.to_uppercase()), cookie.as_str(), 403),
            ("no CSRF field at all", None, cookie.as_str(), 422),
            ("a valid token but no session", Some(victim.csrf.as_str()), "", 303),
        ] {
            t.attack(format!("POST {path} with {what}"));
            let mut fields: Vec<(&str, &str)> = csrf.map(|c| vec![("csrf", c)]).unwrap_or_default();
            fields.extend(form.iter().copied());
            let r = w.call(form_post(path, cookie, &fields)).await;
            match expect {
                403 => r.refused(403, "forbidden"),
                303 => r.to_sign_in(),
                other => assert_eq!(r.status.as_u16(), other, "{}", r.text()),
            }
            assert_eq!((w.doc(s.id()), w.status_of(s.id())), (doc.clone(), "submitted".to_string()), "{path} {what}");
            t.refused();
        }
    }
    // The victim's session survived the forged logouts.
    assert_eq!(w.call(page_get("/", &victim.id)).await.status, StatusCode::OK);

    // 4. After sign-out the session is dead, whoever holds the cookie.
    let r = w.call(form_post("/logout", &cookie, &[("csrf", &victim.csrf)])).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, Some("/login")));
    assert!(r.set_cookies().iter().any(|c| c.starts_with("shidao_session=;") && c.contains("Max-Age=0")));
    for path in ["/", "/records", &format!("/records/{}", s.id()), "/export/inspection-visit.csv", "/api/records?template=inspection-visit"] {
        t.attack(format!("a signed-out session GETs {path}"));
        w.call(page_get(path, &victim.id)).await.to_sign_in();
        t.refused();
    }
    t.attack("a signed-out session approves with its old CSRF token");
    w.call(form_post(&format!("/records/{}/review", s.id()), &cookie, &[("csrf", &victim.csrf), ("action", "approve")])).await.to_sign_in();
    assert_eq!(w.doc(s.id()), doc);
    t.refused();
    t.attack("an expired session");
    w.state.with_db(|c| c.execute("UPDATE sessions SET expires_at = 0 WHERE id_hash = ?1", [accounts::sha256_hex(&victim2.id)])).expect("expire");
    w.call(page_get("/", &victim2.id)).await.to_sign_in();
    t.refused();
    t.attack("the session id's hash (as stored) used as the cookie");
    let stored: String = w.state.with_db(|c| c.query_row("SELECT id_hash FROM sessions WHERE user_id = 'sup2'", [], |r| r.get(0))).expect("hash");
    w.call(page_get("/", &stored)).await.to_sign_in();
    t.refused();

    // 5. Cookie flags: HttpOnly and SameSite always, Secure when serving HTTPS.
    t.attack("session and sign-in cookies readable by script or sent cross-site");
    let login_set = form.set_cookies();
    for c in victim.set_cookie.iter().chain(login_set.iter()) {
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Path=/"), "{c}");
        assert!(!c.contains("Secure"), "plain HTTP: {c}");
    }
    let mut https = w.state.clone();
    https.secure_cookies = true;
    let form = w.call_on(https.clone(), Request::get("/login").body(Body::empty()).expect("req")).await;
    let cookie = format!("shidao_login={}", form.cookie("shidao_login").expect("cookie"));
    let r = w.call_on(https, form_post("/login", &cookie, &[("csrf", &hidden(&form.text(), "csrf")), ("user", "sup1"), ("password", PASSWORD)])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    for c in form.set_cookies().iter().chain(r.set_cookies().iter()) {
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("; Secure"), "{c}");
    }
    t.refused();

    // 6. The language switch only ever sends back to a path of this site.
    for referer in ["http://evil.example//evil.example/x", "http://evil.example/\\evil.example", "http://x/%5C%5Cevil.example", "javascript:alert(1)", "http://x/\t/evil.example"] {
        t.attack(format!("/lang/en with Referer {referer:?} (open redirect)"));
        let req = Request::get("/lang/en").header("referer", referer).body(Body::empty());
        let Ok(req) = req else {
            t.refused();
            continue;
        };
        let r = w.call(req).await;
        let to = r.location().unwrap_or_default().to_string();
        assert!(to.starts_with('/') && !to.starts_with("//") && !to.starts_with("/\\") && !to.contains('\\'), "redirects to {to:?}");
        t.refused();
    }
    assert_eq!((w.doc(s.id()), w.status_of(s.id())), (doc, "submitted".to_string()));
    t.finish();
}

/// A sign-in through the form, as a browser would (a fresh form each time).
async fn attempt_sign_in(w: &World, user: &str, password: &str) -> Resp {
    let form = w.call(Request::get("/login").body(Body::empty()).expect("req")).await;
    let cookie = format!("shidao_login={}", form.cookie("shidao_login").expect("cookie"));
    w.call(form_post("/login", &cookie, &[("csrf", &hidden(&form.text(), "csrf")), ("user", user), ("password", password)])).await
}

#[tokio::test]
async fn family_8_password_guessing_is_slowed() {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    let mut t = Tally::new("8 password guessing");
    let mut w = World::new();
    let now = Arc::new(AtomicI64::new(Clock::system().now()));
    let clock = now.clone();
    w.state.clock = Clock::from_fn(move || clock.load(Ordering::SeqCst));
    let sessions = || w.count("SELECT COUNT(*) FROM sessions");
    let n = sessions();
    let wrong = |r: &Resp| {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        assert!(r.text().contains("用户名或密码错误") && r.cookie("shidao_session").is_none());
    };
    let locked = |r: &Resp, minutes: u32| {
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
        assert!(r.text().contains(&format!("请 {minutes} 分钟后再试")), "{}", r.text());
        assert!(r.cookie("shidao_session").is_none());
        // The page can be submitted again once the lock is over: it carries a fresh form token.
        assert!(r.cookie("shidao_login").is_some_and(|c| !c.is_empty()));
    };

    // 1. Four wrong passwords for one name: the plain refusal each time.
    for i in 0..4 {
        t.attack(format!("guess {} of sup1's password", i + 1));
        wrong(&attempt_sign_in(&w, "sup1", &format!("guess-{i}-password")).await);
        t.refused();
    }
    // 2. The fifth locks the name for a minute.
    t.attack("guess 5 of sup1's password");
    locked(&attempt_sign_in(&w, "sup1", "guess-4-password").await, 1);
    t.refused();
    // 3. While it is locked, even the right password opens nothing, and neither does a guess.
    now.fetch_add(30, Ordering::SeqCst);
    for (what, password) in [("the right password", PASSWORD), ("another guess", "guess-5-password")] {
        t.attack(format!("{what} for sup1 while locked"));
        locked(&attempt_sign_in(&w, "sup1", password).await, 1);
        assert_eq!(sessions(), n);
        t.refused();
    }
    // 4. Another person signs in meanwhile; an unknown name is locked the same way, so the lock
    //    does not tell which names exist.
    let r = attempt_sign_in(&w, "sup2", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(sessions(), n + 1);
    for i in 0..5 {
        t.attack(format!("guess {} for an unknown name", i + 1));
        let r = attempt_sign_in(&w, "nobody", &format!("guess-{i}-password")).await;
        if i < 4 { wrong(&r) } else { locked(&r, 1) }
        t.refused();
    }
    // 5. After the minute one more guess is allowed, and its failure locks for two minutes.
    now.fetch_add(31, Ordering::SeqCst);
    t.attack("guess 6 of sup1's password, after the lock");
    locked(&attempt_sign_in(&w, "sup1", "guess-6-password").await, 2);
    t.refused();
    // 6. Once that is over the right password signs in, and the count starts again.
    now.fetch_add(121, Ordering::SeqCst);
    let r = attempt_sign_in(&w, "sup1", PASSWORD).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, Some("/")), "{}", r.text());
    assert_eq!(sessions(), n + 2);
    t.attack("one guess after sup1 signed in");
    wrong(&attempt_sign_in(&w, "sup1", "guess-7-password").await);
    t.refused();
    // 7. Twelve guesses sent at once: four get the plain refusal, the other eight find the name
    //    locked, and nobody signs in.
    t.attack("a burst of twelve guesses at once for sup2");
    let mut forms = Vec::new();
    for _ in 0..12 {
        let form = w.call(Request::get("/login").body(Body::empty()).expect("req")).await;
        forms.push((format!("shidao_login={}", form.cookie("shidao_login").expect("cookie")), hidden(&form.text(), "csrf")));
    }
    let burst = forms.iter().enumerate().map(|(i, (cookie, csrf))| {
        let req = form_post("/login", cookie, &[("csrf", csrf), ("user", "sup2"), ("password", &format!("burst-{i}-password"))]);
        w.call(req)
    });
    let answers = futures_util::future::join_all(burst).await;
    let count = |status: StatusCode| answers.iter().filter(|r| r.status == status).count();
    assert_eq!((count(StatusCode::FORBIDDEN), count(StatusCode::TOO_MANY_REQUESTS)), (4, 8));
    assert_eq!(sessions(), n + 2);
    t.refused();

    // Everything above came from one address (the router called directly). Failures are counted
    // per address and name, and per name from every address.
    let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
    // 8. A name under guessing from one address stays usable from another: sup1 guessed five
    //    times from 203.0.113.10 is locked there (even with the right password) and signs in
    //    from 198.51.100.20.
    now.fetch_add(16 * 60, Ordering::SeqCst);
    let attacker = ip("203.0.113.10");
    for i in 0..5 {
        t.attack(format!("guess {} of sup1's password from {attacker}", i + 1));
        let r = attempt_sign_in_from(&w, attacker, "sup1", &format!("far-{i}-password")).await;
        if i < 4 { wrong(&r) } else { locked(&r, 1) }
        t.refused();
    }
    t.attack("the right password for sup1 from the guessing address while locked");
    locked(&attempt_sign_in_from(&w, attacker, "sup1", PASSWORD).await, 1);
    assert_eq!(sessions(), n + 2);
    t.refused();
    let r = attempt_sign_in_from(&w, ip("198.51.100.20"), "sup1", PASSWORD).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, Some("/")), "the owner from elsewhere: {}", r.text());
    assert_eq!(sessions(), n + 3);
    // 9. A name guessed from many addresses is slowed: sup2 signs in from 192.0.2.50 (an address
    //    it is now known at), then one wrong guess each from new addresses. sup2 has five failures
    //    from the burst (the fifth locked it there), so the fifteenth address's guess is the
    //    name's twentieth failure and locks it for every address it has not signed in from.
    now.fetch_add(16 * 60, Ordering::SeqCst);
    let home = ip("192.0.2.50");
    let r = attempt_sign_in_from(&w, home, "sup2", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(sessions(), n + 4);
    for i in 0..15 {
        t.attack(format!("one guess of sup2's password from address {}", i + 1));
        let r = attempt_sign_in_from(&w, ip(&format!("203.0.114.{}", i + 1)), "sup2", &format!("spread-{i}-password")).await;
        if i < 14 { wrong(&r) } else { locked(&r, 1) }
        t.refused();
    }
    t.attack("the right password for sup2 from an address it never signed in from, name locked");
    locked(&attempt_sign_in_from(&w, ip("203.0.114.200"), "sup2", PASSWORD).await, 1);
    assert_eq!(sessions(), n + 4);
    t.refused();
    let r = attempt_sign_in_from(&w, home, "sup2", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the owner at a known address: {}", r.text());
    assert_eq!(sessions(), n + 5);
    //    Once the minute is over the next stranger's guess locks the name for two minutes.
    now.fetch_add(61, Ordering::SeqCst);
    t.attack("one more guess of sup2's password from a new address after the lock");
    locked(&attempt_sign_in_from(&w, ip("203.0.114.201"), "sup2", "spread-x-password").await, 2);
    t.refused();
    // 10. Enrolment guessing from one address is slowed: four wrong codes get `bad_code`, the
    //     fifth locks the address for a minute (429, Retry-After); a real code from there is
    //     refused while locked and stays unused; from another address it enrols.
    let code = w.state.with_db(|c| accounts::new_enrol_code(c, "ins-b", Clock::system().now())).expect("code");
    let enrol_from = |from: IpAddr, code: String| {
        let body = serde_json::json!({ "code": code, "device_name": "平板" }).to_string();
        let mut req = Request::post("/v1/enrol").header("content-type", "application/json").body(Body::from(body)).expect("req");
        req.extensions_mut().insert(ClientAddr(from));
        w.call(req)
    };
    let guesser = ip("203.0.113.77");
    for i in 0..5 {
        t.attack(format!("enrolment code guess {} from {guesser}", i + 1));
        let r = enrol_from(guesser, format!("{i:06}")).await;
        if i < 4 {
            r.refused(401, "bad_code");
        } else {
            r.refused(429, "too_many_attempts");
            assert_eq!(r.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("60"));
        }
        t.refused();
    }
    t.attack("a real enrolment code from the locked address");
    enrol_from(guesser, code.clone()).await.refused(429, "too_many_attempts");
    t.refused();
    let r = enrol_from(ip("198.51.100.20"), code).await;
    assert_eq!(r.status, StatusCode::OK, "the code was not spent by the refused attempt: {}", r.text());
    t.finish();
}

/// A sign-in through the form from a given client address.
async fn attempt_sign_in_from(w: &World, from: IpAddr, user: &str, password: &str) -> Resp {
    let form = w.call(Request::get("/login").body(Body::empty()).expect("req")).await;
    let cookie = format!("shidao_login={}", form.cookie("shidao_login").expect("cookie"));
    let mut req = form_post("/login", &cookie, &[("csrf", &hidden(&form.text(), "csrf")), ("user", user), ("password", password)]);
    req.extensions_mut().insert(ClientAddr(from));
    w.call(req).await
}


// ---------------------------------------------------------------------------------------------
// 9. The rule book: each pushed change judged at the state it was made on.
// ---------------------------------------------------------------------------------------------

/// A status move as the core writes it (`Record::review_step`): the status and one review step.
fn review_step(tx: &mut Transaction<'_>, status: &str, action: &str, user: &str, comment: Option<&str>) {
    tx.put(ROOT, "status", status).expect("status");
    let review = obj(tx, "review");
    let n = tx.length(&review);
    let e = tx.insert_object(&review, n, ObjType::Map).expect("entry");
    tx.put(&e, "action", action).expect("action");
    tx.put(&e, "user", user).expect("user");
    if let Some(c) = comment {
        tx.put(&e, "comment", c).expect("comment");
    }
}

/// The three holes of a relay that judged only the role and the new value (a draft approved, a
/// return without a comment, an inspector's edit of a submitted record), and their mirror images
/// (the same acts made at a state where the table allows them are accepted; acts legal where they
/// were made stand even if the status moved since; an approval seals exactly what it saw). Every
/// change is crafted the way a modified tablet would send it: Automerge changes by the pushing
/// user on their own device, on top of a copy of the record.
#[tokio::test]
async fn family_9_each_change_is_judged_at_its_own_state() {
    let mut t = Tally::new("9 rule book");
    let w = World::new();
    let a = w.dev("ins-a").clone();
    let a2 = w.dev("ins-a2").clone();
    let sup = w.dev("sup1").clone();
    let me = Some(a.editor().author());
    let sup_author = Some(sup.editor().author());

    // One attack: the crafted record is refused with its code and stores nothing, and a good new
    // record of the same device in the same request is accepted.
    async fn attack(w: &World, t: &mut Tally, user: &str, what: &str, target: &RecordId, changes: Vec<u8>, code: &str) {
        t.attack(format!("{user}: {what}"));
        let (doc, status, log) = (w.doc(target), w.status_of(target), w.count("SELECT COUNT(*) FROM changes"));
        let answers = w.count("SELECT COUNT(*) FROM answers");
        let good = new_record("baseline-assessment", "s-a", &w.dev(user).editor());
        let crafted = Push { record: target.to_string(), changes, heads: vec![] };
        let resp = w.sync(user, vec![crafted, push_of(&good)]).await;
        assert_eq!(outcomes(&resp), vec![(Outcome::Refused, code.to_string()), (Outcome::Accepted, String::new())], "{what}: {:?}", resp.results);
        assert_eq!(w.doc(target), doc, "{what}: the record changed");
        assert_eq!(w.status_of(target), status, "{what}: the status changed");
        assert_eq!(w.count("SELECT COUNT(*) FROM changes"), log + 1, "{what}: only the good record is logged");
        assert_eq!(w.count("SELECT COUNT(*) FROM answers"), answers, "{what}: the projection changed");
        t.refused();
    }
    async fn accepted(w: &World, user: &str, what: &str, target: &RecordId, changes: Vec<u8>) {
        let resp = w.sync(user, vec![Push { record: target.to_string(), changes, heads: vec![] }]).await;
        assert_eq!(outcomes(&resp), vec![(Outcome::Accepted, String::new())], "{what}: {:?}", resp.results);
    }

    // 1. A complete draft of ins-a at the relay.
    let mut r = new_record("inspection-visit", "s-a", &a.editor());
    shidao_core::sample::fill_completely(&mut r, 1, &mut shidao_core::sample::Rng::new(9)).expect("fill");
    r.set_answer(&FieldRef::top("visit_focus"), Answer::Text(MARK_A.into())).expect("answer");
    w.push_ok("ins-a", &r).await;
    let draft = w.doc(r.id());

    // 2. Hole 1: the supervisor approves the draft (never submitted); and approves it while it is
    //    a draft "on the tablet", pushed after the record was submitted at the relay: an approve
    //    of a draft either way. The supervisor submitting a form only inspectors fill, likewise.
    let c = craft(&draft, sup_author.clone(), None, |tx| review_step(tx, "approved", "approve", "sup1", None));
    attack(&w, &mut t, "sup1", "approves a draft", r.id(), c, "status_not_allowed").await;
    let offline_approval = craft(&draft, sup_author.clone(), None, |tx| review_step(tx, "approved", "approve", "sup1", None));
    let c = craft(&draft, sup_author.clone(), None, |tx| review_step(tx, "submitted", "submit", "sup1", None));
    attack(&w, &mut t, "sup1", "submits a form only inspectors fill", r.id(), c, "status_not_allowed").await;
    // An edit by ins-a2 on the draft, made before the submit and pushed after it (mirror: legal
    // where it was made, so it stands although the relay's status moved).
    let concurrent = craft(&draft, Some(a2.editor().author()), None, |tx| {
        let answers = obj(tx, "answers");
        tx.put(&answers, "lessons_total", 21i64).expect("put");
    });
    r.submit().expect("submit");
    w.push_ok("ins-a", &r).await;
    assert_eq!(w.status_of(r.id()), "submitted");
    attack(&w, &mut t, "sup1", "approves the draft it held, after the record was submitted", r.id(), offline_approval, "status_not_allowed").await;
    let submitted = w.doc(r.id());

    // 3. Hole 3: the inspector edits the answers of the submitted record (a value, a clear).
    let c = craft(&submitted, me.clone(), None, |tx| {
        let answers = obj(tx, "answers");
        tx.put(&answers, "visit_focus", "提交后修改").expect("put");
    });
    attack(&w, &mut t, "ins-a", "edits an answer of its submitted record", r.id(), c, "not_allowed").await;
    let c = craft(&submitted, me.clone(), None, |tx| {
        let answers = obj(tx, "answers");
        tx.put(&answers, "visit_focus", automerge::ScalarValue::Null).expect("put");
    });
    attack(&w, &mut t, "ins-a", "clears an answer of its submitted record", r.id(), c, "not_allowed").await;

    // 4. Hole 2: the supervisor returns the submitted record without a comment, or a blank one.
    let c = craft(&submitted, sup_author.clone(), None, |tx| review_step(tx, "returned", "return", "sup1", None));
    attack(&w, &mut t, "sup1", "returns without a comment", r.id(), c, "comment_required").await;
    let c = craft(&submitted, sup_author.clone(), None, |tx| review_step(tx, "returned", "return", "sup1", Some("  ")));
    attack(&w, &mut t, "sup1", "returns with a blank comment", r.id(), c, "comment_required").await;
    // A status move without its review step, and a review step that moves nothing.
    let c = craft(&submitted, sup_author.clone(), None, |tx| tx.put(ROOT, "status", "approved").expect("put"));
    attack(&w, &mut t, "sup1", "approves without a review step", r.id(), c, "status_not_allowed").await;

    // 5. Mirror of hole 3: ins-a2's edit made on the draft stands; the status stays submitted.
    let sup_copy_before_edit = w.central(r.id()).fork(sup.editor());
    accepted(&w, "ins-a2", "an edit made on the draft, pushed after the submit", r.id(), concurrent).await;
    assert_eq!(w.status_of(r.id()), "submitted");
    assert_eq!(w.central(r.id()).answer(&FieldRef::top("lessons_total")).expect("a").answer, Some(Answer::Integer(21)));
    // An approval made without that edit (the supervisor's tablet had not seen it) is stale.
    let mut stale = sup_copy_before_edit;
    stale.approve(None).expect("the core allows it on the copy it holds");
    let c = stale.save_after(&Automerge::load(&submitted).expect("doc").get_heads());
    attack(&w, &mut t, "sup1", "approves a copy without an edit the relay already holds", r.id(), c, "stale_approval").await;

    // 6. Mirror of hole 2: a return with a comment is accepted, then ins-a corrects and submits
    //    again, and the supervisor approves (through the core's methods, as a tablet does).
    let mut ret = w.central(r.id()).fork(sup.editor());
    let before = ret.heads();
    ret.return_for_correction("请补充证据").expect("return");
    accepted(&w, "sup1", "a return with a comment", r.id(), ret.save_after(&before)).await;
    assert_eq!(w.status_of(r.id()), "returned");
    let mut fix = w.central(r.id()).fork(a.editor());
    let before = fix.heads();
    fix.set_answer(&FieldRef::top("visit_focus"), Answer::Text(format!("{MARK_A} 已补充"))).expect("fix");
    let held = fix.doc().clone();
    fix.submit().expect("resubmit");
    accepted(&w, "ins-a", "a correction and a new submit", r.id(), fix.save_after(&before)).await;
    // Mirror of hole 1: the approval of the submitted record stands, and seals it.
    let mut ok = w.central(r.id()).fork(sup.editor());
    let before = ok.heads();
    ok.approve(None).expect("approve");
    accepted(&w, "sup1", "an approval of a submitted record", r.id(), ok.save_after(&before)).await;
    assert_eq!(w.status_of(r.id()), "approved");

    // 7. The late edit: ins-a's tablet still held the returned record (before its resubmit) and
    //    edits it offline; the edit was legal where it was made but the approval did not see it.
    let c = craft(&held.save(), me.clone(), None, |tx| {
        let answers = obj(tx, "answers");
        tx.put(&answers, "lessons_total", 30i64).expect("put");
    });
    attack(&w, &mut t, "ins-a", "an edit made beside the approval, on the returned record", r.id(), c, "sealed").await;
    let central = w.central(r.id());
    assert_eq!(central.status(), shidao_core::Status::Approved);
    assert_eq!(central.answer(&FieldRef::top("lessons_total")).expect("a").answer, Some(Answer::Integer(21)));
    t.finish();
}

// ---------------------------------------------------------------------------------------------
// 10. Script injection: every text a tablet or an admin can write comes out inert.
// ---------------------------------------------------------------------------------------------

/// Markup that would run if a page inserted it unescaped: a script element, an attribute
/// breaking out of its quotes, a script link.
const XSS: &str = "<script>alert('xss')</script>\" onmouseover=\"alert(1)\" x=\"javascript:alert(2)";
/// A cell a spreadsheet would run as a command.
const FORMULA: &str = "=cmd|' /C calc'!A0";

/// What an escaped page never contains.
#[track_caller]
fn inert(what: &str, html: &str) {
    for raw in ["<script>alert", "\" onmouseover=", "onmouseover=\"alert", "=\"javascript:", "='javascript:", "href=javascript:"] {
        assert!(!html.contains(raw), "{what} carries `{raw}` unescaped");
    }
}

#[tokio::test]
async fn family_10_script_injection_in_any_text_comes_out_inert() {
    use shidao_core::sample::{fill_completely, Rng};
    let mut t = Tally::new("10 script injection");
    let w = World::new();
    let now = Clock::system().now();
    let named = |base: &str| format!("{base}{XSS}");

    // 1. What an admin writes: programme, school, user and task names, the key project, and a
    //    published form whose title, labels and option labels (and file name) carry markup.
    let form_id = "xss-form";
    w.state.with_db(|c| {
        c.execute("UPDATE programmes SET name = ?1 WHERE id = 'p1'", [named("一号项目")]).expect("programme");
        c.execute("UPDATE schools SET name = ?1, key_project = ?2 WHERE id = 's-a'", [named("甲校"), named("项目")]).expect("school");
        c.execute("UPDATE users SET name = ?1 WHERE id IN ('ins-a', 'sup1')", [named("姓名")]).expect("users");
        accounts::add_task(c, "p1", Some("s-a"), "t-own", &named("学校任务"), 10.0, &named("名"), "2020-01-01", "2030-12-31").expect("task");
        accounts::add_task(c, "p1", None, "t-all", &named("全区任务"), 10.0, "个", "2020-01-01", "2030-12-31").expect("task");
        let json = serde_json::json!({
            "id": form_id, "version": 1, "title": {"zh": named("表单"), "en": named("Form")}, "filled_by": ["inspector"],
            "sections": [{"id": "s", "label": {"zh": named("分节"), "en": named("Section")}, "fields": [
                {"id": "visit_date", "kind": "date", "label": {"zh": named("日期"), "en": named("Date")}},
                {"id": "note", "kind": "text", "label": {"zh": named("备注"), "en": named("Note")}, "hint": {"zh": named("提示"), "en": named("Hint")}},
                {"id": "pick", "kind": "single_choice", "label": {"zh": named("选择"), "en": named("Pick")},
                 "options": [{"value": "a", "label": {"zh": named("选项"), "en": named("Option")}}]}]}]
        })
        .to_string();
        let template = std::sync::Arc::new(shidao_core::Template::from_json("xss.json", &json).expect("form loads"));
        let definition = template.definition();
        let hash = shidao_core::template::definition_hash(&definition);
        let form = shidao_server::forms::Checked { template, definition, hash, warnings: vec![named("警告")] };
        shidao_server::forms::publish(c, "p1", &form, &format!("{}.xlsx", named("文件")), "sup1", now).expect("publish");
    });

    // 2. What a tablet writes: every kind of text answer of a submitted visit (its rectification
    //    rows included), a lesson observation, a record of the published form with its option.
    let ins = w.dev("ins-a").editor();
    let mut rng = Rng::new(10);
    let mut visit = new_record("inspection-visit", "s-a", &ins);
    fill_completely(&mut visit, 1, &mut rng).expect("fill");
    visit.set_answer(&FieldRef::top("visit_focus"), Answer::Text(format!("{FORMULA}{XSS}"))).expect("text");
    for f in ["strengths", "problems", "suggestions", "overall_conclusion", "docs_findings", "school_opinion"] {
        visit.set_answer(&FieldRef::top(f), Answer::LongText(named(f))).expect("long text");
    }
    for row in visit.row_ids("rectifications").expect("rows") {
        visit.set_answer(&FieldRef::in_row("rect_item", &row), Answer::Text(named("整改"))).expect("item");
        visit.set_answer(&FieldRef::in_row("rect_owner", &row), Answer::Text(named("责任人"))).expect("owner");
    }
    visit.submit().expect("submit");
    w.push_ok("ins-a", &visit).await;
    let mut lesson = new_record("classroom-observation", "s-a", &ins);
    fill_completely(&mut lesson, 1, &mut rng).expect("fill");
    lesson.set_answer(&FieldRef::top("teacher_name"), Answer::Text(named("教师"))).expect("teacher");
    lesson.set_answer(&FieldRef::top("running_notes"), Answer::LongText(named("实录"))).expect("notes");
    lesson.submit().expect("submit");
    w.push_ok("ins-a", &lesson).await;
    let published = w.state.with_db(|c| shidao_server::forms::template(c, "p1", form_id, 1)).expect("lookup").expect("published");
    let mut own = Record::create(published, NewRecord { id: RecordId::random(), school: SchoolId::new("s-a").expect("id") }, ins.clone(), Clock::system())
        .expect("create");
    own.set_answer(&FieldRef::top("visit_date"), Answer::Date(Clock::system().today())).expect("date");
    own.set_answer(&FieldRef::top("note"), Answer::Text(format!("{FORMULA}{XSS}"))).expect("note");
    own.set_answer(&FieldRef::top("pick"), Answer::Choice("a".into())).expect("pick");
    w.push_ok("ins-a", &own).await;
    // A review comment: a second visit, submitted and returned with markup in the comment.
    let draft = w.record("ins-a", "s-a", &named("草稿")).await;
    let s1 = w.sign_in("sup1", None).await;
    {
        let mut r = new_record("inspection-visit", "s-a", &ins);
        fill_completely(&mut r, 1, &mut rng).expect("fill");
        r.submit().expect("submit");
        w.push_ok("ins-a", &r).await;
        t.attack("a supervisor returns a record with markup in the comment");
        let resp = w
            .call(form_post(&format!("/records/{}/review", r.id()), &format!("shidao_session={}", s1.id), &[("csrf", &s1.csrf), ("action", "return"), ("comment", &named("退回意见"))]))
            .await;
        assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.text());
        let page = w.call(page_get(&format!("/records/{}", r.id()), &s1.id)).await;
        assert!(page.text().contains("退回意见"), "the comment is on the record's page");
        inert("the returned record's page", &page.text());
        t.refused();
    }

    // 3. Every page and export that shows these texts, as the programme's supervisor.
    let csv_paths = [
        "/export/inspection-visit.csv".to_string(),
        "/export/inspection-visit.csv?authors=1&codes=1".to_string(),
        format!("/export/{form_id}.csv"),
        format!("/export/{form_id}.csv?authors=1"),
        "/export/classroom-observation.csv?authors=1".to_string(),
    ];
    let mut pages = vec![
        "/".to_string(),
        "/records".to_string(),
        "/records?school=s-a".to_string(),
        format!("/records?template={form_id}"),
        "/schools/s-a".to_string(),
        "/exports".to_string(),
        "/admin/forms".to_string(),
    ];
    for r in [visit.id(), lesson.id(), own.id(), draft.id()] {
        pages.push(format!("/records/{r}"));
        pages.push(format!("/records/{r}/history?field=visit_focus"));
        pages.push(format!("/records/{r}/history?field=note"));
    }
    for lang in ["zh", "en"] {
        let cookie = format!("shidao_session={}; shidao_lang={lang}", s1.id);
        for path in &pages {
            t.attack(format!("markup in what {path} shows ({lang})"));
            let r = w.call(Request::get(path.as_str()).header("cookie", &cookie).body(Body::empty()).expect("req")).await;
            assert!(r.status == StatusCode::OK || r.status == StatusCode::NOT_FOUND || r.status == StatusCode::BAD_REQUEST, "{path}: {} {}", r.status, r.text());
            inert(path, &r.text());
            t.refused();
        }
    }
    // The pages do show the texts, escaped.
    let report = w.call(page_get("/schools/s-a", &s1.id)).await.text();
    for shown in ["strengths", "学校任务", "教师", "甲校"] {
        assert!(report.contains(&format!("{shown}&#60;script&#62;")), "the report shows {shown}, escaped");
    }
    let forms_page = w.call(page_get("/admin/forms", &s1.id)).await.text();
    assert!(forms_page.contains("表单&lt;script&gt;") || forms_page.contains("表单&#60;script&#62;"), "the forms page shows the title, escaped");
    for path in &csv_paths {
        t.attack(format!("a formula in {path}"));
        let r = w.call(page_get(path, &s1.id)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        let text = r.text();
        assert!(text.contains("'=cmd") || !text.contains("=cmd"), "{path}: the formula is kept, neutralised");
        let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
        for rec in reader.records() {
            for cell in rec.expect("csv row").iter() {
                assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "{path}: cell {cell:?} would run as a formula");
            }
        }
        t.refused();
    }
    // The JSON interface is JSON: the texts are data there, never a page.
    t.attack("markup through the JSON interface");
    let r = w.call(page_get("/api/records?template=inspection-visit", &s1.id)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json")));
    t.refused();
    t.finish();
}
