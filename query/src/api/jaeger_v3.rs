//! Jaeger's api_v3 (answers in OTLP/JSON), which Jaeger UI 2.19+ searches through.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use sightline_proto::otlp_json::encode_resource_spans;

use super::jaeger::span_kind_from_name;
use super::native::{group_by_resource_and_scope, summary_json};
use super::params::{parse_trace_id, Params};
use super::{blocking, ApiError, AppState};
use crate::engine::traces::{search as search_traces, SearchPage, TraceQuery};
use crate::jaeger::model::span_kind_name;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v3/services", get(services))
        .route("/api/v3/operations", get(operations))
        .route("/api/v3/traces", get(find_traces))
        .route("/api/v3/traces/{trace_id}", get(trace))
        .route("/api/v3/trace-summaries", get(trace_summaries))
}

/// api_v3 errors: `{"error":{"httpCode":404,"message":"..."}}`.
struct V3Error(ApiError);

impl From<ApiError> for V3Error {
    fn from(err: ApiError) -> Self {
        V3Error(err)
    }
}

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let body = json!({"error": {"httpCode": status.as_u16(), "message": self.0.message}});
        (status, Json(body)).into_response()
    }
}

type V3Result = Result<Json<Value>, V3Error>;

async fn services(State(state): State<AppState>) -> V3Result {
    let services = blocking(move || Ok(state.spans.services()?)).await?;
    Ok(Json(json!({ "services": services })))
}

async fn operations(State(state): State<AppState>, RawQuery(raw): RawQuery) -> V3Result {
    let params = Params::parse(raw.as_deref());
    let service = params
        .get(&["service"])
        .ok_or_else(|| ApiError::bad_request("parameter 'service' is required"))?
        .to_owned();
    let kind = params
        .get(&["spanKind", "span_kind"])
        .map(|name| {
            span_kind_from_name(name)
                .ok_or_else(|| ApiError::bad_request(format!("unknown spanKind {name:?}")))
        })
        .transpose()?;
    let operations = blocking(move || Ok(state.spans.operations(&service, kind)?)).await?;
    let operations: Vec<Value> = operations
        .into_iter()
        .map(|(name, kind)| json!({"name": name, "spanKind": span_kind_name(kind)}))
        .collect();
    Ok(Json(json!({ "operations": operations })))
}

async fn trace(State(state): State<AppState>, Path(trace_id): Path<String>) -> V3Result {
    let trace_id = parse_trace_id(&trace_id)?;
    let records = blocking(move || Ok(state.spans.get_trace(trace_id)?)).await?;
    if records.is_empty() {
        return Err(ApiError::not_found("trace not found").into());
    }
    Ok(Json(
        json!({ "result": encode_resource_spans(&group_by_resource_and_scope(records)) }),
    ))
}

/// The `query.*` parameters of `/api/v3/traces` and `/api/v3/trace-summaries`.
fn v3_query(params: &Params) -> Result<TraceQuery, ApiError> {
    let attributes = params.attributes_json("query.attributes")?;
    let start = params.time_nanos(&["query.start_time_min", "query.startTimeMin"])?;
    let end = params.time_nanos(&["query.start_time_max", "query.startTimeMax"])?;
    if start.is_none() || end.is_none() {
        return Err(ApiError::bad_request(
            "query.start_time_min and query.start_time_max are required (RFC 3339)",
        ));
    }
    Ok(TraceQuery {
        service: params
            .get(&["query.service_name", "query.serviceName"])
            .map(str::to_owned),
        operation: params
            .get(&["query.operation_name", "query.operationName"])
            .map(str::to_owned),
        attributes,
        min_span_duration_nanos: params
            .duration_nanos(&["query.duration_min", "query.durationMin"])?,
        max_span_duration_nanos: params
            .duration_nanos(&["query.duration_max", "query.durationMax"])?,
        start_unix_nanos: start,
        end_unix_nanos: end,
        limit: params
            .u64(&[
                "query.search_depth",
                "query.searchDepth",
                "query.num_traces",
            ])?
            .map_or(100, |depth| (depth as usize).clamp(1, 1500)),
        ..TraceQuery::default()
    })
}

async fn run_search(state: AppState, raw: Option<String>) -> Result<SearchPage, ApiError> {
    let query = v3_query(&Params::parse(raw.as_deref()))?;
    blocking(move || Ok(search_traces(&state.spans, &query)?)).await
}

async fn find_traces(State(state): State<AppState>, RawQuery(raw): RawQuery) -> V3Result {
    let page = run_search(state, raw).await?;
    if page.traces.is_empty() {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: "No traces found".into(),
        }
        .into());
    }
    let records = page
        .traces
        .into_iter()
        .flat_map(|(_, records)| records)
        .collect();
    Ok(Json(
        json!({ "result": encode_resource_spans(&group_by_resource_and_scope(records)) }),
    ))
}

async fn trace_summaries(State(state): State<AppState>, RawQuery(raw): RawQuery) -> V3Result {
    let page = run_search(state, raw).await?;
    let summaries: Vec<Value> = page
        .traces
        .iter()
        .map(|(summary, _)| summary_json(summary))
        .collect();
    Ok(Json(json!({ "summaries": summaries })))
}
