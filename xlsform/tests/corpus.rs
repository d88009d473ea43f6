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
        Err(e) => {
            let first = e.issues.first().map(|i| i.to_string()).unwrap_or_default();
            let first = first.split(" (import with skip_unsupported").next().unwrap_or_default().replace('|', "\\|");
            let more = if e.issues.len() > 1 { format!(" (+{} more)", e.issues.len() - 1) } else { String::new() };
            format!("refused: {first}{more}")
        }
    }
}

/// What each workbook does: `None` imports, `Some(text)` is refused with an issue containing
/// `text`; first without, then with `skip_unsupported`.
const EXPECTED: &[(&str, Option<&str>, Option<&str>)] = &[
    ("UCL_Biomass_Plot_Form", Some("select_one_from_file"), Some("unexpected character `‘`")),
    ("calculate_without_calculation", Some("dateTime"), Some("has no calculation")),
    ("cascading_select_test_equivalent", None, None),
    ("case_insensitivity", Some("select_one_external"), None),
    ("choice_filter_test", None, None),
    ("default_time_demo", None, None),
    ("duplicate_columns", Some("repeats the header"), Some("repeats the header")),
    ("group_name_test", Some("unknown question type `phone number`"), Some("unknown question type `phone number`")),
    ("include", Some("unknown question type `include`"), Some("unknown question type `include`")),
    ("or_other", None, None),
    ("pull_data", Some("pulldata()"), None),
    ("repeat_date_test", None, None),
    ("table-list", None, None),
    ("tutorial", None, None),
    ("unknown_question_type", Some("unknown question type `set form title`"), Some("repeats the header")),
    ("widgets", Some("geopoint"), None),
    ("xl_date_ambiguous", None, None),
    ("xlsform_spec_test", Some("public_key"), None),
    ("xlsform.github.io__cascading_select", None, None),
    ("recensement_etablissements_scolaires_24", Some("geopoint"), None),
    ("kobotoolbox-docs__acknowledge", None, None),
    ("barcode_qrcode_questions", Some("barcode"), Some("every row is left out")),
    ("calculations_constraints_matrix", None, None),
    ("kobotoolbox-docs__date_time", Some("dateTime"), None),
    ("form_meta", Some("every row is left out or is metadata"), Some("every row is left out or is metadata")),
    ("gps_questions", Some("geopoint"), None),
    ("media_question_types", Some("audio"), Some("the name `CV` is used twice")),
    ("number_decimal_range_question_types", Some("unknown parameter `tart`"), Some("unknown parameter `tart`")),
    ("repeating_matrix_question", None, None),
    ("kobotoolbox-docs__xlsform-example", None, None),
];

/// Workbooks pyxform accepts that are refused even with `skip_unsupported`, and why (the form
/// itself is wrong, or nothing of it is left).
const ACCEPTED_BUT_REFUSED: &[(&str, &str)] = &[
    ("UCL_Biomass_Plot_Form", "its relevance expressions quote with ‘typographic’ quotes, which are not XPath strings (ODK Validate refuses them too)"),
    ("barcode_qrcode_questions", "its only two questions are barcodes: nothing is left to import"),
    ("form_meta", "it holds only metadata rows (start, end, deviceid…): nothing is left to import"),
];

fn pyxform_accepts() -> Vec<(String, bool)> {
    let sources = std::fs::read_to_string(corpus_dir().join("SOURCES.md")).expect("SOURCES.md");
    sources
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let file = cells.get(1)?;
            let verdict = cells.get(5)?;
            (file.ends_with(".xls") || file.ends_with(".xlsx")).then(|| (file.to_string(), *verdict == "accepted"))
        })
        .collect()
}

fn check(file: &str, r: &Result<Imported, ImportError>, want: Option<&str>, what: &str) {
    match (r, want) {
        (Ok(_), None) => {}
        (Err(e), Some(text)) => assert!(e.issues.iter().any(|i| i.to_string().contains(text)), "{file} ({what}): refused, but not for `{text}`: {e}"),
        (Ok(i), Some(text)) => panic!("{file} ({what}): imported, expected a refusal for `{text}`; warnings: {:?}", i.warnings),
        (Err(e), None) => panic!("{file} ({what}): refused, expected to import: {e}"),
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
        let (_, want_plain, want_skip) = EXPECTED
            .iter()
            .find(|(k, _, _)| file.contains(k))
            .unwrap_or_else(|| panic!("{file} is not in EXPECTED"));
        check(file, &plain, *want_plain, "as is");
        check(file, &skipped, *want_skip, "skip_unsupported");
        table.push((file.clone(), outcome(&plain), outcome(&skipped)));
        if let (Ok(want), Ok(i)) = (std::env::var("SHIDAO_FORMS_JSON"), &skipped)
            && file.contains(&want) {
                println!("{}", i.json);
            }
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
    // With skip_unsupported every form pyxform accepts imports, but for the listed exceptions.
    let verdicts = pyxform_accepts();
    assert_eq!(verdicts.len(), 30);
    for (file, accepted) in &verdicts {
        let (_, _, skip) = EXPECTED.iter().find(|(k, _, _)| file.contains(k)).expect("listed");
        let excepted = ACCEPTED_BUT_REFUSED.iter().any(|(k, _)| file.contains(k));
        if *accepted {
            assert_eq!(skip.is_some(), excepted, "{file}: pyxform accepts it; with skip_unsupported it must import unless listed in ACCEPTED_BUT_REFUSED");
        } else {
            assert!(skip.is_some(), "{file}: pyxform refuses it, and so must we");
        }
    }
    if std::env::var("SHIDAO_FORMS_TABLE").is_ok() {
        println!("| workbook | pyxform | as is | with skip_unsupported |\n|---|---|---|---|");
        for (f, p, s) in &table {
            let accepted = verdicts.iter().find(|(v, _)| v == f).is_some_and(|v| v.1);
            println!("| {f} | {} | {p} | {s} |", if accepted { "accepted" } else { "rejected" });
        }
    }
}

/// Damaged copies of the real workbooks (cut short, bytes overwritten) give an error, never a
/// panic.
#[test]
fn damaged_workbooks_never_panic() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xls" || x == "xlsx"))
        .collect();
    files.sort();
    let mut rng = Rng::new(5);
    let mut tried = 0;
    for path in &files {
        let bytes = std::fs::read(path).expect("read");
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        for k in 1..=6 {
            let mut cut = bytes.clone();
            cut.truncate(bytes.len() * k / 7);
            let _ = import(&name, &cut, &opts(true));
            let mut flipped = bytes.clone();
            for _ in 0..8 {
                let at = rng.below(flipped.len());
                flipped[at] ^= 0x5a;
            }
            let _ = import(&name, &flipped, &opts(true));
            tried += 2;
        }
    }
    assert_eq!(tried, 30 * 12);
}
