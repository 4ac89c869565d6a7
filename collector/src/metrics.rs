//! Sightline's own metrics about ingest, exposed at `/metrics`. Updated once per request or
//! batch, never per record, and never with unbounded labels.

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
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
    /// The per-lane series below are labelled by `signal` (traces, logs).
    pub wal_bytes: IntGaugeVec,
    pub wal_written_bytes: IntCounterVec,
    pub wal_fsyncs: IntCounterVec,
    pub ingest_queue_bytes: IntGauge,
    pub index_commit_duration: HistogramVec,
    pub index_errors: IntCounterVec,
    /// Records deleted by retention, by `signal` and `reason` (age, disk).
    pub retention_removed: IntCounterVec,
    /// Bytes of the data directory, as retention last measured it.
    pub data_dir_bytes: IntGauge,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let labels = &["signal", "transport"];
        let signal = &["signal"];
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
            wal_bytes: IntGaugeVec::new(
                Opts::new(
                    "sightline_wal_bytes",
                    "Bytes of write-ahead-log segments on disk.",
                ),
                signal,
            )?,
            wal_written_bytes: IntCounterVec::new(
                Opts::new(
                    "sightline_wal_written_bytes_total",
                    "Bytes appended to the write-ahead log.",
                ),
                signal,
            )?,
            wal_fsyncs: IntCounterVec::new(
                Opts::new(
                    "sightline_wal_fsyncs_total",
                    "fsync calls of the write-ahead log (one per group of concurrent requests).",
                ),
                signal,
            )?,
            ingest_queue_bytes: IntGauge::new(
                "sightline_ingest_queue_bytes",
                "Bytes of accepted requests between decoding and indexing (bounded by the ingest queue setting).",
            )?,
            index_commit_duration: HistogramVec::new(
                HistogramOpts::new(
                    "sightline_index_commit_duration_seconds",
                    "Duration of index commits.",
                )
                .buckets(exponential_buckets(0.001, 2.0, 14)?),
                signal,
            )?,
            index_errors: IntCounterVec::new(
                Opts::new(
                    "sightline_index_errors_total",
                    "Records or batches an index failed to add or commit (see the logs).",
                ),
                signal,
            )?,
            retention_removed: IntCounterVec::new(
                Opts::new(
                    "sightline_retention_removed_records_total",
                    "Records deleted by retention, by reason: age (older than the maximum age) or disk (over the disk budget).",
                ),
                &["signal", "reason"],
            )?,
            data_dir_bytes: IntGauge::new(
                "sightline_data_dir_bytes",
                "Bytes of the data directory, as retention last measured it.",
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
        registry.register(Box::new(metrics.retention_removed.clone()))?;
        registry.register(Box::new(metrics.data_dir_bytes.clone()))?;
        Ok(metrics)
    }
}
