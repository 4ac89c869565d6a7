//! The all-in-one server: OTLP receivers, ingest pipeline and query API in one process.

use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use sightline_collector::pipeline::{MetricLane, SpanObservers};
use sightline_collector::pipeline::{LOG_INDEX_DIR, SPAN_INDEX_DIR};
use sightline_collector::receiver::{grpc, http};
use sightline_collector::retention::Retention;
use sightline_collector::service_graph::{self, ServiceGraph};
use sightline_collector::span_metrics::SpanMetrics;
use sightline_collector::{IngestMetrics, Lane, LogStore, MetricStore, Pipeline, SpanStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::api::params::now_nanos;
use crate::api::{self, AppState};
use crate::engine::dependencies;

/// The service graph's rollups, in the data directory.
const SERVICE_GRAPH_DIR: &str = "service-graph";

/// How often span-derived metrics are written to the metric store.
const SPAN_METRICS_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);
/// How often the metric store drops samples past its retention.
const METRIC_RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
use crate::config::Config;

/// Runs Sightline until `shutdown` resolves, then stops accepting requests, indexes and commits
/// everything acknowledged, and returns.
///
/// Once the write-ahead log is replayed and every port accepts requests, prints
/// `sightline ready: grpc=<addr> http=<addr> query=<addr>` on standard output (tests and scripts
/// read the bound ports from it when they ask for port 0).
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    run_with(config, shutdown, |_| {}).await
}

/// The addresses a running server listens on.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub grpc: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    pub query: std::net::SocketAddr,
}

