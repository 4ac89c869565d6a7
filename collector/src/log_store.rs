//! The log store: a tantivy index holding every log record with everything it was exported with.
//!
//! Each record is one document: the body as full text (words only: a phrase is checked on the
//! stored record), severity, service, trace and span ids as exact-match fields, record
//! attributes and resource attributes as two JSON fields, a nanosecond time, a record id, and
//! the whole record with its resource and scope as a stored [`LogRecord`], less the times the
//! time column gives back.
//!
//! Before a record is written to the write-ahead log it is completed, so replay and the live path
//! index the same thing: a missing severity number or text is derived from the other, a missing
//! observed time is the time of receipt, and a record without a trace id takes one from a W3C
//! `traceparent` (or `traceId`/`spanId` fields) in its attributes or body. A string body that is
//! a JSON object keeps its text, and its fields become searchable as attributes (the record's
//! own attributes win on a name clash).

use std::path::Path;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord as OtlpLogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::encoding::{decode_varint, encode_varint};
use sightline_proto::log::{
    elide_times, parse_traceparent, restore_times, severity_bucket, severity_number, severity_text,
    LogRecord, LogRecordEncoder,
};
use sightline_proto::otlp_json::plain_json;
use sightline_proto::span::service_name;
use sightline_proto::{SpanId, TraceId};
use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, NumericOptions, OwnedValue, Schema,
    TextFieldIndexing, TextOptions, Value, STORED,
};
use tantivy::tokenizer::{
    LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, TextAnalyzer, Token, TokenStream,
    Tokenizer,
};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, Searcher, TantivyDocument, Term};

use crate::index::{DocStore, StoreSettings};
use crate::pipeline::Batch;
use crate::span_store::{attribute_object, attribute_value, MAX_INDEXED_STRING_BYTES};

/// Tokenizer of exact-match fields that match case-insensitively (severity).
const LOWERCASE: &str = "sightline_lowercase";
/// Tokenizer of trace and span ids: see [`IdPrefixTokenizer`].
const ID_PREFIX: &str = "sightline_id_prefix";
/// Hex digits of an id the index keeps: 32 bits, one chance in four billion that an id shares
/// them with another.
pub const ID_PREFIX_CHARS: usize = 8;
/// Depth of a JSON body's fields that becomes searchable.
const MAX_BODY_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("log index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("stored log record is corrupt: {0}")]
    Corrupt(String),
}

