//! The form registry: every form version each programme has published, kept for good by content
//! hash, and the templates records are read with.
//!
//! A programme starts with the built-in library (published like any other form) and publishes its
//! own forms or new versions of the built-in ones. Publishing checks a definition with the
//! core's loader and, against the programme's newest version of the same form, with the core's
//! compatibility rule (`template::check_successor`), asking the central store whether records use
//! what a new version drops. A version can be retired: no new records, old ones stay readable.
//!
//! What must stay true:
//! - A record is read with the version it was made with, from its own programme's registry.
//! - `form_defs` rows never change or go (content addressed); `form_versions` rows never go.
//! - A refused publication stores nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use rusqlite::{params, Connection, OptionalExtension};
use shidao_core::sync::protocol::{FormDef, Pull, TemplateRef};
use shidao_core::template::{builtin_templates, check_successor, Dropped, Template};

use crate::error::{AppError, AppResult};

/// Largest definition or workbook accepted for publishing.
pub const MAX_FORM_BYTES: usize = 5 * 1024 * 1024;

/// What is being published.
#[derive(Debug, Clone)]
pub enum Source<'a> {
    /// A template in the JSON format of `docs/templates.md`; `file` names it in errors.
    Json { file: &'a str, text: &'a str },
    /// An XLSForm workbook (.xlsx or .xls).
    XlsForm { file: &'a str, bytes: &'a [u8], skip_unsupported: bool },
}

/// A form checked and ready to publish (or already published), with the importer's warnings.
#[derive(Debug, Clone)]
pub struct Checked {
    pub template: Arc<Template>,
    /// The definition as stored and delivered.
    pub definition: String,
    pub hash: String,
    /// Place and reason of everything imported with a caveat or left out.
    pub warnings: Vec<String>,
}

/// One published version, as the admin list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FormVersion {
    pub id: String,
    pub version: u32,
    pub hash: String,
    pub title_zh: String,
    pub title_en: String,
    pub source: String,
    pub published_at: i64,
    pub published_by: String,
    pub retired_at: Option<i64>,
    /// Records of this version in the programme.
    pub records: i64,
    /// The version new records of this form use (the highest not retired).
    pub current: bool,
}

/// Templates compiled from definitions, by hash: a definition never changes, so neither does its
/// compiled template. Seeded with the built-in ones.
fn cache() -> &'static Mutex<HashMap<String, Arc<Template>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Template>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(builtin_templates().iter().map(|t| (t.hash(), t.clone())).collect()))
}

/// The template stored under `hash`, compiled once per process.
fn compiled(conn: &Connection, hash: &str) -> AppResult<Option<Arc<Template>>> {
    if let Some(t) = cache().lock().unwrap_or_else(|p| p.into_inner()).get(hash) {
        return Ok(Some(t.clone()));
    }
    let json: Option<String> = conn
        .prepare_cached("SELECT definition FROM form_defs WHERE hash = ?1")?
        .query_row([hash], |r| r.get(0))
        .optional()?;
    let Some(json) = json else { return Ok(None) };
    let t = Template::from_json(&format!("form {hash}"), &json)
        .map_err(|e| AppError::Internal(format!("stored form {hash} no longer loads: {e}")))?;
    let t = Arc::new(t);
    cache().lock().unwrap_or_else(|p| p.into_inner()).insert(hash.to_string(), t.clone());
    Ok(Some(t))
}

/// The version `version` of form `id` as programme `programme` published it.
pub fn template(conn: &Connection, programme: &str, id: &str, version: u32) -> AppResult<Option<Arc<Template>>> {
    let hash: Option<String> = conn
        .prepare_cached("SELECT hash FROM form_versions WHERE programme_id = ?1 AND template_id = ?2 AND version = ?3")?
        .query_row(params![programme, id, version], |r| r.get(0))
        .optional()?;
    match hash {
        Some(h) => compiled(conn, &h),
        None => Ok(None),
    }
}

