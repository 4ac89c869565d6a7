//! Metrics: the OpenTelemetry Rust SDK's metrics through the `opentelemetry-otlp` exporter (both
//! temporalities, over gRPC and HTTP), raw OTLP, the Prometheus API Grafana uses, PromQL results
//! checked against values worked out by hand, the series cap, and restart.

use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue as SdkKeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::Resource as SdkResource;
use serde_json::{json, Value};
use sightline_proto::otlp::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use sightline_proto::otlp::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use sightline_proto::otlp::collector::trace::v1::ExportTraceServiceResponse;
use sightline_proto::otlp::common::v1::any_value::Value as OtlpValue;
use sightline_proto::otlp::metrics::v1::metric::Data;
use sightline_proto::otlp::metrics::v1::number_data_point::Value as NumberValue;
use sightline_proto::otlp::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use sightline_proto::otlp::resource::v1::Resource;

use crate::otlp::{kv, now_nanos};
use crate::support::{metric, post_otlp, query_json, Server};

/// GET a Prometheus API path with parameters; status and body.
async fn prom(server: &Server, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    query_json(server, &format!("/prometheus/api/v1/{path}"), params).await
}

/// POSTs an export as OTLP/HTTP protobuf; expects 200 and returns the decoded answer.
async fn export(
    server: &Server,
    request: &ExportMetricsServiceRequest,
) -> ExportMetricsServiceResponse {
    post_otlp(server, "/v1/metrics", request).await
}

/// The instant-query result as `labels -> value`.
async fn instant(server: &Server, query: &str, time: Option<f64>) -> Vec<(Value, f64)> {
    let time = time.map(|t| t.to_string());
    let mut params = vec![("query", query)];
    if let Some(time) = &time {
        params.push(("time", time));
    }
    let (status, body) = prom(server, "query", &params).await;
    assert_eq!(status, 200, "{query}: {body}");
    assert_eq!(body["status"], "success");
    match body["data"]["resultType"].as_str().unwrap() {
        "vector" => body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].clone(),
                    r["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect(),
        "scalar" => vec![(
            Value::Null,
            body["data"]["result"][1].as_str().unwrap().parse().unwrap(),
        )],
        other => panic!("{query}: result type {other}: {body}"),
    }
}

