//! Exports: per template, CSV with one row per record and one column per field (option labels or
//! codes), optionally with author and time columns; and the same data as JSON. Rows stream from
//! the projection as they are read, so memory stays flat however many records there are.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;
use shidao_core::template::Parent;

use super::auth::WebUser;
use super::page::{render, url, Chrome, Lang};
use super::records::exported;
use crate::error::{AppError, AppResult};
use crate::AppState;

/// One exportable form version on the exports page.
struct ExportRow {
    /// The form id, escaped for a URL.
    id: String,
    title: String,
    version: u32,
    retired: bool,
    records: i64,
}

#[derive(askama::Template)]
#[template(path = "exports.html")]
struct ExportsPage<'a> {
    chrome: Chrome<'a>,
    rows: Vec<ExportRow>,
}

/// `GET /exports`: what can be exported: every form version the user's programme published.
pub async fn index(State(state): State<AppState>, user: WebUser, lang: Lang) -> AppResult<Html<String>> {
    let programme = user.programme.clone();
    let versions = state.blocking(move |conn| exportable(conn, programme.as_deref())).await?;
    let rows = versions
        .into_iter()
        .map(|f| ExportRow {
            id: url(&f.id),
            title: if lang.en { f.title_en } else { f.title_zh },
            version: f.version,
            retired: f.retired_at.is_some(),
            records: f.records,
        })
        .collect();
    render(&ExportsPage { chrome: Chrome::new(lang, lang.t("导出", "Exports"), Some(&user)), rows })
}

