//! `sightline --demo`: seconds after start, traces, correlated logs, metrics and the service
//! map of the demo shop are there.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{get_json, metrics_text, Server};

async fn until<F: std::future::Future<Output = Option<Value>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> Value {
    let started = Instant::now();
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not within 30 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_mode_fills_traces_logs_metrics_and_the_service_map() {
    let server = Server::start(&["--demo", "--demo-rate", "20"]);
    let services = until("six services", || async {
        let (_, body) = get_json(&server.query_url("/api/services")).await;
        (body["data"].as_array().map_or(0, Vec::len) == 6).then_some(body)
    })
    .await;
    assert!(services["data"]
        .as_array()
        .unwrap()
        .contains(&Value::from("notification-service")));
    // A failed checkout, its logs linked to it by trace id.
    let failed = until("a failed checkout", || async {
        let (_, body) = get_json(
            &server
                .query_url("/api/v1/logs?query=severity:ERROR%20AND%20service:api-gateway&limit=1"),
        )
        .await;
        body["data"].get(0).cloned()
    })
    .await;
    let trace = failed["traceId"].as_str().unwrap().to_owned();
    assert!(
        failed["correlationIds"]["correlationId"].is_string(),
        "{failed}"
    );
    let (status, logs) = get_json(&server.query_url(&format!("/api/v1/traces/{trace}/logs"))).await;
    assert_eq!(status, 200);
    assert!(logs["data"].as_array().unwrap().len() >= 3, "{logs}");
    // Metrics from the services, and the span-derived service graph.
    until("request-duration histograms", || async {
        let (_, body) = get_json(&server.query_url(
            "/prometheus/api/v1/query?query=http_request_duration_seconds_count%7Bjob%3D%22shop%2Forder-service%22%7D",
        ))
        .await;
        body["data"]["result"].get(0).cloned()
    })
    .await;
    until("the gateway -> order-service edge", || async {
        let (_, body) = get_json(&server.query_url(
            "/prometheus/api/v1/query?query=traces_service_graph_request_total%7Bclient%3D%22api-gateway%22%2Cserver%3D%22order-service%22%7D",
        ))
        .await;
        body["data"]["result"].get(0).cloned()
    })
    .await;
    let (_, graph) = get_json(&server.query_url("/api/v1/dependencies")).await;
    let edges = graph["edges"].as_array().unwrap();
    assert!(
        edges
            .iter()
            .any(|e| e["parent"] == "order-service" && e["child"] == "rabbitmq"),
        "the broker is a node: {graph}"
    );
}

/// `sightline loadgen --protocol http`: the same generator over OTLP/HTTP (protobuf) to another
/// server; spans, logs and metrics all arrive, and it stops after `--seconds`.
#[tokio::test(flavor = "multi_thread")]
async fn loadgen_sends_traces_logs_and_metrics_over_otlp_http() {
    let server = Server::start(&[]);
    let status = tokio::task::spawn_blocking({
        let endpoint = server.http_url("");
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
                .args(["loadgen", "--protocol", "http", "--endpoint", &endpoint])
                .args(["--rate", "20", "--seconds", "3", "--seed", "7"])
                .env("SIGHTLINE_LOG", "warn")
                .status()
                .expect("run sightline loadgen")
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "loadgen exited with {status}");
    let (_, services) = get_json(&server.query_url("/api/services")).await;
    assert_eq!(
        services["data"].as_array().map_or(0, Vec::len),
        6,
        "{services}"
    );
    until("correlated logs", || async {
        let (_, body) =
            get_json(&server.query_url("/api/v1/logs?query=correlationId:*&limit=1")).await;
        body["data"].get(0).cloned()
    })
    .await;
    let (_, body) = get_json(
        &server.query_url("/prometheus/api/v1/query?query=http_request_duration_seconds_count"),
    )
    .await;
    assert!(
        !body["data"]["result"].as_array().unwrap().is_empty(),
        "{body}"
    );
    // Nothing was refused.
    let metrics = metrics_text(&server).await;
    let refused: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("sightline_ingest_requests_refused_total{"))
        .filter(|line| !line.ends_with(" 0"))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}
