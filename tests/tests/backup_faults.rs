//! Backups of a relay that serves: taken while tablets sync, they restore every record the
//! relay acknowledged before they began; killed half-way they leave the store whole and no folder
//! that looks complete; a destination that cannot be written, and a backup whose files were
//! changed, fail with a clear error and change nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shidao_core::record::AttachmentRef;
use shidao_core::sample::Rng;
use shidao_core::template::FieldKind;
use shidao_core::{Answer, FieldRef, RecordId};
use shidao_tests::invariants::{central_records, long_text, text_of};
use shidao_tests::{programme, school, Relay, Tablet};

fn relay_bin() -> &'static Path {
    env!("CARGO_BIN_EXE_relay").as_ref()
}

/// `shidao-server --db DB admin ARGS…`: success and what it printed (stdout and stderr).
fn admin(db: &Path, args: &[&str]) -> (bool, String) {
    let Output { status, stdout, stderr } =
        Command::new(relay_bin()).arg("--db").arg(db).arg("admin").args(args).output().expect("run admin");
    (status.success(), format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr)))
}

fn sha256_of(path: &Path) -> String {
    shidao_core::store::content_hash(&std::fs::read(path).unwrap_or_default())
}

/// Every file of the store (database, log, attachments) with its hash: to show nothing changed.
fn store_files(db: &Path) -> Vec<(String, String)> {
    let dir = db.parent().expect("dir");
    let mut out = Vec::new();
    let mut walk = vec![dir.to_path_buf()];
    while let Some(d) = walk.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk.push(p);
            } else if p.to_string_lossy().contains("central") {
                out.push((p.display().to_string(), sha256_of(&p)));
            }
        }
    }
    out.sort();
    out
}

/// A record with `token` in its long text and, for visits, a photo of `photo` random bytes.
fn write_record(t: &Tablet, rng: &mut Rng, token: &str, photo: usize) -> RecordId {
    let template = if photo > 0 { "inspection-visit" } else { "classroom-observation" };
    let mut r = t.store.create(template, &school("ouhai-a"), &t.editor).expect("record");
    let field = long_text(r.template());
    t.store.edit(&mut r, |r| r.splice_text(&FieldRef::top(&field), 0, 0, token)).expect("edit");
    let photo_field = r.template().top_fields().find(|f| f.kind() == FieldKind::Attachment).map(|f| f.id().to_string());
    if let (Some(pf), true) = (photo_field, photo > 0) {
        let bytes: Vec<u8> = (0..photo).map(|_| rng.below(256) as u8).collect();
        let hash = t.store.put_attachment(&bytes, "image/jpeg").expect("photo");
        let a = AttachmentRef { hash, name: "课堂照片.jpg".into(), mime: "image/jpeg".into(), size: bytes.len() as u64 };
        t.store.edit(&mut r, |r| r.set_answer(&FieldRef::top(&pf), Answer::Attachment(a))).expect("attach");
    }
    r.id().clone()
}

