//! Demo traffic: the telemetry of a small shop (`../shared/product.md`), sent over real OTLP
//! (gRPC, or HTTP with protobuf bodies) to any endpoint: `sightline --demo` points it at itself,
//! `sightline loadgen --endpoint ... [--protocol http]` at any OTLP receiver.
//!
//! An API gateway fronts user, order, payment, inventory and notification services, each with its
//! own PostgreSQL database; orders and sign-ups publish RabbitMQ events (`order.created`,
//! `user.created`) that the notification service consumes asynchronously. Checkouts run the order
//! saga: payment, then stock reservation; a declined card or missing stock runs the compensations
//! (cancel the order, refund, release stock). Payment calls time out now and then and are retried
//! with backoff; after five failures in a row the circuit breaker opens for 30 s and calls fail
//! fast. Some queries are slow. Every span logs structured JSON lines carrying `correlationId`,
//! `userId`, `orderId` and the trace and span ids; services export request-duration histograms,
//! counters and gauges. The same seed gives the same sequence of requests and outcomes.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use tracing::{info, warn};

use crate::time::now_nanos;

/// What to send and how fast.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// User requests per second (each is one trace of 3 to 15 spans).
    #[arg(
        long = "demo-rate",
        visible_alias = "rate",
        global = true,
        env = "SIGHTLINE_DEMO_RATE",
        default_value_t = 5.0
    )]
    pub rate: f64,
    /// Seed of the traffic: the same seed gives the same requests and outcomes.
    #[arg(
        long = "demo-seed",
        visible_alias = "seed",
        global = true,
        env = "SIGHTLINE_DEMO_SEED",
        default_value_t = 42
    )]
    pub seed: u64,
    /// Stop after this many seconds (default: run until stopped).
    #[arg(
        long = "demo-seconds",
        visible_alias = "seconds",
        global = true,
        env = "SIGHTLINE_DEMO_SECONDS"
    )]
    pub seconds: Option<u64>,
}

/// How the traffic travels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP/gRPC (`http://host:4317`).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies, `POST {endpoint}/v1/traces` etc. (`http://host:4318`).
    Http,
}

/// An OTLP client of either protocol.
enum Exporter {
    Grpc {
        traces: TraceServiceClient<tonic::transport::Channel>,
        logs: LogsServiceClient<tonic::transport::Channel>,
        metrics: MetricsServiceClient<tonic::transport::Channel>,
    },
    Http {
        client: hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            http_body_util::Full<bytes::Bytes>,
        >,
        endpoint: String,
    },
}

impl Exporter {
    fn new(protocol: Protocol, endpoint: &str) -> anyhow::Result<Exporter> {
        Ok(match protocol {
            Protocol::Grpc => {
                let channel =
                    tonic::transport::Endpoint::from_shared(endpoint.to_owned())?.connect_lazy();
                Exporter::Grpc {
                    traces: TraceServiceClient::new(channel.clone()),
                    logs: LogsServiceClient::new(channel.clone()),
                    metrics: MetricsServiceClient::new(channel),
                }
            }
            Protocol::Http => Exporter::Http {
                client: hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http(),
                endpoint: endpoint.trim_end_matches('/').to_owned(),
            },
        })
    }

    async fn traces(&mut self, request: ExportTraceServiceRequest) -> anyhow::Result<()> {
        match self {
            Exporter::Grpc { traces, .. } => drop(traces.export(request).await?),
            Exporter::Http { .. } => self.post("/v1/traces", request.encode_to_vec()).await?,
        }
        Ok(())
    }

    async fn logs(&mut self, request: ExportLogsServiceRequest) -> anyhow::Result<()> {
        match self {
            Exporter::Grpc { logs, .. } => drop(logs.export(request).await?),
            Exporter::Http { .. } => self.post("/v1/logs", request.encode_to_vec()).await?,
        }
        Ok(())
    }

    async fn metrics(&mut self, request: ExportMetricsServiceRequest) -> anyhow::Result<()> {
        match self {
            Exporter::Grpc { metrics, .. } => drop(metrics.export(request).await?),
            Exporter::Http { .. } => self.post("/v1/metrics", request.encode_to_vec()).await?,
        }
        Ok(())
    }

