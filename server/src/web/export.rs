//! Exports: per template, CSV with one row per record and one column per field (option labels or
//! codes), optionally with author and time columns; and the same data as JSON. Rows stream from
//! the projection as they are read, so memory stays flat however many records there are.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use rusqlite::params;
use serde::Deserialize;
use shidao_core::template::Parent;

use super::auth::WebUser;
use super::page::{esc, layout, Lang};
use super::records::exported;
use crate::error::{AppError, AppResult};
use crate::AppState;

/// `GET /exports`: what can be exported.
pub async fn index(user: WebUser, lang: Lang) -> Html<String> {
    let mut h = format!(
        "<h1>{}</h1><table><tr><th>{}</th><th>CSV / XLSX</th><th>JSON</th></tr>",
        lang.t("导出", "Exports"),
        lang.t("表单", "Form")
    );
    for t in shidao_core::builtin_templates() {
        let id = t.id();
        h.push_str(&format!(
            r#"<tr><td>{}</td><td><a href="/export/{id}.csv">{}</a> · <a href="/export/{id}.csv?codes=1">{}</a> · <a href="/export/{id}.csv?authors=1">{}</a> · <a href="/export/{id}.xlsx">XLSX</a></td><td><a href="/api/records?template={id}">JSON</a></td></tr>"#,
            esc(t.def.title.get(lang.code())),
            lang.t("选项名称", "labels"),
            lang.t("选项代码", "codes"),
            lang.t("含填写人和时间", "with authors and times"),
        ));
    }
    h.push_str("</table>");
    layout(lang, lang.t("导出", "Exports"), Some(&user), &h)
}

#[derive(Debug, Deserialize, Default)]
pub struct ExportQuery {
    #[serde(default)]
    codes: Option<String>,
    #[serde(default)]
    authors: Option<String>,
    #[serde(default)]
    school: Option<String>,
}

fn csv_cell(s: &str) -> String {
    // Cells that a spreadsheet would run as a formula are quoted with a leading apostrophe.
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
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
    let mut header = vec!["record_id", "school", "status", "created_by", "date"].into_iter().map(String::from).collect::<Vec<_>>();
    for f in &fields {
        header.push(format!("{} {}", f.id(), f.def.label.get(lang.code())));
        if authors {
            header.push(format!("{} {}", f.id(), lang.t("填写人", "by")));
            header.push(format!("{} {}", f.id(), lang.t("时间", "at")));
        }
    }
    if !row(header) {
        return Ok(());
    }
    let mut recs = conn.prepare(
        "SELECT r.id, r.school_id, r.status, r.created_by, COALESCE(r.record_date, '') FROM records r JOIN schools s ON s.id = r.school_id
         WHERE r.template_id = ?1 AND (?2 IS NULL OR s.programme_id = ?2) AND (?3 IS NULL OR r.school_id = ?3) ORDER BY r.record_date, r.id",
    )?;
    let mut answers = conn.prepare_cached("SELECT field, row_id, value, display, author, at FROM answers WHERE record_id = ?1 ORDER BY field, row_id")?;
    let mut rows = recs.query(params![template.id(), programme, school])?;
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
                cells.push(joined(&|v| if v.2 > 0 { super::records::when(v.2) } else { String::new() }));
            }
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
    let template = shidao_core::builtin(&template_id).ok_or_else(|| AppError::NotFound(format!("no template {template_id}")))?;
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
}

/// `GET /api/records?template=…`: the same data as JSON, a page at a time (`after` = last id).
pub async fn api(State(state): State<AppState>, user: WebUser, Query(q): Query<ApiQuery>) -> AppResult<axum::Json<serde_json::Value>> {
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let programme = user.programme.clone();
    let out = state
        .blocking(move |conn| {
            let mut recs = conn.prepare_cached(
                "SELECT r.id, r.school_id, r.status, r.created_by, r.record_date FROM records r JOIN schools s ON s.id = r.school_id
                 WHERE r.template_id = ?1 AND (?2 IS NULL OR s.programme_id = ?2) AND (?3 IS NULL OR r.school_id = ?3) AND r.id > COALESCE(?4, '')
                 ORDER BY r.id LIMIT ?5",
            )?;
            let rows: Vec<(String, String, String, String, Option<String>)> = recs
                .query_map(params![q.template, programme, q.school, q.after, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut answers = conn.prepare_cached("SELECT field, row_id, value, author, at, conflicts FROM answers WHERE record_id = ?1")?;
            let mut items = Vec::new();
            for (id, school, status, created_by, date) in &rows {
                let a: Vec<serde_json::Value> = answers
                    .query_map([id], |r| {
                        Ok(serde_json::json!({
                            "field": r.get::<_, String>(0)?,
                            "row": r.get::<_, String>(1)?,
                            "answer": serde_json::from_str::<serde_json::Value>(&r.get::<_, String>(2)?).unwrap_or_default(),
                            "by": r.get::<_, Option<String>>(3)?,
                            "at": r.get::<_, Option<i64>>(4)?,
                            "conflicts": r.get::<_, i64>(5)?,
                        }))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                items.push(serde_json::json!({"id": id, "school": school, "status": status, "created_by": created_by, "date": date, "answers": a}));
            }
            let next = rows.last().filter(|_| rows.len() as u32 == limit).map(|r| r.0.clone());
            Ok(serde_json::json!({ "records": items, "next": next }))
        })
        .await?;
    Ok(axum::Json(out))
}
