//! Jaeger's v1 JSON model and its mapping from OTLP spans, following Jaeger's own OTLP
//! translator: the parent is the first `CHILD_OF` reference, links are `FOLLOWS_FROM`, events
//! are logs, status and kind are tags, resource attributes are process tags.

use std::collections::{BTreeMap, HashSet};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use sightline_proto::otlp::common::v1::any_value::Value as OtlpValue;
use sightline_proto::otlp::common::v1::{AnyValue, KeyValue as OtlpKeyValue};
use sightline_proto::otlp_json::encode_double;
use sightline_proto::{SpanRecord, TraceId};

/// The envelope of every v1 answer.
#[derive(Debug, Serialize)]
pub struct Envelope<T> {
    pub data: T,
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    pub errors: Option<Vec<EnvelopeError>>,
}

impl<T> Envelope<T> {
    pub fn new(data: T, total: usize) -> Self {
        Self {
            data,
            total,
            limit: 0,
            offset: 0,
            errors: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EnvelopeError {
    pub code: u16,
    pub msg: String,
}

/// An error answer: `{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code","msg"}]}`.
pub fn error_envelope(code: u16, msg: impl Into<String>) -> Envelope<Option<()>> {
    Envelope {
        data: None,
        total: 0,
        limit: 0,
        offset: 0,
        errors: Some(vec![EnvelopeError {
            code,
            msg: msg.into(),
        }]),
    }
}

#[derive(Debug, Serialize)]
pub struct Trace {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub spans: Vec<Span>,
    pub processes: BTreeMap<String, Process>,
    pub warnings: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
    pub operation_name: String,
    pub flags: u32,
    pub references: Vec<Reference>,
    /// Microseconds since the epoch.
    pub start_time: u64,
    /// Microseconds.
    pub duration: u64,
    pub tags: Vec<KeyValue>,
    pub logs: Vec<Log>,
    #[serde(rename = "processID")]
    pub process_id: String,
    pub warnings: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    pub ref_type: &'static str,
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(rename = "type")]
    pub value_type: &'static str,
    pub value: Value,
}

#[derive(Debug, Serialize)]
pub struct Log {
    pub timestamp: u64,
    pub fields: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub service_name: String,
    pub tags: Vec<KeyValue>,
}

/// Jaeger's name of an OTLP span kind (`""` for unspecified).
pub fn span_kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "",
    }
}

/// The Jaeger trace of `records` (as the span store returns them: start order, one per span id;
/// they are sorted and deduplicated again here so the mapping holds for any input).
pub fn trace_from_records(trace_id: TraceId, records: &[SpanRecord]) -> Trace {
    let mut order: Vec<&SpanRecord> = records.iter().collect();
    order.sort_by(|a, b| {
        (a.span.start_time_unix_nano, &a.span.span_id)
            .cmp(&(b.span.start_time_unix_nano, &b.span.span_id))
    });
    let mut seen = HashSet::new();
    order.retain(|record| seen.insert(record.span.span_id.clone()));

    let mut process_list: Vec<Process> = Vec::new();
    let mut spans = Vec::with_capacity(order.len());
    for record in order {
        let process = Process {
            service_name: record.service_name().to_owned(),
            tags: record
                .resource
                .attributes
                .iter()
                .filter(|kv| kv.key != "service.name")
                .map(tag)
                .collect(),
        };
        let index = match process_list.iter().position(|p| *p == process) {
            Some(index) => index,
            None => {
                process_list.push(process);
                process_list.len() - 1
            }
        };
        spans.push(span(record, format!("p{}", index + 1)));
    }
    Trace {
        trace_id: trace_id.to_string(),
        spans,
        processes: process_list
            .into_iter()
            .enumerate()
            .map(|(index, process)| (format!("p{}", index + 1), process))
            .collect(),
        warnings: None,
    }
}

