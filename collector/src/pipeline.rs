//! The ingest pipeline: one path from a decoded export request to an index, shared by both
//! transports and by every signal that lives in a tantivy index (spans and logs).
//!
//! ```text
//! receiver ──(ingest budget, bytes)──▶ [WAL queue] ──▶ WAL writer thread ──fsync──▶ ack
//!                                                          │
//!                                                          ▼
//!                                                   [index queue] ──▶ indexer thread ──▶ tantivy
//!                                                                        (commit every interval,
//!                                                                         then truncate the WAL;
//!                                                                         retention deletes)
//! ```
//!
//! Each signal has its own lane: its own write-ahead log, WAL writer thread, indexer thread and
//! index, so a burst of logs never waits behind a span commit. Memory is bounded by one ingest
//! budget shared by the lanes: a request holds a share of it, in bytes of its encoded size, from
//! decoding until its documents are handed to the index writer. When the budget is spent,
//! requests are refused with a retryable error instead of queueing. Concurrent requests share
//! one fsync: the WAL writer drains every queued batch, writes them, syncs once and
//! acknowledges them all.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use sightline_proto::metric::{translate, TranslateSettings, Translated};
use sightline_proto::validate::{
    count_log_records, count_spans, validate_logs_request, validate_trace_request, Rejected,
};
use tantivy::schema::Field;
use tantivy::{Index, IndexReader, IndexWriter, TantivyDocument};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{error, info, warn};

use crate::error::IngestError;
use crate::log_store::{LogEncoder, LogStore};
use crate::metric_store::{MetricStore, Written};
use crate::metrics::IngestMetrics;
use crate::retention::{Retention, RetentionSettings};
use crate::service_graph::ServiceGraph;
use crate::span_metrics::SpanMetrics;
use crate::span_store::{SpanFields, SpanStore};
use crate::wal::{self, RecordKind, WalError, WalSegments, WalWriter};

/// Batches the WAL writer takes from its queue for one fsync, at most.
const MAX_BATCHES_PER_SYNC: usize = 1024;
/// Capacity of the queues, in batches; the ingest budget bounds them in bytes well before.
const QUEUE_CAPACITY: usize = 4096;
/// Bits of a record id that numbered the records of one batch before ids were consecutive:
/// `id = seq << BITS | position`.
const LEGACY_POSITION_BITS: u32 = 24;
/// Where in the data directory the span index lives.
pub const SPAN_INDEX_DIR: &str = "spans";
/// Where in the data directory the log index lives.
pub const LOG_INDEX_DIR: &str = "logs";

#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Bytes of accepted-but-not-yet-indexed requests held in memory, at most.
    pub ingest_queue_bytes: usize,
    /// How often the indexes commit; a record is searchable within this interval after its
    /// acknowledgement (plus the commit's own duration).
    pub commit_interval: Duration,
    /// Size at which the write-ahead log starts a new segment file.
    pub wal_segment_bytes: u64,
    pub retention: RetentionSettings,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            ingest_queue_bytes: 16 << 20,
            commit_interval: Duration::from_millis(1000),
            wal_segment_bytes: 64 << 20,
            retention: RetentionSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("{signal} index error: {source}")]
    Index {
        signal: &'static str,
        source: tantivy::TantivyError,
    },
    #[error("failed to start a pipeline thread: {0}")]
    Thread(std::io::Error),
    #[error("metric store snapshot in {path}: {source}")]
    Snapshot {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The transport a request came in on: a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// A signal with a lane of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    /// The `signal` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    fn record_kind(self) -> RecordKind {
        match self {
            Signal::Traces => RecordKind::Spans,
            Signal::Logs => RecordKind::Logs,
            Signal::Metrics => RecordKind::Metrics,
        }
    }
}

/// Encoded records of one request: the write-ahead-log payload and the index documents.
pub struct Batch {
    /// Each record as `[varint length][record bytes]`.
    pub payload: Vec<u8>,
    pub documents: Vec<TantivyDocument>,
}

/// Rebuilds the documents of a write-ahead-log payload.
type Decode = Box<dyn Fn(&[u8]) -> Result<Vec<TantivyDocument>, String> + Send>;

/// Everything the pipeline needs to run one signal's lane.
pub struct Lane {
    pub signal: Signal,
    pub wal_dir: PathBuf,
    pub index_dir: PathBuf,
    pub index: Index,
    pub reader: IndexReader,
    pub writer: IndexWriter,
    pub decode: Decode,
    /// A u64 field that receives each record's id: consecutive in ingest order (see
    /// [`RecordIds`]), and the same after a replay.
    pub id_field: Option<Field>,
    /// The u64 nanosecond timestamp field retention deletes by.
    pub time_field: Field,
    /// Receives the last committed (searchable) write-ahead-log sequence number after each
    /// commit.
    pub commits: watch::Sender<u64>,
}