/// Settings of log ingest and linking.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Attribute (and JSON body field) names holding a correlation id, in order of preference.
    pub correlation_keys: Vec<String>,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            correlation_keys: [
                "correlationId",
                "correlation_id",
                "correlation.id",
                "x-request-id",
                "request_id",
                "requestId",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// The fields of the log index.
#[derive(Debug, Clone, Copy)]
pub struct LogFields {
    /// Consecutive in ingest order, unique; added by the pipeline.
    pub id: Field,
    /// Time of the event, or its observed time when it has none, in Unix nanoseconds.
    pub time: Field,
    /// Coarse severity: TRACE, DEBUG, INFO, WARN, ERROR, FATAL or UNSPECIFIED.
    pub severity: Field,
    pub severity_number: Field,
    pub service: Field,
    /// The body as text (a structured body as its JSON).
    pub body: Field,
    /// The first [`ID_PREFIX_CHARS`] lowercase hex digits (the whole id in indexes written
    /// before ids were cut): a match is confirmed on the stored record
    /// ([`LogStore::id_check`]). Absent when the record has none.
    pub trace_id: Field,
    pub span_id: Field,
    pub scope: Field,
    /// Record attributes, then the fields of a JSON body.
    pub attributes: Field,
    /// Resource attributes.
    pub resource: Field,
    /// The encoded [`LogRecord`].
    pub record: Field,
}

impl LogFields {
    fn schema() -> (Schema, LogFields) {
        let mut builder = Schema::builder();
        // Log search sorts by time, never by relevance: no field keeps term frequencies or
        // field norms (the scores' inputs), and time and record id are columns only (range
        // queries on a fast field read the column, so their terms would never be read). Ids are
        // looked up, never grouped by: no columns.
        let column = NumericOptions::default().set_fast();
        let exact = |tokenizer: &str| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(tokenizer)
                    .set_fieldnorms(false)
                    .set_index_option(IndexRecordOption::Basic),
            )
        };
        let json = JsonObjectOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("raw")
                    .set_fieldnorms(false)
                    .set_index_option(IndexRecordOption::Basic),
            )
            .set_expand_dots_enabled()
            .set_fast("raw");
        let fields = LogFields {
            id: builder.add_u64_field("id", column.clone()),
            time: builder.add_u64_field("time", column),
            severity: builder.add_text_field("severity", exact(LOWERCASE).set_fast("raw")),
            severity_number: builder.add_u64_field(
                "severity_number",
                NumericOptions::default().set_indexed().set_fast(),
            ),
            service: builder.add_text_field("service", exact("raw").set_fast("raw")),
            body: builder.add_text_field("body", exact("default")),
            trace_id: builder.add_text_field("trace_id", exact(ID_PREFIX)),
            span_id: builder.add_text_field("span_id", exact(ID_PREFIX)),
            scope: builder.add_text_field("scope", exact("raw")),
            attributes: builder.add_json_field("attributes", json.clone()),
            resource: builder.add_json_field("resource", json),
            record: builder.add_bytes_field("record", STORED),
        };
        (builder.build(), fields)
    }

    /// The document of one (completed) log record, whose stored form is `stored` (see
    /// [`encode_stored`]), with the fields of its JSON body if it has one; the pipeline adds
    /// its id.
    fn document(
        &self,
        record: &OtlpLogRecord,
        resource: Option<&Resource>,
        scope_name: &str,
        stored: &[u8],
        body_fields: Option<JsonFields>,
    ) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_u64(self.time, effective_time(record));
        doc.add_text(self.severity, severity_bucket(record.severity_number));
        doc.add_u64(self.severity_number, record.severity_number.max(0) as u64);
        doc.add_text(self.service, service_name(resource));
        let text = body_text(record, body_fields.as_ref());
        if !text.is_empty() {
            doc.add_text(self.body, text);
        }
        if let Ok(trace_id) = TraceId::try_from(record.trace_id.as_slice()) {
            doc.add_text(self.trace_id, trace_id.to_string());
        }
        if let Ok(span_id) = SpanId::try_from(record.span_id.as_slice()) {
            doc.add_text(self.span_id, span_id.to_string());
        }
        if !scope_name.is_empty() {
            doc.add_text(self.scope, scope_name);
        }
        let mut attributes = attribute_object(&record.attributes);
        if let Some(fields) = body_fields {
            for (key, value) in fields {
                if !attributes.iter().any(|(own, _)| *own == key) {
                    if let Some(value) = json_value(value, 0) {
                        attributes.push((key, value));
                    }
                }
            }
        }
        if !attributes.is_empty() {
            doc.add_field_value(self.attributes, &OwnedValue::Object(attributes));
        }
        if let Some(resource) = resource {
            let attributes = attribute_object(&resource.attributes);
            if !attributes.is_empty() {
                doc.add_field_value(self.resource, &OwnedValue::Object(attributes));
            }
        }
        doc.add_bytes(self.record, stored);
        doc
    }
}

/// Appends `record` encoded as the log index stores it: without the times its time column gives
/// back (see [`elide_times`]); [`LogStore::record`] reads them back.
fn encode_stored(encoder: &LogRecordEncoder, record: &mut OtlpLogRecord, out: &mut Vec<u8>) {
    let times = (record.time_unix_nano, record.observed_time_unix_nano);
    elide_times(record);
    encoder.encode(record, out);
    (record.time_unix_nano, record.observed_time_unix_nano) = times;
}

