//! The service graph: who calls whom, how often, how slowly and how often it fails, kept as
//! per-minute rollups built at ingest, so a graph over a day is a merge of 1,440 small
//! aggregates instead of a scan of every span of the day.
//!
//! Pairing rules (the same for live ingest and for a rebuild from the span index):
//! - A span whose parent belongs to another service is a call from the parent's service to the
//!   span's. Its latency is the caller's view (the parent's duration) when the parent is a
//!   client or producer span, else the callee's own duration; it failed when the callee failed or
//!   the caller's client span saw it fail. The call belongs to the minute the child started in.
//! - A client or producer span with no child in another service calls something that does not
//!   report spans itself: a database (`db.system`), a broker (`messaging.system`) or an external
//!   peer (`peer.service`, `server.address`, `net.peer.name`), which become nodes too.
//! - A producer span naming a broker goes through it: producer service -> broker, and broker ->
//!   each consumer's service.
//! - What cannot be paired is counted: children whose parent never arrived, and client spans
//!   with no callee and no peer attribute. A graph is never mysteriously empty.
//!
//! Live, a span waits [`PAIRING_WINDOW`] for its other side (by arrival time, as Tempo's
//! service-graph processor does). Queries also show what is still waiting, as if it were
//! settled now, so a graph asked for right after ingest is complete.
//!
//! Durability: a minute is written to `rollups.jsonl` (one line per edge, service and unpaired
//! count; later lines for the same minute add to it) once it is [`SETTLE`] old, and the
//! `horizon` file then says up to which minute the file is complete. At start, minutes at or past
//! the horizon are rebuilt from the span index (which holds every acknowledged span once the
//! write-ahead log is replayed), so `kill -9` loses no settled call. A data directory without
//! rollups is rebuilt whole the same way.
//!
//! Latencies are kept in [`Sketch`]es: log-linear buckets, 32 per power of two, so a quantile is
//! within 1.6% of an observed value (exact when an edge has one latency, and never outside the
//! observed minimum and maximum).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sightline_proto::span::{service_name, string_attribute};
use tracing::warn;

use crate::now_nanos;
pub use crate::span_metrics::PAIRING_WINDOW;

const MINUTE_NANOS: u64 = 60_000_000_000;
/// A minute is written once its end is this far in the past (the pairing window and a margin
/// for exporters' batching).
pub const SETTLE: Duration = Duration::from_secs(70);
/// How far before the horizon a rebuild reads spans, so calls whose child starts at or past
/// the horizon find a parent that started before it.
const REBUILD_CONTEXT_NANOS: u64 = 10 * MINUTE_NANOS;
/// Spans kept waiting at most; past it, the oldest half are settled at once.
const MAX_WAITING: usize = 2_000_000;

pub const KIND_CLIENT: u8 = 3;
pub const KIND_PRODUCER: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

    fn parse(name: &str) -> Option<NodeKind> {
        [
            NodeKind::Service,
            NodeKind::Database,
            NodeKind::Broker,
            NodeKind::External,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }
}

/// The peer attributes a client or producer span may name, in the order they are looked at.
pub const PEER_ATTRIBUTES: [(&str, NodeKind); 5] = [
    ("db.system", NodeKind::Database),
    ("messaging.system", NodeKind::Broker),
    ("peer.service", NodeKind::External),
    ("server.address", NodeKind::External),
    ("net.peer.name", NodeKind::External),
];

/// Latencies in log-linear buckets: exact below 32 ns, then 32 buckets per power of two.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sketch {
    /// (bucket, count), sorted by bucket.
    buckets: Vec<(u16, u64)>,
    count: u64,
    min: u64,
    max: u64,
}

fn bucket_of(nanos: u64) -> u16 {
    if nanos < 32 {
        return nanos as u16;
    }
    let exponent = 63 - nanos.leading_zeros(); // >= 5
    let mantissa = (nanos >> (exponent - 5)) & 31;
    (32 + (exponent - 5) * 32 + mantissa as u32) as u16
}

/// The middle of a bucket.
fn bucket_value(bucket: u16) -> u64 {
    if bucket < 32 {
        return u64::from(bucket);
    }
    let exponent = u32::from(bucket - 32) / 32 + 5;
    let mantissa = u64::from(bucket - 32) % 32;
    let low = (32 + mantissa) << (exponent - 5);
    let width = 1u64 << (exponent - 5);
    low.saturating_add(width / 2)
}

impl Sketch {
    pub fn observe(&mut self, nanos: u64) {
        self.add_bucket(bucket_of(nanos), 1);
        self.min = if self.count == 0 {
            nanos
        } else {
            self.min.min(nanos)
        };
        self.max = self.max.max(nanos);
        self.count += 1;
    }

