//! End-to-end tests: each starts the real `sightline` binary on port 0 with its own data
//! directory and talks to it with real clients (the `opentelemetry-otlp` exporters, a tonic
//! OTLP client, reqwest).

#![recursion_limit = "256"]
// `[id.clone()]` reads better than `std::slice::from_ref(&id)` in expected results.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod browser;
mod demo;
mod durability;
mod ingest;
mod large;
mod logs;
mod metrics;
mod otel_sdk;
mod otlp;
mod retention;
mod search;
mod support;
mod ui;
