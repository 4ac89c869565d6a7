//! The Prometheus HTTP API under `/prometheus/api/v1/`, over the metric store: what Grafana's
//! Prometheus data source uses (URL `http://HOST:16686/prometheus`). GET with query parameters
//! and POST with form bodies both work; answers use Prometheus' envelope
//! (`{"status":"success","data":...}` or `{"status":"error","errorType":...,"error":...}`).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;
use serde_json::{json, Map, Value};
use sightline_collector::MetricStore;
use sightline_proto::metric::Labels;

use super::params::{now_nanos, parse_duration_nanos, Params};
use super::AppState;
use crate::promql::{self, Engine, EvalError, Series, Storage};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/prometheus/api/v1/query", get(query).post(query))
        .route(
            "/prometheus/api/v1/query_range",
            get(query_range).post(query_range),
        )
        .route("/prometheus/api/v1/series", get(series).post(series))
        .route("/prometheus/api/v1/labels", get(labels).post(labels))
        .route("/prometheus/api/v1/label/{name}/values", get(label_values))
        .route("/prometheus/api/v1/metadata", get(metadata))
        .route(
            "/prometheus/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/prometheus/api/v1/status/buildinfo", get(buildinfo))
        .route("/prometheus/api/v1/status/tsdb", get(tsdb))
}

/// A failed call, in Prometheus' words.
struct PromError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl PromError {
    fn bad_data(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: message.into(),
        }
    }
}

impl From<EvalError> for PromError {
    fn from(err: EvalError) -> Self {
        Self {
            status: StatusCode::from_u16(err.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind: err.error_type(),
            message: err.message().to_owned(),
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"status": "error", "errorType": self.kind, "error": self.message})),
        )
            .into_response()
    }
}

fn success(data: Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

/// Query parameters and, for POST, the form body, as one set of parameters.
fn params(raw: Option<String>, body: &Bytes) -> Params {
    let mut all = raw.unwrap_or_default();
    if !body.is_empty() {
        if !all.is_empty() {
            all.push('&');
        }
        all.push_str(&String::from_utf8_lossy(body));
    }
    Params::parse(Some(&all))
}

/// A Prometheus time: float Unix seconds or RFC 3339; in milliseconds.
fn time_ms(params: &Params, name: &str) -> Result<Option<i64>, PromError> {
    let Some(text) = params.get(&[name]) else {
        return Ok(None);
    };
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_finite() {
            return Ok(Some((seconds * 1000.0).round() as i64));
        }
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| Some(d.as_millis() as i64))
        .ok_or_else(|| {
            PromError::bad_data(format!(
                "invalid parameter \"{name}\": cannot parse \"{text}\" to a valid timestamp"
            ))
        })
}

fn now_ms() -> i64 {
    (now_nanos() / 1_000_000) as i64
}

/// Evaluates on a blocking thread.
async fn evaluate<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PromError> + Send + 'static,
) -> Result<T, PromError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| PromError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message: format!("query task failed: {err}"),
        })?
}

/// The metric store as the PromQL engine's storage.
struct StoreStorage<'a>(&'a MetricStore);

fn label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn required(matchers: &[Matcher]) -> Vec<(&str, &str)> {
    matchers
        .iter()
        .filter(|m| matches!(m.op, MatchOp::Equal) && !m.value.is_empty())
        .map(|m| (m.name.as_str(), m.value.as_str()))
        .collect()
}

impl Storage for StoreStorage<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, String> {
        let keep = |labels: &Labels| matchers.iter().all(|m| m.is_match(label(labels, &m.name)));
        Ok(self
            .0
            .select(&required(matchers), &keep, start_ms, end_ms)
            .into_iter()
            .map(|(labels, samples)| Series {
                labels: labels.as_ref().clone(),
                samples,
            })
            .collect())
    }
}

async fn query(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let params = params(raw, &body);
    let text = query_param(&params)?;
    let time = time_ms(&params, "time")?.unwrap_or_else(now_ms);
    let engine = engine(&params)?;
    evaluate(move || {
        let value = engine.instant(&StoreStorage(&state.metrics), &text, time)?;
        Ok(success(promql::to_prometheus_json(&value)))
    })
    .await
}

/// The required `query` parameter.
fn query_param(params: &Params) -> Result<String, PromError> {
    params
        .get(&["query"])
        .map(str::to_owned)
        .ok_or_else(|| PromError::bad_data("invalid parameter \"query\": query is empty"))
}

fn engine(params: &Params) -> Result<Engine, PromError> {
    let mut engine = Engine::default();
    if let Some(timeout) = params.get(&["timeout"]) {
        let nanos = parse_duration_nanos(timeout)
            .or_else(|| timeout.parse::<f64>().ok().map(|s| (s * 1e9) as u64))
            .ok_or_else(|| {
                PromError::bad_data(format!("invalid parameter \"timeout\": {timeout:?}"))
            })?;
        engine.timeout = engine.timeout.min(std::time::Duration::from_nanos(nanos));
    }
    Ok(engine)
}

