//! Fault injection on loopback: a hostile network, a relay killed during a sync storm, a tablet
//! process killed mid-burst, a disk filling up under the relay, tablet clocks hours apart. After
//! each run the invariant checker (`shidao_tests::invariants`) proves that no acknowledged edit
//! was lost and that all copies converge.
//!
//! The default runs are short (they are part of the test command); the soak is the same tests
//! with more rounds, see docs/reliability.md:
//! `SHIDAO_FAULT_ROUNDS=60 cargo test --release -p shidao-tests --test faults -- --nocapture`

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shidao_core::sample::Rng;
use shidao_core::store::StoreOptions;
use shidao_core::sync::http::{DriverError, RetryPolicy};
use shidao_core::template::FieldKind;
use shidao_core::{Clock, FieldRef, RecordId, Role};
use shidao_tests::invariants::{self, long_text, DeviceView, Ledger};
use shidao_tests::proxy::{Faults, Proxy};
use shidao_tests::{programme, school, Relay, Tablet};

fn rounds(default: usize) -> usize {
    std::env::var("SHIDAO_FAULT_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// A further enrolment code for `user` (a second tablet of the same person).
fn code_for(db: &Path, user: &str) -> String {
    let conn = shidao_server::db::open(db).expect("central store");
    shidao_server::accounts::new_enrol_code(&conn, user, Clock::system().now()).expect("code")
}

fn relay_bin() -> &'static Path {
    env!("CARGO_BIN_EXE_relay").as_ref()
}

/// One tablet of the storm: who, which schools it sees, its clock offset, and what it edits.
struct Member {
    name: String,
    tablet: Tablet,
    schools: BTreeSet<String>,
    records: Vec<(RecordId, String)>,
}

/// Splices a unique token into a record's long text; returns it.
fn edit(m: &Member, id: &RecordId, field: &str, n: usize) -> String {
    let mut r = m.tablet.store.load(id, &m.tablet.editor).expect("load");
    let token = format!("<{}#{n}>", m.name);
    m.tablet.store.edit(&mut r, |r| r.splice_text(&FieldRef::top(field), 0, 0, &token)).expect("edit");
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_storm_through_a_hostile_network_with_relay_kills_and_skewed_clocks() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let mut codes = programme(&db);
    // Second tablets for wang and chen: the same person on two devices.
    codes.push(("wang".into(), code_for(&db, "wang")));
    codes.push(("chen".into(), code_for(&db, "chen")));
    let mut relay = Relay::start(relay_bin(), &db);
    let proxy = Proxy::start(&relay.url, Faults::NONE, 7).await;

    // 1. Seven tablets through the proxy, their clocks up to 30 hours apart.
    let offsets = [0i64, -6 * 3600, 5 * 3600, 26 * 3600, -30 * 3600, 3600, 0];
    let mut members = Vec::new();
    for (i, (user, code)) in codes.iter().enumerate() {
        let opts = StoreOptions { clock: Clock::skewed(offsets[i % offsets.len()]), ..StoreOptions::default() };
        let path = dir.path().join(format!("tablet-{i}.db"));
        let mut tablet = Tablet::enrol_full(&proxy.url, code, &path, None, opts).await.expect("enrol");
        tablet.http.policy = RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(300),
            timeout: Duration::from_secs(20),
        };
        let schools: BTreeSet<String> = match user.as_str() {
            "chen" => ["ouhai-b".to_string()].into(),
            "sup" => ["ouhai-a".to_string(), "ouhai-b".to_string()].into(),
            _ => ["ouhai-a".to_string()].into(),
        };
        members.push(Member { name: format!("{user}-{i}"), tablet, schools, records: Vec::new() });
    }

    // 2. Shared visits in both schools, and an own record for every tablet that writes.
    let mut shared = Vec::new();
    for (creator, s) in [(0usize, "ouhai-a"), (3, "ouhai-b")] {
        let m = &members[creator];
        let v = m.tablet.store.create("inspection-visit", &school(s), &m.tablet.editor).expect("visit");
        shared.push((v.id().clone(), long_text(v.template()), s.to_string()));
        m.tablet.sync().await.expect("first sync");
    }
    for m in members.iter_mut() {
        if m.tablet.editor.role == Role::Supervisor {
            continue;
        }
        let s = m.schools.iter().next().expect("school").clone();
        let template = if m.tablet.editor.role == Role::Expert { "guidance-log" } else { "classroom-observation" };
        let r = m.tablet.store.create(template, &school(&s), &m.tablet.editor).expect("own record");
        m.records.push((r.id().clone(), long_text(r.template())));
        for (id, field, sh) in &shared {
            if sh == &s {
                m.records.push((id.clone(), field.clone()));
            }
        }
    }
    for m in &members {
        m.tablet.sync().await.expect("setup sync");
    }

    // 3. The storm: every tablet edits and syncs in its own thread through a hostile network,
    //    while the relay is killed with SIGKILL at random moments and restarted.
    proxy.set_faults(Faults::hostile());
    let rounds = rounds(16);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (i, m) in members.into_iter().enumerate() {
        workers.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let mut rng = Rng::new(100 + i as u64);
            let mut ledger = Ledger::default();
            let mut failed = 0usize;
            for _ in 0..rounds {
                for _ in 0..if m.records.is_empty() { 0 } else { 1 + rng.below(4) } {
                    let (id, field) = m.records[rng.below(m.records.len())].clone();
                    let n = ledger.count_of(&m.name);
                    let token = edit(&m, &id, &field, n);
                    ledger.made(&m.name, &id, &field, token);
                }
                let upto = ledger.count_of(&m.name);
                match rt.block_on(m.tablet.sync()) {
                    Ok(s) => {
                        assert!(s.refused.is_empty(), "{}: refused {:?}", m.name, s.refused);
                        ledger.ack(&m.name, upto);
                    }
                    Err(DriverError::Network(_) | DriverError::Server { .. }) => failed += 1,
                    Err(e) => panic!("{}: a sync failed in a way a retry cannot mend: {e}", m.name),
                }
                std::thread::sleep(Duration::from_millis(rng.below(60) as u64));
            }
            (m, ledger, failed)
        }));
    }
    let proxy = Arc::new(proxy);
    let killer = {
        let (stop, proxy) = (stop.clone(), proxy.clone());
        tokio::task::spawn_blocking(move || {
            let mut rng = Rng::new(99);
            let mut kills = 0;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(300 + rng.below(900) as u64));
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                // SIGKILL, then a new process on the same store; the proxy follows it to its port.
                relay.restart();
                proxy.set_upstream(&relay.url);
                kills += 1;
            }
            (relay, kills)
        })
    };
    let mut ledger = Ledger::default();
    let mut members = Vec::new();
    let mut failed = 0;
    for w in workers {
        let (m, l, f) = tokio::task::spawn_blocking(move || w.join().expect("tablet thread")).await.expect("join");
        members.push(m);
        ledger.merge(l);
        failed += f;
    }
    stop.store(true, Ordering::SeqCst);
    let (relay, kills) = killer.await.expect("killer");

    // 4. Every edit acknowledged to any tablet is in the central store.
    let acked = invariants::acknowledged_are_central(&db, &ledger);

    // 5. A final sync on a calm network; then every edit is everywhere in scope, every copy the same.
    proxy.set_faults(Faults::NONE);
    for _ in 0..2 {
        for m in &members {
            m.tablet.sync().await.unwrap_or_else(|e| panic!("final sync of {}: {e}\n{}", m.name, relay.log()));
        }
    }
    let views: Vec<DeviceView<'_>> = members
        .iter()
        .map(|m| DeviceView { name: m.name.clone(), store: &m.tablet.store, editor: &m.tablet.editor, schools: m.schools.clone() })
        .collect();
    let c = invariants::converged(&db, &views, &ledger);
    println!(
        "faults storm: tablets={} rounds={rounds} edits={} acked_checked={acked} relay_kills={kills} failed_syncs={failed} {} records={} copies_checked={} edits_checked={} lost=0",
        members.len(),
        ledger.edits.len(),
        proxy.stats().line(),
        c.records,
        c.copies,
        c.edits_checked
    );
    assert!(kills > 0, "the relay was never killed");
    assert!(proxy.stats().faults() > 0, "the proxy injected no fault");
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablet_process_killed_mid_burst_keeps_every_durable_edit() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let codes = programme(&db);
    let relay = Relay::start(relay_bin(), &db);
    let proxy = Proxy::start(&relay.url, Faults::hostile(), 11).await;
    let path = dir.path().join("wang.db");
    let tablet = Tablet::enrol(&proxy.url, &codes[0].1, &path).await.expect("enrol");

    // 1. A record on the tablet, known to the server.
    let r = tablet.store.create("classroom-observation", &school("ouhai-a"), &tablet.editor).expect("record");
    let (id, field) = (r.id().clone(), long_text(r.template()));
    drop(r);
    proxy.set_faults(Faults::NONE);
    tablet.sync().await.expect("first sync");
    proxy.set_faults(Faults::hostile());

    // 2. The tablet's app, a process of its own, edits in a burst and is killed at a random moment.
    let mut rng = Rng::new(5);
    let mut ledger = Ledger::default();
    let kills = rounds(3);
    for k in 0..kills {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tablet"))
            .args([path.to_str().expect("path"), &proxy.url, &tablet.token])
            .args([tablet.editor.user.as_str(), tablet.editor.device.as_str(), tablet.editor.role.as_str()])
            .args([id.as_str(), &field])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tablet process");
        std::thread::sleep(Duration::from_millis(400 + rng.below(1200) as u64));
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        let lines: Vec<String> = BufReader::new(child.stdout.take().expect("stdout")).lines().map_while(Result::ok).collect();
        let before = ledger.count_of("wang");
        for line in &lines {
            if let Some(token) = line.strip_prefix("edited ") {
                ledger.made("wang", &id, &field, token.to_string());
            } else if let Some(n) = line.strip_prefix("synced ") {
                ledger.ack("wang", before + n.parse::<usize>().expect("count"));
            }
        }
        assert!(ledger.count_of("wang") > before, "kill {k}: the tablet made no edit before it was killed");

        // 3. Every edit it reported durable is in its store when the app starts again.
        let again = tablet.store.load(&id, &tablet.editor).expect("reopen");
        let text = invariants::text_of(&again, &field);
        for e in &ledger.edits {
            assert!(text.contains(&e.token), "kill {k}: durable edit {} lost on the tablet", e.token);
        }
        // 4. What the server acknowledged is central.
        invariants::acknowledged_are_central(&db, &ledger);
    }

    // 5. The restarted app syncs; everything is central and identical.
    proxy.set_faults(Faults::NONE);
    tablet.sync().await.expect("final sync");
    let views = [DeviceView { name: "wang".into(), store: &tablet.store, editor: &tablet.editor, schools: ["ouhai-a".to_string()].into() }];
    let c = invariants::converged(&db, &views, &ledger);
    println!(
        "faults tablet-kill: kills={kills} edits={} acked={} edits_checked={} {} lost=0",
        ledger.edits.len(),
        ledger.acked(),
        c.edits_checked,
        proxy.stats().line()
    );
    drop(relay);
}

