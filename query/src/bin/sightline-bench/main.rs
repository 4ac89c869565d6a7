//! `sightline-bench`: drives OTLP/gRPC span or log ingest end to end against a real `sightline`
//! process and prints what it measured. A benchmark, not a test: it asserts nothing.
//!
//! ```text
//! cargo build --release && target/release/sightline-bench --shape rich --spans 1000000
//! target/release/sightline-bench --signal logs --lines 1000000
//! target/release/sightline-bench --signal all --out after.json --record docs/benchmarks.md
//! target/release/sightline-bench --compare before.json after.json
//! ```
//!
//! Span load is encoded before the clock starts and sent as raw bytes, so the generator costs
//! little next to the server. Log load (about 1 KB per line, 10M lines do not fit in memory
//! pre-encoded) is encoded while it is sent, and the generator's own CPU time is printed beside
//! the server's. The server's CPU time and peak RSS come from `/proc/<pid>/`. Only acknowledged
//! records count; refusals (UNAVAILABLE) are retried and reported.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod report;

use anyhow::{bail, Context};
use clap::Parser;
use prost::bytes::{BufMut, Bytes};
use prost::Message;
use sightline_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sightline_proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sightline_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sightline_proto::otlp::common::v1::{
    any_value::Value, AnyValue, InstrumentationScope, KeyValue,
};
use sightline_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sightline_proto::otlp::resource::v1::Resource;
use sightline_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