/// A store with `records` records of wang's and li's, every fifth a visit with a photo.
async fn filled_store(dir: &Path, records: usize, photo: usize) -> (PathBuf, Relay, Vec<Tablet>) {
    let db = dir.join("central.db");
    let codes = programme(&db);
    let relay = Relay::start(relay_bin(), &db);
    let mut tablets = Vec::new();
    for (i, (_, code)) in codes.iter().take(2).enumerate() {
        tablets.push(Tablet::enrol(&relay.url, code, &dir.join(format!("t{i}.db"))).await.expect("enrol"));
    }
    let mut rng = Rng::new(5);
    for n in 0..records {
        let t = &tablets[n % 2];
        write_record(t, &mut rng, &format!("<{n}>"), if n % 5 == 0 { photo } else { 0 });
        if n % 10 == 9 {
            t.sync().await.expect("sync");
        }
    }
    for t in &tablets {
        t.sync().await.expect("sync");
    }
    (db, relay, tablets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_tablets_sync_restores_every_acknowledged_record() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("central.db");
    let codes = programme(&db);
    let relay = Relay::start(relay_bin(), &db);

    // 1. Three tablets write records (some with photos) and sync, each in a thread of its own;
    //    every record a sync acknowledged goes into `acked` as soon as that sync returns.
    let acked: Arc<Mutex<Vec<(RecordId, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (i, who) in ["wang", "li", "zhao"].into_iter().enumerate() {
        let code = codes.iter().find(|(u, _)| u == who).expect("code").1.clone();
        let tablet = Tablet::enrol(&relay.url, &code, &dir.path().join(format!("{who}.db"))).await.expect("enrol");
        let (acked, stop) = (acked.clone(), stop.clone());
        workers.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let mut rng = Rng::new(40 + i as u64);
            let mut pending = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) || n < 90 {
                for _ in 0..1 + rng.below(3) {
                    let token = format!("<{who}#{n}>");
                    let photo = if n % 7 == 0 && tablet.editor.role != shidao_core::Role::Expert { 20_000 } else { 0 };
                    pending.push((write_record(&tablet, &mut rng, &token, photo), token));
                    n += 1;
                }
                let s = rt.block_on(tablet.sync()).expect("sync");
                assert!(s.refused.is_empty(), "refused {:?}", s.refused);
                acked.lock().expect("acked").append(&mut pending);
                if n >= 400 {
                    break;
                }
            }
            n
        }));
    }

    // 2. Once some records are in, a backup is taken by `admin backup` while the syncs go on.
    while acked.lock().expect("acked").len() < 120 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before: Vec<(RecordId, String)> = acked.lock().expect("acked").clone();
    let dest = dir.path().join("backups").join("first");
    let began = Instant::now();
    let (ok, out) = admin(&db, &["backup", dest.to_str().expect("path")]);
    let took = began.elapsed();
    assert!(ok, "backup failed: {out}");
    let during = acked.lock().expect("acked").len() - before.len();
    stop.store(true, Ordering::SeqCst);
    let made: usize = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    assert!(dest.join("manifest.json").is_file() && !dest.with_file_name("first.partial").exists());

    // 3. A restore while the relay serves the store is refused, and changes nothing.
    let files = store_files(&db);
    let (ok, out) = admin(&db, &["restore", dest.to_str().expect("path")]);
    assert!(!ok && out.contains("a relay") && out.contains("stop it first"), "restore beside a serving relay: {out}");
    drop(relay);
    assert_eq!(store_files(&db), files, "a refused restore changed the live store");

    // 4. Restored into a store of its own: every record acknowledged before the backup began is
    //    there with its edit, every document loads, every photo is there and hashes to its name.
    let restored = dir.path().join("restored").join("central.db");
    std::fs::create_dir_all(restored.parent().expect("dir")).expect("dir");
    let (ok, out) = admin(&restored, &["restore", dest.to_str().expect("path")]);
    assert!(ok, "restore failed: {out}");
    let records = central_records(&restored);
    for (id, token) in &before {
        let r = records.get(id).unwrap_or_else(|| panic!("acknowledged record {id} is not in the backup"));
        assert!(text_of(r, &long_text(r.template())).contains(token.as_str()), "{token} of {id} missing from the backup");
    }
    let conn = rusqlite::Connection::open(&restored).expect("open");
    // The restore is in the restored store's audit log, naming the backup it came from.
    let restore_rows: Vec<String> = conn
        .prepare("SELECT detail FROM audit_log WHERE action = 'store.restore' AND actor = 'console'")
        .expect("q")
        .query_map([], |r| r.get(0))
        .expect("q")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(restore_rows.len() == 1 && restore_rows[0].contains(dest.to_str().expect("path")), "{restore_rows:?}");
    let hashes: Vec<String> =
        conn.prepare("SELECT hash FROM attachments").expect("q").query_map([], |r| r.get(0)).expect("q").collect::<Result<_, _>>().expect("rows");
    let files_dir = shidao_server::backup::attachments_dir_of(&restored);
    for h in &hashes {
        assert_eq!(&sha256_of(&files_dir.join(h)), h, "restored photo {h}");
    }
    assert!(!hashes.is_empty(), "no photo reached the backup");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dest.join("manifest.json")).expect("manifest")).expect("json");
    assert_eq!(manifest["records"].as_u64(), Some(records.len() as u64));
    assert_eq!(manifest["attachments"].as_u64(), Some(hashes.len() as u64));
    println!(
        "backup while syncing: records_made={made} acked_before={} acked_during={during} in_backup={} photos={} backup_ms={}",
        before.len(),
        records.len(),
        hashes.len(),
        took.as_millis()
    );
}

/// SIGKILLs `admin backup DEST` after `delay`; whether it had finished first.
fn killed_backup(db: &Path, dest: &Path, delay: Duration) -> bool {
    let mut child = Command::new(relay_bin()).arg("--db").arg(db).args(["admin", "backup"]).arg(dest).spawn().expect("start backup");
    std::thread::sleep(delay);
    let finished = matches!(child.try_wait(), Ok(Some(_)));
    let _ = child.kill();
    let _ = child.wait();
    finished
}

