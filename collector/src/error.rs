//! Why an export request failed as a whole, and how each transport says so. The one place where
//! failures map to gRPC codes and HTTP statuses.

use std::time::Duration;

use axum::http::StatusCode;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// How long a client should wait before retrying a refused request.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    /// The body is not a valid OTLP message. Permanent.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The body is over the size limit, compressed or decompressed. Permanent.
    #[error("request body exceeds the limit of {limit_bytes} bytes{detail}")]
    TooLarge { limit_bytes: usize, detail: String },
    #[error("unsupported content type {0:?}: use application/x-protobuf or application/json")]
    UnsupportedMediaType(String),
    #[error("unsupported content encoding {0:?}: use gzip, zstd or none")]
    UnsupportedEncoding(String),
    /// The ingest queue is full: Sightline cannot keep up. Retryable.
    #[error("sightline is overloaded: the ingest queue is full, retry later")]
    Overloaded,
    /// Sightline is starting, shutting down or cannot write its write-ahead log. Retryable.
    #[error("sightline cannot accept data right now: {0}")]
    Unavailable(String),
}

impl IngestError {
    /// The label of `sightline_ingest_requests_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Malformed(_) => "malformed",
            IngestError::TooLarge { .. } => "too_large",
            IngestError::UnsupportedMediaType(_) | IngestError::UnsupportedEncoding(_) => {
                "unsupported_media_type"
            }
            IngestError::Overloaded => "overloaded",
            IngestError::Unavailable(_) => "unavailable",
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, IngestError::Overloaded | IngestError::Unavailable(_))
    }

    /// The gRPC status: retryable failures are UNAVAILABLE with RetryInfo; too large is
    /// RESOURCE_EXHAUSTED without RetryInfo, so that clients do not retry it.
    pub fn to_grpc_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self {
            IngestError::Malformed(_)
            | IngestError::UnsupportedMediaType(_)
            | IngestError::UnsupportedEncoding(_) => tonic::Status::invalid_argument(message),
            IngestError::TooLarge { .. } => tonic::Status::resource_exhausted(message),
            IngestError::Overloaded | IngestError::Unavailable(_) => {
                tonic::Status::with_error_details(
                    Code::Unavailable,
                    message,
                    ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
                )
            }
        }
    }

    /// The HTTP status; retryable ones come with `Retry-After`.
    pub fn http_status(&self) -> StatusCode {
        match self {
            IngestError::Malformed(_) => StatusCode::BAD_REQUEST,
            IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::UnsupportedMediaType(_) | IngestError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            IngestError::Overloaded | IngestError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The gRPC code number written into a `google.rpc.Status` body on HTTP.
    pub fn grpc_code(&self) -> i32 {
        self.to_grpc_status().code() as i32
    }
}