/// The full text of a record's body, as indexed. A structured body's (a map, or a string holding
/// a JSON object, whose fields are `body_fields`) is its string values: its keys and numbers are
/// searchable as fields, and indexing the same keys as words in every record would double the
/// postings for nothing.
pub fn body_text(record: &OtlpLogRecord, body_fields: Option<&JsonFields>) -> String {
    let mut text = String::new();
    match (
        body_fields,
        record.body.as_ref().and_then(|b| b.value.as_ref()),
    ) {
        (Some(fields), _) => {
            for value in fields.values() {
                json_text(value, &mut text);
            }
        }
        (None, Some(AnyValueKind::StringValue(body))) => text.push_str(body),
        (None, Some(other)) => json_text(&plain_json(other), &mut text),
        (None, None) => {}
    }
    text
}

/// Whether `text`, split into words by the body's tokenizer, holds `words` in order, each at
/// most `slop` words after the one before it beyond adjacency (0: consecutive, a phrase).
pub fn text_has_phrase(text: &str, words: &[String], slop: u32) -> bool {
    if words.is_empty() {
        return true;
    }
    let mut matcher = PhraseMatcher {
        words,
        reach: slop as usize + 1,
        ends: vec![None; words.len()],
        position: 0,
    };
    if text.is_ascii() {
        // The analyzer's words of ASCII text, without copying them: runs of letters and
        // digits under 40 bytes, compared without case.
        return text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|word| !word.is_empty() && word.len() < MAX_WORD_BYTES)
            .any(|word| matcher.next_word(word));
    }
    let mut analyzer = body_analyzer();
    let mut stream = analyzer.token_stream(text);
    while let Some(token) = stream.next() {
        if matcher.next_word(&token.text) {
            return true;
        }
    }
    false
}

/// Words the body's analyzer drops, in bytes.
const MAX_WORD_BYTES: usize = 40;

/// For each prefix of the phrase, the latest position where it ends with every word at most
/// `reach` positions after the one before: one pass over the text's words.
struct PhraseMatcher<'a> {
    words: &'a [String],
    reach: usize,
    ends: Vec<Option<usize>>,
    position: usize,
}

impl PhraseMatcher<'_> {
    /// Takes the text's next word (any case); true once the whole phrase has been seen.
    fn next_word(&mut self, text: &str) -> bool {
        for (i, word) in self.words.iter().enumerate().rev() {
            if !text.eq_ignore_ascii_case(word) {
                continue;
            }
            let follows =
                i == 0 || self.ends[i - 1].is_some_and(|end| self.position - end <= self.reach);
            if follows {
                self.ends[i] = Some(self.position);
            }
        }
        self.position += 1;
        self.ends[self.words.len() - 1].is_some()
    }
}

/// The analyzer of the body field: tantivy's `default` (split on non-alphanumerics, words over
/// 40 bytes dropped, lower case).
pub fn body_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
        .filter(LowerCaser)
        .build()
}

/// The fields of a JSON object.
pub type JsonFields = serde_json::Map<String, serde_json::Value>;

/// The record's time, or its observed time when it has none.
pub fn effective_time(record: &OtlpLogRecord) -> u64 {
    if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    }
}

/// The fields of a string body holding a JSON object.
pub fn json_body(record: &OtlpLogRecord) -> Option<JsonFields> {
    let Some(AnyValueKind::StringValue(text)) = record.body.as_ref()?.value.as_ref() else {
        return None;
    };
    if !text.trim_start().starts_with('{') {
        return None;
    }
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The string values of a JSON value, one per line.
fn json_text(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::String(text) => {
            out.push_str(text);
            out.push('\n');
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| json_text(item, out)),
        serde_json::Value::Object(map) => map.values().for_each(|item| json_text(item, out)),
        _ => {}
    }
}

