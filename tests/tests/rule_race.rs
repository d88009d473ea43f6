//! Scenario: an inspector edits offline while the supervisor approves in the browser, on a real
//! relay with two tablets. The approval stands; the late edit is refused (`sealed`), set aside on
//! the inspector's tablet and visible there; the record is not trapped (nothing stands refused,
//! nothing is pushed again); the inspector's next edit of another record reaches the relay, and
//! so does the next edit of a record the supervisor returned while the inspector was offline
//! (an edit legal where it was made stands although the status moved).

use shidao_core::record::Answer;
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::sync::SyncClient;
use shidao_core::{FieldRef, Status};
use shidao_tests::{programme, school, Relay, Tablet};

const PASSWORD: &str = "race-test-password";

/// The supervisor in the browser, through the relay's own pages (cookies and form tokens kept by
/// hand, as a browser keeps them).
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

fn set_cookies(resp: &reqwest::Response) -> Vec<(String, String)> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

fn hidden(html: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = html.find(&key).unwrap_or_else(|| panic!("no hidden {name} in {html}")) + key.len();
    html[at..].split('"').next().expect("value").to_string()
}

impl Browser {
    async fn sign_in(base: &str, user: &str) -> Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let form = http.get(format!("{base}/login")).send().await.expect("login page");
        let login = set_cookies(&form).into_iter().find(|(k, _)| k == "shidao_login").expect("login cookie").1;
        let csrf = hidden(&form.text().await.expect("page"), "csrf");
        let resp = http
            .post(format!("{base}/login"))
            .header("cookie", format!("shidao_login={login}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}&user={user}&password={PASSWORD}"))
            .send()
            .await
            .expect("sign in");
        assert_eq!(resp.status().as_u16(), 303, "sign-in of {user}");
        let session = set_cookies(&resp).into_iter().find(|(k, _)| k == "shidao_session").expect("session").1;
        Browser { http, base: base.to_string(), cookie: format!("shidao_session={session}") }
    }

    /// The record's page as the supervisor sees it.
    async fn page(&self, record: &str) -> String {
        let page = self.http.get(format!("{}/records/{record}", self.base)).header("cookie", &self.cookie).send().await.expect("page");
        assert_eq!(page.status().as_u16(), 200);
        page.text().await.expect("page")
    }

    /// Presses a review button on the record's page: `approve`, or `return` with a comment.
    async fn review(&self, record: &str, action: &str, comment: &str) {
        let page = self.http.get(format!("{}/records/{record}", self.base)).header("cookie", &self.cookie).send().await.expect("page");
        assert_eq!(page.status().as_u16(), 200);
        let csrf = hidden(&page.text().await.expect("page"), "csrf");
        let resp = self
            .http
            .post(format!("{}/records/{record}/review", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}&action={action}&comment={comment}"))
            .send()
            .await
            .expect("review");
        assert_eq!(resp.status().as_u16(), 303, "{action} of {record}: {:?}", resp.text().await);
    }
}

fn central_status(db: &std::path::Path, id: &str) -> String {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row("SELECT status FROM records WHERE id = ?1", [id], |r| r.get(0)).expect("status")
}

fn central_answer(db: &std::path::Path, id: &str, field: &str) -> Option<String> {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row("SELECT display FROM answers WHERE record_id = ?1 AND field = ?2 AND row_id = ''", [id, field], |r| r.get(0)).ok()
}

