//! The metric store: Prometheus-style series in memory, samples in Gorilla-compressed chunks.
//!
//! A series is its sorted label set (`__name__` included). An inverted index (label name ->
//! value -> series ids) answers selectors; equality matchers narrow the candidates, every other
//! matcher is checked on the candidates' labels. Each series keeps sealed chunks of
//! [`Chunk::CAPACITY`] samples and one head chunk it appends to.
//!
//! Memory is bounded: a global and a per-metric series cap (new series past a cap are refused and
//! counted, existing series keep working), and retention by age drops whole chunks, and whole
//! series once they are empty. Samples must arrive in time order per series: a sample at the
//! newest timestamp is a duplicate (a retried export, a replay) and skipped; an older one is
//! refused and counted.

pub mod chunk;
mod snapshot;

use chunk::ChunkIter;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use sightline_proto::metric::{Exemplar, Labels, Metadata, Translated, STALE_NAN_BITS};
use sightline_proto::validate::Rejected;

pub use chunk::Chunk;
pub use snapshot::{Restored, SnapshotSummary, Written};

/// Exemplars kept per series, newest last.
const EXEMPLARS_PER_SERIES: usize = 8;

#[derive(Debug, Clone)]
pub struct MetricSettings {
    /// Samples older than this are dropped.
    pub retention: Duration,
    /// Series in the store, at most.
    pub max_series: usize,
    /// Series of one metric name, at most.
    pub max_series_per_metric: usize,
}

impl Default for MetricSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(24 * 3600),
            max_series: 1_000_000,
            max_series_per_metric: 200_000,
        }
    }
}

type SeriesId = u32;

/// A selected series: its labels and its samples `(unix ms, value)` in time order.
pub type SelectedSeries = (Arc<Labels>, Vec<(i64, f64)>);

struct SeriesData {
    /// Label names and values as symbols of the index, sorted by name.
    labels: Packed,
    /// Full chunks, packed one after the other (see [`chunk::packed`]).
    sealed: Vec<u8>,
    head: Chunk,
    last_t: i64,
    /// Running total of a delta series.
    total: f64,
    /// Start time of the cumulative series' current run (counter resets), in milliseconds; for
    /// a delta series, the start of its newest interval, in nanoseconds.
    start: Option<i64>,
    /// Allocated with the first exemplar: most series never have one, and a box is 8 bytes
    /// per series where an empty `VecDeque` is 32.
    #[allow(clippy::box_collection)]
    exemplars: Option<Box<VecDeque<Exemplar>>>,
}

/// A chunk of a series: the time range it may hold (`first_t..=upper_t`), its samples and their
/// number.
struct ChunkRef<'a> {
    first_t: i64,
    upper_t: i64,
    samples: ChunkIter<'a>,
    count: u16,
    /// For a sealed chunk, the offset after it in the packed buffer.
    end: Option<usize>,
}

impl SeriesData {
    /// The chunks, oldest first. A sealed chunk's upper bound is the next chunk's first time
    /// (exclusive), or the last sample's time for the newest.
    fn chunks(&self) -> impl Iterator<Item = ChunkRef<'_>> {
        let mut sealed = chunk::packed(&self.sealed).peekable();
        let mut head = (!self.head.is_empty()).then_some(&self.head);
        let last_t = self.last_t;
        std::iter::from_fn(move || {
            if let Some(chunk) = sealed.next() {
                let upper_t = match (sealed.peek(), head) {
                    (Some(next), _) => next.first_t() - 1,
                    (None, Some(head)) => head.first_t() - 1,
                    (None, None) => last_t,
                };
                return Some(ChunkRef {
                    first_t: chunk.first_t(),
                    upper_t,
                    samples: chunk.samples(),
                    count: chunk.count,
                    end: Some(chunk.end),
                });
            }
            head.take().map(|head| ChunkRef {
                first_t: head.first_t(),
                upper_t: head.last_t(),
                samples: head.samples(),
                count: head.len() as u16,
                end: None,
            })
        })
    }

    fn push(&mut self, t: i64, v: f64) {
        if self.head.is_full() || !self.head.accepts(v) {
            self.head.seal_into(&mut self.sealed);
        }
        self.head.push(t, v);
        self.last_t = t;
    }
}

