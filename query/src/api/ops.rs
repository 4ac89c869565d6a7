//! Operations endpoints: `/healthz` (the process is up), `/readyz` (the write-ahead log has been
//! replayed and data is being accepted), `/metrics` (Sightline's own metrics).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, TextEncoder};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: replaying the write-ahead log\n",
        )
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(err) = encoder.encode(&state.registry.gather(), &mut body) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(CONTENT_TYPE, "text/plain")],
            format!("failed to encode metrics: {err}").into_bytes(),
        );
    }
    // The metric store's figures are read at scrape time.
    let stats = state.metrics.stats();
    for (name, kind, help, value) in [
        (
            "sightline_metric_series",
            "gauge",
            "Series in the metric store.",
            stats.series as u64,
        ),
        (
            "sightline_metric_samples",
            "gauge",
            "Samples in the metric store.",
            stats.samples,
        ),
        (
            "sightline_metric_chunk_bytes",
            "gauge",
            "Bytes of compressed samples in the metric store.",
            stats.chunk_bytes,
        ),
        (
            "sightline_metric_series_refused_total",
            "counter",
            "New series refused because a series limit was reached.",
            stats.refused_series,
        ),
        (
            "sightline_metric_out_of_order_samples_total",
            "counter",
            "Samples refused because their series already had a newer one.",
            stats.out_of_order,
        ),
    ] {
        body.extend_from_slice(
            format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n").as_bytes(),
        );
    }
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
}
