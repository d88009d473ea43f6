//! Errors as a browser reads them: a page in the reader's language instead of the JSON body an
//! API client gets. [`AppError`](crate::error::AppError) maps each error to its status and code
//! once (`error.rs`); this layer only changes how that answer is dressed, for a request that asks
//! for HTML, and keeps the status and every header.

use askama::Template;
use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shidao_core::sync::protocol::ErrorBody;

use super::page::{Chrome, Lang};

/// The largest error body read back (every error body is a short JSON object).
const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome<'a>,
    heading: &'a str,
    reason: &'a str,
    code: &'a str,
    status: u16,
}

fn heading(lang: Lang, status: u16) -> &'static str {
    match status {
        400 | 408 | 413 | 422 => lang.t("请求有误", "The request could not be used"),
        401 => lang.t("请先登录", "Please sign in"),
        403 => lang.t("无权访问", "Not allowed"),
        404 => lang.t("未找到", "Not found"),
        409 => lang.t("与现有内容冲突", "In conflict with what is there"),
        429 => lang.t("尝试次数过多", "Too many attempts"),
        503 => lang.t("暂时无法处理", "Not available right now"),
        _ => lang.t("服务器出错", "The server failed"),
    }
}

/// Whether the request asks for a page (a browser's navigation), not for JSON.
fn wants_html(req: &Request) -> bool {
    req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// The middleware: an error answer with a JSON body, to a request that accepts HTML, becomes
/// the error page (same status, same headers, the reason in the reader's language frame).
pub async fn html_errors(lang: Lang, req: Request, next: Next) -> Response {
    let html = wants_html(&req);
    let resp = next.run(req).await;
    let json = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !html || !json || !(resp.status().is_client_error() || resp.status().is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = to_bytes(body, MAX_ERROR_BODY).await.unwrap_or_default();
    let Ok(err) = serde_json::from_slice::<ErrorBody>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let status = parts.status.as_u16();
    let title = heading(lang, status);
    let page = ErrorPage { chrome: Chrome::new(lang, title, None), heading: title, reason: &err.reason, code: &err.code, status };
    match page.render() {
        Ok(text) => {
            parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(text))
        }
        Err(e) => {
            tracing::error!(error = %e, "error page template");
            Response::from_parts(parts, Body::from(bytes)).into_response()
        }
    }
}
