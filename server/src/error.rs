//! The relay's error: what went wrong, as a kind with a machine-readable code and a human
//! reason. The core's errors come in through the `From` conversions below, each deciding once
//! whether the caller asked for something wrong (4xx) or the relay failed (5xx, logged, its
//! cause never shown); [`AppError::status_and_code`] is the one map to HTTP, and
//! `IntoResponse` writes the JSON body API clients get (`web::error_page` turns it into a page
//! in the browser's language for browsers).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shidao_core::sync::protocol::ErrorBody;
use shidao_core::{InvalidId, RecordError, TemplateError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or malformed token")]
    Unauthorized,
    #[error("this device was revoked; enrol it again")]
    Revoked,
    #[error("the enrolment code is unknown, used or expired")]
    BadCode,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The body broke off before its end (the connection failed while it was being sent):
    /// nothing of it was read, and the same request sent again is answered normally.
    #[error("the body broke off before its end; nothing of it was stored; send it again")]
    IncompleteBody(String),
    /// The body's content type and encoding name no sync envelope (415): nothing was read.
    #[error("{0}")]
    UnsupportedEnvelope(String),
    /// The disk under the central store or the attachments is full: nothing of the request was
    /// kept, and the same request succeeds once there is room again.
    #[error("the server's disk is full; nothing of this request was stored; try again later")]
    StorageFull(String),
    /// Too many failed attempts from this client address: refused before anything is checked.
    #[error("too many failed attempts; try again in {secs} s")]
    Throttled { secs: i64 },
    /// Something the server needs for this request is not installed or did not answer in time.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Revoked => (StatusCode::UNAUTHORIZED, "revoked"),
            AppError::BadCode => (StatusCode::UNAUTHORIZED, "bad_code"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AppError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            AppError::IncompleteBody(_) => (StatusCode::REQUEST_TIMEOUT, "incomplete_body"),
            AppError::UnsupportedEnvelope(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_envelope"),
            AppError::StorageFull(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_full"),
            AppError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// A file-system error while `doing` something: a full disk (or a file-size limit) is
    /// [`AppError::StorageFull`], anything else internal.
    pub fn io(doing: impl std::fmt::Display, e: std::io::Error) -> AppError {
        match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge | std::io::ErrorKind::QuotaExceeded => {
                AppError::StorageFull(format!("{doing}: {e}"))
            }
            _ => AppError::Internal(format!("{doing}: {e}")),
        }
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return AppError::StorageFull(format!("storage: {e}"));
        }
        AppError::Internal(format!("storage: {e}"))
    }
}

/// A record refusing what it was asked (a wrong answer, a field or row it lacks, a sealed record,
/// a step the role may not take) is the caller's mistake; a record that cannot be read is the
/// relay's failure.
impl From<RecordError> for AppError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Invalid(_)
            | RecordError::UnknownField(_)
            | RecordError::WrongPlace { .. }
            | RecordError::UnknownRow { .. }
            | RecordError::TooManyRows { .. }
            | RecordError::Sealed(_)
            | RecordError::NotAllowed { .. }
            | RecordError::NotReady(_)
            | RecordError::CommentRequired => AppError::BadRequest(e.to_string()),
            RecordError::Corrupt(_) | RecordError::UnknownTemplate { .. } | RecordError::MissingHistory(_) | RecordError::Automerge(_) => {
                AppError::Internal(format!("record: {e}"))
            }
        }
    }
}

/// An id the caller gave that is not a valid id.
impl From<InvalidId> for AppError {
    fn from(e: InvalidId) -> Self {
        AppError::BadRequest(e.to_string())
    }
}

/// A form definition the caller gave that does not load.
impl From<TemplateError> for AppError {
    fn from(e: TemplateError) -> Self {
        AppError::BadRequest(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            AppError::Internal(cause) => tracing::error!(%cause, "request failed"),
            AppError::StorageFull(cause) => tracing::error!(%cause, "disk full: request refused"),
            _ => {}
        }
        let body = ErrorBody { code: code.to_string(), reason: self.to_string() };
        let mut resp = (status, axum::Json(body)).into_response();
        if let AppError::Throttled { secs } = self {
            resp.headers_mut().insert("retry-after", axum::http::HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

pub type AppResult<T> = Result<T, AppError>;
