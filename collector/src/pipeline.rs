//! The ingest pipeline: one path from a decoded export request to the span index, shared by
//! both transports.
//!
//! ```text
//! receiver ──(ingest budget, bytes)──▶ [WAL queue] ──▶ WAL writer thread ──fsync──▶ ack
//!                                                          │
//!                                                          ▼
//!                                                   [index queue] ──▶ indexer thread ──▶ tantivy
//!                                                                        (commit every interval,
//!                                                                         then truncate the WAL)
//! ```
//!
//! Memory is bounded by the ingest budget: a request holds a share of it, in bytes of its
//! encoded size, from decoding until its documents are handed to the index writer. When the
//! budget is spent, requests are refused with a retryable error instead of queueing.
//! Concurrent requests share one fsync: the WAL writer drains every queued batch, writes them,
//! syncs once and acknowledges them all.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use sightline_proto::validate::{count_spans, validate_trace_request, Rejected};
use tantivy::{IndexWriter, TantivyDocument};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{error, info, warn};

use crate::error::IngestError;
use crate::metrics::IngestMetrics;
use crate::span_store::{SpanBatch, SpanFields, SpanStore, SpanStoreError};
use crate::wal::{self, RecordKind, WalError, WalSegments, WalWriter};

/// Batches the WAL writer takes from its queue for one fsync, at most.
const MAX_BATCHES_PER_SYNC: usize = 1024;
/// Capacity of the queues, in batches; the ingest budget bounds them in bytes well before.
const QUEUE_CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Bytes of accepted-but-not-yet-indexed requests held in memory, at most.
    pub ingest_queue_bytes: usize,
    /// How often the span index commits; a span is searchable within this interval after its
    /// acknowledgement (plus the commit's own duration).
    pub commit_interval: Duration,
    /// Size at which the write-ahead log starts a new segment file.
    pub wal_segment_bytes: u64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            ingest_queue_bytes: 16 << 20,
            commit_interval: Duration::from_millis(1000),
            wal_segment_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Store(#[from] SpanStoreError),
    #[error("failed to start a pipeline thread: {0}")]
    Thread(std::io::Error),
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

enum WalCommand {
    Append {
        batch: SpanBatch,
        permit: OwnedSemaphorePermit,
        ack: oneshot::Sender<Result<(), String>>,
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
    wal_tx: SyncSender<WalCommand>,
    fields: SpanFields,
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
        let started = Instant::now();
        let labels = ["traces", transport.label()];
        let result = async {
            let permit = self.acquire_budget(encoded_bytes)?;
            let fields = self.inner.fields;
            let (received, rejected, batch) = tokio::task::spawn_blocking(move || {
                let received = count_spans(&request);
                let rejected = validate_trace_request(&mut request);
                let batch = SpanBatch::from_request(&fields, &request);
                (received, rejected, batch)
            })
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
                self.append(batch, permit).await?;
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
        self.update_queue_gauge();
        Ok(permit)
    }

    fn update_queue_gauge(&self) {
        let in_use = self.inner.budget_bytes - self.inner.budget.available_permits();
        self.inner.metrics.ingest_queue_bytes.set(in_use as i64);
    }

    async fn append(
        &self,
        batch: SpanBatch,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), IngestError> {
        let (ack, acked) = oneshot::channel();
        match self
            .inner
            .wal_tx
            .try_send(WalCommand::Append { batch, permit, ack })
        {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(IngestError::Overloaded),
            Err(TrySendError::Disconnected(_)) => {
                return Err(IngestError::Unavailable("shutting down".into()))
            }
        }
        acked
            .await
            .map_err(|_| IngestError::Unavailable("shutting down".into()))?
            .map_err(IngestError::Unavailable)
    }
}

/// The running pipeline: its threads and the handle to feed it.
pub struct Pipeline {
    ingester: Ingester,
    wal_thread: JoinHandle<()>,
    index_thread: JoinHandle<()>,
}

impl Pipeline {
    /// Replays the write-ahead log in `wal_dir` into the span index (everything after the
    /// index's last commit), commits, then starts the WAL writer and indexer threads.
    /// Blocking: call it from a blocking context.
    pub fn start(
        store: SpanStore,
        mut writer: IndexWriter,
        wal_dir: &Path,
        settings: &PipelineSettings,
        metrics: IngestMetrics,
    ) -> Result<Pipeline, PipelineError> {
        let committed_seq = store.committed_seq()?;
        let fields = *store.fields();
        let started = Instant::now();
        let mut replayed_spans = 0u64;
        let mut last_seq = committed_seq;
        let wal = wal::open(
            wal_dir,
            committed_seq,
            settings.wal_segment_bytes,
            |frame| {
                last_seq = last_seq.max(frame.seq);
                match frame.kind {
                    RecordKind::Spans => {
                        match SpanBatch::documents_from_payload(&fields, &frame.payload) {
                            Ok(documents) => {
                                for document in documents {
                                    replayed_spans += 1;
                                    if let Err(err) = writer.add_document(document) {
                                        metrics.index_errors.inc();
                                        error!(seq = frame.seq, error = %err, "failed to index a replayed span");
                                    }
                                }
                            }
                            Err(err) => {
                                metrics.index_errors.inc();
                                error!(seq = frame.seq, error = %err, "corrupt span batch in the write-ahead log");
                            }
                        }
                    }
                }
            },
        )?;
        if last_seq > committed_seq {
            commit(&mut writer, &store, last_seq, &wal.segments(), &metrics)?;
        }
        info!(
            replayed_spans,
            committed_seq = last_seq,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "write-ahead log replayed"
        );
        metrics.wal_bytes.set(wal.segments().disk_bytes() as i64);

        let (wal_tx, wal_rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let (index_tx, index_rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let segments = wal.segments();
        let wal_metrics = metrics.clone();
        let wal_thread = std::thread::Builder::new()
            .name("sightline-wal".into())
            .spawn(move || run_wal_writer(wal, wal_rx, index_tx, wal_metrics))
            .map_err(PipelineError::Thread)?;
        let index_metrics = metrics.clone();
        let commit_interval = settings.commit_interval;
        let budget = Arc::new(Semaphore::new(settings.ingest_queue_bytes));
        let index_budget = budget.clone();
        let budget_bytes = settings.ingest_queue_bytes;
        let index_thread = std::thread::Builder::new()
            .name("sightline-indexer".into())
            .spawn(move || {
                let indexer = Indexer {
                    writer,
                    store,
                    segments,
                    metrics: index_metrics,
                    last_seq,
                    dirty: false,
                };
                indexer.run(index_rx, commit_interval, &index_budget, budget_bytes)
            })
            .map_err(PipelineError::Thread)?;
        let ingester = Ingester {
            inner: Arc::new(IngesterInner {
                budget,
                budget_bytes,
                wal_tx,
                fields,
                metrics,
            }),
        };
        Ok(Pipeline {
            ingester,
            wal_thread,
            index_thread,
        })
    }

    pub fn ingester(&self) -> Ingester {
        self.ingester.clone()
    }

    /// Writes and indexes everything already queued, commits, and stops the threads. Requests
    /// arriving afterwards are refused as unavailable. Blocking.
    pub fn shutdown(self) {
        let _ = self.ingester.inner.wal_tx.send(WalCommand::Shutdown);
        if self.wal_thread.join().is_err() {
            error!("write-ahead log thread panicked");
        }
        if self.index_thread.join().is_err() {
            error!("indexer thread panicked");
        }
        info!("ingest pipeline stopped");
    }
}

fn run_wal_writer(
    mut wal: WalWriter,
    commands: Receiver<WalCommand>,
    index_tx: SyncSender<IndexJob>,
    metrics: IngestMetrics,
) {
    let mut pending = Vec::new();
    let mut stop = false;
    while !stop {
        let Ok(first) = commands.recv() else { break };
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                WalCommand::Append { batch, permit, ack } => {
                    let seq = wal.append(RecordKind::Spans, &batch.payload);
                    pending.push((seq, batch.documents, permit, ack));
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
                metrics.wal_fsyncs.inc();
                metrics.wal_written_bytes.inc_by(written);
                metrics.wal_bytes.add(written as i64);
                for (seq, documents, permit, ack) in pending.drain(..) {
                    let _ = ack.send(Ok(()));
                    let job = IndexJob {
                        seq,
                        documents,
                        _permit: permit,
                    };
                    if index_tx.send(job).is_err() {
                        error!(seq, "indexer stopped: an acknowledged batch will be indexed at the next start");
                    }
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
    info!("write-ahead log writer stopped");
}

struct Indexer {
    writer: IndexWriter,
    store: SpanStore,
    segments: WalSegments,
    metrics: IngestMetrics,
    /// The last write-ahead-log sequence number added to the writer.
    last_seq: u64,
    /// Whether documents were added since the last commit.
    dirty: bool,
}

impl Indexer {
    fn run(
        mut self,
        jobs: Receiver<IndexJob>,
        commit_interval: Duration,
        budget: &Semaphore,
        budget_bytes: usize,
    ) {
        let mut next_commit = Instant::now() + commit_interval;
        loop {
            let timeout = next_commit.saturating_duration_since(Instant::now());
            match jobs.recv_timeout(timeout) {
                Ok(job) => {
                    for document in job.documents {
                        if let Err(err) = self.writer.add_document(document) {
                            self.metrics.index_errors.inc();
                            error!(seq = job.seq, error = %err, "failed to index a span");
                        }
                    }
                    self.last_seq = job.seq;
                    self.dirty = true;
                    drop(job._permit);
                    let in_use = budget_bytes - budget.available_permits();
                    self.metrics.ingest_queue_bytes.set(in_use as i64);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_commit {
                self.commit_if_dirty();
                next_commit = Instant::now() + commit_interval;
            }
        }
        self.commit_if_dirty();
        info!(committed_seq = self.last_seq, "indexer stopped");
    }

    fn commit_if_dirty(&mut self) {
        if !self.dirty {
            return;
        }
        match commit(
            &mut self.writer,
            &self.store,
            self.last_seq,
            &self.segments,
            &self.metrics,
        ) {
            Ok(()) => self.dirty = false,
            Err(err) => {
                self.metrics.index_errors.inc();
                warn!(error = %err, "span index commit failed; retrying at the next interval");
            }
        }
    }
}

/// Commits the index with `seq` as its payload, makes it searchable, and deletes the
/// write-ahead-log segments it covers.
fn commit(
    writer: &mut IndexWriter,
    store: &SpanStore,
    seq: u64,
    segments: &WalSegments,
    metrics: &IngestMetrics,
) -> Result<(), SpanStoreError> {
    let started = Instant::now();
    let mut prepared = writer.prepare_commit()?;
    prepared.set_payload(&seq.to_string());
    prepared.commit()?;
    store.reload()?;
    metrics
        .index_commit_duration
        .observe(started.elapsed().as_secs_f64());
    if segments.remove_committed(seq) > 0 {
        metrics.wal_bytes.set(segments.disk_bytes() as i64);
    }
    Ok(())
}
