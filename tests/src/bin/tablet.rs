//! A tablet as its own process, for tests that kill it: it edits one record in a burst, syncing
//! now and then, and says on stdout what is durable and what the server acknowledged:
//! `edited <token>` once an edit is committed to the store, `synced <n>` once a sync that started
//! after the first `n` edits completed.
//!
//! Usage: tablet <store> <url> <token> <user> <device> <role> <record> <field>

use std::io::Write;

use shidao_core::store::Store;
use shidao_core::sync::http::{Cancel, HttpSync, RetryPolicy};
use shidao_core::{DeviceId, Editor, FieldRef, RecordId, Role, UserId};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    assert_eq!(a.len(), 8, "usage: tablet <store> <url> <token> <user> <device> <role> <record> <field>");
    let store = Store::open(&a[0]).expect("store");
    let editor = Editor {
        user: UserId::new(a[3].as_str()).expect("user"),
        device: DeviceId::new(a[4].as_str()).expect("device"),
        role: Role::parse(&a[5]).expect("role"),
    };
    let id = RecordId::new(a[6].as_str()).expect("record");
    let field = FieldRef::top(&a[7]);
    let mut http = HttpSync::new(&a[1], None).expect("url");
    http.policy = RetryPolicy { attempts: 1, ..RetryPolicy::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut out = std::io::stdout().lock();
    for i in 0..100_000u32 {
        let mut r = store.load(&id, &editor).expect("load");
        let token = format!("<{}:{}:{i}>", editor.device, std::process::id());
        store.edit(&mut r, |r| r.splice_text(&field, 0, 0, &token)).expect("edit");
        writeln!(out, "edited {token}").expect("stdout");
        out.flush().expect("flush");
        if i % 5 == 4
            && let Ok(s) = rt.block_on(http.sync(&store, &a[2], &editor, &Cancel::new(), |_| {}))
        {
            assert!(s.refused.is_empty(), "refused: {:?}", s.refused);
            writeln!(out, "synced {}", i + 1).expect("stdout");
            out.flush().expect("flush");
        }
    }
}
