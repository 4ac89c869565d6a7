//! RED metrics (rate, errors, duration) per service, optionally per operation, in time
//! buckets, computed from the spans of a time range. They feed Jaeger UI's Monitor tab
//! (`/api/metrics/{calls,errors,latencies}`).
//!
//! Computed by reading the fast fields of the matching spans; the cost grows with the spans in
//! the range (span-derived metrics at ingest, issue 4, will make it constant).

use std::collections::BTreeMap;
use std::ops::Bound;

use sightline_collector::SpanStore;
use tantivy::collector::DocSetCollector;
use tantivy::columnar::{BytesColumn, StrColumn};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

use super::columns::{Dictionary, Interner};

const STATUS_ERROR: u64 = 2;

#[derive(Debug, Clone)]
pub struct RedQuery {
    pub services: Vec<String>,
    pub group_by_operation: bool,
    /// OTLP span kinds to count (Jaeger's default: server).
    pub span_kinds: Vec<i32>,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub step_nanos: u64,
}

/// One bucket of one series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedBucket {
    pub calls: u64,
    pub errors: u64,
    pub durations_nanos: Vec<u64>,
}

/// The buckets of one service (and operation), keyed by bucket start.
#[derive(Debug, Clone, PartialEq)]
pub struct RedSeries {
    pub service: String,
    pub operation: Option<String>,
    pub buckets: BTreeMap<u64, RedBucket>,
}

impl RedBucket {
    /// The `q` quantile of the durations (nearest rank), if any.
    pub fn quantile_nanos(&mut self, q: f64) -> Option<u64> {
        if self.durations_nanos.is_empty() {
            return None;
        }
        self.durations_nanos.sort_unstable();
        let rank = ((self.durations_nanos.len() as f64 * q).ceil() as usize)
            .clamp(1, self.durations_nanos.len());
        Some(self.durations_nanos[rank - 1])
    }
}

/// Computes the series of `query`. Blocking.
pub fn red_series(store: &SpanStore, query: &RedQuery) -> tantivy::Result<Vec<RedSeries>> {
    let fields = store.fields();
    let term =
        |t: Term| -> Box<dyn Query> { Box::new(TermQuery::new(t, IndexRecordOption::Basic)) };
    let any_of = |terms: Vec<Term>| -> Box<dyn Query> {
        Box::new(BooleanQuery::new(
            terms
                .into_iter()
                .map(|t| (Occur::Should, term(t)))
                .collect(),
        ))
    };
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(
        Occur::Must,
        Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(
                fields.start_time_unix_nanos,
                query.start_unix_nanos,
            )),
            Bound::Included(Term::from_field_u64(
                fields.start_time_unix_nanos,
                query.end_unix_nanos,
            )),
        )),
    )];
    if !query.services.is_empty() {
        clauses.push((
            Occur::Must,
            any_of(
                query
                    .services
                    .iter()
                    .map(|s| Term::from_field_text(fields.service, s))
                    .collect(),
            ),
        ));
    }
    if !query.span_kinds.is_empty() {
        clauses.push((
            Occur::Must,
            any_of(
                query
                    .span_kinds
                    .iter()
                    .map(|k| Term::from_field_u64(fields.kind, (*k).max(0) as u64))
                    .collect(),
            ),
        ));
    }
    let searcher = store.searcher();
    let docs = searcher.search(&BooleanQuery::new(clauses), &DocSetCollector)?;
    let mut by_segment: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for address in docs {
        by_segment
            .entry(address.segment_ord)
            .or_default()
            .push(address.doc_id);
    }
    let step = query.step_nanos.max(1);
    let mut names = Interner::default();
    let mut series: BTreeMap<(u32, Option<u32>), BTreeMap<u64, RedBucket>> = BTreeMap::new();
    for (segment_ord, docs) in by_segment {
        let segment = searcher.segment_reader(segment_ord);
        let ff = segment.fast_fields();
        let start = ff.u64("start_time_unix_nanos")?;
        let duration = ff.u64("duration_nanos")?;
        let status = ff.u64("status_code")?;
        let text = |name: &str| -> tantivy::Result<Dictionary> {
            Dictionary::load(
                ff.str(name)?
                    .map(|column: StrColumn| BytesColumn::clone(&column)),
            )
        };
        let services = text("service")?;
        let service_ids = services.intern(&mut names);
        let operations = if query.group_by_operation {
            Some(text("operation")?)
        } else {
            None
        };
        let operation_ids = operations.as_ref().map(|d| d.intern(&mut names));
        for doc in docs {
            let Some(begin) = start.first(doc) else {
                continue;
            };
            let Some(service) = services.first_ord(doc).map(|ord| service_ids[ord]) else {
                continue;
            };
            let operation = operations
                .as_ref()
                .zip(operation_ids.as_ref())
                .and_then(|(dictionary, ids)| dictionary.first_ord(doc).map(|ord| ids[ord]));
            let bucket = query.start_unix_nanos + (begin - query.start_unix_nanos) / step * step;
            let entry = series
                .entry((service, operation))
                .or_default()
                .entry(bucket)
                .or_default();
            entry.calls += 1;
            entry.errors += u64::from(status.first(doc) == Some(STATUS_ERROR));
            entry.durations_nanos.push(duration.first(doc).unwrap_or(0));
        }
    }
    let mut series: Vec<RedSeries> = series
        .into_iter()
        .map(|((service, operation), buckets)| RedSeries {
            service: names.name(service).to_owned(),
            operation: operation.map(|id| names.name(id).to_owned()),
            buckets,
        })
        .collect();
    series.sort_by(|a, b| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)));
    Ok(series)
}
