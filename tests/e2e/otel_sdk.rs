//! The `opentelemetry-otlp` Rust exporter, as a service would use it, sending a trace that spans
//! several services, over gRPC (plain and gzip) and HTTP/protobuf.

use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Compression, Protocol, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

use crate::support::{get_json, wait_for_trace, Server};

#[derive(Clone, Copy, Debug)]
pub(crate) enum Exporter {
    Grpc,
    GrpcGzip,
    HttpProtobuf,
}

/// Where the exporters send: the server's OTLP/gRPC URL and OTLP/HTTP traces URL.
#[derive(Clone)]
pub(crate) struct Endpoints {
    pub grpc: String,
    pub http_traces: String,
}

pub(crate) fn provider(
    exporter: Exporter,
    endpoints: &Endpoints,
    service: &str,
) -> SdkTracerProvider {
    let span_exporter = match exporter {
        Exporter::Grpc | Exporter::GrpcGzip => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoints.grpc.clone());
            if matches!(exporter, Exporter::GrpcGzip) {
                builder = builder.with_compression(Compression::Gzip);
            }
            builder.build().expect("tonic exporter")
        }
        Exporter::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoints.http_traces.clone())
            .build()
            .expect("http exporter"),
    };
    SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .with_attribute(KeyValue::new("host.name", "e2e-host"))
                .build(),
        )
        .with_simple_exporter(span_exporter)
        .build()
}

/// Starts a span of `provider`'s service, a child of the span in `cx` (if any).
pub(crate) fn start_span(
    provider: &SdkTracerProvider,
    name: &str,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    cx: &Context,
) -> opentelemetry_sdk::trace::Span {
    let tracer = provider.tracer("e2e");
    tracer
        .span_builder(name.to_owned())
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(&tracer, cx)
}

/// gateway -> order-service -> payment-service, the payment failing. Returns the trace id.
fn send_checkout_trace(exporter: Exporter, endpoints: &Endpoints) -> String {
    let gateway = provider(exporter, endpoints, "gateway");
    let orders = provider(exporter, endpoints, "order-service");
    let payments = provider(exporter, endpoints, "payment-service");
    let trace_id;
    {
        let root = gateway
            .tracer("e2e")
            .span_builder("POST /api/orders")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("http.response.status_code", 502),
            ])
            .start(&gateway.tracer("e2e"));
        trace_id = root.span_context().trace_id().to_string();
        let root_cx = Context::current_with_span(root);
        let order = orders
            .tracer("e2e")
            .span_builder("create order")
            .with_kind(SpanKind::Server)
            .start_with_context(&orders.tracer("e2e"), &root_cx);
        let order_cx = root_cx.with_span(order);
        let mut payment = payments
            .tracer("e2e")
            .span_builder("charge card")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("payment.amount", 12.5),
                KeyValue::new("retry", true),
            ])
            .start_with_context(&payments.tracer("e2e"), &order_cx);
        opentelemetry::trace::Span::set_status(&mut payment, Status::error("payment timed out"));
        opentelemetry::trace::Span::add_event(
            &mut payment,
            "timeout",
            vec![KeyValue::new("after_ms", 2000)],
        );
        opentelemetry::trace::Span::end(&mut payment);
        order_cx.span().end();
        root_cx.span().end();
    }
    for provider in [&gateway, &orders, &payments] {
        provider
            .force_flush()
            .expect("flush: the export was not acknowledged");
        provider.shutdown().expect("shutdown");
    }
    trace_id
}

