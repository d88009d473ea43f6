//! The device store encrypted at rest: nothing readable in any file without the key, a wrong key
//! refused with the file untouched, rekey and the encryption of a plain store without losing a
//! record (also when the process is killed in the middle), salvage of an encrypted file.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use shidao_core::record::Answer;
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::store::{content_hash, Store, StoreError, StoreKey};
use shidao_core::template::FieldKind;
use shidao_core::{DeviceId, Editor, FieldRef, RecordId, Role, SchoolId, UserId};

const TEACHER: &str = "Teacher Zhang Minghui 张明辉老师";
const ANSWER: &str = "MARKER-ANSWER the lesson ran over by twelve minutes 课堂超时十二分钟";
const INSPECTOR: &str = "inspector-liu-marker";
const SCHOOL: &str = "school-marker-77";

fn editor(user: &str) -> Editor {
    Editor { user: UserId::new(user).unwrap(), device: DeviceId::new(format!("dev-{user}")).unwrap(), role: Role::Inspector }
}

fn key(byte: u8) -> StoreKey {
    StoreKey::from([byte; 32])
}

/// Bytes no compressor or page layout would produce by chance: a marker photo.
fn photo() -> Vec<u8> {
    let mut out = b"MARKER-PHOTO\xff\xd8\xff\xe0".to_vec();
    let mut rng = Rng::new(42);
    out.extend((0..30_000).map(|_| rng.below(256) as u8));
    out
}

/// Every file in `dir` (the store, its WAL and shared-memory files, anything else written).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    out.sort();
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Which markers appear in the raw bytes of any file in `dir`, and the files that were looked at.
fn markers_found(dir: &Path) -> (BTreeSet<&'static str>, Vec<String>) {
    let photo = photo();
    let markers: [(&str, Vec<u8>); 5] = [
        ("answer", ANSWER.as_bytes().to_vec()),
        ("teacher", TEACHER.as_bytes().to_vec()),
        ("inspector", INSPECTOR.as_bytes().to_vec()),
        ("school", SCHOOL.as_bytes().to_vec()),
        // A stretch from the middle of the photo, and the start of it.
        ("photo", photo[10_000..10_064].to_vec()),
    ];
    let mut found = BTreeSet::new();
    let mut looked = Vec::new();
    for f in files_in(dir) {
        let bytes = std::fs::read(&f).unwrap();
        looked.push(format!("{}={}B", f.file_name().unwrap().to_string_lossy(), bytes.len()));
        for (name, m) in &markers {
            if contains(&bytes, m) || (*name == "photo" && contains(&bytes, &photo[..16])) {
                found.insert(*name);
            }
        }
    }
    (found, looked)
}

/// A store with an observation naming a teacher, an answer, an edit history and a photo. The
/// store stays open (its WAL holds the latest pages) while the caller looks at the files.
fn fill(store: &Store) -> RecordId {
    let who = editor(INSPECTOR);
    let mut r = store.create("classroom-observation", &SchoolId::new(SCHOOL).unwrap(), &who).unwrap();
    store.edit(&mut r, |r| r.set_answer(&FieldRef::top("teacher_name"), Answer::Text(TEACHER.into()))).unwrap();
    store.edit(&mut r, |r| r.set_answer(&FieldRef::top("e_goal"), Answer::LongText(ANSWER.into()))).unwrap();
    let hash = store.put_attachment(&photo(), "image/jpeg").unwrap();
    assert_eq!(hash, content_hash(&photo()), "an attachment is named by the hash of its plain bytes");
    r.id().clone()
}

#[test]
fn no_answer_name_or_photo_is_readable_in_any_file_without_the_key() {
    // Plain: the markers are there to find (so this test can fail).
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = Store::open(plain_dir.path().join("device.db")).unwrap();
    fill(&plain);
    let (found, looked) = markers_found(plain_dir.path());
    assert_eq!(found, ["answer", "inspector", "photo", "school", "teacher"].into(), "plain store, files {looked:?}");
    drop(plain);

    // Encrypted: none of them in the store, its WAL or any other file in the folder.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let store = Store::open_encrypted(&path, &key(7)).unwrap();
    assert!(store.is_encrypted());
    let id = fill(&store);
    let (found, looked) = markers_found(dir.path());
    assert!(looked.iter().any(|f| f.starts_with("device.db-wal=")), "the WAL is looked at too: {looked:?}");
    assert!(found.is_empty(), "readable without the key: {found:?} in {looked:?}");
    assert!(!std::fs::read(&path).unwrap().starts_with(b"SQLite format 3"), "the file is not plain SQLite");
    drop(store);
    let (found, looked) = markers_found(dir.path());
    assert!(found.is_empty(), "readable without the key after closing: {found:?} in {looked:?}");

    // And everything is there with the key.
    let store = Store::open_encrypted(&path, &key(7)).unwrap();
    let r = store.load(&id, &editor(INSPECTOR)).unwrap();
    assert_eq!(r.answer(&FieldRef::top("teacher_name")).unwrap().answer, Some(Answer::Text(TEACHER.into())));
    assert_eq!(store.attachment(&content_hash(&photo())).unwrap().0, photo());
}

