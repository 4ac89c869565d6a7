//! Jaeger's v1 JSON model ([`model`]): the traces, envelopes and errors Jaeger UI and Grafana's
//! Jaeger data source read, and their mapping from our OTLP span records.

pub mod model;

pub use model::{
    error_envelope, span_kind_name, trace_from_records, Envelope, EnvelopeError, KeyValue, Log,
    Process, RefType, Reference, Span, TagValue, Trace,
};
