//! The log API under `/api/v1/logs`: search, volume histogram, live tail (Server-Sent Events),
//! field discovery, and every log of a trace at `/api/v1/traces/{traceId}/logs`.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use serde_json::{json, Map, Value};
use sightline_proto::log::{severity_bucket, LogRecord};
use sightline_proto::otlp::common::v1::KeyValue;
use sightline_proto::otlp_json::plain_json;
use sightline_proto::TraceId;
use tantivy::query::Query;
use tokio::sync::mpsc;
use tracing::warn;

use super::params::{format_time, now_nanos, parse_trace_id, Params};
use super::{blocking, ApiError, AppState};
use crate::engine::fields::FieldInfo;
use crate::engine::logs::{
    self, correlation_ids, log_query, trace_for_correlation, LogHit, LogKey, LogSearchError,
};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;
/// Events a tail client may be behind before it is cut off.
const TAIL_BUFFER: usize = 1_024;
/// Records a tail reads per search.
const TAIL_BATCH: usize = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/logs", get(search))
        .route("/api/v1/logs/histogram", get(histogram))
        .route("/api/v1/logs/tail", get(tail))
        .route("/api/v1/logs/fields", get(fields))
        .route("/api/v1/traces/{trace_id}/logs", get(trace_logs))
}

impl From<LogSearchError> for ApiError {
    fn from(err: LogSearchError) -> Self {
        match err {
            LogSearchError::InvalidQuery(_) => ApiError::bad_request(err.to_string()),
            LogSearchError::Index(
                tantivy::TantivyError::InvalidArgument(message)
                | tantivy::TantivyError::SchemaError(message),
            ) => ApiError::bad_request(format!("invalid query: {message}")),
            other => {
                tracing::error!(error = %other, "log query failed");
                ApiError::internal()
            }
        }
    }
}

/// The query, start and end parameters as one tantivy query.
fn query_of(state: &AppState, params: &Params) -> Result<Box<dyn Query>, ApiError> {
    let start = params.time_nanos(&["start"])?;
    let end = params.time_nanos(&["end"])?;
    if let (Some(start), Some(end)) = (start, end) {
        if start > end {
            return Err(ApiError::bad_request("start is after end"));
        }
    }
    Ok(log_query(
        &state.logs,
        params.get(&["query", "q"]),
        start,
        end,
    )?)
}

/// `GET /api/v1/logs`: the newest records matching the query, with a cursor to the next page.
async fn search(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(raw.as_deref());
    let limit = params
        .u64(&["limit"])?
        .map_or(DEFAULT_LIMIT, |l| l as usize)
        .clamp(1, MAX_LIMIT);
    let before = params
        .get(&["cursor"])
        .map(|cursor| {
            LogKey::from_cursor(cursor)
                .ok_or_else(|| ApiError::bad_request(format!("malformed cursor {cursor:?}")))
        })
        .transpose()?;
    blocking(move || {
        let query = query_of(&state, &params)?;
        let page = logs::search(&state.logs, query.as_ref(), limit, before)?;
        let links = TraceLinks::new(&state);
        let data: Vec<Value> = page.hits.iter().map(|hit| links.log_json(hit)).collect();
        Ok(Json(json!({
            "data": data,
            "nextCursor": page.next.map(LogKey::to_cursor),
        })))
    })
    .await
}

/// `GET /api/v1/logs/histogram`: counts per time bucket, by severity. `interval` is a Go
/// duration; by default the window is split into about 60 buckets.
async fn histogram(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(raw.as_deref());
    let end = params.time_nanos(&["end"])?.unwrap_or_else(now_nanos);
    let start = params
        .time_nanos(&["start"])?
        .unwrap_or(end.saturating_sub(3_600_000_000_000));
    if start > end {
        return Err(ApiError::bad_request("start is after end"));
    }
    let interval = match params.duration_nanos(&["interval"])? {
        Some(0) => return Err(ApiError::bad_request("interval must be positive")),
        Some(interval) => interval,
        None => ((end - start) / 60).max(1_000_000_000),
    };
    if (end - start) / interval > 10_000 {
        return Err(ApiError::bad_request(
            "more than 10000 buckets: use a longer interval",
        ));
    }
    blocking(move || {
        let query = query_of(&state, &params)?;
        let histogram = logs::histogram(&state.logs, query.as_ref(), start, end, interval)?;
        let buckets: Vec<Value> = histogram
            .buckets
            .iter()
            .map(|(start, count, by_severity)| {
                json!({
                    "start": format_time(*start),
                    "startUnixNano": start.to_string(),
                    "count": count,
                    "bySeverity": by_severity,
                })
            })
            .collect();
        Ok(Json(json!({
            "intervalNanos": histogram.interval_nanos.to_string(),
            "buckets": buckets,
        })))
    })
    .await
}