/// A template lookup for records of one programme, in the shape `Record::from_doc` takes. A
/// store error reads as an unknown template, which refuses the record rather than passing it.
pub fn resolver<'a>(conn: &'a Connection, programme: &'a str) -> impl Fn(&str, u32) -> Option<Arc<Template>> + 'a {
    move |id, version| match template(conn, programme, id, version) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(programme, form = id, version, error = %e, "form lookup failed");
            None
        }
    }
}

/// The programme a school belongs to.
pub fn programme_of_school(conn: &Connection, school: &str) -> AppResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT programme_id FROM schools WHERE id = ?1")?
        .query_row([school], |r| r.get(0))
        .optional()?)
}

/// When a version was retired, if it was.
pub fn retired_at(conn: &Connection, programme: &str, id: &str, version: u32) -> AppResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT retired_at FROM form_versions WHERE programme_id = ?1 AND template_id = ?2 AND version = ?3")?
        .query_row(params![programme, id, version], |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten())
}

/// Reads and checks a form without storing anything: what the admin page previews.
pub fn check(source: &Source<'_>) -> AppResult<Checked> {
    let (template, warnings) = match source {
        Source::Json { file, text } => {
            if text.len() > MAX_FORM_BYTES {
                return Err(AppError::BadRequest(format!("{file}: {} bytes is over the limit of {MAX_FORM_BYTES}", text.len())));
            }
            let t = Template::from_json(file, text)?;
            (Arc::new(t), Vec::new())
        }
        Source::XlsForm { file, bytes, skip_unsupported } => xlsform(file, bytes, *skip_unsupported)?,
    };
    let definition = template.definition();
    let hash = shidao_core::template::definition_hash(&definition);
    Ok(Checked { template, definition, hash, warnings })
}

fn xlsform(file: &str, bytes: &[u8], skip_unsupported: bool) -> AppResult<(Arc<Template>, Vec<String>)> {
    let opts = shidao_xlsform::Options { skip_unsupported, filled_by: Vec::new() };
    match shidao_xlsform::import(file, bytes, &opts) {
        Ok(imported) => Ok((imported.template, imported.warnings.iter().map(|w| w.to_string()).collect())),
        Err(e) => Err(AppError::BadRequest(format!(
            "{file}: {}",
            e.issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; ")
        ))),
    }
}

/// Reads and checks a form file by its name: `.xlsx`/`.xls` as an XLSForm workbook, anything
/// else as template JSON.
pub fn check_file(name: &str, bytes: &[u8], skip_unsupported: bool) -> AppResult<Checked> {
    if bytes.len() > MAX_FORM_BYTES {
        return Err(AppError::BadRequest(format!("{name}: {} bytes is over the limit of {MAX_FORM_BYTES}", bytes.len())));
    }
    let lower = name.to_lowercase();
    if lower.ends_with(".xlsx") || lower.ends_with(".xls") || lower.ends_with(".xlsm") {
        return check(&Source::XlsForm { file: name, bytes, skip_unsupported });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| AppError::BadRequest(format!("{name}: not UTF-8 text: {e}")))?;
    check(&Source::Json { file: name, text })
}

