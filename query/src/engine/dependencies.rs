//! The dependency graph: who calls whom, how often, how slowly, how often it fails, computed
//! from the spans of a time range.
//!
//! - A span whose parent belongs to another service is a call from the parent's service to the
//!   span's. Its latency is the caller's view (the parent's duration) when the parent is a client
//!   or producer span, else the callee's own duration.
//! - A client or producer span with no child in another service is a call to something that
//!   does not report spans itself: a database (`db.system`), a broker (`messaging.system`) or an
//!   external peer (`peer.service`, `server.address`, `net.peer.name`). These become nodes too.
//! - Spans that cannot be paired are counted and reported with the graph: children whose parent is
//!   not in the range (or never arrived), and client spans with no callee and no peer attribute.
//!
//! The graph is computed by scanning the fast fields of the spans in the range; its cost grows
//! with the number of spans in the range.

use std::collections::{BTreeMap, HashMap, HashSet};

use sightline_collector::SpanStore;
use tantivy::columnar::{BytesColumn, Column, StrColumn};
use tantivy::SegmentReader;

const KIND_CLIENT: u64 = 3;
const KIND_PRODUCER: u64 = 4;
const STATUS_ERROR: u64 = 2;

/// The time range and an optional service of interest.
#[derive(Debug, Clone, Default)]
pub struct DependencyQuery {
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// Keep only the edges touching this service (and their nodes).
    pub service: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    Service,
    Database,
    Broker,
    External,
}

impl NodeKind {
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::Service => "service",
            NodeKind::Database => "database",
            NodeKind::Broker => "broker",
            NodeKind::External => "external",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub parent: String,
    pub child: String,
    pub call_count: u64,
    pub error_count: u64,
    pub p50_nanos: u64,
    pub p95_nanos: u64,
    pub p99_nanos: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    /// Calls into the node (edges ending at it).
    pub call_count: u64,
    pub error_count: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DependencyGraph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub spans_scanned: u64,
    /// Children whose parent is not among the spans of the range.
    pub unpaired_children: u64,
    /// Client or producer spans with neither a callee span nor a peer attribute.
    pub unpaired_clients: u64,
}

/// What the graph needs of one span.
struct SpanFacts {
    /// The parent's key (trace id then span id).
    parent: Option<Vec<u8>>,
    service: String,
    kind: u64,
    duration: u64,
    error: bool,
    peer: Option<(NodeKind, String)>,
}

/// The columns read for each segment. Dictionary-encoded columns are read through their whole
/// dictionary once (a sequential pass), so each document costs an array lookup instead of a
/// random dictionary access.
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

/// A dictionary-encoded column with its values loaded.
struct Dictionary {
    column: Option<BytesColumn>,
    values: Vec<Vec<u8>>,
}

impl Dictionary {
    fn load(column: Option<BytesColumn>) -> tantivy::Result<Dictionary> {
        let mut values = Vec::new();
        if let Some(column) = &column {
            values.reserve(column.num_terms());
            let mut stream = column.dictionary().stream()?;
            while stream.advance() {
                values.push(stream.key().to_vec());
            }
        }
        Ok(Dictionary { column, values })
    }

    fn first(&self, doc: u32) -> Option<&[u8]> {
        let ord = self.column.as_ref()?.term_ords(doc).next()?;
        self.values.get(ord as usize).map(Vec::as_slice)
    }

    fn first_str(&self, doc: u32) -> Option<&str> {
        self.first(doc)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
    }
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
            peers: vec![
                (NodeKind::Database, text("attributes.db.system")?),
                (NodeKind::Broker, text("attributes.messaging.system")?),
                (NodeKind::External, text("attributes.peer.service")?),
                (NodeKind::External, text("attributes.server.address")?),
                (NodeKind::External, text("attributes.net.peer.name")?),
            ],
        })
    }
}