    fn add_bucket(&mut self, bucket: u16, count: u64) {
        match self.buckets.binary_search_by_key(&bucket, |(b, _)| *b) {
            Ok(i) => self.buckets[i].1 += count,
            Err(i) => self.buckets.insert(i, (bucket, count)),
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        for (bucket, count) in &other.buckets {
            self.add_bucket(*bucket, *count);
        }
        self.min = if self.count == 0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        self.max = self.max.max(other.max);
        self.count += other.count;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value of rank `ceil(count * q)` (1-based), as a bucket middle clamped to the
    /// observed range; 0 for an empty sketch.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64 * q).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return bucket_value(*bucket).clamp(self.min, self.max);
            }
        }
        self.max
    }

    fn to_json(&self) -> Value {
        json!({
            "buckets": self.buckets,
            "count": self.count,
            "min": self.min,
            "max": self.max,
        })
    }

    fn from_json(value: &Value) -> Option<Sketch> {
        let buckets = value["buckets"]
            .as_array()?
            .iter()
            .map(|pair| Some((u16::try_from(pair[0].as_u64()?).ok()?, pair[1].as_u64()?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Sketch {
            buckets,
            count: value["count"].as_u64()?,
            min: value["min"].as_u64()?,
            max: value["max"].as_u64()?,
        })
    }
}

/// The key of a span within the pairing state: a 64-bit mix of (trace id, span id).
pub fn span_key(trace_id: &[u8], span_id: &[u8]) -> u64 {
    fn mix(mut x: u64) -> u64 {
        // splitmix64's finalizer.
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
    let mut key = 0x9e37_79b9_7f4a_7c15;
    for chunk in trace_id.chunks(8).chain(span_id.chunks(8)) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        key = mix(key ^ u64::from_le_bytes(word));
    }
    key
}

/// Span keys are hashes already: the maps keyed by them use them as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// What pairing needs of one span; names are interned by [`ServiceGraph::intern`].
#[derive(Debug, Clone, Copy)]
pub struct SpanFacts {
    pub key: u64,
    pub parent: Option<u64>,
    pub service: u32,
    pub kind: u8,
    pub start_nanos: u64,
    pub duration_nanos: u64,
    pub error: bool,
    /// For client and producer spans: the peer they name.
    pub peer: Option<(NodeKind, u32)>,
}

/// A span that may still become a parent.
struct Waiting {
    facts: SpanFacts,
    arrived: u32,
    has_child: bool,
    has_remote_child: bool,
}

/// A child whose parent has not arrived.
struct Orphan {
    facts: SpanFacts,
    arrived: u32,
}

#[derive(Debug, Clone, Default)]
struct EdgeStats {
    errors: u64,
    latency: Sketch,
}

/// The rollup of one minute; names are interned.
#[derive(Debug, Clone, Default)]
struct Minute {
    edges: HashMap<(u32, u32), EdgeStats>,
    spans: HashMap<u32, u64>,
    unpaired_children: u64,
    unpaired_clients: u64,
}

impl Minute {
    fn is_empty(&self) -> bool {
        self.edges.is_empty()
            && self.spans.is_empty()
            && self.unpaired_children == 0
            && self.unpaired_clients == 0
    }

    fn merge(&mut self, other: &Minute) {
        for (key, stats) in &other.edges {
            let mine = self.edges.entry(*key).or_default();
            mine.errors += stats.errors;
            mine.latency.merge(&stats.latency);
        }
        for (service, count) in &other.spans {
            *self.spans.entry(*service).or_default() += count;
        }
        self.unpaired_children += other.unpaired_children;
        self.unpaired_clients += other.unpaired_clients;
    }
}

/// What pairing adds to a minute.
enum Contribution {
    Span {
        service: u32,
    },
    Call {
        parent: u32,
        child: u32,
        nanos: u64,
        error: bool,
    },
    UnpairedChild,
    UnpairedClient,
}

/// Per-minute rollups, with the kind of every name seen.
#[derive(Default)]
struct Rollups {
    minutes: BTreeMap<u32, Minute>,
}

impl Rollups {
    fn add(&mut self, start_nanos: u64, contribution: &Contribution) {
        let minute = self
            .minutes
            .entry((start_nanos / MINUTE_NANOS) as u32)
            .or_default();
        match *contribution {
            Contribution::Span { service } => *minute.spans.entry(service).or_default() += 1,
            Contribution::Call {
                parent,
                child,
                nanos,
                error,
            } => {
                let stats = minute.edges.entry((parent, child)).or_default();
                stats.errors += u64::from(error);
                stats.latency.observe(nanos);
            }
            Contribution::UnpairedChild => minute.unpaired_children += 1,
            Contribution::UnpairedClient => minute.unpaired_clients += 1,
        }
    }

    fn merge(&mut self, other: &Rollups) {
        for (minute, rollup) in &other.minutes {
            self.minutes.entry(*minute).or_default().merge(rollup);
        }
    }
}

/// The rollups kept: all of them, for queries, and what is not in the file yet.
#[derive(Default)]
struct Kept {
    totals: Rollups,
    unsaved: Rollups,
}

impl Kept {
    fn add(&mut self, start_nanos: u64, contribution: &Contribution) {
        self.totals.add(start_nanos, contribution);
        self.unsaved.add(start_nanos, contribution);
    }
}

/// Interned names and the kind of node each names.
#[derive(Default)]
struct Names {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    kinds: Vec<Option<NodeKind>>,
}

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        self.kinds.push(None);
        id
    }

    /// A name that sends spans is a service, whatever else names it.
    fn set_kind(&mut self, id: u32, kind: NodeKind) {
        let slot = &mut self.kinds[id as usize];
        if kind == NodeKind::Service || slot.is_none() {
            *slot = Some(kind);
        }
    }

    fn kind(&self, id: u32) -> NodeKind {
        self.kinds[id as usize].unwrap_or(NodeKind::Service)
    }

    fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

