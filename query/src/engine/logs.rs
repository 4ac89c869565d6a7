//! Log search over the log index: newest first with a stable cursor, volume per time bucket and
//! severity (tantivy aggregations), live tail by record id, every log of a trace, and the
//! field names and top values that autocompletion offers.
//!
//! Records are ordered by `(time, id)`: the id grows with ingest order and is unique, so two
//! records with the same timestamp still have a fixed order and a cursor holding the last key of
//! a page resumes exactly after it, however much is ingested meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::LazyLock;

use serde_json::json;
use sightline_collector::log_store::{
    body_analyzer, field_text, id_prefix, LogFields, LogStoreError,
};
use sightline_collector::{LogStore, SpanStore};
use sightline_proto::log::LogRecord;
use sightline_proto::TraceId;
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::agg_result::AggregationResults;
use tantivy::aggregation::AggregationCollector;
use tantivy::collector::Collector;
use tantivy::collector::TopDocs;
use tantivy::query::{
    AllQuery, BooleanQuery, EnableScoring, Occur, Query, QueryParser, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, DocId, Searcher, SegmentReader, Term};

use super::fields::{Catalog, FieldInfo, SegmentFields};
use super::query_syntax::{self, Dialect, IdPrefixes, PhrasesWithoutPositions, QueryError};
use crate::time::parse_time_nanos;