async fn query_range(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let params = params(raw, &body);
    let text = query_param(&params)?;
    let start = time_ms(&params, "start")?
        .ok_or_else(|| PromError::bad_data("invalid parameter \"start\": missing"))?;
    let end = time_ms(&params, "end")?
        .ok_or_else(|| PromError::bad_data("invalid parameter \"end\": missing"))?;
    if end < start {
        return Err(PromError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step_text = params
        .get(&["step"])
        .ok_or_else(|| PromError::bad_data("invalid parameter \"step\": missing"))?;
    let step = step_text
        .parse::<f64>()
        .ok()
        .map(|s| (s * 1000.0).round() as i64)
        .or_else(|| parse_duration_nanos(step_text).map(|n| (n / 1_000_000) as i64))
        .filter(|step| *step > 0)
        .ok_or_else(|| {
            PromError::bad_data(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
            )
        })?;
    if (end - start) / step > 11_000 {
        return Err(PromError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let engine = engine(&params)?;
    evaluate(move || {
        let value = engine.range(&StoreStorage(&state.metrics), &text, start, end, step)?;
        Ok(success(promql::to_prometheus_json(&value)))
    })
    .await
}

/// The matchers of each `match[]` selector.
fn selectors(params: &Params) -> Result<Vec<Vec<Matcher>>, PromError> {
    params
        .all("match[]")
        .map(|text| {
            let expr = promql_parser::parser::parse(text).map_err(|err| {
                PromError::bad_data(format!("invalid parameter \"match[]\": {err}"))
            })?;
            match expr {
                Expr::VectorSelector(selector) => {
                    let mut matchers = selector.matchers.matchers.clone();
                    if let Some(name) = &selector.name {
                        if !matchers.iter().any(|m| m.name == "__name__") {
                            matchers.push(Matcher::new(MatchOp::Equal, "__name__", name));
                        }
                    }
                    Ok(matchers)
                }
                _ => Err(PromError::bad_data(format!(
                    "invalid parameter \"match[]\": {text:?} is not a series selector"
                ))),
            }
        })
        .collect()
}

fn window(params: &Params) -> Result<(i64, i64), PromError> {
    Ok((
        time_ms(params, "start")?.unwrap_or(i64::MIN),
        time_ms(params, "end")?.unwrap_or(i64::MAX),
    ))
}

fn limit(params: &Params) -> Result<usize, PromError> {
    Ok(params
        .get(&["limit"])
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| PromError::bad_data(format!("invalid parameter \"limit\": {l:?}")))
        })
        .transpose()?
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX))
}

/// The label sets of every series matching any of the selectors.
fn matching_series(
    store: &MetricStore,
    selectors: &[Vec<Matcher>],
    start: i64,
    end: i64,
) -> Vec<std::sync::Arc<Labels>> {
    let mut found = Vec::new();
    for matchers in selectors {
        let keep = |labels: &Labels| matchers.iter().all(|m| m.is_match(label(labels, &m.name)));
        found.extend(store.series(&required(matchers), &keep, start, end));
    }
    found.sort();
    found.dedup();
    found
}

fn labels_json(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<String, Value>>(),
    )
}

