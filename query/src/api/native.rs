//! The native API under `/api/v1/`, described by the OpenAPI document at `/api/v1/openapi.json`.

use axum::extract::{Path, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sightline_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans};
use sightline_proto::otlp_json::ResourceSpansJson;
use sightline_proto::SpanRecord;

use super::params::{format_time, parse_trace_id, Params};
use super::{blocking, ApiError, AppState};
use crate::engine::analysis::TraceAnalysis;
use crate::engine::compare::compare;
use crate::engine::dependencies::DependencyQuery;
use crate::engine::fields::FieldInfo;
use crate::engine::partial::{select, TraceSelection};
use crate::engine::traces::{search as search_traces, TraceKey, TraceQuery, TraceSummary};

/// The OpenAPI 3.1 document of the native API.
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/traces", get(search))
        .route("/api/v1/traces/compare", get(compare_traces))
        .route("/api/v1/traces/attributes", get(attributes))
        .route("/api/v1/traces/{trace_id}", get(trace))
        .route("/api/v1/traces/{trace_id}/analysis", get(analysis))
        .route("/api/v1/dependencies", get(dependencies))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.status.as_u16(), "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Every span of a trace with everything it was exported with, as OTLP/JSON `resourceSpans`
/// (spans sharing a resource and scope are grouped), in start order.
async fn trace(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let trace_id = parse_trace_id(&trace_id)?;
    let params = Params::parse(raw.as_deref());
    let span_id = |text: &str| {
        hex::decode(text)
            .ok()
            .filter(|bytes| bytes.len() == 8)
            .ok_or_else(|| ApiError::bad_request(format!("malformed span id {text:?}")))
    };
    let selection = TraceSelection {
        max_depth: params.u64(&["maxDepth"])?.map(|d| d as usize),
        collapse: params
            .all("collapse")
            .flat_map(|list| list.split(','))
            .filter(|id| !id.is_empty())
            .map(span_id)
            .collect::<Result<_, _>>()?,
        around: params.get(&["around"]).map(span_id).transpose()?,
        window: params.u64(&["window"])?.map(|w| w as usize),
    };
    let records = blocking(move || Ok(state.spans.get_trace(trace_id)?)).await?;
    if records.is_empty() {
        return Err(ApiError::not_found(format!("trace {trace_id} not found")));
    }
    if let Some(around) = &selection.around {
        if !records.iter().any(|r| &r.span.span_id == around) {
            return Err(ApiError::bad_request(format!(
                "span {} is not in trace {trace_id}",
                hex::encode(around)
            )));
        }
    }
    // Selecting, grouping and writing 50,000 spans is CPU work: off the async workers.
    let body = blocking(move || {
        let span_count = records.len();
        let (records, collapsed) = select(records, &selection);
        let returned_span_count = records.len();
        let mut warnings = Vec::new();
        if returned_span_count < span_count {
            warnings.push(format!(
                "{} of {span_count} spans not returned (see collapsed); ask for them with collapse, around or a larger maxDepth",
                span_count - returned_span_count
            ));
        }
        let resource_spans = group_by_resource_and_scope(records);
        let trace = NativeTrace {
            trace_id: trace_id.to_string(),
            span_count,
            returned_span_count,
            collapsed: collapsed
                .iter()
                .map(|c| CollapsedJson {
                    span_id: hex::encode(&c.span_id),
                    hidden_descendants: c.hidden_descendants,
                })
                .collect(),
            warnings,
            resource_spans: ResourceSpansJson(&resource_spans),
        };
        serde_json::to_vec(&trace).map_err(|err| {
            tracing::error!(error = %err, "failed to encode a trace");
            ApiError::internal()
        })
    })
    .await?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

/// The native trace answer.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct NativeTrace<'a> {
    trace_id: String,
    span_count: usize,
    returned_span_count: usize,
    collapsed: Vec<CollapsedJson>,
    warnings: Vec<String>,
    resource_spans: ResourceSpansJson<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CollapsedJson {
    span_id: String,
    hidden_descendants: usize,
}

/// A structural diff of traces `a` and `b`.
async fn compare_traces(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = Params::parse(raw.as_deref());
    let id = |name: &str| {
        params
            .get(&[name])
            .ok_or_else(|| {
                ApiError::bad_request(format!("parameter {name:?} (a trace id) is required"))
            })
            .and_then(parse_trace_id)
    };
    let (a, b) = (id("a")?, id("b")?);
    let (records_a, records_b) =
        blocking(move || Ok((state.spans.get_trace(a)?, state.spans.get_trace(b)?))).await?;
    for (trace_id, records) in [(a, &records_a), (b, &records_b)] {
        if records.is_empty() {
            return Err(ApiError::not_found(format!("trace {trace_id} not found")));
        }
    }
    let duration = |records: &[SpanRecord]| {
        let start = records
            .iter()
            .map(|r| r.span.start_time_unix_nano)
            .min()
            .unwrap_or(0);
        let end = records
            .iter()
            .map(|r| r.span.end_time_unix_nano)
            .max()
            .unwrap_or(0);
        end.saturating_sub(start)
    };
    let diffs = compare(&records_a, &records_b);
    Ok(Json(json!({
        "a": {"traceId": a.to_string(), "spanCount": records_a.len(), "durationNanos": duration(&records_a)},
        "b": {"traceId": b.to_string(), "spanCount": records_b.len(), "durationNanos": duration(&records_b)},
        "paths": diffs.iter().map(|d| json!({
            "path": d.path,
            "change": d.change.name(),
            "countA": d.count_a,
            "countB": d.count_b,
            "durationANanos": d.duration_a_nanos,
            "durationBNanos": d.duration_b_nanos,
            "deltaNanos": d.delta_nanos() as i64,
        })).collect::<Vec<_>>(),
    })))
}

/// The analyses of one trace: critical path, self time per span, error path, time per service
/// and clock-skew warnings (with adjusted starts beside the raw times).
async fn analysis(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let trace_id = parse_trace_id(&trace_id)?;
    let records = blocking(move || Ok(state.spans.get_trace(trace_id)?)).await?;
    if records.is_empty() {
        return Err(ApiError::not_found(format!("trace {trace_id} not found")));
    }
    let analysis = TraceAnalysis::of(&records);
    let span_ref = |i: usize| {
        let span = &analysis.spans[i];
        json!({
            "spanId": hex::encode(&span.span_id),
            "service": span.service,
            "operation": span.operation,
        })
    };
    let critical_path: Vec<_> = analysis
        .critical_path
        .iter()
        .map(|segment| {
            let mut item = span_ref(segment.span);
            item["startUnixNano"] = json!(segment.start.to_string());
            item["endUnixNano"] = json!(segment.end.to_string());
            item["durationNanos"] = json!(segment.end - segment.start);
            item
        })
        .collect();
    let skew_by_span: std::collections::HashMap<usize, u64> = analysis
        .skew
        .iter()
        .map(|finding| (finding.span, finding.adjusted_start))
        .collect();
    let spans: Vec<_> = analysis
        .spans
        .iter()
        .enumerate()
        .map(|(i, span)| {
            let mut item = span_ref(i);
            item["parentSpanId"] =
                json!(span.parent.map(|p| hex::encode(&analysis.spans[p].span_id)));
            item["depth"] = json!(span.depth);
            item["error"] = json!(span.error);
            item["startUnixNano"] = json!(span.start.to_string());
            item["endUnixNano"] = json!(span.end.to_string());
            item["selfTimeNanos"] = json!(analysis.self_time_nanos[i]);
            item["criticalPathNanos"] = json!(analysis.critical_path_nanos[i]);
            if let Some(adjusted) = skew_by_span.get(&i) {
                item["adjustedStartUnixNano"] = json!(adjusted.to_string());
            }
            item
        })
        .collect();
    let error_path: Vec<_> = analysis
        .error_path
        .iter()
        .map(|&i| {
            let mut item = span_ref(i);
            item["error"] = json!(analysis.spans[i].error);
            item
        })
        .collect();
    let warnings: Vec<_> = analysis
        .skew
        .iter()
        .map(|finding| {
            let span = &analysis.spans[finding.span];
            let parent = &analysis.spans[finding.parent];
            json!({
                "type": "clock_skew",
                "spanId": hex::encode(&span.span_id),
                "parentSpanId": hex::encode(&parent.span_id),
                "startsBeforeParentNanos": finding.starts_before_nanos,
                "endsAfterParentNanos": finding.ends_after_nanos,
                "adjustedStartUnixNano": finding.adjusted_start.to_string(),
                "message": format!(
                    "span {} ({}) lies outside its parent {} ({}): starts {} ns before it, ends {} ns after it; probably clock skew between hosts",
                    hex::encode(&span.span_id), span.service, hex::encode(&parent.span_id), parent.service,
                    finding.starts_before_nanos, finding.ends_after_nanos
                ),
            })
        })
        .collect();
    Ok(Json(json!({
        "traceId": trace_id.to_string(),
        "rootSpanId": analysis.root.map(|r| hex::encode(&analysis.spans[r].span_id)),
        "criticalPath": critical_path,
        "errorPath": error_path,
        "services": analysis.services.iter().map(|s| json!({
            "name": s.name,
            "spanCount": s.span_count,
            "errorCount": s.error_count,
            "selfTimeNanos": s.self_time_nanos,
            "criticalPathNanos": s.critical_path_nanos,
        })).collect::<Vec<_>>(),
        "spans": spans,
        "warnings": warnings,
    })))
}

/// The default window of the dependency graph: the last 24 hours.
pub const DEFAULT_DEPENDENCY_WINDOW_NANOS: u64 = 24 * 3600 * 1_000_000_000;

/// The service dependency graph of a time range: nodes (services, databases, brokers, external
/// peers) and edges with call and error counts and latency quantiles, plus the spans that could
/// not be paired.
async fn dependencies(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = Params::parse(raw.as_deref());
    let (start, end) = range_or_last_day(&params)?;
    let query = DependencyQuery {
        start_unix_nanos: start,
        end_unix_nanos: end,
        service: params.get(&["service"]).map(str::to_owned),
    };
    let graph = blocking(move || Ok(state.service_graph.query(&query))).await?;
    let mut warnings = Vec::new();
    if graph.unpaired_children > 0 {
        warnings.push(format!(
            "{} spans have a parent that never arrived (or not within the pairing window): their calls are not in the graph",
            graph.unpaired_children
        ));
    }
    if graph.unpaired_clients > 0 {
        warnings.push(format!(
            "{} client/producer spans have no callee span and no peer attribute (db.system, messaging.system, peer.service, server.address, net.peer.name)",
            graph.unpaired_clients
        ));
    }
    Ok(Json(json!({
        "start": format_time(start),
        "end": format_time(end),
        "nodes": graph.nodes.iter().map(|node| json!({
            "name": node.name,
            "kind": node.kind.name(),
            "callCount": node.call_count,
            "errorCount": node.error_count,
        })).collect::<Vec<_>>(),
        "edges": graph.edges.iter().map(|edge| json!({
            "parent": edge.parent,
            "child": edge.child,
            "callCount": edge.call_count,
            "errorCount": edge.error_count,
            "p50Nanos": edge.p50_nanos,
            "p95Nanos": edge.p95_nanos,
            "p99Nanos": edge.p99_nanos,
        })).collect::<Vec<_>>(),
        "spans": graph.spans,
        "unpaired": {"children": graph.unpaired_children, "clients": graph.unpaired_clients},
        "warnings": warnings,
    })))
}

/// `GET /api/v1/traces/attributes?service=&start=&end=&values=`: the attribute names trace
/// search can ask for, with their top values (default: the last 24 hours, all services).
async fn attributes(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = Params::parse(raw.as_deref());
    let (start, end) = range_or_last_day(&params)?;
    let values = params.u64(&["values"])?.unwrap_or(10).clamp(1, 100) as usize;
    let service = params.get(&["service"]).map(str::to_owned);
    let spans = state.spans.clone();
    let fields = blocking(move || {
        crate::engine::traces::attributes(&spans, service.as_deref(), start, end, values)
            .map_err(ApiError::from)
    })
    .await?;
    let data: Vec<_> = fields.iter().map(FieldInfo::to_json).collect();
    Ok(Json(json!({ "data": data })))
}

/// `start` and `end` (RFC 3339 or unix nanoseconds); by default the 24 hours before now.
fn range_or_last_day(params: &Params) -> Result<(u64, u64), ApiError> {
    let end = params
        .time_nanos(&["end"])?
        .unwrap_or_else(super::params::now_nanos);
    let start = params
        .time_nanos(&["start"])?
        .unwrap_or_else(|| end.saturating_sub(DEFAULT_DEPENDENCY_WINDOW_NANOS));
    Ok((start, end))
}

/// The most traces one page may ask for.
const MAX_LIMIT: usize = 1000;

/// Trace search: summaries of the matching traces, newest first, with a cursor to the next page.
async fn search(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = Params::parse(raw.as_deref());
    let mut attributes = Vec::new();
    for tag in params.all("tag") {
        let (key, value) = tag
            .split_once('=')
            .or_else(|| tag.split_once(':'))
            .ok_or_else(|| ApiError::bad_request(format!("tag {tag:?}: expected key=value")))?;
        attributes.push((key.to_owned(), value.to_owned()));
    }
    let after = params
        .get(&["cursor"])
        .map(|cursor| {
            TraceKey::from_cursor(cursor)
                .ok_or_else(|| ApiError::bad_request(format!("malformed cursor {cursor:?}")))
        })
        .transpose()?;
    let query = TraceQuery {
        service: params.get(&["service"]).map(str::to_owned),
        operation: params.get(&["operation"]).map(str::to_owned),
        attributes,
        query: params.get(&["query", "q"]).map(str::to_owned),
        min_span_duration_nanos: params.duration_nanos(&["minDuration"])?,
        max_span_duration_nanos: params.duration_nanos(&["maxDuration"])?,
        min_trace_duration_nanos: params.duration_nanos(&["minTraceDuration"])?,
        max_trace_duration_nanos: params.duration_nanos(&["maxTraceDuration"])?,
        parent_service: params.get(&["parentService"]).map(str::to_owned),
        errors_only: params.bool(&["error", "errors"])?,
        start_unix_nanos: params.time_nanos(&["start"])?,
        end_unix_nanos: params.time_nanos(&["end"])?,
        limit: params
            .u64(&["limit"])?
            .map_or(20, |l| (l as usize).clamp(1, MAX_LIMIT)),
        after,
    };
    let spans = state.spans.clone();
    let page = blocking(move || Ok(search_traces(&spans, &query)?)).await?;
    Ok(Json(json!({
        "traces": page.traces.iter().map(|(summary, _)| summary_json(summary)).collect::<Vec<_>>(),
        "nextCursor": page.next.map(TraceKey::to_cursor),
        "warnings": page.warnings,
    })))
}

/// A trace summary in the native API (the field names of Jaeger's api_v3 trace summaries).
pub fn summary_json(summary: &TraceSummary) -> serde_json::Value {
    json!({
        "traceId": summary.trace_id.to_string(),
        "rootServiceName": summary.root_service,
        "rootOperationName": summary.root_operation,
        "startTime": format_time(summary.start_unix_nanos),
        "minStartTimeUnixNano": summary.start_unix_nanos.to_string(),
        "maxEndTimeUnixNano": summary.end_unix_nanos.to_string(),
        "durationNanos": summary.duration_nanos(),
        "spanCount": summary.span_count,
        "errorSpanCount": summary.error_count,
        "orphanSpanCount": summary.orphan_count,
        "services": summary.services.iter().map(|(name, spans, errors)| json!({
            "name": name, "spanCount": spans, "errorSpanCount": errors,
        })).collect::<Vec<_>>(),
    })
}

/// Groups records into `ResourceSpans`, keeping each group in the order of its first span.
pub fn group_by_resource_and_scope(records: Vec<SpanRecord>) -> Vec<ResourceSpans> {
    let mut groups: Vec<ResourceSpans> = Vec::new();
    for record in records {
        let resource = Some(record.resource);
        let scope = Some(record.scope);
        let group = match groups
            .iter_mut()
            .position(|g| g.resource == resource && g.schema_url == record.resource_schema_url)
        {
            Some(index) => &mut groups[index],
            None => {
                groups.push(ResourceSpans {
                    resource,
                    scope_spans: Vec::new(),
                    schema_url: record.resource_schema_url,
                });
                groups.last_mut().expect("just pushed")
            }
        };
        match group
            .scope_spans
            .iter_mut()
            .find(|s| s.scope == scope && s.schema_url == record.scope_schema_url)
        {
            Some(scope_spans) => scope_spans.spans.push(record.span),
            None => group.scope_spans.push(ScopeSpans {
                scope,
                spans: vec![record.span],
                schema_url: record.scope_schema_url,
            }),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_is_valid_json_and_lists_the_served_paths() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in [
            "/api/v1/traces/{traceId}",
            "/api/v1/traces",
            "/api/v1/traces/{traceId}/analysis",
            "/api/v1/traces/compare",
            "/api/v1/dependencies",
            "/api/dependencies",
            "/api/metrics/{metric}",
            "/api/traces",
            "/api/v3/services",
            "/api/v3/operations",
            "/api/v3/traces",
            "/api/v3/traces/{traceId}",
            "/api/v3/trace-summaries",
            "/api/services",
            "/api/services/{service}/operations",
            "/api/operations",
            "/api/traces/{traceId}",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(
                doc["paths"].get(path).is_some(),
                "{path} missing from openapi.json"
            );
        }
    }

    #[test]
    fn records_group_by_resource_then_scope() {
        let record = |service: &str, scope: &str, id: u8| {
            let mut record = SpanRecord::default();
            record
                .resource
                .attributes
                .push(sightline_proto::otlp::common::v1::KeyValue {
                    key: "service.name".into(),
                    value: Some(sightline_proto::otlp::common::v1::AnyValue {
                        value: Some(
                            sightline_proto::otlp::common::v1::any_value::Value::StringValue(
                                service.into(),
                            ),
                        ),
                    }),
                    ..Default::default()
                });
            record.scope.name = scope.into();
            record.span.span_id = vec![id; 8];
            record
        };
        let groups = group_by_resource_and_scope(vec![
            record("a", "x", 1),
            record("b", "x", 2),
            record("a", "y", 3),
            record("a", "x", 4),
        ]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].scope_spans.len(), 2);
        assert_eq!(groups[0].scope_spans[0].spans.len(), 2);
        assert_eq!(groups[0].scope_spans[0].spans[1].span_id, vec![4; 8]);
        assert_eq!(groups[1].scope_spans[0].spans[0].span_id, vec![2; 8]);
    }
}
