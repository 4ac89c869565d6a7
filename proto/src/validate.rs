//! Per-record validation of OTLP export requests.
//!
//! An invalid record (a wrong-length or all-zero id, an end before its start, ...) is removed from
//! the request and counted, with a message naming each distinct reason, while every valid record
//! of the same request is kept. This is what OTLP's partial success reports to the client.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;

use crate::{SpanId, TraceId};

/// What validation removed from a request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// How many records were removed.
    pub count: u64,
    /// Each distinct reason with how many records it removed, in a stable order.
    reasons: BTreeMap<String, u64>,
}

impl Rejected {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn add(&mut self, reason: String) {
        self.count += 1;
        *self.reasons.entry(reason).or_default() += 1;
    }

    /// The partial-success message, e.g. `3 spans rejected: 2 x trace_id must be 16 bytes, got 8;
    /// 1 x end_time_unix_nano is before start_time_unix_nano`. `None` when nothing was rejected.
    pub fn message(&self, records: &str) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, count)| format!("{count} x {reason}"))
            .collect();
        Some(format!(
            "{} {records} rejected: {}",
            self.count,
            reasons.join("; ")
        ))
    }
}

/// Removes the invalid spans of `request` (and the scopes and resources left empty), and says
/// what was removed. All-zero parent span ids are normalised to "no parent", as some SDKs send
/// them for root spans.
pub fn validate_trace_request(request: &mut ExportTraceServiceRequest) -> Rejected {
    let mut rejected = Rejected::default();
    for resource_spans in &mut request.resource_spans {
        for scope_spans in &mut resource_spans.scope_spans {
            scope_spans.spans.retain_mut(|span| match check_span(span) {
                Ok(()) => true,
                Err(reason) => {
                    rejected.add(reason);
                    false
                }
            });
        }
        resource_spans
            .scope_spans
            .retain(|scope_spans| !scope_spans.spans.is_empty());
    }
    request
        .resource_spans
        .retain(|resource_spans| !resource_spans.scope_spans.is_empty());
    rejected
}

/// The number of spans in a request.
pub fn count_spans(request: &ExportTraceServiceRequest) -> u64 {
    request
        .resource_spans
        .iter()
        .flat_map(|resource_spans| &resource_spans.scope_spans)
        .map(|scope_spans| scope_spans.spans.len() as u64)
        .sum()
}

fn check_span(span: &mut OtlpSpan) -> Result<(), String> {
    TraceId::try_from(span.trace_id.as_slice()).map_err(|err| err.to_string())?;
    SpanId::try_from(span.span_id.as_slice()).map_err(|err| err.to_string())?;
    if !span.parent_span_id.is_empty() {
        if span.parent_span_id.len() == SpanId::LEN && span.parent_span_id.iter().all(|b| *b == 0) {
            span.parent_span_id.clear();
        } else {
            SpanId::try_from(span.parent_span_id.as_slice())
                .map_err(|err| format!("parent_{err}"))?;
        }
    }
    if span.start_time_unix_nano == 0 {
        return Err("start_time_unix_nano must be set".to_owned());
    }
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err("end_time_unix_nano is before start_time_unix_nano".to_owned());
    }
    for link in &span.links {
        TraceId::try_from(link.trace_id.as_slice()).map_err(|err| format!("link {err}"))?;
        SpanId::try_from(link.span_id.as_slice()).map_err(|err| format!("link {err}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    fn span(trace_id: Vec<u8>, start: u64, end: u64) -> OtlpSpan {
        OtlpSpan {
            trace_id,
            span_id: vec![7; 8],
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            ..Default::default()
        }
    }

    fn request(spans: Vec<OtlpSpan>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn invalid_spans_are_removed_one_by_one_and_counted() {
        let mut request = request(vec![
            span(vec![1; 16], 10, 20),
            span(vec![1; 8], 10, 20),
            span(vec![0; 16], 10, 20),
            span(vec![1; 16], 30, 20),
            span(vec![1; 8], 10, 20),
        ]);
        let rejected = validate_trace_request(&mut request);
        assert_eq!(rejected.count, 4);
        assert_eq!(count_spans(&request), 1);
        assert_eq!(
            rejected.message("spans").unwrap(),
            "4 spans rejected: 1 x end_time_unix_nano is before start_time_unix_nano; \
             2 x trace_id must be 16 bytes, got 8; 1 x trace_id must not be all zeros"
        );
    }

    #[test]
    fn fully_valid_request_rejects_nothing() {
        let mut request = request(vec![span(vec![1; 16], 10, 10)]);
        let rejected = validate_trace_request(&mut request);
        assert!(rejected.is_empty());
        assert_eq!(rejected.message("spans"), None);
        assert_eq!(count_spans(&request), 1);
    }

    #[test]
    fn all_zero_parent_means_root_and_empty_resources_are_dropped() {
        let mut zero_parent = span(vec![1; 16], 10, 20);
        zero_parent.parent_span_id = vec![0; 8];
        let mut request = request(vec![zero_parent]);
        request.resource_spans.push(ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span(vec![], 1, 2)],
                ..Default::default()
            }],
            ..Default::default()
        });
        let rejected = validate_trace_request(&mut request);
        assert_eq!(rejected.count, 1);
        assert_eq!(request.resource_spans.len(), 1);
        assert!(request.resource_spans[0].scope_spans[0].spans[0]
            .parent_span_id
            .is_empty());
    }
}