    /// An OTLP/HTTP export: a protobuf body, 2xx or an error with the server's answer.
    async fn post(&self, path: &str, body: Vec<u8>) -> anyhow::Result<()> {
        let Exporter::Http { client, endpoint } = self else {
            unreachable!("post is the HTTP exporter's")
        };
        let request = axum::http::Request::post(format!("{endpoint}{path}"))
            .header("content-type", "application/x-protobuf")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        let response = client.request(request).await?;
        let status = response.status();
        if !status.is_success() {
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
                .unwrap_or_default();
            anyhow::bail!("HTTP {status}: {body}");
        }
        Ok(())
    }
}

const SERVICES: [&str; 6] = [
    "api-gateway",
    "user-service",
    "order-service",
    "payment-service",
    "inventory-service",
    "notification-service",
];
const LATENCY_BOUNDS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }

    /// A duration in milliseconds around `ms` (between half and twice).
    fn millis(&mut self, ms: u64) -> u64 {
        ms / 2 + self.next() % (ms * 3 / 2 + 1)
    }
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// The context of one user request: ids shared by its spans and logs.
struct Request {
    trace_id: Vec<u8>,
    correlation_id: String,
    user_id: String,
    order_id: Option<String>,
}

/// Spans, logs and metric observations of the requests simulated since the last flush.
#[derive(Default)]
struct Telemetry {
    spans: BTreeMap<&'static str, Vec<Span>>,
    logs: BTreeMap<&'static str, Vec<LogRecord>>,
    /// (service, route, status) -> latency histogram.
    latency: BTreeMap<(&'static str, String, u16), ([u64; LATENCY_BOUNDS.len() + 1], f64)>,
    orders_created: u64,
    orders_failed: u64,
    stock: i64,
    circuit_open: bool,
}

/// One simulated span: its service, and what it logs.
struct SpanSpec<'a> {
    /// The span id, when the caller needed it before the span existed.
    id: Option<Vec<u8>>,
    service: &'static str,
    name: &'a str,
    kind: SpanKind,
    start: u64,
    millis: u64,
    attributes: Vec<KeyValue>,
    error: Option<&'a str>,
    log: Option<String>,
}

/// The shop's state across requests.
struct Shop {
    rng: Rng,
    telemetry: Telemetry,
    payment_failures_in_a_row: u32,
    circuit_open_until: u64,
    users: u64,
}

