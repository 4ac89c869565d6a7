//! The span store: a tantivy index holding every span with everything it was exported with.
//!
//! Each span is one document: a few indexed and fast fields for lookups (trace id, service,
//! operation, kind, times, status) and the whole span, with its resource and scope, as a stored
//! [`SpanRecord`] in a zstd-compressed doc store. One `IndexWriter` (owned by the indexer thread
//! of [`crate::pipeline`]) adds documents; readers reload after each commit.
//!
//! A client that retries an export stores a span twice; reads collapse duplicates by span id.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use prost::encoding::{decode_varint, encode_varint};
use sightline_proto::span::{service_name, SpanRecordEncoder};
use sightline_proto::{SpanRecord, TraceId};
use tantivy::collector::DocSetCollector;
use tantivy::query::TermQuery;
use tantivy::schema::{
    BytesOptions, Field, IndexRecordOption, JsonObjectOptions, NumericOptions, OwnedValue, Schema,
    TextFieldIndexing, Value, FAST, INDEXED, STORED, STRING,
};
use tantivy::{Index, IndexReader, IndexWriter, TantivyDocument, Term};

use crate::index::{DocStore, StoreSettings};
use crate::pipeline::Batch;

/// Separates service, kind and operation in the `service_operation` terms.
const SEPARATOR: char = '\u{0}';

#[derive(Debug, thiserror::Error)]
pub enum SpanStoreError {
    #[error("span index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("span index i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored span is corrupt: {0}")]
    Corrupt(String),
}

/// The fields of the span index.
#[derive(Debug, Clone, Copy)]
pub struct SpanFields {
    pub trace_id: Field,
    pub span_id: Field,
    /// Empty for a root span.
    pub parent_span_id: Field,
    pub service: Field,
    pub operation: Field,
    /// `service \0 kind \0 operation`, so that the operations of a service are a term range.
    pub service_operation: Field,
    pub kind: Field,
    pub is_root: Field,
    pub status_code: Field,
    pub start_time_unix_nanos: Field,
    pub duration_nanos: Field,
    /// Span attributes, then the resource attributes the span does not override, as one JSON
    /// object (dots in keys are paths, so `http.status_code` finds `{"http.status_code": 500}`).
    pub attributes: Field,
    /// The encoded [`SpanRecord`].
    pub record: Field,
}

impl SpanFields {
    fn schema() -> (Schema, SpanFields) {
        let mut builder = Schema::builder();
        let numeric = NumericOptions::default().set_indexed().set_fast();
        let fields = SpanFields {
            trace_id: builder
                .add_bytes_field("trace_id", BytesOptions::default().set_indexed().set_fast()),
            span_id: builder.add_bytes_field("span_id", FAST),
            parent_span_id: builder.add_bytes_field("parent_span_id", FAST),
            service: builder.add_text_field("service", STRING | FAST),
            operation: builder.add_text_field("operation", STRING | FAST),
            service_operation: builder.add_text_field("service_operation", STRING),
            kind: builder.add_u64_field("kind", numeric.clone()),
            is_root: builder.add_u64_field("is_root", numeric.clone()),
            status_code: builder.add_u64_field("status_code", numeric.clone()),
            start_time_unix_nanos: builder.add_u64_field("start_time_unix_nanos", numeric.clone()),
            duration_nanos: builder.add_u64_field("duration_nanos", INDEXED | FAST),
            attributes: builder.add_json_field(
                "attributes",
                JsonObjectOptions::default()
                    .set_indexing_options(
                        TextFieldIndexing::default()
                            .set_tokenizer("raw")
                            .set_index_option(IndexRecordOption::Basic),
                    )
                    .set_expand_dots_enabled()
                    // Numeric ranges and `key:*` (exists) on JSON fields need columns.
                    .set_fast("raw"),
            ),
            record: builder.add_bytes_field("record", STORED),
        };
        (builder.build(), fields)
    }