/// Publishes a checked form into a programme. Publishing the same definition again is a no-op;
/// another definition under a published version, a lower version, or a version that breaks the
/// compatibility rule is refused with the field at fault. Returns whether it was new.
pub fn publish(conn: &Connection, programme: &str, form: &Checked, source: &str, by: &str, now: i64) -> AppResult<bool> {
    programme_exists(conn, programme)?;
    let t = &form.template;
    let existing: Option<String> = conn
        .query_row(
            "SELECT hash FROM form_versions WHERE programme_id = ?1 AND template_id = ?2 AND version = ?3",
            params![programme, t.id(), t.version()],
            |r| r.get(0),
        )
        .optional()?;
    match existing {
        Some(h) if h == form.hash => return Ok(false),
        Some(_) => {
            return Err(AppError::Conflict(format!(
                "{} v{} is already published in {programme} with other content; publish it as v{}",
                t.id(),
                t.version(),
                newest_version(conn, programme, t.id())?.unwrap_or(t.version()) + 1
            )));
        }
        None => {}
    }
    if let Some(newest) = newest_version(conn, programme, t.id())? {
        let old = template(conn, programme, t.id(), newest)?
            .ok_or_else(|| AppError::Internal(format!("{} v{newest} is listed but not stored", t.id())))?;
        let mut failure = None;
        let mut in_use = |d: &Dropped<'_>| match used(conn, programme, t.id(), d) {
            Ok(u) => u,
            Err(e) => {
                failure = Some(e);
                true
            }
        };
        let verdict = check_successor(&old, t, &mut in_use);
        if let Some(e) = failure {
            return Err(e);
        }
        verdict.map_err(|e| AppError::BadRequest(format!("not compatible with the published v{newest}: field `{}` {}", e.field, e.problem)))?;
    }
    conn.execute(
        "INSERT INTO form_defs (hash, template_id, version, definition) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (hash) DO NOTHING",
        params![form.hash, t.id(), t.version(), form.definition],
    )?;
    conn.execute(
        "INSERT INTO form_versions (programme_id, template_id, version, hash, source, published_at, published_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![programme, t.id(), t.version(), form.hash, source, now, by],
    )?;
    cache().lock().unwrap_or_else(|p| p.into_inner()).insert(form.hash.clone(), t.clone());
    Ok(true)
}

fn programme_exists(conn: &Connection, programme: &str) -> AppResult<()> {
    let known: Option<i64> = conn.query_row("SELECT 1 FROM programmes WHERE id = ?1", [programme], |r| r.get(0)).optional()?;
    known.map(|_| ()).ok_or_else(|| AppError::NotFound(format!("programme {programme} does not exist")))
}

/// The highest version of form `id` the programme has published, if any.
pub fn newest_version(conn: &Connection, programme: &str, id: &str) -> AppResult<Option<u32>> {
    Ok(conn.query_row(
        "SELECT MAX(version) FROM form_versions WHERE programme_id = ?1 AND template_id = ?2",
        params![programme, id],
        |r| r.get::<_, Option<u32>>(0),
    )?)
}

/// Whether a record of the programme's form `id` (any version) holds an answer that uses what a
/// new version drops. Read from the projection (`answers`), so no document is loaded.
fn used(conn: &Connection, programme: &str, id: &str, dropped: &Dropped<'_>) -> AppResult<bool> {
    let base = "SELECT 1 FROM answers a JOIN records r ON r.id = a.record_id JOIN schools s ON s.id = r.school_id
                WHERE s.programme_id = ?1 AND r.template_id = ?2 AND a.field = ?3";
    let hit: Option<i64> = match dropped {
        Dropped::Field { field } => conn.query_row(&format!("{base} LIMIT 1"), params![programme, id, field], |r| r.get(0)),
        Dropped::Option { field, value } => conn.query_row(
            &format!(
                "{base} AND (json_extract(a.value, '$.value') = ?4
                   OR EXISTS (SELECT 1 FROM json_each(a.value, '$.value') WHERE json_each.value = ?4)) LIMIT 1"
            ),
            params![programme, id, field, value],
            |r| r.get(0),
        ),
        Dropped::Level { field, value } => conn.query_row(
            &format!("{base} AND a.number = ?4 LIMIT 1"),
            params![programme, id, field, value],
            |r| r.get(0),
        ),
    }
    .optional()?;
    Ok(hit.is_some())
}

/// Retires a version: devices offer it no more for new records; its records stay readable.
pub fn retire(conn: &Connection, programme: &str, id: &str, version: u32, now: i64) -> AppResult<()> {
    programme_exists(conn, programme)?;
    let n = conn.execute(
        "UPDATE form_versions SET retired_at = COALESCE(retired_at, ?4) WHERE programme_id = ?1 AND template_id = ?2 AND version = ?3",
        params![programme, id, version, now],
    )?;
    if n == 0 {
        return Err(AppError::NotFound(format!("{id} v{version} is not published in {programme}")));
    }
    Ok(())
}

