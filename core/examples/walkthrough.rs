//! A walk through the device core: two inspectors fill one visit record on two tablets offline,
//! the tablets exchange the record, and the merged record is printed with authors, the conflict
//! both made, validation and scores.
//!
//! Run: `cargo run -p shidao-core --example walkthrough [-- STORE_DIR]`

use shidao_core::record::Answer;
use shidao_core::sample::{fill_completely, Rng};
use shidao_core::store::Store;
use shidao_core::template::FieldKind;
use shidao_core::{DeviceId, Editor, FieldRef, Role, SchoolId, UserId};

fn person(user: &str) -> Editor {
    Editor {
        user: UserId::new(user).expect("id"),
        device: DeviceId::new(format!("tablet-{user}")).expect("id"),
        role: Role::Inspector,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir)?;
    let (wang, li) = (person("wang"), person("li"));
    let wang_tablet = Store::open(dir.join("shidao-wang.db"))?;
    let li_tablet = Store::open(dir.join("shidao-li.db"))?;

    println!("1. 王 creates the visit record for 瓯海区实验中学 and shares it with 李.");
    let mut visit = wang_tablet.create("inspection-visit", &SchoolId::new("ouhai-syzx")?, &wang)?;
    let id = visit.id().clone();
    li_tablet.merge_remote(&wang_tablet.record_bytes(&id)?, &li)?;

    println!("2. Offline, 王 fills the whole form; 李 writes into the same findings and conclusion.");
    wang_tablet.edit(&mut visit, |r| fill_completely(r, 2, &mut Rng::new(1)))?;
    let t = visit.template().clone();
    let summary = t.top_fields().find(|f| f.kind() == FieldKind::Text).expect("a text field").id().to_string();
    let notes = t.top_fields().find(|f| f.kind() == FieldKind::LongText).expect("a long text").id().to_string();
    let mut li_copy = li_tablet.load(&id, &li)?;
    li_tablet.edit(&mut li_copy, |r| r.splice_text(&FieldRef::top(&notes), 0, 0, "李：作业缺少分层设计。"))?;
    li_tablet.edit(&mut li_copy, |r| r.set_answer(&FieldRef::top(&summary), Answer::Text("李的结论".into())))?;

    println!("3. The tablets exchange the record both ways.\n");
    wang_tablet.merge_remote(&li_tablet.record_bytes(&id)?, &wang)?;
    li_tablet.merge_remote(&wang_tablet.record_bytes(&id)?, &li)?;
    let merged = li_tablet.load(&id, &li)?;
    let view = merged.read();

    println!("{} — {} ({}), status {:?}", t.def.title.zh, t.def.title.en, view.id, view.status);
    for a in &view.answers {
        let Some(f) = t.field(&a.field.field) else { continue };
        let shown = a.answer.as_ref().map(|v| v.display(f, "zh")).unwrap_or_default();
        let by = a.by.as_ref().map(|b| b.user.as_str()).unwrap_or("-");
        println!("  {:<24} {:<40} [{}]", f.def.label.zh, shown.chars().take(40).collect::<String>(), by);
        for c in &a.conflicts {
            let v = c.answer.as_ref().map(|v| v.display(f, "zh")).unwrap_or_else(|| "(清空)".into());
            println!("      ↳ 并存的值 conflict: {v} — {}", c.by.as_ref().map(|b| b.user.as_str()).unwrap_or("-"));
        }
    }
    println!("\nValidation: {} blocking issue(s), {} note(s)", view.validation.blocking().count(), view.validation.issues.len());
    for i in &view.validation.issues {
        println!("  - {} {}", i.field, i.message.zh);
    }
    for s in &view.scores {
        let band = s.band.as_ref().map(|b| b.zh.as_str()).unwrap_or("");
        println!("Score {} {}: {:?} {band}", s.label.zh, s.label.en, s.value);
    }
    println!("\nStores: {} and {}", dir.join("shidao-wang.db").display(), dir.join("shidao-li.db").display());
    Ok(())
}