/// A series' labels as `(name, value)` symbols: one small allocation per series instead of a
/// string per name and value.
type Packed = Arc<[(Symbol, Symbol)]>;
type Symbol = u32;

/// Every label name and value, stored once. The strings of series dropped by retention stay (as
/// Prometheus' head keeps its symbols until compaction); they are bounded by the distinct
/// strings ever seen, far fewer than samples.
#[derive(Default)]
struct Symbols {
    strings: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, Symbol>,
}

impl Symbols {
    fn get(&self, text: &str) -> Option<Symbol> {
        self.ids.get(text).copied()
    }

    fn intern(&mut self, text: &str) -> Symbol {
        if let Some(id) = self.get(text) {
            return id;
        }
        let id = self.strings.len() as Symbol;
        let text: Arc<str> = Arc::from(text);
        self.strings.push(text.clone());
        self.ids.insert(text, id);
        id
    }

    fn text(&self, id: Symbol) -> &str {
        &self.strings[id as usize]
    }

    /// The symbols of `labels`, `None` when one of their strings was never seen.
    fn lookup(&self, labels: &Labels) -> Option<Vec<(Symbol, Symbol)>> {
        labels
            .iter()
            .map(|(k, v)| Some((self.get(k)?, self.get(v)?)))
            .collect()
    }
}

/// The labels of `packed`, symbols of the table whose strings are `strings`.
fn unpack(strings: &[Arc<str>], packed: &[(Symbol, Symbol)]) -> Labels {
    packed
        .iter()
        .map(|(k, v)| {
            (
                strings[*k as usize].as_ref().to_owned(),
                strings[*v as usize].as_ref().to_owned(),
            )
        })
        .collect()
}

#[derive(Default)]
struct SeriesIndex {
    symbols: Symbols,
    ids: HashMap<Packed, SeriesId>,
    series: Vec<Option<Arc<Mutex<SeriesData>>>>,
    free: Vec<SeriesId>,
    /// Series ids by label name and value, each list sorted.
    postings: HashMap<Symbol, HashMap<Symbol, Vec<SeriesId>>>,
    per_metric: HashMap<String, usize>,
    live: usize,
}

impl SeriesIndex {
    /// The series of `labels`, if it exists; called for every sample, so the usual label set
    /// (up to 16 labels) is looked up without allocating.
    fn id_of(&self, labels: &Labels) -> Option<SeriesId> {
        let mut stack = [(0, 0); 16];
        if labels.len() > stack.len() {
            let packed = self.symbols.lookup(labels)?;
            return self.ids.get(packed.as_slice()).copied();
        }
        for (slot, (k, v)) in stack.iter_mut().zip(labels) {
            *slot = (self.symbols.get(k)?, self.symbols.get(v)?);
        }
        self.ids.get(&stack[..labels.len()]).copied()
    }
}

/// What one ingest call did.
#[derive(Debug, Default)]
pub struct IngestOutcome {
    pub accepted: u64,
    /// Samples refused (series caps, out of order, past retention), with reasons.
    pub rejected: Rejected,
}

/// Store-wide figures for `/metrics` and `status/tsdb`.
#[derive(Debug, Default, Clone)]
pub struct StoreStats {
    pub series: usize,
    pub samples: u64,
    pub chunk_bytes: u64,
    /// Heap bytes of everything but the samples, estimated from sizes and capacities: labels,
    /// series structs, the label index and the id map (allocator overhead not included).
    pub series_bytes: u64,
    pub refused_series: u64,
    pub out_of_order: u64,
    /// Series count by metric name, largest first.
    pub series_by_metric: Vec<(String, usize)>,
    /// Distinct values by label name, largest first.
    pub values_by_label: Vec<(String, usize)>,
    pub min_time_ms: Option<i64>,
    pub max_time_ms: Option<i64>,
}