    /// The document of one span; `record` is its encoded [`SpanRecord`].
    pub fn document(
        &self,
        span: &OtlpSpan,
        resource: Option<&Resource>,
        service: &str,
        record: &[u8],
    ) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_bytes(self.trace_id, &span.trace_id);
        doc.add_bytes(self.span_id, &span.span_id);
        doc.add_bytes(self.parent_span_id, &span.parent_span_id);
        let mut attributes = attribute_object(&span.attributes);
        if let Some(resource) = resource {
            for kv in &resource.attributes {
                if !span.attributes.iter().any(|own| own.key == kv.key) {
                    if let Some(value) = attribute_value(kv.value.as_ref(), 0) {
                        attributes.push((kv.key.clone(), value));
                    }
                }
            }
        }
        if !attributes.is_empty() {
            doc.add_field_value(self.attributes, &OwnedValue::Object(attributes));
        }
        doc.add_text(self.service, service);
        doc.add_text(self.operation, &span.name);
        doc.add_text(
            self.service_operation,
            format!("{service}{SEPARATOR}{}{SEPARATOR}{}", span.kind, span.name),
        );
        doc.add_u64(self.kind, span.kind.max(0) as u64);
        doc.add_u64(self.is_root, u64::from(span.parent_span_id.is_empty()));
        doc.add_u64(
            self.status_code,
            span.status
                .as_ref()
                .map_or(0, |status| status.code.max(0) as u64),
        );
        doc.add_u64(self.start_time_unix_nanos, span.start_time_unix_nano);
        doc.add_u64(
            self.duration_nanos,
            span.end_time_unix_nano
                .saturating_sub(span.start_time_unix_nano),
        );
        doc.add_bytes(self.record, record);
        doc
    }
}

/// The read side of the span store; cheap to clone.
#[derive(Clone)]
pub struct SpanStore {
    index: Index,
    reader: IndexReader,
    fields: SpanFields,
}

impl SpanStore {
    /// Opens (or creates) the span index in `dir`, returning the store and its one writer.
    pub fn open(
        dir: &Path,
        settings: &StoreSettings,
    ) -> Result<(SpanStore, IndexWriter), SpanStoreError> {
        let (schema, fields) = SpanFields::schema();
        let (index, reader, writer) = crate::index::open(dir, schema, DocStore::SPANS, settings)?;
        Ok((
            SpanStore {
                index,
                reader,
                fields,
            },
            writer,
        ))
    }