impl Lane {
    /// The span lane; `data_dir` holds `wal/` and the index in `spans/`.
    pub fn spans(
        store: &SpanStore,
        writer: IndexWriter,
        data_dir: &Path,
        commits: watch::Sender<u64>,
    ) -> Lane {
        let fields = *store.fields();
        Lane {
            signal: Signal::Traces,
            wal_dir: data_dir.join("wal"),
            index_dir: data_dir.join(SPAN_INDEX_DIR),
            index: store.index().clone(),
            reader: store.reader().clone(),
            writer,
            decode: Box::new(move |payload| {
                fields
                    .documents_from_payload(payload)
                    .map_err(|err| err.to_string())
            }),
            id_field: None,
            time_field: fields.start_time_unix_nanos,
            commits,
        }
    }

    /// The log lane; `data_dir` holds `logs-wal/` and the index in `logs/`.
    pub fn logs(
        store: &LogStore,
        writer: IndexWriter,
        data_dir: &Path,
        commits: watch::Sender<u64>,
    ) -> Lane {
        let encoder = store.encoder();
        Lane {
            signal: Signal::Logs,
            wal_dir: data_dir.join("logs-wal"),
            index_dir: data_dir.join(LOG_INDEX_DIR),
            index: store.index().clone(),
            reader: store.reader().clone(),
            writer,
            decode: Box::new(move |payload| {
                encoder
                    .documents_from_payload(payload)
                    .map_err(|err| err.to_string())
            }),
            id_field: Some(store.fields().id),
            time_field: store.fields().time,
            commits,
        }
    }
}

/// A request to the write-ahead-log writer of a lane; `T` is what the lane does with a batch
/// once it is durable (index documents, or metric samples to apply).
enum WalCommand<T> {
    Append {
        payload: Vec<u8>,
        item: T,
        permit: OwnedSemaphorePermit,
        /// What was refused while applying the batch (metric samples out of order, over a cap).
        ack: oneshot::Sender<Result<Rejected, String>>,
    },
    /// Write what came before, then stop.
    Shutdown,
}

struct IndexJob {
    seq: u64,
    documents: Vec<TantivyDocument>,
    /// Released once the documents are in the index writer.
    _permit: OwnedSemaphorePermit,
}

/// The handle receivers use to ingest; cheap to clone.
#[derive(Clone)]
pub struct Ingester {
    inner: Arc<IngesterInner>,
}

struct IngesterInner {
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    traces_tx: SyncSender<WalCommand<Vec<TantivyDocument>>>,
    logs_tx: SyncSender<WalCommand<Vec<TantivyDocument>>>,
    metrics_tx: SyncSender<WalCommand<Translated>>,
    translate: TranslateSettings,
    observers: SpanObservers,
    span_fields: SpanFields,
    log_encoder: LogEncoder,
    metrics: IngestMetrics,
}

impl Ingester {
    /// Validates, writes to the write-ahead log and queues for indexing the spans of `request`;
    /// returns once they are durable. `encoded_bytes` is the request's decoded protobuf size,
    /// charged against the ingest budget.
    pub async fn export_traces(
        &self,
        mut request: ExportTraceServiceRequest,
        encoded_bytes: usize,
        transport: Transport,
    ) -> Result<Rejected, IngestError> {
        let fields = self.inner.span_fields;
        let observers = self.inner.observers.clone();
        self.export(Signal::Traces, encoded_bytes, transport, move || {
            let received = count_spans(&request);
            let rejected = validate_trace_request(&mut request);
            let batch = fields.batch(&request);
            // Counted now, refused or not: a refused export is retried and counted again, which
            // over-counts a little under overload rather than losing spans that were stored.
            observers.metrics.observe(&request);
            observers.graph.observe(&request);
            (received, rejected, batch)
        })
        .await
    }

    /// As [`Ingester::export_traces`], for log records.
    pub async fn export_logs(
        &self,
        mut request: ExportLogsServiceRequest,
        encoded_bytes: usize,
        transport: Transport,
    ) -> Result<Rejected, IngestError> {
        let encoder = self.inner.log_encoder;
        self.export(Signal::Logs, encoded_bytes, transport, move || {
            let received = count_log_records(&request);
            let rejected = validate_logs_request(&mut request);
            let batch = encoder.batch(&mut request);
            (received, rejected, batch)
        })
        .await
    }