/// As [`run`], calling `on_ready` once every port accepts requests.
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
    on_ready: impl FnOnce(Addrs) + Send,
) -> anyhow::Result<()> {
    let grpc_listener = bind(config.grpc_listen_addr, "OTLP/gRPC").await?;
    let http_listener = bind(config.http_listen_addr, "OTLP/HTTP").await?;
    let query_listener = bind(config.query_listen_addr, "query").await?;
    let addrs = (
        grpc_listener.local_addr()?,
        http_listener.local_addr()?,
        query_listener.local_addr()?,
    );

    let registry = prometheus::Registry::new();
    let metrics = IngestMetrics::new(&registry).context("cannot register metrics")?;
    let (spans, span_writer) = SpanStore::open(
        &config.data_dir.join(SPAN_INDEX_DIR),
        &config.store_settings(),
    )
    .with_context(|| {
        format!(
            "cannot open the span index in {}",
            config.data_dir.display()
        )
    })?;
    let (logs, log_writer) = LogStore::open(
        &config.data_dir.join(LOG_INDEX_DIR),
        &config.store_settings(),
        config.log_settings(),
    )
    .with_context(|| format!("cannot open the log index in {}", config.data_dir.display()))?;
    let metric_store = MetricStore::new(config.metric_settings());
    let pipeline_settings = config.pipeline_settings();
    let graph_dir = config.data_dir.join(SERVICE_GRAPH_DIR);
    let service_graph = Arc::new(
        ServiceGraph::open(&graph_dir, pipeline_settings.retention.max_age)
            .with_context(|| format!("cannot open the service graph in {}", graph_dir.display()))?,
    );
    let (span_commits, _) = watch::channel(0);
    let (log_commits, log_commits_rx) = watch::channel(0);
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }
    };

    // The query port comes up first, so that /healthz and /readyz answer during replay.
    let state = AppState {
        spans: spans.clone(),
        logs: logs.clone(),
        metrics: metric_store.clone(),
        service_graph: service_graph.clone(),
        log_commits: log_commits_rx,
        ready: ready.clone(),
        registry,
        ui_dir: config.ui_dir.clone(),
    };
    let query_server = tokio::spawn(
        axum::serve(query_listener, api::router(state))
            .with_graceful_shutdown(stopped())
            .into_future(),
    );

    let retention = Retention::new(
        pipeline_settings.retention.clone(),
        config.data_dir.clone(),
        metrics.clone(),
    );
    let span_lane = Lane::spans(&spans, span_writer, &config.data_dir, span_commits);
    let log_lane = Lane::logs(&logs, log_writer, &config.data_dir, log_commits);
    let span_metrics = Arc::new(SpanMetrics::default());
    let metric_lane = MetricLane {
        wal_dir: config.data_dir.join("metrics-wal"),
        snapshot_dir: config.data_dir.join("metrics-snapshot"),
        snapshot_interval: config.metrics_snapshot_interval,
        store: metric_store.clone(),
        translate: config.translate_settings(),
    };
    let observers = SpanObservers {
        metrics: span_metrics.clone(),
        graph: service_graph.clone(),
    };
    let graph = service_graph.clone();
    let pipeline = tokio::task::spawn_blocking(move || {
        let pipeline = Pipeline::start(
            span_lane,
            log_lane,
            *spans.fields(),
            logs.encoder(),
            metric_lane,
            observers,
            &pipeline_settings,
            retention,
            metrics,
        )
        .context("cannot start the ingest pipeline")?;
        // The replayed spans are searchable now; the graph's missing minutes come from them.
        let started = std::time::Instant::now();
        let read = dependencies::rebuild(&spans, &graph)
            .context("cannot rebuild the service graph from the span index")?;
        if read > 0 {
            info!(spans = read, elapsed = ?started.elapsed(), "service graph rebuilt from the span index");
        }
        anyhow::Ok(pipeline)
    })
    .await
    .context("replay task failed")??;

    let ingester = pipeline.ingester();
    // Span-derived metrics reach the metric store every few seconds; its retention runs every
    // minute whether or not metrics arrive.
    let flushed_graph = service_graph.clone();
    let flusher = tokio::spawn(async move {
        let mut every = tokio::time::interval(SPAN_METRICS_FLUSH);
        let mut last_retention = std::time::Instant::now();
        loop {
            every.tick().await;
            let (span_metrics, store) = (span_metrics.clone(), metric_store.clone());
            let graph = flushed_graph.clone();
            let retention_due = last_retention.elapsed() >= METRIC_RETENTION_INTERVAL;
            if retention_due {
                last_retention = std::time::Instant::now();
            }
            let _ = tokio::task::spawn_blocking(move || {
                let now = (now_nanos() / 1_000_000) as i64;
                store.ingest(span_metrics.flush(now), now);
                service_graph::log_flush_error(graph.flush());
                release_free_memory();
                if retention_due {
                    store.apply_retention(now);
                }
            })
            .await;
        }
    });
    let limits = config.request_limits();
    let grpc_server = tokio::spawn(grpc::serve(
        grpc_listener,
        ingester.clone(),
        limits,
        stopped(),
    ));
    let http_server = tokio::spawn(
        axum::serve(http_listener, http::router(ingester, limits))
            .with_graceful_shutdown(stopped())
            .into_future(),
    );
    ready.store(true, Ordering::Release);
    info!(grpc = %addrs.0, http = %addrs.1, query = %addrs.2, data_dir = %config.data_dir.display(), "sightline ready");
    println!(
        "sightline ready: grpc={} http={} query={}",
        addrs.0, addrs.1, addrs.2
    );
    on_ready(Addrs {
        grpc: addrs.0,
        http: addrs.1,
        query: addrs.2,
    });

    shutdown.await;
    info!("shutting down: finishing requests in flight");
    ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    grpc_server.await?.context("OTLP/gRPC server failed")?;
    http_server.await?.context("OTLP/HTTP server failed")?;
    flusher.abort();
    let graph = service_graph.clone();
    tokio::task::spawn_blocking(move || {
        pipeline.shutdown();
        service_graph::log_flush_error(graph.close());
    })
    .await?;
    query_server.await?.context("query server failed")?;
    info!("sightline stopped");
    Ok(())
}

/// Hands memory freed since the last call back to the operating system. glibc keeps what a
/// burst of requests freed in its arenas (each thread that allocated has one), so without this
/// the resident size stays at the burst's high-water mark long after.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; 0 keeps no padding at the top.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("received ctrl-c"),
        () = terminate => info!("received SIGTERM"),
    }
}