use report::{Report, Results};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Shape {
    /// About 150 bytes: a name, a kind, two int attributes.
    Small,
    /// About 500 bytes: 11 string attributes (http.*, db.*, ...).
    Rich,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Signal {
    Traces,
    Logs,
    Metrics,
    /// Time to become ready after `kill -9` with `--wal-bytes` of write-ahead log.
    Recovery,
    /// Traces, logs, metrics and recovery, one after the other.
    All,
}

/// Measure OTLP/gRPC span or log ingest of a real sightline server.
#[derive(Debug, Parser)]
struct Args {
    #[arg(long, value_enum, default_value = "traces")]
    signal: Signal,
    /// Log lines to send (with `--signal logs`).
    #[arg(long, default_value_t = 1_000_000)]
    lines: usize,
    /// Metric series (with `--signal metrics`).
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Hours of 15 s samples per series, ending now (with `--signal metrics`).
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    #[arg(long, value_enum, default_value = "rich")]
    shape: Shape,
    /// Spans to send.
    #[arg(long, default_value_t = 1_000_000)]
    spans: usize,
    /// Records per export request.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Concurrent gRPC streams (one connection each).
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// The sightline binary; default: next to this one.
    #[arg(long)]
    server: Option<PathBuf>,
    /// Skip timing the query API after the load.
    #[arg(long)]
    no_queries: bool,
    /// Extra flags for the server.
    #[arg(long, allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Write-ahead log to build up before the crash (with `--signal recovery`).
    #[arg(long, default_value_t = 1 << 30)]
    wal_bytes: u64,
    /// Write the figures as JSON here (for `--compare`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Append the figures, with machine, date and command, to this Markdown file
    /// (e.g. `docs/benchmarks.md`).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Compare two `--out` files (before, after) as ratios instead of running.
    #[arg(long, num_args = 2, value_names = ["BEFORE", "AFTER"])]
    compare: Option<Vec<PathBuf>>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(paths) = &args.compare {
        let (before, after) = (
            Results::read_json(&paths[0])?,
            Results::read_json(&paths[1])?,
        );
        print!("{}", report::compare(&before, &after));
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let signals = match args.signal {
        Signal::All => vec![
            Signal::Traces,
            Signal::Logs,
            Signal::Metrics,
            Signal::Recovery,
        ],
        one => vec![one],
    };
    let mut report = Report::default();
    for signal in signals {
        let name = format!("{signal:?}").to_lowercase();
        println!("== {name}");
        report.signal(&name);
        runtime.block_on(async {
            match signal {
                Signal::Traces => run(&args, &mut report).await,
                Signal::Logs => run_logs(&args, &mut report).await,
                Signal::Metrics => run_metrics(&args, &mut report).await,
                Signal::Recovery => run_recovery(&args, &mut report).await,
                Signal::All => unreachable!("expanded above"),
            }
        })?;
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let results = report.finish(command);
    println!("\n{}", results.markdown());
    if let Some(path) = &args.out {
        results.write_json(path)?;
    }
    if let Some(path) = &args.record {
        results.append_to(path)?;
    }
    Ok(())
}

async fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let (server_bin, data_dir) = server_bin_and_data_dir(args)?;

    // Pre-encode the load.
    let requests: Vec<Bytes> = (0..args.spans.div_ceil(args.batch))
        .map(|i| Bytes::from(make_request(args.shape, i as u64, args.batch).encode_to_vec()))
        .collect();
    let total_bytes: usize = requests.iter().map(Bytes::len).sum();
    let total_spans = requests.len() * args.batch;
    println!(
        "load: {} requests x {} {:?} spans = {} spans, {:.1} MB encoded ({} B/span)",
        requests.len(),
        args.batch,
        args.shape,
        total_spans,
        total_bytes as f64 / 1e6,
        total_bytes / total_spans
    );

    let server = start_server(&server_bin, &data_dir, &args.server_args)?;
    let query = server.query.clone();
    let requests = Arc::new(requests);
    let load = requests.clone();
    // Searchable once the last batch's first trace is found.
    let last = make_request(args.shape, requests.len() as u64 - 1, args.batch);
    let last_trace = hex(&last.resource_spans[0].scope_spans[0].spans[0].trace_id);
    let run = ingest(
        &server,
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        args.streams,
        Arc::new(move |i| load.get(i).cloned()),
        || Ok(http_get(&query, &format!("/api/traces/{last_trace}"))? == 200),
    )
    .await?;
    let IngestRun {
        refused,
        ack_elapsed,
        cpu_ack,
        searchable_elapsed,
        cpu_total,
        ..
    } = run;
    let query_report = if args.no_queries {
        Vec::new()
    } else {
        measure_queries(
            &query,
            args.shape,
            requests.len() as u64,
            args.batch,
            report,
        )?
    };
    server.stop();
    let index_bytes = dir_bytes(&data_dir.join("spans"));
    let wal_bytes = dir_bytes(&data_dir.join("wal"));

    let secs = ack_elapsed.as_secs_f64();
    println!("acknowledged: {total_spans} spans in {secs:.2} s = {:.0} spans/s, {:.1} MB/s (OTLP protobuf)", total_spans as f64 / secs, total_bytes as f64 / 1e6 / secs);
    println!("refused (UNAVAILABLE, retried): {refused}");
    println!(
        "searchable: all spans after {:.2} s = {:.0} spans/s",
        searchable_elapsed.as_secs_f64(),
        total_spans as f64 / searchable_elapsed.as_secs_f64()
    );
    println!("server CPU: {cpu_ack:.1} s until acknowledged ({:.2} cores), {cpu_total:.1} s until searchable", cpu_ack / secs);
    println!(
        "server RSS: {:.0} MiB after the load, peak {:.0} MiB",
        run.rss_after as f64 / 1024.0,
        run.peak_rss as f64 / 1024.0
    );
    println!(
        "disk: span index {:.1} MB = {:.0} B/span; write-ahead log left {:.1} MB",
        index_bytes as f64 / 1e6,
        index_bytes as f64 / total_spans as f64,
        wal_bytes as f64 / 1e6
    );
    for line in query_report {
        println!("{line}");
    }
    run.report(
        "traces",
        ("spans", total_spans as f64),
        (total_spans as f64, "spans/s"),
        ("span", index_bytes as f64 / total_spans as f64),
        report,
    );
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// What one ingest run measured of the server.
struct IngestRun {
    refused: u64,
    ack_elapsed: Duration,
    cpu_ack: f64,
    rss_after: u64,
    searchable_elapsed: Duration,
    cpu_total: f64,
    threads_before: std::collections::BTreeMap<String, f64>,
    threads: std::collections::BTreeMap<String, f64>,
    self_metrics: String,
    peak_rss: u64,
}

/// Sends `load` to the gRPC method `path`, then waits until `searchable` says the last record
/// is found; measures the server's CPU (per thread) and memory on the way, and lets the last
/// commit and merges settle for 3 s before the caller measures disk and queries.
async fn ingest(
    server: &BenchServer,
    path: &'static str,
    streams: usize,
    load: Load,
    mut searchable: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<IngestRun> {
    let pid = server.pid;
    let threads_before = thread_cpu_seconds(pid)?;
    let cpu_before = cpu_seconds(pid)?;
    let started = Instant::now();
    let refused = send_all(&server.grpc, path, streams, load).await?;
    let ack_elapsed = started.elapsed();
    let cpu_ack = cpu_seconds(pid)? - cpu_before;
    let rss_after = vm_kib(pid, "VmRSS:")?;
    while !searchable()? {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let searchable_elapsed = started.elapsed();
    let run = IngestRun {
        refused,
        ack_elapsed,
        cpu_ack,
        rss_after,
        searchable_elapsed,
        cpu_total: cpu_seconds(pid)? - cpu_before,
        threads_before,
        threads: thread_cpu_seconds(pid)?,
        self_metrics: http_get_body(&server.query, "/metrics")?.1,
        peak_rss: vm_kib(pid, "VmHWM:")?,
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(run)
}

impl IngestRun {
    /// The run's figures: the CPU profile, then how many records (`count`), `amount` per
    /// second acknowledged and searchable, CPU, peak RSS and disk per record.
    fn report(
        &self,
        signal: &str,
        count: (&str, f64),
        amount: (f64, &str),
        disk_per: (&str, f64),
        report: &mut Report,
    ) {
        profile(
            &self.threads_before,
            &self.threads,
            self.cpu_total,
            &self.self_metrics,
            signal,
            report,
        );
        let secs = self.ack_elapsed.as_secs_f64();
        report.figure(count.0, count.1, count.0);
        report.figure("acknowledged", amount.0 / secs, amount.1);
        report.figure(
            "searchable",
            amount.0 / self.searchable_elapsed.as_secs_f64(),
            amount.1,
        );
        report.figure(
            "server CPU until acknowledged",
            self.cpu_ack / secs,
            "cores",
        );
        report.figure("server peak RSS", self.peak_rss as f64 / 1024.0, "MiB");
        report.figure(format!("disk per {}", disk_per.0), disk_per.1, "B");
    }
}

/// Log ingest: about 1 KB structured JSON lines, then log queries.
async fn run_logs(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let (server_bin, data_dir) = server_bin_and_data_dir(args)?;
    let requests = args.lines.div_ceil(args.batch);
    let total_lines = requests * args.batch;
    let sample = make_log_request(0, args.batch);
    let line_bytes: usize = sample.resource_logs[0].scope_logs[0]
        .log_records
        .iter()
        .map(|r| match r.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(text)) => text.len(),
            _ => 0,
        })
        .sum::<usize>()
        / args.batch;
    let request_bytes = sample.encoded_len();
    println!(
        "load: {requests} requests x {} log lines = {total_lines} lines, body about {line_bytes} B/line, {:.1} MB per request encoded (encoded while sending)",
        args.batch,
        request_bytes as f64 / 1e6
    );

    let server = start_server(&server_bin, &data_dir, &args.server_args)?;
    let batch = args.batch;
    let encoded = Arc::new(AtomicU64::new(0));
    let counter = encoded.clone();
    let load: Load = Arc::new(move |i| {
        (i < requests).then(|| {
            let bytes = Bytes::from(make_log_request(i as u64, batch).encode_to_vec());
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            bytes
        })
    });
    // Searchable: the last request's last line is found.
    let last = make_log_request(requests as u64 - 1, batch);
    let last_id = last.resource_logs[0].scope_logs[0].log_records[batch - 1]
        .attributes
        .iter()
        .find(|kv| kv.key == "line.id")
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Value::IntValue(n)) => Some(*n),
            _ => None,
        })
        .context("no line.id")?;
    let own_cpu_before = cpu_seconds(std::process::id())?;
    let run = ingest(
        &server,
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        args.streams,
        load,
        || {
            let path = format!("/api/v1/logs?query=line.id:{last_id}&limit=1");
            Ok(!http_get_body(&server.query, &path)?
                .1
                .contains("\"data\":[]"))
        },
    )
    .await?;
    let own_cpu = cpu_seconds(std::process::id())? - own_cpu_before;
    let IngestRun {
        refused,
        ack_elapsed,
        cpu_ack,
        searchable_elapsed: searchable,
        cpu_total,
        peak_rss,
        ..
    } = run;
    let query_report = if args.no_queries {
        Vec::new()
    } else {
        measure_log_queries(&server.query, requests as u64, batch, report)?
    };
    server.stop();
    // A stop in the middle of a merge leaves the segment it was writing; the next start
    // deletes it. The index at rest is what a restart leaves.
    let bytes_at_stop = dir_bytes(&data_dir.join("logs"));
    start_server(&server_bin, &data_dir, &args.server_args)?.stop();
    let index_bytes = dir_bytes(&data_dir.join("logs"));
    let body_mb = (line_bytes * total_lines) as f64 / 1e6;
    let secs = ack_elapsed.as_secs_f64();
    println!(
        "acknowledged: {total_lines} lines in {secs:.2} s = {:.0} lines/s, {:.1} MB/s of log bodies, {:.1} MB/s OTLP protobuf",
        total_lines as f64 / secs,
        body_mb / secs,
        encoded.load(Ordering::Relaxed) as f64 / 1e6 / secs
    );
    println!("refused (UNAVAILABLE, retried): {refused}");
    println!(
        "searchable: all lines after {:.2} s = {:.1} MB/s of log bodies",
        searchable.as_secs_f64(),
        body_mb / searchable.as_secs_f64()
    );
    println!(
        "server CPU: {cpu_ack:.1} s until acknowledged ({:.2} cores), {cpu_total:.1} s until searchable; generator (this process) {own_cpu:.1} s",
        cpu_ack / secs
    );
    println!("server RSS: peak {:.0} MiB", peak_rss as f64 / 1024.0);
    println!(
        "disk: log index {:.1} MB = {:.0} B/line ({})",
        index_bytes as f64 / 1e6,
        index_bytes as f64 / total_lines as f64,
        bytes_by_extension(&data_dir.join("logs"))
            .iter()
            .map(|(ext, bytes)| format!("{ext} {:.0} B/line", *bytes as f64 / total_lines as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let segments = segment_docs(&data_dir.join("logs"))?;
    println!(
        "  {} segments at rest, documents in each: {segments:?}",
        segments.len()
    );
    println!(
        "  at the stop, before the restart: {:.0} B/line (what a merge cut short by the stop left)",
        bytes_at_stop as f64 / total_lines as f64,
    );
    for (field, parts) in bytes_by_field(&data_dir.join("logs"))? {
        let per_line = |bytes: u64| bytes as f64 / total_lines as f64;
        let total = per_line(parts.iter().map(|(_, bytes)| bytes).sum());
        if total >= 0.5 {
            println!(
                "  {field}: {total:.0} B/line ({})",
                parts
                    .iter()
                    .filter(|(_, bytes)| per_line(*bytes) >= 0.5)
                    .map(|(part, bytes)| format!("{part} {:.0}", per_line(*bytes)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    for line in query_report {
        println!("{line}");
    }
    run.report(
        "logs",
        ("lines", total_lines as f64),
        (body_mb, "MB/s of bodies"),
        ("line", index_bytes as f64 / total_lines as f64),
        report,
    );
    report.figure(
        "disk per line at the stop (with what a merge cut short left)",
        bytes_at_stop as f64 / total_lines as f64,
        "B",
    );
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// Times log queries on the loaded data: each `RUNS` times, p50 and max printed.
fn measure_log_queries(
    query: &str,
    requests: u64,
    batch: usize,
    figures: &mut Report,
) -> anyhow::Result<Vec<String>> {
    const RUNS: usize = 21;
    let correlation = |i: u64| format!("{:016x}", mix((i * 7919 % (requests * batch as u64)) / 4));
    // A trace id as `make_log_request` gives it: the even lines of each run of eight share one.
    let trace = |i: u64| {
        let n = i * 7919 % (requests * batch as u64);
        format!("{:016x}{:016x}", mix(n / 8), n / 8 + 1)
    };
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "newest 100 lines containing a term (\"timeout\", ~1 line in 12)".into(),
            vec!["/api/v1/logs?query=timeout&limit=100".into(); RUNS],
        ),
        (
            "newest 100 lines containing a rare term (\"deadlock\", ~1 line in 400)".into(),
            vec!["/api/v1/logs?query=deadlock&limit=100".into(); RUNS],
        ),
        (
            "newest 100 lines with a phrase (\"timeout waiting for upstream\", ~1 line in 12)"
                .into(),
            vec![
                "/api/v1/logs?query=%22timeout%20waiting%20for%20upstream%22&limit=100".into();
                RUNS
            ],
        ),
        (
            "correlation id lookup (correlationId:<id>, 4 lines)".into(),
            (0..RUNS as u64)
                .map(|i| {
                    format!(
                        "/api/v1/logs?query=correlationId:{}&limit=100",
                        correlation(i)
                    )
                })
                .collect(),
        ),
        (
            "trace id lookup (trace_id:<id>, 4 lines, each confirmed on its record)".into(),
            (0..RUNS as u64)
                .map(|i| format!("/api/v1/logs?query=trace_id:{}&limit=100", trace(i)))
                .collect(),
        ),
        (
            "severity:ERROR AND service:payment-service, newest 100".into(),
            vec![
                "/api/v1/logs?query=severity:ERROR%20AND%20service:payment-service&limit=100"
                    .into();
                RUNS
            ],
        ),
        (
            "fields with their top 10 values (autocompletion), last 24 h, all lines".into(),
            vec!["/api/v1/logs/fields".into(); 5],
        ),
        (
            "volume histogram, last hour by minute, all lines".into(),
            vec!["/api/v1/logs/histogram?interval=1m".into(); 5],
        ),
        (
            "volume histogram of a phrase (every match checked on its record), last hour by minute"
                .into(),
            vec![
                "/api/v1/logs/histogram?interval=1m&query=%22timeout%20waiting%20for%20upstream%22"
                    .into();
                3
            ],
        ),
    ];
    let mut report = Vec::new();
    for (name, paths) in cases {
        let timed = time_gets(query, &paths)?;
        figures.figure(format!("{name}: p50"), millis(timed.p50()), "ms");
        figures.figure(format!("{name}: max"), millis(timed.max()), "ms");
        let found = timed.last_body.matches("\"cursor\":").count();
        report.push(format!(
            "query: {name}: {}",
            timed.summary(&format!(", {found} lines in the last answer"))
        ));
    }
    Ok(report)
}

/// Sentences of the `details` field; `{}` takes a number, an id or a duration. Application logs
/// are made of templates like these, which is what makes them compress.
const TEMPLATES: [&str; 24] = [
    "acquired database connection from pool orders-db after {} ms",
    "executed query SELECT id, status, total FROM orders WHERE customer_id = {} in {} ms",
    "cache miss for key customer:{}:profile, loading from database",
    "published event order.created to exchange shop.events with routing key orders.{}",
    "reserved {} items in warehouse eu-west-{} for order {}",
    "payment provider responded with status {} after {} ms",
    "retrying request to inventory-service, attempt {} of 3, backoff {} ms",
    "validated cart {} with {} items, total {} EUR",
    "user session {} refreshed, expires in {} seconds",
    "circuit breaker payment-gateway is closed, {} failures in the last minute",
    "sent notification email to customer {} using template order-confirmation-v{}",
    "consumer order-events acknowledged message {} from queue order.created",
    "request POST /api/orders handled by worker {} in {} ms",
    "loaded {} products from catalog page {}",
    "applied discount code SPRING{} to order {}",
    "shipment {} scheduled with carrier dhl for delivery in {} days",
    "released database connection to pool orders-db, {} idle, {} active",
    "feature flag new-checkout evaluated to {} for user {}",
    "rate limiter allowed request from client {}, {} tokens left",
    "compensation step cancel-reservation completed for order {}",
    "span exported to collector, batch of {} spans, queue size {}",
    "health check of dependency postgres passed in {} ms",
    "token for client {} validated, scopes orders:read orders:write",
    "response serialized, {} bytes, gzip ratio 0.{}",
];

/// Request `index` of the log load: `batch` JSON lines of about 1 KB from 5 services, a trace
/// id on half of them, four lines per correlation id.
fn make_log_request(index: u64, batch: usize) -> ExportLogsServiceRequest {
    const MESSAGES: [&str; 6] = [
        "Order created successfully",
        "Payment authorized",
        "Inventory reserved",
        "Request completed",
        "Cache refreshed",
        "Upstream call failed",
    ];
    let service = SERVICES[(index % 5) as usize];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let records = (0..batch as u64)
        .map(|i| {
            let n = index * batch as u64 + i;
            let r = mix(n);
            let severity = match r % 100 {
                0..=1 => 17,
                2..=6 => 13,
                7..=9 => 5,
                _ => 9,
            };
            let mut text = String::with_capacity(700);
            let mut x = r;
            while text.len() < 600 {
                x = mix(x);
                let mut parts = TEMPLATES[(x % 24) as usize].split("{}");
                text.push_str(parts.next().unwrap_or_default());
                for part in parts {
                    x = mix(x);
                    text.push_str(&(x % 100_000).to_string());
                    text.push_str(part);
                }
                text.push_str(". ");
            }
            if r.is_multiple_of(12) {
                text.push_str("timeout waiting for upstream");
            }
            if r % 400 == 1 {
                text.push_str(" deadlock detected");
            }
            let body = format!(
                r#"{{"level":"{}","service":"{service}","correlationId":"{:016x}","userId":"user-{}","message":"{}","orderId":"order-{}","duration":{},"http":{{"method":"POST","path":"/api/orders","status":{}}},"thread":"tokio-runtime-worker-{}","logger":"shop.{}.handler","details":"{}"}}"#,
                match severity { 17 => "ERROR", 13 => "WARN", 5 => "DEBUG", _ => "INFO" },
                mix(n / 4),
                r % 5000,
                MESSAGES[(r % 6) as usize],
                n / 3,
                r % 2000,
                if severity == 17 { 502 } else { 201 },
                r % 8,
                service.trim_end_matches("-service"),
                text.trim_end()
            );
            let mut trace_id = Vec::new();
            let mut span_id = Vec::new();
            if n.is_multiple_of(2) {
                trace_id.extend_from_slice(&mix(n / 8).to_be_bytes());
                trace_id.extend_from_slice(&(n / 8 + 1).to_be_bytes());
                span_id.extend_from_slice(&mix(n ^ 0x5bd1e995).to_be_bytes());
            }
            LogRecord {
                time_unix_nano: now + n * 1000,
                observed_time_unix_nano: now + n * 1000,
                severity_number: severity,
                body: Some(AnyValue {
                    value: Some(Value::StringValue(body)),
                }),
                attributes: vec![int_kv("line.id", n as i64)],
                trace_id,
                span_id,
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    string_kv("service.name", service),
                    string_kv("host.name", "bench-host"),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "bench".into(),
                    ..Default::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Metric ingest: `--series` counters with 15 s samples over `--hours`, then PromQL.
async fn run_metrics(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let (server_bin, data_dir) = server_bin_and_data_dir(args)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let steps = (args.hours * 3_600_000.0 / METRIC_STEP_MS as f64) as i64;
    let first_ms = now_ms - steps * METRIC_STEP_MS;
    let series = args.series;
    let total_samples = series as u64 * steps as u64;
    let streams = args.streams.max(1);
    println!(
        "load: {series} counters x {steps} samples (15 s apart, {:.1} h) = {total_samples} samples, {METRICS_PER_REQUEST} per request, {streams} streams",
        args.hours
    );
    let mut extra = vec![
        "--metrics-retention".to_owned(),
        format!("{}h", (args.hours * 2.0).ceil() as u64 + 1),
    ];
    extra.extend(args.server_args.iter().cloned());
    let server = start_server(&server_bin, &data_dir, &extra)?;
    let pid = server.pid;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = at_rest(&server, Duration::ZERO)?;

    // Memory as Prometheus and VictoriaMetrics quote it: a cost per sample and a cost per
    // series, from what the resident set holds at rest. The load comes in two halves of the
    // hours, every series in step as in real life, with the memory at rest read after each:
    // what the second half adds is the cost of its samples (chunks, their buffers' growth and
    // the heap's fragmentation); what the whole holds beyond the idle server and its samples'
    // cost is the cost of the series (this also charges the series with whatever else the
    // server kept from the load, so it errs high).
    let phases = [
        ("the first half of the hours", 0..steps / 2),
        ("the second half of the hours", steps / 2..steps),
    ];
    let cpu_before = cpu_seconds(pid)?;
    let own_cpu_before = cpu_seconds(std::process::id())?;
    let mut sending = Duration::ZERO;
    let mut refused = 0;
    let mut rests = Vec::new();
    for (name, phase_steps) in phases {
        let (elapsed, phase_refused) =
            send_metrics_phase(&server, 0..series, phase_steps, streams, first_ms).await?;
        sending += elapsed;
        refused += phase_refused;
        // Once ingest has stopped, what stays resident is what the series hold: the server
        // hands freed memory back every few seconds.
        let rest = at_rest(&server, Duration::from_secs(12))?;
        println!(
            "  {name}: sent in {:.1} s; at rest {} series, {} samples, RSS {:.1} MiB ({:.1} MiB anonymous)",
            elapsed.as_secs_f64(),
            rest.series,
            rest.samples,
            rest.rss_all / (1 << 20) as f64,
            rest.rss / (1 << 20) as f64
        );
        rests.push(rest);
    }
    let elapsed = sending.as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu_before;
    let own_cpu = cpu_seconds(std::process::id())? - own_cpu_before;
    let peak = vm_kib(pid, "VmHWM:")?;
    let [half, last] = [&rests[0], &rests[1]];
    let per_sample = (last.rss - half.rss) / (last.samples - half.samples).max(1) as f64;
    let per_series =
        (last.rss - idle.rss - per_sample * last.samples as f64) / last.series.max(1) as f64;
    println!(
        "acknowledged: {total_samples} samples in {elapsed:.2} s of sending = {:.0} samples/s; refused (retried): {refused}",
        total_samples as f64 / elapsed
    );
    println!(
        "server CPU: {cpu:.1} s ({:.2} cores while sending); generator (this process) {own_cpu:.1} s",
        cpu / elapsed
    );
    println!("stored: {} samples in {} series", last.samples, last.series);
    println!(
        "store's own estimate: {:.0} B per series besides samples (labels, index, structs; no allocator overhead)",
        last.series_bytes / last.series.max(1) as f64
    );
    println!(
        "memory: compressed samples {:.2} B/sample; RSS {:.1} MiB idle ({:.1} anonymous), {:.1} MiB at rest after the load ({:.1} anonymous; peak {:.0} MiB)",
        last.chunk_bytes / last.samples.max(1) as f64,
        idle.rss_all / (1 << 20) as f64,
        idle.rss / (1 << 20) as f64,
        last.rss_all / (1 << 20) as f64,
        last.rss / (1 << 20) as f64,
        peak as f64 / 1024.0,
    );
    println!(
        "memory by anonymous RSS: {per_sample:.2} B per sample (all included: chunks, their growth and fragmentation), {per_series:.0} B per series beyond its samples' cost and the idle server"
    );
    let besides_samples =
        ((last.rss_all - idle.rss_all) - last.chunk_bytes) / last.series.max(1) as f64;
    println!(
        "memory by RSS, whole: {besides_samples:.0} B/series besides the compressed samples (all the server holds besides chunks, idle RSS aside, over the series)"
    );
    report.figure("samples", total_samples as f64, "samples");
    report.figure("acknowledged", total_samples as f64 / elapsed, "samples/s");
    report.figure("server CPU", cpu / elapsed, "cores");
    report.figure(
        "compressed samples",
        last.chunk_bytes / last.samples.max(1) as f64,
        "B/sample",
    );
    report.figure(
        "store's estimate per series besides samples",
        last.series_bytes / last.series.max(1) as f64,
        "B/series",
    );
    report.figure(
        "anonymous RSS per sample, all included",
        per_sample,
        "B/sample",
    );
    report.figure(
        "anonymous RSS per series beyond its samples",
        per_series,
        "B/series",
    );
    report.figure(
        "RSS at rest per series besides compressed samples",
        besides_samples,
        "B/series",
    );
    report.figure("server peak RSS", peak as f64 / 1024.0, "MiB");
    if !args.no_queries {
        let end_s = now_ms as f64 / 1000.0;
        let encode = |q: &str| {
            q.replace(' ', "%20")
                .replace('(', "%28")
                .replace(')', "%29")
                .replace('[', "%5B")
                .replace(']', "%5D")
        };
        let cases = [
            (
                "sum by (service) (rate(bench_requests_total[5m])), instant".to_owned(),
                format!("/prometheus/api/v1/query?query={}&time={end_s}", encode("sum by (service) (rate(bench_requests_total[5m]))")),
                21,
            ),
            (
                "sum by (service) (rate(bench_requests_total[5m])), range over the last 1 h, step 60 s".to_owned(),
                format!(
                    "/prometheus/api/v1/query_range?query={}&start={}&end={end_s}&step=60",
                    encode("sum by (service) (rate(bench_requests_total[5m]))"),
                    end_s - 3600.0
                ),
                5,
            ),
            (
                "one series by labels, instant".to_owned(),
                format!("/prometheus/api/v1/query?query={}&time={end_s}", encode("bench_requests_total{pod=\"pod-7\",service=\"svc-7\"}").replace('"', "%22").replace('{', "%7B").replace('}', "%7D").replace('=', "%3D")),
                21,
            ),
        ];
        for (name, path, runs) in cases {
            let timed = time_gets(&server.query, &vec![path; runs])?;
            report.figure(format!("{name}: p50"), millis(timed.p50()), "ms");
            println!("query: {name}: {}", timed.summary(""));
        }
    }
    let wal_before_stop = dir_bytes(&data_dir.join("metrics-wal"));
    // A clean stop writes the store to its snapshot and deletes the log it covers; a restart
    // reads the snapshot back.
    let stopping = Instant::now();
    server.stop();
    let stopped = stopping.elapsed();
    let wal = dir_bytes(&data_dir.join("metrics-wal"));
    let snapshot = dir_bytes(&data_dir.join("metrics-snapshot"));
    println!(
        "disk: metrics write-ahead log {:.1} MB before the stop, {:.1} MB after; snapshot {:.1} MB = {:.2} B/sample (stop took {:.1} s)",
        wal_before_stop as f64 / 1e6,
        wal as f64 / 1e6,
        snapshot as f64 / 1e6,
        snapshot as f64 / last.samples.max(1) as f64,
        stopped.as_secs_f64()
    );
    let restarting = Instant::now();
    let server = start_server(&server_bin, &data_dir, &extra)?;
    let ready = restarting.elapsed();
    let back = at_rest(&server, Duration::ZERO)?;
    println!(
        "restart: ready in {:.2} s with {} of {} samples in {} series back",
        ready.as_secs_f64(),
        back.samples,
        last.samples,
        back.series
    );
    report.figure("snapshot", snapshot as f64 / 1e6, "MB");
    report.figure("restart until ready", ready.as_secs_f64(), "s");
    server.stop();
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// The metric store at rest: resident memory and what `status/tsdb` says it holds.
struct AtRest {
    /// Anonymous resident memory (heap, stacks): what data can cost. The binary's code pages
    /// (file-backed) come in as code paths are first run, whatever the data.
    rss: f64,
    /// All resident memory.
    rss_all: f64,
    series: u64,
    samples: u64,
    chunk_bytes: f64,
    series_bytes: f64,
}

/// Waits `settle`, then reads the server's RSS and its TSDB status.
fn at_rest(server: &BenchServer, settle: Duration) -> anyhow::Result<AtRest> {
    std::thread::sleep(settle);
    let rss = (vm_kib(server.pid, "RssAnon:")? * 1024) as f64;
    let rss_all = (vm_kib(server.pid, "VmRSS:")? * 1024) as f64;
    let (_, tsdb) = http_get_body(&server.query, "/prometheus/api/v1/status/tsdb")?;
    let tsdb: serde_json::Value = serde_json::from_str(&tsdb)?;
    let number = |value: &serde_json::Value| value.as_u64().unwrap_or(0);
    Ok(AtRest {
        rss,
        rss_all,
        series: number(&tsdb["data"]["headStats"]["numSeries"]),
        samples: number(&tsdb["data"]["sightline"]["samples"]),
        chunk_bytes: number(&tsdb["data"]["sightline"]["chunkBytes"]) as f64,
        series_bytes: number(&tsdb["data"]["sightline"]["seriesBytes"]) as f64,
    })
}

/// Time between two samples of a series in the metric load.
const METRIC_STEP_MS: i64 = 15_000;
/// Samples per export request of the metric load.
const METRICS_PER_REQUEST: usize = 2_500;

/// Sends the samples of `series` at `steps` after `first_ms` (each stream owns a slice of the series and sends
/// it one timestamp after the other, so every series receives its samples in time order).
/// Up to 10M samples (about 400 MB of requests) are encoded before the clock starts, more while
/// they are sent. Returns the time spent sending and the refusals retried.
async fn send_metrics_phase(
    server: &BenchServer,
    series: std::ops::Range<usize>,
    steps: std::ops::Range<i64>,
    streams: usize,
    first_ms: i64,
) -> anyhow::Result<(Duration, u64)> {
    let group = series.len().div_ceil(streams);
    let pre_encode = series.len() as u64 * (steps.end - steps.start).max(0) as u64 <= 10_000_000;
    let mut loads = Vec::new();
    for stream in 0..streams {
        let lo = series.start + stream * group;
        let hi = (lo + group).min(series.end);
        let steps = steps.clone();
        // The stream's samples, step after step, cut into requests of the same size whatever
        // the slice's width (a request may end inside a step, or hold several).
        let width = hi.saturating_sub(lo);
        let samples = width * (steps.end - steps.start).max(0) as usize;
        let encode = move |i: usize| {
            let begin = i * METRICS_PER_REQUEST;
            let end = (begin + METRICS_PER_REQUEST).min(samples);
            if begin >= end {
                return None;
            }
            let runs: Vec<_> = (begin / width..=(end - 1) / width)
                .map(|k| {
                    let from = lo + begin.max(k * width) - k * width;
                    let to = lo + end.min((k + 1) * width) - k * width;
                    (
                        from..to,
                        first_ms + (steps.start + k as i64) * METRIC_STEP_MS,
                    )
                })
                .collect();
            Some(Bytes::from(
                make_metrics_request(&runs, first_ms).encode_to_vec(),
            ))
        };
        let load: Load = if pre_encode {
            let requests: Vec<Bytes> = (0..).map_while(encode).collect();
            Arc::new(move |i| requests.get(i).cloned())
        } else {
            Arc::new(encode)
        };
        loads.push(load);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for load in loads {
        let grpc = server.grpc.clone();
        tasks.push(tokio::spawn(async move {
            send_all(
                &grpc,
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                1,
                load,
            )
            .await
        }));
    }
    let mut refused = 0;
    for task in tasks {
        refused += task.await??;
    }
    Ok((started.elapsed(), refused))
}

/// Crash recovery: rich spans are sent with commits held off, so that everything acknowledged is
/// in the write-ahead log only, until the log holds `--wal-bytes`; then `kill -9`, a restart on
/// the same data directory, and the time until the server is ready (it has replayed the log)
/// and until the last acknowledged span is searchable.
async fn run_recovery(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    const CHUNK: usize = 256;
    let (server_bin, data_dir) = server_bin_and_data_dir(args)?;
    let mut extra = vec!["--commit-interval-millis".to_owned(), "3600000".to_owned()];
    extra.extend(args.server_args.iter().cloned());
    let server = start_server(&server_bin, &data_dir, &extra)?;
    let wal_dir = data_dir.join("wal");
    let mut sent = 0u64;
    while dir_bytes(&wal_dir) < args.wal_bytes {
        let requests: Arc<Vec<Bytes>> = Arc::new(
            (sent..sent + CHUNK as u64)
                .map(|i| Bytes::from(make_request(Shape::Rich, i, args.batch).encode_to_vec()))
                .collect(),
        );
        send_all(
            &server.grpc,
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            args.streams,
            Arc::new(move |i| requests.get(i).cloned()),
        )
        .await?;
        sent += CHUNK as u64;
    }
    server.crash();
    let wal_bytes = dir_bytes(&wal_dir);
    let spans = sent * args.batch as u64;
    println!(
        "crashed (kill -9) with {:.0} MB of write-ahead log: {spans} acknowledged rich spans, none committed",
        wal_bytes as f64 / 1e6
    );

    let started = Instant::now();
    let server = start_server(&server_bin, &data_dir, &args.server_args)?;
    let ready = started.elapsed();
    let last = make_request(Shape::Rich, sent - 1, args.batch);
    let last_trace = hex(&last.resource_spans[0].scope_spans[0].spans[0].trace_id);
    while http_get(&server.query, &format!("/api/traces/{last_trace}"))? != 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let searchable = started.elapsed();
    let peak_rss = vm_kib(server.pid, "VmHWM:")?;
    server.stop();
    println!(
        "restart: ready after {:.2} s (write-ahead log replayed), last span searchable after {:.2} s; peak RSS {:.0} MiB",
        ready.as_secs_f64(),
        searchable.as_secs_f64(),
        peak_rss as f64 / 1024.0
    );
    report.figure("write-ahead log at the crash", wal_bytes as f64 / 1e6, "MB");
    report.figure("spans in it", spans as f64, "spans");
    report.figure("ready after restart", ready.as_secs_f64(), "s");
    report.figure(
        "last span searchable after restart",
        searchable.as_secs_f64(),
        "s",
    );
    report.figure(
        "server peak RSS during replay",
        peak_rss as f64 / 1024.0,
        "MiB",
    );
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// Runs of counters, each `(series, timestamp)`: service `svc-<i % 20>`, pod `pod-<i / 20>`, values
/// growing by a few requests per 15 s.
fn make_metrics_request(
    runs: &[(std::ops::Range<usize>, i64)],
    start_ms: i64,
) -> ExportMetricsServiceRequest {
    use sightline_proto::otlp::metrics::v1::{
        metric, number_data_point, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    let points = runs
        .iter()
        .flat_map(|(series, t_ms)| series.clone().map(move |i| (i, *t_ms)))
        .map(|(i, t_ms)| {
            let step = ((t_ms - start_ms) / METRIC_STEP_MS) as u64;
            // A counter that needs no history: a per-series rate per step plus noise below the
            // rate, so it never goes down.
            let rate = 1 + mix(i as u64) % 9;
            let value = (step * rate + mix(i as u64 ^ step) % rate) as f64;
            NumberDataPoint {
                attributes: vec![
                    string_kv("service", &format!("svc-{}", i % 20)),
                    string_kv("pod", &format!("pod-{}", i / 20)),
                ],
                start_time_unix_nano: start_ms as u64 * 1_000_000,
                time_unix_nano: t_ms as u64 * 1_000_000,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", "bench")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "bench.requests".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: points,
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The services the span and log loads come from.
const SERVICES: [&str; 5] = [
    "gateway",
    "order-service",
    "payment-service",
    "inventory-service",
    "notification-service",
];

/// The `sightline` binary to run and a fresh data directory for it.
fn server_bin_and_data_dir(args: &Args) -> anyhow::Result<(PathBuf, PathBuf)> {
    let server_bin = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("sightline"),
    };
    let data_dir = std::env::temp_dir().join(format!("sightline-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok((server_bin, data_dir))
}

/// A `sightline` process started for a run, with its bound addresses.
struct BenchServer {
    child: std::process::Child,
    pid: u32,
    grpc: String,
    query: String,
}

/// A server left behind by an error or a panic is killed.
impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BenchServer {
    /// `kill -9`: nothing is committed or flushed.
    fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn start_server(
    bin: &PathBuf,
    data_dir: &PathBuf,
    extra: &[String],
) -> anyhow::Result<BenchServer> {
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--grpc-listen-addr", "127.0.0.1:0"])
        .args(["--http-listen-addr", "127.0.0.1:0"])
        .args(["--query-listen-addr", "127.0.0.1:0"])
        .args(extra)
        .env(
            "SIGHTLINE_LOG",
            std::env::var("SIGHTLINE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut ready)?;
    let addr = |name: &str| {
        ready
            .split_whitespace()
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
            .with_context(|| format!("no {name} address in {ready:?}"))
    };
    Ok(BenchServer {
        pid,
        grpc: format!("http://{}", addr("grpc")?),
        query: addr("query")?,
        child,
    })
}

/// The `i`-th encoded request of a load, `None` past its end.
type Load = Arc<dyn Fn(usize) -> Option<Bytes> + Send + Sync>;

/// Sends every request of `load` to the gRPC method `path` over `streams` connections, retrying
/// refusals; returns how many refusals there were.
async fn send_all(
    grpc: &str,
    path: &'static str,
    streams: usize,
    load: Load,
) -> anyhow::Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let channel = tonic::transport::Endpoint::from_shared(grpc.to_owned())?
            .connect()
            .await?;
        let (load, next, refused) = (load.clone(), next.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = tonic::client::Grpc::new(channel);
            let path = PathAndQuery::from_static(path);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(body) = load(i) else { break };
                loop {
                    client.ready().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    match client
                        .unary(tonic::Request::new(body.clone()), path.clone(), RawCodec)
                        .await
                    {
                        Ok(_) => break,
                        Err(status) if status.code() == tonic::Code::Unavailable => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(status) => bail!("export failed: {status}"),
                    }
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(refused.load(Ordering::Relaxed))
}

/// Times the query API on the loaded data: each query run `RUNS` times, p50 and max printed.
fn measure_queries(
    query: &str,
    shape: Shape,
    requests: u64,
    batch: usize,
    figures: &mut Report,
) -> anyhow::Result<Vec<String>> {
    const RUNS: usize = 21;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let week_ago = now - 7 * 24 * 3600 * 1_000_000_000;
    let trace_of = |i: u64| {
        let request = make_request(shape, i % requests, batch);
        hex(&request.resource_spans[0].scope_spans[0].spans[0].trace_id)
    };
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "trace by id (Jaeger /api/traces/{id})".into(),
            (0..RUNS as u64).map(|i| format!("/api/traces/{}", trace_of(i * 7919))).collect(),
        ),
        (
            "trace by id, native (/api/v1/traces/{id})".into(),
            (0..RUNS as u64).map(|i| format!("/api/v1/traces/{}", trace_of(i * 104_729))).collect(),
        ),
        (
            "search: newest 20 traces, all services".into(),
            vec!["/api/v1/traces?limit=20".into(); RUNS],
        ),
        (
            "search: service=payment-service, error=true, 20 traces".into(),
            vec!["/api/v1/traces?service=payment-service&error=true&limit=20".into(); RUNS],
        ),
        (
            "search: 7 days, no match (service + attribute)".into(),
            vec![format!("/api/v1/traces?service=gateway&tag=user.id=nobody&start={week_ago}&end={now}&limit=20"); RUNS],
        ),
        (
            "search: 7 days, no match (span duration > 1 h)".into(),
            vec![format!("/api/v1/traces?minDuration=1h&start={week_ago}&end={now}&limit=20"); RUNS],
        ),
        (
            "search: attribute + trace duration (http.method:POST, trace >= 50 ms), 20 traces".into(),
            vec!["/api/v1/traces?query=http.method:POST&minTraceDuration=50ms&limit=20".into(); RUNS],
        ),
        (
            "search: rare attribute + trace duration (http.status_code:500, trace >= 50 ms), 20 traces".into(),
            vec!["/api/v1/traces?query=http.status_code:500&minTraceDuration=50ms&limit=20".into(); RUNS],
        ),
        (
            "Jaeger search: service=gateway, limit 20, last 2 days".into(),
            vec!["/api/traces?service=gateway&limit=20".into(); RUNS],
        ),
        (
            "dependency graph, last 24 h".into(),
            vec!["/api/v1/dependencies".into(); RUNS],
        ),
    ];
    let mut report = Vec::new();
    for (name, paths) in cases {
        let timed = time_gets(query, &paths)?;
        figures.figure(format!("{name}: p50"), millis(timed.p50()), "ms");
        figures.figure(format!("{name}: max"), millis(timed.max()), "ms");
        report.push(format!("query: {name}: {}", timed.summary("")));
    }
    Ok(report)
}

/// Sends pre-encoded request bytes as they are; decodes the answer.
#[derive(Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

/// Answers are skipped: a partial success would only come from invalid records, and the
/// generated load has none.
impl Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        use prost::bytes::Buf;
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int_kv(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// Request `index` of the load: `batch` spans in traces of 8 spans, in 5 services.
fn make_request(shape: Shape, index: u64, batch: usize) -> ExportTraceServiceRequest {
    let service = SERVICES[(index % 5) as usize];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let spans = (0..batch as u64)
        .map(|i| {
            let n = index * batch as u64 + i;
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&mix(n / 8).to_be_bytes());
            trace_id[8..].copy_from_slice(&(n / 8 + 1).to_be_bytes());
            let start = now + n * 1000;
            let attributes = match shape {
                Shape::Small => vec![int_kv("http.status_code", 200), int_kv("retry.count", (n % 3) as i64)],
                Shape::Rich => vec![
                    string_kv("http.method", if n.is_multiple_of(3) { "POST" } else { "GET" }),
                    string_kv("http.route", "/api/orders/{orderId}/items"),
                    string_kv("http.status_code", if n.is_multiple_of(50) { "500" } else { "200" }),
                    string_kv("http.url", &format!("http://order-service:8080/api/orders/{}/items", n % 10_000)),
                    string_kv("net.peer.name", "order-service.shop.svc.cluster.local"),
                    string_kv("db.system", "postgresql"),
                    string_kv("db.name", "orders"),
                    string_kv("db.statement", "SELECT id, status, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 20"),
                    string_kv("user.id", &format!("user-{}", n % 5000)),
                    string_kv("correlationId", &format!("{:016x}", mix(n / 8))),
                    string_kv("thread.name", "tokio-runtime-worker"),
                ],
            };
            Span {
                trace_id: trace_id.to_vec(),
                span_id: mix(n ^ 0x5bd1e995).to_be_bytes().to_vec(),
                parent_span_id: if n.is_multiple_of(8) { vec![] } else { mix((n - n % 8) ^ 0x5bd1e995).to_be_bytes().to_vec() },
                name: match shape {
                    Shape::Small => format!("op-{}", n % 20),
                    Shape::Rich => format!("GET /api/orders/{{orderId}}/items#{}", n % 20),
                },
                kind: if n.is_multiple_of(8) { 2 } else { 3 },
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_000_000 + (mix(n) % 50_000_000),
                attributes,
                status: Some(Status { code: if n.is_multiple_of(50) { 2 } else { 0 }, message: String::new() }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    string_kv("service.name", service),
                    string_kv("host.name", "bench-host"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "bench".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// splitmix64: spreads ids without a random-number dependency.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

/// The status code of a plain HTTP/1.0 GET, once the whole answer has been read (no client
/// library needed for a few polls).
fn http_get(addr: &str, path: &str) -> anyhow::Result<u16> {
    Ok(http_get_body(addr, path)?.0)
}

/// The status code and body of a plain HTTP/1.0 GET.
fn http_get_body(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let head = answer.get(9..12).context("short HTTP answer")?;
    let status = std::str::from_utf8(head)?.parse()?;
    let text = String::from_utf8_lossy(&answer);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok((status, body))
}

/// CPU seconds of each thread of `pid` by thread name, trailing digits folded
/// (`thrd-tantivy-index0` and `...1` are `thrd-tantivy-index*`), from `/proc/<pid>/task/`.
fn thread_cpu_seconds(pid: u32) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
    let mut threads = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        // A thread may end between listing and reading: skip it.
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue;
        };
        let name = name.trim();
        let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
        let name = if stem.len() < name.len() {
            format!("{stem}*")
        } else {
            name.to_owned()
        };
        *threads.entry(name).or_insert(0.0) += stat_cpu_seconds(&stat)?;
    }
    Ok(threads)
}

/// Where the server's CPU went during a load, by thread (the operating system's own count):
/// the runtime's threads (`sightline`) receive, decode, validate and encode requests and answer
/// queries; `sl-wal-*` writes and syncs
/// the write-ahead log; `sl-index-*` feeds the index writer and commits; tantivy's
/// `thrd-tantivy-index*` threads build segments, its `merge_thread_*` merge them. Commit wall
/// time comes from the server's own histogram.
fn profile(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    total: f64,
    self_metrics: &str,
    signal: &str,
    report: &mut Report,
) {
    let mut spent: Vec<(String, f64)> = after
        .iter()
        .map(|(name, cpu)| (name.clone(), cpu - before.get(name).copied().unwrap_or(0.0)))
        .filter(|(_, cpu)| *cpu >= 0.05)
        .collect();
    spent.sort_by(|a, b| b.1.total_cmp(&a.1));
    // The process's total counts threads that have ended too: tantivy's index workers end at
    // each commit, so what the live threads do not account for is mostly theirs.
    let ended = total - spent.iter().map(|(_, cpu)| cpu).sum::<f64>();
    if ended >= 0.05 {
        spent.push(("ended threads (tantivy index workers)".into(), ended));
    }
    println!("profile: server CPU by thread, {total:.1} s in all:");
    for (name, cpu) in &spent {
        println!(
            "  {name:<40} {cpu:>7.1} s  {:>5.1} %",
            100.0 * cpu / total.max(1e-9)
        );
        report.figure(format!("CPU in {name}"), *cpu, "s");
    }
    let metric = |name: &str| {
        self_metrics.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let rest = rest.strip_prefix(&format!("{{signal=\"{signal}\"}} "))?;
            rest.trim().parse::<f64>().ok()
        })
    };
    if let (Some(sum), Some(count)) = (
        metric("sightline_index_commit_duration_seconds_sum"),
        metric("sightline_index_commit_duration_seconds_count"),
    ) {
        println!(
            "  commits: {count:.0}, {sum:.1} s of wall time in all ({:.0} ms each)",
            1e3 * sum / count.max(1.0)
        );
        report.figure("commit wall time in all", sum, "s");
    }
}

/// The times of GETs on the query port, sorted, and the body of the last answer.
struct Timed {
    times: Vec<Duration>,
    last_body: String,
}

impl Timed {
    fn p50(&self) -> Duration {
        self.times[self.times.len() / 2]
    }

    fn max(&self) -> Duration {
        self.times[self.times.len() - 1]
    }

    /// `p50 1.2 ms, max 3.4 ms (21 runs{more})`.
    fn summary(&self, more: &str) -> String {
        format!(
            "p50 {:.1} ms, max {:.1} ms ({} runs{more})",
            millis(self.p50()),
            millis(self.max()),
            self.times.len()
        )
    }
}

/// Times a GET of each path, one after the other; any answer but 200 stops the bench.
fn time_gets(query: &str, paths: &[String]) -> anyhow::Result<Timed> {
    let mut timed = Timed {
        times: Vec::with_capacity(paths.len()),
        last_body: String::new(),
    };
    for path in paths {
        let started = Instant::now();
        let (status, body) = http_get_body(query, path)?;
        timed.times.push(started.elapsed());
        if status != 200 {
            bail!("{path}: HTTP {status}: {body}");
        }
        timed.last_body = body;
    }
    if timed.times.is_empty() {
        bail!("no query to time");
    }
    timed.times.sort();
    Ok(timed)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// User + system CPU seconds of a process, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// User plus system CPU seconds of a `/proc/.../stat` line (a process's or a thread's).
fn stat_cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    let after_name = stat.rsplit_once(')').context("bad /proc stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); after the name, state is index 0, so utime is 11, stime 12.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// A `Vm*:` line of /proc/<pid>/status, in KiB.
fn vm_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .context("no such /proc status line")?
        .parse()
        .map_err(Into::into)
}

/// Bytes of the files of a tantivy index by extension (store, term, idx, pos, fast, ...),
/// largest first.
fn bytes_by_extension(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut sizes = std::collections::BTreeMap::<String, u64>::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ext = name.rsplit('.').next().unwrap_or_default().to_owned();
        *sizes.entry(ext).or_default() += entry.metadata().map_or(0, |m| m.len());
    }
    let mut sizes: Vec<_> = sizes.into_iter().collect();
    sizes.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    sizes
}

/// Documents of each segment of a tantivy index, largest first (terms are kept per segment, so
/// the count bears on the size).
fn segment_docs(dir: &std::path::Path) -> anyhow::Result<Vec<u32>> {
    let searcher = tantivy::Index::open_in_dir(dir)?.reader()?.searcher();
    let mut docs: Vec<u32> = searcher
        .segment_readers()
        .iter()
        .map(|segment| segment.num_docs())
        .collect();
    docs.sort_unstable_by(|a, b| b.cmp(a));
    Ok(docs)
}

/// Bytes of a field's parts: `("terms", 1234)`, ...
type FieldParts = Vec<(&'static str, u64)>;

/// Bytes of a tantivy index by field, each split into its parts (terms, postings, positions, fast
/// column, field norms), and the doc store; largest field first.
fn bytes_by_field(dir: &std::path::Path) -> anyhow::Result<Vec<(String, FieldParts)>> {
    let searcher = tantivy::Index::open_in_dir(dir)?.reader()?.searcher();
    let mut fields = std::collections::BTreeMap::<String, FieldParts>::new();
    for segment in searcher.space_usage()?.segments() {
        let parts = [
            ("terms", segment.termdict()),
            ("postings", segment.postings()),
            ("positions", segment.positions()),
            ("fast", segment.fast_fields()),
            ("norms", segment.fieldnorms()),
        ];
        for (part, usage) in parts {
            for field in usage.fields() {
                let sizes = fields.entry(field.field_name().to_owned()).or_default();
                let bytes = field.total().get_bytes();
                match sizes.iter_mut().find(|(name, _)| *name == part) {
                    Some((_, total)) => *total += bytes,
                    None => sizes.push((part, bytes)),
                }
            }
        }
        let store = fields.entry("(doc store)".to_owned()).or_default();
        match store.first_mut() {
            Some((_, total)) => *total += segment.store().total().get_bytes(),
            None => store.push(("store", segment.store().total().get_bytes())),
        }
    }
    let mut fields: Vec<_> = fields.into_iter().collect();
    fields.sort_by_key(|(_, parts)| std::cmp::Reverse(parts.iter().map(|(_, b)| b).sum::<u64>()));
    Ok(fields)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| match entry.metadata() {
                    Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
                    Ok(meta) => meta.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