/// The form versions a user may export: their programme's, or every programme's for a user of
/// none; the built-in library's versions without records are left out of the list.
fn exportable(conn: &rusqlite::Connection, programme: Option<&str>) -> AppResult<Vec<crate::forms::FormVersion>> {
    let programmes: Vec<String> = match programme {
        Some(p) => vec![p.to_string()],
        None => conn.prepare("SELECT id FROM programmes ORDER BY id")?.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?,
    };
    let mut out: Vec<crate::forms::FormVersion> = Vec::new();
    for p in programmes {
        for f in crate::forms::list(conn, &p)? {
            let shown = f.records > 0 || f.current;
            if shown && !out.iter().any(|o| o.id == f.id && o.version == f.version) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// The version of form `id` an export reads: the one asked for, else the current one; from the
/// user's programme (or the first programme that published it, for a user of none).
fn export_template(conn: &rusqlite::Connection, programme: Option<&str>, id: &str, version: Option<u32>) -> AppResult<std::sync::Arc<shidao_core::Template>> {
    let versions: Vec<crate::forms::FormVersion> = exportable(conn, programme)?.into_iter().filter(|f| f.id == id).collect();
    let chosen = match version {
        Some(v) => versions.iter().find(|f| f.version == v),
        None => versions.iter().find(|f| f.current).or(versions.last()),
    }
    .ok_or_else(|| AppError::NotFound(format!("no form {id}{} to export", version.map(|v| format!(" v{v}")).unwrap_or_default())))?;
    let found: Option<String> = conn
        .query_row(
            "SELECT programme_id FROM form_versions WHERE template_id = ?1 AND version = ?2 AND (?3 IS NULL OR programme_id = ?3) ORDER BY programme_id LIMIT 1",
            params![id, chosen.version, programme],
            |r| r.get(0),
        )
        .optional()?;
    let p = found.ok_or_else(|| AppError::NotFound(format!("no form {id} v{}", chosen.version)))?;
    crate::forms::template(conn, &p, id, chosen.version)?.ok_or_else(|| AppError::NotFound(format!("no form {id} v{}", chosen.version)))
}

#[derive(Debug, Deserialize, Default)]
pub struct ExportQuery {
    #[serde(default)]
    codes: Option<String>,
    #[serde(default)]
    authors: Option<String>,
    #[serde(default)]
    school: Option<String>,
    #[serde(default)]
    version: Option<u32>,
}

pub(crate) fn csv_cell(s: &str) -> String {
    // Cells that a spreadsheet would run as a formula are quoted with a leading apostrophe.
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// Walks the export of one template: the header, then one row per record (in date order), each
/// handed to `row`; stops early when `row` returns false. Reads the projection only.
#[allow(clippy::too_many_arguments)]
fn for_each_row(
    conn: &rusqlite::Connection,
    template: &shidao_core::Template,
    lang: Lang,
    codes: bool,
    authors: bool,
    programme: Option<&str>,
    school: Option<&str>,
    mut row: impl FnMut(Vec<String>) -> bool,
) -> AppResult<()> {
    let fields: Vec<_> = template.fields.iter().filter(|f| exported(f.kind())).collect();
    let computed: Vec<_> = template.fields.iter().filter(|f| f.kind() == shidao_core::template::FieldKind::Computed).collect();
    let mut header = vec!["record_id", "school", "status", "created_by", "date"].into_iter().map(String::from).collect::<Vec<_>>();
    for f in &fields {
        header.push(format!("{} {}", f.id(), f.def.label.get(lang.code())));
        if authors {
            header.push(format!("{} {}", f.id(), lang.t("填写人", "by")));
            header.push(format!("{} {}", f.id(), lang.t("时间", "at")));
        }
    }
    for f in &computed {
        header.push(format!("{} {}", f.id(), f.def.label.get(lang.code())));
    }
    for s in &template.def.scores {
        header.push(format!("{} {}", s.id, s.label.get(lang.code())));
        header.push(format!("{} {}", s.id, lang.t("等第", "band")));
    }
    if !row(header) {
        return Ok(());
    }
    let mut recs = conn.prepare(
        "SELECT r.id, r.school_id, r.status, r.created_by, COALESCE(r.record_date, '') FROM records r JOIN schools s ON s.id = r.school_id
         WHERE r.template_id = ?1 AND r.template_version = ?4 AND (?2 IS NULL OR s.programme_id = ?2) AND (?3 IS NULL OR r.school_id = ?3)
         ORDER BY r.record_date, r.id",
    )?;
    let mut values = conn.prepare_cached("SELECT name, row_id, text, display, band FROM computed WHERE record_id = ?1 ORDER BY name, row_id")?;
    let mut answers = conn.prepare_cached("SELECT field, row_id, value, display, author, at FROM answers WHERE record_id = ?1 ORDER BY field, row_id")?;
    let mut rows = recs.query(params![template.id(), programme, school, template.version()])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let mut cells = vec![id.clone(), r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?];
        let mut by_field: std::collections::HashMap<String, Vec<(String, String, i64)>> = std::collections::HashMap::new();
        let mut a = answers.query([&id])?;
        while let Some(x) = a.next()? {
            let field: String = x.get(0)?;
            let value: String = x.get(2)?;
            let display: String = x.get(3)?;
            let shown = if codes {
                serde_json::from_str::<serde_json::Value>(&value)
                    .ok()
                    .and_then(|v| {
                        v.get("value").map(|v| match v {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(";"),
                            other => other.to_string(),
                        })
                    })
                    .unwrap_or(display)
            } else {
                display
            };
            by_field.entry(field).or_default().push((shown, x.get::<_, Option<String>>(4)?.unwrap_or_default(), x.get::<_, Option<i64>>(5)?.unwrap_or(0)));
        }
        for f in &fields {
            let vals = by_field.remove(f.id()).unwrap_or_default();
            // Repeat sub-fields: every row's value, in row order, joined by " | ".
            let sep = if matches!(f.parent, Parent::Repeat(_)) { " | " } else { "" };
            let joined = |pick: &dyn Fn(&(String, String, i64)) -> String| vals.iter().map(pick).collect::<Vec<_>>().join(sep);
            cells.push(joined(&|v| v.0.clone()));
            if authors {
                cells.push(joined(&|v| v.1.clone()));
                cells.push(joined(&|v| if v.2 > 0 { shidao_core::date::china_minute(v.2) } else { String::new() }));
            }
        }
        // Computed values as the form labels them (达标, 滞后), or as computed with `codes`;
        // scores with their band.
        let mut by_name: std::collections::HashMap<String, Vec<(String, String, String)>> = std::collections::HashMap::new();
        let mut c = values.query([&id])?;
        while let Some(x) = c.next()? {
            let text: String = x.get(2)?;
            let display = x.get::<_, Option<String>>(3)?.unwrap_or_else(|| text.clone());
            by_name.entry(x.get(0)?).or_default().push((text, display, x.get::<_, Option<String>>(4)?.unwrap_or_default()));
        }
        for f in &computed {
            let vals = by_name.remove(f.id()).unwrap_or_default();
            let sep = if matches!(f.parent, Parent::Repeat(_)) { " | " } else { "" };
            let shown = |v: &(String, String, String)| match (codes, f.option(&v.0)) {
                (false, Some(o)) => o.label.get(lang.code()).to_string(),
                _ => v.0.clone(),
            };
            cells.push(vals.iter().map(shown).collect::<Vec<_>>().join(sep));
        }
        for s in &template.def.scores {
            let v = by_name.remove(&s.id).and_then(|v| v.into_iter().next());
            let band = v.as_ref().and_then(|v| {
                s.bands.iter().find(|b| b.label.zh == v.2).map(|b| b.label.get(lang.code()).to_string()).or(Some(v.2.clone()))
            });
            cells.push(v.map(|v| v.0).unwrap_or_default());
            cells.push(band.unwrap_or_default());
        }
        if !row(cells) {
            return Ok(());
        }
    }
    Ok(())
}

/// Writes the XLSX export of a template to `out` in constant memory (rows go through temporary
/// files); returns the number of records.
pub fn export_xlsx(conn: &rusqlite::Connection, template: &shidao_core::Template, lang: Lang, codes: bool, authors: bool, programme: Option<&str>, school: Option<&str>, out: impl std::io::Write + Send) -> AppResult<u32> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let xerr = |e: rust_xlsxwriter::XlsxError| AppError::Internal(format!("xlsx: {e}"));
    let sheet = book.add_worksheet_with_constant_memory().map_err(xerr)?;
    sheet.set_name(template.def.title.zh.chars().take(31).collect::<String>()).map_err(xerr)?;
    let mut r = 0u32;
    let mut failed = None;
    for_each_row(conn, template, lang, codes, authors, programme, school, |cells| {
        for (c, v) in cells.iter().enumerate() {
            // Answers that are numbers become number cells; codes like "007" stay text.
            let number = v.parse::<f64>().ok().filter(|n| c >= 5 && n.is_finite() && (v == "0" || v.starts_with("0.") || !v.starts_with('0')));
            let written = match number {
                Some(n) => sheet.write_number(r, c as u16, n),
                None => sheet.write_string(r, c as u16, v.as_str()),
            };
            if let Err(e) = written {
                failed = Some(e);
                return false;
            }
        }
        r += 1;
        true
    })?;
    if let Some(e) = failed {
        return Err(xerr(e));
    }
    book.save_to_writer(out).map_err(xerr)?;
    Ok(r.saturating_sub(1))
}

/// A writer that sends what it is given down a channel (the response body).
struct ChannelWriter(tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.blocking_send(Ok(buf.to_vec())).map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `GET /export/{template}.csv` or `.xlsx`: streams the export.
pub async fn download(State(state): State<AppState>, user: WebUser, lang: Lang, Path(file): Path<String>, Query(q): Query<ExportQuery>) -> AppResult<Response> {
    let (template_id, xlsx) = match (file.strip_suffix(".csv"), file.strip_suffix(".xlsx")) {
        (Some(t), _) => (t.to_string(), false),
        (_, Some(t)) => (t.to_string(), true),
        _ => return Err(AppError::NotFound("exports end in .csv or .xlsx".into())),
    };
    let (programme, version, id) = (user.programme.clone(), q.version, template_id.clone());
    let template = state.blocking(move |conn| export_template(conn, programme.as_deref(), &id, version)).await?;
    let codes = q.codes.as_deref() == Some("1");
    let authors = q.authors.as_deref() == Some("1");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    let programme = user.programme.clone();
    let state2 = state.clone();
    let school = q.school.clone();
    tokio::task::spawn_blocking(move || {
        // A connection of its own: a long export does not hold up syncs.
        let result: AppResult<()> = state2.with_reader(|conn| {
            if xlsx {
                export_xlsx(conn, &template, lang, codes, authors, programme.as_deref(), school.as_deref(), ChannelWriter(tx.clone())).map(|_| ())
            } else {
                let line = |cells: Vec<String>| cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",") + "\r\n";
                // A byte-order mark, so spreadsheet programs read the Chinese as UTF-8.
                let mut first = true;
                for_each_row(conn, &template, lang, codes, authors, programme.as_deref(), school.as_deref(), |cells| {
                    let mut text = line(cells);
                    if first {
                        text.insert(0, '\u{feff}');
                        first = false;
                    }
                    tx.blocking_send(Ok(text.into_bytes())).is_ok()
                })
            }
        });
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let mime = if xlsx { "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" } else { "text/csv; charset=utf-8" };
    let name = format!("attachment; filename=\"{file}\"");
    Ok(([(header::CONTENT_TYPE, mime.to_string()), (header::CONTENT_DISPOSITION, name)], Body::from_stream(futures_stream(rx))).into_response())
}

/// Turns the channel into a body stream.
fn futures_stream(
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    struct S(tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for S {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
    S(rx)
}

#[derive(Debug, Deserialize)]
pub struct ApiQuery {
    template: String,
    #[serde(default)]
    school: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    version: Option<u32>,
}

/// `GET /api/records?template=…`: the same data as JSON, a page at a time (`after` = last id).
pub async fn api(State(state): State<AppState>, user: WebUser, Query(q): Query<ApiQuery>) -> AppResult<axum::Json<serde_json::Value>> {
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let programme = user.programme.clone();
    let out = state
        .blocking(move |conn| {
            let mut recs = conn.prepare_cached(
                "SELECT r.id, r.school_id, r.status, r.created_by, r.record_date, r.template_version FROM records r JOIN schools s ON s.id = r.school_id
                 WHERE r.template_id = ?1 AND (?2 IS NULL OR s.programme_id = ?2) AND (?3 IS NULL OR r.school_id = ?3) AND r.id > COALESCE(?4, '')
                   AND (?6 IS NULL OR r.template_version = ?6)
                 ORDER BY r.id LIMIT ?5",
            )?;
            type Row = (String, String, String, String, Option<String>, u32);
            let rows: Vec<Row> = recs
                .query_map(params![q.template, programme, q.school, q.after, limit, q.version], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut computed = conn.prepare_cached("SELECT name, row_id, number, text, display, band FROM computed WHERE record_id = ?1 ORDER BY name, row_id")?;
            let mut answers = conn.prepare_cached("SELECT field, row_id, value, author, at, conflicts FROM answers WHERE record_id = ?1")?;
            let mut items = Vec::new();
            for (id, school, status, created_by, date, version) in &rows {
                let a: Vec<serde_json::Value> = answers
                    .query_map([id], |r| {
                        Ok(serde_json::json!({
                            "field": r.get::<_, String>(0)?,
                            "row": r.get::<_, String>(1)?,
                            "answer": json_cell(r, 2)?,
                            "by": r.get::<_, Option<String>>(3)?,
                            "at": r.get::<_, Option<i64>>(4)?,
                            "conflicts": r.get::<_, i64>(5)?,
                        }))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                // Computed values and scores: the number (if any), the value as computed, its label
                // (达标 for 1), and a score's band.
                let c: Vec<serde_json::Value> = computed
                    .query_map([id], |r| {
                        Ok(serde_json::json!({
                            "name": r.get::<_, String>(0)?,
                            "row": r.get::<_, String>(1)?,
                            "number": r.get::<_, Option<f64>>(2)?,
                            "text": r.get::<_, String>(3)?,
                            "display": r.get::<_, Option<String>>(4)?,
                            "band": r.get::<_, Option<String>>(5)?,
                        }))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                items.push(serde_json::json!({"id": id, "version": version, "school": school, "status": status, "created_by": created_by, "date": date, "answers": a, "computed": c}));
            }
            let next = rows.last().filter(|_| rows.len() as u32 == limit).map(|r| r.0.clone());
            Ok(serde_json::json!({ "records": items, "next": next }))
        })
        .await?;
    Ok(axum::Json(out))
}

/// A stored JSON answer as a value; one that does not parse fails the export rather than
/// exporting `null` in its place.
fn json_cell(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}
