//! [`OneRecordEncoder`]: encodes one span or log record with its resource and scope as a
//! one-item `ResourceSpans` or `ResourceLogs` message, the unit the stores keep.
//!
//! The resource and scope are encoded once per batch and written as bytes, so a batch of records
//! sharing a resource does not clone it per record.

use std::marker::PhantomData;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::bytes::BufMut;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;

// Field numbers shared by ResourceSpans / ResourceLogs and ScopeSpans / ScopeLogs in
// opentelemetry/proto/{trace,logs}/v1/*.proto.
const RESOURCE_RESOURCE: u32 = 1;
const RESOURCE_SCOPES: u32 = 2;
const RESOURCE_SCHEMA_URL: u32 = 3;
const SCOPE_SCOPE: u32 = 1;
const SCOPE_ITEMS: u32 = 2;
const SCOPE_SCHEMA_URL: u32 = 3;

/// Encodes the items (spans, log records) of one resource and scope, each as its own one-item
/// `Resource*` message, encoding the shared resource and scope once.
pub struct OneRecordEncoder<M> {
    resource: Vec<u8>,
    resource_schema_url: String,
    scope: Vec<u8>,
    scope_schema_url: String,
    item: PhantomData<fn(&M)>,
}

impl<M: Message> OneRecordEncoder<M> {
    pub fn new(
        resource: Option<&Resource>,
        resource_schema_url: &str,
        scope: Option<&InstrumentationScope>,
        scope_schema_url: &str,
    ) -> Self {
        Self {
            resource: resource.map(Message::encode_to_vec).unwrap_or_default(),
            resource_schema_url: resource_schema_url.to_owned(),
            scope: scope.map(Message::encode_to_vec).unwrap_or_default(),
            scope_schema_url: scope_schema_url.to_owned(),
            item: PhantomData,
        }
    }

    /// Appends the encoded record of `item` to `out`.
    pub fn encode(&self, item: &M, out: &mut Vec<u8>) {
        let item_len = item.encoded_len();
        let scope_len = len_delimited_len(SCOPE_SCOPE, self.scope.len())
            + len_delimited_len(SCOPE_ITEMS, item_len)
            + string_len(SCOPE_SCHEMA_URL, &self.scope_schema_url);
        let total = len_delimited_len(RESOURCE_RESOURCE, self.resource.len())
            + len_delimited_len(RESOURCE_SCOPES, scope_len)
            + string_len(RESOURCE_SCHEMA_URL, &self.resource_schema_url);
        out.reserve(total);

        put_len_delimited(RESOURCE_RESOURCE, &self.resource, out);
        encode_key(RESOURCE_SCOPES, WireType::LengthDelimited, out);
        encode_varint(scope_len as u64, out);
        put_len_delimited(SCOPE_SCOPE, &self.scope, out);
        encode_key(SCOPE_ITEMS, WireType::LengthDelimited, out);
        encode_varint(item_len as u64, out);
        item.encode_raw(out);
        put_string(SCOPE_SCHEMA_URL, &self.scope_schema_url, out);
        put_string(RESOURCE_SCHEMA_URL, &self.resource_schema_url, out);
    }
}

fn key_len(field: u32) -> usize {
    encoded_len_varint(u64::from(field << 3))
}

fn len_delimited_len(field: u32, len: usize) -> usize {
    key_len(field) + encoded_len_varint(len as u64) + len
}

/// Strings are omitted when empty, as proto3 does.
fn string_len(field: u32, text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        len_delimited_len(field, text.len())
    }
}

fn put_len_delimited(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.put_slice(bytes);
}

fn put_string(field: u32, text: &str, out: &mut Vec<u8>) {
    if !text.is_empty() {
        put_len_delimited(field, text.as_bytes(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    #[test]
    fn missing_resource_scope_and_schema_urls_encode_as_prost_does() {
        // Absent resource and scope are written as present-but-empty, as decoding expects.
        let span = Span {
            name: "op".into(),
            ..Default::default()
        };
        let mut bytes = Vec::new();
        OneRecordEncoder::new(None, "", None, "").encode(&span, &mut bytes);
        let expected = ResourceSpans {
            resource: Some(Resource::default()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope::default()),
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        };
        assert_eq!(bytes, expected.encode_to_vec());

        let log = LogRecord {
            severity_number: 9,
            ..Default::default()
        };
        let scope = InstrumentationScope {
            name: "lib".into(),
            ..Default::default()
        };
        let mut bytes = Vec::new();
        OneRecordEncoder::new(None, "r", Some(&scope), "s").encode(&log, &mut bytes);
        let expected = ResourceLogs {
            resource: Some(Resource::default()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope),
                log_records: vec![log],
                schema_url: "s".into(),
            }],
            schema_url: "r".into(),
        };
        assert_eq!(bytes, expected.encode_to_vec());
    }
}
