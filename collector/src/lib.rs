//! Sightline's ingest side: OTLP receivers, the ingest pipeline, the write-ahead log and the
//! span store.
//!
//! - [`receiver`]: OTLP over gRPC ([`receiver::grpc`]) and HTTP ([`receiver::http`]); both
//!   decode and call the same [`pipeline::Ingester`].
//! - [`pipeline`]: validation, the ingest budget (back-pressure), the write-ahead-log writer
//!   thread with group fsync, and the indexer thread that commits on a timer.
//! - [`wal`]: the write-ahead log: segment files of checksummed frames, replay, truncation.
//! - [`span_store`]: the tantivy span index and its lookups (trace by id, services, operations).
//! - [`log_store`]: the tantivy log index: severity, body text, attributes, correlation ids.
//! - [`metric_store`]: Prometheus-style series in memory, in Gorilla-compressed chunks.
//! - [`span_metrics`]: RED metrics and service-graph edges derived from spans at ingest.
//! - [`service_graph`]: the dependency graph as per-minute rollups built at ingest, on disk.
//! - [`retention`]: deleting records by age and to stay within the disk budget.
//! - [`error`]: request failures and their gRPC codes and HTTP statuses, in one place.
//! - [`metrics`]: Sightline's own ingest metrics.

pub mod error;

/// Now, in Unix nanoseconds (0 if the clock is before 1970).
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

mod index;
pub mod log_store;
pub mod metric_store;
pub mod metrics;
pub mod pipeline;
pub mod receiver;
pub mod retention;
pub mod service_graph;
pub mod span_metrics;
pub mod span_store;
#[cfg(test)]
mod test_otlp;
pub mod wal;

pub use error::IngestError;
pub use index::StoreSettings;
pub use log_store::{LogSettings, LogStore};
pub use metric_store::{MetricSettings, MetricStore};
pub use metrics::IngestMetrics;
pub use pipeline::{Ingester, Lane, Pipeline, PipelineSettings, Signal, Transport};
pub use receiver::RequestLimits;
pub use retention::RetentionSettings;
pub use span_store::SpanStore;
