//! [`SpanRecord`]: one span with its resource and scope, as the span store keeps it.
//!
//! On disk a record is an OTLP `ResourceSpans` message holding exactly one scope with exactly one
//! span, so nothing an exporter sent is lost and any OTLP tool can read it back. The encoder is
//! [`OneRecordEncoder`], shared with log records.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
use prost::Message;

use crate::record::OneRecordEncoder;
use crate::{SpanId, TraceId};

/// The service name used when a resource carries no `service.name`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// The `service.name` of a resource, or [`UNKNOWN_SERVICE`].
pub fn service_name(resource: Option<&Resource>) -> &str {
    resource
        .and_then(|resource| string_attribute(&resource.attributes, "service.name"))
        .filter(|name| !name.is_empty())
        .unwrap_or(UNKNOWN_SERVICE)
}

/// The value of a string attribute.
pub fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|value| value.value.as_ref()) {
            Some(Value::StringValue(text)) => Some(text.as_str()),
            _ => None,
        }
    })
}

/// One span with everything it was exported with.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanRecord {
    pub resource: Resource,
    pub resource_schema_url: String,
    pub scope: InstrumentationScope,
    pub scope_schema_url: String,
    pub span: OtlpSpan,
}

impl SpanRecord {
    pub fn service_name(&self) -> &str {
        service_name(Some(&self.resource))
    }

    /// The span's trace id; records in the store always have a valid one.
    pub fn trace_id(&self) -> Option<TraceId> {
        TraceId::try_from(self.span.trace_id.as_slice()).ok()
    }

    pub fn span_id(&self) -> Option<SpanId> {
        SpanId::try_from(self.span.span_id.as_slice()).ok()
    }

    /// The parent span id, `None` for a root span.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        SpanId::try_from(self.span.parent_span_id.as_slice()).ok()
    }

    /// Decodes a record written by [`SpanRecordEncoder`].
    pub fn decode(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        let resource_spans = ResourceSpans::decode(bytes)?;
        let mut scope_spans = resource_spans.scope_spans.into_iter();
        let ScopeSpans {
            scope,
            mut spans,
            schema_url: scope_schema_url,
        } = scope_spans.next().unwrap_or_default();
        let span = spans.pop().unwrap_or_default();
        Ok(Self {
            resource: resource_spans.resource.unwrap_or_default(),
            resource_schema_url: resource_spans.schema_url,
            scope: scope.unwrap_or_default(),
            scope_schema_url,
            span,
        })
    }

    /// The record as a one-span `ResourceSpans`.
    pub fn into_resource_spans(self) -> ResourceSpans {
        ResourceSpans {
            resource: Some(self.resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(self.scope),
                spans: vec![self.span],
                schema_url: self.scope_schema_url,
            }],
            schema_url: self.resource_schema_url,
        }
    }
}

/// Encodes the spans of one resource and scope as [`SpanRecord`] bytes, encoding the shared
/// resource and scope once.
pub type SpanRecordEncoder = OneRecordEncoder<OtlpSpan>;

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::Status;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn encoded_record_decodes_to_everything_it_carried() {
        let resource = Resource {
            attributes: vec![kv("service.name", Value::StringValue("checkout".into()))],
            dropped_attributes_count: 2,
            ..Default::default()
        };
        let scope = InstrumentationScope {
            name: "lib".into(),
            version: "1.0".into(),
            attributes: vec![kv("a", Value::BoolValue(true))],
            dropped_attributes_count: 1,
        };
        let span = OtlpSpan {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            trace_state: "k=v".into(),
            flags: 1,
            name: "GET /cart".into(),
            kind: 2,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            attributes: vec![
                kv(
                    "list",
                    Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(Value::IntValue(-4)),
                        }],
                    }),
                ),
                kv(
                    "map",
                    Value::KvlistValue(KeyValueList {
                        values: vec![kv("inner", Value::DoubleValue(1.5))],
                    }),
                ),
                kv("raw", Value::BytesValue(vec![0, 255])),
            ],
            dropped_attributes_count: 3,
            events: vec![Event {
                time_unix_nano: 15,
                name: "exception".into(),
                attributes: vec![],
                dropped_attributes_count: 4,
            }],
            dropped_events_count: 5,
            links: vec![Link {
                trace_id: vec![9; 16],
                span_id: vec![8; 8],
                ..Default::default()
            }],
            dropped_links_count: 6,
            status: Some(Status {
                message: "boom".into(),
                code: 2,
            }),
        };
        let encoder = SpanRecordEncoder::new(Some(&resource), "https://r", Some(&scope), "");
        let mut bytes = Vec::new();
        encoder.encode(&span, &mut bytes);
        let record = SpanRecord::decode(&bytes).unwrap();
        assert_eq!(
            record,
            SpanRecord {
                resource,
                resource_schema_url: "https://r".into(),
                scope,
                scope_schema_url: String::new(),
                span,
            }
        );
        assert_eq!(record.service_name(), "checkout");
        // Identical to what prost itself would write for the same one-span ResourceSpans.
        assert_eq!(record.into_resource_spans().encode_to_vec(), bytes);
    }

    #[test]
    fn missing_service_name_is_unknown_service() {
        assert_eq!(service_name(None), UNKNOWN_SERVICE);
        assert_eq!(service_name(Some(&Resource::default())), UNKNOWN_SERVICE);
    }
}
