//! Builders of raw OTLP requests for the tests.

use prost::Message;
use sightline_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sightline_proto::otlp::common::v1::{
    any_value::Value, AnyValue, InstrumentationScope, KeyValue,
};
use sightline_proto::otlp::resource::v1::Resource;
use sightline_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A random-enough 16-byte trace id, unique per call in a test run.
pub fn trace_id() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&now_nanos().to_be_bytes());
    id[8..].copy_from_slice(&(n ^ u64::from(std::process::id()) << 32).to_be_bytes());
    id
}

/// A span of `trace` with span id `[id; 8]` under `parent` (0 = root).
pub fn span(trace: [u8; 16], id: u8, parent: u8, name: &str) -> Span {
    let start = now_nanos();
    Span {
        trace_id: trace.to_vec(),
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000_000,
        attributes: vec![kv("http.method", Value::StringValue("GET".into()))],
        status: Some(Status {
            code: 0,
            message: String::new(),
        }),
        ..Default::default()
    }
}

/// A request carrying `spans` for `service`.
pub fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue(service.into()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "e2e".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// A trace of `n` spans (one root, the rest its children) in one request.
pub fn trace_request(service: &str, trace: [u8; 16], n: usize) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| {
            let mut s = span(trace, 1, 0, "root");
            s.span_id = ((i as u64) + 1).to_be_bytes().to_vec();
            if i > 0 {
                s.parent_span_id = 1u64.to_be_bytes().to_vec();
                s.name = format!("child-{}", i % 7);
            }
            s
        })
        .collect();
    request(service, spans)
}

pub fn encode(request: &ExportTraceServiceRequest) -> Vec<u8> {
    request.encode_to_vec()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).unwrap()
}