fn span(record: &SpanRecord, process_id: String) -> Span {
    let span = &record.span;
    let trace_id = hex::encode(&span.trace_id);
    let mut references = Vec::with_capacity(1 + span.links.len());
    if !span.parent_span_id.is_empty() {
        references.push(Reference {
            ref_type: "CHILD_OF",
            trace_id: trace_id.clone(),
            span_id: hex::encode(&span.parent_span_id),
        });
    }
    references.extend(span.links.iter().map(|link| Reference {
        ref_type: "FOLLOWS_FROM",
        trace_id: hex::encode(&link.trace_id),
        span_id: hex::encode(&link.span_id),
    }));

    let mut tags: Vec<KeyValue> = span.attributes.iter().map(tag).collect();
    let kind = span_kind_name(span.kind);
    if !kind.is_empty() {
        tags.push(string_tag("span.kind", kind));
    }
    if let Some(status) = &span.status {
        match status.code {
            1 => tags.push(string_tag("otel.status_code", "OK")),
            2 => tags.push(string_tag("otel.status_code", "ERROR")),
            _ => {}
        }
        if !status.message.is_empty() {
            tags.push(string_tag("otel.status_description", &status.message));
        }
        if status.code == 2 {
            tags.push(KeyValue {
                key: "error".into(),
                value_type: "bool",
                value: json!(true),
            });
        }
    }
    if !span.trace_state.is_empty() {
        tags.push(string_tag("w3c.tracestate", &span.trace_state));
    }
    if !record.scope.name.is_empty() {
        tags.push(string_tag("otel.scope.name", &record.scope.name));
    }
    if !record.scope.version.is_empty() {
        tags.push(string_tag("otel.scope.version", &record.scope.version));
    }
    for (key, count) in [
        (
            "otel.dropped_attributes_count",
            span.dropped_attributes_count,
        ),
        ("otel.dropped_events_count", span.dropped_events_count),
        ("otel.dropped_links_count", span.dropped_links_count),
    ] {
        if count > 0 {
            tags.push(KeyValue {
                key: key.into(),
                value_type: "int64",
                value: json!(count),
            });
        }
    }

    let logs = span
        .events
        .iter()
        .map(|event| {
            let mut fields = vec![string_tag("event", &event.name)];
            fields.extend(event.attributes.iter().map(tag));
            Log {
                timestamp: event.time_unix_nano / 1000,
                fields,
            }
        })
        .collect();

    Span {
        trace_id,
        span_id: hex::encode(&span.span_id),
        operation_name: span.name.clone(),
        flags: span.flags & 0xff,
        references,
        start_time: span.start_time_unix_nano / 1000,
        duration: span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano)
            / 1000,
        tags,
        logs,
        process_id,
        warnings: None,
    }
}

fn string_tag(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value_type: "string",
        value: json!(value),
    }
}

/// An OTLP attribute as a typed Jaeger tag; arrays and maps become JSON strings.
fn tag(kv: &OtlpKeyValue) -> KeyValue {
    let (value_type, value) = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(OtlpValue::StringValue(text)) => ("string", json!(text)),
        Some(OtlpValue::BoolValue(flag)) => ("bool", json!(flag)),
        Some(OtlpValue::IntValue(n)) => ("int64", json!(n)),
        Some(OtlpValue::DoubleValue(x)) => ("float64", encode_double(*x)),
        Some(OtlpValue::BytesValue(bytes)) => ("binary", json!(BASE64.encode(bytes))),
        Some(value @ (OtlpValue::ArrayValue(_) | OtlpValue::KvlistValue(_))) => {
            ("string", json!(plain_json(value).to_string()))
        }
        _ => ("string", json!("")),
    };
    KeyValue {
        key: kv.key.clone(),
        value_type,
        value,
    }
}