/// The metric store; cheap to clone.
#[derive(Clone)]
pub struct MetricStore {
    inner: Arc<Inner>,
}

struct Inner {
    settings: MetricSettings,
    index: RwLock<SeriesIndex>,
    metadata: RwLock<BTreeMap<String, Metadata>>,
    refused_series: AtomicU64,
    out_of_order: AtomicU64,
    samples: AtomicU64,
}

impl MetricStore {
    pub fn new(settings: MetricSettings) -> MetricStore {
        MetricStore {
            inner: Arc::new(Inner {
                settings,
                index: RwLock::default(),
                metadata: RwLock::default(),
                refused_series: AtomicU64::new(0),
                out_of_order: AtomicU64::new(0),
                samples: AtomicU64::new(0),
            }),
        }
    }

    pub fn settings(&self) -> &MetricSettings {
        &self.inner.settings
    }

    /// Adds the samples of a translated export; `now_ms` bounds retention.
    pub fn ingest(&self, translated: Translated, now_ms: i64) -> IngestOutcome {
        let mut outcome = IngestOutcome::default();
        if !translated.metadata.is_empty() {
            let mut metadata = self.inner.metadata.write();
            for (name, meta) in translated.metadata {
                metadata.insert(name, meta);
            }
        }
        let oldest = now_ms - self.inner.settings.retention.as_millis() as i64;
        for sample in translated.samples {
            if sample.t_ms < oldest {
                outcome
                    .rejected
                    .add("sample older than the retention".into());
                continue;
            }
            let Some(series) = self.series_for(&sample.labels, &mut outcome.rejected) else {
                continue;
            };
            let mut data = series.lock();
            // A delta whose interval began after the newest one's is a new change even when it
            // ends in the same millisecond (exports in quick succession): it is stored a
            // millisecond after. A retried export repeats the newest interval and is skipped.
            let delta_start = i64::try_from(sample.delta_start_ns).unwrap_or(i64::MAX);
            let next_delta = sample.delta
                && delta_start > 0
                && data.start.is_some_and(|last| delta_start > last);
            // So is another value in the newest sample's millisecond (a gauge or a total
            // exported twice within it); the same value again is a retry.
            let next_value = !sample.delta
                && sample.t_ms == data.last_t
                && data
                    .head
                    .last_value()
                    .is_some_and(|last| last.to_bits() != sample.value.to_bits());
            let mut t_ms = sample.t_ms;
            if t_ms <= data.last_t && (next_delta || next_value) {
                t_ms = data.last_t + 1;
            }
            if t_ms <= data.last_t {
                // The newest sample again (a retried export or a replay) is skipped quietly;
                // so is a delta of the newest interval, stored later than sent.
                let retried_delta =
                    sample.delta && delta_start > 0 && data.start == Some(delta_start);
                if t_ms < data.last_t && !retried_delta {
                    self.inner.out_of_order.fetch_add(1, Ordering::Relaxed);
                    outcome
                        .rejected
                        .add("sample older than the newest of its series (out of order)".into());
                }
                continue;
            }
            let stale = sample.value.to_bits() == STALE_NAN_BITS;
            let mut value = sample.value;
            if sample.delta {
                if !stale {
                    data.total += sample.value;
                    value = data.total;
                }
                if delta_start > 0 {
                    data.start = Some(delta_start);
                }
            } else if let Some(start) = sample.start_ms {
                // A counter's start time: a new run begins with a zero at its start
                // (Prometheus' created timestamps), so `rate` sees the first increase and the
                // reset.
                if data.start.is_none_or(|previous| start > previous) {
                    data.start = Some(start);
                    if start < t_ms && start > data.last_t && start >= oldest {
                        data.push(start, 0.0);
                    }
                }
            }
            data.push(t_ms, value);
            for exemplar in sample.exemplars {
                let exemplars = data.exemplars.get_or_insert_default();
                if exemplars.len() == EXEMPLARS_PER_SERIES {
                    exemplars.pop_front();
                }
                exemplars.push_back(exemplar);
            }
            outcome.accepted += 1;
        }
        self.inner
            .samples
            .fetch_add(outcome.accepted, Ordering::Relaxed);
        outcome
    }