/// Logs of one trace returned at most.
pub const MAX_TRACE_LOGS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum LogSearchError {
    #[error("invalid query {0}")]
    InvalidQuery(QueryError),
    #[error(transparent)]
    Store(#[from] LogStoreError),
    #[error(transparent)]
    Index(#[from] tantivy::TantivyError),
}

/// The sort key of a record: its time, then its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogKey {
    pub time_unix_nanos: u64,
    pub id: u64,
}

impl LogKey {
    /// An opaque cursor string: `<time>-<id>`.
    pub fn to_cursor(self) -> String {
        format!("{}-{}", self.time_unix_nanos, self.id)
    }

    pub fn from_cursor(cursor: &str) -> Option<LogKey> {
        let (time, id) = cursor.split_once('-')?;
        Some(LogKey {
            time_unix_nanos: time.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

/// One record found.
#[derive(Debug, Clone)]
pub struct LogHit {
    pub key: LogKey,
    pub record: LogRecord,
}

/// Fields of the log index a query names directly; `resource.x` is a resource attribute and
/// every other name an attribute (or a field of a JSON body).
const DIRECT_FIELDS: &[&str] = &[
    "time",
    "severity",
    "severity_number",
    "service",
    "body",
    "trace_id",
    "span_id",
    "scope",
    "id",
];

fn log_field(field: &str) -> String {
    match field {
        "level" => return "severity".into(),
        "traceId" | "trace.id" => return "trace_id".into(),
        "spanId" | "span.id" => return "span_id".into(),
        "service.name" => return "service".into(),
        _ => {}
    }
    if DIRECT_FIELDS.contains(&field)
        || field.starts_with("attributes.")
        || field.starts_with("resource.")
    {
        field.to_owned()
    } else {
        format!("attributes.{field}")
    }
}

/// Times in a query may be RFC 3339 (`time:[2026-11-23T10:00:00Z TO *]`).
fn log_bound(field: &str, bound: String) -> Result<String, String> {
    if field != "time" || bound == "*" {
        return Ok(bound);
    }
    parse_time_nanos(&bound)
        .map(|nanos| nanos.to_string())
        .ok_or_else(|| format!("time {bound:?}: expected an RFC 3339 time or unix nanoseconds"))
}

const LOG_DIALECT: Dialect = Dialect {
    map_field: log_field,
    json_fields: &["attributes", "resource"],
    map_bound: log_bound,
    phrases_without_positions: Some(PhrasesWithoutPositions {
        field: "body",
        analyzer: body_analyzer,
        check: LogStore::body_phrase_check,
    }),
    id_prefixes: Some(IdPrefixes {
        fields: &["trace_id", "span_id"],
        prefix: id_prefix,
        check: LogStore::id_check,
    }),
};

/// The tantivy query for a user query (empty: everything) within a time window.
pub fn log_query(
    store: &LogStore,
    text: Option<&str>,
    start: Option<u64>,
    end: Option<u64>,
) -> Result<Box<dyn Query>, LogSearchError> {
    let fields = store.fields();
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    if let Some(text) = text.filter(|q| !q.trim().is_empty()) {
        let mut parser = QueryParser::for_index(store.index(), vec![fields.body]);
        parser.set_conjunction_by_default();
        parser.allow_regexes();
        let query = query_syntax::parse(&parser, &store.index().schema(), text, &LOG_DIALECT)
            .map_err(LogSearchError::InvalidQuery)?;
        clauses.push((Occur::Must, query));
    }
    if start.is_some() || end.is_some() {
        clauses.push((Occur::Must, u64_range(fields.time, start, end)));
    }
    Ok(match clauses.len() {
        0 => Box::new(AllQuery),
        _ => Box::new(BooleanQuery::new(clauses)),
    })
}

/// The documents whose `field` column is within `[start, end]` (`None`: unbounded).
fn u64_range(field: Field, start: Option<u64>, end: Option<u64>) -> Box<dyn Query> {
    let bound = |value: Option<u64>| {
        value.map_or(Bound::Unbounded, |v| {
            Bound::Included(Term::from_field_u64(field, v))
        })
    };
    Box::new(RangeQuery::new(bound(start), bound(end)))
}

/// Records at `key` or after it in `(time, id)` order.
fn from_key(fields: &LogFields, key: LogKey) -> Box<dyn Query> {
    let time = key.time_unix_nanos;
    let same_time_from_id = BooleanQuery::new(vec![
        (Occur::Must, u64_range(fields.time, Some(time), Some(time))),
        (Occur::Must, u64_range(fields.id, Some(key.id), None)),
    ]);
    let mut either: Vec<(Occur, Box<dyn Query>)> =
        vec![(Occur::Should, Box::new(same_time_from_id))];
    if let Some(later) = time.checked_add(1) {
        either.push((Occur::Should, u64_range(fields.time, Some(later), None)));
    }
    Box::new(BooleanQuery::new(either))
}

/// `(time, id)` of each document, or `None` for documents outside `(.., before)`.
fn keys(
    segment: &SegmentReader,
    before: Option<LogKey>,
) -> impl FnMut(DocId) -> Option<LogKey> + 'static {
    let fast = segment.fast_fields();
    let time = fast.u64("time").ok();
    let id = fast.u64("id").ok();
    move |doc| {
        let key = LogKey {
            time_unix_nanos: time.as_ref()?.first(doc)?,
            id: id.as_ref()?.first(doc)?,
        };
        before.is_none_or(|before| key < before).then_some(key)
    }
}

/// A page of records.
#[derive(Debug, Default)]
pub struct LogPage {
    pub hits: Vec<LogHit>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<LogKey>,
}

/// The newest `limit` records matching `query`, older than `before` when given.
pub fn search(
    store: &LogStore,
    query: &dyn Query,
    limit: usize,
    before: Option<LogKey>,
) -> Result<LogPage, LogSearchError> {
    let searcher = store.searcher();
    let limit = limit.max(1);
    let narrowed: Box<dyn Query>;
    let query = match before {
        // Only segments' documents up to the cursor's time are scored at all.
        Some(before) => {
            narrowed = Box::new(BooleanQuery::new(vec![
                (Occur::Must, query.box_clone()),
                (
                    Occur::Must,
                    u64_range(store.fields().time, None, Some(before.time_unix_nanos)),
                ),
            ]));
            narrowed.as_ref()
        }
        None => query,
    };
    let found = newest_first(&searcher, query, limit + 1, before)?;
    let mut hits = read_hits(store, &searcher, found)?;
    let next = if hits.len() > limit {
        hits.truncate(limit);
        hits.last().map(|hit| hit.key)
    } else {
        None
    };
    Ok(LogPage { hits, next })
}

/// The `count` newest matches by `(time, id)`, older than `before`. Segments are searched newest
/// first, and once `count` matches are newer than everything a segment holds, it and the older
/// ones are not searched at all: the newest page of a common term, or of a phrase checked on
/// stored records, costs the newest segments only.
fn newest_first(
    searcher: &Searcher,
    query: &dyn Query,
    count: usize,
    before: Option<LogKey>,
) -> tantivy::Result<Vec<(Option<LogKey>, DocAddress)>> {
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    let collector =
        TopDocs::with_limit(count).order_by(move |segment: &SegmentReader| keys(segment, before));
    let mut segments = Vec::new();
    for (ord, segment) in searcher.segment_readers().iter().enumerate() {
        let newest = segment.fast_fields().u64("time")?.max_value();
        segments.push((newest, ord as u32, segment));
    }
    segments.sort_by_key(|segment| std::cmp::Reverse(segment.0));
    let mut found: Vec<(Option<LogKey>, DocAddress)> = Vec::new();
    for (newest, ord, segment) in segments {
        let full_and_newer = found.len() >= count
            && found[count - 1]
                .0
                .is_some_and(|last| last.time_unix_nanos > newest);
        if full_and_newer {
            break;
        }
        let fruit = collector.collect_segment(weight.as_ref(), ord, segment)?;
        found.extend(collector.merge_fruits(vec![fruit])?);
        found.sort_by_key(|hit| std::cmp::Reverse(hit.0));
        found.truncate(count);
    }
    Ok(found)
}

fn read_hits(
    store: &LogStore,
    searcher: &Searcher,
    found: Vec<(Option<LogKey>, DocAddress)>,
) -> Result<Vec<LogHit>, LogSearchError> {
    found
        .into_iter()
        .filter_map(|(key, address)| Some((key?, address)))
        .map(|(key, address)| {
            Ok(LogHit {
                key,
                record: store.record(searcher, address)?,
            })
        })
        .collect()
}

/// Records matching `query` ingested after the record id `after`, oldest first, at most
/// `limit`: what live tail sends next.
pub fn after_id(
    store: &LogStore,
    query: &dyn Query,
    after: u64,
    limit: usize,
) -> Result<Vec<LogHit>, LogSearchError> {
    let searcher = store.searcher();
    let id_field = store.fields().id;
    let newer = BooleanQuery::new(vec![
        (Occur::Must, query.box_clone()),
        (
            Occur::Must,
            Box::new(RangeQuery::new(
                Bound::Excluded(Term::from_field_u64(id_field, after)),
                Bound::Unbounded,
            )),
        ),
    ]);
    // Smallest ids first: the sort key is the id's complement.
    let found = searcher.search(
        &newer,
        &TopDocs::with_limit(limit.max(1)).order_by(|segment: &SegmentReader| {
            let mut key = keys(segment, None);
            move |doc| key(doc).map(|key| (u64::MAX - key.id, key))
        }),
    )?;
    let found = found
        .into_iter()
        .map(|(key, address)| (key.map(|(_, key)| key), address))
        .collect();
    read_hits(store, &searcher, found)
}

/// The largest record id in the index (0 when empty): where a new tail starts.
pub fn last_id(store: &LogStore) -> Result<u64, LogSearchError> {
    let searcher = store.searcher();
    let mut last = 0;
    for segment in searcher.segment_readers() {
        if let Ok(column) = segment.fast_fields().u64("id") {
            last = last.max(column.max_value());
        }
    }
    Ok(last)
}

/// A query for records whose correlation-id fields (any of `keys`) hold `value`, on a JSON
/// attributes field.
pub fn correlation_query(attributes: Field, keys: &[String], value: &str) -> Box<dyn Query> {
    let clauses = keys
        .iter()
        .map(|key| {
            let mut term = Term::from_field_json_path(attributes, key, true);
            term.append_type_and_str(value);
            (
                Occur::Should,
                Box::new(TermQuery::new(term, IndexRecordOption::Basic)) as Box<dyn Query>,
            )
        })
        .collect();
    Box::new(BooleanQuery::new(clauses))
}

/// The correlation ids of a record: `(key, value)` for each configured key it carries.
pub fn correlation_ids(store: &LogStore, record: &LogRecord) -> Vec<(String, String)> {
    store
        .settings()
        .correlation_keys
        .iter()
        .filter_map(|key| Some((key.clone(), field_text(&record.record, key)?)))
        .collect()
}

/// Every log of a trace, oldest first: those carrying its trace id, and those without a trace
/// id that carry one of `correlation_ids` (found on the trace's spans). Returns whether the
/// list was cut at [`MAX_TRACE_LOGS`].
pub fn trace_logs(
    store: &LogStore,
    trace_id: TraceId,
    correlation_ids: &BTreeSet<String>,
) -> Result<(Vec<LogHit>, bool), LogSearchError> {
    let fields = store.fields();
    let mut alternatives: Vec<(Occur, Box<dyn Query>)> = vec![(
        Occur::Should,
        Box::new(TermQuery::new(
            store.id_term(fields.trace_id, &trace_id.to_string()),
            IndexRecordOption::Basic,
        )),
    )];
    let keys = &store.settings().correlation_keys;
    for value in correlation_ids {
        alternatives.push((
            Occur::Should,
            correlation_query(fields.attributes, keys, value),
        ));
    }
    let query = BooleanQuery::new(alternatives);
    let searcher = store.searcher();
    let found = searcher.search(
        &query,
        &TopDocs::with_limit(MAX_TRACE_LOGS + 1).order_by(|segment: &SegmentReader| {
            let mut key = keys_of(segment);
            move |doc| key(doc).map(|key| (u64::MAX - key.time_unix_nanos, u64::MAX - key.id, key))
        }),
    )?;
    let truncated = found.len() > MAX_TRACE_LOGS;
    let found = found
        .into_iter()
        .take(MAX_TRACE_LOGS)
        .map(|(key, address)| (key.map(|(_, _, key)| key), address))
        .collect();
    let hits = read_hits(store, &searcher, found)?
        .into_iter()
        // A log with another trace id is not this trace's, whatever its correlation id says.
        .filter(|hit| hit.record.trace_id().is_none_or(|id| id == trace_id))
        .collect();
    Ok((hits, truncated))
}

fn keys_of(segment: &SegmentReader) -> impl FnMut(DocId) -> Option<LogKey> + 'static {
    keys(segment, None)
}

/// The trace that carries a correlation id: the newest span with one of `keys` = `value`.
pub fn trace_for_correlation(
    spans: &SpanStore,
    keys: &[String],
    value: &str,
) -> Result<Option<TraceId>, LogSearchError> {
    let searcher = spans.searcher();
    let query = correlation_query(spans.fields().attributes, keys, value);
    let found = searcher.search(
        &query,
        &TopDocs::with_limit(1)
            .order_by_fast_field::<u64>("start_time_unix_nanos", tantivy::Order::Desc),
    )?;
    let Some((_, address)) = found.first() else {
        return Ok(None);
    };
    let segment = searcher.segment_reader(address.segment_ord);
    let Some(column) = segment.fast_fields().bytes("trace_id")? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    let Some(ord) = column.term_ords(address.doc_id).next() else {
        return Ok(None);
    };
    column
        .ord_to_bytes(ord, &mut bytes)
        .map_err(tantivy::TantivyError::from)?;
    Ok(TraceId::try_from(bytes.as_slice()).ok())
}

/// Counts per time bucket, split by severity.
#[derive(Debug, Default)]
pub struct Histogram {
    pub interval_nanos: u64,
    /// Bucket start, total, and count per severity; every bucket of the window, in order.
    pub buckets: Vec<(u64, u64, BTreeMap<String, u64>)>,
}

/// Volume of `query` in `[start, end]`, in buckets of `interval_nanos`.
pub fn histogram(
    store: &LogStore,
    query: &dyn Query,
    start: u64,
    end: u64,
    interval_nanos: u64,
) -> Result<Histogram, LogSearchError> {
    let interval = interval_nanos.max(1);
    let first = start - start % interval;
    let request = json!({
        "volume": {
            "histogram": {
                "field": "time",
                "interval": interval as f64,
                "offset": 0.0,
                "min_doc_count": 0,
                "extended_bounds": {"min": first as f64, "max": end as f64},
            },
            "aggs": {"severity": {"terms": {"field": "severity", "size": 10}}}
        }
    });
    let aggregations: Aggregations = serde_json::from_value(request)
        .map_err(|err| tantivy::TantivyError::InvalidArgument(err.to_string()))?;
    let collector = AggregationCollector::from_aggs(aggregations, Default::default());
    let results: AggregationResults = store.searcher().search(query, &collector)?;
    let results = serde_json::to_value(results)
        .map_err(|err| tantivy::TantivyError::InternalError(err.to_string()))?;
    // f64 keys are rounded near 2^60 nanoseconds: each count goes to the bucket it is nearest.
    let count = ((end.saturating_sub(first)) / interval + 1) as usize;
    let mut buckets: Vec<(u64, u64, BTreeMap<String, u64>)> = (0..count)
        .map(|i| (first + i as u64 * interval, 0, BTreeMap::new()))
        .collect();
    for bucket in results["volume"]["buckets"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = bucket["key"].as_f64().unwrap_or(0.0);
        let position = ((key - first as f64) / interval as f64).round();
        if position < 0.0 || position as usize >= buckets.len() {
            continue;
        }
        let slot = &mut buckets[position as usize];
        slot.1 += bucket["doc_count"].as_u64().unwrap_or(0);
        for severity in bucket["severity"]["buckets"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = severity["key"].as_str().unwrap_or("UNSPECIFIED").to_owned();
            *slot.2.entry(name).or_default() += severity["doc_count"].as_u64().unwrap_or(0);
        }
    }
    Ok(Histogram {
        interval_nanos: interval,
        buckets,
    })
}

/// The fields of the log index's segments (one log index per process).
static LOG_SEGMENT_FIELDS: LazyLock<SegmentFields> = LazyLock::new(SegmentFields::default);

/// The fields of the log index, with their top values among the newest `sample` records
/// matching `query`, and how many records those are. A sample, as Kibana's field list takes
/// one: counting every match of a day costs seconds at millions of lines, and the values are
/// for autocompletion.
pub fn fields(
    store: &LogStore,
    query: &dyn Query,
    values_per_field: usize,
    sample: usize,
) -> Result<(Vec<FieldInfo>, usize), LogSearchError> {
    let searcher = store.searcher();
    let sample = sample.max(1);
    let newest = newest_first(&searcher, query, sample, None)?;
    let sampled = newest.len();
    let narrowed: Box<dyn Query>;
    let (query, every_match) = match newest.last().and_then(|(key, _)| *key) {
        // As many matches as the sample or more: only those from its oldest on.
        Some(oldest) if sampled == sample => {
            narrowed = Box::new(BooleanQuery::new(vec![
                (Occur::Must, query.box_clone()),
                (Occur::Must, from_key(store.fields(), oldest)),
            ]));
            (narrowed.as_ref(), false)
        }
        _ => (query, true),
    };
    let public_name = |name: &str| {
        let listed = name.starts_with("attributes.")
            || name.starts_with("resource.")
            || ["severity", "service", "trace_id", "span_id"].contains(&name);
        // Attributes are named as queries name them.
        listed.then(|| name.strip_prefix("attributes.").unwrap_or(name).to_owned())
    };
    let catalog = Catalog {
        public_name: &public_name,
        without_values: &["trace_id", "span_id"],
        segment_fields: &LOG_SEGMENT_FIELDS,
    };
    let fields = super::fields::list(&searcher, query, every_match, values_per_field, &catalog)?;
    Ok((fields, sampled))
}
