//! The query port's HTTP API: Jaeger's v1 API ([`jaeger`]), the native API under `/api/v1/`
//! ([`native`]), logs ([`logs`]), the Prometheus API ([`prometheus`]), operations endpoints
//! ([`ops`]) and the web UI ([`ui`]).

pub mod jaeger;
pub mod jaeger_v3;
pub mod logs;
pub mod native;
pub mod ops;
pub mod params;
pub mod prometheus;
pub mod ui;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use sightline_collector::service_graph::ServiceGraph;
use sightline_collector::span_store::SpanStoreError;
use sightline_collector::{LogStore, MetricStore, SpanStore};
use tracing::error;

use crate::engine::traces::SearchError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub spans: SpanStore,
    pub logs: LogStore,
    pub metrics: MetricStore,
    /// The dependency graph's per-minute rollups.
    pub service_graph: Arc<ServiceGraph>,
    /// The last write-ahead-log sequence number searchable in the log index; changes at each
    /// commit (live tail waits on it).
    pub log_commits: tokio::sync::watch::Receiver<u64>,
    /// Set once the write-ahead log has been replayed.
    pub ready: Arc<AtomicBool>,
    pub registry: ::prometheus::Registry,
    /// Serve the UI from this directory instead of the copy embedded in the binary.
    pub ui_dir: Option<PathBuf>,
}

/// The whole query-port router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(jaeger::router())
        .merge(jaeger_v3::router())
        .merge(native::router())
        .merge(logs::router())
        .merge(prometheus::router())
        .merge(ops::router())
        .merge(ui::router())
        .with_state(state)
}

/// A failed API call: an HTTP status and a message safe to show to the caller.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    pub fn internal() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error: see the server log".into(),
        }
    }
}

impl From<SpanStoreError> for ApiError {
    fn from(err: SpanStoreError) -> Self {
        error!(error = %err, "span store query failed");
        ApiError::internal()
    }
}

impl From<SearchError> for ApiError {
    fn from(err: SearchError) -> Self {
        match err {
            SearchError::InvalidQuery(_) => ApiError::bad_request(err.to_string()),
            SearchError::Store(err) => err.into(),
            SearchError::Index(
                tantivy::TantivyError::InvalidArgument(message)
                | tantivy::TantivyError::SchemaError(message),
            ) => ApiError::bad_request(format!("invalid query: {message}")),
            SearchError::Index(err) => {
                error!(error = %err, "trace search failed");
                ApiError::internal()
            }
        }
    }
}

/// Runs a blocking store query off the async workers.
pub async fn blocking<T: Send + 'static>(
    query: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(query).await.map_err(|err| {
        error!(error = %err, "query task failed");
        ApiError::internal()
    })?
}
