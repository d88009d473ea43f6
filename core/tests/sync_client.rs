//! The device side of sync as a state machine, driven with hand-made responses (no network):
//! what it pushes, what an acknowledgement, a refusal or a resend request does to the store, and
//! how pulled changes land.

use shidao_core::record::Answer;
use shidao_core::store::{RecordFilter, Store};
use shidao_core::sync::protocol::{Outcome, Pull, PushResult, SyncResponse, PROTOCOL};
use shidao_core::sync::{Prepared, SyncClient};
use shidao_core::template::FieldKind;
use shidao_core::{DeviceId, Editor, FieldRef, Role, SchoolId, UserId};

fn editor(user: &str) -> Editor {
    Editor { user: UserId::new(user).unwrap(), device: DeviceId::new(format!("d-{user}")).unwrap(), role: Role::Inspector }
}

fn response(results: Vec<PushResult>, pull: Vec<Pull>, cursor: u64) -> SyncResponse {
    SyncResponse { protocol: PROTOCOL, cursor, more: false, scope: "s1".into(), results, pull, reference: None, forms: vec![], server_time: 0 }
}

fn result(prepared: &Prepared, i: usize, outcome: Outcome, code: Option<&str>) -> PushResult {
    PushResult {
        record: prepared.request.push[i].record.clone(),
        outcome,
        code: code.map(str::to_string),
        reason: code.map(|c| format!("because {c}")),
    }
}

fn dirty(store: &Store) -> usize {
    store.list(&RecordFilter { dirty_only: true, ..Default::default() }).unwrap().len()
}

#[test]
fn acknowledged_pushes_are_clean_and_only_new_changes_go_next_time() {
    let store = Store::open_in_memory().unwrap();
    let me = editor("wang");
    let client = SyncClient::default();
    let mut r = store.create("inspection-visit", &SchoolId::new("s").unwrap(), &me).unwrap();

    // 1. The first request carries the whole new record.
    let p = client.prepare(&store).unwrap();
    assert_eq!(p.request.push.len(), 1);
    assert_eq!(p.request.cursor, 0);
    let whole = p.request.push[0].changes.len();
    let ack = result(&p, 0, Outcome::Accepted, None);
    let round = client.absorb(&store, &me, p, response(vec![ack], vec![], 42)).unwrap();
    assert_eq!((round.accepted, dirty(&store)), (1, 0));
    assert_eq!(SyncClient::cursor(&store).unwrap(), 42);

    // 2. Nothing to push until an edit; then only the new change goes.
    assert!(client.prepare(&store).unwrap().request.push.is_empty());
    let f = r.template().top_fields().find(|f| f.kind() == FieldKind::Text).unwrap().id().to_string();
    store.edit(&mut r, |r| r.set_answer(&FieldRef::top(&f), Answer::Text("一".into()))).unwrap();
    let p = client.prepare(&store).unwrap();
    assert_eq!(p.request.cursor, 42);
    assert!(p.request.push[0].changes.len() < whole / 2, "an edit sends its change, not the record");

    // 3. The response is lost (connection cut): nothing changes, the next request is the same.
    drop(p);
    let again = client.prepare(&store).unwrap();
    assert_eq!(again.request.push.len(), 1);
    assert_eq!(dirty(&store), 1);
}

#[test]
fn a_refused_record_keeps_its_edits_and_waits_for_the_next_one() {
    let store = Store::open_in_memory().unwrap();
    let me = editor("chen");
    let client = SyncClient::default();
    let mut r = store.create("inspection-visit", &SchoolId::new("other-school").unwrap(), &me).unwrap();
    let p = client.prepare(&store).unwrap();
    let no = result(&p, 0, Outcome::Refused, Some("out_of_scope"));
    let round = client.absorb(&store, &me, p, response(vec![no], vec![], 1)).unwrap();
    assert_eq!(round.refused.len(), 1);
    assert_eq!(round.refused[0].code, "out_of_scope");
    assert_eq!(dirty(&store), 1, "the record is kept and still unsent");
    assert_eq!(SyncClient::refusals(&store).unwrap().len(), 1);
    // Not pushed again as it stands ...
    assert!(client.prepare(&store).unwrap().request.push.is_empty());
    // ... but after another edit it is.
    let f = r.template().top_fields().find(|f| f.kind() == FieldKind::Text).unwrap().id().to_string();
    store.edit(&mut r, |r| r.set_answer(&FieldRef::top(&f), Answer::Text("改".into()))).unwrap();
    assert_eq!(client.prepare(&store).unwrap().request.push.len(), 1);
}