/// Only complete backups (that verify) and `.partial` folders are in `dir`; returns how many of
/// each.
fn only_whole_or_partial(db: &Path, dir: &Path) -> (usize, usize) {
    let (mut whole, mut partial) = (0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.to_string_lossy().ends_with(".partial") {
            partial += 1;
        } else {
            let (ok, out) = admin(db, &["verify-backup", p.to_str().expect("path")]);
            if !ok && !p.exists() {
                continue; // an old backup the relay removed meanwhile
            }
            assert!(ok, "{} looks complete but does not verify: {out}", p.display());
            whole += 1;
        }
    }
    (whole, partial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_half_way_leaves_the_store_whole_and_nothing_that_looks_complete() {
    let dir = tempfile::tempdir().expect("dir");
    let (db, mut relay, tablets) = filled_store(dir.path(), 160, 400_000).await;

    // 1. How long a whole backup takes; then backups SIGKILLed at moments within that.
    let probe = dir.path().join("probe");
    let began = Instant::now();
    let (ok, out) = admin(&db, &["backup", probe.to_str().expect("path")]);
    assert!(ok, "{out}");
    let whole_ms = began.elapsed().as_millis() as u64;
    std::fs::remove_dir_all(&probe).expect("remove");
    let backups = dir.path().join("killed");
    std::fs::create_dir_all(&backups).expect("dir");
    let mut rng = Rng::new(11);
    let mut cut = 0;
    for round in 0..6 {
        let dest = backups.join(format!("b{round}"));
        let delay = Duration::from_millis(whole_ms / 5 + rng.below(whole_ms as usize * 3 / 5) as u64);
        if !killed_backup(&db, &dest, delay) {
            cut += 1;
        }
        // What the kill left: the folder complete (and whole), or only a `.partial` one.
        if dest.exists() {
            let (ok, out) = admin(&db, &["verify-backup", dest.to_str().expect("path")]);
            assert!(ok, "{} looks complete but does not verify: {out}", dest.display());
        }
        only_whole_or_partial(&db, &backups);
        // The store is whole and the relay goes on.
        let ok: String = rusqlite::Connection::open(&db).expect("open").query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
        assert_eq!(ok, "ok");
        tablets[0].sync().await.expect("sync after a killed backup");
        // The same backup taken again removes what the killed one left and completes.
        if !dest.exists() {
            let (ok, out) = admin(&db, &["backup", dest.to_str().expect("path")]);
            assert!(ok, "{out}");
            assert!(!backups.join(format!("b{round}.partial")).exists(), "the next backup left the partial folder");
        }
    }
    assert!(cut > 0, "no backup was killed before it finished (a whole one takes {whole_ms} ms)");

    // 2. The relay itself, taking backups every second, SIGKILLed at random moments.
    let sched = dir.path().join("scheduled");
    let args = ["--backup-dir", sched.to_str().expect("path"), "--backup-every", "1s", "--backup-keep", "3"];
    drop(relay);
    relay = Relay::start_with(relay_bin(), &db, &args);
    let mut seen_partial = 0;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(900 + rng.below(whole_ms as usize + 200) as u64));
        relay.kill();
        let (_, partial) = only_whole_or_partial(&db, &sched);
        seen_partial += partial;
        let ok: String = rusqlite::Connection::open(&db).expect("open").query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
        assert_eq!(ok, "ok", "the store after the relay was killed mid-backup");
        relay = Relay::start_with(relay_bin(), &db, &args);
    }
    // Left running, the next backups clean up and keep three.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (whole, partial) = only_whole_or_partial(&db, &sched);
        if whole == 3 && partial == 0 && relay.log().matches("backup complete").count() >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "scheduled backups never settled at 3 complete, 0 partial:\n{}", relay.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut t = tablets.into_iter().next().expect("tablet");
    t.reconnect(&relay.url);
    t.sync().await.expect("sync after the kills");
    println!("backup killed: whole_backup_ms={whole_ms} admin_kills=6 cut_before_done={cut} relay_kills=5 partial_left_by_relay_kills={seen_partial}");
}