async fn trace_spans_several_services(exporter: Exporter) {
    let server = Server::start(&[]);
    let handle = tokio::runtime::Handle::current();
    let endpoints = Endpoints {
        grpc: server.grpc_url(),
        http_traces: server.http_url("/v1/traces"),
    };
    // The SDK exports from the calling thread. tonic needs the runtime's context; the blocking
    // reqwest client of the HTTP exporter must run outside of it.
    let trace_id = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            let _guard =
                matches!(exporter, Exporter::Grpc | Exporter::GrpcGzip).then(|| handle.enter());
            send_checkout_trace(exporter, &endpoints)
        })
        .join()
        .expect("exporter thread panicked")
    })
    .await
    .unwrap();

    // Acknowledged exports are searchable within 2 s.
    let (trace, elapsed) = wait_for_trace(&server, &trace_id, 3, Duration::from_secs(2)).await;
    eprintln!("{exporter:?}: trace visible {elapsed:?} after the exporters' flush returned");
    assert_eq!(trace["traceID"], trace_id);
    let spans = trace["spans"].as_array().unwrap();
    let by_name = |name: &str| {
        spans
            .iter()
            .find(|s| s["operationName"] == name)
            .unwrap_or_else(|| panic!("no span {name} in {trace}"))
    };
    let root = by_name("POST /api/orders");
    let order = by_name("create order");
    let payment = by_name("charge card");
    assert_eq!(root["references"], serde_json::json!([]));
    assert_eq!(order["references"][0]["refType"], "CHILD_OF");
    assert_eq!(order["references"][0]["spanID"], root["spanID"]);
    assert_eq!(payment["references"][0]["spanID"], order["spanID"]);
    let process =
        |span: &serde_json::Value| trace["processes"][span["processID"].as_str().unwrap()].clone();
    assert_eq!(process(root)["serviceName"], "gateway");
    assert_eq!(process(order)["serviceName"], "order-service");
    assert_eq!(process(payment)["serviceName"], "payment-service");
    assert!(process(payment)["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "host.name" && t["value"] == "e2e-host"));
    let tags = payment["tags"].as_array().unwrap();
    let tag = |key: &str| {
        tags.iter()
            .find(|t| t["key"] == key)
            .unwrap_or_else(|| panic!("no tag {key} in {payment}"))
            .clone()
    };
    assert_eq!(tag("error")["value"], true);
    assert_eq!(tag("otel.status_code")["value"], "ERROR");
    assert_eq!(tag("otel.status_description")["value"], "payment timed out");
    assert_eq!(
        tag("payment.amount"),
        serde_json::json!({"key": "payment.amount", "type": "float64", "value": 12.5})
    );
    assert_eq!(tag("span.kind")["value"], "client");
    assert_eq!(
        payment["logs"][0]["fields"][0],
        serde_json::json!({"key": "event", "type": "string", "value": "timeout"})
    );

    let (status, services) = get_json(&server.query_url("/api/services")).await;
    assert_eq!(status, 200);
    assert_eq!(
        services["data"],
        serde_json::json!(["gateway", "order-service", "payment-service"])
    );
    assert_eq!(services["total"], 3);
    let (_, operations) =
        get_json(&server.query_url("/api/services/payment-service/operations")).await;
    assert_eq!(operations["data"], serde_json::json!(["charge card"]));
    let (_, operations) =
        get_json(&server.query_url("/api/operations?service=gateway&spanKind=server")).await;
    assert_eq!(
        operations["data"],
        serde_json::json!([{"name": "POST /api/orders", "spanKind": "server"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_sdk_grpc_exporter_trace_spans_services() {
    trace_spans_several_services(Exporter::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_sdk_grpc_gzip_exporter_trace_spans_services() {
    trace_spans_several_services(Exporter::GrpcGzip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_sdk_http_protobuf_exporter_trace_spans_services() {
    trace_spans_several_services(Exporter::HttpProtobuf).await;
}

/// The shop of `shared/product.md`, through the real SDK: gateway -> order-service, which
/// writes to PostgreSQL, reserves stock in inventory-service, charges payment-service (which
/// times out) and publishes `order.created` on RabbitMQ, consumed by notification-service after
/// the request has already answered. Returns the trace id.
fn send_shop_trace(endpoints: &Endpoints) -> String {
    let sleep = |ms| std::thread::sleep(Duration::from_millis(ms));
    let names = [
        "gateway",
        "order-service",
        "inventory-service",
        "payment-service",
        "notification-service",
    ];
    let providers: Vec<SdkTracerProvider> = names
        .iter()
        .map(|name| provider(Exporter::Grpc, endpoints, name))
        .collect();
    let start = |i: usize, name: &str, kind: SpanKind, attributes: Vec<KeyValue>, cx: &Context| {
        start_span(&providers[i], name, kind, attributes, cx)
    };
    let root = start(
        0,
        "POST /api/orders",
        SpanKind::Server,
        vec![],
        &Context::new(),
    );
    let trace_id = root.span_context().trace_id().to_string();
    let root_cx = Context::current_with_span(root);
    let order_cx = root_cx.with_span(start(1, "create order", SpanKind::Server, vec![], &root_cx));
    sleep(2);
    let mut insert = start(
        1,
        "INSERT orders",
        SpanKind::Client,
        vec![
            KeyValue::new("db.system", "postgresql"),
            KeyValue::new("db.name", "orders"),
        ],
        &order_cx,
    );
    sleep(5);
    insert.end();
    let mut reserve = start(2, "reserve items", SpanKind::Server, vec![], &order_cx);
    sleep(10);
    reserve.end();
    let mut charge = start(3, "charge card", SpanKind::Server, vec![], &order_cx);
    sleep(30);
    charge.set_status(Status::error("payment timed out"));
    charge.end();
    let publish = start(
        1,
        "publish order.created",
        SpanKind::Producer,
        vec![
            KeyValue::new("messaging.system", "rabbitmq"),
            KeyValue::new("messaging.destination.name", "order.created"),
        ],
        &order_cx,
    );
    let publish_cx = order_cx.with_span(publish);
    let consume = start(
        4,
        "consume order.created",
        SpanKind::Consumer,
        vec![],
        &publish_cx,
    );
    sleep(1);
    publish_cx.span().end();
    order_cx
        .span()
        .set_status(Status::error("payment failed: order compensated"));
    order_cx.span().end();
    root_cx.span().set_status(Status::error("502"));
    root_cx.span().end();
    // The consumer works on after the gateway has answered.
    sleep(20);
    let mut consume = consume;
    consume.end();
    for provider in &providers {
        provider
            .force_flush()
            .expect("flush: the export was not acknowledged");
        provider.shutdown().expect("shutdown");
    }
    trace_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_sdk_shop_trace_maps_dependencies_and_its_critical_path() {
    let server = Server::start(&[]);
    let handle = tokio::runtime::Handle::current();
    let endpoints = Endpoints {
        grpc: server.grpc_url(),
        http_traces: server.http_url("/v1/traces"),
    };
    let trace_id = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            let _guard = handle.enter();
            send_shop_trace(&endpoints)
        })
        .join()
        .expect("exporter thread panicked")
    })
    .await
    .unwrap();
    wait_for_trace(&server, &trace_id, 7, Duration::from_secs(2)).await;

    // The service map: services, the database and the broker as nodes, nothing unpaired.
    let (status, graph) = get_json(&server.query_url("/api/v1/dependencies")).await;
    assert_eq!(status, 200, "{graph}");
    let mut edges: Vec<(String, String, u64)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["parent"].as_str().unwrap().to_owned(),
                e["child"].as_str().unwrap().to_owned(),
                e["errorCount"].as_u64().unwrap(),
            )
        })
        .collect();
    edges.sort();
    let expected = [
        ("gateway", "order-service", 1),
        ("order-service", "inventory-service", 0),
        ("order-service", "payment-service", 1),
        ("order-service", "postgresql", 0),
        ("order-service", "rabbitmq", 0),
        ("rabbitmq", "notification-service", 0),
    ];
    assert_eq!(
        edges,
        expected.map(|(p, c, e)| (p.to_owned(), c.to_owned(), e)),
        "{graph}"
    );
    let kind_of = |name: &str| {
        graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap()["kind"]
            .clone()
    };
    assert_eq!(kind_of("postgresql"), "database");
    assert_eq!(kind_of("rabbitmq"), "broker");
    assert_eq!(kind_of("notification-service"), "service");
    assert_eq!(
        graph["unpaired"],
        serde_json::json!({"children": 0, "clients": 0})
    );

    // Where the time went: the path covers the gateway span exactly, and never the consumer.
    let (_, analysis) =
        get_json(&server.query_url(&format!("/api/v1/traces/{trace_id}/analysis"))).await;
    let path = analysis["criticalPath"].as_array().unwrap();
    assert!(
        path.iter()
            .all(|s| s["operation"] != "consume order.created"),
        "{analysis}"
    );
    assert!(
        path.iter().any(|s| s["operation"] == "charge card"),
        "{analysis}"
    );
    let on_path: u64 = path
        .iter()
        .map(|s| s["durationNanos"].as_u64().unwrap())
        .sum();
    let root = analysis["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operation"] == "POST /api/orders")
        .unwrap();
    let root_duration = root["endUnixNano"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap()
        - root["startUnixNano"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap();
    assert_eq!(on_path, root_duration);
    // How the error travelled: payment-service, the order saga, the gateway's 502.
    let errors: Vec<&str> = analysis["errorPath"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(errors, ["payment-service", "order-service", "gateway"]);
    // The consumer outlives its producer without a clock-skew warning (it is asynchronous).
    assert_eq!(analysis["warnings"], serde_json::json!([]));
}
