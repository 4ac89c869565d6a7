//! The dependency graph: who calls whom, how often, how slowly, how often it fails, computed
//! from the spans of a time range.
//!
//! - A span whose parent belongs to another service is a call from the parent's service to the
//!   span's. Its latency is the caller's view (the parent's duration) when the parent is a client
//!   or producer span, else the callee's own duration.
//! - A client or producer span with no child in another service is a call to something that
//!   does not report spans itself: a database (`db.system`), a broker (`messaging.system`) or an
//!   external peer (`peer.service`, `server.address`, `net.peer.name`). These become nodes too.
//! - A producer span naming a broker (`messaging.system`) goes through the broker: an edge from
//!   the producer's service to the broker, and one from the broker to each consumer's service.
//! - Spans that cannot be paired are counted and reported with the graph: children whose parent is
//!   not in the range (or never arrived), and client spans with no callee and no peer attribute.
//!
//! The graph is computed by scanning the fast fields of the spans in the range; its cost grows
//! with the number of spans in the range.

use std::collections::{BTreeMap, HashMap, HashSet};

use sightline_collector::SpanStore;
use tantivy::columnar::{BytesColumn, Column, StrColumn};

use super::columns::{Dictionary, Interner};
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

/// What the graph needs of one span. Spans are keyed by a 64-bit hash of (trace id, span id);
/// names are interned, so the scan allocates nothing per span.
struct SpanFacts {
    parent: Option<u64>,
    service: u32,
    kind: u64,
    duration: u64,
    error: bool,
    peer: Option<(NodeKind, u32)>,
}

fn span_key(trace_id: &[u8], span_id: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    trace_id.hash(&mut hasher);
    span_id.hash(&mut hasher);
    hasher.finish()
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
    let mut names = Interner::default();
    let mut spans: HashMap<u64, SpanFacts> = HashMap::new();
    for segment in searcher.segment_readers() {
        let starts = segment.fast_fields().u64("start_time_unix_nanos")?;
        if segment.num_docs() == 0
            || starts.max_value() < query.start_unix_nanos
            || starts.min_value() > query.end_unix_nanos
        {
            continue; // nothing of this segment is in the window
        }
        let columns = Columns::of(segment)?;
        let service_ids = columns.service.intern(&mut names);
        let peer_ids: Vec<Vec<u32>> = columns
            .peers
            .iter()
            .map(|(_, dictionary)| dictionary.intern(&mut names))
            .collect();
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
            let kind = columns.kind.first(doc).unwrap_or(0);
            // Only client and producer spans call peers that do not report spans.
            let peer =
                if matches!(kind, KIND_CLIENT | KIND_PRODUCER) {
                    columns.peers.iter().zip(&peer_ids).find_map(
                        |((node_kind, dictionary), ids)| {
                            let ord = dictionary.first_ord(doc)?;
                            (!dictionary.values[ord].is_empty()).then(|| (*node_kind, ids[ord]))
                        },
                    )
                } else {
                    None
                };
            let Some(service) = columns.service.first_ord(doc).map(|ord| service_ids[ord]) else {
                continue;
            };
            spans.insert(
                span_key(trace_id, span_id),
                SpanFacts {
                    parent: columns
                        .parent
                        .first(doc)
                        .filter(|p| !p.is_empty())
                        .map(|parent| span_key(trace_id, parent)),
                    service,
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
    // (parent, child) -> (durations, errors), by interned name.
    let mut calls: HashMap<(u32, u32), (Vec<u64>, u64)> = HashMap::new();
    let mut node_kinds: HashMap<u32, NodeKind> = HashMap::new();
    let mut has_remote_child: HashSet<u64> = HashSet::new();
    let mut parents: HashSet<u64> = HashSet::new();
    for span in spans.values() {
        node_kinds.entry(span.service).or_insert(NodeKind::Service);
        let Some(parent_key) = span.parent else {
            continue;
        };
        parents.insert(parent_key);
        let Some(parent) = spans.get(&parent_key) else {
            graph.unpaired_children += 1;
            continue;
        };
        if parent.service == span.service {
            continue;
        }
        has_remote_child.insert(parent_key);
        // A message through a broker: producer -> broker (counted once per producer span,
        // below) and broker -> consumer, so the broker is a node of the map.
        if let (KIND_PRODUCER, Some((NodeKind::Broker, broker))) = (parent.kind, parent.peer) {
            node_kinds.entry(broker).or_insert(NodeKind::Broker);
            let entry = calls.entry((broker, span.service)).or_default();
            entry.0.push(span.duration);
            entry.1 += u64::from(span.error);
            continue;
        }
        let caller_is_client = matches!(parent.kind, KIND_CLIENT | KIND_PRODUCER);
        let latency = if caller_is_client {
            parent.duration
        } else {
            span.duration
        };
        let entry = calls.entry((parent.service, span.service)).or_default();
        entry.0.push(latency);
        // The call failed if the callee failed, or if the caller's client span saw it fail.
        entry.1 += u64::from(span.error || (caller_is_client && parent.error));
    }
    for (key, span) in &spans {
        let via_broker =
            span.kind == KIND_PRODUCER && matches!(span.peer, Some((NodeKind::Broker, _)));
        if !matches!(span.kind, KIND_CLIENT | KIND_PRODUCER)
            || (has_remote_child.contains(key) && !via_broker)
        {
            continue;
        }
        match span.peer {
            Some((kind, peer)) => {
                node_kinds.entry(peer).or_insert(kind);
                let entry = calls.entry((span.service, peer)).or_default();
                entry.0.push(span.duration);
                entry.1 += u64::from(span.error);
            }
            // A client span calling within its own service (or an uninstrumented peer with no
            // attribute naming it).
            None if !parents.contains(key) => graph.unpaired_clients += 1,
            None => {}
        }
    }
    let calls: BTreeMap<(String, String), (Vec<u64>, u64)> = calls
        .into_iter()
        .map(|((parent, child), value)| {
            (
                (names.name(parent).to_owned(), names.name(child).to_owned()),
                value,
            )
        })
        .collect();
    let node_kinds: BTreeMap<String, NodeKind> = node_kinds
        .into_iter()
        .map(|(id, kind)| (names.name(id).to_owned(), kind))
        .collect();

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
