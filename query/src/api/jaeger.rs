//! Jaeger's v1 query API at Jaeger's own paths, in the exact shapes Jaeger UI and Grafana's
//! Jaeger data source read (`shared/reference/jaeger-api.md`).

use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sightline_proto::TraceId;

use super::native::DEFAULT_DEPENDENCY_WINDOW_NANOS;
use super::params::{now_nanos, parse_trace_id, Params};
use super::{blocking, ApiError, AppState};
use crate::engine::dependencies::DependencyQuery;
use crate::engine::red::{red_series, RedQuery};
use crate::engine::traces::{search as search_traces, TraceQuery};
use crate::jaeger::model::{error_envelope, span_kind_name, trace_from_records, Envelope};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/services", get(services))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/api/operations", get(operations))
        .route("/api/traces", get(search))
        .route("/api/dependencies", get(dependencies))
        .route("/api/metrics/{metric}", get(metrics))
        .route("/api/traces/{trace_id}", get(trace))
}

/// Jaeger answers errors inside its envelope.
struct JaegerError(ApiError);

impl From<ApiError> for JaegerError {
    fn from(err: ApiError) -> Self {
        JaegerError(err)
    }
}

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        (
            status,
            Json(error_envelope(status.as_u16(), self.0.message)),
        )
            .into_response()
    }
}

type JaegerResult<T> = Result<Json<Envelope<T>>, JaegerError>;

async fn services(State(state): State<AppState>) -> JaegerResult<Vec<String>> {
    let services = blocking(move || Ok(state.spans.services()?)).await?;
    let total = services.len();
    Ok(Json(Envelope::new(services, total)))
}