/// Spans waiting for their other side.
#[derive(Default)]
struct Pairing {
    spans: KeyMap<Waiting>,
    orphans: KeyMap<Vec<Orphan>>,
}

impl Pairing {
    fn len(&self) -> usize {
        self.spans.len() + self.orphans.len()
    }

    /// Adds a span: pairs it with its parent and with children that were waiting for it.
    fn observe(
        &mut self,
        facts: SpanFacts,
        arrived: u32,
        names: &mut Names,
        out: &mut impl FnMut(u64, Contribution),
    ) {
        names.set_kind(facts.service, NodeKind::Service);
        out(
            facts.start_nanos,
            Contribution::Span {
                service: facts.service,
            },
        );
        let mut waiting = Waiting {
            facts,
            arrived,
            has_child: false,
            has_remote_child: false,
        };
        if let Some(orphans) = self.orphans.remove(&facts.key) {
            for orphan in orphans {
                pair(&mut waiting, &orphan.facts, names, out);
            }
        }
        if let Some(parent_key) = facts.parent {
            match self.spans.get_mut(&parent_key) {
                Some(parent) => pair(parent, &facts, names, out),
                None => self
                    .orphans
                    .entry(parent_key)
                    .or_default()
                    .push(Orphan { facts, arrived }),
            }
        }
        // A second copy of a span (a retried export) replaces the first.
        self.spans.insert(facts.key, waiting);
    }

    /// Settles what arrived before `before`: peers of client spans, unpaired counts.
    fn expire(&mut self, before: u32, names: &mut Names, out: &mut impl FnMut(u64, Contribution)) {
        self.spans.retain(|_, waiting| {
            let keep = waiting.arrived >= before;
            if !keep {
                settle(waiting, names, out);
            }
            keep
        });
        self.orphans.retain(|_, orphans| {
            orphans.retain(|orphan| {
                let keep = orphan.arrived >= before;
                if !keep {
                    out(orphan.facts.start_nanos, Contribution::UnpairedChild);
                }
                keep
            });
            !orphans.is_empty()
        });
    }

    /// What settling everything now would add, without settling it.
    fn provisional(&self, names: &mut Names, out: &mut impl FnMut(u64, Contribution)) {
        for waiting in self.spans.values() {
            settle(waiting, names, out);
        }
        for orphan in self.orphans.values().flatten() {
            out(orphan.facts.start_nanos, Contribution::UnpairedChild);
        }
    }
}

fn pair(
    parent: &mut Waiting,
    child: &SpanFacts,
    names: &mut Names,
    out: &mut impl FnMut(u64, Contribution),
) {
    parent.has_child = true;
    let caller = &parent.facts;
    if caller.service == child.service {
        return;
    }
    parent.has_remote_child = true;
    if let (KIND_PRODUCER, Some((NodeKind::Broker, broker))) = (caller.kind, caller.peer) {
        names.set_kind(broker, NodeKind::Broker);
        out(
            child.start_nanos,
            Contribution::Call {
                parent: broker,
                child: child.service,
                nanos: child.duration_nanos,
                error: child.error,
            },
        );
        return;
    }
    let caller_is_client = matches!(caller.kind, KIND_CLIENT | KIND_PRODUCER);
    out(
        child.start_nanos,
        Contribution::Call {
            parent: caller.service,
            child: child.service,
            nanos: if caller_is_client {
                caller.duration_nanos
            } else {
                child.duration_nanos
            },
            error: child.error || (caller_is_client && caller.error),
        },
    );
}

/// A client or producer span that found no callee calls the peer it names, or is unpaired.
fn settle(waiting: &Waiting, names: &mut Names, out: &mut impl FnMut(u64, Contribution)) {
    let facts = &waiting.facts;
    let via_broker =
        facts.kind == KIND_PRODUCER && matches!(facts.peer, Some((NodeKind::Broker, _)));
    if !matches!(facts.kind, KIND_CLIENT | KIND_PRODUCER)
        || (waiting.has_remote_child && !via_broker)
    {
        return;
    }
    match facts.peer {
        Some((kind, peer)) => {
            names.set_kind(peer, kind);
            out(
                facts.start_nanos,
                Contribution::Call {
                    parent: facts.service,
                    child: peer,
                    nanos: facts.duration_nanos,
                    error: facts.error,
                },
            );
        }
        None if !waiting.has_child => out(facts.start_nanos, Contribution::UnpairedClient),
        None => {}
    }
}

/// The query of a graph: a time range (rounded out to whole minutes) and an optional service.
#[derive(Debug, Clone, Default)]
pub struct DependencyQuery {
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// Keep only the edges touching this service (and their nodes).
    pub service: Option<String>,
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
    /// Spans that started within the range.
    pub spans: u64,
    /// Children whose parent never arrived (or not within the pairing window).
    pub unpaired_children: u64,
    /// Client or producer spans with neither a callee span nor a peer attribute.
    pub unpaired_clients: u64,
}