fn digest_of(dir: &Path) -> Vec<(PathBuf, String)> {
    files_in(dir).into_iter().map(|f| (f.clone(), content_hash(&std::fs::read(&f).unwrap()))).collect()
}

#[test]
fn a_wrong_key_is_refused_and_the_file_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let id = {
        let store = Store::open_encrypted(&path, &key(1)).unwrap();
        fill(&store)
    };
    let before = digest_of(dir.path());
    let err = Store::open_encrypted(&path, &key(2)).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey(ref p) if p == &path), "{err}");
    assert!(err.to_string().contains("does not open with this key"), "{err}");
    assert!(!err.to_string().contains("0202"), "the key is not in the message: {err}");
    assert_eq!(digest_of(dir.path()), before, "a wrong key changed a file");
    let store = Store::open_encrypted(&path, &key(1)).unwrap();
    assert!(store.contains(&id).unwrap());
    assert!(!format!("{store:?}").contains("0101"), "{store:?}");
}

/// Every record id with its full bytes, and every attachment hash: what must survive.
fn contents(store: &Store) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let mut records: Vec<(String, Vec<u8>)> = store
        .list(&Default::default())
        .unwrap()
        .into_iter()
        .map(|s| {
            let (bytes, _) = store.changes_since(&s.id, Some(&[])).unwrap();
            (s.id.to_string(), bytes)
        })
        .collect();
    records.sort();
    let mut files = store.attachments_to_upload().unwrap();
    files.sort();
    (records, files)
}

fn fill_many(store: &Store, n: usize) {
    let who = Editor { role: Role::Expert, ..editor("expert-zhou") };
    for i in 0..n {
        let mut r = store.create("guidance-log", &SchoolId::new(SCHOOL).unwrap(), &who).unwrap();
        store.edit(&mut r, |r| fill_completely(r, 1, &mut Rng::new(i as u64))).unwrap();
    }
}

#[test]
fn rekey_and_encrypting_a_plain_store_keep_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let expected = {
        let store = Store::open(&path).unwrap();
        fill(&store);
        fill_many(&store, 30);
        contents(&store)
    };
    assert!(std::fs::read(&path).unwrap().starts_with(b"SQLite format 3\0"));

    // A plain store is encrypted in place on its first open with a key.
    let mut store = Store::open_encrypted(&path, &key(3)).unwrap();
    assert_eq!(contents(&store), expected);
    assert!(!std::fs::read(&path).unwrap().starts_with(b"SQLite format 3"));
    let (found, looked) = markers_found(dir.path());
    assert!(found.is_empty(), "readable after encrypting the plain store: {found:?} in {looked:?}");

    // Rekey: the old key no longer opens it, the new one does, every record there.
    store.rekey(&key(4)).unwrap();
    assert_eq!(contents(&store), expected, "the rekeyed store, still open");
    fill_many(&store, 1);
    let expected = contents(&store);
    drop(store);
    assert!(matches!(Store::open_encrypted(&path, &key(3)), Err(StoreError::WrongKey(_))));
    let store = Store::open_encrypted(&path, &key(4)).unwrap();
    assert_eq!(contents(&store), expected);
    drop(store);
    let names: Vec<String> = files_in(dir.path()).iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.contains(".rewrite")), "a rewrite file was left: {names:?}");

    // Rekey needs the only connection: with a second store open on the file, nothing changes.
    let mut store = Store::open_encrypted(&path, &key(4)).unwrap();
    let other = Store::open_encrypted(&path, &key(4)).unwrap();
    assert!(store.rekey(&key(5)).is_err());
    assert_eq!(contents(&store), expected);
    drop(other);
    drop(store);
    assert_eq!(contents(&Store::open_encrypted(&path, &key(4)).unwrap()), expected);
}

#[test]
fn a_damaged_encrypted_store_is_moved_aside_and_salvaged_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let ids: Vec<RecordId> = {
        let store = Store::open_encrypted(&path, &key(9)).unwrap();
        fill_many(&store, 20);
        store.list(&Default::default()).unwrap().into_iter().map(|s| s.id).collect()
    };
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 2..len / 2 + 4096] {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();

    let err = Store::open_encrypted(&path, &key(9)).unwrap_err();
    let StoreError::Corrupt { moved_to, .. } = &err else { panic!("expected Corrupt, got {err}") };
    assert!(moved_to.exists() && !path.exists());

    let store = Store::open_encrypted(&path, &key(9)).unwrap();
    assert_eq!(store.count().unwrap(), 0);
    assert!(matches!(store.salvage_with_key(moved_to, &key(8), &editor(INSPECTOR)), Err(StoreError::WrongKey(_))));
    let report = store.salvage(moved_to, &editor(INSPECTOR)).unwrap();
    assert!(!report.recovered.is_empty(), "nothing salvaged: {report:?}");
    for id in &report.recovered {
        assert!(ids.contains(id), "salvaged a record that was never there: {id}");
    }
    let again = store.salvage_with_key(moved_to, &key(9), &editor(INSPECTOR)).unwrap();
    assert_eq!(again.recovered, report.recovered);
}