async fn service_operations(
    State(state): State<AppState>,
    Path(service): Path<String>,
) -> JaegerResult<Vec<String>> {
    let operations = blocking(move || Ok(state.spans.operations(&service, None)?)).await?;
    let mut names: Vec<String> = operations.into_iter().map(|(name, _)| name).collect();
    names.dedup();
    let total = names.len();
    Ok(Json(Envelope::new(names, total)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationsParams {
    service: Option<String>,
    span_kind: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    name: String,
    span_kind: &'static str,
}

async fn operations(
    State(state): State<AppState>,
    Query(params): Query<OperationsParams>,
) -> JaegerResult<Vec<Operation>> {
    let service = params
        .service
        .filter(|service| !service.is_empty())
        .ok_or_else(|| ApiError::bad_request("parameter 'service' is required"))?;
    let kind = match params.span_kind.as_deref() {
        None | Some("") => None,
        Some(name) => Some(
            span_kind_from_name(name)
                .ok_or_else(|| ApiError::bad_request(format!("unknown spanKind {name:?}")))?,
        ),
    };
    let operations = blocking(move || Ok(state.spans.operations(&service, kind)?)).await?;
    let operations: Vec<Operation> = operations
        .into_iter()
        .map(|(name, kind)| Operation {
            name,
            span_kind: span_kind_name(kind),
        })
        .collect();
    let total = operations.len();
    Ok(Json(Envelope::new(operations, total)))
}

async fn trace(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
) -> JaegerResult<Vec<crate::jaeger::model::Trace>> {
    let trace_id = parse_trace_id(&trace_id)?;
    let records = blocking(move || Ok(state.spans.get_trace(trace_id)?)).await?;
    if records.is_empty() {
        return Err(ApiError::not_found("trace not found").into());
    }
    Ok(Json(Envelope::new(
        vec![trace_from_records(trace_id, &records)],
        1,
    )))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DependencyLink {
    parent: String,
    child: String,
    call_count: u64,
}

/// Jaeger's dependencies: `endTs` and `lookback` in milliseconds (default: now, 24 h).
async fn dependencies(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> JaegerResult<Vec<DependencyLink>> {
    let params = Params::parse(raw.as_deref());
    let millis = 1_000_000u64;
    let end = params
        .u64(&["endTs"])?
        .map_or_else(now_nanos, |ms| ms.saturating_mul(millis));
    let lookback = params
        .u64(&["lookback"])?
        .map_or(DEFAULT_DEPENDENCY_WINDOW_NANOS, |ms| {
            ms.saturating_mul(millis)
        });
    let query = DependencyQuery {
        start_unix_nanos: end.saturating_sub(lookback),
        end_unix_nanos: end,
        service: None,
    };
    let graph = blocking(move || Ok(state.service_graph.query(&query))).await?;
    let links: Vec<DependencyLink> = graph
        .edges
        .into_iter()
        .map(|edge| DependencyLink {
            parent: edge.parent,
            child: edge.child,
            call_count: edge.call_count,
        })
        .collect();
    let total = links.len();
    Ok(Json(Envelope::new(links, total)))
}

/// Jaeger UI's Monitor tab: `/api/metrics/{calls,errors,latencies}` as a protobuf-JSON
/// `MetricFamily`, from the spans of the window (`endTs`, `lookback`, `step`, `ratePer` in ms).
async fn metrics(
    State(state): State<AppState>,
    Path(metric): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, JaegerError> {
    let params = Params::parse(raw.as_deref());
    let millis = 1_000_000u64;
    let end = params
        .u64(&["endTs"])?
        .map_or_else(now_nanos, |ms| ms.saturating_mul(millis));
    let lookback = params
        .u64(&["lookback"])?
        .unwrap_or(3_600_000)
        .saturating_mul(millis);
    let step = params
        .u64(&["step"])?
        .unwrap_or(60_000)
        .max(1)
        .saturating_mul(millis);
    if lookback / step > 10_000 {
        return Err(ApiError::bad_request("lookback/step gives more than 10,000 points").into());
    }
    let quantile: f64 = match params.get(&["quantile"]) {
        None => 0.95,
        Some(q) => q
            .parse()
            .ok()
            .filter(|q: &f64| (0.0..=1.0).contains(q))
            .ok_or_else(|| ApiError::bad_request(format!("quantile {q:?} is not in [0, 1]")))?,
    };
    let span_kinds = params
        .all("spanKind")
        .map(|name| {
            let name = name.trim_start_matches("SPAN_KIND_").to_ascii_lowercase();
            span_kind_from_name(&name)
                .ok_or_else(|| ApiError::bad_request(format!("unknown spanKind {name:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let group_by_operation = params.bool(&["groupByOperation"])?;
    let (name, help) = match (metric.as_str(), group_by_operation) {
        ("calls", false) => ("service_call_rate", "calls/sec, grouped by service"),
        ("calls", true) => ("service_operation_call_rate", "calls/sec, grouped by service & operation"),
        ("errors", false) => ("service_error_rate", "error rate, computed as a fraction of errors/sec over calls/sec, grouped by service"),
        ("errors", true) => ("service_operation_error_rate", "error rate, computed as a fraction of errors/sec over calls/sec, grouped by service & operation"),
        ("latencies", false) => ("service_latencies", "latency quantile in milliseconds, grouped by service"),
        ("latencies", true) => ("service_operation_latencies", "latency quantile in milliseconds, grouped by service & operation"),
        _ => return Err(ApiError::not_found(format!("unknown metric {metric:?}: use calls, errors or latencies")).into()),
    };
    let start = end.saturating_sub(lookback);
    let query = RedQuery {
        services: params.all("service").map(str::to_owned).collect(),
        group_by_operation,
        span_kinds: if span_kinds.is_empty() {
            vec![2]
        } else {
            span_kinds
        },
        start_unix_nanos: start,
        end_unix_nanos: end,
        step_nanos: step,
    };
    let series = blocking(move || {
        red_series(&state.spans, &query)
            .map_err(|err| crate::engine::traces::SearchError::Index(err).into())
    })
    .await?;
    let step_seconds = step as f64 / 1e9;
    let metrics: Vec<serde_json::Value> = series
        .into_iter()
        .map(|mut series| {
            let mut labels = vec![serde_json::json!({"name": "service_name", "value": series.service})];
            if let Some(operation) = &series.operation {
                labels.push(serde_json::json!({"name": "operation", "value": operation}));
            }
            let mut points = Vec::new();
            let mut bucket = start;
            while bucket < end {
                let entry = series.buckets.get_mut(&bucket);
                let value = match (metric.as_str(), entry) {
                    ("calls", Some(b)) => Some(b.calls as f64 / step_seconds),
                    ("calls", None) => Some(0.0),
                    ("errors", Some(b)) if b.calls > 0 => Some(b.errors as f64 / b.calls as f64),
                    ("errors", _) => Some(0.0),
                    (_, Some(b)) => b.quantile_nanos(quantile).map(|n| n as f64 / 1e6),
                    (_, None) => None,
                };
                if let Some(value) = value {
                    points.push(serde_json::json!({
                        "gaugeValue": {"doubleValue": value},
                        "timestamp": super::params::format_time(bucket.saturating_add(step).min(end)),
                    }));
                }
                bucket += step;
            }
            serde_json::json!({"labels": labels, "metricPoints": points})
        })
        .collect();
    Ok(Json(serde_json::json!({
        "name": name,
        "type": "GAUGE",
        "help": help,
        "metrics": metrics,
    })))
}

/// Jaeger's default search window when `start` is absent: the last 2 days.
const DEFAULT_LOOKBACK_NANOS: u64 = 2 * 24 * 3600 * 1_000_000_000;

/// Jaeger's trace search, as Jaeger UI and Grafana call it: full traces, newest first.
/// `service` is optional here (Jaeger requires it): searching all services works.
async fn search(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> JaegerResult<Vec<crate::jaeger::model::Trace>> {
    let params = Params::parse(raw.as_deref());
    let trace_ids: Vec<TraceId> = params
        .all("traceID")
        .map(|id| {
            id.parse()
                .map_err(|err| ApiError::bad_request(format!("malformed traceID {id:?}: {err}")))
        })
        .collect::<Result<_, _>>()?;
    if !trace_ids.is_empty() {
        let spans = state.spans.clone();
        let traces = blocking(move || {
            let mut traces = Vec::new();
            for trace_id in trace_ids {
                let records = spans.get_trace(trace_id)?;
                if !records.is_empty() {
                    traces.push(trace_from_records(trace_id, &records));
                }
            }
            Ok(traces)
        })
        .await?;
        let total = traces.len();
        return Ok(Json(Envelope::new(traces, total)));
    }

    let mut attributes = params.attributes_json("tags")?;
    for tag in params.all("tag") {
        let (key, value) = tag.split_once(':').ok_or_else(|| {
            ApiError::bad_request(format!("malformed tag {tag:?}: expected key:value"))
        })?;
        attributes.push((key.to_owned(), value.to_owned()));
    }
    let micros_to_nanos = |micros: Option<u64>| micros.map(|us| us.saturating_mul(1000));
    let end = micros_to_nanos(params.u64(&["end"])?).unwrap_or_else(now_nanos);
    let start = micros_to_nanos(params.u64(&["start"])?)
        .unwrap_or_else(|| end.saturating_sub(DEFAULT_LOOKBACK_NANOS));
    let query = TraceQuery {
        service: params.get(&["service"]).map(str::to_owned),
        operation: params.get(&["operation"]).map(str::to_owned),
        attributes,
        min_span_duration_nanos: params.duration_nanos(&["minDuration"])?,
        max_span_duration_nanos: params.duration_nanos(&["maxDuration"])?,
        start_unix_nanos: Some(start),
        end_unix_nanos: Some(end),
        limit: params
            .u64(&["limit"])?
            .map_or(100, |l| (l as usize).clamp(1, 1500)),
        ..TraceQuery::default()
    };
    let spans = state.spans.clone();
    let page = blocking(move || Ok(search_traces(&spans, &query)?)).await?;
    let traces: Vec<_> = page
        .traces
        .iter()
        .map(|(summary, records)| trace_from_records(summary.trace_id, records))
        .collect();
    let total = traces.len();
    Ok(Json(Envelope::new(traces, total)))
}

/// An OTLP span kind from its Jaeger name.
pub fn span_kind_from_name(name: &str) -> Option<i32> {
    (1..=5).find(|kind| span_kind_name(*kind).eq_ignore_ascii_case(name))
}
