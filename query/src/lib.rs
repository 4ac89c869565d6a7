//! Sightline's query side and the `sightline` binary's building blocks.
//!
//! - [`config`]: every setting, from defaults, a TOML file, `SIGHTLINE_*` variables and flags.
//! - [`demo`]: demo traffic of a small shop over OTLP (`--demo`, `sightline loadgen`).
//! - [`time`]: unix nanoseconds and RFC 3339, as the APIs read and write times.
//! - [`server`]: the all-in-one server: receivers, pipeline and query API in one process.
//! - [`engine`]: the query engine (trace search and summaries).
//! - [`api`]: the query port's HTTP API: Jaeger v1, native `/api/v1/`, Prometheus under
//!   `/prometheus/api/v1/`, `/healthz`, `/readyz`, `/metrics`.
//! - [`jaeger`]: Jaeger's JSON model and its mapping from OTLP spans.
//! - [`promql`]: PromQL evaluation over the metric store, with Prometheus' semantics.

pub mod api;
pub mod config;
pub mod demo;
pub mod engine;
pub mod jaeger;
pub mod promql;
pub mod server;
pub mod time;