    pub fn fields(&self) -> &SpanFields {
        &self.fields
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// A searcher over the last commit.
    pub fn searcher(&self) -> tantivy::Searcher {
        self.reader.searcher()
    }

    pub fn reader(&self) -> &IndexReader {
        &self.reader
    }

    /// Makes the latest commit visible to searches.
    pub fn reload(&self) -> Result<(), SpanStoreError> {
        Ok(self.reader.reload()?)
    }

    /// Number of span documents visible to searches (duplicates included).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Every span of a trace, in start order, duplicates removed. Empty when the trace is unknown.
    pub fn get_trace(&self, trace_id: TraceId) -> Result<Vec<SpanRecord>, SpanStoreError> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_bytes(self.fields.trace_id, trace_id.as_bytes()),
            IndexRecordOption::Basic,
        );
        let mut addresses: Vec<_> = searcher
            .search(&query, &DocSetCollector)?
            .into_iter()
            .collect();
        addresses.sort();
        let mut seen = HashSet::with_capacity(addresses.len());
        let mut records = Vec::with_capacity(addresses.len());
        for address in addresses {
            let doc: TantivyDocument = searcher.doc(address)?;
            let bytes = doc
                .get_first(self.fields.record)
                .and_then(|value| value.as_bytes())
                .ok_or_else(|| SpanStoreError::Corrupt("span document without record".into()))?;
            let record = SpanRecord::decode(bytes)
                .map_err(|err| SpanStoreError::Corrupt(err.to_string()))?;
            if seen.insert(record.span.span_id.clone()) {
                records.push(record);
            }
        }
        records.sort_by(|a, b| {
            (a.span.start_time_unix_nano, &a.span.span_id)
                .cmp(&(b.span.start_time_unix_nano, &b.span.span_id))
        });
        Ok(records)
    }

    /// Every service name, sorted.
    pub fn services(&self) -> Result<Vec<String>, SpanStoreError> {
        let searcher = self.reader.searcher();
        let mut services = BTreeSet::new();
        for segment in searcher.segment_readers() {
            let inverted_index = segment.inverted_index(self.fields.service)?;
            let mut terms = inverted_index.terms().stream()?;
            while terms.advance() {
                services.insert(String::from_utf8_lossy(terms.key()).into_owned());
            }
        }
        Ok(services.into_iter().collect())
    }

    /// The operations of a service with their span kinds (OTLP numbering), sorted by name then
    /// kind. `kind` keeps only one kind.
    pub fn operations(
        &self,
        service: &str,
        kind: Option<i32>,
    ) -> Result<Vec<(String, i32)>, SpanStoreError> {
        let searcher = self.reader.searcher();
        let prefix = format!("{service}{SEPARATOR}");
        let mut operations = BTreeSet::new();
        for segment in searcher.segment_readers() {
            let inverted_index = segment.inverted_index(self.fields.service_operation)?;
            let mut terms = inverted_index
                .terms()
                .range()
                .ge(prefix.as_bytes())
                .into_stream()?;
            while terms.advance() {
                let Some(rest) = terms.key().strip_prefix(prefix.as_bytes()) else {
                    break;
                };
                let rest = String::from_utf8_lossy(rest);
                let Some((span_kind, name)) = rest.split_once(SEPARATOR) else {
                    continue;
                };
                let span_kind: i32 = span_kind.parse().unwrap_or(0);
                if kind.is_none_or(|kind| kind == span_kind) {
                    operations.insert((name.to_owned(), span_kind));
                }
            }
        }
        Ok(operations.into_iter().collect())
    }
}

/// Attributes as the entries of a JSON object for the `attributes` field.
pub(crate) fn attribute_object(attributes: &[KeyValue]) -> Vec<(String, OwnedValue)> {
    attributes
        .iter()
        .filter_map(|kv| Some((kv.key.clone(), attribute_value(kv.value.as_ref(), 0)?)))
        .collect()
}

/// Longer strings (stack traces, SQL, payloads) are kept in the record but not indexed as exact
/// values: each would add its whole length to the term dictionary and the column, once per
/// record, and nobody searches them by exact value (log bodies are full-text indexed).
pub(crate) const MAX_INDEXED_STRING_BYTES: usize = 256;

/// Bytes values are not searchable; nesting stops at a few levels.
pub(crate) fn attribute_value(value: Option<&AnyValue>, depth: usize) -> Option<OwnedValue> {
    const MAX_DEPTH: usize = 4;
    Some(match value?.value.as_ref()? {
        AnyValueKind::StringValue(text) if text.len() <= MAX_INDEXED_STRING_BYTES => {
            OwnedValue::Str(text.clone())
        }
        AnyValueKind::BoolValue(flag) => OwnedValue::Bool(*flag),
        AnyValueKind::IntValue(n) => OwnedValue::I64(*n),
        AnyValueKind::DoubleValue(x) if x.is_finite() => OwnedValue::F64(*x),
        AnyValueKind::ArrayValue(array) if depth < MAX_DEPTH => OwnedValue::Array(
            array
                .values
                .iter()
                .filter_map(|value| attribute_value(Some(value), depth + 1))
                .collect(),
        ),
        AnyValueKind::KvlistValue(list) if depth < MAX_DEPTH => OwnedValue::Object(
            list.values
                .iter()
                .filter_map(|kv| {
                    Some((
                        kv.key.clone(),
                        attribute_value(kv.value.as_ref(), depth + 1)?,
                    ))
                })
                .collect(),
        ),
        _ => return None,
    })
}

