//! Errors of the system API and of invocation, each saying whose fault it is: the client's (4xx)
//! or the function's or provider's (502/503/504), mapped to the one-line responses of spec §4.

use http::{Response, StatusCode};
use watchdog::body::{internal_error, RespBody};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// A replica or the provider refused or reset the connection.
    #[error("{0}")]
    Upstream(String),
    /// No ready replica in time, or shutting down.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    NotImplemented(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    pub fn response(&self) -> Response<RespBody> {
        error(self.status(), &self.to_string())
    }

    pub fn function_not_found(name: &str, ns: &str) -> ApiError {
        ApiError::NotFound(format!("function {name}.{ns} not found"))
    }
}

/// A gateway-generated error: one line of text and `X-OpenFaaS-Internal: gateway`.
pub fn error(status: StatusCode, reason: &str) -> Response<RespBody> {
    internal_error(status, reason, "gateway")
}
