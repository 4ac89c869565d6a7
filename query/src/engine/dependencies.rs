//! The dependency graph. It is kept by the collector's [`ServiceGraph`] as per-minute rollups
//! built at ingest; this module rebuilds the minutes the rollups are missing (after `kill -9`,
//! or for a data directory written before rollups existed) from the span index, reading the
//! fast fields of the spans in bulk.

use sightline_collector::service_graph::{
    span_key, NodeKind, Rebuild, ServiceGraph, SpanFacts, KIND_CLIENT, KIND_PRODUCER,
    PEER_ATTRIBUTES,
};
pub use sightline_collector::service_graph::{DependencyGraph, DependencyQuery};
use sightline_collector::SpanStore;
use tantivy::columnar::{BytesColumn, Column, StrColumn};
use tantivy::SegmentReader;

use super::columns::Dictionary;

const STATUS_ERROR: u64 = 2;

/// The columns read for each segment.
struct Columns {
    start: Column<u64>,
    duration: Column<u64>,
    kind: Column<u64>,
    status: Column<u64>,
    trace_id: Dictionary,
    span_id: Dictionary,
    parent: Dictionary,
    service: Dictionary,
    peers: Vec<(NodeKind, Dictionary)>,
}

impl Columns {
    fn of(segment: &SegmentReader) -> tantivy::Result<Columns> {
        let ff = segment.fast_fields();
        let text = |path: &str| -> tantivy::Result<Dictionary> {
            Dictionary::load(
                ff.str(path)?
                    .map(|column: StrColumn| BytesColumn::clone(&column)),
            )
        };
        Ok(Columns {
            start: ff.u64("start_time_unix_nanos")?,
            duration: ff.u64("duration_nanos")?,
            kind: ff.u64("kind")?,
            status: ff.u64("status_code")?,
            trace_id: Dictionary::load(ff.bytes("trace_id")?)?,
            span_id: Dictionary::load(ff.bytes("span_id")?)?,
            parent: Dictionary::load(ff.bytes("parent_span_id")?)?,
            service: text("service")?,
            peers: PEER_ATTRIBUTES
                .iter()
                .map(|(key, kind)| Ok((*kind, text(&format!("attributes.{key}"))?)))
                .collect::<tantivy::Result<_>>()?,
        })
    }
}

/// Interns a dictionary's values as names of the graph.
fn intern(dictionary: &Dictionary, rebuild: &mut Rebuild<'_>) -> Vec<u32> {
    dictionary
        .values
        .iter()
        .map(|value| rebuild.intern(&String::from_utf8_lossy(value)))
        .collect()
}

/// Rebuilds the graph's missing minutes from the span index; run once at start, after the
/// write-ahead log is replayed and before ingest. Returns the number of spans read.
pub fn rebuild(store: &SpanStore, graph: &ServiceGraph) -> tantivy::Result<u64> {
    let from = graph.rebuild_from_nanos();
    let searcher = store.searcher();
    graph.rebuild(|rebuild| {
        for segment in searcher.segment_readers() {
            let starts = segment.fast_fields().u64("start_time_unix_nanos")?;
            if segment.num_docs() == 0 || starts.max_value() < from {
                continue;
            }
            feed_segment(segment, from, rebuild)?;
        }
        Ok(())
    })
}

fn feed_segment(
    segment: &SegmentReader,
    from: u64,
    rebuild: &mut Rebuild<'_>,
) -> tantivy::Result<()> {
    let columns = Columns::of(segment)?;
    let service_ids = intern(&columns.service, rebuild);
    let peer_ids: Vec<Vec<u32>> = columns
        .peers
        .iter()
        .map(|(_, dictionary)| intern(dictionary, rebuild))
        .collect();
    for doc in segment.doc_ids_alive() {
        let Some(start) = columns.start.first(doc).filter(|start| *start >= from) else {
            continue;
        };
        let (Some(trace_id), Some(span_id), Some(service)) = (
            columns.trace_id.first(doc),
            columns.span_id.first(doc),
            columns.service.first_ord(doc),
        ) else {
            continue;
        };
        let kind = columns.kind.first(doc).unwrap_or(0) as u8;
        // Only client and producer spans call peers that do not report spans.
        let peer = if matches!(kind, KIND_CLIENT | KIND_PRODUCER) {
            columns
                .peers
                .iter()
                .zip(&peer_ids)
                .find_map(|((node_kind, dictionary), ids)| {
                    let ord = dictionary.first_ord(doc)?;
                    (!dictionary.values[ord].is_empty()).then(|| (*node_kind, ids[ord]))
                })
        } else {
            None
        };
        rebuild.span(SpanFacts {
            key: span_key(trace_id, span_id),
            parent: columns
                .parent
                .first(doc)
                .filter(|parent| !parent.is_empty())
                .map(|parent| span_key(trace_id, parent)),
            service: service_ids[service],
            kind,
            start_nanos: start,
            duration_nanos: columns.duration.first(doc).unwrap_or(0),
            error: columns.status.first(doc) == Some(STATUS_ERROR),
            peer,
        });
    }
    Ok(())
}