struct Live {
    names: Names,
    pairing: Pairing,
    rollups: Kept,
    /// Minutes before this one are complete in the file.
    horizon: u32,
}

/// The service graph of a data directory; share it between ingest and queries.
pub struct ServiceGraph {
    dir: PathBuf,
    retention: Option<Duration>,
    started: Instant,
    live: Mutex<Live>,
}

const ROLLUPS: &str = "rollups.jsonl";
const HORIZON: &str = "horizon";

impl ServiceGraph {
    /// Opens (or creates) the rollups in `dir`, keeping minutes younger than `retention`.
    /// Minutes at or past the horizon are left to [`ServiceGraph::rebuild`].
    pub fn open(dir: &Path, retention: Option<Duration>) -> io::Result<ServiceGraph> {
        fs::create_dir_all(dir)?;
        let horizon = match fs::read_to_string(dir.join(HORIZON)) {
            Ok(text) => text.trim().parse::<u32>().map_err(|err| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {err}", dir.join(HORIZON).display()),
                )
            })?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => 0,
            Err(err) => return Err(err),
        };
        let mut live = Live {
            names: Names::default(),
            pairing: Pairing::default(),
            rollups: Kept::default(),
            horizon,
        };
        let cutoff = retention_cutoff(retention);
        let (mut lines, mut dropped, mut unreadable) = (0usize, 0usize, 0usize);
        match File::open(dir.join(ROLLUPS)) {
            Ok(file) => {
                for line in BufReader::new(file).lines() {
                    let line = line?;
                    lines += 1;
                    // A minute past the horizon (it is rebuilt) or past retention is left out,
                    // and so is a line torn by a crash; the file is then rewritten without them.
                    let value = serde_json::from_str::<Value>(&line).ok();
                    match value.as_ref().and_then(|v| v["minute"].as_u64()) {
                        Some(m) if m < u64::from(horizon) && m >= u64::from(cutoff) => {
                            let read = value.is_some_and(|value| read_line(&value, &mut live));
                            unreadable += usize::from(!read);
                        }
                        Some(_) => dropped += 1,
                        None => unreadable += 1,
                    }
                }
                if unreadable > 0 {
                    warn!(
                        lines = unreadable,
                        file = %dir.join(ROLLUPS).display(),
                        "service graph: unreadable lines left out"
                    );
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let graph = ServiceGraph {
            dir: dir.to_owned(),
            retention,
            started: Instant::now(),
            live: Mutex::new(live),
        };
        {
            // Late spans add lines to minutes already written; the file is compacted at start
            // when they make up most of it.
            let mut live = graph.live.lock();
            let entries: usize = live
                .rollups
                .totals
                .minutes
                .values()
                .map(|m| m.edges.len() + m.spans.len() + 1)
                .sum();
            if dropped + unreadable > 0 || lines > 2 * entries {
                graph.rewrite(&mut live)?;
            }
        }
        Ok(graph)
    }

    /// The first minute (as Unix nanoseconds) whose calls are not in the file: a rebuild reads
    /// spans from a little before it.
    pub fn rebuild_from_nanos(&self) -> u64 {
        (u64::from(self.live.lock().horizon) * MINUTE_NANOS).saturating_sub(REBUILD_CONTEXT_NANOS)
    }

    /// Rebuilds the minutes at or past the horizon from spans read by `feed` (all of them,
    /// in any order), before ingest starts. Returns how many spans were read.
    pub fn rebuild<E>(
        &self,
        feed: impl FnOnce(&mut Rebuild<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut live = self.live.lock();
        let live = &mut *live;
        let mut rebuilt = Rollups::default();
        let mut rebuild = Rebuild {
            names: &mut live.names,
            pairing: Pairing::default(),
            rollups: &mut rebuilt,
            spans: 0,
        };
        feed(&mut rebuild)?;
        let spans = rebuild.spans;
        let Rebuild {
            names,
            mut pairing,
            rollups,
            ..
        } = rebuild;
        pairing.expire(u32::MAX, names, &mut |start, c| rollups.add(start, &c));
        let kept: BTreeMap<u32, Minute> = rebuilt.minutes.split_off(&live.horizon);
        let kept = Rollups { minutes: kept };
        live.rollups.totals.merge(&kept);
        live.rollups.unsaved.merge(&kept);
        Ok(spans)
    }

    /// Adds the (validated) spans of a request.
    pub fn observe(&self, request: &ExportTraceServiceRequest) {
        let arrived = self.started.elapsed().as_secs() as u32;
        let mut live = self.live.lock();
        let Live {
            names,
            pairing,
            rollups,
            ..
        } = &mut *live;
        let mut out = |start: u64, c: Contribution| rollups.add(start, &c);
        for resource_spans in &request.resource_spans {
            let service = names.id(service_name(resource_spans.resource.as_ref()));
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                let kind = span.kind.clamp(0, 5) as u8;
                let peer = if matches!(kind, KIND_CLIENT | KIND_PRODUCER) {
                    PEER_ATTRIBUTES.iter().find_map(|(key, node_kind)| {
                        string_attribute(&span.attributes, key)
                            .filter(|value| !value.is_empty())
                            .map(|value| (*node_kind, names.id(value)))
                    })
                } else {
                    None
                };
                let facts = SpanFacts {
                    key: span_key(&span.trace_id, &span.span_id),
                    parent: (!span.parent_span_id.is_empty())
                        .then(|| span_key(&span.trace_id, &span.parent_span_id)),
                    service,
                    kind,
                    start_nanos: span.start_time_unix_nano,
                    duration_nanos: span
                        .end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano),
                    error: span.status.as_ref().is_some_and(|s| s.code == 2),
                    peer,
                };
                pairing.observe(facts, arrived, names, &mut out);
            }
        }
        if pairing.len() > MAX_WAITING {
            let window = PAIRING_WINDOW.as_secs() as u32;
            pairing.expire(arrived.saturating_sub(window / 2), names, &mut out);
        }
    }

    /// Settles spans that waited past the pairing window and writes the minutes that are
    /// [`SETTLE`] old; call every few seconds.
    pub fn flush(&self) -> io::Result<()> {
        let arrived = self.started.elapsed().as_secs() as u32;
        let before = arrived.saturating_sub(PAIRING_WINDOW.as_secs() as u32);
        let horizon = (now_nanos().saturating_sub(SETTLE.as_nanos() as u64) / MINUTE_NANOS) as u32;
        self.settle_and_save(before, horizon)
    }

    /// Settles everything and writes every minute; for a clean shutdown.
    pub fn close(&self) -> io::Result<()> {
        let horizon = self
            .live
            .lock()
            .rollups
            .totals
            .minutes
            .keys()
            .next_back()
            .map_or(0, |last| last + 1)
            .max((now_nanos() / MINUTE_NANOS) as u32 + 1);
        self.settle_and_save(u32::MAX, horizon)
    }

    fn settle_and_save(&self, settle_before: u32, horizon: u32) -> io::Result<()> {
        let mut live = self.live.lock();
        let live = &mut *live;
        {
            let Live {
                names,
                pairing,
                rollups,
                ..
            } = &mut *live;
            pairing.expire(settle_before, names, &mut |start, c| rollups.add(start, &c));
        }
        let cutoff = retention_cutoff(self.retention);
        let expired = live
            .rollups
            .totals
            .minutes
            .first_key_value()
            .is_some_and(|(m, _)| *m < cutoff);
        if expired {
            live.rollups.totals.minutes = live.rollups.totals.minutes.split_off(&cutoff);
            live.rollups.unsaved.minutes = live.rollups.unsaved.minutes.split_off(&cutoff);
        }
        let horizon = horizon.max(live.horizon);
        let later = live.rollups.unsaved.minutes.split_off(&horizon);
        let due = std::mem::replace(&mut live.rollups.unsaved.minutes, later);
        if expired {
            // The file is rewritten from the totals; `due` is in them.
            live.horizon = horizon;
            return self.rewrite(live);
        }
        if !due.is_empty() {
            let mut file = BufWriter::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join(ROLLUPS))?,
            );
            for (minute, rollup) in &due {
                for line in minute_lines(*minute, rollup, &live.names) {
                    writeln!(file, "{line}")?;
                }
            }
            file.into_inner()?.sync_data()?;
        }
        if horizon != live.horizon {
            live.horizon = horizon;
            write_atomically(&self.dir.join(HORIZON), horizon.to_string().as_bytes())?;
        }
        Ok(())
    }

    /// Writes the file afresh from the totals before the horizon.
    fn rewrite(&self, live: &mut Live) -> io::Result<()> {
        let mut text = String::new();
        for (minute, rollup) in live.rollups.totals.minutes.range(..live.horizon) {
            for line in minute_lines(*minute, rollup, &live.names) {
                text.push_str(&line.to_string());
                text.push('\n');
            }
        }
        write_atomically(&self.dir.join(ROLLUPS), text.as_bytes())?;
        write_atomically(&self.dir.join(HORIZON), live.horizon.to_string().as_bytes())
    }

    /// The graph of a time range, rounded out to whole minutes, with the spans still waiting
    /// for their other side counted as if settled now.
    pub fn query(&self, query: &DependencyQuery) -> DependencyGraph {
        let first = (query.start_unix_nanos / MINUTE_NANOS) as u32;
        let last = (query.end_unix_nanos / MINUTE_NANOS) as u32;
        let mut live = self.live.lock();
        let Live {
            names,
            pairing,
            rollups,
            ..
        } = &mut *live;
        let mut merged = Minute::default();
        for rollup in rollups.totals.minutes.range(first..=last).map(|(_, r)| r) {
            merged.merge(rollup);
        }
        let mut pending = Rollups::default();
        pairing.provisional(names, &mut |start, c| {
            if (first..=last).contains(&((start / MINUTE_NANOS) as u32)) {
                pending.add(start, &c);
            }
        });
        for rollup in pending.minutes.values() {
            merged.merge(rollup);
        }
        graph_of(&merged, names, query.service.as_deref())
    }
}