fn json_value(value: serde_json::Value, depth: usize) -> Option<OwnedValue> {
    use serde_json::Value as J;
    Some(match value {
        J::Null => return None,
        J::Bool(flag) => OwnedValue::Bool(flag),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                OwnedValue::I64(i)
            } else if let Some(u) = n.as_u64() {
                OwnedValue::U64(u)
            } else {
                OwnedValue::F64(n.as_f64()?)
            }
        }
        J::String(text) if text.len() <= MAX_INDEXED_STRING_BYTES => OwnedValue::Str(text),
        J::Array(items) if depth < MAX_BODY_DEPTH => OwnedValue::Array(
            items
                .into_iter()
                .filter_map(|item| json_value(item, depth + 1))
                .collect(),
        ),
        J::Object(map) if depth < MAX_BODY_DEPTH => OwnedValue::Object(
            map.into_iter()
                .filter_map(|(key, value)| Some((key, json_value(value, depth + 1)?)))
                .collect(),
        ),
        _ => return None,
    })
}

/// Completes a record before it is stored: severity number and text each derived from the
/// other, the observed time stamped when missing, and trace and span ids taken from a
/// `traceparent` (or `traceId`/`spanId` fields) in the attributes or the body when it has none.
/// `body_fields` are the fields of its JSON body, if it has one.
pub fn complete(
    record: &mut OtlpLogRecord,
    received_unix_nanos: u64,
    body_fields: Option<&JsonFields>,
) {
    if record.severity_number == 0 && !record.severity_text.is_empty() {
        record.severity_number = severity_number(&record.severity_text).unwrap_or(0);
    }
    if record.severity_text.is_empty() && record.severity_number != 0 {
        record.severity_text = severity_text(record.severity_number).to_owned();
    }
    if record.observed_time_unix_nano == 0 {
        record.observed_time_unix_nano = received_unix_nanos;
    }
    if record.trace_id.is_empty() {
        if let Some((trace_id, span_id)) = find_trace_context(record, body_fields) {
            record.trace_id = trace_id.as_bytes().to_vec();
            if record.span_id.is_empty() {
                record.span_id = span_id.map_or_else(Vec::new, |id| id.as_bytes().to_vec());
            }
        }
    }
}

/// A trace (and span) id carried in a record's attributes or body.
fn find_trace_context(
    record: &OtlpLogRecord,
    body_fields: Option<&JsonFields>,
) -> Option<(TraceId, Option<SpanId>)> {
    let string = |value: Option<&AnyValue>| match value?.value.as_ref()? {
        AnyValueKind::StringValue(text) => Some(text.clone()),
        _ => None,
    };
    let lookup = |key: &str| -> Option<String> {
        record
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| string(kv.value.as_ref()))
    };
    let body_lookup = |key: &str| -> Option<String> {
        body_fields?
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let field = |keys: &[&str]| {
        keys.iter()
            .find_map(|key| lookup(key).or_else(|| body_lookup(key)))
    };
    if let Some((trace_id, span_id)) = field(&["traceparent"]).and_then(|v| parse_traceparent(&v)) {
        return Some((trace_id, Some(span_id)));
    }
    if let Some(trace_id) = field(&["traceId", "trace_id", "trace.id"]).and_then(|v| v.parse().ok())
    {
        let span_id = field(&["spanId", "span_id", "span.id"]).and_then(|v| v.parse().ok());
        return Some((trace_id, span_id));
    }
    // A plain-text body such as `... traceparent=00-...-...-01 ...`.
    if let Some(AnyValueKind::StringValue(text)) =
        record.body.as_ref().and_then(|b| b.value.as_ref())
    {
        let at = text.find("traceparent")?;
        let rest = text[at + "traceparent".len()..].trim_start_matches(|c: char| {
            c == '"' || c == '\'' || c == ':' || c == '=' || c == ' '
        });
        let candidate: String = rest
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
            .collect();
        return parse_traceparent(&candidate).map(|(trace, span)| (trace, Some(span)));
    }
    None
}

/// Encodes log records for the write-ahead log and the index; cheap to clone.
#[derive(Debug, Clone, Copy)]
pub struct LogEncoder {
    fields: LogFields,
}