impl SpanFields {
    /// Encodes the (validated) spans of a request for the write-ahead log (each record as
    /// `[varint length][SpanRecord bytes]`) and as index documents.
    pub fn batch(&self, request: &ExportTraceServiceRequest) -> Batch {
        let mut payload = Vec::new();
        let mut documents = Vec::new();
        let mut record = Vec::new();
        for resource_spans in &request.resource_spans {
            let service = service_name(resource_spans.resource.as_ref());
            for scope_spans in &resource_spans.scope_spans {
                let encoder = SpanRecordEncoder::new(
                    resource_spans.resource.as_ref(),
                    &resource_spans.schema_url,
                    scope_spans.scope.as_ref(),
                    &scope_spans.schema_url,
                );
                for span in &scope_spans.spans {
                    record.clear();
                    encoder.encode(span, &mut record);
                    encode_varint(record.len() as u64, &mut payload);
                    payload.extend_from_slice(&record);
                    documents.push(self.document(
                        span,
                        resource_spans.resource.as_ref(),
                        service,
                        &record,
                    ));
                }
            }
        }
        Batch { payload, documents }
    }

    /// The documents of a payload read back from the write-ahead log.
    pub fn documents_from_payload(
        &self,
        mut payload: &[u8],
    ) -> Result<Vec<TantivyDocument>, SpanStoreError> {
        let mut documents = Vec::new();
        while !payload.is_empty() {
            let len = decode_varint(&mut payload)
                .map_err(|err| SpanStoreError::Corrupt(err.to_string()))?
                as usize;
            let bytes = payload
                .get(..len)
                .ok_or_else(|| SpanStoreError::Corrupt("truncated span record".into()))?;
            let record = SpanRecord::decode(bytes)
                .map_err(|err| SpanStoreError::Corrupt(err.to_string()))?;
            documents.push(self.document(
                &record.span,
                Some(&record.resource),
                record.service_name(),
                bytes,
            ));
            payload = &payload[len..];
        }
        Ok(documents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    fn request(service: &str, spans: Vec<OtlpSpan>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(service.into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn span(trace: u8, id: u8, name: &str, kind: i32, start: u64) -> OtlpSpan {
        OtlpSpan {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: name.into(),
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 5,
            ..Default::default()
        }
    }

    #[test]
    fn spans_are_found_by_trace_and_listed_by_service_and_operation() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut writer) = SpanStore::open(dir.path(), &StoreSettings::default()).unwrap();
        let first = request(
            "cart",
            vec![span(1, 2, "GET /cart", 2, 20), span(1, 1, "db", 3, 10)],
        );
        let second = request(
            "checkout",
            vec![span(1, 3, "pay", 2, 30), span(9, 4, "other", 1, 5)],
        );
        for req in [&first, &second, &first] {
            let batch = store.fields().batch(req);
            // Replaying the payload gives the same documents as the live path.
            let replayed = store
                .fields()
                .documents_from_payload(&batch.payload)
                .unwrap();
            assert_eq!(replayed.len(), batch.documents.len());
            for doc in replayed {
                writer.add_document(doc).unwrap();
            }
        }
        writer.commit().unwrap();
        store.reload().unwrap();

        let trace = store
            .get_trace(TraceId::try_from(&[1u8; 16][..]).unwrap())
            .unwrap();
        let names: Vec<_> = trace.iter().map(|r| r.span.name.as_str()).collect();
        // The duplicated export of `first` shows each span once; spans come in start order.
        assert_eq!(names, ["db", "GET /cart", "pay"]);
        assert_eq!(trace[2].service_name(), "checkout");
        assert!(store
            .get_trace(TraceId::try_from(&[5u8; 16][..]).unwrap())
            .unwrap()
            .is_empty());
        assert_eq!(store.services().unwrap(), ["cart", "checkout"]);
        assert_eq!(
            store.operations("cart", None).unwrap(),
            [("GET /cart".to_owned(), 2), ("db".to_owned(), 3)]
        );
        assert_eq!(
            store.operations("cart", Some(3)).unwrap(),
            [("db".to_owned(), 3)]
        );
        assert!(store.operations("car", None).unwrap().is_empty());
    }
}