    async fn export(
        &self,
        signal: Signal,
        encoded_bytes: usize,
        transport: Transport,
        prepare: impl FnOnce() -> (u64, Rejected, Batch) + Send + 'static,
    ) -> Result<Rejected, IngestError> {
        let started = Instant::now();
        let labels = [signal.label(), transport.label()];
        let result = async {
            let permit = self.acquire_budget(encoded_bytes)?;
            let (received, rejected, batch) = tokio::task::spawn_blocking(prepare)
                .await
                .map_err(|err| IngestError::Unavailable(format!("ingest task failed: {err}")))?;
            let metrics = &self.inner.metrics;
            metrics
                .records_received
                .with_label_values(&labels)
                .inc_by(received);
            metrics
                .records_rejected
                .with_label_values(&labels)
                .inc_by(rejected.count);
            let accepted = batch.documents.len() as u64;
            if accepted > 0 {
                self.append(signal, batch, permit).await?;
                metrics
                    .records_accepted
                    .with_label_values(&labels)
                    .inc_by(accepted);
            }
            Ok(rejected)
        }
        .await;
        if result.is_ok() {
            self.inner
                .metrics
                .request_duration
                .with_label_values(&labels)
                .observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// Counts a whole refused request; receivers call it for every refusal they answer.
    pub fn record_refusal(&self, signal: &str, transport: Transport, err: &IngestError) {
        self.inner
            .metrics
            .requests_refused
            .with_label_values(&[signal, transport.label(), err.reason()])
            .inc();
    }

    fn acquire_budget(&self, bytes: usize) -> Result<OwnedSemaphorePermit, IngestError> {
        // A request larger than the whole budget waits for an empty queue instead of never fitting.
        let permits = bytes.clamp(1, self.inner.budget_bytes) as u32;
        let permit = self
            .inner
            .budget
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| IngestError::Overloaded)?;
        update_queue_gauge(
            &self.inner.metrics,
            &self.inner.budget,
            self.inner.budget_bytes,
        );
        Ok(permit)
    }

    async fn append(
        &self,
        signal: Signal,
        batch: Batch,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), IngestError> {
        let tx = match signal {
            Signal::Traces => &self.inner.traces_tx,
            Signal::Logs => &self.inner.logs_tx,
            Signal::Metrics => {
                return Err(IngestError::Unavailable(
                    "metrics are ingested by export_metrics".into(),
                ))
            }
        };
        send_to_wal(tx, batch.payload, batch.documents, permit)
            .await
            .map(|_| ())
    }

    /// Validates and translates the metric points of `request`, writes it to the write-ahead
    /// log and applies its samples to the metric store; returns once they are durable and
    /// queryable, with every data point or sample refused on the way.
    pub async fn export_metrics(
        &self,
        request: ExportMetricsServiceRequest,
        encoded_bytes: usize,
        transport: Transport,
    ) -> Result<Rejected, IngestError> {
        let started = Instant::now();
        let labels = ["metrics", transport.label()];
        let permit = self.acquire_budget(encoded_bytes)?;
        let settings = self.inner.translate.clone();
        let (payload, mut translated) = tokio::task::spawn_blocking(move || {
            let translated = translate(&request, &settings);
            (request.encode_to_vec(), translated)
        })
        .await
        .map_err(|err| IngestError::Unavailable(format!("ingest task failed: {err}")))?;
        let metrics = &self.inner.metrics;
        metrics
            .records_received
            .with_label_values(&labels)
            .inc_by(translated.points);
        let mut rejected = std::mem::take(&mut translated.rejected);
        if !translated.samples.is_empty() {
            let applied = send_to_wal(&self.inner.metrics_tx, payload, translated, permit).await?;
            rejected.merge(applied);
        }
        metrics
            .records_rejected
            .with_label_values(&labels)
            .inc_by(rejected.count);
        metrics
            .request_duration
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
        Ok(rejected)
    }
}

/// The metrics lane: its write-ahead log and the in-memory store it feeds. There is no index
/// to commit: a batch is applied to the store as soon as it is durable, before it is
/// acknowledged. Every `snapshot_interval`, and at shutdown, the store is written to
/// `snapshot_dir` and the log segments it covers are deleted; at start the snapshot is read and
/// the log after it replayed (samples past retention are dropped). Segments are also deleted
/// once everything in them is older than the retention (checked as batches are written; the
/// store's own retention is run by the caller on a timer).
pub struct MetricLane {
    pub wal_dir: PathBuf,
    pub snapshot_dir: PathBuf,
    pub snapshot_interval: Duration,
    pub store: MetricStore,
    pub translate: TranslateSettings,
}

/// The metrics lane's threads: the write-ahead log writer, which applies batches to the store,
/// and the snapshot writer.
struct RunningMetricLane {
    tx: SyncSender<WalCommand<Translated>>,
    wal_thread: JoinHandle<()>,
    /// Dropped to take the last snapshot and stop.
    stop_snapshots: SyncSender<()>,
    snapshot_thread: JoinHandle<()>,
}

/// What is derived from spans as they are acknowledged.
#[derive(Clone)]
pub struct SpanObservers {
    /// RED and service-graph series; flushed into the metric store by the caller.
    pub metrics: Arc<SpanMetrics>,
    /// The dependency graph's rollups; flushed to disk by the caller.
    pub graph: Arc<ServiceGraph>,
}

fn now_ms() -> i64 {
    (crate::now_nanos() / 1_000_000) as i64
}

fn start_metric_lane(
    lane: MetricLane,
    settings: &PipelineSettings,
    metrics: &IngestMetrics,
) -> Result<RunningMetricLane, PipelineError> {
    let MetricLane {
        wal_dir,
        snapshot_dir,
        snapshot_interval,
        store,
        translate: translate_settings,
    } = lane;
    let label = Signal::Metrics.label();
    for name in [
        &metrics.index_errors,
        &metrics.wal_fsyncs,
        &metrics.wal_written_bytes,
    ] {
        name.with_label_values(&[label]);
    }
    let started = Instant::now();
    let snapshot_seq = read_metric_snapshot(&store, &snapshot_dir, metrics)?;
    let mut replayed = 0u64;
    let mut applied_seq = snapshot_seq;
    let wal = wal::open(
        &wal_dir,
        snapshot_seq,
        settings.wal_segment_bytes,
        |frame| {
            applied_seq = frame.seq;
            match ExportMetricsServiceRequest::decode(frame.payload.as_slice()) {
                Ok(request) => {
                    let outcome = store.ingest(translate(&request, &translate_settings), now_ms());
                    replayed += outcome.accepted;
                }
                Err(err) => {
                    metrics.index_errors.with_label_values(&[label]).inc();
                    error!(seq = frame.seq, error = %err, "corrupt metrics batch in the write-ahead log");
                }
            }
        },
    )?;
    // Refusals while replaying were counted when the batches first came, by the process that
    // answered them; and samples of the snapshot seen again are not out of order.
    store.reset_refusal_counts();
    info!(
        signal = label,
        replayed_samples = replayed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "write-ahead log replayed"
    );
    let segments = wal.segments();
    metrics
        .wal_bytes
        .with_label_values(&[label])
        .set(segments.disk_bytes() as i64);
    let applied = Arc::new(AtomicU64::new(applied_seq));
    let (stop_snapshots, snapshot_thread) = start_metric_snapshots(
        &store,
        &applied,
        &segments,
        metrics,
        snapshot_dir,
        snapshot_interval,
        snapshot_seq,
    )?;
    let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
    let wal_metrics = metrics.clone();
    let retention = store.settings().retention;
    let wal_thread = std::thread::Builder::new()
        .name("sl-wal-metrics".into())
        .spawn(move || {
            // Sequence numbers with the time they were written, to find the segments that hold
            // nothing younger than the retention.
            let mut marks: std::collections::VecDeque<(u64, Instant)> = Default::default();
            let mut last_cleanup = Instant::now();
            run_wal_writer(
                Signal::Metrics,
                wal,
                rx,
                wal_metrics.clone(),
                |seq, translated, permit| {
                    let outcome = store.ingest(translated, now_ms());
                    applied.store(seq, Ordering::Release);
                    drop(permit);
                    if marks
                        .back()
                        .is_none_or(|(_, at)| at.elapsed() >= Duration::from_secs(10))
                    {
                        marks.push_back((seq, Instant::now()));
                    }
                    if last_cleanup.elapsed() >= Duration::from_secs(60) {
                        last_cleanup = Instant::now();
                        let mut expired = None;
                        while marks
                            .front()
                            .is_some_and(|(_, at)| at.elapsed() > retention)
                        {
                            expired = marks.pop_front().map(|(seq, _)| seq);
                        }
                        if let Some(seq) = expired {
                            if segments.remove_committed(seq) > 0 {
                                wal_metrics
                                    .wal_bytes
                                    .with_label_values(&[label])
                                    .set(segments.disk_bytes() as i64);
                            }
                        }
                    }
                    outcome.rejected
                },
            )
        })
        .map_err(PipelineError::Thread)?;
    Ok(RunningMetricLane {
        tx,
        wal_thread,
        stop_snapshots,
        snapshot_thread,
    })
}

/// Restores the metric store from its snapshot, if there is one; returns the sequence number of
/// the last write-ahead-log frame it holds (0 without one).
fn read_metric_snapshot(
    store: &MetricStore,
    snapshot_dir: &Path,
    metrics: &IngestMetrics,
) -> Result<u64, PipelineError> {
    let label = Signal::Metrics.label();
    let started = Instant::now();
    let restored = store
        .read_snapshot(snapshot_dir)
        .map_err(|source| PipelineError::Snapshot {
            path: snapshot_dir.to_owned(),
            source,
        })?;
    let Some(restored) = restored else {
        return Ok(0);
    };
    if restored.corrupt_frames > 0 {
        metrics
            .index_errors
            .with_label_values(&[label])
            .inc_by(restored.corrupt_frames);
    }
    info!(
        seq = restored.summary.seq,
        series = restored.summary.series,
        samples = restored.summary.samples,
        bytes = restored.summary.bytes,
        corrupt_frames = restored.corrupt_frames,
        refused_series = restored.refused.count,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "metric store snapshot read"
    );
    if let Some(message) = restored.refused.message("series") {
        warn!(
            message,
            "series of the snapshot refused by this start's series caps"
        );
    }
    Ok(restored.summary.seq)
}

/// Starts the thread that writes the metric store's snapshot every `interval` (at least 1 s)
/// and once more when the returned sender is dropped, deleting the log segments each snapshot
/// covers. `applied` is the last frame applied to the store; `snapshot_seq` the last one in the
/// snapshot on disk.
fn start_metric_snapshots(
    store: &MetricStore,
    applied: &Arc<AtomicU64>,
    segments: &WalSegments,
    metrics: &IngestMetrics,
    snapshot_dir: PathBuf,
    interval: Duration,
    snapshot_seq: u64,
) -> Result<(SyncSender<()>, JoinHandle<()>), PipelineError> {
    let label = Signal::Metrics.label();
    let (stop, stopped) = mpsc::sync_channel::<()>(0);
    let interval = interval.max(Duration::from_secs(1));
    let (store, applied, segments, metrics) = (
        store.clone(),
        applied.clone(),
        segments.clone(),
        metrics.clone(),
    );
    let thread = std::thread::Builder::new()
        .name("sl-snapshot-metrics".into())
        .spawn(move || {
            // What the snapshot on disk holds: frames up to its sequence number (replayed
            // frames after it call for a new one), and the store's sample count (span-derived
            // series and retention change the store without the log).
            let mut last = (snapshot_seq, store.sample_count());
            loop {
                let stopping = !matches!(
                    stopped.recv_timeout(interval),
                    Err(RecvTimeoutError::Timeout)
                );
                // Every frame up to `seq` has been applied to the store.
                let seq = applied.load(Ordering::Acquire);
                let now = (seq, store.sample_count());
                if now != last {
                    let started = Instant::now();
                    match store.write_snapshot(&snapshot_dir, seq) {
                        Ok(Written {
                            summary,
                            index_locked,
                        }) => {
                            last = now;
                            let freed = segments.remove_committed(seq);
                            metrics
                                .wal_bytes
                                .with_label_values(&[label])
                                .set(segments.disk_bytes() as i64);
                            info!(
                                seq,
                                series = summary.series,
                                samples = summary.samples,
                                bytes = summary.bytes,
                                wal_bytes_freed = freed,
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                index_locked_ms = index_locked.as_secs_f64() * 1e3,
                                "metric store snapshot written"
                            );
                        }
                        Err(err) => error!(
                            dir = %snapshot_dir.display(),
                            error = %err,
                            "failed to write a metric store snapshot; the write-ahead log is kept"
                        ),
                    }
                }
                if stopping {
                    break;
                }
            }
        })
        .map_err(PipelineError::Thread)?;
    Ok((stop, thread))
}

/// Queues a batch for the write-ahead log and waits until it is durable (and applied).
async fn send_to_wal<T>(
    tx: &SyncSender<WalCommand<T>>,
    payload: Vec<u8>,
    item: T,
    permit: OwnedSemaphorePermit,
) -> Result<Rejected, IngestError> {
    let (ack, acked) = oneshot::channel();
    {
        match tx.try_send(WalCommand::Append {
            payload,
            item,
            permit,
            ack,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(IngestError::Overloaded),
            Err(TrySendError::Disconnected(_)) => {
                return Err(IngestError::Unavailable("shutting down".into()))
            }
        }
    }
    acked
        .await
        .map_err(|_| IngestError::Unavailable("shutting down".into()))?
        .map_err(IngestError::Unavailable)
}

fn update_queue_gauge(metrics: &IngestMetrics, budget: &Semaphore, budget_bytes: usize) {
    let in_use = budget_bytes - budget.available_permits();
    metrics.ingest_queue_bytes.set(in_use as i64);
}

/// The threads of one lane.
struct RunningLane {
    tx: SyncSender<WalCommand<Vec<TantivyDocument>>>,
    wal_thread: JoinHandle<()>,
    index_thread: JoinHandle<()>,
}

/// The running pipeline: its threads and the handle to feed it.
pub struct Pipeline {
    ingester: Ingester,
    lanes: Vec<RunningLane>,
    metrics_lane: RunningMetricLane,
}

impl Pipeline {
    /// Replays each lane's write-ahead log into its index (everything after the index's last
    /// commit), commits, then starts the WAL writer and indexer threads of both lanes.
    /// Blocking: call it from a blocking context.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        spans: Lane,
        logs: Lane,
        span_fields: SpanFields,
        log_encoder: LogEncoder,
        metric_lane: MetricLane,
        observers: SpanObservers,
        settings: &PipelineSettings,
        retention: Retention,
        metrics: IngestMetrics,
    ) -> Result<Pipeline, PipelineError> {
        let budget = Arc::new(Semaphore::new(settings.ingest_queue_bytes));
        let mut running = Vec::new();
        for lane in [spans, logs] {
            running.push(start_lane(lane, settings, &budget, &retention, &metrics)?);
        }
        let translate = metric_lane.translate.clone();
        let metrics_lane = start_metric_lane(metric_lane, settings, &metrics)?;
        let ingester = Ingester {
            inner: Arc::new(IngesterInner {
                budget,
                budget_bytes: settings.ingest_queue_bytes,
                traces_tx: running[0].tx.clone(),
                logs_tx: running[1].tx.clone(),
                metrics_tx: metrics_lane.tx.clone(),
                translate,
                observers,
                span_fields,
                log_encoder,
                metrics,
            }),
        };
        Ok(Pipeline {
            ingester,
            lanes: running,
            metrics_lane,
        })
    }

    pub fn ingester(&self) -> Ingester {
        self.ingester.clone()
    }

    /// Writes and indexes everything already queued, commits, and stops the threads. Requests
    /// arriving afterwards are refused as unavailable. Blocking.
    pub fn shutdown(self) {
        for lane in &self.lanes {
            let _ = lane.tx.send(WalCommand::Shutdown);
        }
        let _ = self.metrics_lane.tx.send(WalCommand::Shutdown);
        if self.metrics_lane.wal_thread.join().is_err() {
            error!("metrics write-ahead log thread panicked");
        }
        // The last snapshot, with every batch applied: the next start replays nothing.
        drop(self.metrics_lane.stop_snapshots);
        if self.metrics_lane.snapshot_thread.join().is_err() {
            error!("metric snapshot thread panicked");
        }
        for lane in self.lanes {
            if lane.wal_thread.join().is_err() {
                error!("write-ahead log thread panicked");
            }
            if lane.index_thread.join().is_err() {
                error!("indexer thread panicked");
            }
        }
        info!("ingest pipeline stopped");
    }
}

/// What the last commit of an index covers, from its payload: `"<seq>"`, or `"<seq> <next id>"`
/// for a lane with record ids.
struct Committed {
    /// The last write-ahead-log sequence number in the index.
    seq: u64,
    /// The record id the next record gets.
    next_id: u64,
}

impl Committed {
    fn of(index: &Index) -> Result<Committed, tantivy::TantivyError> {
        let payload = index.load_metas()?.payload.unwrap_or_default();
        let mut numbers = payload.split(' ').map(|number| number.parse::<u64>().ok());
        let seq = numbers.next().flatten().unwrap_or(0);
        // Without a next id (a new index, or ids of the form `seq << 24 | position`): above
        // every id the index can hold.
        let next_id = numbers
            .next()
            .flatten()
            .unwrap_or((seq + 1) << LEGACY_POSITION_BITS);
        Ok(Committed { seq, next_id })
    }
}

/// The record ids of a lane that has them: consecutive numbers in ingest order, going on from
/// the last commit's. Consecutive ids make the id column of a segment nearly a straight line, a
/// few bits per record; ids that encoded the batch (`seq << 24 | position`) jumped by 2^24 in
/// almost every block of the column and cost 3 B per record.
struct RecordIds {
    field: Option<Field>,
    next: u64,
}

impl RecordIds {
    /// Adds each document's record id, if the lane has an id field.
    fn stamp(&mut self, documents: &mut [TantivyDocument]) {
        if let Some(field) = self.field {
            for document in documents {
                document.add_u64(field, self.next);
                self.next += 1;
            }
        }
    }