/// A tmpfs of `size` at `path` (the test needs root, as the disk-full fault test does).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).expect("mount point");
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).status().is_ok_and(|s| s.success());
        assert!(ok, "this test mounts a small tmpfs and needs root (mount -t tmpfs); run the suite as root");
        SmallDisk(path.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_or_full_destinations_and_tampered_backups_fail_clearly_and_change_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let (db, relay, tablets) = filled_store(dir.path(), 40, 300_000).await;

    // 1. A destination under a regular file: a clear error naming it, nothing left.
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").expect("file");
    let dest = blocker.join("b1");
    let (ok, out) = admin(&db, &["backup", dest.to_str().expect("path")]);
    assert!(!ok && out.contains("cannot create the backup folder") && out.contains("not-a-folder"), "{out}");

    // 2. A disk too small for the backup: "the disk is full", no folder left behind.
    let disk = SmallDisk::mount(&dir.path().join("small"), "1m");
    let dest = disk.0.join("b2");
    let (ok, out) = admin(&db, &["backup", dest.to_str().expect("path")]);
    assert!(!ok && out.contains("disk is full"), "{out}");
    assert_eq!(std::fs::read_dir(&disk.0).expect("list").count(), 0, "a failed backup left something on the small disk");
    drop(disk);

    // 3. The relay with a backup folder it cannot write: it logs why and goes on serving.
    drop(relay);
    let bad = blocker.join("scheduled");
    let mut relay = Relay::start_with(relay_bin(), &db, &["--backup-dir", bad.to_str().expect("path"), "--backup-every", "1s"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !relay.log().contains("backup failed") {
        assert!(Instant::now() < deadline, "no backup failure logged:\n{}", relay.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(relay.log().contains("not-a-folder"), "the log names the folder:\n{}", relay.log());
    // A second relay on the same store is refused while this one serves.
    let second = Command::new(relay_bin()).arg("--db").arg(&db).args(["serve", "--listen", "127.0.0.1:0"]).output().expect("second relay");
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success() && said.contains("cannot serve: a relay (or a restore) is using"), "{said}");
    let mut t = tablets.into_iter().next().expect("tablet");
    t.reconnect(&relay.url);
    let mut rng = Rng::new(9);
    write_record(&t, &mut rng, "<after-failed-backup>", 0);
    t.sync().await.expect("the relay serves after a failed backup");
    relay.kill();

    // 4. A good backup, then copies of it with one thing changed: each refused by name, the
    //    live store unchanged.
    let good = dir.path().join("good");
    let (ok, out) = admin(&db, &["backup", good.to_str().expect("path")]);
    assert!(ok, "{out}");
    let photo = std::fs::read_dir(good.join("attachments")).expect("files").flatten().next().expect("a photo").file_name();
    let photo = photo.to_string_lossy().to_string();
    let files = store_files(&db);
    type Tamper = fn(&Path, &str);
    let cases: [(&str, Tamper, &str); 5] = [
        ("photo-flipped", |b, p| flip(&b.join("attachments").join(p)), "is damaged"),
        ("photo-missing", |b, p| std::fs::remove_file(b.join("attachments").join(p)).expect("rm"), "is missing from the backup"),
        ("db-flipped", |b, _| flip(&b.join("store.db")), "does not match the manifest"),
        ("manifest-records", |b, _| edit_manifest(b, "records", 1), "the manifest says"),
        ("manifest-missing", |b, _| std::fs::remove_file(b.join("manifest.json")).expect("rm"), "cannot read the manifest"),
    ];
    for (name, tamper, says) in cases {
        let copy = dir.path().join(name);
        copy_dir(&good, &copy);
        tamper(&copy, &photo);
        let (ok, out) = admin(&db, &["restore", copy.to_str().expect("path")]);
        assert!(!ok && out.contains(says) && out.contains(name), "{name}: {out}");
        assert_eq!(store_files(&db), files, "{name}: a refused restore changed the live store");
    }

    // 5. The untouched backup restores over the live store; the old one is kept beside it.
    let (ok, out) = admin(&db, &["restore", good.to_str().expect("path")]);
    assert!(ok && out.contains("kept as"), "{out}");
    let records = central_records(&db);
    assert!(records.values().any(|r| text_of(r, &long_text(r.template())).contains("<after-failed-backup>")));
    let relay = Relay::start(relay_bin(), &db);
    t.reconnect(&relay.url);
    t.sync().await.expect("sync with the restored store");
}

fn flip(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(path, bytes).expect("write");
}

fn edit_manifest(backup: &Path, key: &str, delta: u64) {
    let path = backup.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    m[key] = (m[key].as_u64().expect("number") + delta).into();
    std::fs::write(&path, m.to_string()).expect("write");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}
