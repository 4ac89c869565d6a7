//! Jaeger's v1 JSON model (the `/api/traces` answers Jaeger UI and Grafana read) and its mapping
//! from our OTLP records.
//!
//! The mapping follows Jaeger's own OTLP translator (`pkg/translator/jaeger` in the collector
//! contrib repository, which Jaeger's query service uses): the parent is the first `CHILD_OF`
//! reference and links are `FOLLOWS_FROM`; events are logs whose first field `event` holds the
//! event name; kind, status, trace state and scope are span tags; the resource is the process,
//! `service.name` its `serviceName`. Times are microseconds.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use prost::Message;
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;
use sightline_proto::otlp::common::v1::any_value::Value as OtlpValue;
use sightline_proto::otlp::common::v1::KeyValue as OtlpKeyValue;
use sightline_proto::otlp::trace::v1::span::{Event as OtlpEvent, Link as OtlpLink};
use sightline_proto::otlp::trace::v1::Span as OtlpSpan;
use sightline_proto::otlp_json::{encode_double, plain_json};
use sightline_proto::{SpanRecord, TraceId};

/// The envelope of every v1 answer: `{"data":...,"total":N,"limit":0,"offset":0,"errors":null}`.
#[derive(Debug, Serialize)]
pub struct Envelope<T> {
    pub data: T,
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    pub errors: Option<Vec<EnvelopeError>>,
}

impl<T> Envelope<T> {
    /// A successful answer.
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

/// One entry of an envelope's `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvelopeError {
    /// The HTTP status code.
    pub code: u16,
    pub msg: String,
}

/// An error answer: `{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":..,"msg":..}]}`.
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

/// One trace: its spans, and the processes (service + resource tags) they point at by id.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub spans: Vec<Span>,
    /// `"p1"`, `"p2"`, ... in the order the sorted spans first use them.
    pub processes: BTreeMap<String, Process>,
    pub warnings: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
    pub operation_name: String,
    /// W3C trace flags (bit 0: sampled).
    pub flags: u32,
    /// The parent first (`CHILD_OF`), then the links; `[]` for a root without links.
    pub references: Vec<Reference>,
    /// Microseconds since the Unix epoch.
    pub start_time: u64,
    /// Microseconds.
    pub duration: u64,
    pub tags: Vec<KeyValue>,
    pub logs: Vec<Log>,
    #[serde(rename = "processID")]
    pub process_id: String,
    pub warnings: Option<Vec<String>>,
}

/// A reference from a span to another span, maybe in another trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    pub ref_type: RefType,
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefType {
    ChildOf,
    FollowsFrom,
}

/// A typed tag or log field, serialized as `{"key":..,"type":..,"value":..}`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: TagValue,
}

/// A tag's value; its variant gives the JSON `type`.
#[derive(Debug, Clone)]
pub enum TagValue {
    /// `"string"`.
    String(String),
    /// `"bool"`.
    Bool(bool),
    /// `"int64"`, a JSON number.
    Int64(i64),
    /// `"float64"`, a JSON number; NaN and infinities as the strings `"NaN"`, `"Infinity"` and
    /// `"-Infinity"`, since JSON has no number for them.
    Float64(f64),
    /// `"binary"`, standard base64 as Go's `encoding/json` writes `[]byte`.
    Binary(Vec<u8>),
}

impl TagValue {
    /// Jaeger's name of the value's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            TagValue::String(_) => "string",
            TagValue::Bool(_) => "bool",
            TagValue::Int64(_) => "int64",
            TagValue::Float64(_) => "float64",
            TagValue::Binary(_) => "binary",
        }
    }
}

/// Equality that holds for NaN too, so that equal resources make one process.
impl PartialEq for TagValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TagValue::String(a), TagValue::String(b)) => a == b,
            (TagValue::Bool(a), TagValue::Bool(b)) => a == b,
            (TagValue::Int64(a), TagValue::Int64(b)) => a == b,
            (TagValue::Float64(a), TagValue::Float64(b)) => a.to_bits() == b.to_bits(),
            (TagValue::Binary(a), TagValue::Binary(b)) => a == b,
            _ => false,
        }
    }
}

