//! Sightline's own metrics about ingest, exposed at `/metrics`. Updated once per request or
//! batch, never per record, and never with unbounded labels.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry,
};

/// The metrics of the ingest path. Clones share the same series.
#[derive(Clone)]
pub struct IngestMetrics {
    /// Records in requests that reached decoding, by `signal` and `transport`.
    pub records_received: IntCounterVec,
    /// Records acknowledged to the client (written to the write-ahead log).
    pub records_accepted: IntCounterVec,
    /// Records rejected one by one (partial success).
    pub records_rejected: IntCounterVec,
    /// Whole requests refused, by `reason` (malformed, too_large, overloaded, unavailable, unimplemented, unsupported_media_type).
    pub requests_refused: IntCounterVec,
    pub request_duration: HistogramVec,
    pub wal_bytes: IntGauge,
    pub wal_written_bytes: IntCounter,
    pub wal_fsyncs: IntCounter,
    pub ingest_queue_bytes: IntGauge,
    pub index_commit_duration: Histogram,
    pub index_errors: IntCounter,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let labels = &["signal", "transport"];
        let metrics = IngestMetrics {
            records_received: IntCounterVec::new(
                Opts::new(
                    "sightline_ingest_records_received_total",
                    "Records in decoded OTLP export requests.",
                ),
                labels,
            )?,
            records_accepted: IntCounterVec::new(
                Opts::new(
                    "sightline_ingest_records_accepted_total",
                    "Records written to the write-ahead log and acknowledged.",
                ),
                labels,
            )?,
            records_rejected: IntCounterVec::new(
                Opts::new(
                    "sightline_ingest_records_rejected_total",
                    "Invalid records rejected one by one (OTLP partial success).",
                ),
                labels,
            )?,
            requests_refused: IntCounterVec::new(
                Opts::new(
                    "sightline_ingest_requests_refused_total",
                    "Whole export requests refused, by reason.",
                ),
                &["signal", "transport", "reason"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "sightline_ingest_request_duration_seconds",
                    "Time from a decoded export request to its answer.",
                )
                .buckets(exponential_buckets(0.0005, 2.0, 14)?),
                labels,
            )?,
            wal_bytes: IntGauge::new(
                "sightline_wal_bytes",
                "Bytes of write-ahead-log segments on disk.",
            )?,
            wal_written_bytes: IntCounter::new(
                "sightline_wal_written_bytes_total",
                "Bytes appended to the write-ahead log.",
            )?,
            wal_fsyncs: IntCounter::new(
                "sightline_wal_fsyncs_total",
                "fsync calls of the write-ahead log (one per group of concurrent requests).",
            )?,
            ingest_queue_bytes: IntGauge::new(
                "sightline_ingest_queue_bytes",
                "Bytes of accepted requests between decoding and indexing (bounded by the ingest queue setting).",
            )?,
            index_commit_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "sightline_index_commit_duration_seconds",
                    "Duration of span index commits.",
                )
                .buckets(exponential_buckets(0.001, 2.0, 14)?),
            )?,
            index_errors: IntCounter::new(
                "sightline_index_errors_total",
                "Batches the span index failed to add or commit (see the logs).",
            )?,
        };
        registry.register(Box::new(metrics.records_received.clone()))?;
        registry.register(Box::new(metrics.records_accepted.clone()))?;
        registry.register(Box::new(metrics.records_rejected.clone()))?;
        registry.register(Box::new(metrics.requests_refused.clone()))?;
        registry.register(Box::new(metrics.request_duration.clone()))?;
        registry.register(Box::new(metrics.wal_bytes.clone()))?;
        registry.register(Box::new(metrics.wal_written_bytes.clone()))?;
        registry.register(Box::new(metrics.wal_fsyncs.clone()))?;
        registry.register(Box::new(metrics.ingest_queue_bytes.clone()))?;
        registry.register(Box::new(metrics.index_commit_duration.clone()))?;
        registry.register(Box::new(metrics.index_errors.clone()))?;
        Ok(metrics)
    }
}