impl Shop {
    fn span(&mut self, request: &Request, parent: &[u8], spec: SpanSpec<'_>) -> Vec<u8> {
        let span_id = spec
            .id
            .unwrap_or_else(|| self.rng.next().to_be_bytes().to_vec());
        let end = spec.start + spec.millis * 1_000_000;
        let mut attributes = spec.attributes;
        attributes.push(text("correlationId", request.correlation_id.clone()));
        let status = match spec.error {
            Some(message) => Status {
                code: status::StatusCode::Error as i32,
                message: message.into(),
            },
            None => Status::default(),
        };
        let level = if spec.error.is_some() {
            "ERROR"
        } else {
            "INFO"
        };
        let message = spec
            .log
            .unwrap_or_else(|| format!("{} completed", spec.name));
        let body = serde_json::json!({
            "level": level,
            "service": spec.service,
            "correlationId": request.correlation_id,
            "userId": request.user_id,
            "orderId": request.order_id,
            "message": spec.error.map_or(message, |e| format!("{}: {e}", spec.name)),
            "duration": spec.millis,
        });
        self.telemetry
            .logs
            .entry(spec.service)
            .or_default()
            .push(LogRecord {
                time_unix_nano: end,
                observed_time_unix_nano: end,
                severity_number: if spec.error.is_some() { 17 } else { 9 },
                severity_text: level.into(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(body.to_string())),
                }),
                trace_id: request.trace_id.clone(),
                span_id: span_id.clone(),
                flags: 1,
                ..Default::default()
            });
        if spec.kind == SpanKind::Server {
            let code = if spec.error.is_some() { 500 } else { 200 };
            let entry = self
                .telemetry
                .latency
                .entry((spec.service, spec.name.to_owned(), code))
                .or_insert(([0; LATENCY_BOUNDS.len() + 1], 0.0));
            let seconds = spec.millis as f64 / 1000.0;
            let bucket = LATENCY_BOUNDS
                .iter()
                .position(|b| seconds <= *b)
                .unwrap_or(LATENCY_BOUNDS.len());
            entry.0[bucket] += 1;
            entry.1 += seconds;
        }
        self.telemetry
            .spans
            .entry(spec.service)
            .or_default()
            .push(Span {
                trace_id: request.trace_id.clone(),
                span_id: span_id.clone(),
                parent_span_id: parent.to_vec(),
                name: spec.name.into(),
                kind: spec.kind as i32,
                start_time_unix_nano: spec.start,
                end_time_unix_nano: end,
                attributes,
                status: Some(status),
                ..Default::default()
            });
        span_id
    }

    fn db(
        &mut self,
        request: &Request,
        parent: &[u8],
        service: &'static str,
        statement: &str,
        start: u64,
    ) -> u64 {
        let slow = self.rng.chance(0.02);
        let millis = if slow {
            1_500 + self.rng.next() % 1_500
        } else {
            self.rng.millis(4)
        };
        let database = service.trim_end_matches("-service");
        self.span(
            request,
            parent,
            SpanSpec {
                id: None,
                service,
                name: statement
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
                    .as_str(),
                kind: SpanKind::Client,
                start,
                millis,
                attributes: vec![
                    text("db.system", "postgresql"),
                    text("db.name", database),
                    text("db.statement", statement),
                ],
                error: None,
                log: Some(if slow {
                    format!("slow query on {database}: {millis} ms")
                } else {
                    format!("query on {database} took {millis} ms")
                }),
            },
        );
        millis
    }

    /// A call from `client` to `server`: a client span, the server span under it, and `work`
    /// inside the server span. Returns the client span's duration and the error, if any.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        request: &Request,
        parent: &[u8],
        client: &'static str,
        server: &'static str,
        route: &str,
        start: u64,
        work: impl FnOnce(&mut Shop, &[u8], u64) -> (u64, Option<String>),
    ) -> (u64, Option<String>) {
        // Both ids are needed before the spans exist: the work runs first, to know durations.
        let client_span = self.rng.next().to_be_bytes().to_vec();
        let server_start = start + 1_000_000;
        let server_span_id = self.rng.next().to_be_bytes().to_vec();
        let (work_millis, error) = work(self, &server_span_id, server_start + 1_000_000);
        let server_millis = work_millis + 2;
        let client_millis = server_millis + 2;
        // Server span (explicit id, so the work above could parent to it).
        let mut server_span_spec = SpanSpec {
            id: Some(server_span_id),
            service: server,
            name: route,
            kind: SpanKind::Server,
            start: server_start,
            millis: server_millis,
            attributes: vec![
                text("http.route", route),
                text("http.request.method", "POST"),
            ],
            error: error.as_deref(),
            log: None,
        };
        server_span_spec.attributes.push(int(
            "http.response.status_code",
            if error.is_some() { 500 } else { 200 },
        ));
        self.span(request, &client_span, server_span_spec);
        self.span(
            request,
            parent,
            SpanSpec {
                id: Some(client_span),
                service: client,
                name: &format!("POST {route}"),
                kind: SpanKind::Client,
                start,
                millis: client_millis,
                attributes: vec![
                    text("peer.service", server),
                    text("http.request.method", "POST"),
                ],
                error: error.as_deref(),
                log: Some(format!("called {server} {route}")),
            },
        );
        (client_millis, error)
    }

    fn publish(
        &mut self,
        request: &Request,
        parent: &[u8],
        service: &'static str,
        event: &str,
        start: u64,
    ) {
        let producer = self.span(
            request,
            parent,
            SpanSpec {
                id: None,
                service,
                name: &format!("{event} publish"),
                kind: SpanKind::Producer,
                start,
                millis: 2,
                attributes: vec![
                    text("messaging.system", "rabbitmq"),
                    text("messaging.destination.name", event),
                ],
                error: None,
                log: Some(format!("published {event}")),
            },
        );
        // Consumed asynchronously, a little later.
        let consume_start = start + self.rng.millis(40) * 1_000_000;
        let consume_millis = self.rng.millis(30);
        let consumer = self.span(
            request,
            &producer,
            SpanSpec {
                id: None,
                service: "notification-service",
                name: &format!("{event} process"),
                kind: SpanKind::Consumer,
                start: consume_start,
                millis: consume_millis,
                attributes: vec![
                    text("messaging.system", "rabbitmq"),
                    text("messaging.destination.name", event),
                ],
                error: None,
                log: Some(format!("consumed {event}, sending email")),
            },
        );
        self.db(
            request,
            &consumer,
            "notification-service",
            "INSERT INTO notifications",
            consume_start + 3_000_000,
        );
    }

    /// Simulates one user request starting now.
    fn user_request(&mut self) {
        let mut trace_id = self.rng.next().to_be_bytes().to_vec();
        trace_id.extend_from_slice(&self.rng.next().to_be_bytes());
        let kind = self.rng.next() % 10;
        let user = self.rng.next() % 500 + 1;
        let mut request = Request {
            trace_id,
            correlation_id: format!("{:x}-{:x}", self.rng.next() >> 40, self.rng.next() >> 40),
            user_id: format!("user-{user}"),
            order_id: None,
        };
        let start = now_nanos();
        let root_id = self.rng.next().to_be_bytes().to_vec();
        let (millis, error, route) = match kind {
            0..=6 => {
                request.order_id = Some(format!("order-{}", self.rng.next() % 1_000_000));
                let (m, e) = self.checkout(&request, &root_id, start + 1_000_000);
                (m, e, "/api/orders")
            }
            7 | 8 => {
                let (m, e) = self.call(
                    &request,
                    &root_id,
                    "api-gateway",
                    "user-service",
                    "/users",
                    start + 1_000_000,
                    |shop, parent, at| {
                        let m = shop.db(&request, parent, "user-service", "INSERT INTO users", at);
                        shop.publish(
                            &request,
                            parent,
                            "user-service",
                            "user.created",
                            at + m * 1_000_000,
                        );
                        shop.users += 1;
                        (m + 3, None)
                    },
                );
                (m, e, "/api/users")
            }
            _ => {
                let (m, e) = self.call(
                    &request,
                    &root_id,
                    "api-gateway",
                    "inventory-service",
                    "/products",
                    start + 1_000_000,
                    |shop, parent, at| {
                        let m = shop.db(
                            &request,
                            parent,
                            "inventory-service",
                            "SELECT products WHERE category = $1",
                            at,
                        );
                        (m + 1, None)
                    },
                );
                (m, e, "/api/products")
            }
        };
        self.span(
            &request,
            &[],
            SpanSpec {
                id: Some(root_id),
                service: "api-gateway",
                name: &format!("POST {route}"),
                kind: SpanKind::Server,
                start,
                millis: millis + 2,
                attributes: vec![
                    text("http.route", route),
                    int(
                        "http.response.status_code",
                        if error.is_some() { 502 } else { 200 },
                    ),
                    text("user.id", request.user_id.clone()),
                ],
                error: error.as_deref(),
                log: Some(format!("{route} answered")),
            },
        );
    }

    /// The order saga: create the order, charge (retries, circuit breaker), reserve stock,
    /// publish `order.created`; compensations on failure.
    fn checkout(&mut self, request: &Request, parent: &[u8], start: u64) -> (u64, Option<String>) {
        self.call(
            request,
            parent,
            "api-gateway",
            "order-service",
            "/orders",
            start,
            |shop, order_span, at| {
                let mut at = at;
                let mut elapsed = shop.db(
                    request,
                    order_span,
                    "order-service",
                    "INSERT INTO orders",
                    at,
                );
                at += elapsed * 1_000_000;
                // Payment, with retries and a circuit breaker.
                let mut payment_error = None;
                let now = now_nanos();
                if now < shop.circuit_open_until {
                    payment_error =
                        Some("circuit breaker open: payment-service unavailable".to_owned());
                    shop.telemetry.circuit_open = true;
                } else {
                    shop.telemetry.circuit_open = false;
                    for attempt in 1..=3u64 {
                        let timeout = shop.rng.chance(0.06);
                        let declined = !timeout && shop.rng.chance(0.08);
                        let (m, e) = shop.call(
                            request,
                            order_span,
                            "order-service",
                            "payment-service",
                            "/payments",
                            at,
                            |shop, pay_span, at| {
                                if timeout {
                                    (1_000, Some("upstream timeout after 1000 ms".to_owned()))
                                } else {
                                    let m = shop.db(
                                        request,
                                        pay_span,
                                        "payment-service",
                                        "INSERT INTO payments",
                                        at,
                                    );
                                    if declined {
                                        (m + 5, Some("card declined".to_owned()))
                                    } else {
                                        (m + shop.rng.millis(60), None)
                                    }
                                }
                            },
                        );
                        elapsed += m;
                        at += m * 1_000_000;
                        payment_error = e;
                        if !timeout {
                            break;
                        }
                        // Backoff before the next attempt: 100 ms, 200 ms.
                        at += 100 * attempt * 1_000_000;
                        elapsed += 100 * attempt;
                    }
                    if payment_error.is_some() {
                        shop.payment_failures_in_a_row += 1;
                        if shop.payment_failures_in_a_row >= 5 {
                            shop.circuit_open_until = now + 30_000_000_000;
                            shop.payment_failures_in_a_row = 0;
                        }
                    } else {
                        shop.payment_failures_in_a_row = 0;
                    }
                }
                if let Some(error) = payment_error {
                    let m = shop.db(
                        request,
                        order_span,
                        "order-service",
                        "UPDATE orders SET status = 'cancelled'",
                        at,
                    );
                    shop.telemetry.orders_failed += 1;
                    return (elapsed + m, Some(format!("payment failed: {error}")));
                }
                let out_of_stock = shop.rng.chance(0.04);
                let (m, e) = shop.call(
                    request,
                    order_span,
                    "order-service",
                    "inventory-service",
                    "/reservations",
                    at,
                    |shop, inv_span, at| {
                        let m = shop.db(
                            request,
                            inv_span,
                            "inventory-service",
                            "UPDATE stock SET reserved = reserved + 1",
                            at,
                        );
                        if out_of_stock {
                            (m, Some("out of stock".to_owned()))
                        } else {
                            shop.telemetry.stock -= 1;
                            (m, None)
                        }
                    },
                );
                elapsed += m;
                at += m * 1_000_000;
                if let Some(error) = e {
                    // Compensation: refund the payment, cancel the order.
                    let (m, _) = shop.call(
                        request,
                        order_span,
                        "order-service",
                        "payment-service",
                        "/refunds",
                        at,
                        |shop, span, at| {
                            (
                                shop.db(
                                    request,
                                    span,
                                    "payment-service",
                                    "INSERT INTO refunds",
                                    at,
                                ),
                                None,
                            )
                        },
                    );
                    shop.telemetry.orders_failed += 1;
                    return (
                        elapsed + m,
                        Some(format!("reservation failed: {error}; payment refunded")),
                    );
                }
                shop.publish(request, order_span, "order-service", "order.created", at);
                shop.telemetry.orders_created += 1;
                (elapsed + 2, None)
            },
        )
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            text("service.name", service),
            text("service.namespace", "shop"),
            text("service.instance.id", format!("{service}-1")),
            text("deployment.environment", "demo"),
        ],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "sightline-demo".into(),
        ..Default::default()
    })
}

