//! Sightline's data model and OTLP decoding. No I/O lives here.
//!
//! - [`ids`]: [`TraceId`] and [`SpanId`], fixed-size ids with fallible construction.
//! - [`span`]: [`SpanRecord`], one span with its resource and scope: the unit the span store
//!   keeps, and its compact protobuf encoding.
//! - [`log`]: [`LogRecord`], the same for one log record, plus severity names and the W3C
//!   `traceparent` parser.
//! - [`metric`]: OTLP metrics as Prometheus series (names, labels, histograms, deltas marked).
//! - [`record`]: the encoder both write with, a one-item OTLP `Resource*` message whose shared
//!   resource and scope are encoded once per batch.
//! - [`validate`]: per-record checks of an OTLP export request; invalid records are removed
//!   one by one and counted, the rest is kept.
//! - [`otlp_json`]: the OTLP/JSON encoding (hex ids, integer enums, 64-bit integers as strings
//!   or numbers, camelCase or snake_case keys), to and from the generated protobuf types.
//!
//! Generated OTLP types are re-exported under [`otlp`] and aliased on import (`Span as
//! OtlpSpan`) so they never mix with ours.

pub mod ids;
pub mod log;
pub mod metric;
pub mod otlp_json;
pub mod record;
pub mod span;
pub mod validate;

pub use ids::{IdError, SpanId, TraceId};
pub use log::LogRecord;
pub use span::{SpanRecord, UNKNOWN_SERVICE};

/// The generated OTLP protobuf types, re-exported so that every crate uses the same version.
pub use opentelemetry_proto::tonic as otlp;
