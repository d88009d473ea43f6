//! The relay killed with SIGKILL at random moments while tablets sync, and restarted: no edit
//! acknowledged to a tablet is missing from the central store, and after a final sync every
//! tablet in scope holds every edit and all copies are identical.

use std::collections::BTreeMap;
use std::time::Duration;

use shidao_core::sample::Rng;
use shidao_core::{Clock, FieldRef, RecordId};
use shidao_tests::invariants::{long_text, text_of};
use shidao_tests::{programme, school, Relay, Tablet};

/// The central store's copy of a record.
fn central(db: &std::path::Path, id: &RecordId) -> Option<shidao_core::Record> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let bytes: Vec<u8> = conn.query_row("SELECT doc FROM documents WHERE record_id = ?1", [id.as_str()], |r| r.get(0)).ok()?;
    let doc = automerge::Automerge::load(&bytes).expect("central doc loads");
    Some(shidao_core::Record::from_doc(doc, shidao_server::sync::template_of, shidao_server::sync::reader(), Clock::system()).expect("record"))
}

#[tokio::test]
async fn relay_killed_mid_sync_loses_no_acknowledged_edit() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let codes = programme(&db);
    let mut relay = Relay::start(env!("CARGO_BIN_EXE_relay").as_ref(), &db);
    let mut tablets = Vec::new();
    for who in ["wang", "li", "zhao"] {
        let code = &codes.iter().find(|(u, _)| u == who).expect("code").1;
        tablets.push(Tablet::enrol(&relay.url, code, &dir.path().join(format!("{who}.db"))).await.expect("enrol"));
    }

    // 1. A shared visit record, and one record of each tablet's own.
    let visit = tablets[0].store.create("inspection-visit", &school("ouhai-a"), &tablets[0].editor).expect("visit");
    let visit_id = visit.id().clone();
    tablets[0].sync().await.expect("first sync");
    let mut own = Vec::new();
    for t in &tablets {
        let template = if t.editor.role == shidao_core::Role::Expert { "guidance-log" } else { "classroom-observation" };
        own.push(t.store.create(template, &school("ouhai-a"), &t.editor).expect("own").id().clone());
        t.sync().await.expect("sync");
    }

    // 2. Rounds of edits and syncs; in most rounds the relay is killed at a random moment.
    let mut rng = Rng::new(2026);
    let mut made: Vec<Vec<(RecordId, String)>> = vec![Vec::new(); tablets.len()];
    let mut acked: Vec<usize> = vec![0; tablets.len()];
    let (mut kills, mut failed_syncs) = (0, 0);
    let rounds = std::env::var("SHIDAO_FAULT_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    for round in 0..rounds {
        for (i, t) in tablets.iter().enumerate() {
            for k in 0..3 + rng.below(4) {
                let id = if k % 2 == 0 { visit_id.clone() } else { own[i].clone() };
                let mut r = t.store.load(&id, &t.editor).expect("load");
                let field = long_text(r.template());
                let token = format!("<{}:{round}:{k}>", t.editor.user);
                t.store.edit(&mut r, |r| r.splice_text(&FieldRef::top(&field), 0, 0, &token)).expect("edit");
                made[i].push((id, token));
            }
        }
        let kill_at = (rng.below(4) > 0).then(|| Duration::from_millis(rng.below(40) as u64));
        if let Some(delay) = kill_at {
            let pid = relay.pid();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
            });
        }
        for (i, t) in tablets.iter().enumerate() {
            match t.sync().await {
                // A complete sync acknowledged every edit made so far on this tablet.
                Ok(s) if s.refused.is_empty() => acked[i] = made[i].len(),
                Ok(s) => panic!("unexpected refusal: {:?}", s.refused),
                Err(_) => failed_syncs += 1,
            }
        }
        if kill_at.is_some() {
            kills += 1;
            std::thread::sleep(Duration::from_millis(60));
            relay.restart();
            for t in &mut tablets {
                t.reconnect(&relay.url);
            }
        }
        // 3. After every round: each acknowledged edit is in the central store.
        for (i, edits) in made.iter().enumerate() {
            for (id, token) in &edits[..acked[i]] {
                let c = central(&db, id).expect("acknowledged record is central");
                assert!(text_of(&c, &long_text(c.template())).contains(token), "round {round}: acknowledged {token} lost");
            }
        }
    }

    // 4. Final syncs: everyone gets everything; every copy of every record is identical.
    for _ in 0..2 {
        for t in &tablets {
            t.sync().await.unwrap_or_else(|e| panic!("final sync: {e}\n{}", relay.log()));
        }
    }
    let mut checked = 0;
    let mut ids: Vec<RecordId> = own.clone();
    ids.push(visit_id.clone());
    for id in &ids {
        let c = central(&db, id).expect("central");
        let field = long_text(c.template());
        let central_text = text_of(&c, &field);
        let mut views = BTreeMap::new();
        for t in &tablets {
            let r = t.store.load(id, &t.editor).expect("on every tablet");
            assert_eq!(text_of(&r, &field), central_text, "tablet {} differs on {id}", t.editor.user);
            views.insert(t.editor.user.to_string(), r.read().answers);
        }
        let first = views.values().next().expect("views").clone();
        assert!(views.values().all(|v| *v == first), "copies of {id} differ");
        for edits in &made {
            for (rid, token) in edits.iter().filter(|(rid, _)| rid == id) {
                assert!(central_text.contains(token.as_str()), "{token} of {rid} missing after the final sync");
                checked += 1;
            }
        }
    }
    println!("fault run: rounds={rounds} kills={kills} failed_syncs={failed_syncs} edits_checked={checked} lost=0");
    assert!(kills > 0, "the relay was never killed");
}
