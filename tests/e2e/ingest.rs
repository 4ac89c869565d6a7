//! The OTLP receivers' contract, with raw requests: encodings, compression, partial success,
//! malformed and oversize bodies, back-pressure, empty exports of every signal.

use std::time::Duration;

use prost::Message;
use serde_json::{json, Value};
use sightline_proto::otlp::collector::logs::v1::logs_service_client::LogsServiceClient;
use sightline_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sightline_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use sightline_proto::otlp::collector::trace::v1::ExportTraceServiceResponse;
use tonic::codec::CompressionEncoding;

use crate::otlp::{encode, gzip, request, span, trace_id, trace_request, zstd};
use crate::support::{get_json, hex, metrics_text, wait_for_trace, Server};

/// google.rpc.Status, the error body of OTLP/HTTP.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

async fn post(
    server: &Server,
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(server.http_url(path))
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.send().await.expect("POST")
}

/// An OTLP/JSON body exercising the encoding rules: hex ids in upper case, 64-bit integers as
/// strings and as numbers, snake_case keys next to camelCase, unknown fields, every attribute type.
fn json_body(trace: &str, start: u64) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "json-service"}},
                    {"key": "k8s.pod.name", "value": {"stringValue": "pod-1"}}
                ],
                "droppedAttributesCount": 1
            },
            "scope_spans": [{
                "scope": {"name": "json-lib", "version": "2.0", "attributes": [{"key": "scope.attr", "value": {"boolValue": true}}]},
                "schemaUrl": "https://opentelemetry.io/schemas/1.24.0",
                "spans": [
                    {
                        "traceId": trace.to_uppercase(),
                        "spanId": "00000000000000A1",
                        "traceState": "vendor=x",
                        "name": "GET /cart",
                        "kind": 2,
                        "startTimeUnixNano": start.to_string(),
                        "endTimeUnixNano": start + 5_000_000,
                        "flags": 257,
                        "attributes": [
                            {"key": "s", "value": {"stringValue": "text"}},
                            {"key": "b", "value": {"boolValue": false}},
                            {"key": "i", "value": {"intValue": "-9007199254740993"}},
                            {"key": "d", "value": {"doubleValue": 2.5}},
                            {"key": "bytes", "value": {"bytesValue": "AAH/"}},
                            {"key": "arr", "value": {"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "two"}]}}},
                            {"key": "map", "value": {"kvlistValue": {"values": [{"key": "inner", "value": {"kvlistValue": {"values": [{"key": "deep", "value": {"doubleValue": 1.5}}]}}}]}}}
                        ],
                        "droppedAttributesCount": 2,
                        "events": [{"timeUnixNano": (start + 1000).to_string(), "name": "exception", "attributes": [{"key": "exception.message", "value": {"stringValue": "boom"}}], "droppedAttributesCount": 3}],
                        "droppedEventsCount": 4,
                        "links": [{"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "traceState": "l=1", "attributes": [{"key": "link.kind", "value": {"stringValue": "retry"}}]}],
                        "dropped_links_count": "5",
                        "status": {"code": 2, "message": "failed"},
                        "someFutureField": {"ignored": true}
                    },
                    {
                        "trace_id": trace,
                        "span_id": "00000000000000a2",
                        "parent_span_id": "00000000000000a1",
                        "name": "SELECT orders",
                        "kind": 3,
                        "start_time_unix_nano": start + 1_000_000,
                        "end_time_unix_nano": (start + 2_000_000).to_string()
                    }
                ]
            }]
        }]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_keeps_every_field_and_answers_in_json() {
    let server = Server::start(&[]);
    let trace = hex(&trace_id());
    let start = crate::otlp::now_nanos();
    let response = post(
        &server,
        "/v1/traces",
        "application/json",
        None,
        serde_json::to_vec(&json_body(&trace, start)).unwrap(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    // Full success leaves partialSuccess unset.
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));

    wait_for_trace(&server, &trace, 2, Duration::from_secs(2)).await;
    let (status, native) = get_json(&server.query_url(&format!("/api/v1/traces/{trace}"))).await;
    assert_eq!(status, 200, "{native}");
    assert_eq!(native["traceId"], trace);
    assert_eq!(native["spanCount"], 2);
    let resource_spans = &native["resourceSpans"][0];
    assert_eq!(resource_spans["resource"]["droppedAttributesCount"], 1);
    assert_eq!(
        resource_spans["resource"]["attributes"][1],
        json!({"key": "k8s.pod.name", "value": {"stringValue": "pod-1"}})
    );
    let scope_spans = &resource_spans["scopeSpans"][0];
    assert_eq!(scope_spans["scope"]["version"], "2.0");
    assert_eq!(
        scope_spans["scope"]["attributes"][0]["value"],
        json!({"boolValue": true})
    );
    assert_eq!(
        scope_spans["schemaUrl"],
        "https://opentelemetry.io/schemas/1.24.0"
    );
    let root = &scope_spans["spans"][0];
    assert_eq!(root["spanId"], "00000000000000a1");
    assert_eq!(root["traceState"], "vendor=x");
    assert_eq!(root["flags"], 257);
    assert_eq!(root["startTimeUnixNano"], start.to_string());
    assert_eq!(root["endTimeUnixNano"], (start + 5_000_000).to_string());
    let attributes = &root["attributes"];
    assert_eq!(
        attributes[2]["value"],
        json!({"intValue": "-9007199254740993"})
    );
    assert_eq!(attributes[3]["value"], json!({"doubleValue": 2.5}));
    assert_eq!(attributes[4]["value"], json!({"bytesValue": "AAH/"}));
    assert_eq!(
        attributes[5]["value"],
        json!({"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "two"}]}})
    );
    assert_eq!(
        attributes[6]["value"]["kvlistValue"]["values"][0]["value"]["kvlistValue"]["values"][0]
            ["value"],
        json!({"doubleValue": 1.5})
    );
    assert_eq!(root["droppedAttributesCount"], 2);
    assert_eq!(root["events"][0]["name"], "exception");
    assert_eq!(root["events"][0]["droppedAttributesCount"], 3);
    assert_eq!(root["droppedEventsCount"], 4);
    assert_eq!(
        root["links"][0]["traceId"],
        "0102030405060708090a0b0c0d0e0f10"
    );
    assert_eq!(root["links"][0]["traceState"], "l=1");
    assert_eq!(root["droppedLinksCount"], 5);
    assert_eq!(root["status"], json!({"code": 2, "message": "failed"}));
    assert_eq!(scope_spans["spans"][1]["parentSpanId"], "00000000000000a1");

    // The Jaeger view of the same trace.
    let (_, jaeger) = get_json(&server.query_url(&format!("/api/traces/{trace}"))).await;
    let child = &jaeger["data"][0]["spans"][1];
    assert_eq!(
        child["references"],
        json!([{"refType": "CHILD_OF", "traceID": trace, "spanID": "00000000000000a1"}])
    );
    assert_eq!(child["duration"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_zstd_bodies_in_protobuf_and_json() {
    let server = Server::start(&[]);
    for (content_type, encoding) in [
        ("application/x-protobuf", "gzip"),
        ("application/x-protobuf", "zstd"),
        ("application/json", "gzip"),
        ("application/json", "zstd"),
    ] {
        let trace = trace_id();
        let plain = if content_type == "application/json" {
            serde_json::to_vec(&json_body(&hex(&trace), crate::otlp::now_nanos())).unwrap()
        } else {
            encode(&trace_request("compressed", trace, 2))
        };
        let body = if encoding == "gzip" {
            gzip(&plain)
        } else {
            zstd(&plain)
        };
        let response = post(&server, "/v1/traces", content_type, Some(encoding), body).await;
        assert_eq!(response.status(), 200, "{content_type} {encoding}");
        assert_eq!(response.headers()["content-type"], content_type);
        let bytes = response.bytes().await.unwrap();
        if content_type == "application/x-protobuf" {
            assert_eq!(
                ExportTraceServiceResponse::decode(bytes.as_ref()).unwrap(),
                ExportTraceServiceResponse {
                    partial_success: None
                }
            );
        }
        wait_for_trace(&server, &hex(&trace), 2, Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spans_are_rejected_one_by_one_and_the_rest_kept() {
    let server = Server::start(&[]);
    let trace = trace_id();
    let mut short_trace_id = span(trace, 2, 1, "bad-trace-id");
    short_trace_id.trace_id.truncate(8);
    let mut zero_span_id = span(trace, 3, 1, "zero-span-id");
    zero_span_id.span_id = vec![0; 8];
    let mut ends_before_start = span(trace, 4, 1, "ends-before-start");
    ends_before_start.end_time_unix_nano = ends_before_start.start_time_unix_nano - 1;
    let good = vec![span(trace, 1, 0, "root"), span(trace, 5, 1, "child")];
    let mut spans = good.clone();
    spans.extend([short_trace_id, zero_span_id, ends_before_start]);
    let body = request("partial", spans);

    // HTTP/protobuf.
    let response = post(
        &server,
        "/v1/traces",
        "application/x-protobuf",
        None,
        encode(&body),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer =
        ExportTraceServiceResponse::decode(response.bytes().await.unwrap().as_ref()).unwrap();
    let partial = answer.partial_success.expect("partial_success set");
    assert_eq!(partial.rejected_spans, 3);
    assert!(
        partial.error_message.starts_with("3 spans rejected:"),
        "{}",
        partial.error_message
    );
    assert!(
        partial
            .error_message
            .contains("trace_id must be 16 bytes, got 8"),
        "{}",
        partial.error_message
    );
    assert!(
        partial
            .error_message
            .contains("span_id must not be all zeros"),
        "{}",
        partial.error_message
    );
    assert!(
        partial
            .error_message
            .contains("end_time_unix_nano is before start_time_unix_nano"),
        "{}",
        partial.error_message
    );

    // gRPC, same request.
    let mut client = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let answer = client.export(body.clone()).await.unwrap().into_inner();
    assert_eq!(answer.partial_success.unwrap().rejected_spans, 3);

    // HTTP/JSON.
    let mut json = json_body(&hex(&trace), crate::otlp::now_nanos());
    json["resourceSpans"][0]["scope_spans"][0]["spans"][1]["span_id"] = json!("0102");
    let response = post(
        &server,
        "/v1/traces",
        "application/json",
        None,
        serde_json::to_vec(&json).unwrap(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "1", "{answer}");
    assert!(answer["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("span_id must be 8 bytes, got 2"));

    // The valid spans of all three requests are kept; the same spans sent twice show once.
    let (trace_json, _) = wait_for_trace(&server, &hex(&trace), 3, Duration::from_secs(2)).await;
    let mut names: Vec<_> = trace_json["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["operationName"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["GET /cart", "child", "root"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_export_shows_each_span_once() {
    let server = Server::start(&[]);
    let trace = trace_id();
    let body = trace_request("retrying-client", trace, 5);
    let mut client = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    client.export(body.clone()).await.unwrap();
    // The client retries (its first answer was lost), after the first copy was committed...
    wait_for_trace(&server, &hex(&trace), 5, Duration::from_secs(2)).await;
    client.export(body.clone()).await.unwrap();
    // ...and once more over HTTP, within the same commit interval.
    post(
        &server,
        "/v1/traces",
        "application/x-protobuf",
        None,
        encode(&body),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (trace_json, _) = wait_for_trace(&server, &hex(&trace), 5, Duration::from_secs(1)).await;
    assert_eq!(trace_json["spans"].as_array().unwrap().len(), 5);
    let (_, native) = get_json(&server.query_url(&format!("/api/v1/traces/{}", hex(&trace)))).await;
    assert_eq!(native["spanCount"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_answer_400_with_a_status_message() {
    let server = Server::start(&[]);
    let response = post(
        &server,
        "/v1/traces",
        "application/x-protobuf",
        None,
        vec![0x0a, 0xff, 0xff, 0xff],
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let status = RpcStatus::decode(response.bytes().await.unwrap().as_ref()).unwrap();
    assert_eq!(status.code, 3, "INVALID_ARGUMENT");
    assert!(
        status.message.starts_with("malformed request:"),
        "{}",
        status.message
    );

    let response = post(
        &server,
        "/v1/traces",
        "application/json",
        None,
        br#"{"resourceSpans": [{"scopeSpans": 5}]}"#.to_vec(),
    )
    .await;
    assert_eq!(response.status(), 400);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["code"], 3);
    assert!(
        status["message"].as_str().unwrap().contains("scopeSpans"),
        "{status}"
    );

    let response = post(
        &server,
        "/v1/traces",
        "application/json",
        None,
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(response.status(), 400);

    let response = post(
        &server,
        "/v1/traces",
        "application/json",
        Some("gzip"),
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(response.status(), 400);

    let response = post(&server, "/v1/traces", "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(response.status(), 415);

    let response = post(
        &server,
        "/v1/traces",
        "application/json",
        Some("br"),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(response.status(), 415);

    // An empty request is valid OTLP: nothing to store, full success.
    let response = post(
        &server,
        "/v1/traces",
        "application/json",
        None,
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(response.status(), 200);

    let metrics = metrics_text(&server).await;
    assert!(metrics.contains(r#"sightline_ingest_requests_refused_total{reason="malformed",signal="traces",transport="http"} 4"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_decompression_bomb_bodies_are_refused_without_retry() {
    const LIMIT: usize = 1 << 20;
    let server = Server::start(&["--max-request-bytes", &LIMIT.to_string()]);
    let big = trace_request("big", trace_id(), 20_000);
    let encoded = encode(&big);
    assert!(encoded.len() > LIMIT);

    let response = post(
        &server,
        "/v1/traces",
        "application/x-protobuf",
        None,
        encoded.clone(),
    )
    .await;
    assert_eq!(response.status(), 413);
    assert!(response.headers().get("retry-after").is_none());
    let status = RpcStatus::decode(response.bytes().await.unwrap().as_ref()).unwrap();
    assert_eq!(status.code, 8, "RESOURCE_EXHAUSTED");

    // A gzip bomb: 100 MiB of zeros compresses to about 100 KiB.
    let bomb = gzip(&vec![0u8; 100 << 20]);
    assert!(bomb.len() < LIMIT);
    let response = post(
        &server,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        bomb,
    )
    .await;
    assert_eq!(response.status(), 413);
    let status = RpcStatus::decode(response.bytes().await.unwrap().as_ref()).unwrap();
    assert!(
        status.message.contains("once decompressed"),
        "{}",
        status.message
    );
    let bomb = zstd(&vec![0u8; 100 << 20]);
    let response = post(
        &server,
        "/v1/traces",
        "application/json",
        Some("zstd"),
        bomb,
    )
    .await;
    assert_eq!(response.status(), 413);

    // gRPC: over the limit as sent, and over the limit once decompressed.
    let mut client = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let err = client.export(big.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    let mut client = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip);
    let err = client.export(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(tonic_types::StatusExt::get_details_retry_info(&err).is_none());

    // The server is still fine.
    let trace = trace_id();
    client
        .export(trace_request("small", trace, 3))
        .await
        .unwrap();
    wait_for_trace(&server, &hex(&trace), 3, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_log_and_metric_exports_succeed_and_malformed_ones_are_refused() {
    let server = Server::start(&[]);
    for (path, key) in [
        ("/v1/logs", "resourceLogs"),
        ("/v1/metrics", "resourceMetrics"),
    ] {
        let response = post(&server, path, "application/json", None, b"{}".to_vec()).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.text().await.unwrap(), "{}");
        let body = format!("{{\"{key}\": 3}}").into_bytes();
        let response = post(&server, path, "application/json", None, body).await;
        assert_eq!(response.status(), 400, "{path}");
        let status: Value = response.json().await.unwrap();
        assert!(
            status["message"].as_str().unwrap().contains(key),
            "{status}"
        );
    }
    let mut client = LogsServiceClient::connect(server.grpc_url()).await.unwrap();
    let response = client
        .export(ExportLogsServiceRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(response.partial_success.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_retryably_and_accepted_spans_are_kept() {
    // A one-byte ingest queue: one request at a time; concurrent ones must be refused.
    let server = Server::start(&["--ingest-queue-bytes", "1"]);
    let mut grpc_tasks = Vec::new();
    let mut http_tasks = Vec::new();
    for _ in 0..24 {
        let url = server.grpc_url();
        let trace = trace_id();
        grpc_tasks.push(tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(url).await.unwrap();
            (
                trace,
                client.export(trace_request("busy", trace, 512)).await,
            )
        }));
        let url = server.http_url("/v1/traces");
        let trace = trace_id();
        http_tasks.push(tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-protobuf")
                .body(encode(&trace_request("busy", trace, 512)))
                .send()
                .await
                .unwrap();
            (
                trace,
                response.status().as_u16(),
                response.headers().get("retry-after").cloned(),
            )
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    for task in grpc_tasks {
        match task.await.unwrap() {
            (trace, Ok(_)) => accepted.push(trace),
            (_, Err(status)) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
                let retry =
                    tonic_types::StatusExt::get_details_retry_info(&status).expect("RetryInfo");
                assert!(retry.retry_delay.is_some());
                refused += 1;
            }
        }
    }
    for task in http_tasks {
        match task.await.unwrap() {
            (trace, 200, _) => accepted.push(trace),
            (_, status, retry_after) => {
                assert_eq!(status, 503);
                assert_eq!(retry_after.expect("Retry-After"), "1");
                refused += 1;
            }
        }
    }
    eprintln!("accepted {} requests, refused {refused}", accepted.len());
    assert!(
        refused > 0,
        "no request was refused with a one-byte ingest queue"
    );
    assert!(!accepted.is_empty());
    for trace in accepted {
        wait_for_trace(&server, &hex(&trace), 512, Duration::from_secs(5)).await;
    }
    let metrics = metrics_text(&server).await;
    assert!(metrics.contains(r#"reason="overloaded""#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_errors_health_and_metrics() {
    let server = Server::start(&[]);
    let (status, body) = get_json(&server.query_url("/api/traces/not-hex")).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["code"], 400);
    assert_eq!(body["data"], Value::Null);
    let (status, body) =
        get_json(&server.query_url("/api/traces/0123456789abcdef0123456789abcdef")).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": 404, "msg": "trace not found"}]})
    );
    let (status, body) =
        get_json(&server.query_url("/api/v1/traces/0123456789abcdef0123456789abcdef")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], 404);
    let (status, body) =
        get_json(&server.query_url("/api/v1/traces/00000000000000000000000000000000")).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("all zeros"),
        "{body}"
    );
    let (status, body) = get_json(&server.query_url("/api/operations")).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get_json(&server.query_url("/api/services")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": [], "total": 0, "limit": 0, "offset": 0, "errors": null})
    );
    let (status, openapi) = get_json(&server.query_url("/api/v1/openapi.json")).await;
    assert_eq!(status, 200);
    assert!(openapi["paths"]["/api/v1/traces/{traceId}"].is_object());

    assert_eq!(
        reqwest::get(server.query_url("/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(server.query_url("/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );

    let trace = trace_id();
    let mut client = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    client
        .export(trace_request("metered", trace, 4))
        .await
        .unwrap();
    wait_for_trace(&server, &hex(&trace), 4, Duration::from_secs(2)).await;
    let metrics = metrics_text(&server).await;
    for expected in [
        r#"sightline_ingest_records_received_total{signal="traces",transport="grpc"} 4"#,
        r#"sightline_ingest_records_accepted_total{signal="traces",transport="grpc"} 4"#,
        r#"sightline_wal_fsyncs_total{signal="traces"} 1"#,
        "sightline_index_commit_duration_seconds_count",
        "sightline_ingest_request_duration_seconds_bucket",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
}
