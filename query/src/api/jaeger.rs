//! Jaeger's v1 query API at Jaeger's own paths, in the exact shapes Jaeger UI and Grafana's
//! Jaeger data source read (`shared/reference/jaeger-api.md`).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sightline_proto::TraceId;

use super::{blocking, ApiError, AppState};
use crate::jaeger::model::{error_envelope, span_kind_name, trace_from_records, Envelope};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/services", get(services))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/api/operations", get(operations))
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
    let trace_id: TraceId = trace_id
        .parse()
        .map_err(|err| ApiError::bad_request(format!("malformed trace id {trace_id:?}: {err}")))?;
    let records = blocking(move || Ok(state.spans.get_trace(trace_id)?)).await?;
    if records.is_empty() {
        return Err(ApiError::not_found("trace not found").into());
    }
    Ok(Json(Envelope::new(
        vec![trace_from_records(trace_id, &records)],
        1,
    )))
}

fn span_kind_from_name(name: &str) -> Option<i32> {
    (1..=5).find(|kind| span_kind_name(*kind).eq_ignore_ascii_case(name))
}
