//! Sync through the bindings' Rust API against a real relay on loopback (the same calls the
//! Kotlin and Python scripts make in tests/bindings/app_flow.*): enrol, sync with progress,
//! another tablet's edit merged with the listener told, an attachment fetched, a hung sync
//! cancelled (and a second sync refused meanwhile), bad addresses, a revoked tablet.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shidao_bindings::{AnswerValue, ChangeListener, ShidaoError, ShidaoStore, SyncCancel, SyncProgress, SyncStatus};

#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl ChangeListener for Seen {
    fn on_record_changed(&self, record_id: String) {
        self.0.lock().expect("lock").push(record_id);
    }
}

impl Seen {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

#[derive(Default)]
struct Steps(Mutex<Vec<SyncStatus>>);

impl SyncProgress for Steps {
    fn on_progress(&self, status: SyncStatus) {
        self.0.lock().expect("lock").push(status);
    }
}

#[test]
fn two_tablets_sync_through_the_relay() {
    let server = common::Loopback::start();
    let rt = &server.rt;
    let dir = tempfile::tempdir().expect("dir");
    let open = |name: &str| ShidaoStore::open(dir.path().join(name).display().to_string()).expect("store");

    // Enrol: the identity comes back and stays in the store; a code works once; a store that was
    // never enrolled cannot sync.
    let wang_store = open("wang.db");
    assert_eq!(wang_store.enrolment().expect("read"), None);
    let err = rt.block_on(wang_store.sync(None, None)).expect_err("not enrolled");
    assert!(matches!(&err, ShidaoError::Unauthorized { code, .. } if code == "not_enrolled"), "{err:?}");
    let wang = rt.block_on(wang_store.enrol(format!("{}/", server.url), server.code_wang.clone(), "王老师的平板".into(), None)).expect("enrol");
    assert_eq!((wang.editor.user.as_str(), wang.name.as_str(), wang.server_url.as_str()), ("wang", "王老师", server.url.as_str()));
    assert_eq!(wang_store.enrolment().expect("read"), Some(wang.clone()));
    let err = rt.block_on(open("x.db").enrol(server.url.clone(), server.code_wang.clone(), "x".into(), None)).expect_err("used code");
    assert!(matches!(&err, ShidaoError::Unauthorized { code, .. } if code == "bad_code"), "{err:?}");

    // Bad addresses: not a URL, nobody listening. The code is not used up by either.
    let li_store = open("li.db");
    let err = rt.block_on(li_store.enrol("shidao.example.cn".into(), server.code_li.clone(), "x".into(), None)).expect_err("bad address");
    assert!(matches!(&err, ShidaoError::Network { reason } if reason.contains("bad server address")), "{err:?}");
    let err = rt.block_on(li_store.enrol(server.unreachable_url.clone(), server.code_li.clone(), "x".into(), None)).expect_err("unreachable");
    assert!(matches!(&err, ShidaoError::Network { reason } if reason.contains("cannot reach")), "{err:?}");
    assert!(matches!(wang_store.set_server_url("ftp://x".into()), Err(ShidaoError::Network { .. })));

    // Wang fills a lesson observation and a visit with a photo, and syncs.
    let obs = wang_store.create_record("classroom-observation".into(), "ouhai-a".into(), wang.editor.clone()).expect("create");
    obs.set_answer("topic".into(), AnswerValue::Text { value: "勾股定理".into() }, None).expect("topic");
    obs.set_answer("class_name".into(), AnswerValue::Text { value: "八(2)班".into() }, None).expect("class");
    let visit = wang_store.create_record("inspection-visit".into(), "ouhai-a".into(), wang.editor.clone()).expect("visit");
    let photo = vec![0xFF, 0xD8, 7, 7, 7];
    let AnswerValue::Attachment { hash, .. } =
        visit.attach_file("walk_photo".into(), photo.clone(), "image/jpeg".into(), "walk.jpg".into(), None).expect("photo")
    else {
        panic!("attachment answer")
    };
    let steps = Arc::new(Steps::default());
    let started = Instant::now();
    assert_eq!(wang_store.reference_data().expect("reference"), None, "nothing before the first sync");
    let first = rt.block_on(wang_store.sync(Some(steps.clone()), None)).expect("first sync");
    let picks = wang_store.reference_data().expect("reference").expect("the first sync brings reference data");
    assert_eq!(picks.schools.iter().map(|s| (s.id.as_str(), s.name.as_str(), s.category.as_str())).collect::<Vec<_>>(), [("ouhai-a", "瓯海区实验中学", "示范")]);
    assert_eq!(picks.tasks.iter().map(|t| (t.title.as_str(), t.target, t.school.is_none())).collect::<Vec<_>>(), [("新增优质学位", 2400.0, true)]);
    assert_eq!(picks.indicators.iter().map(|i| (i.name.as_str(), i.chapter.as_str(), i.target)).collect::<Vec<_>>(), [("骨干教师占比", "teacher", Some(25.0))]);
    println!("first sync (2 records, 1 file): {:?}", started.elapsed());
    assert_eq!((first.pushed, first.pulled, first.uploaded), (2, 0, 1), "{first:?}");
    let last = steps.0.lock().expect("lock").last().cloned().expect("progress told");
    assert!(last.done && last.pushed == 2 && last.bytes_sent > 0, "{last:?}");

    // Li enrols her tablet and syncs: both records arrive, her listener is told, the photo comes
    // on demand.
    let li_seen = Arc::new(Seen::default());
    li_store.set_change_listener(Some(li_seen.clone())).expect("listener");
    let li = rt.block_on(li_store.enrol(server.url.clone(), server.code_li.clone(), "李老师的平板".into(), None)).expect("enrol li");
    let got = rt.block_on(li_store.sync(None, None)).expect("li sync");
    let mut both = vec![obs.id(), visit.id()];
    both.sort();
    assert_eq!((got.pulled, got.changed.clone()), (2, both.clone()), "{got:?}");
    let mut told = li_seen.take();
    told.sort();
    assert_eq!(told, both);
    assert!(matches!(li_store.attachment(hash.clone()), Err(ShidaoError::NotFound { .. })));
    assert_eq!(rt.block_on(li_store.fetch_attachment(hash.clone())).expect("fetch").bytes, photo);
    assert_eq!(li_store.attachment(hash).expect("kept").bytes, photo);

    // Both edit offline, one field each and one field both; Li syncs, then Wang: Li's edit is
    // merged on Wang's tablet, his listener is told, and the field both set keeps both values.
    let obs_li = li_store.open_record(obs.id(), li.editor.clone()).expect("open");
    obs_li.set_answer("teacher_name".into(), AnswerValue::Text { value: "陈老师".into() }, None).expect("teacher");
    obs_li.set_answer("class_name".into(), AnswerValue::Text { value: "八(3)班".into() }, None).expect("class");
    obs.set_answer("class_name".into(), AnswerValue::Text { value: "八(2)班（实验）".into() }, None).expect("class");
    assert_eq!(rt.block_on(li_store.sync(None, None)).expect("li pushes").pushed, 1);
    let wang_seen = Arc::new(Seen::default());
    wang_store.set_change_listener(Some(wang_seen.clone())).expect("listener");
    let merged = rt.block_on(wang_store.sync(None, None)).expect("wang merges");
    assert_eq!((merged.pushed, merged.pulled, merged.changed.clone()), (1, 1, vec![obs.id()]), "{merged:?}");
    assert_eq!(wang_seen.take(), vec![obs.id()]);
    obs.reload().expect("reload");
    let teacher = obs.answer("teacher_name".into(), "zh".into(), None).expect("teacher");
    assert_eq!(teacher.by.map(|b| b.user), Some("li".to_string()));
    let class = obs.answer("class_name".into(), "zh".into(), None).expect("class");
    let mut authors: Vec<_> = class.conflicts.iter().filter_map(|c| c.by.as_ref().map(|b| b.user.clone())).collect();
    authors.sort();
    assert_eq!(authors, ["li", "wang"], "{class:?}");

    // A sync waiting on a server that never answers stops at once when cancelled.
    wang_store.set_server_url(server.hang_url.clone()).expect("move");
    let cancel = SyncCancel::new();
    let task = {
        let store = wang_store.clone();
        let cancel = cancel.clone();
        rt.spawn(async move { store.sync(None, Some(cancel)).await })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(!task.is_finished(), "the sync waits on the silent server");
    let err = rt.block_on(wang_store.sync(None, None)).expect_err("one sync at a time");
    assert!(matches!(&err, ShidaoError::NotAllowed { reason } if reason.contains("already running")), "{err:?}");
    let asked = Instant::now();
    cancel.cancel();
    let outcome = rt.block_on(task).expect("task");
    println!("cancel took effect in {:?}", asked.elapsed());
    assert_eq!(outcome, Err(ShidaoError::Cancelled));
    assert!(asked.elapsed() < Duration::from_secs(5));
    wang_store.set_server_url(server.url.clone()).expect("back");

    // Li's tablet is revoked: her next sync is refused with the reason; Wang's goes on.
    server.revoke(li.editor.device.as_str());
    let err = rt.block_on(li_store.sync(None, None)).expect_err("revoked");
    assert!(matches!(&err, ShidaoError::Unauthorized { code, reason } if code == "revoked" && reason.contains("revoked")), "{err:?}");
    rt.block_on(wang_store.sync(None, None)).expect("wang still syncs");
}

#[test]
fn a_district_certificate_given_at_enrolment_is_trusted_for_every_sync() {
    // 1. The relay over HTTPS with a certificate no public authority issued.
    let server = common::Loopback::start();
    let rt = &server.rt;
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed (scripts/install-test-deps.sh installs it)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let url = server.serve_https(&cert, &key);
    let pem = std::fs::read_to_string(&cert).expect("cert");
    let path = dir.path().join("wang.db").display().to_string();
    let store = ShidaoStore::open(path.clone()).expect("store");
    let enrol = |certificate: Option<String>| rt.block_on(store.enrol(url.clone(), server.code_wang.clone(), "王老师的平板".into(), certificate));

    // 2. Without the certificate the tablet cannot reach it; with an unreadable one it says which
    //    argument is wrong. Neither uses up the code nor enrols the store.
    let err = enrol(None).expect_err("untrusted");
    assert!(matches!(&err, ShidaoError::Network { .. }), "{err:?}");
    let err = enrol(Some("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n".into())).expect_err("bad pem");
    assert!(matches!(&err, ShidaoError::InvalidAnswer { field, .. } if field == "server_certificate"), "{err:?}");
    assert_eq!(store.enrolment().expect("read"), None);

    // 3. With it the tablet enrols and syncs; moving the address keeps the certificate.
    let me = enrol(Some(pem)).expect("enrol over https").editor;
    let rec = store.create_record("inspection-visit".into(), "ouhai-a".into(), me.clone()).expect("record");
    rec.clone().field("visit_focus".into(), None).expect("field").set_text("课堂教学".into()).expect("focus");
    let first = rt.block_on(store.sync(None, None)).expect("sync over https");
    assert_eq!(first.pushed, 1, "{first:?}");
    store.set_server_url(url.replace("localhost", "127.0.0.1")).expect("move");
    rec.clone().field("visit_focus".into(), None).expect("field").clear().expect("clear");
    assert_eq!(rt.block_on(store.sync(None, None)).expect("sync at the new address").pushed, 1);

    // 4. The certificate is kept in the store: the app opened again syncs without it.
    drop(rec);
    drop(store);
    let again = ShidaoStore::open(path).expect("reopen");
    let rec = again.create_record("inspection-visit".into(), "ouhai-a".into(), me).expect("record");
    drop(rec);
    assert_eq!(rt.block_on(again.sync(None, None)).expect("sync after reopening").pushed, 1);
}

#[test]
fn enrol_from_qr_tells_a_bad_payload_a_used_code_an_expired_code_and_another_server_apart() {
    use shidao_core::sync::enrol_payload::{pem_fingerprint, EnrolPayload};
    let server = common::Loopback::start();
    let rt = &server.rt;
    let dir = tempfile::tempdir().expect("dir");
    let open = |name: &str| ShidaoStore::open(dir.path().join(name).display().to_string()).expect("store");
    let now = shidao_core::Clock::system().now();

    // Not an enrolment code, a later version, a missing code: refused before anything is sent.
    let store = open("wang.db");
    for bad in [server.code_wang.clone(), server.qr_wang.replace("v=1", "v=2"), format!("shidao://enrol?v=1&server={}", server.url)] {
        let err = rt.block_on(store.enrol_from_qr(bad.clone(), "平板".into())).expect_err("bad payload");
        assert!(matches!(&err, ShidaoError::BadEnrolPayload { .. }), "{bad}: {err:?}");
    }
    assert_eq!(store.enrolment().expect("read"), None);

    // The relay's payload enrols; the same payload again is a used code.
    let wang = rt.block_on(store.enrol_from_qr(server.qr_wang.clone(), "王老师的平板".into())).expect("enrol from QR");
    assert_eq!((wang.editor.user.as_str(), wang.server_url.as_str()), ("wang", server.url.as_str()));
    let err = rt.block_on(open("x.db").enrol_from_qr(server.qr_wang.clone(), "x".into())).expect_err("used");
    assert!(matches!(&err, ShidaoError::EnrolCodeUsed { .. }), "{err:?}");

    // A code issued eight days ago has expired.
    let old = server.qr("li", now - 8 * 24 * 3600);
    let err = rt.block_on(open("li.db").enrol_from_qr(old, "x".into())).expect_err("expired");
    assert!(matches!(&err, ShidaoError::EnrolCodeExpired { .. }), "{err:?}");

    // A code for another server on a tablet enrolled with this one: refused, nothing changed.
    let elsewhere = EnrolPayload::new(&server.unreachable_url, "ABCDE-FGHJK", None).expect("payload").to_string();
    let err = rt.block_on(store.enrol_from_qr(elsewhere, "x".into())).expect_err("another server");
    assert!(matches!(&err, ShidaoError::WrongServer { .. }), "{err:?}");
    assert_eq!(store.enrolment().expect("read"), Some(wang));

    // A district CA named by fingerprint: fetched from the relay, trusted when it matches.
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed (scripts/install-test-deps.sh installs it)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let https = server.serve_https(&cert, &key);
    let fp = pem_fingerprint(&std::fs::read_to_string(&cert).expect("cert")).expect("fingerprint");
    let code = server.state.with_db(|c| shidao_server::accounts::new_enrol_code(c, "li", now)).expect("code");
    let wrong = EnrolPayload::new(&https, &code, Some(&"ab".repeat(32))).expect("payload").to_string();
    let li = open("li-https.db");
    let err = rt.block_on(li.enrol_from_qr(wrong, "x".into())).expect_err("another CA");
    assert!(matches!(&err, ShidaoError::WrongServer { .. }), "{err:?}");
    assert_eq!(li.enrolment().expect("read"), None);
    let right = EnrolPayload::new(&https, &code, Some(&fp)).expect("payload").to_string();
    let me = rt.block_on(li.enrol_from_qr(right, "李老师的平板".into())).expect("enrol over https with the pinned CA").editor;
    let rec = li.create_record("inspection-visit".into(), "ouhai-a".into(), me).expect("record");
    rec.clone().field("visit_focus".into(), None).expect("field").set_text("课堂教学".into()).expect("focus");
    assert_eq!(rt.block_on(li.sync(None, None)).expect("sync trusting the CA").pushed, 1);
}
