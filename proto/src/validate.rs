//! Per-record validation of OTLP export requests.
//!
//! An invalid record (a wrong-length or all-zero id, an end before its start, ...) is removed from
//! the request and counted, with a message naming each distinct reason, while every valid record
//! of the same request is kept. This is what OTLP's partial success reports to the client.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord as OtlpLogRecord;
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

    /// Adds what `other` rejected.
    pub fn merge(&mut self, other: Rejected) {
        self.count += other.count;
        for (reason, count) in other.reasons {
            *self.reasons.entry(reason).or_default() += count;
        }
    }

    /// Counts one rejected record with its reason.
    pub fn add(&mut self, reason: String) {
        self.count += 1;
        *self.reasons.entry(reason).or_default() += 1;
    }

    /// Keeps the items `check` accepts (it may normalise them) and counts the others.
    fn retain<T>(&mut self, items: &mut Vec<T>, check: impl Fn(&mut T) -> Result<(), String>) {
        items.retain_mut(|item| match check(item) {
            Ok(()) => true,
            Err(reason) => {
                self.add(reason);
                false
            }
        });
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
            rejected.retain(&mut scope_spans.spans, check_span);
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

/// Removes the invalid log records of `request` (and the scopes and resources left empty), and
/// says what was removed. Trace and span ids are optional; all-zero ones are normalised to empty,
/// as some SDKs send them outside a trace. Records without any time are kept.
pub fn validate_logs_request(request: &mut ExportLogsServiceRequest) -> Rejected {
    let mut rejected = Rejected::default();
    for resource_logs in &mut request.resource_logs {
        for scope_logs in &mut resource_logs.scope_logs {
            rejected.retain(&mut scope_logs.log_records, check_log_record);
        }
        resource_logs
            .scope_logs
            .retain(|scope_logs| !scope_logs.log_records.is_empty());
    }
    request
        .resource_logs
        .retain(|resource_logs| !resource_logs.scope_logs.is_empty());
    rejected
}

/// The number of log records in a request.
pub fn count_log_records(request: &ExportLogsServiceRequest) -> u64 {
    request
        .resource_logs
        .iter()
        .flat_map(|resource_logs| &resource_logs.scope_logs)
        .map(|scope_logs| scope_logs.log_records.len() as u64)
        .sum()
}

fn check_log_record(record: &mut OtlpLogRecord) -> Result<(), String> {
    clear_if_all_zero(&mut record.trace_id, TraceId::LEN);
    clear_if_all_zero(&mut record.span_id, SpanId::LEN);
    if !record.trace_id.is_empty() {
        TraceId::try_from(record.trace_id.as_slice()).map_err(|err| err.to_string())?;
    }
    if !record.span_id.is_empty() {
        SpanId::try_from(record.span_id.as_slice()).map_err(|err| err.to_string())?;
    }
    Ok(())
}

/// Empties an all-zero id of the right length, which SDKs send to mean "none".
fn clear_if_all_zero(id: &mut Vec<u8>, len: usize) {
    if id.len() == len && id.iter().all(|b| *b == 0) {
        id.clear();
    }
}

fn check_span(span: &mut OtlpSpan) -> Result<(), String> {
    TraceId::try_from(span.trace_id.as_slice()).map_err(|err| err.to_string())?;
    SpanId::try_from(span.span_id.as_slice()).map_err(|err| err.to_string())?;
    clear_if_all_zero(&mut span.parent_span_id, SpanId::LEN);
    if !span.parent_span_id.is_empty() {
        SpanId::try_from(span.parent_span_id.as_slice()).map_err(|err| format!("parent_{err}"))?;
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
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
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

    fn log(trace_id: Vec<u8>, span_id: Vec<u8>) -> OtlpLogRecord {
        OtlpLogRecord {
            trace_id,
            span_id,
            time_unix_nano: 10,
            ..Default::default()
        }
    }

    fn logs_request(records: Vec<OtlpLogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn invalid_log_records_are_removed_one_by_one_and_counted() {
        let mut request = logs_request(vec![
            log(vec![1; 16], vec![2; 8]),
            log(vec![1; 8], vec![2; 8]),
            log(vec![1; 16], vec![2; 16]),
            log(vec![], vec![2; 3]),
            log(vec![1; 15], vec![]),
            log(vec![], vec![]),
        ]);
        let rejected = validate_logs_request(&mut request);
        assert_eq!(rejected.count, 4);
        assert_eq!(count_log_records(&request), 2);
        assert_eq!(
            rejected.message("log records").unwrap(),
            "4 log records rejected: 1 x span_id must be 8 bytes, got 16; \
             1 x span_id must be 8 bytes, got 3; 1 x trace_id must be 16 bytes, got 15; \
             1 x trace_id must be 16 bytes, got 8"
        );
    }

    #[test]
    fn all_zero_log_ids_mean_none_and_missing_times_are_valid() {
        let mut untimed = log(vec![0; 16], vec![0; 8]);
        untimed.time_unix_nano = 0;
        untimed.observed_time_unix_nano = 0;
        let mut request = logs_request(vec![untimed, log(vec![3; 16], vec![0; 8])]);
        let rejected = validate_logs_request(&mut request);
        assert!(rejected.is_empty(), "{:?}", rejected.message("log records"));
        let records = &request.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(records.len(), 2);
        assert!(records[0].trace_id.is_empty() && records[0].span_id.is_empty());
        assert_eq!(records[1].trace_id, vec![3; 16]);
        assert!(records[1].span_id.is_empty());
    }

    #[test]
    fn log_scopes_and_resources_left_empty_are_dropped() {
        let mut request = logs_request(vec![log(vec![1; 16], vec![])]);
        request.resource_logs[0].scope_logs.push(ScopeLogs {
            log_records: vec![log(vec![1; 4], vec![])],
            ..Default::default()
        });
        request.resource_logs.push(ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![log(vec![], vec![9; 9])],
                ..Default::default()
            }],
            ..Default::default()
        });
        request.resource_logs.push(ResourceLogs::default());
        let rejected = validate_logs_request(&mut request);
        assert_eq!(rejected.count, 2);
        assert_eq!(request.resource_logs.len(), 1);
        assert_eq!(request.resource_logs[0].scope_logs.len(), 1);
        assert_eq!(count_log_records(&request), 1);
    }
}
