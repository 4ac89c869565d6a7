//! Trace search through the native API, Jaeger's v1 search and api_v3, on a small shop of
//! traces sent over real OTLP/gRPC.

use std::time::Duration;

use serde_json::{json, Value};
use sightline_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use sightline_proto::otlp::common::v1::any_value::Value as V;
use sightline_proto::otlp::trace::v1::{Span, Status};

use crate::otlp::{kv, now_nanos, request, trace_id};
use crate::support::{field_named, get_json, hex, wait_for_trace, Server};

const MS: u64 = 1_000_000;

fn span(
    trace: [u8; 16],
    id: u8,
    parent: u8,
    name: &str,
    kind: i32,
    start: u64,
    millis: u64,
) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
        name: name.into(),
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: start + millis * MS,
        ..Default::default()
    }
}

struct Shop {
    server: Server,
    /// A failing checkout (2.3 s, payment error), the oldest.
    checkout: String,
    /// A quick user lookup.
    users: String,
    /// A successful order, the newest; its root span is missing (an orphan).
    order: String,
    t0: u64,
}

async fn shop() -> Shop {
    let server = Server::start(&[]);
    let t0 = now_nanos() - 60_000 * MS;
    let (checkout, users, order) = (trace_id(), trace_id(), trace_id());

    let mut gateway_root = span(checkout, 1, 0, "POST /api/orders", 2, t0, 2300);
    gateway_root.attributes = vec![
        kv("http.method", V::StringValue("POST".into())),
        kv("http.status_code", V::IntValue(502)),
    ];
    gateway_root.status = Some(Status {
        code: 2,
        message: "bad gateway".into(),
    });
    let mut create = span(checkout, 2, 1, "create order", 2, t0 + 10 * MS, 2250);
    create.attributes = vec![kv("order.id", V::StringValue("order-789".into()))];
    let mut insert = span(checkout, 3, 2, "INSERT orders", 3, t0 + 20 * MS, 15);
    insert.attributes = vec![kv("db.system", V::StringValue("postgresql".into()))];
    let mut charge = span(checkout, 4, 2, "charge card", 2, t0 + 40 * MS, 2000);
    charge.status = Some(Status {
        code: 2,
        message: "payment timed out".into(),
    });

    let mut get_user = span(users, 1, 0, "GET /api/users/{id}", 2, t0 + 5_000 * MS, 50);
    get_user.attributes = vec![
        kv("http.method", V::StringValue("GET".into())),
        kv("http.status_code", V::IntValue(200)),
    ];
    let lookup = span(users, 2, 1, "SELECT users", 3, t0 + 5_010 * MS, 8);

    // The root (span 1) of this trace never arrives.
    let mut order_child = span(order, 2, 1, "create order", 2, t0 + 10_000 * MS, 300);
    order_child.attributes = vec![kv("order.id", V::StringValue("order-790".into()))];

    let mut client = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    for req in [
        request("gateway", vec![gateway_root, get_user]),
        request("order-service", vec![create, insert, order_child]),
        request("payment-service", vec![charge]),
        request("user-service", vec![lookup]),
    ] {
        client.export(req).await.unwrap();
    }
    wait_for_trace(&server, &hex(&checkout), 4, Duration::from_secs(2)).await;
    Shop {
        server,
        checkout: hex(&checkout),
        users: hex(&users),
        order: hex(&order),
        t0,
    }
}