#[test]
fn resend_all_sends_the_whole_record_next_time() {
    let store = Store::open_in_memory().unwrap();
    let me = editor("li");
    let client = SyncClient::default();
    let mut r = store.create("guidance-log", &SchoolId::new("s").unwrap(), &Editor { role: Role::Expert, ..me.clone() }).unwrap();
    let p = client.prepare(&store).unwrap();
    let full = p.request.push[0].changes.len();
    let ok = result(&p, 0, Outcome::Accepted, None);
    client.absorb(&store, &me, p, response(vec![ok], vec![], 1)).unwrap();
    let f = r.template().top_fields().find(|f| f.kind() == FieldKind::LongText).unwrap().id().to_string();
    store.edit(&mut r, |r| r.splice_text(&FieldRef::top(&f), 0, 0, "记录")).unwrap();
    let p = client.prepare(&store).unwrap();
    let resend = result(&p, 0, Outcome::ResendAll, Some("missing_history"));
    let round = client.absorb(&store, &me, p, response(vec![resend], vec![], 1)).unwrap();
    assert!(round.more);
    let p = client.prepare(&store).unwrap();
    // The bytes hold the whole record on their own: a store with nothing loads them.
    let fresh = Store::open_in_memory().unwrap();
    let id = fresh.merge_remote(&p.request.push[0].changes, &me).unwrap();
    let back = fresh.load(&id, &me).unwrap();
    assert_eq!(back.answer(&FieldRef::top(&f)).unwrap().answer, Some(Answer::LongText("记录".into())));
    assert!(full > 0);
}

#[test]
fn pulled_records_land_clean_and_missing_history_resets_the_cursor() {
    let server_side = Store::open_in_memory().unwrap();
    let wang = editor("wang");
    let mut visit = server_side.create("inspection-visit", &SchoolId::new("s").unwrap(), &wang).unwrap();
    let whole = server_side.record_bytes(visit.id()).unwrap();
    let before = visit.heads();
    let f = visit.template().top_fields().find(|f| f.kind() == FieldKind::Text).unwrap().id().to_string();
    server_side.edit(&mut visit, |r| r.set_answer(&FieldRef::top(&f), Answer::Text("王".into()))).unwrap();
    let later = visit.save_after(&before);

    let tablet = Store::open_in_memory().unwrap();
    let li = editor("li");
    let client = SyncClient::default();
    // 1. Changes whose history the tablet lacks cannot land: the cursor goes back to 0.
    let p = client.prepare(&tablet).unwrap();
    let pull = Pull { record: visit.id().to_string(), changes: later.clone() };
    let round = client.absorb(&tablet, &li, p, response(vec![], vec![pull], 10)).unwrap();
    assert!(round.reset);
    assert_eq!(SyncClient::cursor(&tablet).unwrap(), 0);
    assert_eq!(tablet.count().unwrap(), 0);
    // 2. From 0, the whole history comes and the record lands, clean (nothing to push back).
    let p = client.prepare(&tablet).unwrap();
    let pulls = vec![
        Pull { record: visit.id().to_string(), changes: whole.clone() },
    ];
    client.absorb(&tablet, &li, p, response(vec![], pulls, 10)).unwrap();
    let p = client.prepare(&tablet).unwrap();
    let pull = Pull { record: visit.id().to_string(), changes: later };
    let round = client.absorb(&tablet, &li, p, response(vec![], vec![pull], 11)).unwrap();
    assert_eq!((round.pulled.len(), round.reset), (1, false));
    assert_eq!(dirty(&tablet), 0, "pulled changes are not pushed back");
    let got = tablet.load(visit.id(), &li).unwrap();
    assert_eq!(got.answer(&FieldRef::top(&f)).unwrap().answer, Some(Answer::Text("王".into())));
    assert_eq!(SyncClient::cursor(&tablet).unwrap(), 11);
}

