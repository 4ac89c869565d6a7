//! OTLP over HTTP: `POST /v1/traces`, `/v1/logs`, `/v1/metrics`, protobuf and JSON bodies,
//! `Content-Encoding` gzip and zstd, answers in the request's encoding.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use sightline_proto::otlp_json;
use sightline_proto::validate::Rejected;

use super::RequestLimits;
use crate::error::{IngestError, RETRY_AFTER as RETRY_DELAY};
use crate::pipeline::{Ingester, Signal, Transport};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// `google.rpc.Status`, the body of an OTLP/HTTP error answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The body encoding of a request, and so of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => PROTOBUF,
            Format::Json => JSON,
        }
    }
}

#[derive(Clone)]
struct HttpState {
    ingester: Ingester,
    limits: RequestLimits,
}

/// The OTLP/HTTP routes.
pub fn router(ingester: Ingester, limits: RequestLimits) -> Router {
    Router::new()
        .route("/v1/traces", post(export_traces))
        .route("/v1/logs", post(export_logs))
        .route("/v1/metrics", post(export_metrics))
        .with_state(HttpState { ingester, limits })
}

async fn export_traces(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    export(&state, &headers, body, Signal::Traces).await
}

async fn export_logs(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    export(&state, &headers, body, Signal::Logs).await
}

/// Reads, decodes and ingests one export request of `signal`, and answers it.
async fn export(state: &HttpState, headers: &HeaderMap, body: Body, signal: Signal) -> Response {
    let format = match request_format(headers) {
        Ok(format) => format,
        Err(err) => return refuse(state, signal.label(), Format::Json, err),
    };
    let limit = state.limits.max_request_bytes;
    let result = async {
        let body = read_body(body, limit).await?;
        let encoding = content_encoding(headers)?;
        let bytes = tokio::task::spawn_blocking(move || decompress(&body, encoding, limit))
            .await
            .map_err(|err| IngestError::Unavailable(format!("decoding task failed: {err}")))??;
        let len = bytes.len();
        let malformed = |err: &dyn std::fmt::Display| IngestError::Malformed(err.to_string());
        match signal {
            Signal::Traces => {
                let request = match format {
                    Format::Protobuf => ExportTraceServiceRequest::decode(bytes.as_slice())
                        .map_err(|err| malformed(&err))?,
                    Format::Json => {
                        otlp_json::decode_trace_request(&bytes).map_err(|err| malformed(&err))?
                    }
                };
                state
                    .ingester
                    .export_traces(request, len, Transport::Http)
                    .await
            }
            Signal::Logs => {
                let request = match format {
                    Format::Protobuf => ExportLogsServiceRequest::decode(bytes.as_slice())
                        .map_err(|err| malformed(&err))?,
                    Format::Json => {
                        otlp_json::decode_logs_request(&bytes).map_err(|err| malformed(&err))?
                    }
                };
                state
                    .ingester
                    .export_logs(request, len, Transport::Http)
                    .await
            }
            Signal::Metrics => {
                let request = match format {
                    Format::Protobuf => ExportMetricsServiceRequest::decode(bytes.as_slice())
                        .map_err(|err| malformed(&err))?,
                    Format::Json => {
                        otlp_json::decode_metrics_request(&bytes).map_err(|err| malformed(&err))?
                    }
                };
                state
                    .ingester
                    .export_metrics(request, len, Transport::Http)
                    .await
            }
        }
    }
    .await;
    match result {
        Ok(rejected) => encode_response(format, signal, &rejected),
        Err(err) => refuse(state, signal.label(), format, err),
    }
}

async fn export_metrics(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(&state, &headers, body, Signal::Metrics).await
}

fn request_format(headers: &HeaderMap) -> Result<Format, IngestError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case(PROTOBUF) {
        Ok(Format::Protobuf)
    } else if media_type.eq_ignore_ascii_case(JSON) {
        Ok(Format::Json)
    } else {
        Err(IngestError::UnsupportedMediaType(content_type.to_owned()))
    }
}

