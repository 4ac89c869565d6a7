//! Every acknowledged span survives `kill -9` during ingest, and a SIGTERM commits before exit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sightline_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;

use crate::otlp::{trace_id, trace_request};
use crate::support::{get_json, hex, metric, wait_for_trace, Server};

const SPANS_PER_TRACE: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_loses_no_acknowledged_span() {
    // A long commit interval: at the kill, most acknowledged spans exist only in the
    // write-ahead log, not in a committed index.
    let server = Server::start(&["--commit-interval-millis", "60000"]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let url = server.grpc_url();
        let stop = stop.clone();
        senders.push(tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(url).await.unwrap();
            let mut acknowledged = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let trace = trace_id();
                match client
                    .export(trace_request("durable", trace, SPANS_PER_TRACE))
                    .await
                {
                    Ok(_) => acknowledged.push(trace),
                    Err(_) => break, // the server died mid-request: not acknowledged
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = {
        // kill -9 while the senders are still sending.
        let restarted = tokio::task::spawn_blocking(move || server.kill9_and_restart())
            .await
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        restarted
    };
    let mut acknowledged = Vec::new();
    for sender in senders {
        acknowledged.extend(sender.await.unwrap());
    }
    eprintln!(
        "{} traces ({} spans) acknowledged before kill -9",
        acknowledged.len(),
        acknowledged.len() * SPANS_PER_TRACE
    );
    assert!(
        acknowledged.len() >= 10,
        "too few exports before the kill to prove anything"
    );
    assert!(
        server.log().contains("write-ahead log replayed"),
        "{}",
        server.log()
    );
    for trace in &acknowledged {
        // Replayed before /readyz, so visible at once: no waiting needed beyond one retry.
        let (trace_json, _) = wait_for_trace(
            &server,
            &hex(trace),
            SPANS_PER_TRACE,
            Duration::from_millis(500),
        )
        .await;
        assert_eq!(
            trace_json["spans"].as_array().unwrap().len(),
            SPANS_PER_TRACE
        );
    }
    let (_, services) = get_json(&server.query_url("/api/services")).await;
    assert_eq!(services["data"], serde_json::json!(["durable"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_before_exit_and_restart_finds_everything() {
    let mut server = Server::start(&["--commit-interval-millis", "60000"]);
    let trace = trace_id();
    let mut client = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    client
        .export(trace_request("graceful", trace, 7))
        .await
        .unwrap();
    drop(client);
    let status = server.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        server.log()
    );
    assert!(server.log().contains("indexer stopped"), "{}", server.log());
    let server = server.restart();
    wait_for_trace(&server, &hex(&trace), 7, Duration::from_millis(500)).await;
    // Found in the committed index, not replayed from the write-ahead log.
    assert!(
        server.log().contains(r#"signal="traces" replayed=0"#),
        "{}",
        server.log()
    );
    // Found in the committed index, not replayed from the write-ahead log.
    assert!(
        server.log().contains(r#"signal="traces" replayed=0"#),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_ahead_log_is_truncated_after_commits() {
    let server = Server::start(&[
        "--wal-segment-bytes",
        "65536",
        "--commit-interval-millis",
        "200",
    ]);
    let mut client = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let mut last = trace_id();
    for _ in 0..60 {
        last = trace_id();
        client
            .export(trace_request("wal", last, 100))
            .await
            .unwrap();
    }
    wait_for_trace(&server, &hex(&last), 100, Duration::from_secs(2)).await;
    // Segments are removed by the commit after the one that covers them.
    tokio::time::sleep(Duration::from_millis(600)).await;
    client
        .export(trace_request("wal", trace_id(), 1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;

    let written = metric(
        &server,
        r#"sightline_wal_written_bytes_total{signal="traces"}"#,
    )
    .await;
    let on_disk: u64 = std::fs::read_dir(server.data_dir().join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    eprintln!("write-ahead log: {written} bytes written, {on_disk} bytes on disk");
    assert!(
        written > 10.0 * 65536.0,
        "too little written to prove anything: {written}"
    );
    assert!(
        (on_disk as f64) < written / 4.0,
        "{on_disk} of {written} bytes still on disk"
    );
    assert_eq!(
        metric(&server, r#"sightline_wal_bytes{signal="traces"}"#).await,
        on_disk as f64
    );
}
