//! Retention: spans and logs past the maximum age are deleted in the background, and when the
//! data directory is over its disk budget the oldest go first; `/metrics` counts what went.

use std::path::Path;
use std::time::{Duration, Instant};

use prost::Message;
use sightline_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sightline_proto::otlp::common::v1::any_value::Value as OtlpValue;
use sightline_proto::otlp::common::v1::AnyValue;
use sightline_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sightline_proto::otlp::resource::v1::Resource;

use crate::otlp::{encode, kv, now_nanos, trace_id, trace_request};
use crate::support::{get_json, hex, metric, query_json, Server};

const HOUR: u64 = 3_600_000_000_000;

fn logs(service: &str, records: impl IntoIterator<Item = (u64, String)>) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", OtlpValue::StringValue(service.into()))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records
                    .into_iter()
                    .map(|(time, body)| LogRecord {
                        time_unix_nano: time,
                        body: Some(AnyValue {
                            value: Some(OtlpValue::StringValue(body)),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Exports `body`, retrying while the server says it is busy, as OTLP exporters do.
async fn post(server: &Server, path: &str, body: Vec<u8>) {
    loop {
        let response = reqwest::Client::new()
            .post(server.http_url(path))
            .header("content-type", "application/x-protobuf")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        if response.status() == 503 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        return;
    }
}

async fn count(server: &Server, query: &str) -> usize {
    let (_, body) = query_json(
        server,
        "/api/v1/logs",
        &[("query", query), ("limit", "1000")],
    )
    .await;
    body["data"].as_array().unwrap().len()
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not within 30 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_and_logs_older_than_the_maximum_age_are_deleted() {
    let server = Server::start(&[
        "--retention-max-age",
        "1h",
        "--retention-check-interval-millis",
        "200",
        "--commit-interval-millis",
        "100",
    ]);
    let now = now_nanos();
    let old_trace = trace_id();
    let new_trace = trace_id();
    let mut old = trace_request("aged", old_trace, 4);
    for span in &mut old.resource_spans[0].scope_spans[0].spans {
        span.start_time_unix_nano -= 2 * HOUR;
        span.end_time_unix_nano -= 2 * HOUR;
    }
    post(&server, "/v1/traces", encode(&old)).await;
    post(
        &server,
        "/v1/traces",
        encode(&trace_request("aged", new_trace, 3)),
    )
    .await;
    post(
        &server,
        "/v1/logs",
        logs(
            "aged",
            (0..10).map(|i| (now - 2 * HOUR + i, format!("old line {i}"))),
        ),
    )
    .await;
    post(
        &server,
        "/v1/logs",
        logs("aged", (0..5).map(|i| (now + i, format!("new line {i}")))),
    )
    .await;

    wait_until("new logs searchable", || async {
        count(&server, "new").await == 5
    })
    .await;
    wait_until("old logs deleted", || async {
        metric(
            &server,
            r#"sightline_retention_removed_records_total{reason="age",signal="logs"}"#,
        )
        .await
            == 10.0
    })
    .await;
    wait_until("old logs gone from searches", || async {
        count(&server, "old").await == 0
    })
    .await;
    wait_until("old trace deleted", || async {
        get_json(&server.query_url(&format!("/api/traces/{}", hex(&old_trace))))
            .await
            .0
            == 404
    })
    .await;
    assert_eq!(count(&server, "new").await, 5);
    let (status, body) =
        get_json(&server.query_url(&format!("/api/traces/{}", hex(&new_trace)))).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["spans"].as_array().unwrap().len(), 3);
    assert_eq!(
        metric(
            &server,
            r#"sightline_retention_removed_records_total{reason="age",signal="logs"}"#
        )
        .await,
        10.0
    );
    assert_eq!(
        metric(
            &server,
            r#"sightline_retention_removed_records_total{reason="age",signal="traces"}"#
        )
        .await,
        4.0
    );
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| {
                    let path = entry.path();
                    if path.is_dir() {
                        dir_bytes(&path)
                    } else {
                        entry.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_disk_budget_the_oldest_data_goes_first() {
    const BUDGET: u64 = 6_000_000;
    let server = Server::start(&[
        "--retention-max-age",
        "0",
        "--retention-max-disk-bytes",
        &BUDGET.to_string(),
        "--retention-check-interval-millis",
        "300",
        "--commit-interval-millis",
        "200",
        "--wal-segment-bytes",
        "1000000",
    ]);
    // 24 batches of 1,000 lines of ~1 KB of poorly compressible text, oldest first.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut word = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        format!("{seed:016x}")
    };
    let base = now_nanos() - HOUR;
    for batch in 0..24u64 {
        let records: Vec<(u64, String)> = (0..1_000u64)
            .map(|i| {
                let text: Vec<String> = (0..60).map(|_| word()).collect();
                (
                    base + batch * 1_000_000_000 + i,
                    format!("batch{batch} {}", text.join(" ")),
                )
            })
            .collect();
        post(&server, "/v1/logs", logs("budget", records)).await;
    }
    wait_until("the newest batch is searchable", || async {
        count(&server, "batch23").await == 1_000
    })
    .await;
    let data_dir = server.data_dir().to_owned();
    let started = Instant::now();
    while dir_bytes(&data_dir) > BUDGET {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the data directory is still {} bytes after 60 s (budget {BUDGET}); files: {:?}\nlog:\n{}",
            dir_bytes(&data_dir),
            std::fs::read_dir(data_dir.join("logs"))
                .unwrap()
                .flatten()
                .map(|e| (e.file_name(), e.metadata().unwrap().len()))
                .collect::<Vec<_>>(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "data directory: {} bytes (budget {BUDGET})",
        dir_bytes(&data_dir)
    );
    assert_eq!(
        count(&server, "batch0").await,
        0,
        "the oldest batch went first"
    );
    assert_eq!(
        count(&server, "batch23").await,
        1_000,
        "the newest batch stayed"
    );
    let removed = metric(
        &server,
        r#"sightline_retention_removed_records_total{reason="disk",signal="logs"}"#,
    )
    .await;
    assert!(removed >= 1_000.0, "{removed}");
}
