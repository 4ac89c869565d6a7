//! Jaeger's JSON model ([`model`]) and its mapping from OTLP spans.

pub mod model;
