//! The HTTP API: routes, authentication, body limits and compression.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rusqlite::OptionalExtension;
use shidao_core::sync::protocol::{self, EnrolRequest, EnrolResponse, Envelope, SyncRequest};

use crate::accounts::{self, Device};
use crate::error::{AppError, AppResult};
use crate::listen::ClientAddr;
use crate::{attachments, sync, AppState};

/// Largest piece of an attachment in one request.
const MAX_PIECE: usize = 4 * 1024 * 1024;

/// Largest enrolment request (a code and a device name).
const MAX_ENROL: usize = 64 * 1024;

/// The device behind the request's bearer token.
pub struct Authed(pub Device);

impl FromRequestParts<AppState> for Authed {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or(AppError::Unauthorized)?;
        let token = header.strip_prefix("Bearer ").ok_or(AppError::Unauthorized)?.trim().to_string();
        let now = state.clock.now();
        state.blocking(move |conn| accounts::authenticate(conn, &token, now)).await.map(Authed)
    }
}

/// The route's one path parameter (a record id, an attachment hash). One that does not decode
/// (invalid UTF-8 such as `%FF`) is a JSON 400 like every other error, not axum's plain text.
struct PathParam(String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| PathParam(p))
            .map_err(|e| AppError::BadRequest(format!("malformed path: {e}")))
    }
}