/// A value as plain JSON: arrays as arrays, maps as objects.
fn plain_json(value: &OtlpValue) -> Value {
    let any = |v: &AnyValue| v.value.as_ref().map_or(Value::Null, plain_json);
    match value {
        OtlpValue::StringValue(text) => json!(text),
        OtlpValue::BoolValue(flag) => json!(flag),
        OtlpValue::IntValue(n) => json!(n),
        OtlpValue::DoubleValue(x) => encode_double(*x),
        OtlpValue::BytesValue(bytes) => json!(BASE64.encode(bytes)),
        OtlpValue::ArrayValue(array) => Value::Array(array.values.iter().map(any).collect()),
        OtlpValue::KvlistValue(list) => Value::Object(
            list.values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, any)))
                .collect(),
        ),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_proto::otlp::common::v1::{ArrayValue, KeyValueList};
    use sightline_proto::otlp::trace::v1::span::{Event, Link};
    use sightline_proto::otlp::trace::v1::Status;

    fn kv(key: &str, value: OtlpValue) -> OtlpKeyValue {
        OtlpKeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn record(service: &str, id: u8, parent: u8, name: &str, start_micros: u64) -> SpanRecord {
        let mut record = SpanRecord::default();
        record
            .resource
            .attributes
            .push(kv("service.name", OtlpValue::StringValue(service.into())));
        record.span.trace_id = vec![0xab; 16];
        record.span.span_id = vec![id; 8];
        if parent != 0 {
            record.span.parent_span_id = vec![parent; 8];
        }
        record.span.name = name.into();
        record.span.start_time_unix_nano = start_micros * 1000;
        record.span.end_time_unix_nano = start_micros * 1000 + 2_500_000;
        record
    }

    #[test]
    fn three_spans_in_two_services_map_to_jaeger_json() {
        let mut root = record("frontend", 1, 0, "GET /cart", 100);
        root.span.kind = 2;
        root.span.flags = 0x101;
        root.span.status = Some(Status {
            code: 2,
            message: "boom".into(),
        });
        root.span.events.push(Event {
            time_unix_nano: 150_000,
            name: "exception".into(),
            attributes: vec![kv("exception.type", OtlpValue::StringValue("E".into()))],
            dropped_attributes_count: 0,
        });
        root.scope.name = "lib".into();
        let mut client = record("frontend", 2, 1, "call cart", 110);
        client.span.kind = 3;
        client.span.links.push(Link {
            trace_id: vec![0xcd; 16],
            span_id: vec![9; 8],
            ..Default::default()
        });
        client.span.dropped_attributes_count = 4;
        let mut cart = record("cart", 3, 2, "load", 120);
        cart.resource
            .attributes
            .push(kv("host.name", OtlpValue::StringValue("h1".into())));
        cart.span.trace_state = "k=v".into();
        cart.span.attributes = vec![
            kv("b", OtlpValue::BoolValue(true)),
            kv("i", OtlpValue::IntValue(-3)),
            kv("d", OtlpValue::DoubleValue(0.5)),
            kv("nan", OtlpValue::DoubleValue(f64::NAN)),
            kv("raw", OtlpValue::BytesValue(vec![0, 1, 255])),
            kv(
                "arr",
                OtlpValue::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(OtlpValue::IntValue(1)),
                        },
                        AnyValue {
                            value: Some(OtlpValue::StringValue("x".into())),
                        },
                    ],
                }),
            ),
            kv(
                "map",
                OtlpValue::KvlistValue(KeyValueList {
                    values: vec![kv("k", OtlpValue::BoolValue(false))],
                }),
            ),
        ];
        // Out of order and with a duplicate (a retried export).
        let records = vec![cart.clone(), root, client, cart];
        let trace = trace_from_records(TraceId::try_from(&[0xab; 16][..]).unwrap(), &records);
        let t = "abababababababababababababababab";
        let expected = json!({
            "traceID": t,
            "spans": [
                {
                    "traceID": t, "spanID": "0101010101010101", "operationName": "GET /cart",
                    "flags": 1, "references": [], "startTime": 100, "duration": 2500,
                    "tags": [
                        {"key": "span.kind", "type": "string", "value": "server"},
                        {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                        {"key": "otel.status_description", "type": "string", "value": "boom"},
                        {"key": "error", "type": "bool", "value": true},
                        {"key": "otel.scope.name", "type": "string", "value": "lib"}
                    ],
                    "logs": [{"timestamp": 150, "fields": [
                        {"key": "event", "type": "string", "value": "exception"},
                        {"key": "exception.type", "type": "string", "value": "E"}
                    ]}],
                    "processID": "p1", "warnings": null
                },
                {
                    "traceID": t, "spanID": "0202020202020202", "operationName": "call cart",
                    "flags": 0,
                    "references": [
                        {"refType": "CHILD_OF", "traceID": t, "spanID": "0101010101010101"},
                        {"refType": "FOLLOWS_FROM", "traceID": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd", "spanID": "0909090909090909"}
                    ],
                    "startTime": 110, "duration": 2500,
                    "tags": [
                        {"key": "span.kind", "type": "string", "value": "client"},
                        {"key": "otel.dropped_attributes_count", "type": "int64", "value": 4}
                    ],
                    "logs": [], "processID": "p1", "warnings": null
                },
                {
                    "traceID": t, "spanID": "0303030303030303", "operationName": "load",
                    "flags": 0,
                    "references": [{"refType": "CHILD_OF", "traceID": t, "spanID": "0202020202020202"}],
                    "startTime": 120, "duration": 2500,
                    "tags": [
                        {"key": "b", "type": "bool", "value": true},
                        {"key": "i", "type": "int64", "value": -3},
                        {"key": "d", "type": "float64", "value": 0.5},
                        {"key": "nan", "type": "float64", "value": "NaN"},
                        {"key": "raw", "type": "binary", "value": "AAH/"},
                        {"key": "arr", "type": "string", "value": "[1,\"x\"]"},
                        {"key": "map", "type": "string", "value": "{\"k\":false}"},
                        {"key": "w3c.tracestate", "type": "string", "value": "k=v"}
                    ],
                    "logs": [], "processID": "p2", "warnings": null
                }
            ],
            "processes": {
                "p1": {"serviceName": "frontend", "tags": []},
                "p2": {"serviceName": "cart", "tags": [{"key": "host.name", "type": "string", "value": "h1"}]}
            },
            "warnings": null
        });
        assert_eq!(serde_json::to_value(&trace).unwrap(), expected);
    }

    #[test]
    fn error_envelope_has_jaeger_shape() {
        assert_eq!(
            serde_json::to_value(error_envelope(404, "trace not found")).unwrap(),
            json!({"data": null, "total": 0, "limit": 0, "offset": 0,
                   "errors": [{"code": 404, "msg": "trace not found"}]})
        );
        assert_eq!(
            serde_json::to_value(Envelope::new(vec!["a"], 1)).unwrap(),
            json!({"data": ["a"], "total": 1, "limit": 0, "offset": 0, "errors": null})
        );
    }
}