    fn series_for(
        &self,
        labels: &Labels,
        rejected: &mut Rejected,
    ) -> Option<Arc<Mutex<SeriesData>>> {
        {
            let index = self.inner.index.read();
            if let Some(id) = index.id_of(labels) {
                return index.series[id as usize].clone();
            }
        }
        let mut index = self.inner.index.write();
        if let Some(id) = index.id_of(labels) {
            return index.series[id as usize].clone();
        }
        let name = labels
            .iter()
            .find(|(k, _)| k == "__name__")
            .map_or("", |(_, v)| v.as_str())
            .to_owned();
        let settings = &self.inner.settings;
        if index.live >= settings.max_series {
            self.inner.refused_series.fetch_add(1, Ordering::Relaxed);
            rejected.add(format!(
                "series limit reached ({} series): new series refused",
                settings.max_series
            ));
            return None;
        }
        if index.per_metric.get(&name).copied().unwrap_or(0) >= settings.max_series_per_metric {
            self.inner.refused_series.fetch_add(1, Ordering::Relaxed);
            rejected.add(format!(
                "series limit of metric {name} reached ({} series): new series refused",
                settings.max_series_per_metric
            ));
            return None;
        }
        let packed: Packed = labels
            .iter()
            .map(|(k, v)| (index.symbols.intern(k), index.symbols.intern(v)))
            .collect();
        let labels = packed;
        let data = Arc::new(Mutex::new(SeriesData {
            labels: labels.clone(),
            sealed: Vec::new(),
            head: Chunk::default(),
            last_t: i64::MIN,
            total: 0.0,
            start: None,
            exemplars: None,
        }));
        let id = match index.free.pop() {
            Some(id) => {
                index.series[id as usize] = Some(data.clone());
                id
            }
            None => {
                index.series.push(Some(data.clone()));
                (index.series.len() - 1) as SeriesId
            }
        };
        for (key, value) in labels.iter() {
            let ids = index
                .postings
                .entry(*key)
                .or_default()
                .entry(*value)
                .or_default();
            // New ids are mostly the largest; a reused one goes in its place.
            if let Err(at) = ids.binary_search(&id) {
                ids.insert(at, id);
            }
        }
        *index.per_metric.entry(name).or_default() += 1;
        index.live += 1;
        index.ids.insert(labels, id);
        Some(data)
    }

    /// The series whose labels hold every `(name, value)` of `required` and pass `keep`, with
    /// their labels.
    fn candidates(
        &self,
        required: &[(&str, &str)],
        keep: &dyn Fn(&Labels) -> bool,
    ) -> Vec<(Arc<Labels>, Arc<Mutex<SeriesData>>)> {
        let index = self.inner.index.read();
        let mut lists: Vec<&Vec<SeriesId>> = Vec::new();
        for (name, value) in required {
            let ids = index.symbols.get(name).zip(index.symbols.get(value));
            match ids.and_then(|(name, value)| index.postings.get(&name)?.get(&value)) {
                Some(ids) => lists.push(ids),
                None => return Vec::new(),
            }
        }
        lists.sort_by_key(|ids| ids.len());
        let ids: Vec<SeriesId> = match lists.split_first() {
            Some((smallest, rest)) => smallest
                .iter()
                .copied()
                .filter(|id| rest.iter().all(|list| list.binary_search(id).is_ok()))
                .collect(),
            None => (0..index.series.len() as SeriesId).collect(),
        };
        ids.into_iter()
            .filter_map(|id| index.series.get(id as usize).cloned().flatten())
            .filter_map(|series| {
                let labels = unpack(&index.symbols.strings, &series.lock().labels);
                keep(&labels).then(|| (Arc::new(labels), series))
            })
            .collect()
    }

