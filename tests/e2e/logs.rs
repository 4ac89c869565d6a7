//! Logs: the OpenTelemetry Rust SDK's log pipeline and raw OTLP/JSON into the log store, search
//! with the query syntax, correlation ids and traceparent, links to traces, pagination under
//! ingest, volume histogram, fields, live tail, and durability.

use std::time::{Duration, Instant};

use opentelemetry::logs::{
    AnyValue as SdkAnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity,
};
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue as SdkKeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource as SdkResource;
use prost::Message;
use serde_json::{json, Value};
use sightline_proto::otlp::collector::logs::v1::logs_service_client::LogsServiceClient;
use sightline_proto::otlp::collector::logs::v1::ExportLogsServiceRequest;
use sightline_proto::otlp::common::v1::any_value::Value as OtlpValue;
use sightline_proto::otlp::common::v1::AnyValue;
use sightline_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sightline_proto::otlp::resource::v1::Resource;

use crate::otlp::{kv, now_nanos, trace_id};
use crate::support::{
    field_named, get_json, hex, metric, post_otlp_json, query_json as query, wait_for_trace, Server,
};

/// The bodies of the logs matching `q` (as text), newest first.
async fn bodies(server: &Server, q: &str) -> Vec<String> {
    let (status, body) = query(server, "/api/v1/logs", &[("query", q), ("limit", "1000")]).await;
    assert_eq!(status, 200, "{q}: {body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|log| match &log["body"] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Polls until `q` finds `n` logs; returns them and how long that took.
async fn wait_for_logs(server: &Server, q: &str, n: usize) -> (Vec<Value>, Duration) {
    let started = Instant::now();
    loop {
        let (status, body) =
            query(server, "/api/v1/logs", &[("query", q), ("limit", "1000")]).await;
        assert_eq!(status, 200, "{q}: {body}");
        let data = body["data"].as_array().unwrap().clone();
        if data.len() >= n {
            return (data, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{q}: {} of {n} logs after 10 s: {body}",
            data.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn text(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(OtlpValue::StringValue(value.into())),
    })
}

fn logs_request(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", OtlpValue::StringValue(service.into())),
                    kv(
                        "deployment.environment",
                        OtlpValue::StringValue("e2e".into()),
                    ),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn post_protobuf(server: &Server, request: &ExportLogsServiceRequest) -> Value {
    let decoded: sightline_proto::otlp::collector::logs::v1::ExportLogsServiceResponse =
        crate::support::post_otlp(server, "/v1/logs", request).await;
    json!({"rejected": decoded.partial_success.map_or(0, |p| p.rejected_log_records)})
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_log_pipeline_over_grpc_and_http_links_logs_to_their_spans() {
    let server = Server::start(&[]);
    let grpc = server.grpc_url();
    let http_logs = server.http_url("/v1/logs");
    let http_traces = server.http_url("/v1/traces");
    let (trace, span_ids) = tokio::task::spawn_blocking(move || {
        let resource = SdkResource::builder()
            .with_service_name("order-service")
            .with_attribute(SdkKeyValue::new("host.name", "e2e-host"))
            .build();
        let tracer_provider = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_simple_exporter(
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(http_traces)
                    .build()
                    .unwrap(),
            )
            .build();
        let grpc_logs = SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_simple_exporter(
                opentelemetry_otlp::LogExporter::builder()
                    .with_tonic()
                    .with_endpoint(grpc)
                    .build()
                    .unwrap(),
            )
            .build();
        let http_logs = SdkLoggerProvider::builder()
            .with_resource(resource)
            .with_simple_exporter(
                opentelemetry_otlp::LogExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(http_logs)
                    .build()
                    .unwrap(),
            )
            .build();
        let tracer = tracer_provider.tracer("e2e");
        let mut span_ids = Vec::new();
        let trace;
        {
            let root = tracer.start("POST /orders");
            trace = root.span_context().trace_id().to_string();
            span_ids.push(root.span_context().span_id().to_string());
            let cx = Context::current_with_span(root);
            let _guard = cx.clone().attach();
            for (provider, transport) in [(&grpc_logs, "grpc"), (&http_logs, "http")] {
                let logger = provider.logger("order-logger");
                let mut record = logger.create_log_record();
                record.set_severity_number(Severity::Error);
                record.set_severity_text("ERROR");
                record.set_body(SdkAnyValue::from(format!(
                    "payment declined via {transport}"
                )));
                record.add_attribute("orderId", "order-789");
                record.add_attribute("attempt", 2i64);
                record.add_attribute("transport", transport);
                logger.emit(record);
            }
            cx.span().end();
        }
        tracer_provider.force_flush().unwrap();
        grpc_logs.force_flush().unwrap();
        http_logs.force_flush().unwrap();
        (trace, span_ids)
    })
    .await
    .unwrap();

    let (logs, _) = wait_for_logs(&server, "\"payment declined\"", 2).await;
    for log in &logs {
        assert_eq!(log["severity"], "ERROR", "{log}");
        assert_eq!(log["severityNumber"], 17, "{log}");
        assert_eq!(log["service"], "order-service");
        assert_eq!(log["traceId"], trace.as_str());
        assert_eq!(log["spanId"], span_ids[0].as_str());
        // Record attributes and resource attributes stay apart.
        assert_eq!(log["attributes"]["orderId"], "order-789");
        assert_eq!(log["attributes"]["attempt"], 2);
        assert!(log["attributes"].get("host.name").is_none(), "{log}");
        assert_eq!(log["resource"]["host.name"], "e2e-host");
        assert_eq!(log["scope"]["name"], "order-logger");
        assert_eq!(log["links"]["trace"], format!("/api/v1/traces/{trace}"));
    }
    // Both transports, found by attribute.
    assert_eq!(
        bodies(&server, "transport:grpc").await,
        ["payment declined via grpc"]
    );
    assert_eq!(
        bodies(&server, "transport:http").await,
        ["payment declined via http"]
    );

    // From the trace to its logs, in time order, each with its span id.
    let (status, body) = get_json(&server.query_url(&format!("/api/v1/traces/{trace}/logs"))).await;
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{body}");
    assert_eq!(data[0]["body"], "payment declined via grpc");
    assert!(data.iter().all(|log| log["spanId"] == span_ids[0].as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_bodies_correlation_ids_traceparent_and_the_query_syntax() {
    let server = Server::start(&[]);
    let now = now_nanos();
    let linked_trace = trace_id();
    let parent_trace = trace_id();
    // A span carrying the correlation id: the trace a log without a trace id is linked to.
    let mut span = crate::otlp::span(linked_trace, 1, 0, "POST /orders");
    span.attributes.push(kv(
        "correlationId",
        OtlpValue::StringValue("abc-123-def".into()),
    ));
    let traces = crate::otlp::request("order-service", vec![span]);
    let response = reqwest::Client::new()
        .post(server.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(traces.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Spans and logs are committed by lanes of their own: the link below is looked up in the
    // span index, so the span must be searchable before the logs are read (a clean-clone CI
    // run read the logs first once).
    wait_for_trace(&server, &hex(&linked_trace), 1, Duration::from_secs(10)).await;

    let traceparent = format!("00-{}-{}-01", hex(&parent_trace), "00f067aa0ba902b7");
    // OTLP/JSON, as a collector or a hand-written exporter sends it.
    let body = json!({"resourceLogs": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "order-service"}}]},
         "scopeLogs": [{"scope": {"name": "app"}, "logRecords": [
            {"timeUnixNano": (now - 5_000_000).to_string(), "severityText": "INFO",
             "body": {"stringValue": "{\"level\":\"INFO\",\"service\":\"order-service\",\"correlationId\":\"abc-123-def\",\"userId\":\"user-456\",\"message\":\"Order created successfully\",\"orderId\":\"order-789\",\"duration\":145}"}},
            {"timeUnixNano": (now - 4_000_000).to_string(),
             "body": {"stringValue": "checkout handled"},
             "attributes": [{"key": "traceparent", "value": {"stringValue": traceparent}}]},
            {"observedTimeUnixNano": (now - 3_000_000).to_string(),
             "body": {"kvlistValue": {"values": [{"key": "event", "value": {"stringValue": "cart-merged"}}, {"key": "items", "value": {"intValue": "3"}}]}}},
            {"timeUnixNano": (now - 2_000_000).to_string(), "traceId": "abcd", "body": {"stringValue": "bad id"}}
         ]}]},
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "payment-service"}}]},
         "scopeLogs": [{"logRecords": [
            {"timeUnixNano": (now - 1_000_000).to_string(), "severityNumber": 17,
             "observedTimeUnixNano": (now - 500_000).to_string(),
             "body": {"stringValue": "connection refused by bank-gateway"},
             "attributes": [{"key": "retry", "value": {"boolValue": true}}]},
            {"timeUnixNano": now.to_string(), "severityNumber": "SEVERITY_NUMBER_ERROR",
             "observedTimeUnixNano": now.to_string(),
             "body": {"stringValue": "connection refused, giving up"},
             "attributes": [{"key": "retry", "value": {"boolValue": false}}]}
         ]}]}
    ]});
    let answer = post_otlp_json(&server, "/v1/logs", &body).await;
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"], "1",
        "{answer}"
    );
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("trace_id"),
        "{answer}"
    );
    wait_for_logs(&server, "*", 5).await;

    // The JSON body's fields are searchable; the record keeps its original body.
    let (found, _) = wait_for_logs(&server, "correlationId:abc-123-def", 1).await;
    assert_eq!(found.len(), 1);
    let log = &found[0];
    assert!(log["body"]
        .as_str()
        .unwrap()
        .starts_with("{\"level\":\"INFO\""));
    assert_eq!(
        log["severityNumber"], 9,
        "severity number derived from the text: {log}"
    );
    assert_eq!(log["correlationIds"]["correlationId"], "abc-123-def");
    // No trace id, but the correlation id links it to the trace whose span carries it.
    assert!(log["traceId"].is_null());
    assert_eq!(
        log["links"]["trace"],
        format!("/api/v1/traces/{}", hex(&linked_trace))
    );
    assert_eq!(log["links"]["linkedBy"], "correlationId");
    assert_eq!(
        bodies(&server, "userId:user-456 AND orderId:order-789")
            .await
            .len(),
        1
    );
    assert_eq!(bodies(&server, "duration:>100").await.len(), 1);
    assert_eq!(bodies(&server, "duration:[0 TO 100]").await.len(), 0);
    assert_eq!(bodies(&server, "userId:user-4*").await.len(), 1);
    assert_eq!(bodies(&server, "orderId:*").await.len(), 1);
    assert_eq!(bodies(&server, "orderId:/order-[0-9]+/").await.len(), 1);
    assert_eq!(bodies(&server, "orderId:/order-[0-8]+/").await.len(), 0);

    // Severity (derived text from number, any case), service, phrases, AND NOT.
    assert_eq!(
        bodies(&server, "severity:ERROR AND service:payment-service").await,
        [
            "connection refused, giving up",
            "connection refused by bank-gateway"
        ]
    );
    assert_eq!(bodies(&server, "severity:error").await.len(), 2);
    assert_eq!(bodies(&server, "level:ERROR").await.len(), 2);
    assert_eq!(
        bodies(
            &server,
            "\"connection refused\" AND NOT attributes.retry:true"
        )
        .await,
        ["connection refused, giving up"]
    );
    assert_eq!(bodies(&server, "refused OR handled").await.len(), 3);
    // The body is indexed without positions: a phrase is checked on the stored record, so
    // its words in another order, or apart, do not match.
    assert_eq!(bodies(&server, "\"refused connection\"").await.len(), 0);
    assert_eq!(
        bodies(&server, "\"refused by bank\"").await,
        ["connection refused by bank-gateway"]
    );
    assert_eq!(bodies(&server, "bank-gateway").await.len(), 1);
    assert_eq!(bodies(&server, "\"connection giving\"").await.len(), 0);
    assert_eq!(
        bodies(&server, "\"connection giving\"~1").await,
        ["connection refused, giving up"]
    );
    let (status, body) = query(&server, "/api/v1/logs", &[("query", "\"connection ref\"*")]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        bodies(&server, "resource.service.name:payment-service")
            .await
            .len(),
        2
    );

    // traceparent fills trace and span ids; the log is one of its trace's logs.
    let (found, _) = wait_for_logs(&server, &format!("trace_id:{}", hex(&parent_trace)), 1).await;
    assert_eq!(found[0]["spanId"], "00f067aa0ba902b7");
    let (_, trace_logs) =
        get_json(&server.query_url(&format!("/api/v1/traces/{}/logs", hex(&parent_trace)))).await;
    assert_eq!(trace_logs["data"][0]["body"], "checkout handled");
    // The correlated log belongs to the linked trace's logs.
    let (_, trace_logs) =
        get_json(&server.query_url(&format!("/api/v1/traces/{}/logs", hex(&linked_trace)))).await;
    assert_eq!(trace_logs["correlationIds"], json!(["abc-123-def"]));
    assert_eq!(
        trace_logs["data"].as_array().unwrap().len(),
        1,
        "{trace_logs}"
    );

    // A structured body is kept as a map; time falls back to the observed time.
    let (found, _) = wait_for_logs(&server, "cart", 1).await;
    assert_eq!(
        found[0]["body"],
        json!({"event": "cart-merged", "items": 3})
    );
    assert_eq!(found[0]["timeUnixNano"], "0");
    assert_eq!(
        found[0]["observedTimeUnixNano"],
        (now - 3_000_000).to_string()
    );
    let expected_time = humantime::format_rfc3339_nanos(
        std::time::UNIX_EPOCH + Duration::from_nanos(now - 3_000_000),
    )
    .to_string();
    assert_eq!(found[0]["time"], expected_time);
    // The stored record leaves out times the index's time column gives back: every mix of the
    // two comes back as it was sent (an observed time stamped at receipt when missing).
    let times = |record: &Value| {
        let nanos = |key: &str| record[key].as_str().unwrap().parse::<u64>().unwrap();
        (nanos("timeUnixNano"), nanos("observedTimeUnixNano"))
    };
    let (found, _) = wait_for_logs(&server, "bank-gateway", 1).await;
    assert_eq!(times(&found[0]), (now - 1_000_000, now - 500_000));
    let (found, _) = wait_for_logs(&server, "giving", 1).await;
    assert_eq!(times(&found[0]), (now, now));
    let (found, _) = wait_for_logs(&server, "checkout", 1).await;
    let (time, observed) = times(&found[0]);
    assert_eq!(time, now - 4_000_000);
    assert!(
        observed >= now,
        "observed time {observed} stamped before the request"
    );

    // Time ranges, in RFC 3339 or nanoseconds.
    let since = humantime::format_rfc3339_nanos(
        std::time::UNIX_EPOCH + Duration::from_nanos(now - 1_500_000),
    )
    .to_string();
    assert_eq!(
        bodies(&server, &format!("time:[{since} TO *]")).await.len(),
        2
    );
    let (status, body) = query(
        &server,
        "/api/v1/logs",
        &[
            ("start", &(now - 1_500_000).to_string()),
            ("end", &now.to_string()),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "{body}");

    // Query errors: 400 with the position and a message.
    let (status, body) = query(&server, "/api/v1/logs", &[("query", "severity:(ERROR")]).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("at position"), "{message}");
    let (status, body) = query(
        &server,
        "/api/v1/logs",
        &[("query", "time:[yesterday TO *]")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = query(&server, "/api/v1/logs", &[("cursor", "nope")]).await;
    assert_eq!(status, 400);

    // Fields for autocompletion, with top values.
    let (status, fields) = query(&server, "/api/v1/logs/fields", &[]).await;
    assert_eq!(status, 200, "{fields}");
    let field = |name: &str| field_named(&fields, name);
    assert_eq!(
        field("correlationId")["topValues"][0]["value"],
        "abc-123-def"
    );
    let severities = field("severity")["topValues"].clone();
    assert!(
        severities
            .as_array()
            .unwrap()
            .contains(&json!({"value": "ERROR", "count": 2})),
        "{severities}"
    );
    assert_eq!(field("duration")["type"], "number");
    // Ids are listed for autocompletion of the name, without values (unique per record).
    for id in ["trace_id", "span_id"] {
        assert_eq!(field(id)["topValues"], json!([]), "{id}");
    }
    let matching = fields["sampledRecords"].as_u64().unwrap();
    assert!(matching >= 5, "{fields}");

    // Values are counted in the newest `sample` matching records; every name stays listed.
    let (status, sampled) = query(&server, "/api/v1/logs/fields", &[("sample", "1")]).await;
    assert_eq!(status, 200, "{sampled}");
    assert_eq!(sampled["sampledRecords"], 1, "{sampled}");
    // The newest record: "connection refused, giving up", an ERROR of payment-service.
    assert_eq!(
        field_named(&sampled, "severity")["topValues"],
        json!([{"value": "ERROR", "count": 1}])
    );
    assert_eq!(
        field_named(&sampled, "correlationId")["topValues"],
        json!([])
    );

    // Each segment's fields are read once; a field first written after that is listed too.
    let probe = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": now_nanos().to_string(), "body": {"stringValue": "probe"},
         "attributes": [{"key": "cacheProbe", "value": {"stringValue": "yes"}}]}
    ]}]}]});
    post_otlp_json(&server, "/v1/logs", &probe).await;
    wait_for_logs(&server, "cacheProbe:yes", 1).await;
    let (_, fields) = query(&server, "/api/v1/logs/fields", &[]).await;
    assert_eq!(
        field_named(&fields, "cacheProbe")["topValues"][0]["value"],
        "yes"
    );
    assert_eq!(
        field("resource.service.name")["topValues"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_partial_success_and_the_volume_histogram() {
    let server = Server::start(&[]);
    let minute = 60_000_000_000u64;
    let base = (now_nanos() / minute - 10) * minute;
    let record = |offset: u64, severity: i32, body: &str| LogRecord {
        time_unix_nano: base + offset,
        severity_number: severity,
        body: text(body),
        ..Default::default()
    };
    let mut bad = record(1, 9, "bad span id");
    bad.span_id = vec![1, 2, 3];
    let request = logs_request(
        "inventory-service",
        vec![
            record(1, 9, "stock checked"),
            record(2, 9, "stock checked"),
            record(3, 17, "stock missing"),
            record(minute + 1, 13, "stock low"),
            record(2 * minute + 5, 17, "stock missing"),
            bad,
        ],
    );
    let mut client = LogsServiceClient::connect(server.grpc_url()).await.unwrap();
    let response = client.export(request).await.unwrap().into_inner();
    let partial = response.partial_success.expect("partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("span_id"),
        "{}",
        partial.error_message
    );
    wait_for_logs(&server, "stock", 5).await;

    let (status, body) = query(
        &server,
        "/api/v1/logs/histogram",
        &[
            ("query", "service:inventory-service"),
            ("start", &base.to_string()),
            ("end", &(base + 3 * minute - 1).to_string()),
            ("interval", "1m"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let buckets = body["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 3, "{body}");
    assert_eq!(buckets[0]["startUnixNano"], base.to_string());
    assert_eq!(buckets[0]["count"], 3);
    assert_eq!(buckets[0]["bySeverity"], json!({"INFO": 2, "ERROR": 1}));
    assert_eq!(buckets[1]["bySeverity"], json!({"WARN": 1}));
    assert_eq!(buckets[2]["bySeverity"], json!({"ERROR": 1}));
    // The same query narrows the histogram.
    let (_, body) = query(
        &server,
        "/api/v1/logs/histogram",
        &[
            ("query", "missing"),
            ("start", &base.to_string()),
            ("end", &(base + 3 * minute - 1).to_string()),
            ("interval", "1m"),
        ],
    )
    .await;
    let counts: Vec<u64> = body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [1, 0, 1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_is_stable_while_ingest_goes_on() {
    let server = Server::start(&["--commit-interval-millis", "100"]);
    let base = now_nanos() - 3_600_000_000_000;
    // 300 logs, ten per timestamp: ties are ordered by record id.
    let records: Vec<LogRecord> = (0..300u64)
        .map(|i| LogRecord {
            time_unix_nano: base + (i / 10) * 1_000,
            body: text(&format!("page-test {i}")),
            ..Default::default()
        })
        .collect();
    for chunk in records.chunks(60) {
        post_protobuf(&server, &logs_request("pager", chunk.to_vec())).await;
    }
    wait_for_logs(&server, "service:pager", 300).await;

    // Newer logs keep arriving while the pages are read.
    let writer = {
        let url = server.http_url("/v1/logs");
        tokio::spawn(async move {
            for i in 0..20 {
                let request = logs_request(
                    "pager",
                    vec![LogRecord {
                        time_unix_nano: now_nanos(),
                        body: text(&format!("page-test late {i}")),
                        ..Default::default()
                    }],
                );
                reqwest::Client::new()
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(request.encode_to_vec())
                    .send()
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    let end = (base + 1_000_000).to_string();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut keys = Vec::new();
    loop {
        let mut params = vec![
            ("query", "service:pager"),
            ("limit", "37"),
            ("end", end.as_str()),
        ];
        if let Some(cursor) = &cursor {
            params.push(("cursor", cursor));
        }
        let (status, body) = query(&server, "/api/v1/logs", &params).await;
        assert_eq!(status, 200, "{body}");
        for log in body["data"].as_array().unwrap() {
            seen.push(log["body"].as_str().unwrap().to_owned());
            let (time, id) = log["cursor"].as_str().unwrap().split_once('-').unwrap();
            keys.push((time.parse::<u64>().unwrap(), id.parse::<u64>().unwrap()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        match body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    writer.await.unwrap();
    assert_eq!(seen.len(), 300, "every log exactly once");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 300);
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first"
    );
    assert_eq!(
        seen[0], "page-test 299",
        "the newest of the last timestamp first"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn live_tail_delivers_matching_logs_within_two_seconds() {
    let server = Server::start(&[]);
    let response = reqwest::Client::new()
        .get(server.query_url("/api/v1/logs/tail"))
        .query(&[("query", "severity:ERROR")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut response = response;
    // A matching and a non-matching record, acknowledged now.
    let sent = Instant::now();
    post_protobuf(
        &server,
        &logs_request(
            "tailer",
            vec![
                LogRecord {
                    time_unix_nano: now_nanos(),
                    severity_number: 9,
                    body: text("tail: not an error"),
                    ..Default::default()
                },
                LogRecord {
                    time_unix_nano: now_nanos(),
                    severity_number: 17,
                    body: text("tail: an error"),
                    ..Default::default()
                },
            ],
        ),
    )
    .await;
    let acknowledged = Instant::now();
    let mut buffer = String::new();
    let event = loop {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .expect("stream open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(data) = buffer
            .lines()
            .find_map(|line| line.strip_prefix("data:"))
            .filter(|_| buffer.contains("event: log"))
        {
            break serde_json::from_str::<Value>(data.trim()).unwrap();
        }
    };
    let latency = acknowledged.elapsed();
    println!(
        "live tail: event {latency:?} after acknowledgement ({:?} after sending)",
        sent.elapsed()
    );
    assert_eq!(event["body"], "tail: an error");
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    assert!(!buffer.contains("not an error"), "{buffer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_tail_client_is_cut_off_and_never_slows_ingest() {
    let server = Server::start(&["--commit-interval-millis", "200"]);
    let response = reqwest::Client::new()
        .get(server.query_url("/api/v1/logs/tail"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The client reads nothing while 40 MB of logs arrive.
    let line = "x".repeat(1_000);
    let started = Instant::now();
    for batch in 0..40 {
        let records = (0..1_000)
            .map(|i| LogRecord {
                time_unix_nano: now_nanos(),
                body: text(&format!("slow-tail {batch} {i} {line}")),
                ..Default::default()
            })
            .collect();
        let answer = post_protobuf(&server, &logs_request("flood", records)).await;
        assert_eq!(answer["rejected"], 0);
    }
    let ingest = started.elapsed();
    println!("40,000 logs of 1 KB acknowledged in {ingest:?} with a stalled tail client");
    assert!(ingest < Duration::from_secs(30), "{ingest:?}");
    // Reading now: what was buffered, then a message saying why the stream ends.
    let body = tokio::time::timeout(Duration::from_secs(30), response.text())
        .await
        .expect("the stream ends")
        .unwrap();
    let events = body.matches("event: log").count();
    assert!(events < 40_000, "{events} events");
    let end = body
        .split("event: end")
        .nth(1)
        .unwrap_or_else(|| panic!("no end event after {events} events"));
    assert!(end.contains("cut off"), "{end}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_sharing_their_first_digits_are_told_apart() {
    // The index keeps the first 8 hex digits of trace and span ids; these two records share
    // them, and each query must still find exactly the records it names.
    let server = Server::start(&[]);
    let (trace_a, span_a) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let (trace_b, span_b) = ("0af76519000000000000000000000b0b", "b7ad6b71ffffffff");
    let now = now_nanos();
    let record = |trace: &str, span: &str, body: &str| {
        json!({"timeUnixNano": now.to_string(), "traceId": trace, "spanId": span,
               "body": {"stringValue": body}})
    };
    let request = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        record(trace_a, span_a, "twin one"),
        record(trace_b, span_b, "twin two"),
    ]}]}]});
    post_otlp_json(&server, "/v1/logs", &request).await;
    wait_for_logs(&server, "twin", 2).await;
    let cases = vec![
        (format!("trace_id:{trace_a}"), vec!["twin one"]),
        (format!("trace_id:{trace_b}"), vec!["twin two"]),
        (
            format!("traceId:{}", trace_a.to_uppercase()),
            vec!["twin one"],
        ),
        (format!("span_id:{span_a}"), vec!["twin one"]),
        (
            format!("span_id:{span_b} AND trace_id:{trace_b}"),
            vec!["twin two"],
        ),
        (format!("span_id:{span_a} AND trace_id:{trace_b}"), vec![]),
        // Eight digits are a prefix, not an id.
        (format!("span_id:{}", &span_a[..8]), vec![]),
        (format!("trace_id:{}*", &trace_a[..10]), vec!["twin one"]),
        (
            format!("trace_id: IN [{trace_a} {trace_b}]"),
            vec!["twin one", "twin two"],
        ),
        (
            "trace_id:0af76519*".to_owned(),
            vec!["twin one", "twin two"],
        ),
        ("trace_id:0af7*".to_owned(), vec!["twin one", "twin two"]),
        (format!("twin AND NOT span_id:{span_b}"), vec!["twin one"]),
    ];
    for (query, expected) in &cases {
        let mut found = bodies(&server, query).await;
        found.sort();
        assert_eq!(found, *expected, "{query}");
    }
    let (_, trace_logs) =
        get_json(&server.query_url(&format!("/api/v1/traces/{trace_a}/logs"))).await;
    let logs = trace_logs["data"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{trace_logs}");
    assert_eq!(logs[0]["body"], "twin one");
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_logs_survive_kill_9() {
    let server = Server::start(&["--commit-interval-millis", "60000"]);
    let records: Vec<LogRecord> = (0..500)
        .map(|i| LogRecord {
            time_unix_nano: now_nanos(),
            body: text(&format!("durable log {i}")),
            ..Default::default()
        })
        .collect();
    for chunk in records.chunks(100) {
        post_protobuf(&server, &logs_request("durable", chunk.to_vec())).await;
    }
    // Nothing is committed yet (the commit interval is a minute): only the WAL has them.
    let server = server.kill9_and_restart();
    let (found, _) = wait_for_logs(&server, "service:durable", 500).await;
    assert_eq!(found.len(), 500);
    assert_eq!(
        metric(&server, r#"sightline_index_errors_total{signal="logs"}"#)
            .await
            .max(0.0),
        0.0
    );

    // Record ids are consecutive and go on from where the last commit (the one after the
    // replay) left them: records replayed after a second kill -9 reuse none.
    let ids = |found: &[Value]| -> Vec<u64> {
        let mut ids: Vec<u64> = found
            .iter()
            .map(|record| record["id"].as_str().unwrap().parse().unwrap())
            .collect();
        ids.sort_unstable();
        ids
    };
    let replayed = ids(&found);
    assert_eq!(replayed.last().unwrap() - replayed[0], 499, "{replayed:?}");
    post_protobuf(&server, &logs_request("durable", records[..100].to_vec())).await;
    let server = server.kill9_and_restart();
    let (found, _) = wait_for_logs(&server, "service:durable", 600).await;
    let all = ids(&found);
    assert_eq!(all.len(), 600);
    assert_eq!(&all[..500], &replayed[..]);
    assert_eq!(all[500], replayed[499] + 1, "{:?}", &all[495..505]);
    assert_eq!(all.last().unwrap() - all[500], 99);
}