impl LogEncoder {
    /// Completes (see [`complete`]) and encodes the (validated) records of a request.
    pub fn batch(&self, request: &mut ExportLogsServiceRequest) -> Batch {
        let received = crate::now_nanos();
        let mut payload = Vec::new();
        let mut documents = Vec::new();
        let mut encoded = Vec::new();
        let mut stored = Vec::new();
        for resource_logs in &mut request.resource_logs {
            for scope_logs in &mut resource_logs.scope_logs {
                let encoder = LogRecordEncoder::new(
                    resource_logs.resource.as_ref(),
                    &resource_logs.schema_url,
                    scope_logs.scope.as_ref(),
                    &scope_logs.schema_url,
                );
                let scope_name = scope_logs.scope.as_ref().map_or("", |s| s.name.as_str());
                for record in &mut scope_logs.log_records {
                    // Parsed once for both: completing may read ids from it, indexing its fields.
                    let body_fields = json_body(record);
                    complete(record, received, body_fields.as_ref());
                    encoded.clear();
                    encoder.encode(record, &mut encoded);
                    encode_varint(encoded.len() as u64, &mut payload);
                    payload.extend_from_slice(&encoded);
                    stored.clear();
                    encode_stored(&encoder, record, &mut stored);
                    documents.push(self.fields.document(
                        record,
                        resource_logs.resource.as_ref(),
                        scope_name,
                        &stored,
                        body_fields,
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
    ) -> Result<Vec<TantivyDocument>, LogStoreError> {
        let mut documents = Vec::new();
        let mut stored = Vec::new();
        while !payload.is_empty() {
            let len = decode_varint(&mut payload)
                .map_err(|err| LogStoreError::Corrupt(err.to_string()))?
                as usize;
            let bytes = payload
                .get(..len)
                .ok_or_else(|| LogStoreError::Corrupt("truncated log record".into()))?;
            let mut record =
                LogRecord::decode(bytes).map_err(|err| LogStoreError::Corrupt(err.to_string()))?;
            let encoder = LogRecordEncoder::new(
                Some(&record.resource),
                &record.resource_schema_url,
                Some(&record.scope),
                &record.scope_schema_url,
            );
            stored.clear();
            encode_stored(&encoder, &mut record.record, &mut stored);
            documents.push(self.fields.document(
                &record.record,
                Some(&record.resource),
                &record.scope.name,
                &stored,
                json_body(&record.record),
            ));
            payload = &payload[len..];
        }
        Ok(documents)
    }
}

/// The read side of the log store; cheap to clone.
#[derive(Clone)]
pub struct LogStore {
    index: Index,
    reader: IndexReader,
    fields: LogFields,
    settings: std::sync::Arc<LogSettings>,
}

impl LogStore {
    /// Opens (or creates) the log index in `dir`, returning the store and its one writer.
    pub fn open(
        dir: &Path,
        store_settings: &StoreSettings,
        settings: LogSettings,
    ) -> Result<(LogStore, IndexWriter), LogStoreError> {
        let (schema, fields) = LogFields::schema();
        let (index, reader, writer) =
            crate::index::open(dir, schema, DocStore::LOGS, store_settings)?;
        index.tokenizers().register(
            LOWERCASE,
            TextAnalyzer::builder(RawTokenizer::default())
                .filter(LowerCaser)
                .build(),
        );
        index
            .tokenizers()
            .register(ID_PREFIX, IdPrefixTokenizer::default());
        Ok((
            LogStore {
                index,
                reader,
                fields,
                settings: std::sync::Arc::new(settings),
            },
            writer,
        ))
    }

    pub fn fields(&self) -> &LogFields {
        &self.fields
    }

    pub fn settings(&self) -> &LogSettings {
        &self.settings
    }

    pub fn encoder(&self) -> LogEncoder {
        LogEncoder {
            fields: self.fields,
        }
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn reader(&self) -> &IndexReader {
        &self.reader
    }

    /// A searcher over the last commit.
    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// A test of whether a document of `segment` holds the phrase `words` (tokens of the body's
    /// analyzer) in its body; see [`text_has_phrase`]. The body is indexed without positions
    /// (they would cost about a quarter of the index), so a phrase is checked on the stored
    /// record of each document holding all of its words.
    pub fn body_phrase_check(
        segment: &tantivy::SegmentReader,
        words: &[String],
        slop: u32,
    ) -> tantivy::Result<Box<dyn FnMut(tantivy::DocId) -> bool + Send>> {
        let mut stored = stored_records(segment)?;
        let words = words.to_vec();
        Ok(Box::new(move |doc| {
            stored(doc).is_some_and(|stored| {
                let fields = json_body(&stored.record);
                text_has_phrase(&body_text(&stored.record, fields.as_ref()), &words, slop)
            })
        }))
    }

    /// The term of `field` (trace or span id) for the lowercase hex id `id`, as the index's
    /// tokenizer for it cuts it; matching documents need [`LogStore::id_check`].
    pub fn id_term(&self, field: Field, id: &str) -> Term {
        let mut text = id.to_owned();
        if let Ok(mut analyzer) = self.index.tokenizer_for_field(field) {
            let mut stream = analyzer.token_stream(id);
            if let Some(token) = stream.next() {
                text = token.text.clone();
            }
        }
        Term::from_field_text(field, &text)
    }

    /// A test of whether a document of `segment` has, as its trace id (`field` "trace_id") or
    /// span id ("span_id"), one of `ids` (hex, any case), or one starting with one of them when
    /// `prefix`: the index keeps only the first digits of each id, so its matches are confirmed
    /// on the stored record.
    pub fn id_check(
        segment: &tantivy::SegmentReader,
        field: &str,
        ids: &[String],
        prefix: bool,
    ) -> tantivy::Result<Box<dyn FnMut(tantivy::DocId) -> bool + Send>> {
        let mut stored = stored_records(segment)?;
        let span = field == "span_id";
        let ids: Vec<String> = ids
            .iter()
            .map(|id| id.trim().to_ascii_lowercase())
            .collect();
        Ok(Box::new(move |doc| {
            let Some(stored) = stored(doc) else {
                return false;
            };
            let id = match span {
                true => stored.span_id().map(|id| id.to_string()),
                false => stored.trace_id().map(|id| id.to_string()),
            };
            id.is_some_and(|id| {
                ids.iter().any(|wanted| match prefix {
                    true => id.starts_with(wanted.as_str()),
                    false => id == *wanted,
                })
            })
        }))
    }

    /// The stored record of a document, with its times as received.
    pub fn record(
        &self,
        searcher: &Searcher,
        address: DocAddress,
    ) -> Result<LogRecord, LogStoreError> {
        let doc: TantivyDocument = searcher.doc(address)?;
        let bytes = doc
            .get_first(self.fields.record)
            .and_then(|value| value.as_bytes())
            .ok_or_else(|| LogStoreError::Corrupt("log document without record".into()))?;
        let mut record =
            LogRecord::decode(bytes).map_err(|err| LogStoreError::Corrupt(err.to_string()))?;
        let time = searcher
            .segment_reader(address.segment_ord)
            .fast_fields()
            .u64("time")?
            .first(address.doc_id)
            .ok_or_else(|| LogStoreError::Corrupt("log document without time".into()))?;
        restore_times(&mut record.record, time);
        Ok(record)
    }
}

/// The value of an attribute or a JSON body field as text, for correlation ids.
pub fn field_text(record: &OtlpLogRecord, key: &str) -> Option<String> {
    if let Some(kv) = record.attributes.iter().find(|kv| kv.key == key) {
        return match attribute_value(kv.value.as_ref(), 0)? {
            OwnedValue::Str(text) => Some(text),
            OwnedValue::I64(n) => Some(n.to_string()),
            OwnedValue::U64(n) => Some(n.to_string()),
            _ => None,
        };
    }
    match json_body(record)?.get(key)? {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The stored records of a segment's documents, as tests of matches read them (without their
/// times, which are not tested); `None` for a record that cannot be read. A few decompressed
/// blocks stay cached: candidates come in doc id order.
fn stored_records(
    segment: &tantivy::SegmentReader,
) -> tantivy::Result<impl FnMut(tantivy::DocId) -> Option<LogRecord> + Send> {
    let store = segment.get_store_reader(4)?;
    let record_field = segment.schema().get_field("record")?;
    Ok(move |doc| {
        let document = store.get::<TantivyDocument>(doc).ok()?;
        let bytes = document.get_first(record_field)?.as_bytes()?;
        LogRecord::decode(bytes).ok()
    })
}

/// The prefix of a trace or span id the index keeps: its first [`ID_PREFIX_CHARS`] characters,
/// lowercase.
pub fn id_prefix(id: &str) -> String {
    id.trim()
        .chars()
        .take(ID_PREFIX_CHARS)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Trace and span ids are indexed by their first [`ID_PREFIX_CHARS`] hex digits, lowercase:
/// random ids cost the term dictionary about a byte per digit it keeps (a span id's 16 digits
/// cost about 17 B, its first 8 about 9 B), and a lookup reads the stored records of the few
/// documents sharing the prefix to confirm the match.
#[derive(Clone, Default)]
struct IdPrefixTokenizer {
    token: Token,
}

struct IdPrefixStream<'a> {
    token: &'a mut Token,
    has_token: bool,
}

impl Tokenizer for IdPrefixTokenizer {
    type TokenStream<'a> = IdPrefixStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &str) -> IdPrefixStream<'a> {
        self.token.reset();
        self.token.offset_to = text.len();
        self.token.text = id_prefix(text);
        IdPrefixStream {
            has_token: !self.token.text.is_empty(),
            token: &mut self.token,
        }
    }
}

impl TokenStream for IdPrefixStream<'_> {
    fn advance(&mut self) -> bool {
        std::mem::take(&mut self.has_token)
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(phrase: &str) -> Vec<String> {
        phrase.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn a_phrase_is_its_words_in_order_and_slop_allows_words_between() {
        let text = "Connection refused, giving up after 3 retries";
        assert!(text_has_phrase(text, &words("connection refused"), 0));
        assert!(text_has_phrase(text, &words("giving up after"), 0));
        assert!(!text_has_phrase(text, &words("refused connection"), 0));
        assert!(!text_has_phrase(text, &words("connection giving"), 0));
        assert!(text_has_phrase(text, &words("connection giving"), 1));
        assert!(!text_has_phrase(text, &words("connection up"), 1));
        assert!(text_has_phrase(text, &words("connection up"), 2));
        // A word repeated: the phrase may start at any of its occurrences.
        assert!(text_has_phrase("a b a c", &words("a c"), 0));
        // Text that is not ASCII goes through the analyzer itself: the same answers.
        let text = "Connexion refusée, connection refused — giving up";
        assert!(text_has_phrase(text, &words("connection refused"), 0));
        assert!(text_has_phrase(text, &words("refusée connection"), 0));
        assert!(!text_has_phrase(text, &words("refused connexion"), 0));
        // Words of 40 bytes or more are not words of the body, in either path.
        let long = "x".repeat(40);
        assert!(text_has_phrase(
            &format!("alpha {long} beta"),
            &words("alpha beta"),
            0
        ));
        assert!(text_has_phrase(
            &format!("alpha {long} beta é"),
            &words("alpha beta"),
            0
        ));
    }

    #[test]
    fn a_json_body_is_searched_by_its_string_values() {
        let record = OtlpLogRecord {
            body: Some(AnyValue {
                value: Some(AnyValueKind::StringValue(
                    r#"{"level":"ERROR","message":"payment declined","code":402}"#.into(),
                )),
            }),
            ..Default::default()
        };
        let fields = json_body(&record);
        let text = body_text(&record, fields.as_ref());
        assert!(text_has_phrase(&text, &words("payment declined"), 0));
        // Keys are not words of the body: they are fields.
        assert!(!text_has_phrase(&text, &words("level error"), 0));
    }
}