/// Feeds spans to a rebuild; see [`ServiceGraph::rebuild`].
pub struct Rebuild<'a> {
    names: &'a mut Names,
    pairing: Pairing,
    rollups: &'a mut Rollups,
    spans: u64,
}

impl Rebuild<'_> {
    pub fn intern(&mut self, name: &str) -> u32 {
        self.names.id(name)
    }

    pub fn span(&mut self, facts: SpanFacts) {
        self.spans += 1;
        let rollups = &mut *self.rollups;
        self.pairing
            .observe(facts, 0, self.names, &mut |start, c| rollups.add(start, &c));
    }
}

fn retention_cutoff(retention: Option<Duration>) -> u32 {
    retention.map_or(0, |age| {
        (now_nanos().saturating_sub(age.as_nanos() as u64) / MINUTE_NANOS) as u32
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn minute_lines(minute: u32, rollup: &Minute, names: &Names) -> Vec<Value> {
    let mut lines = Vec::new();
    for ((parent, child), stats) in &rollup.edges {
        lines.push(json!({
            "minute": minute,
            "parent": names.name(*parent),
            "parentKind": names.kind(*parent).name(),
            "child": names.name(*child),
            "childKind": names.kind(*child).name(),
            "errors": stats.errors,
            "latency": stats.latency.to_json(),
        }));
    }
    for (service, spans) in &rollup.spans {
        lines.push(json!({"minute": minute, "service": names.name(*service), "spans": spans}));
    }
    if rollup.unpaired_children > 0 || rollup.unpaired_clients > 0 {
        lines.push(json!({
            "minute": minute,
            "unpairedChildren": rollup.unpaired_children,
            "unpairedClients": rollup.unpaired_clients,
        }));
    }
    lines
}

/// Adds one line of the file to the totals; false when it is not a line of ours.
fn read_line(value: &Value, live: &mut Live) -> bool {
    let Some(minute) = value["minute"].as_u64().map(|m| m as u32) else {
        return false;
    };
    let mut rollup = Minute::default();
    if let (Some(parent), Some(child)) = (value["parent"].as_str(), value["child"].as_str()) {
        let (Some(parent_kind), Some(child_kind), Some(latency)) = (
            value["parentKind"].as_str().and_then(NodeKind::parse),
            value["childKind"].as_str().and_then(NodeKind::parse),
            Sketch::from_json(&value["latency"]),
        ) else {
            return false;
        };
        let (parent, child) = (live.names.id(parent), live.names.id(child));
        live.names.set_kind(parent, parent_kind);
        live.names.set_kind(child, child_kind);
        rollup.edges.insert(
            (parent, child),
            EdgeStats {
                errors: value["errors"].as_u64().unwrap_or(0),
                latency,
            },
        );
    } else if let (Some(service), Some(spans)) =
        (value["service"].as_str(), value["spans"].as_u64())
    {
        let id = live.names.id(service);
        live.names.set_kind(id, NodeKind::Service);
        rollup.spans.insert(id, spans);
    } else if let (Some(children), Some(clients)) = (
        value["unpairedChildren"].as_u64(),
        value["unpairedClients"].as_u64(),
    ) {
        rollup.unpaired_children = children;
        rollup.unpaired_clients = clients;
    } else {
        return false;
    }
    if !rollup.is_empty() {
        live.rollups
            .totals
            .minutes
            .entry(minute)
            .or_default()
            .merge(&rollup);
    }
    true
}

fn graph_of(merged: &Minute, names: &Names, service: Option<&str>) -> DependencyGraph {
    let mut graph = DependencyGraph {
        spans: merged.spans.values().sum(),
        unpaired_children: merged.unpaired_children,
        unpaired_clients: merged.unpaired_clients,
        ..DependencyGraph::default()
    };
    let edges: BTreeMap<(&str, &str), &EdgeStats> = merged
        .edges
        .iter()
        .map(|((parent, child), stats)| ((names.name(*parent), names.name(*child)), stats))
        .collect();
    let mut nodes: BTreeMap<&str, Node> = BTreeMap::new();
    for ((parent, child), stats) in edges {
        if service.is_some_and(|s| s != parent && s != child) {
            continue;
        }
        let edge = Edge {
            parent: parent.to_owned(),
            child: child.to_owned(),
            call_count: stats.latency.count(),
            error_count: stats.errors,
            p50_nanos: stats.latency.quantile(0.50),
            p95_nanos: stats.latency.quantile(0.95),
            p99_nanos: stats.latency.quantile(0.99),
        };
        for (name, incoming) in [(parent, false), (child, true)] {
            let node = nodes.entry(name).or_insert_with(|| Node {
                name: name.to_owned(),
                kind: names.kind(names.ids[name]),
                call_count: 0,
                error_count: 0,
            });
            if incoming {
                node.call_count += edge.call_count;
                node.error_count += edge.error_count;
            }
        }
        graph.edges.push(edge);
    }
    if service.is_none() {
        // Services that call nobody and are called by nobody are still part of the system.
        for id in merged.spans.keys() {
            let name = names.name(*id);
            nodes.entry(name).or_insert_with(|| Node {
                name: name.to_owned(),
                kind: NodeKind::Service,
                call_count: 0,
                error_count: 0,
            });
        }
    }
    graph.nodes = nodes.into_values().collect();
    graph
}

/// Writes a warning when a flush fails; ingest goes on.
pub fn log_flush_error(result: io::Result<()>) {
    if let Err(err) = result {
        warn!(%err, "cannot write the service graph's rollups");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_otlp::{request, text};
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::trace::v1::{status, Span, Status};

    const MS: u64 = 1_000_000;

    /// A span of trace 7 starting at `t0`, `millis` long; kind 2 server, 3 client, 4 producer,
    /// 5 consumer.
    fn span(t0: u64, id: u8, parent: u8, kind: i32, millis: u64, attrs: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![7; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
            name: format!("op{id}"),
            kind,
            start_time_unix_nano: t0,
            end_time_unix_nano: t0 + millis * MS,
            attributes: attrs,
            ..Default::default()
        }
    }

    fn failed(mut span: Span) -> Span {
        span.status = Some(Status {
            code: status::StatusCode::Error as i32,
            ..Default::default()
        });
        span
    }

    /// A shop trace, by service: gateway -> orders (client 2 -> server 3, which fails), orders
    /// -> postgres (client span 4 naming db.system), a producer (5) through rabbitmq to a
    /// consumer (6) in mailer, a client span calling nobody (7), and a child of a parent that
    /// never arrives. The callee's spans come first, as when each service exports its own batch.
    fn shop_spans(t0: u64) -> Vec<(&'static str, Vec<Span>)> {
        let db = vec![text("db.system", "postgresql")];
        let broker = vec![text("messaging.system", "rabbitmq")];
        vec![
            (
                "orders",
                vec![
                    failed(span(t0 + 5 * MS, 3, 2, 2, 30, vec![])),
                    span(t0 + 6 * MS, 4, 3, 3, 5, db),
                    span(t0 + 40 * MS, 5, 3, 4, 1, broker),
                    span(t0 + 50 * MS, 9, 99, 2, 1, vec![]),
                ],
            ),
            (
                "gateway",
                vec![
                    span(t0, 1, 0, 2, 100, vec![]),
                    span(t0 + MS, 2, 1, 3, 40, vec![]),
                    span(t0 + 2 * MS, 7, 1, 3, 2, vec![]),
                ],
            ),
            ("mailer", vec![span(t0 + 45 * MS, 6, 5, 5, 8, vec![])]),
        ]
    }

    fn shop(graph: &ServiceGraph, t0: u64) {
        for (service, spans) in shop_spans(t0) {
            graph.observe(&request(service, spans));
        }
    }

    fn edges(graph: &DependencyGraph) -> Vec<(String, String, u64, u64, u64)> {
        graph
            .edges
            .iter()
            .map(|e| {
                (
                    e.parent.clone(),
                    e.child.clone(),
                    e.call_count,
                    e.error_count,
                    e.p50_nanos / MS,
                )
            })
            .collect()
    }

    fn day(t0: u64) -> DependencyQuery {
        DependencyQuery {
            start_unix_nanos: t0 - 3600 * 1_000_000_000,
            end_unix_nanos: t0 + 3600 * 1_000_000_000,
            service: None,
        }
    }

    fn expected() -> Vec<(String, String, u64, u64, u64)> {
        [
            // The client's view of the call, failed because the server span failed.
            ("gateway", "orders", 1, 1, 40),
            ("orders", "postgresql", 1, 0, 5),
            ("orders", "rabbitmq", 1, 0, 1),
            ("rabbitmq", "mailer", 1, 0, 8),
        ]
        .into_iter()
        .map(|(p, c, n, e, ms)| (p.to_owned(), c.to_owned(), n, e, ms))
        .collect()
    }

    #[test]
    fn pairs_in_either_order_and_shows_waiting_spans_as_if_settled() {
        let dir = tempfile::tempdir().unwrap();
        let graph = ServiceGraph::open(dir.path(), None).unwrap();
        let t0 = now_nanos();
        shop(&graph, t0);
        // Nothing has waited out the pairing window yet; the query settles it for itself.
        let answer = graph.query(&day(t0));
        assert_eq!(edges(&answer), expected());
        let kinds: Vec<_> = answer
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("gateway", NodeKind::Service),
                ("mailer", NodeKind::Service),
                ("orders", NodeKind::Service),
                ("postgresql", NodeKind::Database),
                ("rabbitmq", NodeKind::Broker),
            ]
        );
        assert_eq!(answer.spans, 8);
        assert_eq!((answer.unpaired_children, answer.unpaired_clients), (1, 1));
        // Only what touches a service.
        let mut only = day(t0);
        only.service = Some("mailer".into());
        assert_eq!(graph.query(&only).edges.len(), 1);
        // Another time range is empty.
        let mut before = day(t0);
        before.end_unix_nanos = before.start_unix_nanos + 1;
        assert_eq!(graph.query(&before), DependencyGraph::default());
    }

    #[test]
    fn survives_a_restart_and_rebuilds_what_was_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = now_nanos() - 3 * 3_600_000_000_000;
        {
            let graph = ServiceGraph::open(dir.path(), Some(Duration::from_secs(86_400))).unwrap();
            shop(&graph, t0);
            graph.close().unwrap();
        }
        let graph = ServiceGraph::open(dir.path(), Some(Duration::from_secs(86_400))).unwrap();
        let answer = graph.query(&day(t0));
        assert_eq!(edges(&answer), expected());
        assert_eq!((answer.unpaired_children, answer.unpaired_clients), (1, 1));

        // Past retention, a minute is gone from memory and from the file.
        drop(graph);
        let graph = ServiceGraph::open(dir.path(), Some(Duration::from_secs(3_600))).unwrap();
        assert_eq!(graph.query(&day(t0)).edges, vec![]);
        assert_eq!(fs::read_to_string(dir.path().join(ROLLUPS)).unwrap(), "");
    }

    #[test]
    fn a_line_torn_by_a_crash_is_left_out_and_the_rest_read() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = now_nanos() - 3 * 3_600_000_000_000;
        {
            let graph = ServiceGraph::open(dir.path(), None).unwrap();
            shop(&graph, t0);
            graph.close().unwrap();
        }
        let file = dir.path().join(ROLLUPS);
        let mut text = fs::read_to_string(&file).unwrap();
        text.push_str("{\"minute\": 1, \"par");
        fs::write(&file, text).unwrap();
        let graph = ServiceGraph::open(dir.path(), None).unwrap();
        assert_eq!(edges(&graph.query(&day(t0))), expected());
        // Rewritten without it.
        let text = fs::read_to_string(&file).unwrap();
        assert!(text
            .lines()
            .all(|line| serde_json::from_str::<Value>(line).is_ok()));
    }

    #[test]
    fn minutes_past_the_horizon_come_from_the_rebuild_not_twice() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = now_nanos();
        {
            let graph = ServiceGraph::open(dir.path(), None).unwrap();
            shop(&graph, t0);
            // The minute is too young to be written: as after kill -9, it is not in the file.
            graph.flush().unwrap();
        }
        let graph = ServiceGraph::open(dir.path(), None).unwrap();
        assert!(graph.rebuild_from_nanos() <= t0);
        assert_eq!(graph.query(&day(t0)).edges, vec![]);
        // The rebuild reads the spans back (here: the same spans) and settles them.
        let spans: Vec<(&str, Span)> = shop_spans(t0)
            .into_iter()
            .flat_map(|(service, spans)| spans.into_iter().map(move |span| (service, span)))
            .collect();
        let read = graph
            .rebuild(|rebuild| {
                for (service, span) in &spans {
                    let kind = span.kind as u8;
                    let peer = PEER_ATTRIBUTES.iter().find_map(|(key, node_kind)| {
                        string_attribute(&span.attributes, key)
                            .filter(|_| matches!(kind, KIND_CLIENT | KIND_PRODUCER))
                            .map(|value| (*node_kind, rebuild.intern(value)))
                    });
                    let service = rebuild.intern(service);
                    rebuild.span(SpanFacts {
                        key: span_key(&span.trace_id, &span.span_id),
                        parent: (!span.parent_span_id.is_empty())
                            .then(|| span_key(&span.trace_id, &span.parent_span_id)),
                        service,
                        kind,
                        start_nanos: span.start_time_unix_nano,
                        duration_nanos: span.end_time_unix_nano - span.start_time_unix_nano,
                        error: span.status.is_some(),
                        peer,
                    });
                }
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(read, 8);
        let answer = graph.query(&day(t0));
        assert_eq!(edges(&answer), expected());
        assert_eq!((answer.unpaired_children, answer.unpaired_clients), (1, 1));
        // Written at shutdown, read once after it.
        graph.close().unwrap();
        drop(graph);
        let graph = ServiceGraph::open(dir.path(), None).unwrap();
        assert_eq!(edges(&graph.query(&day(t0))), expected());
    }

    #[test]
    fn sketch_quantiles_are_within_their_error_bound() {
        let mut sketch = Sketch::default();
        assert_eq!(sketch.quantile(0.5), 0);
        sketch.observe(2_250 * MS);
        // One latency: exact.
        assert_eq!(sketch.quantile(0.99), 2_250 * MS);
        let mut sketch = Sketch::default();
        let values: Vec<u64> = (1..=10_000u64).map(|i| i * i * 997).collect();
        for value in values.iter().rev() {
            sketch.observe(*value);
        }
        for q in [0.5, 0.95, 0.99] {
            let exact = values[(values.len() as f64 * q).ceil() as usize - 1] as f64;
            let estimate = sketch.quantile(q) as f64;
            assert!(
                (estimate - exact).abs() / exact <= 1.0 / 64.0,
                "q{q}: {estimate} vs {exact}"
            );
        }
        let mut merged = Sketch::default();
        merged.merge(&sketch);
        merged.merge(&sketch);
        assert_eq!(merged.count(), 20_000);
        assert_eq!(merged.quantile(0.5), sketch.quantile(0.5));
        assert_eq!(Sketch::from_json(&merged.to_json()).as_ref(), Some(&merged));
    }
}