impl Serialize for TagValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TagValue::String(text) => serializer.serialize_str(text),
            TagValue::Bool(flag) => serializer.serialize_bool(*flag),
            TagValue::Int64(n) => serializer.serialize_i64(*n),
            TagValue::Float64(x) if x.is_finite() => serializer.serialize_f64(*x),
            TagValue::Float64(x) => encode_double(*x).serialize(serializer),
            TagValue::Binary(bytes) => serializer.serialize_str(&BASE64.encode(bytes)),
        }
    }
}

impl Serialize for KeyValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut kv = serializer.serialize_struct("KeyValue", 3)?;
        kv.serialize_field("key", &self.key)?;
        kv.serialize_field("type", self.value.type_name())?;
        kv.serialize_field("value", &self.value)?;
        kv.end()
    }
}

/// A span event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Log {
    /// Microseconds since the Unix epoch.
    pub timestamp: u64,
    pub fields: Vec<KeyValue>,
}

/// What emitted spans: a service and its resource attributes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub service_name: String,
    pub tags: Vec<KeyValue>,
}

/// Jaeger's name of an OTLP span kind, `""` for unspecified or unknown kinds.
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

// OTLP status codes (opentelemetry/proto/trace/v1/trace.proto, `Status.StatusCode`).
const STATUS_CODE_OK: i32 = 1;
const STATUS_CODE_ERROR: i32 = 2;

/// The link attribute with which Jaeger's OTLP translator marks a link that was a Jaeger
/// reference, so that a `CHILD_OF` reference survives Jaeger -> OTLP -> Jaeger.
const OPENTRACING_REF_TYPE: &str = "opentracing.ref_type";

/// The Jaeger trace of `records`, the spans the store holds for `trace_id`, in any order.
///
/// Spans are sorted by start time, then span id. A span stored twice (a client retried its
/// export) appears once: the first of `records` with its span id is kept.
pub fn trace_from_records(trace_id: TraceId, records: &[SpanRecord]) -> Trace {
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(records.len());
    let mut unique: Vec<&SpanRecord> = records
        .iter()
        .filter(|record| seen.insert(record.span.span_id.as_slice()))
        .collect();
    unique.sort_by(|a, b| {
        (a.span.start_time_unix_nano, &a.span.span_id)
            .cmp(&(b.span.start_time_unix_nano, &b.span.span_id))
    });

    let mut processes = Processes::default();
    let spans = unique
        .into_iter()
        .map(|record| {
            let process_id = process_id(processes.index_of(record));
            span_from_record(record, process_id)
        })
        .collect();
    Trace {
        trace_id: trace_id.to_string(),
        spans,
        processes: processes
            .list
            .into_iter()
            .enumerate()
            .map(|(index, process)| (process_id(index), process))
            .collect(),
        warnings: None,
    }
}

fn process_id(index: usize) -> String {
    format!("p{}", index + 1)
}

/// The distinct processes of a trace, in order of first use.
#[derive(Default)]
struct Processes {
    list: Vec<Process>,
    /// Encoded resource -> index in `list`: spans of one resource map without building their
    /// process again.
    by_resource: HashMap<Vec<u8>, usize>,
    buffer: Vec<u8>,
}

impl Processes {
    fn index_of(&mut self, record: &SpanRecord) -> usize {
        self.buffer.clear();
        record.resource.encode_raw(&mut self.buffer);
        if let Some(&index) = self.by_resource.get(self.buffer.as_slice()) {
            return index;
        }
        // Resources that differ only in what Jaeger does not show (dropped counts, entity refs)
        // still share a process.
        let process = process_from_record(record);
        let index = match self.list.iter().position(|known| *known == process) {
            Some(index) => index,
            None => {
                self.list.push(process);
                self.list.len() - 1
            }
        };
        self.by_resource.insert(self.buffer.clone(), index);
        index
    }
}

fn process_from_record(record: &SpanRecord) -> Process {
    Process {
        service_name: record.service_name().to_owned(),
        tags: record
            .resource
            .attributes
            .iter()
            .filter(|kv| kv.key != "service.name")
            .map(tag)
            .collect(),
    }
}