/// The child half of the killed-rewrite test: opens the store with key 0x11 (encrypting it if it
/// is plain), then rekeys it back and forth between 0x22 and 0x11, printing each key once the
/// store is under it.
fn rewrite_child(path: &str) {
    let out = std::io::stdout();
    let say = |line: &str| {
        let mut o = out.lock();
        writeln!(o, "{line}").unwrap();
        o.flush().unwrap();
    };
    let mut store = Store::open_encrypted(path, &key(0x11)).unwrap();
    say("key 11");
    for k in [0x22u8, 0x11].iter().cycle() {
        store.rekey(&key(*k)).unwrap();
        say(&format!("key {k:02x}"));
    }
}

#[test]
fn a_process_killed_while_encrypting_or_rekeying_loses_no_record() {
    if let Ok(path) = std::env::var("SHIDAO_REWRITE_DB") {
        rewrite_child(&path);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // One plain store, copied fresh for every round.
    let original = dir.path().join("original.db");
    let expected = {
        let store = Store::open(&original).unwrap();
        fill(&store);
        fill_many(&store, 150);
        for i in 0..4u8 {
            store.put_attachment(&vec![i; 1_000_000], "image/jpeg").unwrap();
        }
        contents(&store)
    };
    let mut rng = Rng::new(17);
    let (mut before_encrypted, mut after_encrypted, mut mid_rewrite) = (0, 0, 0);
    for round in 0..10 {
        let path = dir.path().join(format!("round-{round}.db"));
        std::fs::copy(&original, &path).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["a_process_killed_while_encrypting_or_rekeying_loses_no_record", "--exact", "--nocapture", "--test-threads=1"])
            .env("SHIDAO_REWRITE_DB", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it at a random moment (SIGKILL: no destructor, no flush, no cleanup): early rounds
        // while it starts and encrypts the plain file, later ones once it is encrypted, during
        // its rekeys.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut lines = Vec::new();
        if round >= 4 {
            // (The child's harness prints its own lines first.)
            loop {
                let line = rx.recv_timeout(Duration::from_secs(60)).expect("the child encrypted the store");
                let encrypted = line.starts_with("key ");
                lines.push(line);
                if encrypted {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(rng.below(400) as u64));
        } else {
            std::thread::sleep(Duration::from_millis(rng.below(25) as u64));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        if crate_rewrite_exists(&path) {
            mid_rewrite += 1;
        }
        let last = lines.iter().rev().find_map(|l| l.strip_prefix("key ")).map(str::to_string);
        match &last {
            None => before_encrypted += 1,
            Some(_) => after_encrypted += 1,
        }
        // The store opens with the key it last reported, or the one it was moving to; with
        // everything in it, and no rewrite file left behind.
        let tried: Vec<u8> = match last.as_deref() {
            None => vec![0x11],
            Some("11") => vec![0x11, 0x22],
            Some(_) => vec![0x22, 0x11],
        };
        let mut opened = None;
        for k in &tried {
            match Store::open_encrypted(&path, &key(*k)) {
                Ok(s) => {
                    opened = Some(s);
                    break;
                }
                Err(StoreError::WrongKey(_)) => continue,
                Err(e) => panic!("round {round} (last {last:?}): the store does not open: {e}"),
            }
        }
        let store = opened.unwrap_or_else(|| panic!("round {round} (last {last:?}): neither key {tried:?} opens the store"));
        assert_eq!(contents(&store), expected, "round {round} (last {last:?}): a record or file was lost");
        assert!(store.check().is_ok(), "round {round}: integrity");
        drop(store);
        assert!(!crate_rewrite_exists(&path), "round {round}: the rewrite file was not removed");
        assert!(!std::fs::read(&path).unwrap().starts_with(b"SQLite format 3"), "round {round}: still plain");
        std::fs::remove_file(&path).unwrap();
    }
    // mid_rewrite: kills that left a half-written copy behind (the middle of an encryption or rekey).
    println!("killed rewrites: before_encrypted={before_encrypted} after_encrypted={after_encrypted} mid_rewrite={mid_rewrite}");
    assert!(before_encrypted > 0 && after_encrypted > 0, "the kills never hit both phases: {before_encrypted}/{after_encrypted}");
}

fn crate_rewrite_exists(path: &Path) -> bool {
    ["", "-journal", "-wal", "-shm"].iter().any(|s| PathBuf::from(format!("{}.rewrite{s}", path.display())).exists())
}

#[test]
fn a_key_that_is_not_32_bytes_is_refused() {
    assert!(StoreKey::from_slice(&[0; 16]).is_none());
    assert_eq!(format!("{:?}", key(0x5a)), "StoreKey(redacted)");
}

#[test]
fn a_text_field_and_long_text_field_exist_where_the_markers_go() {
    // The markers above land in real fields of the built-in observation form.
    let t = shidao_core::builtin("classroom-observation").unwrap();
    let kind = |id: &str| t.top_fields().find(|f| f.id() == id).map(|f| f.kind());
    assert_eq!(kind("teacher_name"), Some(FieldKind::Text));
    assert_eq!(kind("e_goal"), Some(FieldKind::LongText));
}