/// Parses `ID@VERSION`.
pub fn parse_ref(s: &str) -> AppResult<(String, u32)> {
    s.rsplit_once('@')
        .and_then(|(id, v)| Some((id.to_string(), v.parse().ok()?)))
        .ok_or_else(|| AppError::BadRequest(format!("`{s}` is not FORM@VERSION (e.g. classroom-observation@1)")))
}

/// Publishes the built-in library into a programme (what a new programme starts with).
pub fn install_library(conn: &Connection, programme: &str, now: i64) -> AppResult<()> {
    for t in builtin_templates() {
        let definition = t.definition();
        let hash = shidao_core::template::definition_hash(&definition);
        let form = Checked { template: t.clone(), definition, hash, warnings: Vec::new() };
        // A programme may already have its own version of the same number; it keeps it.
        let taken: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM form_versions WHERE programme_id = ?1 AND template_id = ?2 AND version >= ?3",
                params![programme, t.id(), t.version()],
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_none() {
            publish(conn, programme, &form, "built-in", "shidao", now)?;
        }
    }
    Ok(())
}

/// Gives every programme the built-in library: all of it to a programme that has no forms yet
/// (one created before the registry), and a new version of a built-in form (e.g.
/// classroom-observation v2) to one that has the older versions, next to them, so that tablets
/// of this build can send records of it. Run at every start; a no-op once each programme has
/// the built-in versions of this build (or its own of the same number or higher).
pub fn install_missing_libraries(conn: &Connection, now: i64) -> AppResult<()> {
    let programmes: Vec<String> = conn.prepare("SELECT id FROM programmes ORDER BY id")?.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    for p in programmes {
        install_library(conn, &p, now)?;
    }
    Ok(())
}

