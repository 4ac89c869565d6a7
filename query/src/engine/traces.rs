//! Trace search: find the traces whose spans match a query, newest first, and summarise them.
//!
//! Span-level conditions (service, operation, attributes, span duration, error status, time
//! window) become one tantivy query over the span index. Matching spans are read newest first
//! (by start time, from the fast field), and each trace is keyed by its newest matching span:
//! `(start, trace id)`, descending. That key does not depend on the page, so a cursor holding the
//! last key of a page gives stable, deterministic pagination while ingest goes on. Trace-level
//! conditions (trace duration) are checked on each candidate's summary, computed from all of its
//! spans.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use sightline_collector::span_store::SpanStoreError;
use sightline_collector::SpanStore;
use sightline_proto::{SpanRecord, TraceId};
use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{Order, Term};

use super::query_syntax::{self, Dialect};

/// Candidate traces examined for one page at most; a page that needs more (a trace-level filter
/// that almost nothing passes) ends early with a warning.
const MAX_CANDIDATES: usize = 2_000;

/// What to look for. Every condition is optional; all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct TraceQuery {
    pub service: Option<String>,
    pub operation: Option<String>,
    /// `key = value` attribute conditions on one span (span or resource attributes); a value
    /// that reads as a number or boolean matches those types too, as Jaeger's tags do.
    pub attributes: Vec<(String, String)>,
    /// A query in tantivy's syntax over span and resource attributes, e.g.
    /// `http.status_code:[500 TO 599] AND NOT db.system:redis`.
    pub query: Option<String>,
    pub min_span_duration_nanos: Option<u64>,
    pub max_span_duration_nanos: Option<u64>,
    pub min_trace_duration_nanos: Option<u64>,
    pub max_trace_duration_nanos: Option<u64>,
    /// Only traces where this service calls `service` (any other service when that is absent)
    /// directly: a span of the one has its parent span in the other. An edge of the service map.
    pub parent_service: Option<String>,
    /// Only spans with an ERROR status match.
    pub errors_only: bool,
    /// Span start time window, inclusive.
    pub start_unix_nanos: Option<u64>,
    pub end_unix_nanos: Option<u64>,
    pub limit: usize,
    /// Continue after this key (the last key of the previous page).
    pub after: Option<TraceKey>,
}

/// The sort key of a trace in a search: its newest matching span's start, then its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TraceKey {
    pub start_unix_nanos: u64,
    pub trace_id: TraceId,
}

impl TraceKey {
    /// An opaque cursor string: `<start>-<trace id>`.
    pub fn to_cursor(self) -> String {
        format!("{}-{}", self.start_unix_nanos, self.trace_id)
    }