async fn native(shop: &Shop, query: &str) -> Value {
    let (status, body) = get_json(&shop.server.query_url(&format!("/api/v1/traces?{query}"))).await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

fn ids(body: &Value) -> Vec<String> {
    body["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_search_filters_summarises_and_pages() {
    let shop = shop().await;
    let (checkout, users, order) = (
        shop.checkout.clone(),
        shop.users.clone(),
        shop.order.clone(),
    );

    // All services, newest first.
    let all = native(&shop, "").await;
    assert_eq!(ids(&all), [order.clone(), users.clone(), checkout.clone()]);
    assert_eq!(all["nextCursor"], Value::Null);

    let failing = native(&shop, "service=payment-service").await;
    assert_eq!(ids(&failing), [checkout.clone()]);
    assert_eq!(
        failing["traces"][0],
        json!({
            "traceId": checkout,
            "rootServiceName": "gateway",
            "rootOperationName": "POST /api/orders",
            "startTime": failing["traces"][0]["startTime"],
            "minStartTimeUnixNano": shop.t0.to_string(),
            "maxEndTimeUnixNano": (shop.t0 + 2300 * MS).to_string(),
            "durationNanos": 2300 * MS,
            "spanCount": 4,
            "errorSpanCount": 2,
            "orphanSpanCount": 0,
            "services": [
                {"name": "gateway", "spanCount": 1, "errorSpanCount": 1},
                {"name": "order-service", "spanCount": 2, "errorSpanCount": 0},
                {"name": "payment-service", "spanCount": 1, "errorSpanCount": 1}
            ]
        })
    );
    let orphan = native(&shop, "service=order-service&operation=create+order").await;
    assert_eq!(ids(&orphan), [order.clone(), checkout.clone()]);
    assert_eq!(orphan["traces"][0]["orphanSpanCount"], 1);
    assert_eq!(orphan["traces"][0]["rootServiceName"], Value::Null);

    assert_eq!(ids(&native(&shop, "error=true").await), [checkout.clone()]);
    // Trace duration and span duration are distinct filters.
    assert_eq!(
        ids(&native(&shop, "minTraceDuration=2s").await),
        [checkout.clone()]
    );
    assert_eq!(
        ids(&native(&shop, "minDuration=2.1s").await),
        [checkout.clone()]
    );
    assert_eq!(
        ids(&native(&shop, "service=order-service&minDuration=1s").await),
        [checkout.clone()]
    );
    assert_eq!(
        ids(&native(&shop, "maxTraceDuration=100ms").await),
        [users.clone()]
    );
    // Attribute queries: ranges, NOT, exact tags of either type.
    assert_eq!(
        ids(&native(&shop, "query=http.status_code:%5B500+TO+599%5D").await),
        [checkout.clone()]
    );
    assert_eq!(
        ids(&native(&shop, "query=http.method:GET+OR+order.id:order-790").await),
        [order.clone(), users.clone()]
    );
    assert_eq!(
        ids(&native(&shop, "query=http.status_code:*+AND+NOT+http.method:POST").await),
        [users.clone()]
    );
    assert_eq!(
        ids(&native(&shop, "query=NOT+http.method:POST+AND+service:gateway").await),
        [users.clone()]
    );
    // Wildcards on attributes.
    assert_eq!(
        ids(&native(&shop, "query=order.id:order-7*").await),
        [order.clone(), checkout.clone()]
    );
    assert_eq!(
        ids(&native(&shop, "query=order.id:order-790*").await),
        [order.clone()]
    );
    // The attribute names search can ask for, with their top values, for autocompletion.
    let (status, body) = get_json(
        &shop
            .server
            .query_url("/api/v1/traces/attributes?service=gateway&start=0"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let field = |name: &str| field_named(&body, name);
    let method = field("http.method");
    assert_eq!(method["type"], "string");
    let mut values: Vec<_> = method["topValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_owned(),
                v["count"].as_u64().unwrap(),
            )
        })
        .collect();
    values.sort();
    assert_eq!(values, [("GET".into(), 1), ("POST".into(), 1)]);
    assert_eq!(field("http.status_code")["type"], "number");
    // order-service's attributes are not gateway's.
    assert!(!body.to_string().contains("order.id"), "{body}");

    // Traces of one edge of the service map: a span of one service under a span of another.
    assert_eq!(
        ids(&native(&shop, "service=payment-service&parentService=order-service").await),
        [checkout.clone()]
    );
    assert!(ids(&native(&shop, "service=payment-service&parentService=gateway").await).is_empty());
    assert_eq!(
        ids(&native(&shop, "parentService=gateway").await),
        [users.clone(), checkout.clone()]
    );

    // Regular expressions on attributes match a whole value.
    assert_eq!(
        ids(&native(&shop, "query=order.id:/order-7%5B0-9%5D%2B/").await),
        [order.clone(), checkout.clone()]
    );
    assert_eq!(
        ids(&native(&shop, "query=order.id:/.*89/+AND+service:order-service").await),
        [checkout.clone()]
    );
    assert!(ids(&native(&shop, "query=order.id:/order-7/").await).is_empty());
    let (status, body) = get_json(
        &shop
            .server
            .query_url("/api/v1/traces?query=order.id:/order-(/"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("regular expression"),
        "{body}"
    );
    assert_eq!(
        ids(&native(&shop, "tag=http.status_code=502").await),
        [checkout.clone()]
    );
    assert_eq!(
        ids(&native(&shop, "tag=db.system:postgresql").await),
        [checkout.clone()]
    );
    assert!(ids(&native(&shop, "tag=db.system:mysql").await).is_empty());
    // Time window on span starts.
    let window = format!(
        "start={}&end={}",
        shop.t0 + 4_000 * MS,
        shop.t0 + 6_000 * MS
    );
    assert_eq!(ids(&native(&shop, &window).await), [users.clone()]);

    // Pages of one, deterministic, ending with no cursor.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = native(&shop, &format!("limit=1{cursor}")).await;
        seen.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, [order, users, checkout]);

    let (status, body) = get_json(
        &shop
            .server
            .query_url("/api/v1/traces?query=http.status_code:%5B500"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid query"),
        "{body}"
    );
    let (status, _) = get_json(&shop.server.query_url("/api/v1/traces?minDuration=fast")).await;
    assert_eq!(status, 400);
    let (status, _) = get_json(&shop.server.query_url("/api/v1/traces?cursor=nope")).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_v1_and_v3_search() {
    let shop = shop().await;
    let url = |path: &str| shop.server.query_url(path);

    // Grafana's Jaeger data source: service, tags as JSON, lookback=custom with start/end in µs.
    let start = (shop.t0 - 1000 * MS) / 1000;
    let end = (shop.t0 + 20_000 * MS) / 1000;
    let tags = "%7B%22http.status_code%22%3A%22502%22%7D";
    let (status, body) = get_json(&url(&format!(
        "/api/traces?service=gateway&tags={tags}&lookback=custom&start={start}&end={end}&limit=20"
    )))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["traceID"], shop.checkout);
    assert_eq!(body["data"][0]["spans"].as_array().unwrap().len(), 4);
    assert_eq!(body["errors"], Value::Null);

    // Jaeger UI: service and operation, minDuration, repeated tag=, default window.
    let (_, body) = get_json(&url("/api/traces?service=gateway&minDuration=1s")).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (_, body) = get_json(&url("/api/traces?service=gateway&tag=http.method:GET")).await;
    assert_eq!(body["data"][0]["traceID"], shop.users);
    let (_, body) = get_json(&url(&format!(
        "/api/traces?traceID={}&traceID={}",
        shop.users, shop.order
    )))
    .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (_, body) = get_json(&url("/api/traces?service=gateway&limit=20")).await;
    let found: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect();
    assert_eq!(found, [shop.users.as_str(), shop.checkout.as_str()]);
    let (status, body) = get_json(&url("/api/traces?service=gateway&tags=notjson")).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["code"], 400);

    // api_v3.
    let (_, body) = get_json(&url("/api/v3/services")).await;
    assert_eq!(
        body,
        json!({"services": ["gateway", "order-service", "payment-service", "user-service"]})
    );
    let (_, body) = get_json(&url(
        "/api/v3/operations?service=order-service&spanKind=client",
    ))
    .await;
    assert_eq!(
        body,
        json!({"operations": [{"name": "INSERT orders", "spanKind": "client"}]})
    );
    // RFC 3339 as Jaeger UI sends it, and unix nanoseconds.
    let window = format!(
        "query.start_time_min=1970-01-01T00:00:00Z&query.start_time_max={}",
        shop.t0 + 20_000 * MS
    );
    let (status, body) = get_json(&url(&format!(
        "/api/v3/trace-summaries?query.service_name=payment-service&{window}"
    )))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summaries"][0]["traceId"], shop.checkout);
    assert_eq!(body["summaries"][0]["errorSpanCount"], 2);
    let (status, body) = get_json(&url(&format!(
        "/api/v3/traces?query.service_name=gateway&query.operation_name=GET+%2Fapi%2Fusers%2F%7Bid%7D&{window}"
    )))
    .await;
    assert_eq!(status, 200, "{body}");
    let resource_spans = body["result"]["resourceSpans"].as_array().unwrap();
    let span_count: usize = resource_spans
        .iter()
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
        .map(|ss| ss["spans"].as_array().unwrap().len())
        .sum();
    assert_eq!(span_count, 2);
    let (status, body) = get_json(&url(&format!(
        "/api/v3/traces?query.service_name=nobody&{window}"
    )))
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {"httpCode": 404, "message": "No traces found"}})
    );
    let (status, _) = get_json(&url("/api/v3/traces?query.service_name=gateway")).await;
    assert_eq!(status, 400);
    let (status, body) = get_json(&url(&format!("/api/v3/traces/{}", shop.order))).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"],
        "create order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_path_and_error_path_of_the_failing_checkout() {
    let shop = shop().await;
    let (status, body) = get_json(
        &shop
            .server
            .query_url(&format!("/api/v1/traces/{}/analysis", shop.checkout)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Worked by hand from the spans in `shop()` (times in ms after t0).
    let path: Vec<(String, u64, u64)> = body["criticalPath"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let at = |key: &str| (s[key].as_str().unwrap().parse::<u64>().unwrap() - shop.t0) / MS;
            (
                s["operation"].as_str().unwrap().to_owned(),
                at("startUnixNano"),
                at("endUnixNano"),
            )
        })
        .collect();
    let expected = [
        ("POST /api/orders", 0, 10),
        ("create order", 10, 20),
        ("INSERT orders", 20, 35),
        ("create order", 35, 40),
        ("charge card", 40, 2040),
        ("create order", 2040, 2260),
        ("POST /api/orders", 2260, 2300),
    ];
    assert_eq!(
        path,
        expected.map(|(op, start, end)| (op.to_owned(), start, end))
    );
    let errors: Vec<(&str, bool)> = body["errorPath"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["operation"].as_str().unwrap(),
                s["error"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("charge card", true),
            ("create order", false),
            ("POST /api/orders", true)
        ]
    );
    assert_eq!(
        body["services"],
        json!([
            {"name": "gateway", "spanCount": 1, "errorCount": 1, "selfTimeNanos": 50 * MS, "criticalPathNanos": 50 * MS},
            {"name": "order-service", "spanCount": 2, "errorCount": 0, "selfTimeNanos": 250 * MS, "criticalPathNanos": 250 * MS},
            {"name": "payment-service", "spanCount": 1, "errorCount": 1, "selfTimeNanos": 2000 * MS, "criticalPathNanos": 2000 * MS}
        ])
    );
    assert_eq!(body["warnings"], json!([]));
    let (status, _) = get_json(
        &shop
            .server
            .query_url("/api/v1/traces/0123456789abcdef0123456789abcdef/analysis"),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependency_graph_with_databases_and_unpaired_spans() {
    let shop = shop().await;
    let window = format!(
        "start={}&end={}",
        shop.t0 - 1000 * MS,
        shop.t0 + 20_000 * MS
    );
    let (status, graph) = get_json(
        &shop
            .server
            .query_url(&format!("/api/v1/dependencies?{window}")),
    )
    .await;
    assert_eq!(status, 200, "{graph}");
    assert_eq!(
        graph["edges"],
        json!([
            {"parent": "gateway", "child": "order-service", "callCount": 1, "errorCount": 0,
             "p50Nanos": 2250 * MS, "p95Nanos": 2250 * MS, "p99Nanos": 2250 * MS},
            {"parent": "gateway", "child": "user-service", "callCount": 1, "errorCount": 0,
             "p50Nanos": 8 * MS, "p95Nanos": 8 * MS, "p99Nanos": 8 * MS},
            {"parent": "order-service", "child": "payment-service", "callCount": 1, "errorCount": 1,
             "p50Nanos": 2000 * MS, "p95Nanos": 2000 * MS, "p99Nanos": 2000 * MS},
            {"parent": "order-service", "child": "postgresql", "callCount": 1, "errorCount": 0,
             "p50Nanos": 15 * MS, "p95Nanos": 15 * MS, "p99Nanos": 15 * MS}
        ])
    );
    assert_eq!(
        graph["nodes"],
        json!([
            {"name": "gateway", "kind": "service", "callCount": 0, "errorCount": 0},
            {"name": "order-service", "kind": "service", "callCount": 1, "errorCount": 0},
            {"name": "payment-service", "kind": "service", "callCount": 1, "errorCount": 1},
            {"name": "postgresql", "kind": "database", "callCount": 1, "errorCount": 0},
            {"name": "user-service", "kind": "service", "callCount": 1, "errorCount": 0}
        ])
    );
    // Never mysteriously empty: the orphan of the third trace and the user lookup (a client
    // span with no callee and no peer attribute) are counted and explained.
    assert_eq!(graph["unpaired"], json!({"children": 1, "clients": 1}));
    assert_eq!(graph["warnings"].as_array().unwrap().len(), 2);
    assert_eq!(graph["spans"], 7);

    let (_, only_payment) = get_json(&shop.server.query_url(&format!(
        "/api/v1/dependencies?{window}&service=payment-service"
    )))
    .await;
    assert_eq!(only_payment["edges"].as_array().unwrap().len(), 1);
    assert_eq!(only_payment["nodes"].as_array().unwrap().len(), 2);

    // Jaeger's shape, with endTs and lookback in milliseconds.
    let end_ms = (shop.t0 + 20_000 * MS) / MS;
    let (status, jaeger) = get_json(&shop.server.query_url(&format!(
        "/api/dependencies?endTs={end_ms}&lookback=3600000"
    )))
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        jaeger["data"][2],
        json!({"parent": "order-service", "child": "payment-service", "callCount": 1})
    );
    assert_eq!(jaeger["total"], 4);
    // An empty range is empty, not an error.
    let (_, empty) = get_json(&shop.server.query_url("/api/v1/dependencies?start=1&end=2")).await;
    assert_eq!(empty["edges"], json!([]));

    // Durable: after kill -9 (minutes not written yet are rebuilt from the span index once the
    // write-ahead log is replayed) and after a clean restart (everything written at shutdown),
    // the same graph.
    let url = format!("/api/v1/dependencies?{window}");
    let server = shop.server.kill9_and_restart();
    let (_, after_kill) = get_json(&server.query_url(&url)).await;
    assert_eq!(after_kill, graph);
    let mut server = server;
    assert!(server.terminate().success());
    let server = server.restart();
    let (_, after_restart) = get_json(&server.query_url(&url)).await;
    assert_eq!(after_restart, graph);
    assert!(server
        .data_dir()
        .join("service-graph/rollups.jsonl")
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_monitor_tab_metrics() {
    let shop = shop().await;
    let end_ms = (shop.t0 + 20_000 * MS) / MS;
    let window = format!("endTs={end_ms}&lookback=60000&step=10000&ratePer=600000&spanKind=server");
    let values = |family: &Value, series: usize| -> Vec<f64> {
        family["metrics"][series]["metricPoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["gaugeValue"]["doubleValue"].as_f64().unwrap())
            .collect()
    };

    let (status, calls) = get_json(
        &shop
            .server
            .query_url(&format!("/api/metrics/calls?service=gateway&{window}")),
    )
    .await;
    assert_eq!(status, 200, "{calls}");
    assert_eq!(calls["name"], "service_call_rate");
    assert_eq!(calls["type"], "GAUGE");
    assert_eq!(
        calls["metrics"][0]["labels"],
        json!([{"name": "service_name", "value": "gateway"}])
    );
    // Two gateway server spans in the fifth 10 s bucket: 0.2 calls/s.
    assert_eq!(values(&calls, 0), [0.0, 0.0, 0.0, 0.0, 0.2, 0.0]);
    assert!(calls["metrics"][0]["metricPoints"][0]["timestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    let (_, errors) = get_json(
        &shop
            .server
            .query_url(&format!("/api/metrics/errors?service=gateway&{window}")),
    )
    .await;
    assert_eq!(errors["name"], "service_error_rate");
    assert_eq!(values(&errors, 0), [0.0, 0.0, 0.0, 0.0, 0.5, 0.0]);

    let (_, latencies) = get_json(&shop.server.query_url(&format!(
        "/api/metrics/latencies?service=gateway&quantile=0.95&{window}"
    )))
    .await;
    assert_eq!(latencies["name"], "service_latencies");
    // Only buckets with spans have a latency: p95 of {2300 ms, 50 ms}.
    assert_eq!(values(&latencies, 0), [2300.0]);

    let (_, by_operation) = get_json(&shop.server.query_url(&format!(
        "/api/metrics/calls?service=order-service&groupByOperation=true&{window}"
    )))
    .await;
    assert_eq!(by_operation["name"], "service_operation_call_rate");
    assert_eq!(
        by_operation["metrics"][0]["labels"],
        json!([{"name": "service_name", "value": "order-service"}, {"name": "operation", "value": "create order"}])
    );
    assert_eq!(values(&by_operation, 0), [0.0, 0.0, 0.0, 0.0, 0.1, 0.1]);

    let (status, _) = get_json(
        &shop
            .server
            .query_url(&format!("/api/metrics/throughput?{window}")),
    )
    .await;
    assert_eq!(status, 404);
}
