//! OTLP over gRPC: `TraceService/Export`, `LogsService/Export` and `MetricsService/Export`.

use std::future::Future;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tower::util::MapResponseLayer;

use super::RequestLimits;
use crate::pipeline::{Ingester, Transport};

/// The gRPC status codes as numbers, as they travel in the `grpc-status` header.
const GRPC_OUT_OF_RANGE: &str = "11";
const GRPC_RESOURCE_EXHAUSTED: &str = "8";

struct TraceReceiver {
    ingester: Ingester,
}

#[tonic::async_trait]
impl TraceService for TraceReceiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let request = request.into_inner();
        let encoded_bytes = request.encoded_len();
        let rejected = self
            .ingester
            .export_traces(request, encoded_bytes, Transport::Grpc)
            .await
            .map_err(|err| {
                self.ingester
                    .record_refusal("traces", Transport::Grpc, &err);
                err.to_grpc_status()
            })?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: rejected.message("spans").map(|error_message| {
                ExportTracePartialSuccess {
                    rejected_spans: rejected.count as i64,
                    error_message,
                }
            }),
        }))
    }
}

struct LogsReceiver {
    ingester: Ingester,
}

#[tonic::async_trait]
impl LogsService for LogsReceiver {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let request = request.into_inner();
        let encoded_bytes = request.encoded_len();
        let rejected = self
            .ingester
            .export_logs(request, encoded_bytes, Transport::Grpc)
            .await
            .map_err(|err| {
                self.ingester.record_refusal("logs", Transport::Grpc, &err);
                err.to_grpc_status()
            })?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: rejected.message("log records").map(|error_message| {
                ExportLogsPartialSuccess {
                    rejected_log_records: rejected.count as i64,
                    error_message,
                }
            }),
        }))
    }
}

struct MetricsReceiver {
    ingester: Ingester,
}

#[tonic::async_trait]
impl MetricsService for MetricsReceiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let request = request.into_inner();
        let encoded_bytes = request.encoded_len();
        let rejected = self
            .ingester
            .export_metrics(request, encoded_bytes, Transport::Grpc)
            .await
            .map_err(|err| {
                self.ingester
                    .record_refusal("metrics", Transport::Grpc, &err);
                err.to_grpc_status()
            })?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: rejected.message("data points").map(|error_message| {
                ExportMetricsPartialSuccess {
                    rejected_data_points: rejected.count as i64,
                    error_message,
                }
            }),
        }))
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    ingester: Ingester,
    limits: RequestLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let max = limits.max_request_bytes;
    let traces = TraceServiceServer::new(TraceReceiver {
        ingester: ingester.clone(),
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .accept_compressed(CompressionEncoding::Zstd)
    .send_compressed(CompressionEncoding::Gzip)
    .max_decoding_message_size(max);
    let logs = LogsServiceServer::new(LogsReceiver {
        ingester: ingester.clone(),
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .accept_compressed(CompressionEncoding::Zstd)
    .send_compressed(CompressionEncoding::Gzip)
    .max_decoding_message_size(max);
    let metrics = MetricsServiceServer::new(MetricsReceiver { ingester })
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(max);
    tonic::transport::Server::builder()
        .layer(MapResponseLayer::new(too_large_is_resource_exhausted))
        .add_service(traces)
        .add_service(logs)
        .add_service(metrics)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

/// tonic refuses a message whose (compressed) length is over the limit with OUT_OF_RANGE, a code
/// OTLP clients retry forever. Our services never answer OUT_OF_RANGE themselves, so every
/// OUT_OF_RANGE here is that refusal: answer RESOURCE_EXHAUSTED without RetryInfo instead, as
/// tonic already does when the decompressed size is over the limit.
fn too_large_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    if headers
        .get("grpc-status")
        .is_some_and(|status| status == GRPC_OUT_OF_RANGE)
    {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from_static(GRPC_RESOURCE_EXHAUSTED),
        );
    }
    response
}