    pub fn from_cursor(cursor: &str) -> Option<TraceKey> {
        let (start, trace_id) = cursor.split_once('-')?;
        Some(TraceKey {
            start_unix_nanos: start.parse().ok()?,
            trace_id: trace_id.parse().ok()?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error(transparent)]
    Store(#[from] SpanStoreError),
    #[error(transparent)]
    Index(#[from] tantivy::TantivyError),
}

/// One trace in a search answer.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    pub trace_id: TraceId,
    pub key: TraceKey,
    /// Root span's service and operation; `None` when the root has not arrived.
    pub root_service: Option<String>,
    pub root_operation: Option<String>,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub span_count: usize,
    pub error_count: usize,
    /// Spans whose parent is not in the trace.
    pub orphan_count: usize,
    /// Per service: name, span count, error count; sorted by name.
    pub services: Vec<(String, usize, usize)>,
}

impl TraceSummary {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos)
    }

    /// Summarises the (deduplicated) spans of one trace.
    pub fn from_records(key: TraceKey, records: &[SpanRecord]) -> TraceSummary {
        let span_ids: HashSet<&[u8]> = records.iter().map(|r| r.span.span_id.as_slice()).collect();
        let root = records
            .iter()
            .filter(|r| r.span.parent_span_id.is_empty())
            .min_by_key(|r| r.span.start_time_unix_nano);
        let mut services: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut error_count = 0;
        let mut orphan_count = 0;
        for record in records {
            let is_error = record.span.status.as_ref().is_some_and(|s| s.code == 2);
            error_count += usize::from(is_error);
            let parent = record.span.parent_span_id.as_slice();
            orphan_count += usize::from(!parent.is_empty() && !span_ids.contains(parent));
            let entry = services.entry(record.service_name()).or_default();
            entry.0 += 1;
            entry.1 += usize::from(is_error);
        }
        TraceSummary {
            trace_id: key.trace_id,
            key,
            root_service: root.map(|r| r.service_name().to_owned()),
            root_operation: root.map(|r| r.span.name.clone()),
            start_unix_nanos: records
                .iter()
                .map(|r| r.span.start_time_unix_nano)
                .min()
                .unwrap_or(0),
            end_unix_nanos: records
                .iter()
                .map(|r| r.span.end_time_unix_nano)
                .max()
                .unwrap_or(0),
            span_count: records.len(),
            error_count,
            orphan_count,
            services: services
                .into_iter()
                .map(|(name, (spans, errors))| (name.to_owned(), spans, errors))
                .collect(),
        }
    }
}

/// A page of results.
#[derive(Debug, Default)]
pub struct SearchPage {
    /// The traces with their spans, newest first.
    pub traces: Vec<(TraceSummary, Vec<SpanRecord>)>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<TraceKey>,
    pub warnings: Vec<String>,
}

/// Runs a trace search. Blocking.
pub fn search(store: &SpanStore, query: &TraceQuery) -> Result<SearchPage, SearchError> {
    let span_query = span_query(store, query)?;
    let searcher = store.searcher();
    let limit = query.limit.max(1);
    let mut page = SearchPage::default();
    let mut seen: HashSet<TraceId> = HashSet::new();
    let mut fetch = (limit * 16).max(256);
    let mut offset = 0;
    let mut examined = 0;
    'pages: loop {
        let hits = searcher.search(
            &span_query,
            &TopDocs::with_limit(fetch)
                .and_offset(offset)
                .order_by_fast_field::<u64>("start_time_unix_nanos", Order::Desc),
        )?;
        let exhausted = hits.len() < fetch;
        for (start, address) in hits {
            let segment = searcher.segment_reader(address.segment_ord);
            let Some(column) = segment.fast_fields().bytes("trace_id")? else {
                continue;
            };
            let mut bytes = Vec::new();
            let Some(ord) = column.term_ords(address.doc_id).next() else {
                continue;
            };
            column
                .ord_to_bytes(ord, &mut bytes)
                .map_err(tantivy::TantivyError::from)?;
            let Ok(trace_id) = TraceId::try_from(bytes.as_slice()) else {
                continue;
            };
            if !seen.insert(trace_id) {
                continue;
            }
            let key = TraceKey {
                start_unix_nanos: start.unwrap_or(0),
                trace_id,
            };
            if query.after.is_some_and(|after| key >= after) {
                continue;
            }
            if page.traces.len() == limit {
                page.next = page.traces.last().map(|(summary, _)| summary.key);
                break 'pages;
            }
            examined += 1;
            if examined > MAX_CANDIDATES {
                page.next = page
                    .traces
                    .last()
                    .map(|(summary, _)| summary.key)
                    .or(Some(key));
                page.warnings.push(format!(
                    "stopped after examining {MAX_CANDIDATES} traces; narrow the search or ask for the next page"
                ));
                break 'pages;
            }
            let records = store.get_trace(trace_id)?;
            let summary = TraceSummary::from_records(key, &records);
            let duration = summary.duration_nanos();
            if query
                .min_trace_duration_nanos
                .is_some_and(|min| duration < min)
                || query
                    .max_trace_duration_nanos
                    .is_some_and(|max| duration > max)
            {
                continue;
            }
            if let Some(parent) = query.parent_service.as_deref() {
                if !calls(&records, parent, query.service.as_deref()) {
                    continue;
                }
            }
            page.traces.push((summary, records));
        }
        if exhausted {
            break;
        }
        offset += fetch;
        fetch *= 2;
    }
    Ok(page)
}

/// Whether a span of `child` (any service but `parent` when `None`) has its parent span in
/// service `parent`.
fn calls(records: &[SpanRecord], parent: &str, child: Option<&str>) -> bool {
    let service_of: HashMap<&[u8], &str> = records
        .iter()
        .map(|r| (r.span.span_id.as_slice(), r.service_name()))
        .collect();
    records.iter().any(|r| {
        let service = r.service_name();
        service != parent
            && child.is_none_or(|child| service == child)
            && service_of.get(r.span.parent_span_id.as_slice()) == Some(&parent)
    })
}