/// The request's body, read whole. Over `limit` is a 413; a body that breaks off (the client's
/// connection failed half-way) is [`AppError::IncompleteBody`], which the tablet retries, not
/// a 400 it would take for a request it must never send again.
fn body(bytes: Result<Bytes, BytesRejection>, limit: usize) -> AppResult<Bytes> {
    bytes.map_err(|rejection| match rejection {
        r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge { limit },
        BytesRejection::FailedToBufferBody(e) => AppError::IncompleteBody(e.to_string()),
        other => AppError::BadRequest(format!("could not read the body: {other}")),
    })
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// `POST /v1/enrol`. Wrong codes are counted per client address ([`EnrolThrottle`]), asked and
/// told under the store's one connection like sign-ins, so a burst cannot pass the check at once.
///
/// [`EnrolThrottle`]: crate::web::throttle::EnrolThrottle
async fn enrol(State(state): State<AppState>, ClientAddr(from): ClientAddr, raw: Result<Bytes, BytesRejection>) -> AppResult<Json<EnrolResponse>> {
    let raw = body(raw, MAX_ENROL)?;
    let req: EnrolRequest =
        serde_json::from_slice(&raw).map_err(|e| AppError::BadRequest(format!("not an enrolment request: {e}")))?;
    let now = state.clock.now();
    let from = crate::listen::address_key(from);
    let throttle = state.enrol_throttle.clone();
    let resp = state
        .blocking(move |conn| {
            throttle.0.check(&from, now).map_err(|secs| AppError::Throttled { secs })?;
            let (device, token, user) = match accounts::enrol(conn, &req.code, &req.device_name, now) {
                Err(AppError::BadCode) => {
                    return Err(match throttle.0.failed(&from, now) {
                        0 => AppError::BadCode,
                        secs => {
                            tracing::warn!(%from, secs, "enrolment refused: address locked after wrong codes");
                            AppError::Throttled { secs }
                        }
                    });
                }
                other => other?,
            };
            throttle.0.succeeded(&from);
            let (name, role): (String, String) =
                conn.query_row("SELECT name, role FROM users WHERE id = ?1", [&user], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(EnrolResponse { device, token, user, role, name })
        })
        .await?;
    tracing::info!(device = %resp.device, user = %resp.user, "device enrolled");
    Ok(Json(resp))
}

async fn sync_handler(
    State(state): State<AppState>,
    Authed(device): Authed,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> AppResult<Response> {
    let raw = body(raw, protocol::MAX_BODY_BYTES)?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let envelope = Envelope::from_headers(header("content-type"), header("content-encoding"))
        .map_err(|e| AppError::UnsupportedEnvelope(e.to_string()))?;
    let req: SyncRequest = envelope.decode(&raw).map_err(|e| match e {
        protocol::WireError::TooLarge => AppError::TooLarge { limit: protocol::MAX_DECOMPRESSED_BYTES as usize },
        other => AppError::BadRequest(other.to_string()),
    })?;
    let pushed = req.push.len();
    let clock = state.clock.clone();
    let device_id = device.id.clone();
    let resp = state.blocking_mut(move |conn| sync::handle(conn, &device, req, &clock)).await?;
    tracing::info!(device = %device_id, pushed, pulled = resp.pull.len(), cursor = resp.cursor, more = resp.more, "sync");
    // The answer travels in the request's envelope; JSON is compressed when the device accepts gzip.
    let answer = match envelope {
        Envelope::Binary => Envelope::Binary,
        Envelope::Json { .. } => Envelope::Json { gzip: header("accept-encoding").is_some_and(|v| v.contains("gzip")) },
    };
    let mut response = answer.encode(&resp).map_err(|e| AppError::Internal(format!("sync answer: {e}")))?.into_response();
    if let Some(encoding) = answer.content_encoding() {
        response.headers_mut().insert("content-encoding", HeaderValue::from_static(encoding));
    }
    response.headers_mut().insert("content-type", HeaderValue::from_static(answer.content_type()));
    Ok(response)
}

fn header_u64(headers: &HeaderMap, name: &str) -> AppResult<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| AppError::BadRequest(format!("header `{name}` must be a number")))
}

/// What the server holds of a file for this user: the whole of it if they hold it or may read
/// it, else their own upload in progress; 404 otherwise (also for a file stored for others).
async fn attachment_head(State(state): State<AppState>, Authed(device): Authed, PathParam(hash): PathParam) -> AppResult<Response> {
    let status = state.blocking(move |conn| attachments::status(conn, &device, &hash)).await?;
    let Some((received, size, complete)) = status else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert("upload-offset", HeaderValue::from(received));
    r.headers_mut().insert("upload-length", HeaderValue::from(size));
    r.headers_mut().insert("upload-complete", HeaderValue::from_static(if complete { "1" } else { "0" }));
    Ok(r)
}

async fn attachment_put(
    State(state): State<AppState>,
    Authed(device): Authed,
    PathParam(hash): PathParam,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> AppResult<Response> {
    let piece = body(raw, MAX_PIECE)?;
    let offset = header_u64(&headers, "upload-offset")?;
    let length = header_u64(&headers, "upload-length")?;
    let mime = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream").to_string();
    let dir = state.attachments_dir.clone();
    let now = state.clock.now();
    let received = state
        .blocking(move |conn| attachments::append(conn, &dir, &device, &hash, offset, length, &mime, &piece, now))
        .await?;
    let mut r = Json(serde_json::json!({ "received": received, "complete": received == length })).into_response();
    r.headers_mut().insert("upload-offset", HeaderValue::from(received));
    Ok(r)
}

async fn attachment_get(State(state): State<AppState>, Authed(device): Authed, PathParam(hash): PathParam) -> AppResult<Response> {
    let dir = state.attachments_dir.clone();
    let (bytes, mime) = state.blocking(move |conn| attachments::read(conn, &dir, &device, &hash)).await?;
    let mut r = bytes.into_response();
    if let Ok(v) = HeaderValue::from_str(&mime) {
        r.headers_mut().insert("content-type", v);
    }
    Ok(r)
}

/// The whole of one record (every change), for a device that needs to start it afresh.
async fn record_get(State(state): State<AppState>, Authed(device): Authed, PathParam(id): PathParam) -> AppResult<Response> {
    let bytes = state
        .blocking(move |conn| {
            let scope = accounts::scope(conn, device.user.as_str(), device.role, device.programme.as_deref())?;
            let row: Option<(String, Vec<u8>)> = conn
                .query_row("SELECT r.school_id, d.doc FROM records r JOIN documents d ON d.record_id = r.id WHERE r.id = ?1", [&id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            match row {
                Some((school, doc)) if scope.contains(&school) => Ok(doc),
                // Unknown and out of scope answer alike, so ids cannot be probed.
                _ => Err(AppError::Forbidden(format!("record {id} is not in your scope"))),
            }
        })
        .await?;
    let mut r = bytes.into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/octet-stream"));
    Ok(r)
}

/// `GET /v1/ca.pem`: the district CA certificate named by enrolment QR codes (`--enrol-ca`),
/// for a device to check against the code's fingerprint before it trusts it; 404 without one.
async fn enrol_ca(State(state): State<AppState>) -> AppResult<Response> {
    let ca = state.enrolment.ca.as_ref().ok_or_else(|| AppError::NotFound("this relay names no enrolment CA".into()))?;
    let mut r = ca.pem.clone().into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/x-pem-file"));
    Ok(r)
}

/// Every route of the API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/enrol", post(enrol).layer(DefaultBodyLimit::max(MAX_ENROL)))
        .route("/v1/ca.pem", get(enrol_ca))
        .route("/v1/records/{id}", get(record_get))
        .route("/v1/sync", post(sync_handler).layer(DefaultBodyLimit::max(protocol::MAX_BODY_BYTES)))
        .route(
            "/v1/attachments/{hash}",
            get(attachment_get).head(attachment_head).put(attachment_put).layer(DefaultBodyLimit::max(MAX_PIECE)),
        )
        .fallback(|| async { AppError::NotFound("no such route".into()) })
}