    /// The payload of a commit covering `seq`.
    fn payload(&self, seq: u64) -> String {
        match self.field {
            Some(_) => format!("{seq} {}", self.next),
            None => seq.to_string(),
        }
    }
}

fn start_lane(
    lane: Lane,
    settings: &PipelineSettings,
    budget: &Arc<Semaphore>,
    retention: &Retention,
    metrics: &IngestMetrics,
) -> Result<RunningLane, PipelineError> {
    let Lane {
        signal,
        wal_dir,
        index_dir,
        index,
        reader,
        writer,
        decode,
        id_field,
        time_field,
        commits,
    } = lane;
    let label = signal.label();
    let index_error = |source| PipelineError::Index {
        signal: label,
        source,
    };
    let Committed {
        seq: committed,
        next_id,
    } = Committed::of(&index).map_err(index_error)?;
    let mut ids = RecordIds {
        field: id_field,
        next: next_id,
    };
    // Every series of the lane exists from the start, at zero.
    metrics.index_errors.with_label_values(&[label]);
    metrics.wal_fsyncs.with_label_values(&[label]);
    metrics.wal_written_bytes.with_label_values(&[label]);
    for reason in ["age", "disk"] {
        metrics
            .retention_removed
            .with_label_values(&[label, reason]);
    }
    let started = Instant::now();
    let mut replayed = 0u64;
    let mut last_seq = committed;
    let wal = wal::open(&wal_dir, committed, settings.wal_segment_bytes, |frame| {
        last_seq = last_seq.max(frame.seq);
        if frame.kind != signal.record_kind() {
            metrics.index_errors.with_label_values(&[label]).inc();
            error!(seq = frame.seq, signal = label, kind = ?frame.kind, "record of another signal in this write-ahead log: skipped");
            return;
        }
        match decode(&frame.payload) {
            Ok(mut documents) => {
                ids.stamp(&mut documents);
                for document in documents {
                    replayed += 1;
                    if let Err(err) = writer.add_document(document) {
                        metrics.index_errors.with_label_values(&[label]).inc();
                        error!(seq = frame.seq, signal = label, error = %err, "failed to index a replayed record");
                    }
                }
            }
            Err(err) => {
                metrics.index_errors.with_label_values(&[label]).inc();
                error!(seq = frame.seq, signal = label, error = %err, "corrupt batch in the write-ahead log");
            }
        }
    })?;
    commits.send_replace(committed);
    let segments = wal.segments();
    let mut indexer = Indexer {
        signal,
        writer,
        reader,
        segments: segments.clone(),
        metrics: metrics.clone(),
        last_seq,
        ids,
        dirty: last_seq > committed,
        commits,
        retention: retention.for_lane(signal, index, index_dir, time_field),
    };
    indexer.commit_if_dirty();
    info!(
        signal = label,
        replayed,
        committed_seq = last_seq,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "write-ahead log replayed"
    );
    metrics
        .wal_bytes
        .with_label_values(&[label])
        .set(segments.disk_bytes() as i64);

    let (wal_tx, wal_rx) = mpsc::sync_channel(QUEUE_CAPACITY);
    let (index_tx, index_rx) = mpsc::sync_channel(QUEUE_CAPACITY);
    let wal_metrics = metrics.clone();
    let wal_thread = std::thread::Builder::new()
        // Short names: Linux keeps 15 characters of a thread name.
        .name(format!("sl-wal-{label}"))
        .spawn(move || {
            run_wal_writer(signal, wal, wal_rx, wal_metrics, |seq, documents: Vec<TantivyDocument>, permit| {
                let job = IndexJob {
                    seq,
                    documents,
                    _permit: permit,
                };
                if index_tx.send(job).is_err() {
                    error!(seq, "indexer stopped: an acknowledged batch will be indexed at the next start");
                }
                Rejected::default()
            })
        })
        .map_err(PipelineError::Thread)?;
    let commit_interval = settings.commit_interval;
    let index_budget = budget.clone();
    let budget_bytes = settings.ingest_queue_bytes;
    let index_thread = std::thread::Builder::new()
        .name(format!("sl-index-{label}"))
        .spawn(move || indexer.run(index_rx, commit_interval, &index_budget, budget_bytes))
        .map_err(PipelineError::Thread)?;
    Ok(RunningLane {
        tx: wal_tx,
        wal_thread,
        index_thread,
    })
}

/// Writes queued batches, one fsync per group, then hands each durable batch to `on_durable`
/// and acknowledges it with what that refused.
fn run_wal_writer<T>(
    signal: Signal,
    mut wal: WalWriter,
    commands: Receiver<WalCommand<T>>,
    metrics: IngestMetrics,
    mut on_durable: impl FnMut(u64, T, OwnedSemaphorePermit) -> Rejected,
) {
    let label = [signal.label()];
    let mut pending = Vec::new();
    let mut stop = false;
    while !stop {
        let Ok(first) = commands.recv() else { break };
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                WalCommand::Append {
                    payload,
                    item,
                    permit,
                    ack,
                } => {
                    let seq = wal.append(signal.record_kind(), &payload);
                    pending.push((seq, item, permit, ack));
                }
                WalCommand::Shutdown => {
                    stop = true;
                    break;
                }
            }
            if pending.len() < MAX_BATCHES_PER_SYNC {
                next = commands.try_recv().ok();
            }
        }
        if pending.is_empty() {
            continue;
        }
        match wal.sync() {
            Ok(written) => {
                metrics.wal_fsyncs.with_label_values(&label).inc();
                metrics
                    .wal_written_bytes
                    .with_label_values(&label)
                    .inc_by(written);
                metrics
                    .wal_bytes
                    .with_label_values(&label)
                    .add(written as i64);
                for (seq, item, permit, ack) in pending.drain(..) {
                    let rejected = on_durable(seq, item, permit);
                    let _ = ack.send(Ok(rejected));
                }
            }
            Err(err) => {
                error!(error = %err, batches = pending.len(), "write-ahead log write failed: refusing the batches");
                for (_, _, _, ack) in pending.drain(..) {
                    let _ = ack.send(Err(format!("write-ahead log write failed: {err}")));
                }
            }
        }
    }
    info!(signal = signal.label(), "write-ahead log writer stopped");
}

