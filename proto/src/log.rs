//! [`LogRecord`]: one log record with its resource and scope, as the log store keeps it, plus
//! severity names and the W3C `traceparent` parser used to correlate logs with traces.
//!
//! On disk a record is an OTLP `ResourceLogs` message holding exactly one scope with exactly one
//! log record, written by [`LogRecordEncoder`] (the [`OneRecordEncoder`] spans use too).

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpLogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::record::OneRecordEncoder;
use crate::span::service_name;
use crate::{SpanId, TraceId};

/// One log record with everything it was exported with.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogRecord {
    pub resource: Resource,
    pub resource_schema_url: String,
    pub scope: InstrumentationScope,
    pub scope_schema_url: String,
    pub record: OtlpLogRecord,
}

impl LogRecord {
    pub fn service_name(&self) -> &str {
        service_name(Some(&self.resource))
    }

    /// The trace the record was emitted in, `None` when it has none.
    pub fn trace_id(&self) -> Option<TraceId> {
        TraceId::try_from(self.record.trace_id.as_slice()).ok()
    }

    /// The span the record was emitted in, `None` when it has none.
    pub fn span_id(&self) -> Option<SpanId> {
        SpanId::try_from(self.record.span_id.as_slice()).ok()
    }

    /// Decodes a record written by [`LogRecordEncoder`].
    pub fn decode(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        let resource_logs = ResourceLogs::decode(bytes)?;
        let mut scope_logs = resource_logs.scope_logs.into_iter();
        let ScopeLogs {
            scope,
            mut log_records,
            schema_url: scope_schema_url,
        } = scope_logs.next().unwrap_or_default();
        let record = log_records.pop().unwrap_or_default();
        Ok(Self {
            resource: resource_logs.resource.unwrap_or_default(),
            resource_schema_url: resource_logs.schema_url,
            scope: scope.unwrap_or_default(),
            scope_schema_url,
            record,
        })
    }

    /// The record as a one-record `ResourceLogs`.
    pub fn into_resource_logs(self) -> ResourceLogs {
        ResourceLogs {
            resource: Some(self.resource),
            scope_logs: vec![ScopeLogs {
                scope: Some(self.scope),
                log_records: vec![self.record],
                schema_url: self.scope_schema_url,
            }],
            schema_url: self.resource_schema_url,
        }
    }
}

/// Encodes the log records of one resource and scope as [`LogRecord`] bytes, encoding the shared
/// resource and scope once.
pub type LogRecordEncoder = OneRecordEncoder<OtlpLogRecord>;

/// Leaves out of a (completed) record the times its stored form does not need, before it is
/// encoded for the log index; [`restore_times`] puts them back.
///
/// The index keeps each record's time (its time, or its observed time when it has none) in a
/// column, where neighbouring times cost a few bits; in every stored record the same eight
/// bytes, which zstd cannot subtract from the previous record's, cost about five. So a time that
/// is not zero is left out (the column gives it back), and so is an observed time equal to it.
pub fn elide_times(record: &mut OtlpLogRecord) {
    if record.time_unix_nano != 0 {
        if record.observed_time_unix_nano == record.time_unix_nano {
            record.observed_time_unix_nano = 0;
        }
        record.time_unix_nano = 0;
    }
}

/// Puts back the times [`elide_times`] left out, given `time`, the record's time as the index's
/// time column holds it. A stored record without a time either had none (the column then holds
/// its observed time, which was kept) or had it left out (its observed time was left out too, or
/// differs from it). A record stored with its time, as before times were left out, is as it was.
pub fn restore_times(record: &mut OtlpLogRecord, time: u64) {
    if record.time_unix_nano != 0 {
        return;
    }
    match record.observed_time_unix_nano {
        0 => {
            record.time_unix_nano = time;
            record.observed_time_unix_nano = time;
        }
        observed if observed == time => {}
        _ => record.time_unix_nano = time,
    }
}