#[tokio::test]
async fn a_late_edit_beside_an_approval_is_set_aside_and_traps_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let codes = programme(&db);
    {
        let conn = rusqlite::Connection::open(&db).expect("open");
        let hash = shidao_server::web::auth::hash_password(PASSWORD).expect("hash");
        conn.execute("UPDATE users SET password_hash = ?1 WHERE id = 'sup'", [hash]).expect("password");
    }
    let relay = Relay::start(env!("CARGO_BIN_EXE_relay").as_ref(), &db);
    let code = |who: &str| codes.iter().find(|(u, _)| u == who).expect("code").1.clone();

    // 1. Wang and Li (school A) enrol; Wang opens a visit record and a second one, fills both
    //    completely and syncs; Li syncs and holds draft copies of both.
    let wang = Tablet::enrol(&relay.url, &code("wang"), &dir.path().join("wang.db")).await.expect("wang");
    let li = Tablet::enrol(&relay.url, &code("li"), &dir.path().join("li.db")).await.expect("li");
    let mut visit = wang.store.create("inspection-visit", &school("ouhai-a"), &wang.editor).expect("visit");
    let mut other = wang.store.create("inspection-visit", &school("ouhai-a"), &wang.editor).expect("other");
    for (r, seed) in [(&mut visit, 1), (&mut other, 2)] {
        wang.store.edit(r, |r| fill_completely(r, 1, &mut Rng::new(seed))).expect("fill");
    }
    let (id, other_id) = (visit.id().clone(), other.id().clone());
    wang.sync().await.unwrap_or_else(|e| panic!("{e}\n{}", relay.log()));
    li.sync().await.expect("li syncs");
    let mut li_visit = li.store.load(&id, &li.editor).expect("li has the visit");
    let mut li_other = li.store.load(&other_id, &li.editor).expect("li has the other");
    assert_eq!(li_visit.status(), Status::Draft);

    // 2. Wang submits both and syncs.
    wang.store.edit(&mut visit, |r| r.submit()).expect("submit");
    wang.store.edit(&mut other, |r| r.submit()).expect("submit other");
    wang.sync().await.expect("wang submits");
    assert_eq!(central_status(&db, id.as_str()), "submitted");

    // 3. In the browser the supervisor approves the visit and returns the other with a comment.
    let browser = Browser::sign_in(&relay.url, "sup").await;
    browser.review(id.as_str(), "approve", "").await;
    browser.review(other_id.as_str(), "return", "请补充证据").await;
    assert_eq!(central_status(&db, id.as_str()), "approved");
    assert_eq!(central_status(&db, other_id.as_str()), "returned");

    // 4. Offline, Li (who has seen neither) adds a note to each of her draft copies.
    let note = FieldRef::top("visit_focus");
    li.store.edit(&mut li_visit, |r| r.set_answer(&note, Answer::Text("李：晚到的补充".into()))).expect("late edit");
    li.store.edit(&mut li_other, |r| r.set_answer(&note, Answer::Text("李：补充证据".into()))).expect("edit of the other");

    // 5. Li syncs. The visit's note is refused `sealed` and set aside; the other's note, legal
    //    where it was made (a draft), is accepted although the record was returned meanwhile.
    let summary = li.sync().await.unwrap_or_else(|e| panic!("{e}\n{}", relay.log()));
    assert_eq!(summary.refused.iter().map(|r| (r.record.as_str(), r.code.as_str())).collect::<Vec<_>>(), [(id.as_str(), "sealed")]);
    assert_eq!(summary.set_aside.len(), 1, "{:?}", summary.set_aside);
    let entry = &summary.set_aside[0];
    assert_eq!((entry.record.as_str(), entry.code.as_str()), (id.as_str(), "sealed"));
    assert_eq!(entry.fields, ["visit_focus"]);
    assert!(entry.reapplied.is_empty(), "nothing can be written again on an approved record");
    assert_eq!(entry.kept_aside(), ["visit_focus"]);

    // 6. The approval stands: the relay's copy is approved without Li's note, and so is Li's
    //    tablet's (the note is not shown as part of the record), but the note is there, set aside.
    assert_eq!(central_status(&db, id.as_str()), "approved");
    assert_ne!(central_answer(&db, id.as_str(), "visit_focus").as_deref(), Some("李：晚到的补充"));
    let mine = li.store.load(&id, &li.editor).expect("reload");
    assert_eq!(mine.status(), Status::Approved);
    assert_ne!(mine.answer(&note).expect("a").answer, Some(Answer::Text("李：晚到的补充".into())));
    let listed = li.store.set_asides(Some(&id)).expect("list");
    assert_eq!(listed, summary.set_aside);
    let aside = li.store.set_aside_view(listed[0].id, &li.editor).expect("view");
    let kept = aside.answers.iter().find(|a| a.field == note).and_then(|a| a.answer.clone());
    assert_eq!(kept, Some(Answer::Text("李：晚到的补充".into())), "the refused copy keeps the note");
    // The copy Li had open belongs to the old generation: saving it is refused, not silently merged.
    assert!(!li.store.is_current(&li_visit).expect("current"));
    let stale = li.store.edit(&mut li_visit, |r| r.set_answer(&note, Answer::Text("x".into())));
    assert!(matches!(stale, Err(shidao_core::store::StoreError::Stale(_))), "{stale:?}");

    // 7. Nothing is trapped: no refusal stands, nothing waits to be pushed, and another sync
    //    refuses nothing.
    assert!(SyncClient::refusals(&li.store).expect("refusals").is_empty());
    assert!(li.store.unsynced().expect("unsynced").is_empty());
    let again = li.sync().await.expect("again");
    assert!(again.refused.is_empty() && again.set_aside.is_empty(), "{again:?}");

    // 7b. The reviewer sees what was set aside: the tablet reported it with its next round; the
    //     record's page lists Li, the refusal and her note as the refused copy had it, apart from
    //     the record (which stays as approved). Reported once: another sync adds nothing.
    let reported = |db: &std::path::Path| -> i64 {
        let conn = rusqlite::Connection::open(db).expect("open");
        conn.query_row("SELECT COUNT(*) FROM set_asides WHERE record_id = ?1 AND code = 'sealed' AND user_id = 'li'", [id.as_str()], |r| r.get(0))
            .expect("count")
    };
    assert_eq!(reported(&db), 1);
    let page = browser.page(id.as_str()).await;
    let aside = page.split("被搁置的修改").nth(1).expect("a set-aside section on the record page");
    assert!(aside.contains("李老师") && aside.contains("sealed") && aside.contains("李：晚到的补充"), "{aside}");
    li.sync().await.expect("once more");
    assert_eq!(reported(&db), 1);

    // 8. Li's next edit of another record reaches the relay: the returned record, where her note
    //    from step 4 already stands, and a new edit of it now that it is returned.
    assert_eq!(central_answer(&db, other_id.as_str(), "visit_focus").as_deref(), Some("李：补充证据"));
    assert_eq!(central_status(&db, other_id.as_str()), "returned");
    let mut li_other = li.store.load(&other_id, &li.editor).expect("reload other");
    li.store.edit(&mut li_other, |r| r.set_answer(&note, Answer::Text("李：证据已补充".into()))).expect("edit returned");
    let s = li.sync().await.expect("sync the returned record");
    assert!(s.refused.is_empty(), "{:?}", s.refused);
    assert_eq!(central_answer(&db, other_id.as_str(), "visit_focus").as_deref(), Some("李：证据已补充"));
    // And a record of her own, new since.
    let mut lesson = li.store.create("classroom-observation", &school("ouhai-a"), &li.editor).expect("lesson");
    let t = lesson.template().clone();
    let first = t.top_fields().find(|f| f.kind() == shidao_core::template::FieldKind::Text).expect("text field").id().to_string();
    li.store.edit(&mut lesson, |r| r.set_answer(&FieldRef::top(&first), Answer::Text("新记录".into()))).expect("lesson edit");
    let s = li.sync().await.expect("sync lesson");
    assert!(s.refused.is_empty(), "{:?}", s.refused);
    assert_eq!(central_answer(&db, lesson.id().as_str(), &first).as_deref(), Some("新记录"));
    // Wang's tablet sees the approved record as the relay has it.
    wang.sync().await.expect("wang");
    assert_eq!(wang.store.load(&id, &wang.editor).expect("wang's copy").status(), Status::Approved);
}
