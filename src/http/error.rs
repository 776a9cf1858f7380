//! API errors as RabbitMQ answers them: a status code and
//! `{"error": ..., "reason": ...}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::access::AccessError;
use crate::protocol::{AmqpError, ReplyCode};

/// A refused request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: Value,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            reason: Value::String(reason.into()),
        }
    }

    /// RabbitMQ's 404 for a missing object.
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    /// 404 for a PUT into a vhost that does not exist.
    pub fn vhost_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "vhost_not_found")
    }

    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// 401 for a user who may not do this.
    pub fn access_refused() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "Access refused.",
        )
    }

    /// 401 for a failed login; with the header that makes browsers ask.
    pub fn login_failed(reason: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_authorized", reason)
    }

    pub fn internal(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", reason)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method Not Allowed",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "reason": self.reason});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED && self.error == "not_authorized" {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        response
    }
}

impl From<AmqpError> for ApiError {
    /// An AMQP refusal of the same operation: 404 for a missing object,
    /// 401 for a permission, 400 with the reply text otherwise (as RabbitMQ's
    /// management plugin reports channel errors).
    fn from(e: AmqpError) -> ApiError {
        match e.code {
            ReplyCode::NotFound => ApiError::not_found(),
            ReplyCode::AccessRefused => ApiError::access_refused(),
            ReplyCode::InternalError => ApiError::internal(e.explanation),
            _ => ApiError::bad_request(e.explanation),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> ApiError {
        if e.is_not_found() {
            ApiError::not_found()
        } else if e.is_bad_request() {
            ApiError::bad_request(e.to_string())
        } else {
            ApiError::internal(e.to_string())
        }
    }
}