/// The short name of a severity number's range: `TRACE` (1-4), `DEBUG` (5-8), `INFO` (9-12),
/// `WARN` (13-16), `ERROR` (17-20), `FATAL` (21-24); empty for 0 and out-of-range numbers.
pub fn severity_text(number: i32) -> &'static str {
    match number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "",
    }
}

/// The level logs are grouped by: [`severity_text`], or `UNSPECIFIED` for 0 and out-of-range
/// numbers.
pub fn severity_bucket(number: i32) -> &'static str {
    match severity_text(number) {
        "" => "UNSPECIFIED",
        text => text,
    }
}

/// The severity number of a severity text, case-insensitively: the OTLP short names (`INFO`,
/// `WARN2`, ...) and common aliases (`WARNING`, `ERR`, `NOTICE`, `CRITICAL`, `SEVERE`, ...).
pub fn severity_number(text: &str) -> Option<i32> {
    let upper = text.trim().to_ascii_uppercase();
    let number = match upper.as_str() {
        "INFORMATION" => 9,
        "NOTICE" => 10,
        "WARNING" => 13,
        "ERR" | "SEVERE" => 17,
        "CRITICAL" => 21,
        _ => {
            // A short name, optionally followed by 2, 3 or 4 for the finer levels of its range.
            let (name, step) = match upper.as_bytes().last() {
                Some(digit @ b'2'..=b'4') => (&upper[..upper.len() - 1], i32::from(digit - b'1')),
                _ => (upper.as_str(), 0),
            };
            let base = match name {
                "TRACE" => 1,
                "DEBUG" => 5,
                "INFO" => 9,
                "WARN" => 13,
                "ERROR" => 17,
                "FATAL" => 21,
                _ => return None,
            };
            base + step
        }
    };
    Some(number)
}