struct Indexer {
    signal: Signal,
    writer: IndexWriter,
    reader: IndexReader,
    segments: WalSegments,
    metrics: IngestMetrics,
    /// The last write-ahead-log sequence number added to the writer.
    last_seq: u64,
    /// Stamps the documents of each batch before they are added.
    ids: RecordIds,
    /// Whether documents (or deletes) were added since the last commit.
    dirty: bool,
    commits: watch::Sender<u64>,
    retention: crate::retention::LaneRetention,
}

impl Indexer {
    fn run(
        mut self,
        jobs: Receiver<IndexJob>,
        commit_interval: Duration,
        budget: &Semaphore,
        budget_bytes: usize,
    ) {
        let label = [self.signal.label()];
        let mut next_commit = Instant::now() + commit_interval;
        loop {
            let timeout = next_commit.saturating_duration_since(Instant::now());
            match jobs.recv_timeout(timeout) {
                Ok(mut job) => {
                    self.ids.stamp(&mut job.documents);
                    for document in job.documents {
                        if let Err(err) = self.writer.add_document(document) {
                            self.metrics.index_errors.with_label_values(&label).inc();
                            error!(seq = job.seq, signal = label[0], error = %err, "failed to index a record");
                        }
                    }
                    self.last_seq = job.seq;
                    self.dirty = true;
                    drop(job._permit);
                    update_queue_gauge(&self.metrics, budget, budget_bytes);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_commit {
                if self.retention.due() {
                    self.maintain();
                }
                self.commit_if_dirty();
                next_commit = Instant::now() + commit_interval;
            }
        }
        self.commit_if_dirty();
        info!(
            signal = label[0],
            committed_seq = self.last_seq,
            "indexer stopped"
        );
    }

    /// Retention deletes, then lets go of the files of merged-away segments: the reader still
    /// holds them until it reloads, and tantivy only collects them at its next commit or merge,
    /// which an idle index may not see for a long time.
    fn maintain(&mut self) {
        let label = self.signal.label();
        let searcher = self.reader.searcher();
        match self.retention.apply(&searcher, &self.writer) {
            Ok(deleted) => self.dirty |= deleted,
            Err(err) => warn!(signal = label, error = %err, "retention failed; retrying later"),
        }
        drop(searcher);
        self.commit_if_dirty();
        if let Err(err) = self.reader.reload() {
            warn!(signal = label, error = %err, "index reload failed");
        }
        if self.retention.over_budget() {
            // Deleted documents take space until their segments are merged; the merge policy
            // waits for half of a segment to be deleted, the disk budget cannot.
            let with_deletes: Vec<_> = self
                .reader
                .searcher()
                .segment_readers()
                .iter()
                .filter(|segment| segment.num_deleted_docs() > 0)
                .map(|segment| segment.segment_id())
                .collect();
            if !with_deletes.is_empty() {
                // The merge runs on tantivy's merge threads; its result shows at a later reload.
                drop(self.writer.merge(&with_deletes));
            }
        }
        if let Err(err) = self.writer.garbage_collect_files().wait() {
            warn!(signal = label, error = %err, "index file collection failed");
        }
    }

    /// Commits with the last sequence number as payload, makes the commit searchable, and
    /// deletes the write-ahead-log segments it covers.
    fn commit_if_dirty(&mut self) {
        if !self.dirty {
            return;
        }
        let label = [self.signal.label()];
        let started = Instant::now();
        let result = (|| {
            let mut prepared = self.writer.prepare_commit()?;
            prepared.set_payload(&self.ids.payload(self.last_seq));
            prepared.commit()?;
            self.reader.reload()
        })();
        if let Err(err) = result {
            self.metrics.index_errors.with_label_values(&label).inc();
            warn!(signal = label[0], error = %err, "index commit failed; retrying at the next interval");
            return;
        }
        self.dirty = false;
        self.commits.send_replace(self.last_seq);
        self.metrics
            .index_commit_duration
            .with_label_values(&label)
            .observe(started.elapsed().as_secs_f64());
        if self.segments.remove_committed(self.last_seq) > 0 {
            self.metrics
                .wal_bytes
                .with_label_values(&label)
                .set(self.segments.disk_bytes() as i64);
        }
    }
}
