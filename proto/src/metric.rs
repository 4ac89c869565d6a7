//! OTLP metrics as Prometheus series: Prometheus' default OTLP translation
//! (`UnderscoreEscapingWithSuffixes`), with `job`/`instance` from the resource, `target_info`
//! for the rest of the resource, and chosen resource attributes promoted onto every series.
//!
//! - Gauge -> gauge; monotonic Sum -> counter (`_total`); non-monotonic Sum -> gauge.
//! - Histogram -> `_bucket{le}` (cumulative counts, `le="+Inf"` last), `_sum`, `_count`.
//! - ExponentialHistogram -> the same classic buckets: bucket `i` of scale `s` covers
//!   `(base^i, base^(i+1)]` with `base = 2^(2^-s)`, so a quantile read from them is off by at most
//!   a factor `base` (9% at scale 3, 0.3% at scale 8); the zero bucket is `le="0"` (or the zero
//!   threshold), negative buckets come first with negative bounds.
//! - Summary -> `{quantile}`, `_sum`, `_count`.
//! - A point flagged NO_RECORDED_VALUE becomes a staleness marker.
//! - DELTA points are marked as such; the store accumulates them into cumulative series.
//!
//! Translation is pure: the store keeps the state (running totals of deltas, seen series).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::exemplar::Value as ExemplarValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumberValue;
use opentelemetry_proto::tonic::metrics::v1::Exemplar as OtlpExemplar;
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::validate::Rejected;
use crate::{SpanId, TraceId};

/// Prometheus' staleness marker: a NaN with this bit pattern ends a series.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
const FLAG_NO_RECORDED_VALUE: u32 = 1;
const TEMPORALITY_DELTA: i32 = 1;

/// Labels of a series, sorted by name, `__name__` included.
pub type Labels = Vec<(String, String)>;

/// What a series is, for `/api/v1/metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// counter, gauge, histogram or summary.
    pub kind: &'static str,
    pub help: String,
    pub unit: String,
    /// The OTLP metric name it came from.
    pub otlp_name: String,
}

/// An exemplar: a measurement with the trace it was made in.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// `trace_id`, `span_id` and the filtered attributes.
    pub labels: Labels,
    pub t_ms: i64,
    pub value: f64,
}

/// One sample of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t_ms: i64,
    pub value: f64,
    /// The value is the change since the previous point (DELTA temporality), to be added to the
    /// series' running total.
    pub delta: bool,
    /// For cumulative counters, histograms and summaries: when the series (re)started; a
    /// start after the previous point's means the counter was reset.
    pub start_ms: Option<i64>,
    /// For a delta: when the interval of its change began, in nanoseconds (0: not sent). A
    /// retried export repeats it; the next export's starts later, even within a millisecond.
    pub delta_start_ns: u64,
    pub exemplars: Vec<Exemplar>,
}

/// The samples of an export request.
#[derive(Debug, Default)]
pub struct Translated {
    pub samples: Vec<Sample>,
    /// By series name.
    pub metadata: BTreeMap<String, Metadata>,
    /// Data points that could not be translated.
    pub rejected: Rejected,
    /// Data points in the request.
    pub points: u64,
}

/// Settings of the translation.
#[derive(Debug, Clone)]
pub struct TranslateSettings {
    /// Resource attributes copied onto every series (as label names, escaped).
    pub promote_resource_attributes: Vec<String>,
}