/// Polls until `query` has a result.
async fn wait_for(server: &Server, query: &str) -> Vec<(Value, f64)> {
    for _ in 0..400 {
        let result = instant(server, query, None).await;
        if !result.is_empty() {
            return result;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no result for {query} within 20 s");
}

fn sdk_provider(exporter: opentelemetry_otlp::MetricExporter) -> SdkMeterProvider {
    SdkMeterProvider::builder()
        .with_resource(
            SdkResource::builder()
                .with_service_name("checkout")
                .with_attribute(SdkKeyValue::new("service.namespace", "shop"))
                .with_attribute(SdkKeyValue::new("deployment.environment", "e2e"))
                .with_attribute(SdkKeyValue::new("host.name", "e2e-host"))
                .build(),
        )
        .with_reader(
            PeriodicReader::builder(exporter)
                .with_interval(Duration::from_secs(3600))
                .build(),
        )
        .build()
}

/// Records the same measurements through one provider: two exports.
fn record(provider: &SdkMeterProvider, prefix: &str) {
    let meter = provider.meter("e2e");
    let orders = meter.u64_counter(format!("{prefix}.orders")).build();
    let queue = meter
        .i64_up_down_counter(format!("{prefix}.queue.depth"))
        .build();
    let latency = meter
        .f64_histogram(format!("{prefix}.request.duration"))
        .with_unit("s")
        .with_boundaries(vec![0.25, 1.0, 5.0])
        .build();
    let temperature = meter.f64_gauge(format!("{prefix}.temperature")).build();
    let route = [SdkKeyValue::new("http.route", "/api/orders")];
    orders.add(5, &route);
    queue.add(4, &[]);
    latency.record(0.1, &route);
    latency.record(0.2, &route);
    temperature.record(20.5, &[]);
    provider.force_flush().unwrap();
    orders.add(3, &route);
    queue.add(-1, &[]);
    latency.record(3.0, &route);
    temperature.record(21.5, &[]);
    provider.force_flush().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_metrics_both_temporalities_over_grpc_and_http() {
    let server = Server::start(&[]);
    let grpc = server.grpc_url();
    let http = server.http_url("/v1/metrics");
    tokio::task::spawn_blocking(move || {
        let cumulative = sdk_provider(
            opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(grpc)
                .with_temporality(Temporality::Cumulative)
                .build()
                .unwrap(),
        );
        record(&cumulative, "cumulative");
        let delta = sdk_provider(
            opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(http)
                .with_temporality(Temporality::Delta)
                .build()
                .unwrap(),
        );
        record(&delta, "delta");
        cumulative.shutdown().unwrap();
        delta.shutdown().unwrap();
    })
    .await
    .unwrap();

    for prefix in ["cumulative", "delta"] {
        // 5 + 3, whether the SDK sent totals or the two increments. Read a second ahead: a
        // second export ending in the same millisecond as the first is stored just after.
        let query = format!("{prefix}_orders_total");
        wait_for(&server, &query).await;
        let ahead = now_nanos() as f64 / 1e9 + 1.0;
        let orders = instant(&server, &query, Some(ahead)).await;
        assert_eq!(orders.len(), 1, "{orders:?}");
        let (labels, value) = &orders[0];
        assert_eq!(*value, 8.0, "{prefix}: {labels}");
        assert_eq!(labels["job"], "shop/checkout");
        assert_eq!(labels["service_name"], "checkout");
        assert_eq!(labels["deployment_environment"], "e2e");
        assert_eq!(labels["http_route"], "/api/orders");
        // An up-down counter is a gauge: 4 - 1, no `_total`.
        let queue = instant(&server, &format!("{prefix}_queue_depth"), Some(ahead)).await;
        assert_eq!(queue[0].1, 3.0, "{prefix}");
        let temperature = instant(&server, &format!("{prefix}_temperature"), Some(ahead)).await;
        assert_eq!(temperature[0].1, 21.5);
        // Histogram: 0.1, 0.2, 3.0 in buckets (.., 0.25], (0.25, 1], (1, 5], (5, +Inf).
        let buckets = instant(
            &server,
            &format!("{prefix}_request_duration_seconds_bucket"),
            Some(ahead),
        )
        .await;
        let by_le: Vec<(String, f64)> = {
            let mut v: Vec<(String, f64)> = buckets
                .iter()
                .map(|(l, v)| (l["le"].as_str().unwrap().to_owned(), *v))
                .collect();
            v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            v
        };
        assert_eq!(
            by_le,
            [
                ("0.25".to_owned(), 2.0),
                ("1".to_owned(), 2.0),
                ("+Inf".to_owned(), 3.0),
                ("5".to_owned(), 3.0)
            ],
            "{prefix}"
        );
        let count = instant(
            &server,
            &format!("{prefix}_request_duration_seconds_count"),
            Some(ahead),
        )
        .await;
        assert_eq!(count[0].1, 3.0);
        let sum = instant(
            &server,
            &format!("{prefix}_request_duration_seconds_sum"),
            Some(ahead),
        )
        .await;
        assert!((sum[0].1 - 3.3).abs() < 1e-9, "{sum:?}");
        // The median of {0.1, 0.2, 3.0}: rank 1.5 falls in (0, 0.25] holding 2: 0.25 * 1.5 / 2.
        let median = instant(
            &server,
            &format!(
                "histogram_quantile(0.5, sum by (le) ({prefix}_request_duration_seconds_bucket))"
            ),
            Some(ahead),
        )
        .await;
        assert!((median[0].1 - 0.1875).abs() < 1e-9, "{median:?}");
    }
    // target_info carries the resource attributes that are not labels already.
    let info = wait_for(&server, "target_info{job=\"shop/checkout\"}").await;
    assert_eq!(info[0].0["host_name"], "e2e-host");

    // Metadata keeps type, unit and description.
    let (_, metadata) = prom(
        &server,
        "metadata",
        &[("metric", "cumulative_orders_total")],
    )
    .await;
    assert_eq!(
        metadata["data"]["cumulative_orders_total"][0]["type"],
        "counter"
    );
    let (_, metadata) = prom(&server, "metadata", &[]).await;
    assert_eq!(
        metadata["data"]["delta_request_duration_seconds"][0]["type"],
        "histogram"
    );
}

/// A gauge point: its attributes, time (unix ns) and value.
type GaugePoint<'a> = (Vec<(&'a str, &'a str)>, u64, f64);

fn gauge_request(name: &str, points: Vec<GaugePoint<'_>>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", OtlpValue::StringValue("raw".into()))],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: points
                            .into_iter()
                            .map(|(attributes, t, v)| NumberDataPoint {
                                attributes: attributes
                                    .into_iter()
                                    .map(|(k, v)| kv(k, OtlpValue::StringValue(v.into())))
                                    .collect(),
                                time_unix_nano: t,
                                value: Some(NumberValue::AsDouble(v)),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn counter_request(name: &str, start: u64, points: &[(u64, f64)]) -> ExportMetricsServiceRequest {
    let mut request = gauge_request(name, Vec::new());
    request.resource_metrics[0].scope_metrics[0].metrics[0].data = Some(Data::Sum(Sum {
        data_points: points
            .iter()
            .map(|(t, v)| NumberDataPoint {
                start_time_unix_nano: start,
                time_unix_nano: *t,
                value: Some(NumberValue::AsDouble(*v)),
                ..Default::default()
            })
            .collect(),
        aggregation_temporality: 2,
        is_monotonic: true,
    }));
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn promql_matches_values_worked_out_by_hand() {
    let server = Server::start(&[]);
    let mut client = MetricsServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    // A counter sampled every 15 s over two minutes, reset after 60 s:
    // t = 0..=120 s: 0 10 20 30 40 | 5 15 25 35
    let second = 1_000_000_000u64;
    let t0 = (now_nanos() / second - 600) * second;
    let values = [0.0, 10.0, 20.0, 30.0, 40.0, 5.0, 15.0, 25.0, 35.0];
    let points: Vec<(u64, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (t0 + i as u64 * 15 * second, *v))
        .collect();
    let response = client
        .export(counter_request("jobs.done", t0, &points))
        .await
        .unwrap()
        .into_inner();
    assert!(response.partial_success.is_none(), "{response:?}");
    let at = |s: u64| ((t0 + s * second) / 1_000_000) as f64 / 1000.0;

    // increase over (60 s, 120 s] at t = 120 s: samples at 75..=120: 5 15 25 35 -> 30 over 45 s
    // of samples; average interval 15 s. The window starts 15 s before the first sample (< 1.1 x
    // 15 s: extrapolate), but a counter is not extrapolated below zero: at this slope it was 0
    // 45 s x 5/30 = 7.5 s before the first sample, so the start moves 7.5 s, not 15 s; the end is
    // the last sample. 30 x (45 + 7.5) / 45 = 35.
    let increase = instant(&server, "increase(jobs_done_total[1m])", Some(at(120))).await;
    assert!((increase[0].1 - 35.0).abs() < 1e-9, "{increase:?}");
    let rate = instant(&server, "rate(jobs_done_total[1m])", Some(at(120))).await;
    assert!((rate[0].1 - 35.0 / 60.0).abs() < 1e-9, "{rate:?}");
    // Over the reset: window (30, 90]: samples at 45 60 75 90: 30 40 5 15; corrected for the
    // reset: 30 40 45 55 -> 25 over 45 s; zero would be 45 x 30/25 = 54 s back, further than the
    // window's start 15 s back, so it extrapolates to 60 s: 25 x 60 / 45 = 33.33...
    let increase = instant(&server, "increase(jobs_done_total[1m])", Some(at(90))).await;
    assert!((increase[0].1 - 100.0 / 3.0).abs() < 1e-9, "{increase:?}");
    // irate: the last two samples, 25 -> 35 in 15 s.
    let irate = instant(&server, "irate(jobs_done_total[1m])", Some(at(120))).await;
    assert!((irate[0].1 - 10.0 / 15.0).abs() < 1e-9, "{irate:?}");
    // Lookback: at 120 s + 4 min the last sample is still the value; at + 6 min it is not.
    assert_eq!(
        instant(&server, "jobs_done_total", Some(at(120 + 240))).await[0].1,
        35.0
    );
    assert!(instant(&server, "jobs_done_total", Some(at(120 + 360)))
        .await
        .is_empty());

    // Aggregations and vector matching over gauges.
    let t = t0 + 200 * second;
    let request = gauge_request(
        "queue.size",
        vec![
            (vec![("queue", "orders"), ("region", "eu")], t, 4.0),
            (vec![("queue", "orders"), ("region", "us")], t, 6.0),
            (vec![("queue", "mails"), ("region", "eu")], t, 1.0),
        ],
    );
    client.export(request).await.unwrap();
    let request = gauge_request(
        "queue.capacity",
        vec![
            (vec![("region", "eu")], t, 10.0),
            (vec![("region", "us")], t, 20.0),
        ],
    );
    client.export(request).await.unwrap();
    let at_t = (t / 1_000_000) as f64 / 1000.0;
    let sums = instant(&server, "sum by (queue) (queue_size)", Some(at_t)).await;
    let mut sums: Vec<(String, f64)> = sums
        .iter()
        .map(|(l, v)| (l["queue"].as_str().unwrap().to_owned(), *v))
        .collect();
    sums.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        sums,
        [("mails".to_owned(), 1.0), ("orders".to_owned(), 10.0)]
    );
    // Utilisation per queue: each queue divided by its region's capacity (many-to-one).
    let ratio = instant(
        &server,
        "queue_size / on (region) group_left queue_capacity",
        Some(at_t),
    )
    .await;
    let mut ratio: Vec<(String, String, f64)> = ratio
        .iter()
        .map(|(l, v)| {
            (
                l["queue"].as_str().unwrap().to_owned(),
                l["region"].as_str().unwrap().to_owned(),
                *v,
            )
        })
        .collect();
    ratio.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        ratio,
        [
            ("mails".to_owned(), "eu".to_owned(), 0.1),
            ("orders".to_owned(), "eu".to_owned(), 0.4),
            ("orders".to_owned(), "us".to_owned(), 0.3)
        ]
    );
    let top = instant(&server, "topk(1, queue_size)", Some(at_t)).await;
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].1, 6.0);
    let filtered = instant(&server, "queue_size > 3", Some(at_t)).await;
    assert_eq!(filtered.len(), 2);
    let as_bool = instant(&server, "queue_size > bool 3", Some(at_t)).await;
    assert_eq!(as_bool.iter().map(|(_, v)| v).sum::<f64>(), 2.0);

    // A range query: steps every 30 s from 0 to 120 s of `jobs_done_total`.
    let (status, body) = prom(
        &server,
        "query_range",
        &[
            ("query", "jobs_done_total"),
            ("start", &at(0).to_string()),
            ("end", &at(120).to_string()),
            ("step", "30s"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let values: Vec<String> = body["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(values, ["0", "20", "40", "15", "35"]);

    // Errors: a parse error is 400 bad_data; a many-to-many match is 422 execution.
    let (status, body) = prom(&server, "query", &[("query", "sum(")]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errorType"], "bad_data");
    let (status, body) = prom(
        &server,
        "query",
        &[
            ("query", "queue_size + on (region) queue_size"),
            ("time", &at_t.to_string()),
        ],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution");
}

#[tokio::test(flavor = "multi_thread")]
async fn grafana_save_and_test_series_labels_and_status() {
    let server = Server::start(&[]);
    // Grafana's "Save & test": POST a form with query=1+1.
    let response = reqwest::Client::new()
        .post(server.query_url("/prometheus/api/v1/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("query=1%2B1&time=1700000000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "success", "data": {"resultType": "scalar", "result": [1700000000, "2"]}})
    );
    let t = now_nanos();
    let request = gauge_request(
        "http.inflight",
        vec![
            (vec![("route", "/a")], t, 1.0),
            (vec![("route", "/b")], t, 2.0),
        ],
    );
    export(&server, &request).await;
    let (_, series) = prom(
        &server,
        "series",
        &[("match[]", "http_inflight{route=~\"/a|/b\"}")],
    )
    .await;
    assert_eq!(series["data"].as_array().unwrap().len(), 2, "{series}");
    let (_, labels) = prom(&server, "labels", &[]).await;
    assert!(labels["data"].as_array().unwrap().contains(&json!("route")));
    let (_, values) = prom(&server, "label/route/values", &[]).await;
    assert_eq!(values["data"], json!(["/a", "/b"]));
    let (status, _) = prom(&server, "series", &[]).await;
    assert_eq!(status, 400);
    let (_, info) = prom(&server, "status/buildinfo", &[]).await;
    assert!(info["data"]["version"].is_string());
    let (_, tsdb) = prom(&server, "status/tsdb", &[]).await;
    assert_eq!(tsdb["data"]["headStats"]["numSeries"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_series_cap_refuses_new_series_and_samples_survive_kill_9() {
    let server = Server::start(&["--metrics-max-series", "3"]);
    let t = now_nanos();
    let points = (0..5)
        .map(|i| (vec![("shard", ["a", "b", "c", "d", "e"][i])], t, i as f64))
        .collect();
    let answer = export(&server, &gauge_request("shard.load", points)).await;
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 2);
    assert!(
        partial.error_message.contains("series limit"),
        "{}",
        partial.error_message
    );
    assert_eq!(
        metric(&server, "sightline_metric_series_refused_total").await,
        2.0
    );
    let (_, tsdb) = prom(&server, "status/tsdb", &[]).await;
    assert_eq!(tsdb["data"]["sightline"]["refusedSeries"], 2);
    assert_eq!(instant(&server, "count(shard_load)", None).await[0].1, 3.0);

    let server = server.kill9_and_restart();
    let values = instant(&server, "sum(shard_load)", None).await;
    assert_eq!(
        values[0].1,
        0.0 + 1.0 + 2.0,
        "the acknowledged samples are back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_exports_within_one_millisecond_all_count_and_a_retry_does_not() {
    let server = Server::start(&[]);
    let t = now_nanos() / 1_000_000 * 1_000_000;
    // Three exports of a DELTA counter ending in the same millisecond, each interval starting
    // where the last ended (as the SDK's force_flush in quick succession sends them), then the
    // last one again (a retry).
    let intervals = [
        (t - 900_000, t + 100, 5.0),
        (t + 100, t + 200, 3.0),
        (t + 200, t + 300, 1.0),
    ];
    let mut exports: Vec<_> = intervals.iter().collect();
    exports.push(&intervals[2]);
    for (start, end, value) in exports {
        let mut request = counter_request("burst.orders", *start, &[(*end, *value)]);
        if let Some(Data::Sum(sum)) =
            &mut request.resource_metrics[0].scope_metrics[0].metrics[0].data
        {
            sum.aggregation_temporality = 1;
        }
        let answer = export(&server, &request).await;
        assert!(answer.partial_success.is_none(), "{answer:?}");
    }
    // Read a second later: the later two are stored a millisecond or two after they ended.
    let total = instant(&server, "burst_orders_total", Some(t as f64 / 1e9 + 1.0)).await;
    assert_eq!(total[0].1, 9.0, "5 + 3 + 1, the retry not added");
}

/// The names of the metrics write-ahead-log segments (their first sequence numbers).
fn metrics_wal_segments(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.data_dir().join("metrics-wal"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn samples_come_back_from_the_snapshot_and_the_log_after_it() {
    let server = Server::start(&[
        "--metrics-snapshot-interval",
        "1s",
        "--wal-segment-bytes",
        "4096",
    ]);
    let base = now_nanos() - 2 * 3600 * 1_000_000_000;
    let point = |i: u64| (base + i * 15_000_000_000, (2 * i) as f64);
    let request = |points: Vec<(u64, f64)>| counter_request("snap.requests", base, &points);
    // The first request fills the first segment (over 4 KiB); the second starts another.
    export(&server, &request((0..240).map(point).collect())).await;
    export(&server, &request(vec![point(240)])).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while metrics_wal_segments(&server)
        .first()
        .is_some_and(|first| first == "00000000000000000001.wal")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot removed the first segment within 20 s: {:?}\n{}",
            metrics_wal_segments(&server),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.data_dir().join("metrics-snapshot/snapshot").exists());
    // Acknowledged after the snapshot, so possibly only in the log.
    export(&server, &request((241..260).map(point).collect())).await;

    // The first 240 samples are in no log segment any more: only the snapshot has them.
    let server = server.kill9_and_restart();
    expect_snapshot_samples(&server).await;
    assert!(
        server.log().contains("metric store snapshot read"),
        "{}",
        server.log()
    );

    // A clean stop writes a last snapshot: the next start has nothing to replay.
    let mut server = server;
    assert!(server.terminate().success());
    let server = server.restart();
    let log = server.log();
    assert!(log.contains("metric store snapshot read"), "{log}");
    assert!(log.contains("replayed_samples=0"), "{log}");
    expect_snapshot_samples(&server).await;
}

/// The 260 samples of `samples_come_back_from_the_snapshot_and_the_log_after_it`, each once.
async fn expect_snapshot_samples(server: &Server) {
    let count = instant(server, "count_over_time(snap_requests_total[3h])", None).await;
    assert_eq!(count[0].1, 260.0, "every acknowledged sample is back, once");
    let last = instant(server, "last_over_time(snap_requests_total[3h])", None).await;
    assert_eq!(last[0].1, 2.0 * 259.0);
    let samples = instant(server, "resets(snap_requests_total[3h])", None).await;
    assert_eq!(samples[0].1, 0.0, "no reset: the samples are in order");
}

#[tokio::test(flavor = "multi_thread")]
async fn span_derived_red_metrics_and_service_graph_need_no_configuration() {
    let server = Server::start(&[]);
    let trace = crate::otlp::trace_id();
    // gateway (server) -> gateway (client) -> orders (server) -> orders (client, postgres).
    let root = crate::otlp::span(trace, 1, 0, "POST /checkout");
    let mut call = crate::otlp::span(trace, 2, 1, "POST orders");
    call.kind = 3;
    let mut handler = crate::otlp::span(trace, 3, 2, "create order");
    handler.status = Some(sightline_proto::otlp::trace::v1::Status {
        code: 2,
        message: "card declined".into(),
    });
    let mut query = crate::otlp::span(trace, 4, 3, "INSERT orders");
    query.kind = 3;
    query
        .attributes
        .push(kv("db.system", OtlpValue::StringValue("postgresql".into())));
    for request in [
        crate::otlp::request("orders", vec![handler, query]),
        crate::otlp::request("gateway", vec![root, call]),
    ] {
        let _: ExportTraceServiceResponse = post_otlp(&server, "/v1/traces", &request).await;
    }
    // Flushed every 5 s; the database edge waits out the 10 s pairing window.
    let edge = wait_for(
        &server,
        r#"traces_service_graph_request_total{client="gateway",server="orders"}"#,
    )
    .await;
    assert_eq!(edge[0].1, 1.0);
    let failed = instant(
        &server,
        r#"traces_service_graph_request_failed_total{client="gateway",server="orders"}"#,
        None,
    )
    .await;
    assert_eq!(failed[0].1, 1.0);
    let calls = instant(
        &server,
        "sum by (service) (traces_spanmetrics_calls_total)",
        None,
    )
    .await;
    let mut calls: Vec<(String, f64)> = calls
        .iter()
        .map(|(l, v)| (l["service"].as_str().unwrap().to_owned(), *v))
        .collect();
    calls.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        calls,
        [("gateway".to_owned(), 2.0), ("orders".to_owned(), 2.0)]
    );
    let errors = instant(
        &server,
        r#"traces_spanmetrics_calls_total{status_code="STATUS_CODE_ERROR"}"#,
        None,
    )
    .await;
    assert_eq!(errors[0].0["span_name"], "create order");
    let mut database = Vec::new();
    for _ in 0..40 {
        database = instant(
            &server,
            r#"traces_service_graph_request_total{client="orders",connection_type="database"}"#,
            None,
        )
        .await;
        if !database.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(database.len(), 1, "no database edge after 20 s");
    assert_eq!(database[0].0["server"], "postgresql");
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_otlp_json_metrics_with_exemplars_summaries_and_exponential_histograms() {
    let server = Server::start(&[]);
    let now = now_nanos();
    let t = now.to_string();
    let body = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": "http.server.request.duration", "unit": "s", "histogram": {
                "aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
                "dataPoints": [{"timeUnixNano": t, "startTimeUnixNano": (now - 60_000_000_000u64).to_string(),
                    "count": "3", "sum": 1.5, "bucketCounts": ["1", "2"], "explicitBounds": [0.5],
                    "exemplars": [{"timeUnixNano": t, "asDouble": 0.9,
                        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"}]}]}},
            {"name": "queue.latency", "unit": "ms", "exponentialHistogram": {
                "aggregationTemporality": 2,
                "dataPoints": [{"timeUnixNano": t, "count": "4", "sum": 10, "scale": 1, "zeroCount": "1",
                    "positive": {"offset": 0, "bucketCounts": ["1", "2"]}}]}},
            {"name": "rpc.duration", "unit": "s", "summary": {
                "dataPoints": [{"timeUnixNano": t, "count": "10", "sum": 2.5,
                    "quantileValues": [{"quantile": 0.5, "value": 0.2}, {"quantile": 0.99, "value": 0.9}]}]}}
        ]}]
    }]});
    let response = reqwest::Client::new()
        .post(server.http_url("/v1/metrics"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "{}", "full success");

    // Classic buckets: le=0.5 holds 1, +Inf all 3.
    let buckets = wait_for(&server, "http_server_request_duration_seconds_bucket").await;
    let mut les: Vec<(String, f64)> = buckets
        .iter()
        .map(|(l, v)| (l["le"].as_str().unwrap().to_owned(), *v))
        .collect();
    les.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(les, [("+Inf".to_owned(), 3.0), ("0.5".to_owned(), 1.0)]);
    // Scale 1: base sqrt(2); zero bucket, then (1, 1.414] holds 1 and (1.414, 2] holds 2.
    let exp = instant(&server, "queue_latency_milliseconds_bucket", None).await;
    let mut exp: Vec<(String, f64)> = exp
        .iter()
        .map(|(l, v)| (l["le"].as_str().unwrap().to_owned(), *v))
        .collect();
    exp.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    assert_eq!(
        exp,
        [
            ("0".to_owned(), 1.0),
            ("1.4142135623730951".to_owned(), 2.0),
            ("+Inf".to_owned(), 4.0),
            ("2".to_owned(), 4.0)
        ]
    );
    let p99 = instant(&server, "rpc_duration_seconds{quantile=\"0.99\"}", None).await;
    assert_eq!(p99[0].1, 0.9);

    // The exemplar keeps its trace: a chart point links to the trace.
    let start = ((now / 1_000_000) as f64 / 1000.0 - 60.0).to_string();
    let end = ((now / 1_000_000) as f64 / 1000.0 + 60.0).to_string();
    let (status, body) = prom(
        &server,
        "query_exemplars",
        &[
            ("query", "http_server_request_duration_seconds_bucket"),
            ("start", &start),
            ("end", &end),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let series = &body["data"][0];
    assert_eq!(
        series["seriesLabels"]["le"], "+Inf",
        "0.9 is above the 0.5 bound: {body}"
    );
    assert_eq!(
        series["exemplars"][0]["labels"]["trace_id"],
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(series["exemplars"][0]["value"], "0.9");
}
