//! Errors at the HTTP edge: every one is a status and a JSON body with a machine-readable code
//! and a human reason. A 500 logs its cause and shows none of it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shidao_core::sync::protocol::ErrorBody;

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
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        AppError::Internal(format!("storage: {e}"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let AppError::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        let body = ErrorBody { code: code.to_string(), reason: self.to_string() };
        (status, axum::Json(body)).into_response()
    }
}

pub type AppResult<T> = Result<T, AppError>;
