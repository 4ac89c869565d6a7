//! Metrics derived from spans at ingest, with no configuration: calls, errors and a latency
//! histogram per service, operation, span kind and status (as the OpenTelemetry Collector's
//! spanmetrics connector names them), and service-graph edges (as Tempo's and the Collector's
//! servicegraph connector name them) pairing client and server, producer and consumer spans
//! across services, with virtual nodes for peers that send no spans (databases, brokers,
//! external services).
//!
//! Spans are aggregated in memory as they are acknowledged; every flush writes the running
//! totals into the metric store as cumulative series at the flush time. A client span waits for
//! its server span (and the other way round) for [`PAIRING_WINDOW`]; what is still unpaired then
//! goes to a virtual node when the span names its peer (`db.system`, `messaging.system`,
//! `peer.service`, `server.address`), and is counted in
//! `traces_service_graph_unpaired_spans_total` otherwise, so an empty graph explains itself.
//! Derived series are not in the write-ahead log: after a restart they start again from zero,
//! which `rate()` reads as a counter reset.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use parking_lot::Mutex;
use sightline_proto::metric::{format_float, Labels, Metadata, Sample, Translated};
use sightline_proto::span::{service_name, string_attribute};

/// How long a client span waits for its server span, and the other way round.
pub const PAIRING_WINDOW: Duration = Duration::from_secs(10);
/// Latency bucket bounds in seconds (the spanmetrics connector's defaults).
const BUCKETS: [f64; 16] = [
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
];
/// Pending half-edges kept at most; past it, every pending one is settled at once (paired to a
/// virtual node or counted as unpaired).
const MAX_PENDING: usize = 100_000;

const KIND_NAMES: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_NAMES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Default, Clone)]
struct Edge {
    requests: u64,
    failed: u64,
    client: Histogram,
    server: Histogram,
}