async fn series(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let params = params(raw, &body);
    let selectors = selectors(&params)?;
    if selectors.is_empty() {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = window(&params)?;
    let limit = limit(&params)?;
    evaluate(move || {
        let found = matching_series(&state.metrics, &selectors, start, end);
        Ok(success(Value::Array(
            found.iter().take(limit).map(|l| labels_json(l)).collect(),
        )))
    })
    .await
}

async fn labels(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let params = params(raw, &body);
    label_answer(
        state,
        &params,
        |store| store.label_names(),
        |labels| labels.iter().map(|(k, _)| k.clone()).collect(),
    )
    .await
}

async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PromError> {
    let params = params(raw, &Bytes::new());
    let all_name = name.clone();
    label_answer(
        state,
        &params,
        move |store| store.label_values(&all_name),
        move |labels| {
            labels
                .iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
                .collect()
        },
    )
    .await
}

/// Label names or values, sorted and deduplicated: from the whole index when no selector and no
/// window narrow them (`all`), else from each matching series (`of_series`).
async fn label_answer(
    state: AppState,
    params: &Params,
    all: impl FnOnce(&MetricStore) -> Vec<String> + Send + 'static,
    of_series: impl Fn(&Labels) -> Vec<String> + Send + 'static,
) -> Result<Response, PromError> {
    let selectors = selectors(params)?;
    let (start, end) = window(params)?;
    let limit = limit(params)?;
    evaluate(move || {
        let mut found = if selectors.is_empty() && start == i64::MIN && end == i64::MAX {
            all(&state.metrics)
        } else {
            let selectors = if selectors.is_empty() {
                vec![Vec::new()]
            } else {
                selectors
            };
            matching_series(&state.metrics, &selectors, start, end)
                .iter()
                .flat_map(|labels| of_series(labels))
                .collect()
        };
        found.sort();
        found.dedup();
        found.truncate(limit);
        Ok(success(json!(found)))
    })
    .await
}

async fn metadata(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PromError> {
    let params = params(raw, &Bytes::new());
    let limit = limit(&params)?;
    let only = params.get(&["metric"]).map(str::to_owned);
    let mut data = Map::new();
    for (name, meta) in state.metrics.metadata() {
        if only.as_ref().is_some_and(|only| *only != name) {
            continue;
        }
        if data.len() == limit {
            break;
        }
        data.insert(
            name,
            json!([{"type": meta.kind, "help": meta.help, "unit": meta.unit}]),
        );
    }
    Ok(success(Value::Object(data)))
}

async fn query_exemplars(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let params = params(raw, &body);
    let text = query_param(&params)?;
    let expr = promql_parser::parser::parse(&text)
        .map_err(|err| PromError::bad_data(format!("invalid parameter \"query\": {err}")))?;
    let mut selectors = Vec::new();
    collect_selectors(&expr, &mut selectors);
    let (start, end) = window(&params)?;
    evaluate(move || {
        let mut data = Vec::new();
        for matchers in selectors {
            let keep =
                |labels: &Labels| matchers.iter().all(|m| m.is_match(label(labels, &m.name)));
            for (labels, exemplars) in
                state
                    .metrics
                    .exemplars(&required(&matchers), &keep, start, end)
            {
                data.push(json!({
                    "seriesLabels": labels_json(&labels),
                    "exemplars": exemplars.iter().map(|e| json!({
                        "labels": labels_json(&e.labels),
                        "value": promql_value(e.value),
                        "timestamp": e.t_ms as f64 / 1000.0,
                    })).collect::<Vec<_>>(),
                }));
            }
        }
        Ok(success(Value::Array(data)))
    })
    .await
}

fn promql_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// Every vector selector of an expression, as matchers (the metric name included).
fn collect_selectors(expr: &Expr, out: &mut Vec<Vec<Matcher>>) {
    match expr {
        Expr::VectorSelector(selector) => {
            let mut matchers = selector.matchers.matchers.clone();
            if let Some(name) = &selector.name {
                matchers.push(Matcher::new(MatchOp::Equal, "__name__", name));
            }
            out.push(matchers);
        }
        Expr::MatrixSelector(matrix) => {
            collect_selectors(&Expr::VectorSelector(matrix.vs.clone()), out)
        }
        Expr::Aggregate(aggregate) => collect_selectors(&aggregate.expr, out),
        Expr::Unary(unary) => collect_selectors(&unary.expr, out),
        Expr::Binary(binary) => {
            collect_selectors(&binary.lhs, out);
            collect_selectors(&binary.rhs, out);
        }
        Expr::Paren(paren) => collect_selectors(&paren.expr, out),
        Expr::Subquery(subquery) => collect_selectors(&subquery.expr, out),
        Expr::Call(call) => {
            for arg in &call.args.args {
                collect_selectors(arg, out);
            }
        }
        _ => {}
    }
}

async fn buildinfo() -> Response {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "application": "sightline",
    }))
}

async fn tsdb(State(state): State<AppState>) -> Response {
    let stats = state.metrics.stats();
    let top = |items: &[(String, usize)]| -> Vec<Value> {
        items
            .iter()
            .take(10)
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect()
    };
    success(json!({
        "headStats": {
            "numSeries": stats.series,
            "numLabelPairs": stats.values_by_label.iter().map(|(_, n)| n).sum::<usize>(),
            "chunkCount": Value::Null,
            "minTime": stats.min_time_ms,
            "maxTime": stats.max_time_ms,
        },
        "seriesCountByMetricName": top(&stats.series_by_metric),
        "labelValueCountByLabelName": top(&stats.values_by_label),
        "memoryInBytesByLabelName": [],
        "seriesCountByLabelValuePair": [],
        "sightline": {
            "samples": stats.samples,
            "chunkBytes": stats.chunk_bytes,
            "seriesBytes": stats.series_bytes,
            "refusedSeries": stats.refused_series,
            "outOfOrderSamples": stats.out_of_order,
            "maxSeries": state.metrics.settings().max_series,
            "maxSeriesPerMetric": state.metrics.settings().max_series_per_metric,
        },
    }))
}