/// `GET /api/v1/logs/tail`: Server-Sent Events, one `log` event per new matching record, from
/// the moment of the call (or after the record id `after`). A client that falls behind by more
/// than the buffer gets an `end` event saying so and is disconnected; ingest never waits.
async fn tail(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let params = Params::parse(raw.as_deref());
    let after = params.u64(&["after"])?;
    let (query, start_id) = {
        let state = state.clone();
        blocking(move || {
            let query = query_of(&state, &params)?;
            let start_id = match after {
                Some(after) => after,
                None => logs::last_id(&state.logs)?,
            };
            Ok((query, start_id))
        })
        .await?
    };
    let (tx, rx) = mpsc::channel::<Event>(TAIL_BUFFER);
    tokio::spawn(run_tail(state, query, start_id, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn run_tail(
    state: AppState,
    query: Box<dyn Query>,
    mut last_id: u64,
    tx: mpsc::Sender<Event>,
) {
    let mut commits = state.log_commits.clone();
    let query: std::sync::Arc<dyn Query> = std::sync::Arc::from(query);
    loop {
        // Drain everything committed so far, then wait for the next commit.
        loop {
            let (logs_store, query_ref) = (state.logs.clone(), query.clone());
            let from = last_id;
            let hits = tokio::task::spawn_blocking(move || {
                logs::after_id(&logs_store, query_ref.as_ref(), from, TAIL_BATCH)
            })
            .await;
            let hits = match hits {
                Ok(Ok(hits)) => hits,
                Ok(Err(err)) => {
                    warn!(error = %err, "live tail query failed");
                    let _ = tx.try_send(end_event("the tail query failed: see the server log"));
                    return;
                }
                Err(_) => return,
            };
            let links = TraceLinks::new(&state);
            let batch_len = hits.len();
            for hit in &hits {
                if tx.capacity() <= 1 {
                    let _ = tx.try_send(end_event(
                        "cut off: this client reads more slowly than matching logs arrive; narrow the query or reconnect with after=<last id>",
                    ));
                    return;
                }
                let event = Event::default()
                    .event("log")
                    .id(hit.key.id.to_string())
                    .json_data(links.log_json(hit))
                    .unwrap_or_else(|_| Event::default().event("log"));
                if tx.try_send(event).is_err() {
                    return;
                }
                last_id = last_id.max(hit.key.id);
            }
            if batch_len < TAIL_BATCH {
                break;
            }
        }
        tokio::select! {
            changed = commits.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
        }
    }
}

fn end_event(message: &str) -> Event {
    Event::default()
        .event("end")
        .json_data(json!({ "message": message }))
        .unwrap_or_else(|_| Event::default().event("end"))
}

/// Records the field list's top values are counted from, by default and at most.
const FIELDS_SAMPLE: usize = 10_000;
const MAX_FIELDS_SAMPLE: usize = 1_000_000;

/// `GET /api/v1/logs/fields`: field names (as queries name them) with their type and top
/// values among the newest `sample` records matching the query (by default, of the last 24
/// hours).
async fn fields(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut params = Params::parse(raw.as_deref());
    if params.get(&["start"]).is_none() {
        let start = now_nanos().saturating_sub(24 * 3_600_000_000_000);
        params = Params::parse(Some(&format!("{}&start={start}", raw.unwrap_or_default())));
    }
    let values = params.u64(&["values"])?.unwrap_or(10).clamp(1, 100) as usize;
    let sample = params
        .u64(&["sample"])?
        .unwrap_or(FIELDS_SAMPLE as u64)
        .clamp(1, MAX_FIELDS_SAMPLE as u64) as usize;
    blocking(move || {
        let query = query_of(&state, &params)?;
        let (fields, sampled) = logs::fields(&state.logs, query.as_ref(), values, sample)?;
        let data: Vec<Value> = fields.iter().map(FieldInfo::to_json).collect();
        Ok(Json(json!({ "data": data, "sampledRecords": sampled })))
    })
    .await
}

/// `GET /api/v1/traces/{traceId}/logs`: every log of a trace in time order: those with its
/// trace id, and those without one that carry a correlation id found on the trace's spans.
async fn trace_logs(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let trace_id = parse_trace_id(&trace_id)?;
    blocking(move || {
        let spans = state.spans.get_trace(trace_id)?;
        let keys = &state.logs.settings().correlation_keys;
        let correlation: BTreeSet<String> = spans
            .iter()
            .flat_map(|span| {
                keys.iter().filter_map(|key| {
                    string_value(&span.span.attributes, key)
                        .or_else(|| string_value(&span.resource.attributes, key))
                })
            })
            .collect();
        let (hits, truncated) = logs::trace_logs(&state.logs, trace_id, &correlation)?;
        let links = TraceLinks::new(&state);
        let data: Vec<Value> = hits.iter().map(|hit| links.log_json(hit)).collect();
        let mut warnings = Vec::new();
        if truncated {
            warnings.push(format!(
                "only the first {} logs of this trace are returned",
                logs::MAX_TRACE_LOGS
            ));
        }
        Ok(Json(json!({
            "traceId": trace_id.to_string(),
            "correlationIds": correlation,
            "data": data,
            "warnings": warnings,
        })))
    })
    .await
}

fn string_value(attributes: &[KeyValue], key: &str) -> Option<String> {
    sightline_proto::span::string_attribute(attributes, key).map(str::to_owned)
}

/// Turns records into their JSON, linking each to its trace; a record without a trace id is
/// linked through its correlation id to the trace whose spans carry it (looked up once per id).
struct TraceLinks<'a> {
    state: &'a AppState,
    by_correlation: std::cell::RefCell<HashMap<String, Option<TraceId>>>,
}

impl<'a> TraceLinks<'a> {
    fn new(state: &'a AppState) -> Self {
        Self {
            state,
            by_correlation: Default::default(),
        }
    }

    fn linked_trace(&self, correlation: &[(String, String)]) -> Option<(TraceId, String)> {
        let keys = &self.state.logs.settings().correlation_keys;
        for (key, value) in correlation {
            let mut cache = self.by_correlation.borrow_mut();
            let found = cache.entry(value.clone()).or_insert_with(|| {
                trace_for_correlation(&self.state.spans, keys, value).unwrap_or_else(|err| {
                    warn!(error = %err, "correlation lookup failed");
                    None
                })
            });
            if let Some(trace_id) = found {
                return Some((*trace_id, key.clone()));
            }
        }
        None
    }

    fn log_json(&self, hit: &LogHit) -> Value {
        let LogRecord {
            resource,
            scope,
            record,
            ..
        } = &hit.record;
        let correlation = correlation_ids(&self.state.logs, &hit.record);
        let trace_id = hit.record.trace_id();
        let span_id = hit.record.span_id();
        let mut links = Map::new();
        let (linked, linked_by) = match trace_id {
            Some(trace_id) => (Some(trace_id), None),
            None => match self.linked_trace(&correlation) {
                Some((trace_id, key)) => (Some(trace_id), Some(key)),
                None => (None, None),
            },
        };
        if let Some(trace_id) = linked {
            links.insert("trace".into(), json!(format!("/api/v1/traces/{trace_id}")));
            let ui = match span_id {
                Some(span_id) => format!("/trace/{trace_id}?uiFind={span_id}"),
                None => format!("/trace/{trace_id}"),
            };
            links.insert("ui".into(), json!(ui));
            if let Some(key) = linked_by {
                links.insert("linkedBy".into(), json!(key));
            }
        }
        json!({
            "id": hit.key.id.to_string(),
            "cursor": hit.key.to_cursor(),
            "time": format_time(hit.key.time_unix_nanos),
            "timeUnixNano": record.time_unix_nano.to_string(),
            "observedTimeUnixNano": record.observed_time_unix_nano.to_string(),
            "severity": severity_bucket(record.severity_number),
            "severityText": record.severity_text,
            "severityNumber": record.severity_number,
            "service": hit.record.service_name(),
            "body": record.body.as_ref().and_then(|b| b.value.as_ref()).map_or(Value::Null, plain_json),
            "attributes": plain_object(&record.attributes),
            "resource": plain_object(&resource.attributes),
            "scope": {"name": scope.name, "version": scope.version},
            "traceId": trace_id.map(|id| id.to_string()),
            "spanId": span_id.map(|id| id.to_string()),
            "flags": record.flags,
            "eventName": record.event_name,
            "correlationIds": correlation
                .into_iter()
                .map(|(key, value)| (key, Value::String(value)))
                .collect::<Map<String, Value>>(),
            "links": links,
        })
    }
}

fn plain_object(attributes: &[KeyValue]) -> Value {
    Value::Object(
        attributes
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .map_or(Value::Null, plain_json),
                )
            })
            .collect(),
    )
}