fn span_from_record(record: &SpanRecord, process_id: String) -> Span {
    let span = &record.span;
    let trace_id = hex::encode(&span.trace_id);
    Span {
        references: references(span, &trace_id),
        trace_id,
        span_id: hex::encode(&span.span_id),
        operation_name: span.name.clone(),
        flags: span.flags & 0xff,
        start_time: span.start_time_unix_nano / 1000,
        duration: span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano)
            / 1000,
        tags: span_tags(record),
        logs: span.events.iter().map(log).collect(),
        process_id,
        warnings: None,
    }
}

/// The parent as the first reference, `CHILD_OF`, then the links, `FOLLOWS_FROM` unless the link
/// says `opentracing.ref_type: child_of`. A link to the parent itself only sets the parent
/// reference's type, as Jaeger's translator does.
fn references(span: &OtlpSpan, trace_id: &str) -> Vec<Reference> {
    let has_parent = span.parent_span_id.iter().any(|byte| *byte != 0);
    let mut references = Vec::with_capacity(usize::from(has_parent) + span.links.len());
    if has_parent {
        references.push(Reference {
            ref_type: RefType::ChildOf,
            trace_id: trace_id.to_owned(),
            span_id: hex::encode(&span.parent_span_id),
        });
    }
    for link in &span.links {
        let ref_type = link_ref_type(link);
        if has_parent && link.trace_id == span.trace_id && link.span_id == span.parent_span_id {
            references[0].ref_type = ref_type;
            continue;
        }
        references.push(Reference {
            ref_type,
            trace_id: hex::encode(&link.trace_id),
            span_id: hex::encode(&link.span_id),
        });
    }
    references
}

fn link_ref_type(link: &OtlpLink) -> RefType {
    match sightline_proto::span::string_attribute(&link.attributes, OPENTRACING_REF_TYPE) {
        Some("child_of") => RefType::ChildOf,
        _ => RefType::FollowsFrom,
    }
}

/// The span's attributes, then what OTLP carries in fields and Jaeger only in tags.
fn span_tags(record: &SpanRecord) -> Vec<KeyValue> {
    let span = &record.span;
    let mut tags: Vec<KeyValue> = span.attributes.iter().map(tag).collect();
    let kind = span_kind_name(span.kind);
    if !kind.is_empty() {
        tags.push(string_tag("span.kind", kind));
    }
    let (code, message) = span
        .status
        .as_ref()
        .map_or((0, ""), |status| (status.code, status.message.as_str()));
    match code {
        STATUS_CODE_OK => tags.push(string_tag("otel.status_code", "OK")),
        STATUS_CODE_ERROR => tags.push(string_tag("otel.status_code", "ERROR")),
        _ => {}
    }
    if !message.is_empty() {
        tags.push(string_tag("otel.status_description", message));
    }
    if code == STATUS_CODE_ERROR {
        tags.push(KeyValue {
            key: "error".to_owned(),
            value: TagValue::Bool(true),
        });
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
    let dropped = [
        (
            "otel.dropped_attributes_count",
            span.dropped_attributes_count,
        ),
        ("otel.dropped_events_count", span.dropped_events_count),
        ("otel.dropped_links_count", span.dropped_links_count),
    ];
    for (key, count) in dropped {
        if count > 0 {
            tags.push(KeyValue {
                key: key.to_owned(),
                value: TagValue::Int64(i64::from(count)),
            });
        }
    }
    tags
}

/// An event as a log: the field `event` with the event's name, then its attributes. As in
/// Jaeger's translator, there is no `event` field for an unnamed event or one whose attributes
/// already hold an `event`.
fn log(event: &OtlpEvent) -> Log {
    let mut fields = Vec::with_capacity(event.attributes.len() + 1);
    if !event.name.is_empty() && !event.attributes.iter().any(|kv| kv.key == "event") {
        fields.push(string_tag("event", &event.name));
    }
    fields.extend(event.attributes.iter().map(tag));
    Log {
        timestamp: event.time_unix_nano / 1000,
        fields,
    }
}

fn string_tag(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: TagValue::String(value.to_owned()),
    }
}

