//! What delivering a programme's forms costs on the wire: the bytes of a tablet's first sync with
//! a programme that publishes six forms of its own (the built-in six under other ids), of the
//! same sync with the built-in library only, and of a sync that brings nothing (the steady state,
//! which carries no form field at all). Prints a final `key=value` line; `docs/benchmarks.md`
//! records a run.
//!
//! Run: `cargo build --release -p shidao-tests && target/release/forms-bench`

use std::path::{Path, PathBuf};

use shidao_core::sync::http::{Cancel, Progress};
use shidao_core::template::{builtin_source, Role, BUILTIN_IDS};
use shidao_tests::{Relay, Tablet};

/// Bytes sent and received by one whole sync, and its rounds.
async fn sync_bytes(tablet: &Tablet) -> (u64, u64, u32) {
    let mut last = Progress::default();
    tablet.http.sync(&tablet.store, &tablet.token, &tablet.editor, &Cancel::new(), |p| last = p.clone()).await.expect("sync");
    (last.bytes_sent, last.bytes_received, last.round)
}

/// A programme with one school and one inspector; `own` publishes six forms of its own.
fn programme(db: &Path, own: bool, dir: &Path) -> String {
    use shidao_server::{accounts, forms};
    let conn = shidao_server::db::open(db).expect("db");
    accounts::add_programme(&conn, "p", "测试项目", None).expect("programme");
    accounts::add_school(&conn, "p", "s1", "测试中学", "", "").expect("school");
    accounts::add_user(&conn, "wang", "王老师", Role::Inspector, Some("p"), &["s1".to_string()], None, 0).expect("user");
    if own {
        for id in BUILTIN_IDS {
            let json = builtin_source(id).expect("source").replacen(&format!("\"id\": \"{id}\""), &format!("\"id\": \"district-{id}\""), 1);
            let file = dir.join(format!("district-{id}.json"));
            std::fs::write(&file, &json).expect("write");
            let form = forms::check_file(&file.display().to_string(), json.as_bytes(), false).expect("form");
            forms::publish(&conn, "p", &form, "file", "admin", 0).expect("publish");
        }
    }
    accounts::new_enrol_code(&conn, "wang", shidao_core::Clock::system().now()).expect("code")
}

fn main() {
    let relay_bin: PathBuf = std::env::current_exe().expect("exe").with_file_name("relay");
    assert!(relay_bin.exists(), "build the relay first: cargo build --release -p shidao-tests");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut figures = Vec::new();
    for own in [false, true] {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("central.db");
        let code = programme(&db, own, dir.path());
        let relay = Relay::start(&relay_bin, &db);
        let (first, steady, forms) = rt.block_on(async {
            let tablet = Tablet::enrol(&relay.url, &code, &dir.path().join("t.db")).await.expect("enrol");
            let first = sync_bytes(&tablet).await;
            let steady = sync_bytes(&tablet).await;
            (first, steady, tablet.store.templates().len())
        });
        let name = if own { "six_own_forms" } else { "builtin_only" };
        println!(
            "{name}: first sync {} B sent + {} B received in {} round(s); next sync {} B sent + {} B received; {forms} forms offered",
            first.0, first.1, first.2, steady.0, steady.1
        );
        figures.push((name, first, steady));
    }
    let (_, base_first, base_steady) = figures[0];
    let (_, own_first, own_steady) = figures[1];
    println!(
        "first_sync_builtin_bytes={} first_sync_six_forms_bytes={} delivery_bytes={} steady_sync_builtin_bytes={} steady_sync_six_forms_bytes={}",
        base_first.0 + base_first.1,
        own_first.0 + own_first.1,
        (own_first.0 + own_first.1).saturating_sub(base_first.0 + base_first.1),
        base_steady.0 + base_steady.1,
        own_steady.0 + own_steady.1
    );
}