impl Default for TranslateSettings {
    fn default() -> Self {
        Self {
            promote_resource_attributes: [
                "service.name",
                "service.namespace",
                "deployment.environment",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// A metric name as Prometheus spells it: invalid characters become `_`, the unit is appended
/// (`s` -> `seconds`), `_total` for counters, `_ratio` for gauges of unit `1`.
pub fn metric_name(name: &str, unit: &str, counter: bool, gauge: bool) -> String {
    let mut words: Vec<String> = name
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    let (main, per) = unit_words(unit);
    for word in main.into_iter().chain(per.map(|per| format!("per_{per}"))) {
        let parts: Vec<&str> = word.split('_').collect();
        let present = words
            .windows(parts.len())
            .any(|window| window.iter().zip(&parts).all(|(a, b)| a == b));
        if !present {
            words.extend(parts.iter().map(|p| (*p).to_owned()));
        }
    }
    if counter {
        if words.last().map(String::as_str) == Some("total") {
            words.pop();
        }
        words.push("total".into());
    }
    if gauge && unit == "1" && words.last().map(String::as_str) != Some("ratio") {
        words.push("ratio".into());
    }
    let mut name = words.join("_");
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// The unit as suffix words: `ms` -> milliseconds, `By/s` -> bytes, per second.
fn unit_words(unit: &str) -> (Option<String>, Option<String>) {
    // Annotations in braces are dropped.
    let mut cleaned = String::new();
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth == 0 => cleaned.push(c),
            _ => {}
        }
    }
    let (main, per) = match cleaned.split_once('/') {
        Some((main, per)) => (main, Some(per)),
        None => (cleaned.as_str(), None),
    };
    let word = |unit: &str| -> Option<String> {
        let unit = unit.trim();
        let text = match unit {
            "" | "1" => return None,
            "d" => "days",
            "h" => "hours",
            "min" => "minutes",
            "s" => "seconds",
            "ms" => "milliseconds",
            "us" => "microseconds",
            "ns" => "nanoseconds",
            "By" => "bytes",
            "KiBy" => "kibibytes",
            "MiBy" => "mebibytes",
            "GiBy" => "gibibytes",
            "KBy" => "kilobytes",
            "MBy" => "megabytes",
            "GBy" => "gigabytes",
            "m" => "meters",
            "V" => "volts",
            "A" => "amperes",
            "J" => "joules",
            "W" => "watts",
            "g" => "grams",
            "Cel" => "celsius",
            "Hz" => "hertz",
            "%" => "percent",
            other => return Some(label_name(other)),
        };
        Some(text.to_owned())
    };
    let per = per.and_then(|per| {
        Some(match per.trim() {
            "s" => "second".to_owned(),
            "m" => "minute".to_owned(),
            "h" => "hour".to_owned(),
            "d" => "day".to_owned(),
            "w" => "week".to_owned(),
            "mo" => "month".to_owned(),
            "y" => "year".to_owned(),
            other => word(other)?,
        })
    });
    (word(main), per)
}

/// A label name as Prometheus spells it: invalid characters become `_`, a leading digit gets
/// `key_`.
pub fn label_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "key_");
    }
    name
}

fn value_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValueKind::StringValue(text)) => text.clone(),
        Some(AnyValueKind::BoolValue(b)) => b.to_string(),
        Some(AnyValueKind::IntValue(n)) => n.to_string(),
        Some(AnyValueKind::DoubleValue(x)) => x.to_string(),
        Some(other) => crate::otlp_json::plain_json(other).to_string(),
        None => String::new(),
    }
}

fn attribute(resource: &Resource, key: &str) -> Option<String> {
    resource
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| value_text(kv.value.as_ref()))
        .filter(|v| !v.is_empty())
}