/// The trace and parent span of a W3C `traceparent` header, `version-traceid-parentid-flags`
/// (`00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`). `None` when it is malformed, has
/// version `ff` or an all-zero id. Versions after `00` may carry more `-`-separated fields.
pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId)> {
    let value = value.trim();
    let mut fields = value.splitn(5, '-');
    let version = fields.next()?;
    let trace_id = fields.next()?;
    let span_id = fields.next()?;
    let flags = fields.next()?;
    let rest = fields.next();
    let is_hex = |field: &str, len: usize| {
        field.len() == len && field.bytes().all(|b| b.is_ascii_hexdigit())
    };
    if !is_hex(version, 2)
        || version.eq_ignore_ascii_case("ff")
        || !is_hex(trace_id, 2 * TraceId::LEN)
        || !is_hex(span_id, 2 * SpanId::LEN)
        || !is_hex(flags, 2)
    {
        return None;
    }
    if version == "00" && rest.is_some() {
        return None;
    }
    Some((trace_id.parse().ok()?, span_id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UNKNOWN_SERVICE;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList};

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn times_left_out_of_the_stored_form_come_back_from_the_time_column() {
        // (time, observed time) as received and completed.
        for (time, observed) in [(10, 10), (10, 12), (12, 10), (0, 11)] {
            let mut record = OtlpLogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: observed,
                ..Default::default()
            };
            // What the index's time column holds for it.
            let column = if time != 0 { time } else { observed };
            elide_times(&mut record);
            if time != 0 {
                assert_eq!(
                    record.time_unix_nano, 0,
                    "({time}, {observed}) keeps its time"
                );
            }
            if time == observed {
                assert_eq!(record.observed_time_unix_nano, 0, "({time}, {observed})");
            }
            restore_times(&mut record, column);
            assert_eq!(
                (record.time_unix_nano, record.observed_time_unix_nano),
                (time, observed)
            );
        }
        // Stored with its times, before they were left out: read as it is.
        let mut old = OtlpLogRecord {
            time_unix_nano: 10,
            observed_time_unix_nano: 12,
            ..Default::default()
        };
        restore_times(&mut old, 10);
        assert_eq!((old.time_unix_nano, old.observed_time_unix_nano), (10, 12));
    }

    fn full_record() -> OtlpLogRecord {
        OtlpLogRecord {
            time_unix_nano: 10,
            observed_time_unix_nano: 11,
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: Some(AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: vec![kv("msg", Value::StringValue("boom".into()))],
                })),
            }),
            attributes: vec![kv("n", Value::IntValue(-3))],
            dropped_attributes_count: 2,
            flags: 1,
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            event_name: "app.crash".into(),
        }
    }

    #[test]
    fn encoded_record_decodes_to_everything_it_carried() {
        let resource = Resource {
            attributes: vec![kv("service.name", Value::StringValue("checkout".into()))],
            dropped_attributes_count: 1,
            ..Default::default()
        };
        let scope = InstrumentationScope {
            name: "lib".into(),
            version: "2".into(),
            attributes: vec![kv("a", Value::BoolValue(true))],
            dropped_attributes_count: 3,
        };
        let encoder = LogRecordEncoder::new(Some(&resource), "", Some(&scope), "https://s");
        let mut bytes = Vec::new();
        encoder.encode(&full_record(), &mut bytes);
        let record = LogRecord::decode(&bytes).unwrap();
        assert_eq!(
            record,
            LogRecord {
                resource,
                resource_schema_url: String::new(),
                scope,
                scope_schema_url: "https://s".into(),
                record: full_record(),
            }
        );
        assert_eq!(record.service_name(), "checkout");
        assert_eq!(record.trace_id().unwrap().to_hex(), "01".repeat(16));
        assert_eq!(record.span_id().unwrap().to_hex(), "02".repeat(8));
        // Identical to what prost itself would write for the same one-record ResourceLogs.
        assert_eq!(record.into_resource_logs().encode_to_vec(), bytes);
    }

    #[test]
    fn record_without_ids_or_resource() {
        let mut bytes = Vec::new();
        LogRecordEncoder::new(None, "", None, "").encode(&OtlpLogRecord::default(), &mut bytes);
        let record = LogRecord::decode(&bytes).unwrap();
        assert_eq!(record, LogRecord::default());
        assert_eq!(record.service_name(), UNKNOWN_SERVICE);
        assert_eq!(record.trace_id(), None);
        assert_eq!(record.span_id(), None);
        assert!(LogRecord::decode(&[0xff]).is_err());
    }

    #[test]
    fn severity_numbers_have_short_names_and_buckets() {
        let names = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
        for number in 1..=24 {
            let name = names[(number as usize - 1) / 4];
            assert_eq!(severity_text(number), name, "{number}");
            assert_eq!(severity_bucket(number), name, "{number}");
        }
        for number in [0, -1, 25, i32::MAX, i32::MIN] {
            assert_eq!(severity_text(number), "");
            assert_eq!(severity_bucket(number), "UNSPECIFIED");
        }
    }

    #[test]
    fn severity_texts_have_numbers() {
        for (text, number) in [
            ("TRACE", 1),
            ("trace4", 4),
            ("Debug", 5),
            ("INFO", 9),
            ("info2", 10),
            ("Information", 9),
            ("notice", 10),
            ("WARN", 13),
            ("WARN2", 14),
            ("warning", 13),
            ("ERROR", 17),
            ("err", 17),
            ("SEVERE", 17),
            ("Error3", 19),
            ("critical", 21),
            ("FATAL", 21),
            ("fatal4", 24),
            (" info ", 9),
        ] {
            assert_eq!(severity_number(text), Some(number), "{text}");
        }
        for text in [
            "", "2", "INFO1", "INFO5", "WARNING2", "VERBOSE", "INFOO", "É",
        ] {
            assert_eq!(severity_number(text), None, "{text}");
        }
    }

    #[test]
    fn traceparent_is_parsed_per_w3c() {
        let (trace_id, span_id) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span_id.to_hex(), "00f067aa0ba902b7");
        assert_eq!(
            parse_traceparent(" 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-00\n"),
            Some((trace_id, span_id))
        );
        // A future version may append fields.
        assert_eq!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever"),
            Some((trace_id, span_id))
        );
        for invalid in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert_eq!(parse_traceparent(invalid), None, "{invalid:?}");
        }
    }
}
