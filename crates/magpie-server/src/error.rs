//! API errors: every library error gets its HTTP status here, and only here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use magpie_core::ConfigError;
use serde_json::json;

/// An error answered by the HTTP API as `{"error": {"code", "message", "path"?}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// Path of the faulty field, when there is one.
    pub path: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status: status.as_u16(), code, message: message.into(), path: None }
    }

    /// 400: the request body is not what the route takes.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 400 naming the faulty field (`message` says what is wrong with it).
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: Some(path.into()), ..Self::bad_request(message) }
    }

    /// 415: the body's media type is not one the route reads.
    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", message)
    }

    /// An error of any status, for answers made by the HTTP layer (405, 413…), so that they too
    /// have a JSON body.
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "BadRequest",
            StatusCode::UNAUTHORIZED => "Unauthorized",
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
            StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
            StatusCode::LOOP_DETECTED => "LoopDetected",
            StatusCode::NOT_FOUND => "NotFound",
            StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
            StatusCode::PAYLOAD_TOO_LARGE => "TooLarge",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
            StatusCode::UNPROCESSABLE_ENTITY => "Unprocessable",
            s if s.is_server_error() => "Internal",
            _ => "Error",
        };
        Self::new(status, code, message)
    }

    /// 400 with the path of the faulty field.
    pub fn config(e: ConfigError) -> Self {
        Self { path: Some(e.path.clone()), ..Self::new(StatusCode::BAD_REQUEST, "InvalidConfig", e.to_string()) }
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", what)
    }

    /// 409: the change would leave the configuration inconsistent.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "TooLarge", message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a valid token is required: Authorization: Bearer <token> (the CLI reads MAGPIE_TOKEN)",
        )
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal", message)
    }
}

impl From<magpie_store::StoreError> for ApiError {
    fn from(e: magpie_store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "StoreUnavailable", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut err = json!({"code": self.code, "message": self.message});
        if let Some(p) = &self.path {
            err["path"] = json!(p);
        }
        (status, Json(json!({ "error": err }))).into_response()
    }
}
