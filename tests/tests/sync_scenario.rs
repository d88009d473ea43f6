//! Scenario: a visit team syncs through a real relay on loopback. Two inspectors and an expert
//! edit one visit record and their own records offline, sync in different orders, and converge;
//! the field both inspectors changed shows as a conflict with both authors. A tablet of another
//! school can neither read nor write those records; a revoked tablet is refused; a replayed
//! request changes nothing.

use shidao_core::record::Answer;
use shidao_core::store::RecordFilter;
use shidao_core::sync::http::DriverError;
use shidao_core::sync::protocol::{self, Outcome, SyncResponse};
use shidao_core::sync::SyncClient;
use shidao_core::template::FieldKind;
use shidao_core::FieldRef;
use shidao_tests::{programme, school, Relay, Tablet};

fn field_of(t: &shidao_core::Template, kind: FieldKind, nth: usize) -> String {
    t.top_fields().filter(|f| f.kind() == kind).nth(nth).expect("field").id().to_string()
}

fn count(db: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row(sql, [], |r| r.get(0)).expect("count")
}

#[tokio::test]
async fn a_visit_team_syncs_through_the_relay() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let codes = programme(&db);
    let mut relay = Relay::start(env!("CARGO_BIN_EXE_relay").as_ref(), &db);

    // 1. Wang, Li and Zhao (school A) and Chen (school B) enrol their tablets with one-time codes;
    //    a code works only once.
    let code = |who: &str| codes.iter().find(|(u, _)| u == who).expect("code").1.clone();
    let wang = Tablet::enrol(&relay.url, &code("wang"), &dir.path().join("wang.db")).await.expect("enrol wang");
    let li = Tablet::enrol(&relay.url, &code("li"), &dir.path().join("li.db")).await.expect("enrol li");
    let zhao = Tablet::enrol(&relay.url, &code("zhao"), &dir.path().join("zhao.db")).await.expect("enrol zhao");
    let chen = Tablet::enrol(&relay.url, &code("chen"), &dir.path().join("chen.db")).await.expect("enrol chen");
    let again = Tablet::enrol(&relay.url, &code("wang"), &dir.path().join("x.db")).await;
    assert!(matches!(again, Err(DriverError::Unauthorized { ref code, .. }) if code == "bad_code"), "{:?}", again.err());

    // 2. Wang opens the visit record before the team leaves and syncs; Li and Zhao sync and get
    //    it, with the reference data (their school, the programme's tasks).
    let mut visit = wang.store.create("inspection-visit", &school("ouhai-a"), &wang.editor).expect("create");
    let id = visit.id().clone();
    let t = visit.template().clone();
    wang.sync().await.unwrap_or_else(|e| panic!("{e}\n{}", relay.log()));
    li.sync().await.expect("li syncs");
    zhao.sync().await.expect("zhao syncs");
    assert!(li.store.contains(&id).unwrap() && zhao.store.contains(&id).unwrap());
    let reference = SyncClient::reference(&li.store).unwrap().expect("reference data");
    assert_eq!(reference.schools.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["瓯海区实验中学"]);
    assert_eq!(reference.tasks.len(), 1);

    // 3. Offline in the school: each inspector rates a module, writes findings, and types the
    //    summary; Zhao writes his guidance log; Li observes a lesson.
    let summary = field_of(&t, FieldKind::Text, 0);
    let findings = field_of(&t, FieldKind::LongText, 0);
    let rating_a = field_of(&t, FieldKind::Rating, 0);
    let rating_b = field_of(&t, FieldKind::Rating, 1);
    wang.store.edit(&mut visit, |r| r.set_answer(&FieldRef::top(&rating_a), Answer::Rating(3))).unwrap();
    wang.store.edit(&mut visit, |r| r.splice_text(&FieldRef::top(&findings), 0, 0, "王：课堂提问以记忆性问题为主。")).unwrap();
    wang.store.edit(&mut visit, |r| r.set_answer(&FieldRef::top(&summary), Answer::Text("整体良好".into()))).unwrap();
    let mut li_visit = li.store.load(&id, &li.editor).unwrap();
    li.store.edit(&mut li_visit, |r| r.set_answer(&FieldRef::top(&rating_b), Answer::Rating(2))).unwrap();
    li.store.edit(&mut li_visit, |r| r.splice_text(&FieldRef::top(&findings), 0, 0, "李：作业缺少分层设计。")).unwrap();
    li.store.edit(&mut li_visit, |r| r.set_answer(&FieldRef::top(&summary), Answer::Text("需整改作业设计".into()))).unwrap();
    let log = zhao.store.create("guidance-log", &school("ouhai-a"), &zhao.editor).expect("log");
    let lesson = li.store.create("classroom-observation", &school("ouhai-a"), &li.editor).expect("lesson");

    // 4. They sync in different orders, twice round, and converge.
    zhao.sync().await.expect("zhao");
    li.sync().await.expect("li");
    wang.sync().await.expect("wang");
    zhao.sync().await.expect("zhao again");
    li.sync().await.expect("li again");
    let views: Vec<_> = [&wang, &li, &zhao].iter().map(|tab| tab.store.load(&id, &tab.editor).unwrap().read()).collect();
    assert_eq!(views[0].answers, views[1].answers, "wang and li differ");
    assert_eq!(views[0].answers, views[2].answers, "wang and zhao differ");
    for tab in [&wang, &li, &zhao] {
        assert!(tab.store.contains(log.id()).unwrap() && tab.store.contains(lesson.id()).unwrap());
        assert!(tab.store.list(&RecordFilter { dirty_only: true, ..Default::default() }).unwrap().is_empty(), "all acknowledged");
    }

    // 5. Both inspectors' work is there; the summary both typed is a conflict naming both.
    let merged = wang.store.load(&id, &wang.editor).unwrap();
    let Some(Answer::LongText(text)) = merged.answer(&FieldRef::top(&findings)).unwrap().answer else { panic!("findings") };
    assert!(text.contains("王：课堂提问以记忆性问题为主。") && text.contains("李：作业缺少分层设计。"), "{text}");
    assert_eq!(merged.answer(&FieldRef::top(&rating_a)).unwrap().by.unwrap().user, "wang");
    assert_eq!(merged.answer(&FieldRef::top(&rating_b)).unwrap().by.unwrap().user, "li");
    let s = merged.answer(&FieldRef::top(&summary)).unwrap();
    let mut authors: Vec<String> = s.conflicts.iter().map(|c| c.by.clone().unwrap().user).collect();
    authors.sort();
    assert_eq!(authors, ["li", "wang"]);
    // The central projection shows it too, with the conflict counted.
    assert_eq!(
        count(&db, &format!("SELECT conflicts FROM answers WHERE record_id = '{id}' AND field = '{summary}'")),
        2
    );

    // 6. Chen (school B) syncs: none of school A's records reach him ...
    chen.sync().await.expect("chen syncs");
    assert_eq!(chen.store.count().unwrap(), 0);
    // ... and a record he makes for school A is refused, kept on his tablet, and stored nowhere.
    let mut forged = chen.store.create("classroom-observation", &school("ouhai-a"), &chen.editor).expect("local");
    chen.store.edit(&mut forged, |r| r.set_answer(&FieldRef::top("lesson_date"), Answer::Date("2026-11-20".into()))).unwrap();
    let summary_c = chen.sync().await.expect("chen syncs");
    assert_eq!(summary_c.refused.len(), 1);
    assert_eq!(summary_c.refused[0].code, "out_of_scope");
    assert!(chen.store.contains(forged.id()).unwrap());
    assert_eq!(count(&db, &format!("SELECT COUNT(*) FROM records WHERE id = '{}'", forged.id())), 0);
    // Guessing the id of a school-A record and pushing changes to it is refused the same way.
    let stolen = wang.store.record_bytes(&id).unwrap();
    let req = protocol::SyncRequest {
        protocol: protocol::PROTOCOL,
        request_id: "guess-1".into(),
        cursor: 0,
        scope: None,
        reference: None,
        push: vec![protocol::Push { record: id.to_string(), changes: stolen, heads: vec![] }],
        max_pull_bytes: None,
        want_forms: vec![],
        set_aside: vec![],
        app: None,
    };
    let resp = post(&relay.url, &chen.token, &req).await;
    assert_eq!(resp.results[0].outcome, Outcome::Refused);
    assert!(resp.pull.is_empty(), "nothing of school A is pulled by chen");

    // 7. A replayed request changes nothing: same body twice, same central store.
    let mut log_copy = zhao.store.load(log.id(), &zhao.editor).unwrap();
    let notes = field_of(log_copy.template(), FieldKind::LongText, 0);
    zhao.store.edit(&mut log_copy, |r| r.splice_text(&FieldRef::top(&notes), 0, 0, "回访")).unwrap();
    let prepared = SyncClient::default().prepare(&zhao.store).unwrap();
    assert_eq!(prepared.request.push.len(), 1);
    let first = post(&relay.url, &zhao.token, &prepared.request).await;
    assert_eq!(first.results[0].outcome, Outcome::Accepted);
    let before = (count(&db, "SELECT COUNT(*) FROM changes"), count(&db, "SELECT COUNT(*) FROM records"), count(&db, "SELECT COUNT(*) FROM answers"));
    let replay = post(&relay.url, &zhao.token, &prepared.request).await;
    assert_eq!(replay.results[0].outcome, Outcome::Accepted);
    let after = (count(&db, "SELECT COUNT(*) FROM changes"), count(&db, "SELECT COUNT(*) FROM records"), count(&db, "SELECT COUNT(*) FROM answers"));
    assert_eq!(before, after, "a replay changed the central store");

    // 8. Li's tablet is revoked: its token is refused, and her local work stays on the tablet.
    {
        let conn = shidao_server::db::open(&db).unwrap();
        let device = li.editor.device.to_string();
        shidao_server::accounts::revoke_device(&conn, &device, 0).unwrap();
    }
    li.store.edit(&mut li_visit, |r| r.splice_text(&FieldRef::top(&findings), 0, 0, "（补充）")).unwrap();
    let refused = li.sync().await;
    assert!(matches!(refused, Err(DriverError::Unauthorized { ref code, .. }) if code == "revoked"), "{refused:?}");
    assert_eq!(li.store.list(&RecordFilter { dirty_only: true, ..Default::default() }).unwrap().len(), 1);

    relay.kill();
}

/// Posts a request as the driver would, returning the decoded answer.
async fn post(url: &str, token: &str, req: &protocol::SyncRequest) -> SyncResponse {
    let client = reqwest::Client::builder().tls_backend_rustls().build().expect("client");
    let resp = client
        .post(format!("{url}/v1/sync"))
        .bearer_auth(token)
        .header("content-encoding", "gzip")
        .header("accept-encoding", "gzip")
        .body(protocol::encode(req).expect("encode"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.expect("body");
    protocol::decode(&bytes, true).expect("decode")
}