/// A small tmpfs the test mounts for the relay's files; unmounted on drop.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).ok()?;
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).status().ok()?.success();
        ok.then(|| SmallDisk { path: path.to_path_buf() })
    }
    fn resize(&self, size: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.path).status().expect("remount");
        assert!(ok.success(), "remount {size}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_under_the_relay_fails_cleanly_and_recovers() {
    let dir = tempfile::tempdir().expect("dir");
    // 1. The relay's store and attachments on a 6 MB disk of their own (its log elsewhere).
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk"), "6m") else {
        panic!("this test mounts a small tmpfs and needs root (mount -t tmpfs); run the suite as root");
    };
    let db = disk.path.join("central.db");
    let codes = programme(&db);
    let relay = Relay::start_logging(relay_bin(), &db, &[], &dir.path().join("relay.log"));
    let mut tablets = Vec::new();
    for (i, (_, code)) in codes.iter().take(2).enumerate() {
        tablets.push(Tablet::enrol(&relay.url, code, &dir.path().join(format!("t{i}.db"))).await.expect("enrol"));
    }

    // 2. Tablets write observations with photos until the disk is full and a sync fails.
    let mut ledger = Ledger::default();
    let mut rng = Rng::new(3);
    let mut full = None;
    let mut records = Vec::new();
    for round in 0..400 {
        let t = &tablets[round % 2];
        let name = t.editor.user.to_string();
        let mut r = t.store.create("inspection-visit", &school("ouhai-a"), &t.editor).expect("record");
        let field = long_text(r.template());
        let photo_field =
            r.template().top_fields().find(|f| f.kind() == FieldKind::Attachment).map(|f| f.id().to_string());
        let token = format!("<{name}#{round}>");
        t.store.edit(&mut r, |r| r.splice_text(&FieldRef::top(&field), 0, 0, &token)).expect("edit");
        if let Some(pf) = photo_field {
            let bytes: Vec<u8> = (0..120_000).map(|_| rng.below(256) as u8).collect();
            let hash = t.store.put_attachment(&bytes, "image/jpeg").expect("photo");
            t.store
                .edit(&mut r, |r| {
                    r.set_answer(&FieldRef::top(&pf), shidao_core::Answer::Attachment(shidao_core::record::AttachmentRef {
                        hash: hash.clone(),
                        name: "课堂照片.jpg".into(),
                        mime: "image/jpeg".into(),
                        size: bytes.len() as u64,
                    }))
                })
                .expect("attach");
        }
        ledger.made(&name, r.id(), &field, token);
        records.push(r.id().clone());
        let upto = ledger.count_of(&name);
        match t.sync().await {
            Ok(s) => {
                assert!(s.refused.is_empty(), "refused {:?}", s.refused);
                ledger.ack(&name, upto);
            }
            Err(e) => {
                full = Some(e.to_string());
                break;
            }
        }
    }
    let full = full.expect("the disk never filled up");
    assert!(full.contains("503") || full.contains("disk is full"), "a full disk should be a clear 503 storage_full, got: {full}");

    // 3. The relay is still up, its store intact, every acknowledged edit in it; the tablets
    //    keep every edit.
    let health = reqwest::get(format!("{}/healthz", relay.url)).await.expect("healthz");
    assert!(health.status().is_success() || health.status().as_u16() == 503, "relay unreachable when the disk is full");
    let acked = invariants::acknowledged_are_central(&db, &ledger);

    // 4. Room again: the same syncs succeed without a restart; everything converges.
    disk.resize("256m");
    for _ in 0..2 {
        for t in &tablets {
            t.sync().await.unwrap_or_else(|e| panic!("sync after the disk was freed: {e}\n{}", relay.log()));
        }
    }
    let views: Vec<DeviceView<'_>> = tablets
        .iter()
        .map(|t| DeviceView { name: t.editor.user.to_string(), store: &t.store, editor: &t.editor, schools: ["ouhai-a".to_string()].into() })
        .collect();
    let c = invariants::converged(&db, &views, &ledger);
    println!(
        "faults disk-full: records={} acked_before_full={acked} edits_checked={} lost=0 error=\"{full}\"",
        records.len(),
        c.edits_checked
    );
    drop(relay);
}