#[derive(Debug, Clone, Copy)]
enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

fn content_encoding(headers: &HeaderMap) -> Result<Encoding, IngestError> {
    let value = headers
        .get(CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .trim();
    match value.to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "zstd" => Ok(Encoding::Zstd),
        _ => Err(IngestError::UnsupportedEncoding(value.to_owned())),
    }
}

/// Reads the body, refusing it as soon as it grows over `limit`.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, IngestError> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|err| IngestError::Malformed(format!("failed to read the body: {err}")))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(IngestError::TooLarge {
                    limit_bytes: limit,
                    detail: String::new(),
                });
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(bytes))
}

/// Decompresses `body`, refusing it once the output passes `limit` (a decompression bomb stops
/// there, having used at most `limit` bytes).
fn decompress(body: &Bytes, encoding: Encoding, limit: usize) -> Result<Vec<u8>, IngestError> {
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => return Ok(body.to_vec()),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body.as_ref())),
        Encoding::Zstd => Box::new(
            zstd::stream::read::Decoder::new(body.as_ref())
                .map_err(|err| IngestError::Malformed(format!("invalid zstd body: {err}")))?,
        ),
    };
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|err| {
            IngestError::Malformed(format!("invalid {encoding:?} body: {err}").to_lowercase())
        })?;
    if out.len() > limit {
        return Err(IngestError::TooLarge {
            limit_bytes: limit,
            detail: " once decompressed".into(),
        });
    }
    Ok(out)
}

/// The export answer, with OTLP's partial success when records were rejected.
fn encode_response(format: Format, signal: Signal, rejected: &Rejected) -> Response {
    let (records, json_key) = match signal {
        Signal::Traces => ("spans", "rejectedSpans"),
        Signal::Logs => ("log records", "rejectedLogRecords"),
        Signal::Metrics => ("data points", "rejectedDataPoints"),
    };
    let partial = rejected
        .message(records)
        .map(|message| (rejected.count as i64, message));
    let body = match format {
        Format::Protobuf => match signal {
            Signal::Traces => ExportTraceServiceResponse {
                partial_success: partial.map(|(count, error_message)| ExportTracePartialSuccess {
                    rejected_spans: count,
                    error_message,
                }),
            }
            .encode_to_vec(),
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: partial.map(|(count, error_message)| ExportLogsPartialSuccess {
                    rejected_log_records: count,
                    error_message,
                }),
            }
            .encode_to_vec(),
            Signal::Metrics => ExportMetricsServiceResponse {
                partial_success: partial.map(|(count, error_message)| {
                    ExportMetricsPartialSuccess {
                        rejected_data_points: count,
                        error_message,
                    }
                }),
            }
            .encode_to_vec(),
        },
        Format::Json => otlp_json::encode_export_response(
            partial
                .as_ref()
                .map(|(count, message)| (json_key, *count, message.as_str())),
        ),
    };
    ([(CONTENT_TYPE, format.content_type())], body).into_response()
}

/// The answer to a refused request: its HTTP status, a `google.rpc.Status` body in the request's
/// encoding, and `Retry-After` when the client should retry.
fn refuse(state: &HttpState, signal: &str, format: Format, err: IngestError) -> Response {
    state.ingester.record_refusal(signal, Transport::Http, &err);
    let status = RpcStatus {
        code: err.grpc_code(),
        message: err.to_string(),
    };
    let body = match format {
        Format::Protobuf => status.encode_to_vec(),
        Format::Json => serde_json::to_vec(&serde_json::json!({
            "code": status.code,
            "message": status.message,
        }))
        .unwrap_or_default(),
    };
    let mut response = (
        err.http_status(),
        [(CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response();
    if err.is_retryable() {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(RETRY_DELAY.as_secs()));
    }
    response
}