/// Computes the dependency graph of the spans that start within the query's range. Blocking.
pub fn dependency_graph(
    store: &SpanStore,
    query: &DependencyQuery,
) -> tantivy::Result<DependencyGraph> {
    let searcher = store.searcher();
    // Keyed by trace id then span id: span ids are only unique within a trace.
    let mut spans: HashMap<Vec<u8>, SpanFacts> = HashMap::new();
    for segment in searcher.segment_readers() {
        let columns = Columns::of(segment)?;
        for doc in segment.doc_ids_alive() {
            let Some(start) = columns.start.first(doc) else {
                continue;
            };
            if start < query.start_unix_nanos || start > query.end_unix_nanos {
                continue;
            }
            let (Some(trace_id), Some(span_id)) =
                (columns.trace_id.first(doc), columns.span_id.first(doc))
            else {
                continue;
            };
            let key = |id: &[u8]| [trace_id, id].concat();
            let kind = columns.kind.first(doc).unwrap_or(0);
            // Only client and producer spans call peers that do not report spans.
            let peer = if matches!(kind, KIND_CLIENT | KIND_PRODUCER) {
                columns.peers.iter().find_map(|(node_kind, column)| {
                    column
                        .first_str(doc)
                        .filter(|name| !name.is_empty())
                        .map(|name| (*node_kind, name.to_owned()))
                })
            } else {
                None
            };
            spans.insert(
                key(span_id),
                SpanFacts {
                    parent: columns.parent.first(doc).filter(|p| !p.is_empty()).map(key),
                    service: columns
                        .service
                        .first_str(doc)
                        .unwrap_or_default()
                        .to_owned(),
                    kind,
                    duration: columns.duration.first(doc).unwrap_or(0),
                    error: columns.status.first(doc) == Some(STATUS_ERROR),
                    peer,
                },
            );
        }
    }

    let mut graph = DependencyGraph {
        spans_scanned: spans.len() as u64,
        ..DependencyGraph::default()
    };
    // (parent, child) -> (durations, errors)
    let mut calls: BTreeMap<(String, String), (Vec<u64>, u64)> = BTreeMap::new();
    let mut node_kinds: BTreeMap<String, NodeKind> = BTreeMap::new();
    let mut has_remote_child: HashMap<&[u8], bool> = HashMap::new();
    for span in spans.values() {
        node_kinds
            .entry(span.service.clone())
            .or_insert(NodeKind::Service);
        let Some(parent_id) = &span.parent else {
            continue;
        };
        let Some(parent) = spans.get(parent_id) else {
            graph.unpaired_children += 1;
            continue;
        };
        if parent.service == span.service {
            continue;
        }
        has_remote_child.insert(parent_id.as_slice(), true);
        let latency = if matches!(parent.kind, KIND_CLIENT | KIND_PRODUCER) {
            parent.duration
        } else {
            span.duration
        };
        let entry = calls
            .entry((parent.service.clone(), span.service.clone()))
            .or_default();
        entry.0.push(latency);
        // The call failed if the callee failed, or if the caller's client span saw it fail.
        let caller_saw_failure = matches!(parent.kind, KIND_CLIENT | KIND_PRODUCER) && parent.error;
        entry.1 += u64::from(span.error || caller_saw_failure);
    }
    let parents: HashSet<&[u8]> = spans.values().filter_map(|s| s.parent.as_deref()).collect();
    for (span_id, span) in &spans {
        if !matches!(span.kind, KIND_CLIENT | KIND_PRODUCER)
            || has_remote_child.contains_key(span_id.as_slice())
        {
            continue;
        }
        match &span.peer {
            Some((kind, name)) => {
                node_kinds.entry(name.clone()).or_insert(*kind);
                let entry = calls
                    .entry((span.service.clone(), name.clone()))
                    .or_default();
                entry.0.push(span.duration);
                entry.1 += u64::from(span.error);
            }
            // A client span calling within its own service (or an uninstrumented peer with no
            // attribute naming it).
            None if !parents.contains(span_id.as_slice()) => graph.unpaired_clients += 1,
            None => {}
        }
    }

    for ((parent, child), (mut durations, errors)) in calls {
        if let Some(service) = &query.service {
            if &parent != service && &child != service {
                continue;
            }
        }
        durations.sort_unstable();
        let quantile = |q: f64| {
            let index =
                ((durations.len() as f64 * q).ceil() as usize).clamp(1, durations.len()) - 1;
            durations[index]
        };
        graph.edges.push(Edge {
            call_count: durations.len() as u64,
            error_count: errors,
            p50_nanos: quantile(0.50),
            p95_nanos: quantile(0.95),
            p99_nanos: quantile(0.99),
            parent,
            child,
        });
    }
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    for edge in &graph.edges {
        for (name, incoming) in [(&edge.parent, false), (&edge.child, true)] {
            let node = nodes.entry(name.clone()).or_insert_with(|| Node {
                name: name.clone(),
                kind: node_kinds.get(name).copied().unwrap_or(NodeKind::Service),
                call_count: 0,
                error_count: 0,
            });
            if incoming {
                node.call_count += edge.call_count;
                node.error_count += edge.error_count;
            }
        }
    }
    if query.service.is_none() {
        // Services that call nobody and are called by nobody are still part of the system.
        for (name, kind) in node_kinds {
            if kind == NodeKind::Service {
                nodes.entry(name.clone()).or_insert(Node {
                    name,
                    kind,
                    call_count: 0,
                    error_count: 0,
                });
            }
        }
    }
    graph.nodes = nodes.into_values().collect();
    Ok(graph)
}