fn metrics_request(telemetry: &Telemetry, start: u64, now: u64) -> ExportMetricsServiceRequest {
    let mut by_service: BTreeMap<&str, Vec<Metric>> = BTreeMap::new();
    for ((service, route, code), (counts, sum)) in &telemetry.latency {
        let point = HistogramDataPoint {
            attributes: vec![
                text("http.route", route.clone()),
                int("http.response.status_code", *code as i64),
            ],
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: counts.iter().sum(),
            sum: Some(*sum),
            bucket_counts: counts.to_vec(),
            explicit_bounds: LATENCY_BOUNDS.to_vec(),
            ..Default::default()
        };
        by_service.entry(service).or_default().push(Metric {
            name: "http_request_duration_seconds".into(),
            description: "Duration of HTTP requests served.".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![point],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        });
    }
    let number = |value: f64, attributes: Vec<KeyValue>| NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    };
    let orders = by_service.entry("order-service").or_default();
    orders.push(Metric {
        name: "orders".into(),
        description: "Orders by outcome.".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![
                number(
                    telemetry.orders_created as f64,
                    vec![text("outcome", "created")],
                ),
                number(
                    telemetry.orders_failed as f64,
                    vec![text("outcome", "failed")],
                ),
            ],
            aggregation_temporality: 2,
            is_monotonic: true,
        })),
        ..Default::default()
    });
    by_service
        .entry("inventory-service")
        .or_default()
        .push(Metric {
            name: "inventory.stock.level".into(),
            unit: "{items}".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![number(telemetry.stock as f64, vec![])],
            })),
            ..Default::default()
        });
    by_service.entry("order-service").or_default().push(Metric {
        name: "payment.circuit_breaker.open".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![number(f64::from(u8::from(telemetry.circuit_open)), vec![])],
        })),
        ..Default::default()
    });
    ExportMetricsServiceRequest {
        resource_metrics: by_service
            .into_iter()
            .map(|(service, metrics)| ResourceMetrics {
                resource: resource(service),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope(),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Sends demo traffic to `endpoint` (e.g. `http://127.0.0.1:4317` for gRPC,
/// `http://127.0.0.1:4318` for HTTP) until stopped or `args.seconds` have passed.
pub async fn run(endpoint: String, protocol: Protocol, args: DemoArgs) -> anyhow::Result<()> {
    let mut exporter = Exporter::new(protocol, &endpoint)?;
    info!(%endpoint, ?protocol, rate = args.rate, seed = args.seed, "demo traffic started");
    let mut shop = Shop {
        rng: Rng(args.seed),
        telemetry: Telemetry {
            stock: 10_000,
            ..Telemetry::default()
        },
        payment_failures_in_a_row: 0,
        circuit_open_until: 0,
        users: 0,
    };
    let started = std::time::Instant::now();
    let metrics_start = now_nanos();
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.01));
    let mut tick = tokio::time::interval(interval.min(Duration::from_secs(1)));
    let mut next_request = std::time::Instant::now();
    let mut last_flush = std::time::Instant::now();
    let mut last_metrics = std::time::Instant::now();
    loop {
        tick.tick().await;
        while std::time::Instant::now() >= next_request {
            shop.user_request();
            next_request += interval;
        }
        let done = args
            .seconds
            .is_some_and(|s| started.elapsed() >= Duration::from_secs(s));
        if last_flush.elapsed() >= Duration::from_secs(1) || done {
            last_flush = std::time::Instant::now();
            let spans = std::mem::take(&mut shop.telemetry.spans);
            let records = std::mem::take(&mut shop.telemetry.logs);
            let request = ExportTraceServiceRequest {
                resource_spans: spans
                    .into_iter()
                    .map(|(service, spans)| ResourceSpans {
                        resource: resource(service),
                        scope_spans: vec![ScopeSpans {
                            scope: scope(),
                            spans,
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            };
            if let Err(err) = exporter.traces(request).await {
                warn!(error = %err, "demo: span export failed");
            }
            let request = ExportLogsServiceRequest {
                resource_logs: records
                    .into_iter()
                    .map(|(service, log_records)| ResourceLogs {
                        resource: resource(service),
                        scope_logs: vec![ScopeLogs {
                            scope: scope(),
                            log_records,
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            };
            if let Err(err) = exporter.logs(request).await {
                warn!(error = %err, "demo: log export failed");
            }
        }
        if last_metrics.elapsed() >= Duration::from_secs(5) || done {
            last_metrics = std::time::Instant::now();
            let request = metrics_request(&shop.telemetry, metrics_start, now_nanos());
            if let Err(err) = exporter.metrics(request).await {
                warn!(error = %err, "demo: metric export failed");
            }
        }
        if done {
            info!(users = shop.users, "demo traffic stopped");
            return Ok(());
        }
    }
}

/// The services the demo simulates.
pub fn services() -> &'static [&'static str] {
    &SERVICES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop(seed: u64) -> Shop {
        Shop {
            rng: Rng(seed),
            telemetry: Telemetry::default(),
            payment_failures_in_a_row: 0,
            circuit_open_until: 0,
            users: 0,
        }
    }

    /// Span ids, names, services and statuses of `n` requests.
    fn outline(seed: u64, n: usize) -> Vec<(String, Vec<u8>, String, i32)> {
        let mut shop = shop(seed);
        for _ in 0..n {
            shop.user_request();
        }
        shop.telemetry
            .spans
            .iter()
            .flat_map(|(service, spans)| {
                spans.iter().map(move |span| {
                    (
                        (*service).to_owned(),
                        span.span_id.clone(),
                        span.name.clone(),
                        span.status.as_ref().map_or(0, |s| s.code),
                    )
                })
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let a = outline(7, 200);
        assert_eq!(a, outline(7, 200));
        assert_ne!(a, outline(8, 200));
        // Every service takes part, and some requests fail.
        for service in SERVICES {
            assert!(a.iter().any(|(s, ..)| s == service), "no span of {service}");
        }
        assert!(a.iter().any(|(.., status)| *status == 2));
    }

    #[test]
    fn every_span_has_a_log_line_with_its_ids() {
        let mut shop = shop(1);
        for _ in 0..50 {
            shop.user_request();
        }
        let spans: usize = shop.telemetry.spans.values().map(Vec::len).sum();
        let logs: Vec<&LogRecord> = shop.telemetry.logs.values().flatten().collect();
        assert_eq!(logs.len(), spans);
        for log in logs {
            assert_eq!(log.trace_id.len(), 16);
            assert_eq!(log.span_id.len(), 8);
            let Some(any_value::Value::StringValue(body)) =
                log.body.as_ref().and_then(|b| b.value.as_ref())
            else {
                panic!("string body");
            };
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(body["correlationId"].is_string());
            assert!(body["userId"].as_str().unwrap().starts_with("user-"));
        }
    }
}
