//! Large traces: a 50,000-span trace is returned whole, in part (depth limit, collapsed
//! subtrees, window around a span) with what was left out counted; and two traces compared.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sightline_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;

use crate::otlp::{now_nanos, request, span, trace_id};
use crate::support::{get_json, hex, wait_for_trace, Server};

const SPANS: u64 = 50_000;

fn span_id(n: u64) -> Vec<u8> {
    (n + 1).to_be_bytes().to_vec()
}

/// Sends a 50,000-span trace (a 10-ary tree, depth 0..=4, service `big-trace`) over OTLP/gRPC
/// and waits until all of it is searchable; returns its id.
pub(crate) async fn send_fifty_thousand_span_trace(server: &Server) -> String {
    let trace = trace_id();
    let start = now_nanos();
    // A 10-ary tree: span n's parent is (n - 1) / 10; depth 0..=4 for 50,000 spans.
    let spans: Vec<_> = (0..SPANS)
        .map(|n| {
            let mut s = span(trace, 1, 0, &format!("op-{}", n % 13));
            s.span_id = span_id(n);
            s.parent_span_id = if n == 0 {
                vec![]
            } else {
                span_id((n - 1) / 10)
            };
            s.start_time_unix_nano = start + n * 1000;
            s.end_time_unix_nano = start + n * 1000 + 500;
            s
        })
        .collect();
    let mut client = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
    for chunk in spans.chunks(5000) {
        client
            .export(request("big-trace", chunk.to_vec()))
            .await
            .unwrap();
    }
    let trace_hex = hex(&trace);
    wait_for_trace(server, &trace_hex, SPANS as usize, Duration::from_secs(10)).await;
    trace_hex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_span_trace_whole_and_in_parts() {
    let server = Server::start(&[]);
    let trace_hex = send_fifty_thousand_span_trace(&server).await;

    for path in [
        format!("/api/v1/traces/{trace_hex}"),
        format!("/api/traces/{trace_hex}"),
    ] {
        let started = Instant::now();
        let (status, body) = get_json(&server.query_url(&path)).await;
        eprintln!("{path}: {status} in {:?} (50,000 spans)", started.elapsed());
        assert_eq!(status, 200);
        let returned = body["spanCount"]
            .as_u64()
            .or_else(|| body["data"][0]["spans"].as_array().map(|s| s.len() as u64));
        assert_eq!(returned, Some(SPANS));
    }

    // Depth 1: the root and its 10 children; each child collapses its subtree.
    let (_, part) =
        get_json(&server.query_url(&format!("/api/v1/traces/{trace_hex}?maxDepth=1"))).await;
    assert_eq!(part["spanCount"], SPANS);
    assert_eq!(part["returnedSpanCount"], 11);
    let collapsed = part["collapsed"].as_array().unwrap();
    assert_eq!(collapsed.len(), 10);
    let hidden: u64 = collapsed
        .iter()
        .map(|c| c["hiddenDescendants"].as_u64().unwrap())
        .sum();
    assert_eq!(hidden, SPANS - 11);
    assert!(part["warnings"][0]
        .as_str()
        .unwrap()
        .starts_with("49989 of 50000 spans not returned"));

    // A window around span 5 (depth 1): its ancestor, itself and its 10 children.
    let around = hex(&span_id(5));
    let (_, window) = get_json(&server.query_url(&format!(
        "/api/v1/traces/{trace_hex}?around={around}&window=1"
    )))
    .await;
    assert_eq!(window["returnedSpanCount"], 12);

    // The root with one child's subtree collapsed.
    let (_, one) = get_json(&server.query_url(&format!(
        "/api/v1/traces/{trace_hex}?collapse={}",
        hex(&span_id(1))
    )))
    .await;
    assert_eq!(one["collapsed"][0]["spanId"], hex(&span_id(1)));
    assert_eq!(
        one["returnedSpanCount"].as_u64().unwrap()
            + one["collapsed"][0]["hiddenDescendants"].as_u64().unwrap(),
        SPANS
    );

    let (status, _) = get_json(&server.query_url(&format!(
        "/api/v1/traces/{trace_hex}?around=0102030405060708"
    )))
    .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_traces_compared_by_service_and_operation_path() {
    let server = Server::start(&[]);
    let (a, b) = (trace_id(), trace_id());
    let t = now_nanos();
    let mk = |trace, id: u8, parent: u8, name: &str, millis: u64| {
        let mut s = span(trace, id, parent, name);
        s.start_time_unix_nano = t;
        s.end_time_unix_nano = t + millis * 1_000_000;
        s
    };
    let mut client = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    client
        .export(request(
            "checkout",
            vec![
                mk(a, 1, 0, "POST /checkout", 100),
                mk(a, 2, 1, "charge", 50),
            ],
        ))
        .await
        .unwrap();
    client
        .export(request(
            "checkout",
            vec![
                mk(b, 1, 0, "POST /checkout", 2300),
                mk(b, 2, 1, "charge", 2000),
                mk(b, 3, 2, "retry", 1000),
            ],
        ))
        .await
        .unwrap();
    wait_for_trace(&server, &hex(&b), 3, Duration::from_secs(2)).await;
    let (status, diff) = get_json(&server.query_url(&format!(
        "/api/v1/traces/compare?a={}&b={}",
        hex(&a),
        hex(&b)
    )))
    .await;
    assert_eq!(status, 200, "{diff}");
    assert_eq!(diff["a"]["durationNanos"], 100_000_000u64);
    assert_eq!(diff["b"]["spanCount"], 3);
    let paths: Vec<(String, String)> = diff["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let path: Vec<&str> = p["path"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            (path.join(" > "), p["change"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        paths,
        [
            (
                "checkout: POST /checkout".to_owned(),
                "duration_changed".to_owned()
            ),
            (
                "checkout: POST /checkout > checkout: charge".to_owned(),
                "duration_changed".to_owned()
            ),
            (
                "checkout: POST /checkout > checkout: charge > checkout: retry".to_owned(),
                "added".to_owned()
            ),
        ]
    );
    assert_eq!(diff["paths"][0]["deltaNanos"], json!(2_200_000_000u64));
    let (status, _) =
        get_json(&server.query_url(&format!("/api/v1/traces/compare?a={}", hex(&a)))).await;
    assert_eq!(status, 400);
    let missing: Value = get_json(&server.query_url(&format!(
        "/api/v1/traces/compare?a={}&b=0123456789abcdef0123456789abcdef",
        hex(&a)
    )))
    .await
    .1;
    assert_eq!(missing["error"]["code"], 404);
}