/// One side of an edge waiting for the other.
struct HalfEdge {
    service: String,
    seconds: f64,
    failed: bool,
    /// For a client side: the peer it names, when it names one.
    peer: Option<(String, &'static str)>,
    arrived: Instant,
}

#[derive(Default)]
struct State {
    /// (service, operation, kind, status) -> latency.
    calls: BTreeMap<(String, String, usize, usize), Histogram>,
    /// (client, server, connection type) -> edge.
    edges: BTreeMap<(String, String, &'static str), Edge>,
    /// Client/producer spans by (trace id, span id), waiting for their server/consumer child.
    clients: HashMap<(Vec<u8>, Vec<u8>), HalfEdge>,
    /// Server/consumer spans by (trace id, parent span id), waiting for their client parent.
    servers: HashMap<(Vec<u8>, Vec<u8>), HalfEdge>,
    unpaired: BTreeMap<(String, &'static str), u64>,
}

/// The aggregator; share it between the ingest path and the flusher.
#[derive(Default)]
pub struct SpanMetrics {
    state: Mutex<State>,
}

fn peer_of(span: &OtlpSpan) -> Option<(String, &'static str)> {
    let attribute = |key| string_attribute(&span.attributes, key).filter(|v| !v.is_empty());
    if let Some(system) = attribute("db.system") {
        let name = attribute("db.name").or(attribute("db.namespace"));
        return Some((
            name.map_or_else(|| system.to_owned(), |n| format!("{system}/{n}")),
            "database",
        ));
    }
    if let Some(system) = attribute("messaging.system") {
        return Some((system.to_owned(), "messaging_system"));
    }
    attribute("peer.service")
        .or(attribute("server.address"))
        .or(attribute("net.peer.name"))
        .map(|peer| (peer.to_owned(), "virtual_node"))
}

impl SpanMetrics {
    /// Adds the (validated) spans of a request.
    pub fn observe(&self, request: &ExportTraceServiceRequest) {
        let now = Instant::now();
        let mut state = self.state.lock();
        for resource_spans in &request.resource_spans {
            let service = service_name(resource_spans.resource.as_ref());
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                let seconds = span
                    .end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano) as f64
                    / 1e9;
                let status = span
                    .status
                    .as_ref()
                    .map_or(0, |s| s.code.clamp(0, 2) as usize);
                let kind = span.kind.clamp(0, 5) as usize;
                state
                    .calls
                    .entry((service.to_owned(), span.name.clone(), kind, status))
                    .or_default()
                    .observe(seconds);
                let failed = status == 2;
                match kind {
                    // Client or producer: waits for the server or consumer span under it.
                    3 | 4 => {
                        let key = (span.trace_id.clone(), span.span_id.clone());
                        let half = HalfEdge {
                            service: service.to_owned(),
                            seconds,
                            failed,
                            peer: peer_of(span),
                            arrived: now,
                        };
                        match state.servers.remove(&key) {
                            Some(server) => pair(&mut state, half, server, kind == 4),
                            None => {
                                state.clients.insert(key, half);
                            }
                        }
                    }
                    2 | 5 if !span.parent_span_id.is_empty() => {
                        let key = (span.trace_id.clone(), span.parent_span_id.clone());
                        let half = HalfEdge {
                            service: service.to_owned(),
                            seconds,
                            failed,
                            peer: None,
                            arrived: now,
                        };
                        match state.clients.remove(&key) {
                            Some(client) => pair(&mut state, client, half, kind == 5),
                            None => {
                                state.servers.insert(key, half);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if state.clients.len() + state.servers.len() > MAX_PENDING {
            expire(&mut state, now, Duration::ZERO);
        }
    }

    /// The running totals as cumulative samples at `t_ms`, after expiring half-edges that
    /// waited longer than the pairing window.
    pub fn flush(&self, t_ms: i64) -> Translated {
        self.flush_with_window(t_ms, PAIRING_WINDOW)
    }

    fn flush_with_window(&self, t_ms: i64, window: Duration) -> Translated {
        let mut state = self.state.lock();
        expire(&mut state, Instant::now(), window);
        let mut out = Translated::default();
        let meta = |kind: &'static str, help: &str| Metadata {
            kind,
            help: help.to_owned(),
            unit: String::new(),
            otlp_name: String::new(),
        };
        out.metadata.insert(
            "traces_spanmetrics_calls_total".into(),
            meta(
                "counter",
                "Spans by service, operation, kind and status, derived at ingest.",
            ),
        );
        out.metadata.insert(
            "traces_spanmetrics_latency".into(),
            meta("histogram", "Span durations in seconds, derived at ingest."),
        );
        out.metadata.insert(
            "traces_service_graph_request_total".into(),
            meta(
                "counter",
                "Requests between two services, from paired client and server spans.",
            ),
        );
        out.metadata.insert(
            "traces_service_graph_request_failed_total".into(),
            meta("counter", "Failed requests between two services."),
        );
        out.metadata.insert(
            "traces_service_graph_unpaired_spans_total".into(),
            meta(
                "counter",
                "Client or server spans whose other side never arrived.",
            ),
        );
        let mut push = |name: String, labels: Vec<(&str, String)>, value: f64| {
            let mut labels: Labels = labels.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            labels.push(("__name__".into(), name));
            labels.sort();
            out.samples.push(Sample {
                labels,
                t_ms,
                value,
                delta: false,
                start_ms: None,
                delta_start_ns: 0,
                exemplars: Vec::new(),
            });
        };
        for ((service, operation, kind, status), histogram) in &state.calls {
            let labels = || {
                vec![
                    ("service", service.clone()),
                    ("span_name", operation.clone()),
                    ("span_kind", KIND_NAMES[*kind].to_owned()),
                    ("status_code", STATUS_NAMES[*status].to_owned()),
                ]
            };
            push(
                "traces_spanmetrics_calls_total".into(),
                labels(),
                histogram.count as f64,
            );
            histogram_samples(&mut push, "traces_spanmetrics_latency", labels, histogram);
        }
        for ((client, server, connection), edge) in &state.edges {
            let labels = || {
                let mut labels = vec![("client", client.clone()), ("server", server.clone())];
                if !connection.is_empty() {
                    labels.push(("connection_type", (*connection).to_owned()));
                }
                labels
            };
            push(
                "traces_service_graph_request_total".into(),
                labels(),
                edge.requests as f64,
            );
            push(
                "traces_service_graph_request_failed_total".into(),
                labels(),
                edge.failed as f64,
            );
            histogram_samples(
                &mut push,
                "traces_service_graph_request_client_seconds",
                labels,
                &edge.client,
            );
            histogram_samples(
                &mut push,
                "traces_service_graph_request_server_seconds",
                labels,
                &edge.server,
            );
        }
        for ((service, side), count) in &state.unpaired {
            push(
                "traces_service_graph_unpaired_spans_total".into(),
                vec![("service", service.clone()), ("side", (*side).to_owned())],
                *count as f64,
            );
        }
        out
    }
}

fn histogram_samples<F: FnMut(String, Vec<(&str, String)>, f64)>(
    push: &mut F,
    name: &str,
    labels: impl Fn() -> Vec<(&'static str, String)>,
    histogram: &Histogram,
) {
    let mut cumulative = 0;
    for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
        cumulative += count;
        let mut with_le = labels();
        with_le.push(("le", format_float(*bound)));
        push(format!("{name}_bucket"), with_le, cumulative as f64);
    }
    let mut with_le = labels();
    with_le.push(("le", "+Inf".to_owned()));
    push(format!("{name}_bucket"), with_le, histogram.count as f64);
    push(format!("{name}_count"), labels(), histogram.count as f64);
    push(format!("{name}_sum"), labels(), histogram.sum);
}

fn pair(state: &mut State, client: HalfEdge, server: HalfEdge, messaging: bool) {
    let connection = if messaging { "messaging_system" } else { "" };
    let edge = state
        .edges
        .entry((client.service, server.service, connection))
        .or_default();
    edge.requests += 1;
    edge.failed += u64::from(client.failed || server.failed);
    edge.client.observe(client.seconds);
    edge.server.observe(server.seconds);
}

/// Half-edges older than `window`: clients naming a peer become edges to a virtual node, the
/// rest are counted as unpaired.
fn expire(state: &mut State, now: Instant, window: Duration) {
    let old = |half: &HalfEdge| now.duration_since(half.arrived) >= window;
    let clients: Vec<_> = state
        .clients
        .iter()
        .filter(|(_, half)| old(half))
        .map(|(key, _)| key.clone())
        .collect();
    for key in clients {
        let Some(client) = state.clients.remove(&key) else {
            continue;
        };
        match client.peer.clone() {
            Some((peer, connection)) => {
                let edge = state
                    .edges
                    .entry((client.service.clone(), peer, connection))
                    .or_default();
                edge.requests += 1;
                edge.failed += u64::from(client.failed);
                edge.client.observe(client.seconds);
            }
            None => {
                *state
                    .unpaired
                    .entry((client.service, "client"))
                    .or_default() += 1
            }
        }
    }
    let servers: Vec<_> = state
        .servers
        .iter()
        .filter(|(_, half)| old(half))
        .map(|(key, _)| key.clone())
        .collect();
    for key in servers {
        if let Some(server) = state.servers.remove(&key) {
            *state
                .unpaired
                .entry((server.service, "server"))
                .or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_otlp::{request, text};
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::trace::v1::{status, Status};

    fn span(id: u8, parent: u8, kind: i32, millis: u64, attributes: Vec<KeyValue>) -> OtlpSpan {
        OtlpSpan {
            trace_id: vec![7; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
            name: format!("op{id}"),
            kind,
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_000_000_000 + millis * 1_000_000,
            attributes,
            ..Default::default()
        }
    }

    fn value(out: &Translated, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        out.samples
            .iter()
            .find(|s| {
                s.labels.iter().any(|(k, v)| k == "__name__" && v == name)
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
    }

    #[test]
    fn pairs_across_services_in_either_order_and_names_virtual_nodes() {
        let metrics = SpanMetrics::default();
        // The server span arrives before its client parent.
        let mut failing = span(3, 2, 2, 30, vec![]);
        failing.status = Some(Status {
            code: status::StatusCode::Error as i32,
            ..Default::default()
        });
        metrics.observe(&request("payment", vec![failing]));
        metrics.observe(&request(
            "orders",
            vec![
                span(1, 0, 2, 100, vec![]),
                span(2, 1, 3, 40, vec![]),
                span(
                    4,
                    1,
                    3,
                    5,
                    vec![text("db.system", "postgresql"), text("db.name", "orders")],
                ),
                span(5, 1, 3, 5, vec![]),
            ],
        ));
        let out = metrics.flush_with_window(1, Duration::ZERO);
        let edge = [("client", "orders"), ("server", "payment")];
        assert_eq!(
            value(&out, "traces_service_graph_request_total", &edge),
            Some(1.0)
        );
        assert_eq!(
            value(&out, "traces_service_graph_request_failed_total", &edge),
            Some(1.0)
        );
        // The database span had no server side: a virtual node named by the span.
        let db = [
            ("client", "orders"),
            ("server", "postgresql/orders"),
            ("connection_type", "database"),
        ];
        assert_eq!(
            value(&out, "traces_service_graph_request_total", &db),
            Some(1.0)
        );
        // A client span naming no peer, never answered: counted, not dropped.
        assert_eq!(
            value(
                &out,
                "traces_service_graph_unpaired_spans_total",
                &[("service", "orders"), ("side", "client")]
            ),
            Some(1.0)
        );
        // RED: one server span of `orders` of 100 ms: in the le="0.1" bucket, not le="0.05".
        let red = [
            ("service", "orders"),
            ("span_name", "op1"),
            ("span_kind", "SPAN_KIND_SERVER"),
        ];
        assert_eq!(
            value(&out, "traces_spanmetrics_calls_total", &red),
            Some(1.0)
        );
        let mut bucket = red.to_vec();
        bucket.push(("le", "0.05"));
        assert_eq!(
            value(&out, "traces_spanmetrics_latency_bucket", &bucket),
            Some(0.0)
        );
        bucket.pop();
        bucket.push(("le", "0.1"));
        assert_eq!(
            value(&out, "traces_spanmetrics_latency_bucket", &bucket),
            Some(1.0)
        );
        let errors = [("service", "payment"), ("status_code", "STATUS_CODE_ERROR")];
        assert_eq!(
            value(&out, "traces_spanmetrics_calls_total", &errors),
            Some(1.0)
        );
    }
}