fn ms(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

/// Formats a float as Prometheus does in `le` and `quantile` labels.
pub fn format_float(x: f64) -> String {
    if x == f64::INFINITY {
        "+Inf".into()
    } else if x == f64::NEG_INFINITY {
        "-Inf".into()
    } else if x.is_nan() {
        "NaN".into()
    } else {
        // Shortest representation that round-trips, as Go's strconv 'g' with -1 precision.
        let text = format!("{x}");
        if text.contains('e') || text.contains('.') || x.abs() < 1e21 {
            text
        } else {
            format!("{x:e}")
        }
    }
}

/// Series labels of one data point: the resource's, the point's attributes, then `__name__`.
struct LabelBase {
    resource: Labels,
}

impl LabelBase {
    fn new(resource: Option<&Resource>, settings: &TranslateSettings) -> LabelBase {
        let mut labels = BTreeMap::new();
        if let Some(resource) = resource {
            let name = attribute(resource, "service.name");
            let namespace = attribute(resource, "service.namespace");
            let job = match (&namespace, &name) {
                (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
                (None, Some(name)) => Some(name.clone()),
                _ => None,
            };
            if let Some(job) = job {
                labels.insert("job".to_owned(), job);
            }
            if let Some(instance) = attribute(resource, "service.instance.id") {
                labels.insert("instance".to_owned(), instance);
            }
            for key in &settings.promote_resource_attributes {
                if let Some(value) = attribute(resource, key) {
                    labels.insert(label_name(key), value);
                }
            }
        }
        LabelBase {
            resource: labels.into_iter().collect(),
        }
    }

    fn labels(&self, name: &str, attributes: &[KeyValue], extra: Option<(&str, String)>) -> Labels {
        let mut labels: BTreeMap<String, String> = self.resource.iter().cloned().collect();
        for kv in attributes {
            let value = value_text(kv.value.as_ref());
            if !value.is_empty() {
                labels.insert(label_name(&kv.key), value);
            }
        }
        if let Some((key, value)) = extra {
            labels.insert(key.to_owned(), value);
        }
        labels.insert("__name__".to_owned(), name.to_owned());
        labels.into_iter().collect()
    }
}

fn exemplars(points: &[OtlpExemplar]) -> Vec<Exemplar> {
    points
        .iter()
        .filter_map(|e| {
            let value = match e.value? {
                ExemplarValue::AsDouble(x) => x,
                ExemplarValue::AsInt(n) => n as f64,
            };
            let mut labels: BTreeMap<String, String> = e
                .filtered_attributes
                .iter()
                .map(|kv| (label_name(&kv.key), value_text(kv.value.as_ref())))
                .collect();
            if let Ok(trace_id) = TraceId::try_from(e.trace_id.as_slice()) {
                labels.insert("trace_id".into(), trace_id.to_string());
            }
            if let Ok(span_id) = SpanId::try_from(e.span_id.as_slice()) {
                labels.insert("span_id".into(), span_id.to_string());
            }
            Some(Exemplar {
                labels: labels.into_iter().collect(),
                t_ms: ms(e.time_unix_nano),
                value,
            })
        })
        .collect()
}

/// Translates an export request into samples.
pub fn translate(
    request: &ExportMetricsServiceRequest,
    settings: &TranslateSettings,
) -> Translated {
    let mut out = Translated::default();
    for resource_metrics in &request.resource_metrics {
        let base = LabelBase::new(resource_metrics.resource.as_ref(), settings);
        let mut newest_ms = None;
        for scope_metrics in &resource_metrics.scope_metrics {
            for metric in &scope_metrics.metrics {
                let before = out.samples.len();
                translate_metric(metric, &base, &mut out);
                newest_ms = out.samples[before..]
                    .iter()
                    .map(|s| s.t_ms)
                    .max()
                    .max(newest_ms);
            }
        }
        // `target_info`: the resource attributes that are not labels already.
        if let (Some(resource), Some(t_ms)) = (resource_metrics.resource.as_ref(), newest_ms) {
            let skip = ["service.name", "service.namespace", "service.instance.id"];
            let info: Vec<KeyValue> = resource
                .attributes
                .iter()
                .filter(|kv| !skip.contains(&kv.key.as_str()))
                .cloned()
                .collect();
            if !info.is_empty() && base.resource.iter().any(|(k, _)| k == "job") {
                out.samples.push(Sample {
                    labels: base.labels("target_info", &info, None),
                    t_ms,
                    value: 1.0,
                    delta: false,
                    start_ms: None,
                    delta_start_ns: 0,
                    exemplars: Vec::new(),
                });
                out.metadata
                    .entry("target_info".into())
                    .or_insert(Metadata {
                        kind: "gauge",
                        help: "Target metadata".into(),
                        unit: String::new(),
                        otlp_name: String::new(),
                    });
            }
        }
    }
    out
}

fn stale_or(flags: u32, value: f64) -> f64 {
    if flags & FLAG_NO_RECORDED_VALUE != 0 {
        f64::from_bits(STALE_NAN_BITS)
    } else {
        value
    }
}

fn translate_metric(
    metric: &opentelemetry_proto::tonic::metrics::v1::Metric,
    base: &LabelBase,
    out: &mut Translated,
) {
    let Some(data) = metric.data.as_ref() else {
        out.rejected
            .add(format!("metric {:?} has no data", metric.name));
        return;
    };
    let metadata = |kind: &'static str| Metadata {
        kind,
        help: metric.description.clone(),
        unit: metric.unit.clone(),
        otlp_name: metric.name.clone(),
    };
    let push = |out: &mut Translated, sample: Sample| out.samples.push(sample);
    match data {
        Data::Gauge(gauge) => {
            let name = metric_name(&metric.name, &metric.unit, false, true);
            out.metadata.insert(name.clone(), metadata("gauge"));
            for point in &gauge.data_points {
                out.points += 1;
                let Some(value) = number(point.value).or(no_value(point.flags)) else {
                    out.rejected.add(format!(
                        "gauge {:?}: a data point has no value",
                        metric.name
                    ));
                    continue;
                };
                push(
                    out,
                    Sample {
                        labels: base.labels(&name, &point.attributes, None),
                        t_ms: ms(point.time_unix_nano),
                        value: stale_or(point.flags, value),
                        delta: false,
                        start_ms: None,
                        delta_start_ns: 0,
                        exemplars: exemplars(&point.exemplars),
                    },
                );
            }
        }
        Data::Sum(sum) => {
            let counter = sum.is_monotonic;
            let name = metric_name(&metric.name, &metric.unit, counter, !counter);
            out.metadata.insert(
                name.clone(),
                metadata(if counter { "counter" } else { "gauge" }),
            );
            let delta = sum.aggregation_temporality == TEMPORALITY_DELTA;
            for point in &sum.data_points {
                out.points += 1;
                let Some(value) = number(point.value).or(no_value(point.flags)) else {
                    out.rejected
                        .add(format!("sum {:?}: a data point has no value", metric.name));
                    continue;
                };
                push(
                    out,
                    Sample {
                        labels: base.labels(&name, &point.attributes, None),
                        t_ms: ms(point.time_unix_nano),
                        value: stale_or(point.flags, value),
                        delta,
                        start_ms: (counter && !delta && point.start_time_unix_nano > 0)
                            .then(|| ms(point.start_time_unix_nano)),
                        delta_start_ns: if delta { point.start_time_unix_nano } else { 0 },
                        exemplars: exemplars(&point.exemplars),
                    },
                );
            }
        }
        Data::Histogram(histogram) => {
            let name = metric_name(&metric.name, &metric.unit, false, false);
            out.metadata.insert(name.clone(), metadata("histogram"));
            let delta = histogram.aggregation_temporality == TEMPORALITY_DELTA;
            for point in &histogram.data_points {
                out.points += 1;
                if !point.bucket_counts.is_empty()
                    && point.bucket_counts.len() != point.explicit_bounds.len() + 1
                {
                    out.rejected.add(format!(
                        "histogram {:?}: {} bucket counts for {} bounds (expected bounds + 1)",
                        metric.name,
                        point.bucket_counts.len(),
                        point.explicit_bounds.len()
                    ));
                    continue;
                }
                let mut buckets: Vec<(f64, u64)> = point
                    .explicit_bounds
                    .iter()
                    .copied()
                    .zip(point.bucket_counts.iter().copied())
                    .collect();
                buckets.push((f64::INFINITY, point.count));
                histogram_samples(
                    out,
                    base,
                    &name,
                    &point.attributes,
                    point.time_unix_nano,
                    point.start_time_unix_nano,
                    point.flags,
                    delta,
                    &buckets,
                    point.sum,
                    point.count,
                    exemplars(&point.exemplars),
                );
            }
        }
        Data::ExponentialHistogram(histogram) => {
            let name = metric_name(&metric.name, &metric.unit, false, false);
            out.metadata.insert(name.clone(), metadata("histogram"));
            let delta = histogram.aggregation_temporality == TEMPORALITY_DELTA;
            for point in &histogram.data_points {
                out.points += 1;
                if !(-10..=20).contains(&point.scale) {
                    out.rejected.add(format!(
                        "exponential histogram {:?}: scale {} outside -10..=20",
                        metric.name, point.scale
                    ));
                    continue;
                }
                // base^index as 2^(index / 2^scale): exact for whole powers of two.
                let step = 2f64.powi(-point.scale);
                let bound = |index: i32| (f64::from(index) * step).exp2();
                // (upper bound, count of that bucket alone), lowest first.
                let mut buckets: Vec<(f64, u64)> = Vec::new();
                if let Some(negative) = point.negative.as_ref() {
                    // Bucket i covers [-base^(i+1), -base^i): the most negative comes first.
                    for (i, count) in negative.bucket_counts.iter().enumerate().rev() {
                        let index = negative.offset + i as i32;
                        buckets.push((-bound(index), *count));
                    }
                }
                buckets.push((point.zero_threshold.max(0.0), point.zero_count));
                if let Some(positive) = point.positive.as_ref() {
                    // Bucket i covers (base^i, base^(i+1)].
                    for (i, count) in positive.bucket_counts.iter().enumerate() {
                        let index = positive.offset + i as i32 + 1;
                        buckets.push((bound(index), *count));
                    }
                }
                let counted: u64 = buckets.iter().map(|(_, c)| c).sum();
                buckets.push((f64::INFINITY, 0));
                let count = point.count.max(counted);
                histogram_samples(
                    out,
                    base,
                    &name,
                    &point.attributes,
                    point.time_unix_nano,
                    point.start_time_unix_nano,
                    point.flags,
                    delta,
                    &buckets,
                    point.sum,
                    count,
                    exemplars(&point.exemplars),
                );
            }
        }
        Data::Summary(summary) => {
            let name = metric_name(&metric.name, &metric.unit, false, false);
            out.metadata.insert(name.clone(), metadata("summary"));
            for point in &summary.data_points {
                out.points += 1;
                let t_ms = ms(point.time_unix_nano);
                let start_ms =
                    (point.start_time_unix_nano > 0).then(|| ms(point.start_time_unix_nano));
                for quantile in &point.quantile_values {
                    push(
                        out,
                        Sample {
                            labels: base.labels(
                                &name,
                                &point.attributes,
                                Some(("quantile", format_float(quantile.quantile))),
                            ),
                            t_ms,
                            value: stale_or(point.flags, quantile.value),
                            delta: false,
                            start_ms: None,
                            delta_start_ns: 0,
                            exemplars: Vec::new(),
                        },
                    );
                }
                for (suffix, value) in [("_sum", point.sum), ("_count", point.count as f64)] {
                    push(
                        out,
                        Sample {
                            labels: base.labels(
                                &format!("{name}{suffix}"),
                                &point.attributes,
                                None,
                            ),
                            t_ms,
                            value: stale_or(point.flags, value),
                            delta: false,
                            start_ms,
                            delta_start_ns: 0,
                            exemplars: Vec::new(),
                        },
                    );
                }
            }
        }
    }
}

/// The series of one histogram point. `buckets` are `(upper bound, count in that bucket alone)`
/// except the last (`+Inf`), whose count is ignored: the cumulative counts are computed here.
#[allow(clippy::too_many_arguments)]
fn histogram_samples(
    out: &mut Translated,
    base: &LabelBase,
    name: &str,
    attributes: &[KeyValue],
    time_nanos: u64,
    start_nanos: u64,
    flags: u32,
    delta: bool,
    buckets: &[(f64, u64)],
    sum: Option<f64>,
    count: u64,
    mut exemplars: Vec<Exemplar>,
) {
    let t_ms = ms(time_nanos);
    let start_ms = (!delta && start_nanos > 0).then(|| ms(start_nanos));
    let delta_start_ns = if delta { start_nanos } else { 0 };
    let bucket_name = format!("{name}_bucket");
    let mut cumulative = 0u64;
    for (i, (le, own)) in buckets.iter().enumerate() {
        let last = i + 1 == buckets.len();
        cumulative = if last { count } else { cumulative + own };
        // Each exemplar goes to the first bucket whose bound holds it.
        let (mine, rest): (Vec<Exemplar>, Vec<Exemplar>) =
            exemplars.into_iter().partition(|e| last || e.value <= *le);
        exemplars = rest;
        out.samples.push(Sample {
            labels: base.labels(&bucket_name, attributes, Some(("le", format_float(*le)))),
            t_ms,
            value: stale_or(flags, cumulative as f64),
            delta,
            start_ms,
            delta_start_ns,
            exemplars: mine,
        });
    }
    if let Some(sum) = sum {
        out.samples.push(Sample {
            labels: base.labels(&format!("{name}_sum"), attributes, None),
            t_ms,
            value: stale_or(flags, sum),
            delta,
            start_ms,
            delta_start_ns,
            exemplars: Vec::new(),
        });
    }
    out.samples.push(Sample {
        labels: base.labels(&format!("{name}_count"), attributes, None),
        t_ms,
        value: stale_or(flags, count as f64),
        delta,
        start_ms,
        delta_start_ns,
        exemplars: Vec::new(),
    });
}

/// A point flagged NO_RECORDED_VALUE needs no value: it becomes a staleness marker.
fn no_value(flags: u32) -> Option<f64> {
    (flags & FLAG_NO_RECORDED_VALUE != 0).then_some(f64::from_bits(STALE_NAN_BITS))
}

fn number(value: Option<NumberValue>) -> Option<f64> {
    Some(match value? {
        NumberValue::AsDouble(x) => x,
        NumberValue::AsInt(n) => n as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_translation() {
        assert_eq!(
            metric_name("http.server.request.duration", "s", false, false),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            metric_name("http.requests", "1", true, false),
            "http_requests_total"
        );
        assert_eq!(
            metric_name("requests_total", "", true, false),
            "requests_total"
        );
        assert_eq!(
            metric_name("cpu.utilization", "1", false, true),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            metric_name("net.io", "By/s", false, true),
            "net_io_bytes_per_second"
        );
        assert_eq!(
            metric_name("queue.size", "{messages}", false, true),
            "queue_size"
        );
        assert_eq!(
            metric_name("latency_seconds", "s", false, false),
            "latency_seconds"
        );
        assert_eq!(metric_name("2xx", "", true, false), "_2xx_total");
        assert_eq!(label_name("http.route"), "http_route");
        assert_eq!(label_name("0day"), "key_0day");
        assert_eq!(format_float(0.005), "0.005");
        assert_eq!(format_float(10.0), "10");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
    }

    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    };

    fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        let text = |key: &str, value: &str| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(AnyValueKind::StringValue(value.into())),
            }),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        text("service.name", "api"),
                        text("service.instance.id", "api-1"),
                        text("host.name", "h1"),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn find<'a>(out: &'a Translated, name: &str, label: Option<(&str, &str)>) -> &'a Sample {
        out.samples
            .iter()
            .find(|s| {
                s.labels.contains(&("__name__".to_owned(), name.to_owned()))
                    && label.is_none_or(|(k, v)| s.labels.contains(&(k.to_owned(), v.to_owned())))
            })
            .unwrap_or_else(|| panic!("no {name} {label:?} in {:#?}", out.samples))
    }

    #[test]
    fn exponential_histograms_summaries_deltas_and_staleness() {
        let out = translate(
            &request(vec![
                Metric {
                    name: "latency".into(),
                    unit: "ms".into(),
                    data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![ExponentialHistogramDataPoint {
                            time_unix_nano: 2_000_000_000,
                            count: 6,
                            sum: Some(20.0),
                            // Scale 0: base 2. Zero bucket 1; positive offset 1: (2, 4] holds 2,
                            // (4, 8] holds 3.
                            scale: 0,
                            zero_count: 1,
                            positive: Some(Buckets {
                                offset: 1,
                                bucket_counts: vec![2, 3],
                            }),
                            ..Default::default()
                        }],
                        aggregation_temporality: 1,
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "rpc.duration".into(),
                    unit: "s".into(),
                    data: Some(Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint {
                            time_unix_nano: 2_000_000_000,
                            count: 10,
                            sum: 4.5,
                            quantile_values: vec![ValueAtQuantile {
                                quantile: 0.99,
                                value: 0.9,
                            }],
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "jobs".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 2_000_000_000,
                            flags: FLAG_NO_RECORDED_VALUE,
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                },
            ]),
            &TranslateSettings::default(),
        );
        // The `jobs` point flagged NO_RECORDED_VALUE needs no value: a staleness marker.
        assert!(
            out.rejected.is_empty(),
            "{:?}",
            out.rejected.message("data points")
        );
        assert_eq!(
            find(&out, "jobs_total", None).value.to_bits(),
            STALE_NAN_BITS
        );
        let bucket = |le| find(&out, "latency_milliseconds_bucket", Some(("le", le)));
        assert_eq!(bucket("0").value, 1.0);
        assert_eq!(bucket("4").value, 3.0);
        assert_eq!(bucket("8").value, 6.0);
        assert_eq!(bucket("+Inf").value, 6.0);
        assert!(
            bucket("8").delta,
            "DELTA temporality is marked for the store"
        );
        assert_eq!(find(&out, "latency_milliseconds_count", None).value, 6.0);
        assert_eq!(
            find(&out, "rpc_duration_seconds", Some(("quantile", "0.99"))).value,
            0.9
        );
        assert_eq!(find(&out, "rpc_duration_seconds_count", None).value, 10.0);
        let sample = find(&out, "rpc_duration_seconds_sum", None);
        assert!(sample
            .labels
            .contains(&("job".to_owned(), "api".to_owned())));
        assert!(sample
            .labels
            .contains(&("instance".to_owned(), "api-1".to_owned())));
        assert!(sample
            .labels
            .contains(&("service_name".to_owned(), "api".to_owned())));
        let info = find(&out, "target_info", None);
        assert!(info
            .labels
            .contains(&("host_name".to_owned(), "h1".to_owned())));
        assert_eq!(out.metadata["latency_milliseconds"].kind, "histogram");
        assert_eq!(out.metadata["rpc_duration_seconds"].kind, "summary");
    }

    #[test]
    fn a_point_flagged_no_recorded_value_is_a_staleness_marker() {
        let out = translate(
            &request(vec![Metric {
                name: "temperature".into(),
                data: Some(Data::Gauge(
                    opentelemetry_proto::tonic::metrics::v1::Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 3_000_000_000,
                            flags: FLAG_NO_RECORDED_VALUE,
                            value: Some(NumberValue::AsDouble(0.0)),
                            ..Default::default()
                        }],
                    },
                )),
                ..Default::default()
            }]),
            &TranslateSettings::default(),
        );
        assert_eq!(
            find(&out, "temperature", None).value.to_bits(),
            STALE_NAN_BITS
        );
    }
}