/// The span-level part of a search as one tantivy query.
fn span_query(store: &SpanStore, query: &TraceQuery) -> Result<Box<dyn Query>, SearchError> {
    let fields = store.fields();
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    let term_query =
        |term: Term| -> Box<dyn Query> { Box::new(TermQuery::new(term, IndexRecordOption::Basic)) };
    if let Some(service) = query.service.as_deref().filter(|s| !s.is_empty()) {
        clauses.push((
            Occur::Must,
            term_query(Term::from_field_text(fields.service, service)),
        ));
    }
    if let Some(operation) = query.operation.as_deref().filter(|s| !s.is_empty()) {
        clauses.push((
            Occur::Must,
            term_query(Term::from_field_text(fields.operation, operation)),
        ));
    }
    for (key, value) in &query.attributes {
        let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let path = |append: &dyn Fn(&mut Term)| {
            let mut term = Term::from_field_json_path(fields.attributes, key, true);
            append(&mut term);
            term
        };
        alternatives.push((
            Occur::Should,
            term_query(path(&|t| t.append_type_and_str(value))),
        ));
        if let Ok(n) = value.parse::<i64>() {
            alternatives.push((
                Occur::Should,
                term_query(path(&|t| t.append_type_and_fast_value(n))),
            ));
            if n >= 0 {
                alternatives.push((
                    Occur::Should,
                    term_query(path(&|t| t.append_type_and_fast_value(n as u64))),
                ));
            }
        }
        if let Ok(x) = value.parse::<f64>() {
            alternatives.push((
                Occur::Should,
                term_query(path(&|t| t.append_type_and_fast_value(x))),
            ));
        }
        if let Ok(flag) = value.parse::<bool>() {
            alternatives.push((
                Occur::Should,
                term_query(path(&|t| t.append_type_and_fast_value(flag))),
            ));
        }
        clauses.push((Occur::Must, Box::new(BooleanQuery::new(alternatives))));
    }
    if let Some(text) = query.query.as_deref().filter(|q| !q.trim().is_empty()) {
        let mut parser = QueryParser::for_index(store.index(), vec![fields.attributes]);
        parser.set_conjunction_by_default();
        parser.allow_regexes();
        clauses.push((
            Occur::Must,
            query_syntax::parse(&parser, &store.index().schema(), text, &SPAN_DIALECT)
                .map_err(|err| SearchError::InvalidQuery(err.to_string()))?,
        ));
    }
    let range = |field, min: Option<u64>, max: Option<u64>| -> Option<Box<dyn Query>> {
        if min.is_none() && max.is_none() {
            return None;
        }
        let bound = |value: Option<u64>| {
            value.map_or(Bound::Unbounded, |v| {
                Bound::Included(Term::from_field_u64(field, v))
            })
        };
        Some(Box::new(RangeQuery::new(bound(min), bound(max))))
    };
    if let Some(q) = range(
        fields.duration_nanos,
        query.min_span_duration_nanos,
        query.max_span_duration_nanos,
    ) {
        clauses.push((Occur::Must, q));
    }
    if let Some(q) = range(
        fields.start_time_unix_nanos,
        query.start_unix_nanos,
        query.end_unix_nanos,
    ) {
        clauses.push((Occur::Must, q));
    }
    if query.errors_only {
        clauses.push((
            Occur::Must,
            term_query(Term::from_field_u64(fields.status_code, 2)),
        ));
    }
    if clauses.is_empty() {
        return Ok(Box::new(AllQuery));
    }
    Ok(Box::new(BooleanQuery::new(clauses)))
}

/// Fields of the span index that a query may name directly; every other `name:` is an attribute.
const DIRECT_FIELDS: &[&str] = &[
    "service",
    "operation",
    "kind",
    "status_code",
    "duration_nanos",
];

/// The span index's query dialect: `http.status_code:500` means the attribute.
const SPAN_DIALECT: Dialect = Dialect {
    map_field: span_field,
    json_fields: &["attributes"],
    map_bound: |_, bound| Ok(bound),
    phrases_without_positions: None,
    id_prefixes: None,
};

fn span_field(field: &str) -> String {
    if DIRECT_FIELDS.contains(&field) || field.starts_with("attributes.") {
        field.to_owned()
    } else {
        format!("attributes.{field}")
    }
}

/// The fields of the span index's segments (one span index per process).
static SPAN_SEGMENT_FIELDS: std::sync::LazyLock<super::fields::SegmentFields> =
    std::sync::LazyLock::new(super::fields::SegmentFields::default);

/// The span and resource attributes of the spans of `service` (all services when `None`)
/// that started in `[start, end]`, with their top values: what trace search can ask for.
pub fn attributes(
    store: &SpanStore,
    service: Option<&str>,
    start_unix_nanos: u64,
    end_unix_nanos: u64,
    values_per_field: usize,
) -> Result<Vec<super::fields::FieldInfo>, SearchError> {
    let fields = store.fields();
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(
        Occur::Must,
        Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(
                fields.start_time_unix_nanos,
                start_unix_nanos,
            )),
            Bound::Included(Term::from_field_u64(
                fields.start_time_unix_nanos,
                end_unix_nanos,
            )),
        )),
    )];
    if let Some(service) = service {
        clauses.push((
            Occur::Must,
            Box::new(TermQuery::new(
                Term::from_field_text(fields.service, service),
                IndexRecordOption::Basic,
            )),
        ));
    }
    let public_name = |name: &str| name.strip_prefix("attributes.").map(str::to_owned);
    let catalog = super::fields::Catalog {
        public_name: &public_name,
        without_values: &[],
        segment_fields: &SPAN_SEGMENT_FIELDS,
    };
    Ok(super::fields::list(
        &store.searcher(),
        &BooleanQuery::new(clauses),
        true,
        values_per_field,
        &catalog,
    )?)
}
