//! OTLP/JSON: the JSON encoding of OTLP, to and from the generated protobuf types.
//!
//! OTLP/JSON differs from protobuf's canonical JSON: trace and span ids are hex (not base64),
//! enums are integers, 64-bit integers are decimal strings (plain numbers are accepted too), and
//! keys are lowerCamelCase (the original snake_case is accepted too). Unknown fields are ignored
//! and `null` means absent. Decoding walks a `serde_json::Value` by hand so that every error
//! names the path of the offending field.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as OtlpValue;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpLogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric as OtlpMetric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan, Status};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Nesting of arrays and maps in attribute values deeper than this is refused.
const MAX_DEPTH: usize = 32;

/// Why an OTLP/JSON body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("invalid JSON: {0}")]
    Syntax(String),
    #[error("{path}: {reason}")]
    Field { path: String, reason: String },
}

type Result<T> = std::result::Result<T, JsonError>;

fn field_error(path: &str, reason: impl Into<String>) -> JsonError {
    JsonError::Field {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
pub fn decode_trace_request(body: &[u8]) -> Result<ExportTraceServiceRequest> {
    let root: Value =
        serde_json::from_slice(body).map_err(|err| JsonError::Syntax(err.to_string()))?;
    let root = Obj::new(&root, "")?;
    Ok(ExportTraceServiceRequest {
        resource_spans: root.list("resourceSpans", "resource_spans", decode_resource_spans)?,
    })
}

/// Decodes an OTLP/JSON `ExportLogsServiceRequest`.
pub fn decode_logs_request(body: &[u8]) -> Result<ExportLogsServiceRequest> {
    let root: Value =
        serde_json::from_slice(body).map_err(|err| JsonError::Syntax(err.to_string()))?;
    let root = Obj::new(&root, "")?;
    Ok(ExportLogsServiceRequest {
        resource_logs: root.list("resourceLogs", "resource_logs", decode_resource_logs)?,
    })
}

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest`.
pub fn decode_metrics_request(body: &[u8]) -> Result<ExportMetricsServiceRequest> {
    let root: Value =
        serde_json::from_slice(body).map_err(|err| JsonError::Syntax(err.to_string()))?;
    let root = Obj::new(&root, "")?;
    Ok(ExportMetricsServiceRequest {
        resource_metrics: root.list(
            "resourceMetrics",
            "resource_metrics",
            decode_resource_metrics,
        )?,
    })
}

/// A JSON object with the path it was found at.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn new(value: &'a Value, path: &str) -> Result<Self> {
        match value {
            Value::Object(map) => Ok(Obj {
                map,
                path: path.to_owned(),
            }),
            other => Err(field_error(
                display_path(path),
                format!("expected an object, got {}", kind(other)),
            )),
        }
    }

    /// The value under the camelCase or the snake_case key, `None` when absent or null.
    fn get(&self, camel: &str, snake: &str) -> Option<(&'a Value, String)> {
        let (key, value) = self
            .map
            .get_key_value(camel)
            .or_else(|| self.map.get_key_value(snake))?;
        if value.is_null() {
            return None;
        }
        Some((value, self.child(key)))
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn list<T>(
        &self,
        camel: &str,
        snake: &str,
        decode: impl Fn(&Value, &str) -> Result<T>,
    ) -> Result<Vec<T>> {
        let Some((value, path)) = self.get(camel, snake) else {
            return Ok(Vec::new());
        };
        let items = value
            .as_array()
            .ok_or_else(|| field_error(&path, format!("expected an array, got {}", kind(value))))?;
        items
            .iter()
            .enumerate()
            .map(|(index, item)| decode(item, &format!("{path}[{index}]")))
            .collect()
    }

    fn object(&self, camel: &str, snake: &str) -> Result<Option<Obj<'a>>> {
        self.get(camel, snake)
            .map(|(value, path)| Obj::new(value, &path))
            .transpose()
    }

    fn string(&self, camel: &str, snake: &str) -> Result<String> {
        match self.get(camel, snake) {
            None => Ok(String::new()),
            Some((Value::String(text), _)) => Ok(text.clone()),
            Some((other, path)) => Err(field_error(
                &path,
                format!("expected a string, got {}", kind(other)),
            )),
        }
    }

    fn hex_bytes(&self, camel: &str, snake: &str) -> Result<Vec<u8>> {
        match self.get(camel, snake) {
            None => Ok(Vec::new()),
            Some((Value::String(text), path)) => {
                hex::decode(text).map_err(|err| field_error(&path, format!("not valid hex: {err}")))
            }
            Some((other, path)) => Err(field_error(
                &path,
                format!("expected a hex string, got {}", kind(other)),
            )),
        }
    }

    fn u64(&self, camel: &str, snake: &str) -> Result<u64> {
        match self.get(camel, snake) {
            None => Ok(0),
            Some((value, path)) => integer(value, &path),
        }
    }

    fn u32(&self, camel: &str, snake: &str) -> Result<u32> {
        match self.get(camel, snake) {
            None => Ok(0),
            Some((value, path)) => integer(value, &path),
        }
    }

    fn i32(&self, camel: &str, snake: &str) -> Result<i32> {
        match self.get(camel, snake) {
            None => Ok(0),
            Some((value, path)) => integer(value, &path),
        }
    }

    fn f64(&self, camel: &str, snake: &str) -> Result<f64> {
        Ok(self.optional_f64(camel, snake)?.unwrap_or(0.0))
    }

    /// A proto3 `optional double`: `None` when absent or null.
    fn optional_f64(&self, camel: &str, snake: &str) -> Result<Option<f64>> {
        self.get(camel, snake)
            .map(|(value, path)| double(value, &path))
            .transpose()
    }

    fn boolean(&self, camel: &str, snake: &str) -> Result<bool> {
        match self.get(camel, snake) {
            None => Ok(false),
            Some((Value::Bool(flag), _)) => Ok(*flag),
            Some((other, path)) => Err(field_error(
                &path,
                format!("expected a boolean, got {}", kind(other)),
            )),
        }
    }

    /// An enum: an integer, or one of its names.
    fn enumeration(&self, camel: &str, snake: &str, names: &[&str]) -> Result<i32> {
        match self.get(camel, snake) {
            None => Ok(0),
            Some((Value::String(name), _)) if names.contains(&name.as_str()) => Ok(names
                .iter()
                .position(|candidate| candidate == name)
                .unwrap_or(0)
                as i32),
            Some((value, path)) => integer(value, &path),
        }
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "body"
    } else {
        path
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An integer given as a JSON number or a decimal string.
fn integer<T: TryFrom<i128>>(value: &Value, path: &str) -> Result<T> {
    let wide: i128 = match value {
        Value::Number(number) => {
            if let Some(n) = number.as_u64() {
                i128::from(n)
            } else if let Some(n) = number.as_i64() {
                i128::from(n)
            } else {
                return Err(field_error(
                    path,
                    format!("expected an integer, got {number}"),
                ));
            }
        }
        Value::String(text) => text
            .trim()
            .parse()
            .map_err(|_| field_error(path, format!("expected an integer, got {text:?}")))?,
        other => {
            return Err(field_error(
                path,
                format!("expected an integer, got {}", kind(other)),
            ))
        }
    };
    T::try_from(wide).map_err(|_| field_error(path, format!("integer {wide} is out of range")))
}

fn decode_resource_spans(value: &Value, path: &str) -> Result<ResourceSpans> {
    let obj = Obj::new(value, path)?;
    Ok(ResourceSpans {
        resource: obj
            .object("resource", "resource")?
            .map(|resource| decode_resource(&resource))
            .transpose()?,
        scope_spans: obj.list("scopeSpans", "scope_spans", decode_scope_spans)?,
        schema_url: obj.string("schemaUrl", "schema_url")?,
    })
}

fn decode_resource(obj: &Obj<'_>) -> Result<Resource> {
    Ok(Resource {
        attributes: decode_attributes(obj)?,
        dropped_attributes_count: obj.u32("droppedAttributesCount", "dropped_attributes_count")?,
        ..Default::default()
    })
}

fn decode_scope_spans(value: &Value, path: &str) -> Result<ScopeSpans> {
    let obj = Obj::new(value, path)?;
    Ok(ScopeSpans {
        scope: obj
            .object("scope", "scope")?
            .map(|scope| decode_scope(&scope))
            .transpose()?,
        spans: obj.list("spans", "spans", decode_span)?,
        schema_url: obj.string("schemaUrl", "schema_url")?,
    })
}

fn decode_scope(obj: &Obj<'_>) -> Result<InstrumentationScope> {
    Ok(InstrumentationScope {
        name: obj.string("name", "name")?,
        version: obj.string("version", "version")?,
        attributes: decode_attributes(obj)?,
        dropped_attributes_count: obj.u32("droppedAttributesCount", "dropped_attributes_count")?,
    })
}

const SPAN_KINDS: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_CODES: &[&str] = &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

fn decode_span(value: &Value, path: &str) -> Result<OtlpSpan> {
    let obj = Obj::new(value, path)?;
    Ok(OtlpSpan {
        trace_id: obj.hex_bytes("traceId", "trace_id")?,
        span_id: obj.hex_bytes("spanId", "span_id")?,
        trace_state: obj.string("traceState", "trace_state")?,
        parent_span_id: obj.hex_bytes("parentSpanId", "parent_span_id")?,
        flags: obj.u32("flags", "flags")?,
        name: obj.string("name", "name")?,
        kind: obj.enumeration("kind", "kind", SPAN_KINDS)?,
        start_time_unix_nano: obj.u64("startTimeUnixNano", "start_time_unix_nano")?,
        end_time_unix_nano: obj.u64("endTimeUnixNano", "end_time_unix_nano")?,
        attributes: decode_attributes(&obj)?,
        dropped_attributes_count: obj.u32("droppedAttributesCount", "dropped_attributes_count")?,
        events: obj.list("events", "events", decode_event)?,
        dropped_events_count: obj.u32("droppedEventsCount", "dropped_events_count")?,
        links: obj.list("links", "links", decode_link)?,
        dropped_links_count: obj.u32("droppedLinksCount", "dropped_links_count")?,
        status: obj
            .object("status", "status")?
            .map(|status| {
                Ok::<_, JsonError>(Status {
                    message: status.string("message", "message")?,
                    code: status.enumeration("code", "code", STATUS_CODES)?,
                })
            })
            .transpose()?,
    })
}

fn decode_event(value: &Value, path: &str) -> Result<Event> {
    let obj = Obj::new(value, path)?;
    Ok(Event {
        time_unix_nano: obj.u64("timeUnixNano", "time_unix_nano")?,
        name: obj.string("name", "name")?,
        attributes: decode_attributes(&obj)?,
        dropped_attributes_count: obj.u32("droppedAttributesCount", "dropped_attributes_count")?,
    })
}

fn decode_link(value: &Value, path: &str) -> Result<Link> {
    let obj = Obj::new(value, path)?;
    Ok(Link {
        trace_id: obj.hex_bytes("traceId", "trace_id")?,
        span_id: obj.hex_bytes("spanId", "span_id")?,
        trace_state: obj.string("traceState", "trace_state")?,
        attributes: decode_attributes(&obj)?,
        dropped_attributes_count: obj.u32("droppedAttributesCount", "dropped_attributes_count")?,
        flags: obj.u32("flags", "flags")?,
    })
}

fn decode_resource_logs(value: &Value, path: &str) -> Result<ResourceLogs> {
    let obj = Obj::new(value, path)?;
    Ok(ResourceLogs {
        resource: obj
            .object("resource", "resource")?
            .map(|resource| decode_resource(&resource))
            .transpose()?,
        scope_logs: obj.list("scopeLogs", "scope_logs", decode_scope_logs)?,
        schema_url: obj.string("schemaUrl", "schema_url")?,
    })
}

fn decode_scope_logs(value: &Value, path: &str) -> Result<ScopeLogs> {
    let obj = Obj::new(value, path)?;
    Ok(ScopeLogs {
        scope: obj
            .object("scope", "scope")?
            .map(|scope| decode_scope(&scope))
            .transpose()?,
        log_records: obj.list("logRecords", "log_records", decode_log_record)?,
        schema_url: obj.string("schemaUrl", "schema_url")?,
    })
}

/// `SeverityNumber` names, indexed by value.
const SEVERITY_NUMBERS: &[&str] = &[
    "SEVERITY_NUMBER_UNSPECIFIED",
    "SEVERITY_NUMBER_TRACE",
    "SEVERITY_NUMBER_TRACE2",
    "SEVERITY_NUMBER_TRACE3",
    "SEVERITY_NUMBER_TRACE4",
    "SEVERITY_NUMBER_DEBUG",
    "SEVERITY_NUMBER_DEBUG2",
    "SEVERITY_NUMBER_DEBUG3",
    "SEVERITY_NUMBER_DEBUG4",
    "SEVERITY_NUMBER_INFO",
    "SEVERITY_NUMBER_INFO2",
    "SEVERITY_NUMBER_INFO3",
    "SEVERITY_NUMBER_INFO4",
    "SEVERITY_NUMBER_WARN",
    "SEVERITY_NUMBER_WARN2",
    "SEVERITY_NUMBER_WARN3",
    "SEVERITY_NUMBER_WARN4",
    "SEVERITY_NUMBER_ERROR",
    "SEVERITY_NUMBER_ERROR2",
    "SEVERITY_NUMBER_ERROR3",
    "SEVERITY_NUMBER_ERROR4",
    "SEVERITY_NUMBER_FATAL",
    "SEVERITY_NUMBER_FATAL2",
    "SEVERITY_NUMBER_FATAL3",
    "SEVERITY_NUMBER_FATAL4",
];

fn decode_log_record(value: &Value, path: &str) -> Result<OtlpLogRecord> {
    let obj = Obj::new(value, path)?;
    Ok(OtlpLogRecord {
        time_unix_nano: obj.u64("timeUnixNano", "time_unix_nano")?,
        observed_time_unix_nano: obj.u64("observedTimeUnixNano", "observed_time_unix_nano")?,
        severity_number: obj.enumeration("severityNumber", "severity_number", SEVERITY_NUMBERS)?,
        severity_text: obj.string("severityText", "severity_text")?,
        body: obj
            .get("body", "body")
            .map(|(value, path)| decode_any_value(value, &path, 0))
            .transpose()?,
        attributes: decode_attributes(&obj)?,
        dropped_attributes_count: obj.u32("droppedAttributesCount", "dropped_attributes_count")?,
        flags: obj.u32("flags", "flags")?,
        trace_id: obj.hex_bytes("traceId", "trace_id")?,
        span_id: obj.hex_bytes("spanId", "span_id")?,
        event_name: obj.string("eventName", "event_name")?,
    })
}

fn decode_resource_metrics(value: &Value, path: &str) -> Result<ResourceMetrics> {
    let obj = Obj::new(value, path)?;
    Ok(ResourceMetrics {
        resource: obj
            .object("resource", "resource")?
            .map(|resource| decode_resource(&resource))
            .transpose()?,
        scope_metrics: obj.list("scopeMetrics", "scope_metrics", decode_scope_metrics)?,
        schema_url: obj.string("schemaUrl", "schema_url")?,
    })
}

fn decode_scope_metrics(value: &Value, path: &str) -> Result<ScopeMetrics> {
    let obj = Obj::new(value, path)?;
    Ok(ScopeMetrics {
        scope: obj
            .object("scope", "scope")?
            .map(|scope| decode_scope(&scope))
            .transpose()?,
        metrics: obj.list("metrics", "metrics", decode_metric)?,
        schema_url: obj.string("schemaUrl", "schema_url")?,
    })
}

/// `AggregationTemporality` names, indexed by value.
const AGGREGATION_TEMPORALITIES: &[&str] = &[
    "AGGREGATION_TEMPORALITY_UNSPECIFIED",
    "AGGREGATION_TEMPORALITY_DELTA",
    "AGGREGATION_TEMPORALITY_CUMULATIVE",
];

/// A metric; its data is the first of gauge, sum, histogram, exponentialHistogram and summary
/// present (as with attribute values), and `None` when there is none.
fn decode_metric(value: &Value, path: &str) -> Result<OtlpMetric> {
    let obj = Obj::new(value, path)?;
    let temporality = |data: &Obj<'_>| {
        data.enumeration(
            "aggregationTemporality",
            "aggregation_temporality",
            AGGREGATION_TEMPORALITIES,
        )
    };
    // `data` is a oneof: a metric with two kinds of data is malformed, not "the first one".
    let kinds: Vec<&str> = [
        ("gauge", "gauge"),
        ("sum", "sum"),
        ("histogram", "histogram"),
        ("exponentialHistogram", "exponential_histogram"),
        ("summary", "summary"),
    ]
    .into_iter()
    .filter(|(camel, snake)| obj.get(camel, snake).is_some())
    .map(|(camel, _)| camel)
    .collect();
    if kinds.len() > 1 {
        return Err(field_error(
            display_path(path),
            format!(
                "a metric holds one kind of data, got {}",
                kinds.join(" and ")
            ),
        ));
    }
    let data = if let Some(gauge) = obj.object("gauge", "gauge")? {
        Some(metric::Data::Gauge(Gauge {
            data_points: gauge.list("dataPoints", "data_points", decode_number_data_point)?,
        }))
    } else if let Some(sum) = obj.object("sum", "sum")? {
        Some(metric::Data::Sum(Sum {
            data_points: sum.list("dataPoints", "data_points", decode_number_data_point)?,
            aggregation_temporality: temporality(&sum)?,
            is_monotonic: sum.boolean("isMonotonic", "is_monotonic")?,
        }))
    } else if let Some(histogram) = obj.object("histogram", "histogram")? {
        Some(metric::Data::Histogram(Histogram {
            data_points: histogram.list(
                "dataPoints",
                "data_points",
                decode_histogram_data_point,
            )?,
            aggregation_temporality: temporality(&histogram)?,
        }))
    } else if let Some(histogram) = obj.object("exponentialHistogram", "exponential_histogram")? {
        Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: histogram.list(
                "dataPoints",
                "data_points",
                decode_exponential_histogram_data_point,
            )?,
            aggregation_temporality: temporality(&histogram)?,
        }))
    } else if let Some(summary) = obj.object("summary", "summary")? {
        Some(metric::Data::Summary(Summary {
            data_points: summary.list("dataPoints", "data_points", decode_summary_data_point)?,
        }))
    } else {
        None
    };
    Ok(OtlpMetric {
        name: obj.string("name", "name")?,
        description: obj.string("description", "description")?,
        unit: obj.string("unit", "unit")?,
        metadata: decode_key_values(&obj, "metadata", "metadata")?,
        data,
    })
}

fn decode_number_data_point(value: &Value, path: &str) -> Result<NumberDataPoint> {
    let obj = Obj::new(value, path)?;
    let value = if let Some((value, path)) = obj.get("asDouble", "as_double") {
        Some(number_data_point::Value::AsDouble(double(value, &path)?))
    } else if let Some((value, path)) = obj.get("asInt", "as_int") {
        Some(number_data_point::Value::AsInt(integer(value, &path)?))
    } else {
        None
    };
    Ok(NumberDataPoint {
        attributes: decode_attributes(&obj)?,
        start_time_unix_nano: obj.u64("startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: obj.u64("timeUnixNano", "time_unix_nano")?,
        exemplars: obj.list("exemplars", "exemplars", decode_exemplar)?,
        flags: obj.u32("flags", "flags")?,
        value,
    })
}

fn decode_histogram_data_point(value: &Value, path: &str) -> Result<HistogramDataPoint> {
    let obj = Obj::new(value, path)?;
    Ok(HistogramDataPoint {
        attributes: decode_attributes(&obj)?,
        start_time_unix_nano: obj.u64("startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: obj.u64("timeUnixNano", "time_unix_nano")?,
        count: obj.u64("count", "count")?,
        sum: obj.optional_f64("sum", "sum")?,
        bucket_counts: obj.list("bucketCounts", "bucket_counts", integer)?,
        explicit_bounds: obj.list("explicitBounds", "explicit_bounds", double)?,
        exemplars: obj.list("exemplars", "exemplars", decode_exemplar)?,
        flags: obj.u32("flags", "flags")?,
        min: obj.optional_f64("min", "min")?,
        max: obj.optional_f64("max", "max")?,
    })
}

fn decode_exponential_histogram_data_point(
    value: &Value,
    path: &str,
) -> Result<ExponentialHistogramDataPoint> {
    let obj = Obj::new(value, path)?;
    let buckets = |camel: &str| {
        obj.object(camel, camel)?
            .map(|buckets| {
                Ok::<_, JsonError>(Buckets {
                    offset: buckets.i32("offset", "offset")?,
                    bucket_counts: buckets.list("bucketCounts", "bucket_counts", integer)?,
                })
            })
            .transpose()
    };
    Ok(ExponentialHistogramDataPoint {
        attributes: decode_attributes(&obj)?,
        start_time_unix_nano: obj.u64("startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: obj.u64("timeUnixNano", "time_unix_nano")?,
        count: obj.u64("count", "count")?,
        sum: obj.optional_f64("sum", "sum")?,
        scale: obj.i32("scale", "scale")?,
        zero_count: obj.u64("zeroCount", "zero_count")?,
        positive: buckets("positive")?,
        negative: buckets("negative")?,
        flags: obj.u32("flags", "flags")?,
        exemplars: obj.list("exemplars", "exemplars", decode_exemplar)?,
        min: obj.optional_f64("min", "min")?,
        max: obj.optional_f64("max", "max")?,
        zero_threshold: obj.f64("zeroThreshold", "zero_threshold")?,
    })
}

fn decode_summary_data_point(value: &Value, path: &str) -> Result<SummaryDataPoint> {
    let obj = Obj::new(value, path)?;
    Ok(SummaryDataPoint {
        attributes: decode_attributes(&obj)?,
        start_time_unix_nano: obj.u64("startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: obj.u64("timeUnixNano", "time_unix_nano")?,
        count: obj.u64("count", "count")?,
        sum: obj.f64("sum", "sum")?,
        quantile_values: obj.list("quantileValues", "quantile_values", |value, path| {
            let obj = Obj::new(value, path)?;
            Ok(ValueAtQuantile {
                quantile: obj.f64("quantile", "quantile")?,
                value: obj.f64("value", "value")?,
            })
        })?,
        flags: obj.u32("flags", "flags")?,
    })
}

fn decode_exemplar(value: &Value, path: &str) -> Result<Exemplar> {
    let obj = Obj::new(value, path)?;
    let value = if let Some((value, path)) = obj.get("asDouble", "as_double") {
        Some(exemplar::Value::AsDouble(double(value, &path)?))
    } else if let Some((value, path)) = obj.get("asInt", "as_int") {
        Some(exemplar::Value::AsInt(integer(value, &path)?))
    } else {
        None
    };
    Ok(Exemplar {
        filtered_attributes: decode_key_values(&obj, "filteredAttributes", "filtered_attributes")?,
        time_unix_nano: obj.u64("timeUnixNano", "time_unix_nano")?,
        span_id: obj.hex_bytes("spanId", "span_id")?,
        trace_id: obj.hex_bytes("traceId", "trace_id")?,
        value,
    })
}

fn decode_attributes(obj: &Obj<'_>) -> Result<Vec<KeyValue>> {
    decode_key_values(obj, "attributes", "attributes")
}

/// A list of `{"key", "value"}` under `camel` or `snake`.
fn decode_key_values(obj: &Obj<'_>, camel: &str, snake: &str) -> Result<Vec<KeyValue>> {
    obj.list(camel, snake, |value, path| decode_key_value(value, path, 0))
}

fn decode_key_value(value: &Value, path: &str, depth: usize) -> Result<KeyValue> {
    let obj = Obj::new(value, path)?;
    Ok(KeyValue {
        key: obj.string("key", "key")?,
        value: obj
            .get("value", "value")
            .map(|(value, path)| decode_any_value(value, &path, depth))
            .transpose()?,
        ..Default::default()
    })
}

fn decode_any_value(value: &Value, path: &str, depth: usize) -> Result<AnyValue> {
    if depth > MAX_DEPTH {
        return Err(field_error(
            path,
            format!("values nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let obj = Obj::new(value, path)?;
    let inner = if let Some((value, path)) = obj.get("stringValue", "string_value") {
        match value {
            Value::String(text) => OtlpValue::StringValue(text.clone()),
            other => {
                return Err(field_error(
                    &path,
                    format!("expected a string, got {}", kind(other)),
                ))
            }
        }
    } else if let Some((value, path)) = obj.get("boolValue", "bool_value") {
        match value {
            Value::Bool(flag) => OtlpValue::BoolValue(*flag),
            other => {
                return Err(field_error(
                    &path,
                    format!("expected a boolean, got {}", kind(other)),
                ))
            }
        }
    } else if let Some((value, path)) = obj.get("intValue", "int_value") {
        OtlpValue::IntValue(integer(value, &path)?)
    } else if let Some((value, path)) = obj.get("doubleValue", "double_value") {
        OtlpValue::DoubleValue(double(value, &path)?)
    } else if let Some((value, path)) = obj.get("bytesValue", "bytes_value") {
        let text = value.as_str().ok_or_else(|| {
            field_error(
                &path,
                format!("expected a base64 string, got {}", kind(value)),
            )
        })?;
        OtlpValue::BytesValue(
            BASE64
                .decode(text)
                .map_err(|err| field_error(&path, format!("not valid base64: {err}")))?,
        )
    } else if let Some(array) = obj.object("arrayValue", "array_value")? {
        OtlpValue::ArrayValue(ArrayValue {
            values: array.list("values", "values", |value, path| {
                decode_any_value(value, path, depth + 1)
            })?,
        })
    } else if let Some(list) = obj.object("kvlistValue", "kvlist_value")? {
        OtlpValue::KvlistValue(KeyValueList {
            values: list.list("values", "values", |value, path| {
                decode_key_value(value, path, depth + 1)
            })?,
        })
    } else {
        return Ok(AnyValue { value: None });
    };
    Ok(AnyValue { value: Some(inner) })
}

fn double(value: &Value, path: &str) -> Result<f64> {
    match value {
        Value::Number(number) => number
            .as_f64()
            .ok_or_else(|| field_error(path, format!("expected a number, got {number}"))),
        Value::String(text) => match text.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .parse()
                .map_err(|_| field_error(path, format!("expected a number, got {text:?}"))),
        },
        other => Err(field_error(
            path,
            format!("expected a number, got {}", kind(other)),
        )),
    }
}

/// `{"resourceSpans": [...]}` in OTLP/JSON, as a `Value`.
pub fn encode_resource_spans(resource_spans: &[ResourceSpans]) -> Value {
    json!({ "resourceSpans": serde_json::to_value(ResourceSpansJson(resource_spans)).unwrap_or_default() })
}

/// Attributes as an OTLP/JSON array of `{"key", "value"}`.
pub fn encode_key_values(attributes: &[KeyValue]) -> Value {
    serde_json::to_value(KeyValuesJson(attributes)).unwrap_or_default()
}

/// One attribute value in OTLP/JSON: `{"stringValue": ...}`, `{"intValue": "42"}`, ...
pub fn encode_any_value(value: &AnyValue) -> Value {
    serde_json::to_value(AnyValueJson(value)).unwrap_or_default()
}

/// Serializes a list of `ResourceSpans` as an OTLP/JSON array, straight to the output (no
/// intermediate `Value`: a 50,000-span trace is written in one pass). Empty and zero fields are
/// omitted, except the ids, name, kind and times of spans.
pub struct ResourceSpansJson<'a>(pub &'a [ResourceSpans]);

struct OneResourceSpans<'a>(&'a ResourceSpans);
struct ScopeSpansJson<'a>(&'a ScopeSpans);
struct SpanJson<'a>(&'a OtlpSpan);
struct EventJson<'a>(&'a Event);
struct LinkJson<'a>(&'a Link);
struct KeyValuesJson<'a>(&'a [KeyValue]);
struct AnyValueJson<'a>(&'a AnyValue);
struct AnyValuesJson<'a>(&'a [AnyValue]);
/// `{"attributes": [...], "droppedAttributesCount": n}` for resources and scopes.
struct AttributesOnly<'a>(&'a [KeyValue], u32);
struct ScopeJson<'a>(&'a InstrumentationScope);

type MapOf<S> = <S as Serializer>::SerializeMap;

fn put_str<S: Serializer>(map: &mut MapOf<S>, key: &str, value: &str) -> Result2<S> {
    if value.is_empty() {
        Ok(())
    } else {
        map.serialize_entry(key, value)
    }
}

fn put_count<S: Serializer>(map: &mut MapOf<S>, key: &str, value: u32) -> Result2<S> {
    if value == 0 {
        Ok(())
    } else {
        map.serialize_entry(key, &value)
    }
}

fn put_attributes<S: Serializer>(
    map: &mut MapOf<S>,
    attributes: &[KeyValue],
    dropped: u32,
) -> Result2<S> {
    if !attributes.is_empty() {
        map.serialize_entry("attributes", &KeyValuesJson(attributes))?;
    }
    put_count::<S>(map, "droppedAttributesCount", dropped)
}

type Result2<S> = std::result::Result<(), <S as Serializer>::Error>;

impl Serialize for ResourceSpansJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(OneResourceSpans))
    }
}

impl Serialize for OneResourceSpans<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let rs = self.0;
        let mut map = serializer.serialize_map(None)?;
        if let Some(resource) = &rs.resource {
            map.serialize_entry(
                "resource",
                &AttributesOnly(&resource.attributes, resource.dropped_attributes_count),
            )?;
        }
        map.serialize_entry("scopeSpans", &SeqOf(&rs.scope_spans, ScopeSpansJson))?;
        put_str::<S>(&mut map, "schemaUrl", &rs.schema_url)?;
        map.end()
    }
}

/// A slice serialized through a wrapper.
struct SeqOf<'a, T, W>(&'a [T], fn(&'a T) -> W);

impl<'a, T, W: Serialize> Serialize for SeqOf<'a, T, W> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(self.1))
    }
}

impl Serialize for AttributesOnly<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        put_attributes::<S>(&mut map, self.0, self.1)?;
        map.end()
    }
}

impl Serialize for ScopeJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let scope = self.0;
        let mut map = serializer.serialize_map(None)?;
        put_str::<S>(&mut map, "name", &scope.name)?;
        put_str::<S>(&mut map, "version", &scope.version)?;
        put_attributes::<S>(&mut map, &scope.attributes, scope.dropped_attributes_count)?;
        map.end()
    }
}

impl Serialize for ScopeSpansJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let ss = self.0;
        let mut map = serializer.serialize_map(None)?;
        if let Some(scope) = &ss.scope {
            map.serialize_entry("scope", &ScopeJson(scope))?;
        }
        map.serialize_entry("spans", &SeqOf(&ss.spans, SpanJson))?;
        put_str::<S>(&mut map, "schemaUrl", &ss.schema_url)?;
        map.end()
    }
}

impl Serialize for SpanJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let span = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("traceId", &hex::encode(&span.trace_id))?;
        map.serialize_entry("spanId", &hex::encode(&span.span_id))?;
        put_str::<S>(&mut map, "traceState", &span.trace_state)?;
        if !span.parent_span_id.is_empty() {
            map.serialize_entry("parentSpanId", &hex::encode(&span.parent_span_id))?;
        }
        put_count::<S>(&mut map, "flags", span.flags)?;
        map.serialize_entry("name", &span.name)?;
        map.serialize_entry("kind", &span.kind)?;
        map.serialize_entry("startTimeUnixNano", &span.start_time_unix_nano.to_string())?;
        map.serialize_entry("endTimeUnixNano", &span.end_time_unix_nano.to_string())?;
        put_attributes::<S>(&mut map, &span.attributes, span.dropped_attributes_count)?;
        if !span.events.is_empty() {
            map.serialize_entry("events", &SeqOf(&span.events, EventJson))?;
        }
        put_count::<S>(&mut map, "droppedEventsCount", span.dropped_events_count)?;
        if !span.links.is_empty() {
            map.serialize_entry("links", &SeqOf(&span.links, LinkJson))?;
        }
        put_count::<S>(&mut map, "droppedLinksCount", span.dropped_links_count)?;
        if let Some(status) = &span.status {
            map.serialize_entry("status", &StatusJson(status))?;
        }
        map.end()
    }
}

struct StatusJson<'a>(&'a Status);

impl Serialize for StatusJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if self.0.code != 0 {
            map.serialize_entry("code", &self.0.code)?;
        }
        put_str::<S>(&mut map, "message", &self.0.message)?;
        map.end()
    }
}

impl Serialize for EventJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let event = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("timeUnixNano", &event.time_unix_nano.to_string())?;
        map.serialize_entry("name", &event.name)?;
        put_attributes::<S>(&mut map, &event.attributes, event.dropped_attributes_count)?;
        map.end()
    }
}

impl Serialize for LinkJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let link = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("traceId", &hex::encode(&link.trace_id))?;
        map.serialize_entry("spanId", &hex::encode(&link.span_id))?;
        put_str::<S>(&mut map, "traceState", &link.trace_state)?;
        put_attributes::<S>(&mut map, &link.attributes, link.dropped_attributes_count)?;
        put_count::<S>(&mut map, "flags", link.flags)?;
        map.end()
    }
}

impl Serialize for KeyValuesJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for kv in self.0 {
            seq.serialize_element(&KeyValueJson(kv))?;
        }
        seq.end()
    }
}

struct KeyValueJson<'a>(&'a KeyValue);

impl Serialize for KeyValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("key", &self.0.key)?;
        match &self.0.value {
            Some(value) => map.serialize_entry("value", &AnyValueJson(value))?,
            None => map.serialize_entry("value", &Map::new())?,
        }
        map.end()
    }
}

impl Serialize for AnyValuesJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(AnyValueJson))
    }
}

impl Serialize for AnyValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match &self.0.value {
            None => {}
            Some(OtlpValue::StringValue(text)) => map.serialize_entry("stringValue", text)?,
            Some(OtlpValue::BoolValue(flag)) => map.serialize_entry("boolValue", flag)?,
            Some(OtlpValue::IntValue(n)) => map.serialize_entry("intValue", &n.to_string())?,
            Some(OtlpValue::DoubleValue(x)) => {
                map.serialize_entry("doubleValue", &encode_double(*x))?
            }
            Some(OtlpValue::BytesValue(bytes)) => {
                map.serialize_entry("bytesValue", &BASE64.encode(bytes))?
            }
            Some(OtlpValue::ArrayValue(array)) => {
                map.serialize_entry("arrayValue", &ValuesWrapper::Any(&array.values))?
            }
            Some(OtlpValue::KvlistValue(list)) => {
                map.serialize_entry("kvlistValue", &ValuesWrapper::Kv(&list.values))?
            }
            // String-table references only occur in profiles, which Sightline does not take.
            Some(_) => {}
        }
        map.end()
    }
}

/// `{"values": [...]}` of arrays and key-value lists.
enum ValuesWrapper<'a> {
    Any(&'a [AnyValue]),
    Kv(&'a [KeyValue]),
}

impl Serialize for ValuesWrapper<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            ValuesWrapper::Any(values) => map.serialize_entry("values", &AnyValuesJson(values))?,
            ValuesWrapper::Kv(values) => map.serialize_entry("values", &KeyValuesJson(values))?,
        }
        map.end()
    }
}

/// A double as JSON: a number, or "NaN" / "Infinity" / "-Infinity", which JSON numbers cannot say.
pub fn encode_double(x: f64) -> Value {
    if x.is_nan() {
        json!("NaN")
    } else if x.is_infinite() {
        json!(if x > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(x)
    }
}

/// A value as plain JSON, as Go's `encoding/json` writes pdata's `AsRaw()`: arrays as arrays,
/// maps as objects with sorted keys (the last of duplicate keys wins), bytes as base64, empty
/// values as null.
pub fn plain_json(value: &OtlpValue) -> Value {
    fn any(value: Option<&AnyValue>) -> Value {
        value
            .and_then(|value| value.value.as_ref())
            .map_or(Value::Null, plain_json)
    }
    match value {
        OtlpValue::StringValue(text) => Value::String(text.clone()),
        OtlpValue::BoolValue(flag) => Value::Bool(*flag),
        OtlpValue::IntValue(n) => Value::from(*n),
        OtlpValue::DoubleValue(x) => encode_double(*x),
        OtlpValue::BytesValue(bytes) => Value::String(BASE64.encode(bytes)),
        OtlpValue::ArrayValue(array) => {
            Value::Array(array.values.iter().map(|v| any(Some(v))).collect())
        }
        OtlpValue::KvlistValue(list) => {
            let mut entries: Vec<&KeyValue> = list.values.iter().collect();
            // Sorted here so that the order does not depend on serde_json's `preserve_order`.
            entries.sort_by(|a, b| a.key.cmp(&b.key));
            let mut object = Map::with_capacity(entries.len());
            for kv in entries {
                object.insert(kv.key.clone(), any(kv.value.as_ref()));
            }
            Value::Object(object)
        }
        OtlpValue::StringValueStrindex(_) => Value::Null,
    }
}

/// The JSON body of an `Export*ServiceResponse`: `{}` on full success (partial_success MUST be
/// unset), else `{"partialSuccess": {"<rejected_field>": "<count>", "errorMessage": "..."}}`,
/// where `rejected_field` is `rejectedSpans`, `rejectedLogRecords` or `rejectedDataPoints`.
pub fn encode_export_response(rejected: Option<(&str, i64, &str)>) -> Vec<u8> {
    let body = match rejected {
        None => json!({}),
        Some((field, count, message)) => json!({
            "partialSuccess": { field: count.to_string(), "errorMessage": message }
        }),
    };
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(value: Value) -> Result<ExportTraceServiceRequest> {
        decode_trace_request(value.to_string().as_bytes())
    }

    fn full_span() -> ExportTraceServiceRequest {
        let kv = |key: &str, value: OtlpValue| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", OtlpValue::StringValue("svc".into()))],
                    dropped_attributes_count: 1,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1".into(),
                        attributes: vec![kv("a", OtlpValue::BoolValue(true))],
                        dropped_attributes_count: 2,
                    }),
                    spans: vec![OtlpSpan {
                        trace_id: vec![0xab; 16],
                        span_id: vec![0xcd; 8],
                        trace_state: "k=v".into(),
                        parent_span_id: vec![0xef; 8],
                        flags: 257,
                        name: "op".into(),
                        kind: 3,
                        start_time_unix_nano: u64::MAX - 1,
                        end_time_unix_nano: u64::MAX,
                        attributes: vec![
                            kv("i", OtlpValue::IntValue(i64::MIN)),
                            kv("d", OtlpValue::DoubleValue(-0.5)),
                            kv("inf", OtlpValue::DoubleValue(f64::INFINITY)),
                            kv("b", OtlpValue::BytesValue(vec![0, 1, 255])),
                            kv(
                                "arr",
                                OtlpValue::ArrayValue(ArrayValue {
                                    values: vec![AnyValue {
                                        value: Some(OtlpValue::StringValue("x".into())),
                                    }],
                                }),
                            ),
                            kv(
                                "map",
                                OtlpValue::KvlistValue(KeyValueList {
                                    values: vec![kv("n", OtlpValue::IntValue(7))],
                                }),
                            ),
                        ],
                        dropped_attributes_count: 3,
                        events: vec![Event {
                            time_unix_nano: 5,
                            name: "e".into(),
                            attributes: vec![kv("x", OtlpValue::StringValue("y".into()))],
                            dropped_attributes_count: 4,
                        }],
                        dropped_events_count: 5,
                        links: vec![Link {
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            trace_state: "l".into(),
                            attributes: vec![],
                            dropped_attributes_count: 6,
                            flags: 1,
                        }],
                        dropped_links_count: 7,
                        status: Some(Status {
                            message: "bad".into(),
                            code: 2,
                        }),
                    }],
                    schema_url: "s1".into(),
                }],
                schema_url: "s2".into(),
            }],
        }
    }

    #[test]
    fn encoding_then_decoding_gives_back_every_field() {
        let request = full_span();
        let encoded = encode_resource_spans(&request.resource_spans);
        assert_eq!(
            encoded["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"],
            json!((u64::MAX - 1).to_string())
        );
        assert_eq!(decode(encoded).unwrap(), request);
    }

    #[test]
    fn snake_case_numbers_and_enum_names_are_accepted() {
        let camel = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": "0102030405060708090A0B0C0D0E0F10", "spanId": "0102030405060708",
            "kind": 2, "startTimeUnixNano": "10", "endTimeUnixNano": "20",
            "status": {"code": 2},
            "attributes": [{"key": "n", "value": {"intValue": "42"}}]
        }]}]}]});
        let snake = json!({"resource_spans": [{"scope_spans": [{"spans": [{
            "trace_id": "0102030405060708090a0b0c0d0e0f10", "span_id": "0102030405060708",
            "kind": "SPAN_KIND_SERVER", "start_time_unix_nano": 10, "end_time_unix_nano": 20,
            "status": {"code": "STATUS_CODE_ERROR"},
            "attributes": [{"key": "n", "value": {"int_value": 42}}],
            "unknownField": [1, 2, 3]
        }]}]}]});
        let from_camel = decode(camel).unwrap();
        assert_eq!(from_camel, decode(snake).unwrap());
        let span = &from_camel.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.kind, 2);
        assert_eq!(span.trace_id[9], 0x0a);
    }

    #[test]
    fn errors_name_the_field() {
        let err =
            decode(json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}))
                .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("resourceSpans[0].scopeSpans[0].spans[0].traceId: not valid hex"),
            "{err}"
        );
        let err = decode(json!({"resourceSpans": [{"scopeSpans": 5}]})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "resourceSpans[0].scopeSpans: expected an array, got a number"
        );
        let err = decode(
            json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "-1"}]}]}]}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        assert!(matches!(
            decode_trace_request(b"{nope").unwrap_err(),
            JsonError::Syntax(_)
        ));
        assert!(decode(json!([1])).is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"k","value":{}{{"stringValue":"leaf"}}{}}}]}}}}]}}"#,
            r#"{"arrayValue":{"values":["#.repeat(10_000),
            "]}}".repeat(10_000)
        );
        // serde_json itself refuses JSON nesting past 128 levels; ours stops at 32 value levels.
        assert!(decode_trace_request(deep.as_bytes()).is_err());
        let mut value = json!({"stringValue": "leaf"});
        for level in 0..35 {
            value = json!({"arrayValue": {"values": [value]}});
            let body = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": value}]}}]});
            let result = decode(body);
            if level < 32 {
                assert!(result.is_ok(), "{level}: {result:?}");
            } else {
                let err = result.unwrap_err();
                assert!(err.to_string().contains("nested deeper than 32"), "{err}");
            }
        }
    }

    #[test]
    fn export_response_leaves_partial_success_unset_on_full_success() {
        assert_eq!(encode_export_response(None), b"{}");
        let body: Value =
            serde_json::from_slice(&encode_export_response(Some(("rejectedSpans", 3, "why"))))
                .unwrap();
        assert_eq!(
            body,
            json!({"partialSuccess": {"rejectedSpans": "3", "errorMessage": "why"}})
        );
    }

    fn decode_logs(value: Value) -> Result<ExportLogsServiceRequest> {
        decode_logs_request(value.to_string().as_bytes())
    }

    #[test]
    fn every_log_record_field_is_decoded() {
        let kv = |key: &str, value: OtlpValue| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        };
        let body = json!({"resourceLogs": [{
            "resource": {
                "attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}],
                "droppedAttributesCount": 1
            },
            "scopeLogs": [{
                "scope": {"name": "lib", "version": "1", "droppedAttributesCount": 2},
                "logRecords": [{
                    "timeUnixNano": "18446744073709551615",
                    "observedTimeUnixNano": "1700000000000000001",
                    "severityNumber": 17,
                    "severityText": "Error",
                    "body": {"kvlistValue": {"values": [
                        {"key": "msg", "value": {"stringValue": "boom"}},
                        {"key": "n", "value": {"intValue": "-7"}}
                    ]}},
                    "attributes": [{"key": "d", "value": {"doubleValue": 0.5}}],
                    "droppedAttributesCount": 3,
                    "flags": 1,
                    "traceId": "0102030405060708090a0b0c0d0e0f10",
                    "spanId": "A1A2A3A4A5A6A7A8",
                    "eventName": "app.crash"
                }],
                "schemaUrl": "s1"
            }],
            "schemaUrl": "s2"
        }]});
        let expected = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", OtlpValue::StringValue("svc".into()))],
                    dropped_attributes_count: 1,
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1".into(),
                        attributes: vec![],
                        dropped_attributes_count: 2,
                    }),
                    log_records: vec![OtlpLogRecord {
                        time_unix_nano: u64::MAX,
                        observed_time_unix_nano: 1_700_000_000_000_000_001,
                        severity_number: 17,
                        severity_text: "Error".into(),
                        body: Some(AnyValue {
                            value: Some(OtlpValue::KvlistValue(KeyValueList {
                                values: vec![
                                    kv("msg", OtlpValue::StringValue("boom".into())),
                                    kv("n", OtlpValue::IntValue(-7)),
                                ],
                            })),
                        }),
                        attributes: vec![kv("d", OtlpValue::DoubleValue(0.5))],
                        dropped_attributes_count: 3,
                        flags: 1,
                        trace_id: (1..=16).collect(),
                        span_id: vec![0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8],
                        event_name: "app.crash".into(),
                    }],
                    schema_url: "s1".into(),
                }],
                schema_url: "s2".into(),
            }],
        };
        assert_eq!(decode_logs(body).unwrap(), expected);
    }

    #[test]
    fn log_snake_case_numbers_and_severity_names_are_accepted() {
        let camel = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
            "timeUnixNano": "10", "observedTimeUnixNano": "11",
            "severityNumber": 14, "severityText": "WARN2",
            "body": {"stringValue": "hello"},
            "droppedAttributesCount": "2", "flags": "1",
            "traceId": "0102030405060708090A0B0C0D0E0F10", "spanId": "",
            "eventName": "e"
        }]}]}]});
        let snake = json!({"resource_logs": [{"scope_logs": [{"log_records": [{
            "time_unix_nano": 10, "observed_time_unix_nano": 11,
            "severity_number": "SEVERITY_NUMBER_WARN2", "severity_text": "WARN2",
            "body": {"string_value": "hello"},
            "dropped_attributes_count": 2, "flags": 1,
            "trace_id": "0102030405060708090a0b0c0d0e0f10",
            "event_name": "e", "unknownField": {"a": 1}
        }]}]}]});
        let from_camel = decode_logs(camel).unwrap();
        assert_eq!(from_camel, decode_logs(snake).unwrap());
        let record = &from_camel.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.severity_number, 14);
        assert_eq!(record.time_unix_nano, 10);
        assert_eq!(record.trace_id[9], 0x0a);
        assert!(record.span_id.is_empty());
        assert_eq!(decode_logs(json!({})).unwrap(), Default::default());
    }

    #[test]
    fn severity_names_are_the_generated_ones() {
        use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
        for (number, name) in SEVERITY_NUMBERS.iter().enumerate() {
            let generated = SeverityNumber::try_from(number as i32).unwrap();
            assert_eq!(generated.as_str_name(), *name);
        }
        assert!(SeverityNumber::try_from(SEVERITY_NUMBERS.len() as i32).is_err());
    }

    #[test]
    fn log_errors_name_the_field() {
        let err = decode_logs(
            json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{}, {"traceId": "0g"}]}]}]}),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("resourceLogs[0].scopeLogs[0].logRecords[1].traceId: not valid hex"),
            "{err}"
        );
        let err = decode_logs(
            json!({"resource_logs": [{"scope_logs": [{"log_records": [{"severity_number": "LOUD"}]}]}]}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "resource_logs[0].scope_logs[0].log_records[0].severity_number: \
             expected an integer, got \"LOUD\""
        );
        let err = decode_logs(json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"body": {"kvlistValue": {"values": [{"key": "k", "value": {"intValue": 1.5}}]}}}
        ]}]}]}))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "resourceLogs[0].scopeLogs[0].logRecords[0].body.kvlistValue.values[0].value.intValue: \
             expected an integer, got 1.5"
        );
        let mut value = json!({"stringValue": "leaf"});
        for _ in 0..34 {
            value = json!({"arrayValue": {"values": [value]}});
        }
        let err = decode_logs(
            json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": value}]}]}]}),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("resourceLogs[0].scopeLogs[0].logRecords[0].body.arrayValue"),
            "{err}"
        );
        assert!(err.to_string().contains("nested deeper than 32"), "{err}");
        assert!(matches!(
            decode_logs_request(b"").unwrap_err(),
            JsonError::Syntax(_)
        ));
    }

    #[test]
    fn export_response_names_rejected_log_records() {
        let body: Value = serde_json::from_slice(&encode_export_response(Some((
            "rejectedLogRecords",
            2,
            "2 log records rejected: 2 x span_id must be 8 bytes, got 3",
        ))))
        .unwrap();
        assert_eq!(
            body,
            json!({"partialSuccess": {
                "rejectedLogRecords": "2",
                "errorMessage": "2 log records rejected: 2 x span_id must be 8 bytes, got 3"
            }})
        );
    }

    fn decode_metrics(value: Value) -> Result<ExportMetricsServiceRequest> {
        decode_metrics_request(value.to_string().as_bytes())
    }

    /// The same JSON with every object key in snake_case.
    fn snake_keys(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, value)| {
                        let mut snake = String::new();
                        for c in key.chars() {
                            if c.is_ascii_uppercase() {
                                snake.push('_');
                            }
                            snake.push(c.to_ascii_lowercase());
                        }
                        (snake, snake_keys(value))
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(snake_keys).collect()),
            other => other.clone(),
        }
    }

    #[test]
    fn every_metric_field_is_decoded() {
        let kv = |key: &str, value: OtlpValue| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        };
        let attrs = |key: &str| json!([{"key": key, "value": {"stringValue": "v"}}]);
        let exemplar = json!({
            "filteredAttributes": [{"key": "user", "value": {"intValue": 3}}],
            "timeUnixNano": "1700000000000000002",
            "asInt": "-9223372036854775808",
            "spanId": "A1A2A3A4A5A6A7A8",
            "traceId": "0102030405060708090a0b0c0d0e0f10"
        });
        let body = json!({"resourceMetrics": [{
            "resource": {
                "attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}],
                "droppedAttributesCount": 1
            },
            "scopeMetrics": [{
                "scope": {"name": "lib", "version": "1", "droppedAttributesCount": "2"},
                "metrics": [
                    {
                        "name": "temperature", "description": "d", "unit": "Cel",
                        "metadata": [{"key": "m", "value": {"boolValue": true}}],
                        "gauge": {"dataPoints": [
                            {
                                "attributes": attrs("g"),
                                "startTimeUnixNano": "1", "timeUnixNano": 2,
                                "asDouble": "-Infinity", "flags": 1,
                                "exemplars": [exemplar, {"asDouble": 0.25}]
                            },
                            {"timeUnixNano": "18446744073709551615", "asInt": 42},
                            {"timeUnixNano": 3}
                        ]}
                    },
                    {
                        "name": "requests",
                        "sum": {
                            "dataPoints": [{"asInt": "-5", "timeUnixNano": "4"}],
                            "aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
                            "isMonotonic": true
                        }
                    },
                    {
                        "name": "latency",
                        "histogram": {
                            "dataPoints": [{
                                "attributes": attrs("h"),
                                "startTimeUnixNano": 5, "timeUnixNano": "6",
                                "count": "7", "sum": 12.5,
                                "bucketCounts": ["1", 2, "0", 4],
                                "explicitBounds": [0.1, 1, "Infinity"],
                                "exemplars": [{"asDouble": "Infinity"}],
                                "flags": "1", "min": 0.05, "max": "Infinity"
                            }, {"count": 0}],
                            "aggregationTemporality": 1
                        }
                    },
                    {
                        "name": "size",
                        "exponentialHistogram": {
                            "dataPoints": [{
                                "attributes": attrs("e"),
                                "startTimeUnixNano": "8", "timeUnixNano": 9,
                                "count": 10, "sum": "-Infinity",
                                "scale": -3, "zeroCount": "2",
                                "positive": {"offset": "-2", "bucketCounts": [1, "3"]},
                                "negative": {"offset": 1, "bucketCounts": ["18446744073709551615"]},
                                "flags": 0,
                                "exemplars": [{"timeUnixNano": "9", "asInt": 1}],
                                "min": -1.5, "max": 8, "zeroThreshold": "1e-9"
                            }],
                            "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA"
                        }
                    },
                    {
                        "name": "rpc",
                        "summary": {"dataPoints": [{
                            "attributes": attrs("s"),
                            "startTimeUnixNano": "10", "timeUnixNano": "11",
                            "count": "12", "sum": 99.5,
                            "quantileValues": [
                                {"quantile": 0.5, "value": 1.25},
                                {"quantile": "1", "value": "NaN"}
                            ],
                            "flags": 1
                        }]}
                    },
                    {"name": "empty", "unknownKind": {"dataPoints": []}}
                ],
                "schemaUrl": "s1"
            }],
            "schemaUrl": "s2"
        }]});
        let point_attrs = |key: &str| vec![kv(key, OtlpValue::StringValue("v".into()))];
        let metric = |name: &str, data: metric::Data| OtlpMetric {
            name: name.into(),
            data: Some(data),
            ..Default::default()
        };
        let expected = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", OtlpValue::StringValue("svc".into()))],
                    dropped_attributes_count: 1,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1".into(),
                        attributes: vec![],
                        dropped_attributes_count: 2,
                    }),
                    metrics: vec![
                        OtlpMetric {
                            name: "temperature".into(),
                            description: "d".into(),
                            unit: "Cel".into(),
                            metadata: vec![kv("m", OtlpValue::BoolValue(true))],
                            data: Some(metric::Data::Gauge(Gauge {
                                data_points: vec![
                                    NumberDataPoint {
                                        attributes: point_attrs("g"),
                                        start_time_unix_nano: 1,
                                        time_unix_nano: 2,
                                        exemplars: vec![
                                            Exemplar {
                                                filtered_attributes: vec![kv(
                                                    "user",
                                                    OtlpValue::IntValue(3),
                                                )],
                                                time_unix_nano: 1_700_000_000_000_000_002,
                                                span_id: vec![
                                                    0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8,
                                                ],
                                                trace_id: (1..=16).collect(),
                                                value: Some(exemplar::Value::AsInt(i64::MIN)),
                                            },
                                            Exemplar {
                                                value: Some(exemplar::Value::AsDouble(0.25)),
                                                ..Default::default()
                                            },
                                        ],
                                        flags: 1,
                                        value: Some(number_data_point::Value::AsDouble(
                                            f64::NEG_INFINITY,
                                        )),
                                    },
                                    NumberDataPoint {
                                        time_unix_nano: u64::MAX,
                                        value: Some(number_data_point::Value::AsInt(42)),
                                        ..Default::default()
                                    },
                                    NumberDataPoint {
                                        time_unix_nano: 3,
                                        ..Default::default()
                                    },
                                ],
                            })),
                        },
                        metric(
                            "requests",
                            metric::Data::Sum(Sum {
                                data_points: vec![NumberDataPoint {
                                    time_unix_nano: 4,
                                    value: Some(number_data_point::Value::AsInt(-5)),
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            }),
                        ),
                        metric(
                            "latency",
                            metric::Data::Histogram(Histogram {
                                data_points: vec![
                                    HistogramDataPoint {
                                        attributes: point_attrs("h"),
                                        start_time_unix_nano: 5,
                                        time_unix_nano: 6,
                                        count: 7,
                                        sum: Some(12.5),
                                        bucket_counts: vec![1, 2, 0, 4],
                                        explicit_bounds: vec![0.1, 1.0, f64::INFINITY],
                                        exemplars: vec![Exemplar {
                                            value: Some(exemplar::Value::AsDouble(f64::INFINITY)),
                                            ..Default::default()
                                        }],
                                        flags: 1,
                                        min: Some(0.05),
                                        max: Some(f64::INFINITY),
                                    },
                                    HistogramDataPoint::default(),
                                ],
                                aggregation_temporality: 1,
                            }),
                        ),
                        metric(
                            "size",
                            metric::Data::ExponentialHistogram(ExponentialHistogram {
                                data_points: vec![ExponentialHistogramDataPoint {
                                    attributes: point_attrs("e"),
                                    start_time_unix_nano: 8,
                                    time_unix_nano: 9,
                                    count: 10,
                                    sum: Some(f64::NEG_INFINITY),
                                    scale: -3,
                                    zero_count: 2,
                                    positive: Some(Buckets {
                                        offset: -2,
                                        bucket_counts: vec![1, 3],
                                    }),
                                    negative: Some(Buckets {
                                        offset: 1,
                                        bucket_counts: vec![u64::MAX],
                                    }),
                                    flags: 0,
                                    exemplars: vec![Exemplar {
                                        time_unix_nano: 9,
                                        value: Some(exemplar::Value::AsInt(1)),
                                        ..Default::default()
                                    }],
                                    min: Some(-1.5),
                                    max: Some(8.0),
                                    zero_threshold: 1e-9,
                                }],
                                aggregation_temporality: 1,
                            }),
                        ),
                        metric(
                            "rpc",
                            metric::Data::Summary(Summary {
                                data_points: vec![SummaryDataPoint {
                                    attributes: point_attrs("s"),
                                    start_time_unix_nano: 10,
                                    time_unix_nano: 11,
                                    count: 12,
                                    sum: 99.5,
                                    quantile_values: vec![
                                        ValueAtQuantile {
                                            quantile: 0.5,
                                            value: 1.25,
                                        },
                                        // "NaN" is checked, then replaced: NaN != NaN.
                                        ValueAtQuantile {
                                            quantile: 1.0,
                                            value: -1.0,
                                        },
                                    ],
                                    flags: 1,
                                }],
                            }),
                        ),
                        OtlpMetric {
                            name: "empty".into(),
                            ..Default::default()
                        },
                    ],
                    schema_url: "s1".into(),
                }],
                schema_url: "s2".into(),
            }],
        };
        let snake = snake_keys(&body);
        assert!(
            snake["resource_metrics"][0]["scope_metrics"][0]["metrics"][3]["exponential_histogram"]
                ["data_points"][0]["zero_count"]
                .is_string()
        );
        for body in [body, snake] {
            let mut decoded = decode_metrics(body).unwrap();
            let metrics = &mut decoded.resource_metrics[0].scope_metrics[0].metrics;
            let Some(metric::Data::Summary(summary)) = &mut metrics[4].data else {
                panic!("not a summary: {:?}", metrics[4]);
            };
            let nan = &mut summary.data_points[0].quantile_values[1].value;
            assert!(nan.is_nan(), "{nan}");
            *nan = -1.0;
            assert_eq!(decoded, expected);
        }
        assert_eq!(decode_metrics(json!({})).unwrap(), Default::default());
    }

    #[test]
    fn aggregation_temporality_names_are_the_generated_ones() {
        use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
        for (number, name) in AGGREGATION_TEMPORALITIES.iter().enumerate() {
            let generated = AggregationTemporality::try_from(number as i32).unwrap();
            assert_eq!(generated.as_str_name(), *name);
        }
        assert!(AggregationTemporality::try_from(AGGREGATION_TEMPORALITIES.len() as i32).is_err());
    }

    #[test]
    fn a_metric_with_two_kinds_of_data_is_refused() {
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":{},"sum":{}}]}]}]}"#;
        let err = decode_metrics_request(body).unwrap_err().to_string();
        assert!(
            err.contains("resourceMetrics[0].scopeMetrics[0].metrics[0]"),
            "{err}"
        );
        assert!(err.contains("gauge and sum"), "{err}");
    }

    #[test]
    fn metric_errors_name_the_field() {
        let err = decode_metrics(json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"histogram": {"dataPoints": [{}, {"bucketCounts": ["1", "x"]}]}}
        ]}]}]}))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].histogram.dataPoints[1].bucketCounts[1]: \
             expected an integer, got \"x\""
        );
        let err = decode_metrics(json!({"resource_metrics": [{"scope_metrics": [{"metrics": [
            {"exponential_histogram": {"data_points": [{"negative": {"bucket_counts": [-1]}}]}}
        ]}]}]}))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "resource_metrics[0].scope_metrics[0].metrics[0].exponential_histogram.data_points[0]\
             .negative.bucket_counts[0]: integer -1 is out of range"
        );
        let err = decode_metrics(json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"sum": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_SOMETIMES"}}
        ]}]}]}))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.aggregationTemporality: \
             expected an integer, got \"AGGREGATION_TEMPORALITY_SOMETIMES\""
        );
        let err = decode_metrics(json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"gauge": {"dataPoints": [{"exemplars": [{"traceId": "zz"}]}]}}
        ]}]}]}))
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].exemplars[0]\
                 .traceId: not valid hex"
            ),
            "{err}"
        );
        let err = decode_metrics(json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"summary": {"dataPoints": [{"quantileValues": [{"value": "lots"}]}]}},
        ]}]}]}))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].summary.dataPoints[0]\
             .quantileValues[0].value: expected a number, got \"lots\""
        );
        let err = decode_metrics(json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"sum": {"isMonotonic": "yes"}}
        ]}]}]}))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.isMonotonic: \
             expected a boolean, got a string"
        );
        let err = decode_metrics(json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"gauge": [1]}
        ]}]}]}))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge: expected an object, got an array"
        );
        assert!(matches!(
            decode_metrics_request(b"[").unwrap_err(),
            JsonError::Syntax(_)
        ));
    }
}