/// An OTLP attribute as a typed tag. Arrays and maps become strings holding compact JSON, as
/// Jaeger's translator writes them; an empty value is the empty string.
fn tag(kv: &OtlpKeyValue) -> KeyValue {
    let value = match kv.value.as_ref().and_then(|value| value.value.as_ref()) {
        Some(OtlpValue::StringValue(text)) => TagValue::String(text.clone()),
        Some(OtlpValue::BoolValue(flag)) => TagValue::Bool(*flag),
        Some(OtlpValue::IntValue(n)) => TagValue::Int64(*n),
        Some(OtlpValue::DoubleValue(x)) => TagValue::Float64(*x),
        Some(OtlpValue::BytesValue(bytes)) => TagValue::Binary(bytes.clone()),
        Some(value @ (OtlpValue::ArrayValue(_) | OtlpValue::KvlistValue(_))) => {
            TagValue::String(plain_json(value).to_string())
        }
        // A string-table index only means something in profiles.
        Some(OtlpValue::StringValueStrindex(_)) | None => TagValue::String(String::new()),
    };
    KeyValue {
        key: kv.key.clone(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as JsonValue};
    use sightline_proto::otlp::common::v1::AnyValue;
    use sightline_proto::otlp::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use sightline_proto::otlp::resource::v1::Resource;
    use sightline_proto::otlp::trace::v1::Status;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    fn any(value: OtlpValue) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    fn kv(key: &str, value: OtlpValue) -> OtlpKeyValue {
        OtlpKeyValue {
            key: key.into(),
            value: Some(any(value)),
            ..Default::default()
        }
    }

    fn str_kv(key: &str, value: &str) -> OtlpKeyValue {
        kv(key, OtlpValue::StringValue(value.into()))
    }

    fn trace_id() -> TraceId {
        TRACE.parse().unwrap()
    }

    fn resource(attributes: Vec<OtlpKeyValue>) -> Resource {
        Resource {
            attributes,
            ..Default::default()
        }
    }

    /// A span of [`TRACE`] in `service`, ids given by one repeated byte (0 = none).
    fn record(
        service: &str,
        id: u8,
        parent: u8,
        name: &str,
        start_nanos: u64,
        end_nanos: u64,
    ) -> SpanRecord {
        let mut record = SpanRecord {
            resource: resource(vec![str_kv("service.name", service)]),
            ..Default::default()
        };
        record.span.trace_id = trace_id().as_bytes().to_vec();
        record.span.span_id = vec![id; 8];
        if parent != 0 {
            record.span.parent_span_id = vec![parent; 8];
        }
        record.span.name = name.into();
        record.span.start_time_unix_nano = start_nanos;
        record.span.end_time_unix_nano = end_nanos;
        record
    }

    fn trace_json(records: &[SpanRecord]) -> JsonValue {
        serde_json::to_value(trace_from_records(trace_id(), records)).unwrap()
    }

    #[test]
    fn three_spans_in_two_services_map_to_jaeger_json() {
        // The root: a server span that failed, with an exception event.
        let mut root = record(
            "frontend",
            0x11,
            0,
            "GET /cart",
            1_706_678_909_209_712_345,
            1_706_678_909_210_835_999,
        );
        root.span.kind = 2;
        root.span.flags = 0x301;
        root.span.status = Some(Status {
            code: 2,
            message: "upstream timed out".into(),
        });
        root.span.attributes = vec![str_kv("http.method", "GET")];
        root.span.events.push(OtlpEvent {
            time_unix_nano: 1_706_678_909_210_000_999,
            name: "exception".into(),
            attributes: vec![
                str_kv("exception.type", "Timeout"),
                str_kv("exception.message", "after 1s"),
            ],
            dropped_attributes_count: 0,
        });
        root.scope = InstrumentationScope {
            name: "io.opentelemetry.http".into(),
            version: "1.2.0".into(),
            ..Default::default()
        };
        root.span.trace_state = "vendor=x".into();

        // Its client child, linked to a span of another trace; status OK.
        let mut client = record(
            "frontend",
            0x22,
            0x11,
            "call cart",
            1_706_678_909_209_800_000,
            1_706_678_909_210_700_000,
        );
        client.span.kind = 3;
        client.span.flags = 1;
        client.span.status = Some(Status {
            code: 1,
            message: String::new(),
        });
        client.span.links.push(OtlpLink {
            trace_id: vec![0xcd; 16],
            span_id: vec![0x09; 8],
            ..Default::default()
        });
        client.span.dropped_attributes_count = 3;
        client.span.dropped_events_count = 1;
        client.span.dropped_links_count = 2;

        // A child in a second service, with attributes of every type.
        let mut cart = record(
            "cart",
            0x33,
            0x22,
            "load cart",
            1_706_678_909_209_900_000,
            1_706_678_909_210_400_000,
        );
        cart.resource.attributes.push(str_kv("host.name", "cart-1"));
        cart.span.kind = 1;
        cart.span.attributes = vec![
            str_kv("db.system", "redis"),
            kv("cache.hit", OtlpValue::BoolValue(false)),
            kv("db.rows", OtlpValue::IntValue(-42)),
            kv("ratio", OtlpValue::DoubleValue(0.25)),
            kv("nan", OtlpValue::DoubleValue(f64::NAN)),
            kv("inf", OtlpValue::DoubleValue(f64::NEG_INFINITY)),
            kv("raw", OtlpValue::BytesValue(vec![0x00, 0x01, 0xfe, 0xff])),
            kv(
                "list",
                OtlpValue::ArrayValue(ArrayValue {
                    values: vec![
                        any(OtlpValue::IntValue(1)),
                        any(OtlpValue::StringValue("two".into())),
                        any(OtlpValue::BoolValue(true)),
                        AnyValue { value: None },
                    ],
                }),
            ),
            kv(
                "map",
                OtlpValue::KvlistValue(KeyValueList {
                    values: vec![
                        kv("z", OtlpValue::DoubleValue(1.5)),
                        kv("a", OtlpValue::BytesValue(vec![0xff])),
                        kv(
                            "m",
                            OtlpValue::ArrayValue(ArrayValue {
                                values: vec![any(OtlpValue::StringValue("x".into()))],
                            }),
                        ),
                    ],
                }),
            ),
            OtlpKeyValue {
                key: "empty".into(),
                value: None,
                ..Default::default()
            },
        ];

        // Out of order, as a store might return them.
        let json = trace_json(&[cart, root, client]);
        let expected = json!({
            "traceID": TRACE,
            "spans": [
                {
                    "traceID": TRACE,
                    "spanID": "1111111111111111",
                    "operationName": "GET /cart",
                    "flags": 1,
                    "references": [],
                    "startTime": 1_706_678_909_209_712u64,
                    "duration": 1123,
                    "tags": [
                        {"key": "http.method", "type": "string", "value": "GET"},
                        {"key": "span.kind", "type": "string", "value": "server"},
                        {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                        {"key": "otel.status_description", "type": "string", "value": "upstream timed out"},
                        {"key": "error", "type": "bool", "value": true},
                        {"key": "w3c.tracestate", "type": "string", "value": "vendor=x"},
                        {"key": "otel.scope.name", "type": "string", "value": "io.opentelemetry.http"},
                        {"key": "otel.scope.version", "type": "string", "value": "1.2.0"}
                    ],
                    "logs": [{
                        "timestamp": 1_706_678_909_210_000u64,
                        "fields": [
                            {"key": "event", "type": "string", "value": "exception"},
                            {"key": "exception.type", "type": "string", "value": "Timeout"},
                            {"key": "exception.message", "type": "string", "value": "after 1s"}
                        ]
                    }],
                    "processID": "p1",
                    "warnings": null
                },
                {
                    "traceID": TRACE,
                    "spanID": "2222222222222222",
                    "operationName": "call cart",
                    "flags": 1,
                    "references": [
                        {"refType": "CHILD_OF", "traceID": TRACE, "spanID": "1111111111111111"},
                        {"refType": "FOLLOWS_FROM", "traceID": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd", "spanID": "0909090909090909"}
                    ],
                    "startTime": 1_706_678_909_209_800u64,
                    "duration": 900,
                    "tags": [
                        {"key": "span.kind", "type": "string", "value": "client"},
                        {"key": "otel.status_code", "type": "string", "value": "OK"},
                        {"key": "otel.dropped_attributes_count", "type": "int64", "value": 3},
                        {"key": "otel.dropped_events_count", "type": "int64", "value": 1},
                        {"key": "otel.dropped_links_count", "type": "int64", "value": 2}
                    ],
                    "logs": [],
                    "processID": "p1",
                    "warnings": null
                },
                {
                    "traceID": TRACE,
                    "spanID": "3333333333333333",
                    "operationName": "load cart",
                    "flags": 0,
                    "references": [
                        {"refType": "CHILD_OF", "traceID": TRACE, "spanID": "2222222222222222"}
                    ],
                    "startTime": 1_706_678_909_209_900u64,
                    "duration": 500,
                    "tags": [
                        {"key": "db.system", "type": "string", "value": "redis"},
                        {"key": "cache.hit", "type": "bool", "value": false},
                        {"key": "db.rows", "type": "int64", "value": -42},
                        {"key": "ratio", "type": "float64", "value": 0.25},
                        {"key": "nan", "type": "float64", "value": "NaN"},
                        {"key": "inf", "type": "float64", "value": "-Infinity"},
                        {"key": "raw", "type": "binary", "value": "AAH+/w=="},
                        {"key": "list", "type": "string", "value": "[1,\"two\",true,null]"},
                        {"key": "map", "type": "string", "value": "{\"a\":\"/w==\",\"m\":[\"x\"],\"z\":1.5}"},
                        {"key": "empty", "type": "string", "value": ""},
                        {"key": "span.kind", "type": "string", "value": "internal"}
                    ],
                    "logs": [],
                    "processID": "p2",
                    "warnings": null
                }
            ],
            "processes": {
                "p1": {"serviceName": "frontend", "tags": []},
                "p2": {
                    "serviceName": "cart",
                    "tags": [{"key": "host.name", "type": "string", "value": "cart-1"}]
                }
            },
            "warnings": null
        });
        assert_eq!(json, expected);
    }

    #[test]
    fn a_span_stored_twice_appears_once_and_the_first_copy_wins() {
        let root = record("frontend", 1, 0, "first", 1_000, 2_000);
        let mut retried = root.clone();
        retried.span.name = "second".into();
        let child = record("frontend", 2, 1, "child", 1_500, 1_800);
        let trace = trace_from_records(trace_id(), &[root, child.clone(), retried, child]);
        let names: Vec<&str> = trace
            .spans
            .iter()
            .map(|span| span.operation_name.as_str())
            .collect();
        assert_eq!(names, ["first", "child"]);
        assert_eq!(trace.processes.len(), 1);
    }

    #[test]
    fn spans_sort_by_start_time_then_span_id() {
        let json = trace_json(&[
            record("a", 3, 0, "c", 5_000, 6_000),
            record("a", 2, 0, "b", 5_000, 6_000),
            record("a", 1, 0, "a", 7_000, 6_000),
        ]);
        let ids: Vec<&str> = json["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|span| span["spanID"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["0202020202020202", "0303030303030303", "0101010101010101"]
        );
        // An end before the start is a zero duration, not a negative or wrapped one.
        assert_eq!(json["spans"][2]["duration"], 0);
    }

    #[test]
    fn equal_resources_share_a_process_and_different_ones_do_not() {
        let host = |name: &str| str_kv("host.name", name);
        let mut a1 = record("api", 1, 0, "a1", 1_000, 2_000);
        a1.resource.attributes.push(host("h1"));
        let mut b = record("api", 2, 1, "b", 2_000, 3_000);
        b.resource.attributes.push(host("h2"));
        // Equal tags, but the resource differs in what Jaeger does not show.
        let mut a2 = record("api", 3, 1, "a2", 3_000, 4_000);
        a2.resource.attributes.push(host("h1"));
        a2.resource.dropped_attributes_count = 7;
        // The same resource with its attributes in another span.
        let mut a3 = record("api", 4, 1, "a3", 4_000, 5_000);
        a3.resource.attributes.push(host("h1"));
        let mut unknown = record("ignored", 5, 1, "u", 5_000, 6_000);
        unknown.resource = Resource::default();

        let json = trace_json(&[unknown, a3, a2, b, a1]);
        let process_ids: Vec<&str> = json["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|span| span["processID"].as_str().unwrap())
            .collect();
        assert_eq!(process_ids, ["p1", "p2", "p1", "p1", "p3"]);
        assert_eq!(
            json["processes"],
            json!({
                "p1": {"serviceName": "api", "tags": [{"key": "host.name", "type": "string", "value": "h1"}]},
                "p2": {"serviceName": "api", "tags": [{"key": "host.name", "type": "string", "value": "h2"}]},
                "p3": {"serviceName": "unknown_service", "tags": []}
            })
        );
    }

    #[test]
    fn links_follow_jaeger_translator_reference_rules() {
        let mut span = record("a", 2, 1, "s", 1_000, 2_000);
        span.span.links = vec![
            // The parent again, marked as Jaeger's `child_of`: no second reference.
            OtlpLink {
                trace_id: span.span.trace_id.clone(),
                span_id: vec![1; 8],
                attributes: vec![str_kv(OPENTRACING_REF_TYPE, "child_of")],
                ..Default::default()
            },
            // Another span with Jaeger's `child_of` marker.
            OtlpLink {
                trace_id: vec![0xee; 16],
                span_id: vec![5; 8],
                attributes: vec![str_kv(OPENTRACING_REF_TYPE, "child_of")],
                ..Default::default()
            },
        ];
        let mut zero_parent = record("a", 3, 0, "z", 3_000, 4_000);
        zero_parent.span.parent_span_id = vec![0; 8];
        let json = trace_json(&[span, zero_parent]);
        assert_eq!(
            json["spans"][0]["references"],
            json!([
                {"refType": "CHILD_OF", "traceID": TRACE, "spanID": "0101010101010101"},
                {"refType": "CHILD_OF", "traceID": "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "spanID": "0505050505050505"}
            ])
        );
        // An all-zero parent id is no parent.
        assert_eq!(json["spans"][1]["references"], json!([]));
    }

    #[test]
    fn unnamed_events_and_events_with_an_event_attribute_get_no_name_field() {
        let mut span = record("a", 1, 0, "s", 1_000_000, 2_000_000);
        span.span.events = vec![
            OtlpEvent {
                time_unix_nano: 1_500_000,
                name: String::new(),
                attributes: vec![kv("n", OtlpValue::IntValue(1))],
                dropped_attributes_count: 0,
            },
            OtlpEvent {
                time_unix_nano: 1_600_000,
                name: "ignored".into(),
                attributes: vec![str_kv("event", "explicit")],
                dropped_attributes_count: 0,
            },
        ];
        let json = trace_json(&[span]);
        assert_eq!(
            json["spans"][0]["logs"],
            json!([
                {"timestamp": 1500, "fields": [{"key": "n", "type": "int64", "value": 1}]},
                {"timestamp": 1600, "fields": [{"key": "event", "type": "string", "value": "explicit"}]}
            ])
        );
    }

    #[test]
    fn whole_doubles_and_unset_status_tags() {
        let mut span = record("a", 1, 0, "s", 0, 0);
        span.span.attributes = vec![
            kv("whole", OtlpValue::DoubleValue(2.0)),
            kv("pos_inf", OtlpValue::DoubleValue(f64::INFINITY)),
        ];
        span.span.status = Some(Status {
            code: 0,
            message: "unset but described".into(),
        });
        span.resource
            .attributes
            .push(kv("weight", OtlpValue::DoubleValue(f64::NAN)));
        // Serialized to text (not to a `Value`), so that the text itself is checked.
        let text = serde_json::to_string(&trace_from_records(trace_id(), &[span])).unwrap();
        let json: JsonValue = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["spans"][0]["tags"],
            json!([
                {"key": "whole", "type": "float64", "value": 2.0},
                {"key": "pos_inf", "type": "float64", "value": "Infinity"},
                {"key": "otel.status_description", "type": "string", "value": "unset but described"}
            ])
        );
        assert_eq!(
            json["processes"]["p1"]["tags"],
            json!([{"key": "weight", "type": "float64", "value": "NaN"}])
        );
    }

    #[test]
    fn error_envelope_has_jaeger_shape() {
        assert_eq!(
            serde_json::to_value(error_envelope(404, "trace not found")).unwrap(),
            json!({"data": null, "total": 0, "limit": 0, "offset": 0,
                   "errors": [{"code": 404, "msg": "trace not found"}]})
        );
        assert_eq!(
            serde_json::to_string(&Envelope::new(vec!["frontend", "cart"], 2)).unwrap(),
            r#"{"data":["frontend","cart"],"total":2,"limit":0,"offset":0,"errors":null}"#
        );
    }

    #[test]
    fn span_kind_names() {
        let names: Vec<&str> = (0..=6).map(span_kind_name).collect();
        assert_eq!(
            names,
            ["", "internal", "server", "client", "producer", "consumer", ""]
        );
    }
}