/// Every version a programme has published, by form and version, with its record count.
pub fn list(conn: &Connection, programme: &str) -> AppResult<Vec<FormVersion>> {
    programme_exists(conn, programme)?;
    let mut stmt = conn.prepare(
        "SELECT f.template_id, f.version, f.hash, f.source, f.published_at, f.published_by, f.retired_at,
                (SELECT COUNT(*) FROM records r JOIN schools s ON s.id = r.school_id
                  WHERE s.programme_id = f.programme_id AND r.template_id = f.template_id AND r.template_version = f.version)
         FROM form_versions f WHERE f.programme_id = ?1 ORDER BY f.template_id, f.version",
    )?;
    let rows = stmt
        .query_map([programme], |r| {
            Ok(FormVersion {
                id: r.get(0)?,
                version: r.get(1)?,
                hash: r.get(2)?,
                title_zh: String::new(),
                title_en: String::new(),
                source: r.get(3)?,
                published_at: r.get(4)?,
                published_by: r.get(5)?,
                retired_at: r.get(6)?,
                records: r.get(7)?,
                current: false,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut rows = rows;
    for i in 0..rows.len() {
        let (id, version) = (rows[i].id.clone(), rows[i].version);
        rows[i].current = rows[i].retired_at.is_none()
            && !rows.iter().any(|o| o.id == id && o.version > version && o.retired_at.is_none());
    }
    rows.into_iter()
        .map(|mut f| {
            if let Some(t) = compiled(conn, &f.hash)? {
                f.title_zh = t.def.title.zh.clone();
                f.title_en = t.def.title.en.clone();
            }
            Ok(f)
        })
        .collect()
}

/// What the reference data lists of a programme's forms: every published version with its hash.
pub fn references(conn: &Connection, programme: &str) -> AppResult<Vec<TemplateRef>> {
    let mut stmt = conn.prepare_cached(
        "SELECT template_id, version, hash, retired_at FROM form_versions WHERE programme_id = ?1 ORDER BY template_id, version",
    )?;
    let rows = stmt.query_map([programme], |r| {
        Ok(TemplateRef { id: r.get(0)?, version: r.get(1)?, hash: Some(r.get(2)?), retired: r.get::<_, Option<i64>>(3)?.is_some() })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The hashes of the forms of pulled records that are not built into this build (a device that
/// has not yet seen the programme's list may lack them).
pub fn pulled_forms(conn: &Connection, pulls: &[Pull], listed: &[TemplateRef]) -> AppResult<Vec<String>> {
    let builtin: HashSet<String> = builtin_templates().iter().map(|t| t.hash()).collect();
    let mut stmt = conn.prepare_cached("SELECT template_id, template_version FROM records WHERE id = ?1")?;
    let mut out: Vec<String> = Vec::new();
    for p in pulls {
        let Some((id, version)) = stmt.query_row([&p.record], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))).optional()? else {
            continue;
        };
        let hash = listed.iter().find(|t| t.id == id && t.version == version).and_then(|t| t.hash.clone());
        if let Some(h) = hash.filter(|h| !builtin.contains(h) && !out.contains(h)) {
            out.push(h);
        }
    }
    Ok(out)
}

/// The definitions a device asked for, of those its reference lists (others are not sent), each
/// once.
pub fn definitions(conn: &Connection, wanted: &[String], listed: &[TemplateRef]) -> AppResult<Vec<FormDef>> {
    let mut out: Vec<FormDef> = Vec::new();
    let mut stmt = conn.prepare_cached("SELECT definition FROM form_defs WHERE hash = ?1")?;
    for hash in wanted {
        if out.iter().any(|f| f.hash == *hash) || !listed.iter().any(|t| t.hash.as_deref() == Some(hash.as_str())) {
            continue;
        }
        if let Some(definition) = stmt.query_row([hash], |r| r.get::<_, String>(0)).optional()? {
            out.push(FormDef { hash: hash.clone(), definition });
        }
    }
    Ok(out)
}

/// The forms of a programme that carry a report meaning, each with the field or score that
/// carries it (over every version published; field ids are stable across versions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carriers(pub Vec<(String, String)>);

impl Carriers {
    /// The form ids, each once, in the programme's order.
    pub fn forms(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (t, _) in &self.0 {
            if !out.contains(&t.as_str()) {
                out.push(t);
            }
        }
        out
    }

    /// The first form, for links to the records behind a figure.
    pub fn first(&self) -> &str {
        self.0.first().map_or("", |(t, _)| t.as_str())
    }

    /// The field or score that carries the meaning in form `template`.
    pub fn name_in(&self, template: &str) -> Option<&str> {
        self.0.iter().find(|(t, _)| t == template).map(|(_, n)| n.as_str())
    }

    /// An SQL condition `(tcol = ? AND ncol = ?) OR …` (false when no form carries it); the
    /// values are appended to `args` and numbered after what it holds.
    pub fn condition(&self, tcol: &str, ncol: &str, args: &mut Vec<String>) -> String {
        if self.0.is_empty() {
            return "0".into();
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(t, n)| {
                args.push(t.clone());
                args.push(n.clone());
                format!("({tcol} = ?{} AND {ncol} = ?{})", args.len() - 1, args.len())
            })
            .collect();
        format!("({})", parts.join(" OR "))
    }

    /// An SQL condition `tcol IN (?, …)` over the forms (false when none).
    pub fn form_condition(&self, tcol: &str, args: &mut Vec<String>) -> String {
        let forms = self.forms();
        if forms.is_empty() {
            return "0".into();
        }
        let marks: Vec<String> = forms
            .iter()
            .map(|t| {
                args.push(t.to_string());
                format!("?{}", args.len())
            })
            .collect();
        format!("{tcol} IN ({})", marks.join(", "))
    }
}

/// Which forms of the programme carry `meaning` (`lesson.total`, …; `template::meaning`).
pub fn carriers(conn: &Connection, programme: &str, meaning: &str) -> AppResult<Carriers> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut stmt = conn.prepare_cached("SELECT template_id, hash FROM form_versions WHERE programme_id = ?1 ORDER BY template_id, version")?;
    let rows: Vec<(String, String)> = stmt.query_map([programme], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    for (id, hash) in rows {
        if let Some(t) = compiled(conn, &hash)? {
            if let Some(name) = t.meaning(meaning) {
                if !out.iter().any(|(i, n)| *i == id && n == name) {
                    out.push((id, name.to_string()));
                }
            }
        }
    }
    Ok(out).map(Carriers)
}