/// A district's form, as the relay would deliver it.
fn district_form(version: u32) -> String {
    let json = shidao_core::template::builtin_source("guidance-log").unwrap().replace(r#""id": "guidance-log""#, r#""id": "district-log""#);
    let mut def: serde_json::Value = serde_json::from_str(&json).unwrap();
    def["version"] = version.into();
    shidao_core::Template::from_json("district-log.json", &def.to_string()).unwrap().definition()
}

fn reference_with(forms: &[(&str, u32, Option<String>, bool)]) -> shidao_core::sync::protocol::Reference {
    use shidao_core::sync::protocol::{Reference, TemplateRef, UserInfo};
    Reference {
        version: format!("ref-{}", forms.len()),
        user: UserInfo { id: "wang".into(), name: "王".into(), role: "inspector".into(), device: "d-wang".into() },
        schools: vec![],
        tasks: vec![],
        templates: forms
            .iter()
            .map(|(id, v, hash, retired)| TemplateRef { id: id.to_string(), version: *v, hash: hash.clone(), retired: *retired })
            .collect(),
        indicators: vec![],
    }
}

#[test]
fn forms_are_asked_for_by_hash_checked_and_kept_across_reopening() {
    use shidao_core::sync::protocol::FormDef;
    use shidao_core::template::definition_hash;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tablet.db");
    let store = Store::open(&path).unwrap();
    let me = editor("wang");
    let client = SyncClient::default();
    let (v1, v2) = (district_form(1), district_form(2));
    let (h1, h2) = (definition_hash(&v1), definition_hash(&v2));

    // 1. The reference lists the district's form in two versions (v1 retired) and a built-in:
    //    the device asks for the two it lacks, not for the built-in.
    let p = client.prepare(&store).unwrap();
    assert!(p.request.want_forms.is_empty());
    let mut resp = response(vec![], vec![], 1);
    resp.reference = Some(reference_with(&[
        ("district-log", 1, Some(h1.clone()), true),
        ("district-log", 2, Some(h2.clone()), false),
        ("guidance-log", 1, Some("not-the-same-bytes".into()), false),
    ]));
    let round = client.absorb(&store, &me, p, resp).unwrap();
    assert!(round.more, "another round fetches the forms");
    let p = client.prepare(&store).unwrap();
    assert_eq!(p.request.want_forms, vec![h1.clone(), h2.clone()]);

    // 2. A definition whose bytes do not hash to its name refuses the whole round: nothing is
    //    stored, not even the definition that was right, and the cursor stays.
    let mut resp = response(vec![], vec![], 9);
    resp.forms = vec![FormDef { hash: h1.clone(), definition: v1.clone() }, FormDef { hash: h2.clone(), definition: v1.clone() }];
    let err = client.absorb(&store, &me, p, resp).unwrap_err();
    assert!(err.to_string().contains(&h2) && err.to_string().contains("hashes to"), "{err}");
    assert!(store.template("district-log", Some(1)).is_none());
    assert_eq!(SyncClient::cursor(&store).unwrap(), 1);

    // 3. The right definitions are stored; new records use v2 (v1 is retired); both versions
    //    stay, and a v1 record made elsewhere opens.
    let p = client.prepare(&store).unwrap();
    let mut resp = response(vec![], vec![], 9);
    resp.forms = vec![FormDef { hash: h1.clone(), definition: v1.clone() }, FormDef { hash: h2.clone(), definition: v2.clone() }];
    let round = client.absorb(&store, &me, p, resp).unwrap();
    assert!(round.forms_changed);
    assert!(client.prepare(&store).unwrap().request.want_forms.is_empty());
    assert_eq!(store.template("district-log", None).unwrap().version(), 2);
    let ids: Vec<String> = store.templates().iter().map(|t| format!("{}@{}", t.id(), t.version())).collect();
    assert_eq!(ids, ["district-log@2", "guidance-log@1"]);
    drop(store);

    // 4. Reopened, the store still holds both versions and the programme's choice.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.template("district-log", None).unwrap().version(), 2);
    assert!(store.template("district-log", Some(1)).is_some());
    let expert = Editor { role: Role::Expert, ..me };
    let r = store.create("district-log", &SchoolId::new("s").unwrap(), &expert).unwrap();
    assert_eq!(r.template().version(), 2);
}

/// A refusal by the rule book: the refused changes are set aside, the record goes back to what
/// the relay acknowledged, the answer edit is written again (the submit is not), and it goes in
/// the next round; if the relay refuses exactly those again, they are set aside without being
/// written again, so the record settles. Nothing of what was written is lost.
#[test]
fn a_refusal_by_the_rules_sets_the_changes_aside_and_writes_the_answers_again() {
    let store = Store::open_in_memory().unwrap();
    let me = editor("wang");
    let client = SyncClient::default();
    let mut r = store.create("inspection-visit", &SchoolId::new("s").unwrap(), &me).unwrap();
    shidao_core::sample::fill_completely(&mut r, 1, &mut shidao_core::sample::Rng::new(4)).unwrap();
    store.save(&mut r).unwrap();
    let p = client.prepare(&store).unwrap();
    let ack = result(&p, 0, Outcome::Accepted, None);
    client.absorb(&store, &me, p, response(vec![ack], vec![], 1)).unwrap();
    let acknowledged = r.heads();

    // 1. Offline: an answer, then a submit. The relay refuses the push (say the rules differ).
    let focus = FieldRef::top("visit_focus");
    store.edit(&mut r, |r| r.set_answer(&focus, Answer::Text("离线补充".into()))).unwrap();
    store.edit(&mut r, |r| r.submit()).unwrap();
    let p = client.prepare(&store).unwrap();
    let no = result(&p, 0, Outcome::Refused, Some("not_ready"));
    let round = client.absorb(&store, &me, p, response(vec![no], vec![], 2)).unwrap();
    assert_eq!(round.refused.len(), 1);
    let entry = &round.set_aside[0];
    assert_eq!((entry.code.as_str(), entry.acts.as_slice()), ("not_ready", ["submit".to_string()].as_slice()));
    assert_eq!(entry.fields, ["visit_focus"]);
    assert_eq!(entry.reapplied, ["visit_focus"]);
    assert!(entry.kept_aside().is_empty());
    assert!(round.more, "the answer written again goes in the same sync");
    assert!(SyncClient::refusals(&store).unwrap().is_empty(), "no refusal stands in its way");

    // 2. The record: the relay's state plus the answer written again, still a draft.
    assert!(!store.is_current(&r).unwrap(), "the copy held before is of the old generation");
    let now = store.load(r.id(), &me).unwrap();
    assert_eq!(now.status(), shidao_core::Status::Draft);
    assert_eq!(now.answer(&focus).unwrap().answer, Some(Answer::Text("离线补充".into())));
    let refused_copy = store.set_aside_view(entry.id, &me).unwrap();
    assert_eq!(refused_copy.status, shidao_core::Status::Submitted, "the refused copy keeps the submit");

    // 3. Only the new change goes; refused again, it is set aside once more but not rewritten.
    let p = client.prepare(&store).unwrap();
    assert_eq!(p.request.push.len(), 1);
    let no = result(&p, 0, Outcome::Refused, Some("not_allowed"));
    let round = client.absorb(&store, &me, p, response(vec![no], vec![], 3)).unwrap();
    assert_eq!(round.set_aside.len(), 1);
    assert!(round.set_aside[0].reapplied.is_empty(), "written again only once");
    assert!(!round.more);
    let back = store.load(r.id(), &me).unwrap();
    assert_eq!(back.heads(), acknowledged, "back to what the relay acknowledged");
    assert_eq!(dirty(&store), 0, "nothing waits to be pushed");
    assert_eq!(store.set_asides(Some(r.id())).unwrap().len(), 2, "both refusals are kept");
}
