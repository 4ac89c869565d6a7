//! The OTLP receivers: gRPC ([`grpc`]) and HTTP ([`http`]). Both decode their requests and hand
//! them to the same [`crate::pipeline::Ingester`].

pub mod grpc;
pub mod http;

/// Limits that apply to every export request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Maximum size of a request body, checked on the compressed body and again on the
    /// decompressed one, so a small gzip body cannot inflate without bound.
    pub max_request_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 16 << 20,
        }
    }
}