    /// Every matching series with its samples in `[start_ms, end_ms]`, in time order; series
    /// without samples there are left out.
    pub fn select(
        &self,
        required: &[(&str, &str)],
        keep: &dyn Fn(&Labels) -> bool,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SelectedSeries> {
        self.candidates(required, keep)
            .into_iter()
            .filter_map(|(labels, series)| {
                let data = series.lock();
                let mut samples = Vec::new();
                for chunk in data.chunks() {
                    if chunk.upper_t < start_ms || chunk.first_t > end_ms {
                        continue;
                    }
                    samples.extend(
                        chunk
                            .samples
                            .filter(|(t, _)| *t >= start_ms && *t <= end_ms),
                    );
                }
                (!samples.is_empty()).then_some((labels, samples))
            })
            .collect()
    }

    /// Label sets of the matching series with samples in `[start_ms, end_ms]`.
    pub fn series(
        &self,
        required: &[(&str, &str)],
        keep: &dyn Fn(&Labels) -> bool,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Arc<Labels>> {
        let mut found: Vec<Arc<Labels>> = self
            .candidates(required, keep)
            .into_iter()
            .filter_map(|(labels, series)| {
                let data = series.lock();
                let in_window = data
                    .chunks()
                    .any(|c| c.upper_t >= start_ms && c.first_t <= end_ms);
                in_window.then_some(labels)
            })
            .collect();
        found.sort();
        found
    }

    /// Exemplars of the matching series in `[start_ms, end_ms]`.
    pub fn exemplars(
        &self,
        required: &[(&str, &str)],
        keep: &dyn Fn(&Labels) -> bool,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(Arc<Labels>, Vec<Exemplar>)> {
        self.candidates(required, keep)
            .into_iter()
            .filter_map(|(labels, series)| {
                let data = series.lock();
                let exemplars: Vec<Exemplar> = data
                    .exemplars
                    .iter()
                    .flat_map(|exemplars| exemplars.iter())
                    .filter(|e| e.t_ms >= start_ms && e.t_ms <= end_ms)
                    .cloned()
                    .collect();
                (!exemplars.is_empty()).then_some((labels, exemplars))
            })
            .collect()
    }

    /// Samples held, as `stats` counts them, without walking the series.
    pub fn sample_count(&self) -> u64 {
        self.inner.samples.load(Ordering::Relaxed)
    }

    /// Forgets the refused series and out-of-order samples counted so far (after a replay).
    pub fn reset_refusal_counts(&self) {
        self.inner.refused_series.store(0, Ordering::Relaxed);
        self.inner.out_of_order.store(0, Ordering::Relaxed);
    }

    pub fn metadata(&self) -> BTreeMap<String, Metadata> {
        self.inner.metadata.read().clone()
    }

    /// Drops chunks entirely older than the retention, and series left empty.
    pub fn apply_retention(&self, now_ms: i64) -> u64 {
        let oldest = now_ms - self.inner.settings.retention.as_millis() as i64;
        let mut dropped = 0u64;
        let mut empty = Vec::new();
        {
            let index = self.inner.index.read();
            for (id, series) in index.series.iter().enumerate() {
                let Some(series) = series else { continue };
                let mut data = series.lock();
                let mut cut = 0;
                for chunk in data.chunks() {
                    let Some(end) = chunk.end.filter(|_| chunk.upper_t < oldest) else {
                        break;
                    };
                    dropped += u64::from(chunk.count);
                    cut = end;
                }
                if cut > 0 {
                    data.sealed.drain(..cut);
                    // The room at the end takes the next chunks without moving the buffer; only
                    // a series that slowed down a lot gives it back.
                    if data.sealed.capacity() > 2 * data.sealed.len() {
                        data.sealed.shrink_to_fit();
                    }
                }
                if data.sealed.is_empty() && data.head.last_t() < oldest {
                    dropped += data.head.len() as u64;
                    data.head = Chunk::default();
                    empty.push(id as SeriesId);
                }
            }
        }
        if !empty.is_empty() {
            let mut index = self.inner.index.write();
            for id in empty {
                let Some(series) = index.series[id as usize].take() else {
                    continue;
                };
                let labels = series.lock().labels.clone();
                index.ids.remove(&labels);
                for (key, value) in labels.iter() {
                    if let Some(values) = index.postings.get_mut(key) {
                        if let Some(ids) = values.get_mut(value) {
                            if let Ok(at) = ids.binary_search(&id) {
                                ids.remove(at);
                            }
                            if ids.is_empty() {
                                values.remove(value);
                            }
                        }
                        if values.is_empty() {
                            index.postings.remove(key);
                        }
                    }
                }
                let name_symbol = index.symbols.get("__name__");
                let name = labels
                    .iter()
                    .find(|(k, _)| Some(*k) == name_symbol)
                    .map(|(_, v)| index.symbols.text(*v).to_owned());
                if let Some(count) = name.and_then(|name| index.per_metric.get_mut(&name)) {
                    *count -= 1;
                }
                index.live -= 1;
                index.free.push(id);
            }
        }
        self.inner.samples.fetch_sub(
            dropped.min(self.inner.samples.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        dropped
    }

    pub fn stats(&self) -> StoreStats {
        let index = self.inner.index.read();
        let mut stats = StoreStats {
            series: index.live,
            samples: self.inner.samples.load(Ordering::Relaxed),
            refused_series: self.inner.refused_series.load(Ordering::Relaxed),
            out_of_order: self.inner.out_of_order.load(Ordering::Relaxed),
            ..StoreStats::default()
        };
        for series in index.series.iter().flatten() {
            let data = series.lock();
            let samples: usize = chunk::packed(&data.sealed)
                .map(|chunk| chunk.bytes.len())
                .sum::<usize>()
                + data.head.bytes();
            stats.chunk_bytes += samples as u64;
            // The series' Arc block (counts and the mutex around the data), the labels' Arc
            // block of symbols, the chunk buffers' headers and spare capacity, the exemplars.
            stats.series_bytes += (2 * std::mem::size_of::<usize>()
                + std::mem::size_of::<Mutex<SeriesData>>()
                + 2 * std::mem::size_of::<usize>()
                + std::mem::size_of_val(&*data.labels)
                + data.sealed.capacity()
                + data.head.capacity()
                - samples
                + data.exemplars.as_ref().map_or(0, |exemplars| {
                    std::mem::size_of::<VecDeque<Exemplar>>()
                        + exemplars.capacity() * std::mem::size_of::<Exemplar>()
                })) as u64;
            let first = data.chunks().next().map(|chunk| chunk.first_t);
            if let Some(first_t) = first {
                stats.min_time_ms = Some(stats.min_time_ms.map_or(first_t, |m| m.min(first_t)));
                stats.max_time_ms = Some(
                    stats
                        .max_time_ms
                        .map_or(data.last_t, |m| m.max(data.last_t)),
                );
            }
        }
        // The id map and the series table: a key and an id per series; the symbols: each
        // string once, in its Arc block, with its slot and its map entry; the label index: a
        // map entry and the ids of each distinct (name, value).
        stats.series_bytes += (index.ids.capacity() * (std::mem::size_of::<Packed>() + 4 + 1)
            + index.series.capacity() * std::mem::size_of::<Option<Arc<Mutex<SeriesData>>>>())
            as u64;
        for text in &index.symbols.strings {
            stats.series_bytes += (2 * std::mem::size_of::<usize>()
                + text.len()
                + 3 * std::mem::size_of::<Arc<str>>()) as u64;
        }
        for values in index.postings.values() {
            for ids in values.values() {
                stats.series_bytes += (std::mem::size_of::<(Symbol, Vec<SeriesId>)>()
                    + ids.capacity() * std::mem::size_of::<SeriesId>())
                    as u64;
            }
        }
        stats.series_by_metric = index
            .per_metric
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(name, n)| (name.clone(), *n))
            .collect();
        stats
            .series_by_metric
            .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        stats.values_by_label = index
            .postings
            .iter()
            .map(|(name, values)| (index.symbols.text(*name).to_owned(), values.len()))
            .collect();
        stats
            .values_by_label
            .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        stats
    }

    /// Label names of the series matching, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let index = self.inner.index.read();
        let mut names: Vec<String> = index
            .postings
            .keys()
            .map(|name| index.symbols.text(*name).to_owned())
            .collect();
        names.sort();
        names
    }

    /// Values of a label, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let index = self.inner.index.read();
        let mut values: Vec<String> = index
            .symbols
            .get(name)
            .and_then(|name| index.postings.get(&name))
            .map(|values| {
                values
                    .keys()
                    .map(|value| index.symbols.text(*value).to_owned())
                    .collect()
            })
            .unwrap_or_default();
        values.sort();
        values
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use sightline_proto::metric::Sample;

    fn labels(name: &str, extra: &[(&str, &str)]) -> Labels {
        let mut labels: Labels = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.push(("__name__".into(), name.into()));
        labels.sort();
        labels
    }

    pub(super) fn sample(labels: Labels, t_ms: i64, value: f64, delta: bool) -> Sample {
        Sample {
            labels,
            t_ms,
            value,
            delta,
            start_ms: None,
            delta_start_ns: 0,
            exemplars: Vec::new(),
        }
    }

    fn translated(samples: Vec<Sample>) -> Translated {
        Translated {
            samples,
            ..Translated::default()
        }
    }

    #[test]
    fn deltas_accumulate_duplicates_skip_and_out_of_order_is_refused() {
        let store = MetricStore::new(MetricSettings::default());
        let now = 10_000_000;
        let a = labels("requests_total", &[("job", "api")]);
        let outcome = store.ingest(
            translated(vec![
                sample(a.clone(), now - 3000, 5.0, true),
                sample(a.clone(), now - 2000, 2.0, true),
                sample(a.clone(), now - 2000, 2.0, true),
                sample(a.clone(), now - 2500, 1.0, true),
                sample(a.clone(), now - 1000, 0.0, true),
            ]),
            now,
        );
        assert_eq!(outcome.accepted, 3);
        assert_eq!(outcome.rejected.count, 1);
        let selected = store.select(&[("job", "api")], &|_| true, 0, now);
        assert_eq!(selected.len(), 1);
        // 5, then 5 + 2, then 7 + 0: the duplicate and the out-of-order delta are not added.
        assert_eq!(
            selected[0].1,
            [(now - 3000, 5.0), (now - 2000, 7.0), (now - 1000, 7.0)]
        );
    }

    #[test]
    fn deltas_of_successive_intervals_in_one_millisecond_both_count_and_a_retry_does_not() {
        let store = MetricStore::new(MetricSettings::default());
        let now = 10_000_000;
        let a = labels("orders_total", &[("job", "shop")]);
        let ns = |ms: i64| (ms * 1_000_000) as u64;
        let delta = |start_ns: u64, t: i64, value: f64| Sample {
            delta_start_ns: start_ns,
            ..sample(a.clone(), t, value, true)
        };
        // Three exports inside one millisecond: each interval starts where the last ended.
        let outcome = store.ingest(
            translated(vec![
                delta(ns(now - 2000) + 100, now - 2000, 5.0),
                delta(ns(now - 2000) + 300, now - 2000, 3.0),
                delta(ns(now - 2000) + 500, now - 2000, 1.0),
                // The last export retried.
                delta(ns(now - 2000) + 500, now - 2000, 1.0),
                delta(ns(now - 2000) + 700, now - 1000, 2.0),
            ]),
            now,
        );
        assert_eq!(outcome.accepted, 4);
        assert_eq!(outcome.rejected.count, 0, "{:?}", outcome.rejected);
        let selected = store.select(&[("job", "shop")], &|_| true, 0, now);
        assert_eq!(
            selected[0].1,
            [
                (now - 2000, 5.0),
                (now - 1999, 8.0),
                (now - 1998, 9.0),
                (now - 1000, 11.0)
            ]
        );
    }

    #[test]
    fn another_value_in_the_newest_millisecond_is_kept_and_the_same_value_skipped() {
        let store = MetricStore::new(MetricSettings::default());
        let now = 10_000_000;
        let a = labels("temperature", &[("room", "a")]);
        let outcome = store.ingest(
            translated(vec![
                sample(a.clone(), now - 2000, 20.5, false),
                sample(a.clone(), now - 2000, 20.5, false),
                sample(a.clone(), now - 2000, 21.5, false),
            ]),
            now,
        );
        assert_eq!(outcome.accepted, 2);
        assert_eq!(outcome.rejected.count, 0);
        let selected = store.select(&[("room", "a")], &|_| true, 0, now);
        assert_eq!(selected[0].1, [(now - 2000, 20.5), (now - 1999, 21.5)]);
    }

    #[test]
    fn a_series_is_found_again_by_its_labels_short_or_long() {
        let store = MetricStore::new(MetricSettings::default());
        let now = 10_000_000;
        let names: Vec<String> = (0..20).map(|i| format!("l{i:02}")).collect();
        let long: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let short = labels("a", &[("job", "api")]);
        let long = labels("b", &long);
        for t in [now - 2000, now - 1000] {
            let outcome = store.ingest(
                translated(vec![
                    sample(short.clone(), t, 1.0, false),
                    sample(long.clone(), t, 1.0, false),
                ]),
                now,
            );
            assert_eq!(outcome.accepted, 2);
        }
        assert_eq!(store.stats().series, 2);
        let selected = store.select(&[("l19", "v")], &|_| true, 0, now);
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].0.as_ref(), &long);
        assert_eq!(selected[0].1.len(), 2);
    }

    #[test]
    fn series_caps_refuse_new_series_only() {
        let store = MetricStore::new(MetricSettings {
            max_series: 3,
            max_series_per_metric: 2,
            ..MetricSettings::default()
        });
        let now = 1_000_000;
        let samples = (0..3)
            .map(|i| sample(labels("a", &[("i", &i.to_string())]), now, 1.0, false))
            .chain((0..3).map(|i| sample(labels("b", &[("i", &i.to_string())]), now, 1.0, false)))
            .collect();
        let outcome = store.ingest(translated(samples), now);
        // a: 2 (per-metric cap), b: 1 (global cap of 3).
        assert_eq!(outcome.accepted, 3);
        assert_eq!(outcome.rejected.count, 3);
        assert_eq!(store.stats().refused_series, 3);
        // Existing series keep taking samples.
        let outcome = store.ingest(
            translated(vec![sample(
                labels("a", &[("i", "0")]),
                now + 1,
                2.0,
                false,
            )]),
            now,
        );
        assert_eq!(outcome.accepted, 1);
    }

    #[test]
    fn retention_drops_old_chunks_and_empty_series() {
        let store = MetricStore::new(MetricSettings {
            retention: Duration::from_secs(3600),
            ..MetricSettings::default()
        });
        let old = labels("old", &[]);
        let new = labels("new", &[]);
        let now = 100_000_000;
        let samples = (0..300)
            .map(|i| sample(old.clone(), now - 3_000_000 + i * 1000, i as f64, false))
            .chain((0..10).map(|i| sample(new.clone(), now - 10_000 + i * 1000, 1.0, false)))
            .collect();
        store.ingest(translated(samples), now);
        assert_eq!(store.stats().series, 2);
        // An hour after `now - 20 s`: the old series is past retention, the new one is not.
        let dropped = store.apply_retention(now + 3_600_000 - 20_000);
        assert_eq!(dropped, 300);
        assert_eq!(store.stats().series, 1);
        assert_eq!(store.label_values("__name__"), ["new"]);
    }
}
