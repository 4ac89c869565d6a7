//! Retention: records older than the maximum age are deleted, and when the data directory is over
//! its disk budget the oldest records go first until it fits.
//!
//! Each lane's indexer thread applies retention between commits with the index writer it already
//! owns, so neither ingest nor queries stop: a delete is a tantivy delete query on the lane's time
//! field, visible at the next commit. Segments whose every document is deleted are dropped at
//! that commit (ingest order is close to time order, so old segments empty out whole), and
//! segments with many deletes are merged away by the merge policy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tantivy::collector::Count;
use tantivy::query::RangeQuery;
use tantivy::schema::Field;
use tantivy::{Index, IndexWriter, Searcher, Term};
use tracing::info;

use crate::metrics::IngestMetrics;
use crate::pipeline::Signal;

/// Disk-budget deletes aim this far below the budget, so that they do not run at every check.
const DISK_HEADROOM: f64 = 0.05;
/// Timestamps sampled to find the age cutoff that frees enough space.
const QUANTILE_SAMPLES: u64 = 100_000;

#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Records older than this are deleted; `None` keeps them forever.
    pub max_age: Option<Duration>,
    /// Bytes the data directory may use; `None` for no budget.
    pub max_disk_bytes: Option<u64>,
    /// How often each lane checks.
    pub check_interval: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_disk_bytes: None,
            check_interval: Duration::from_secs(60),
        }
    }
}

/// Retention for the whole data directory; hands each lane its part.
#[derive(Clone)]
pub struct Retention {
    settings: RetentionSettings,
    data_dir: PathBuf,
    metrics: IngestMetrics,
}

impl Retention {
    pub fn new(settings: RetentionSettings, data_dir: PathBuf, metrics: IngestMetrics) -> Self {
        Self {
            settings,
            data_dir,
            metrics,
        }
    }

    pub(crate) fn for_lane(
        &self,
        signal: Signal,
        index: Index,
        index_dir: PathBuf,
        time_field: Field,
    ) -> LaneRetention {
        LaneRetention {
            retention: self.clone(),
            signal,
            index,
            index_dir,
            time_field,
            last_check: None,
            over_budget: false,
        }
    }
}

/// Retention of one lane, run by its indexer thread.
pub(crate) struct LaneRetention {
    retention: Retention,
    signal: Signal,
    index: Index,
    index_dir: PathBuf,
    time_field: Field,
    last_check: Option<Instant>,
    /// Whether the data directory was over its budget at the last check, deleted documents
    /// included.
    over_budget: bool,
}

impl LaneRetention {
    pub(crate) fn due(&self) -> bool {
        self.last_check
            .is_none_or(|last| last.elapsed() >= self.retention.settings.check_interval)
    }

    /// Whether the disk is over budget even if no more records need to go: the space of
    /// deleted documents must be reclaimed by merging their segments.
    pub(crate) fn over_budget(&self) -> bool {
        self.over_budget
    }

    /// Deletes what is past retention; returns whether anything was deleted (the caller
    /// commits).
    pub(crate) fn apply(
        &mut self,
        searcher: &Searcher,
        writer: &IndexWriter,
    ) -> tantivy::Result<bool> {
        self.last_check = Some(Instant::now());
        let settings = &self.retention.settings;
        let metrics = &self.retention.metrics;
        let now = crate::now_nanos();
        let mut cutoffs = Vec::new();
        if let Some(age) = settings.max_age {
            cutoffs.push((now.saturating_sub(age.as_nanos() as u64), "age"));
        }
        if let Some(budget) = settings.max_disk_bytes {
            let used = dir_bytes(&self.retention.data_dir);
            metrics.data_dir_bytes.set(used as i64);
            self.over_budget = used > budget;
            // This index counts as its committed segments, less their deleted documents: files
            // of merges in progress and deleted documents not yet merged away are on their way
            // out, and counting them would delete again what is already going.
            let mut mine_files = 0u64;
            let mut mine_live = 0f64;
            for segment in searcher.segment_readers() {
                let bytes = segment.space_usage()?.total().get_bytes();
                mine_files += bytes;
                if segment.max_doc() > 0 {
                    mine_live +=
                        bytes as f64 * f64::from(segment.num_docs()) / f64::from(segment.max_doc());
                }
            }
            let others = dir_bytes(&self.index_dir).max(mine_files);
            let live = used.saturating_sub(others) as f64 + mine_live;
            if live > budget as f64 && mine_live > 0.0 {
                // Every lane removes the same fraction of its oldest records, so the whole
                // directory shrinks by the excess.
                let fraction = ((live - budget as f64) / live + DISK_HEADROOM).min(1.0);
                if let Some(cutoff) = self.time_quantile(searcher, fraction)? {
                    cutoffs.push((cutoff, "disk"));
                }
            }
        }
        let Some(&(cutoff, reason)) = cutoffs.iter().max_by_key(|(cutoff, _)| *cutoff) else {
            return Ok(false);
        };
        let expired = RangeQuery::new(
            std::ops::Bound::Unbounded,
            std::ops::Bound::Excluded(Term::from_field_u64(self.time_field, cutoff)),
        );
        let count = searcher.search(&expired, &Count)? as u64;
        if count == 0 {
            return Ok(false);
        }
        writer.delete_query(Box::new(expired))?;
        metrics
            .retention_removed
            .with_label_values(&[self.signal.label(), reason])
            .inc_by(count);
        info!(
            signal = self.signal.label(),
            reason,
            records = count,
            cutoff_unix_nanos = cutoff,
            "retention: deleting old records"
        );
        Ok(true)
    }

    /// The timestamp below which `fraction` of the live records lie, from a sample.
    fn time_quantile(&self, searcher: &Searcher, fraction: f64) -> tantivy::Result<Option<u64>> {
        let name = self
            .index
            .schema()
            .get_field_name(self.time_field)
            .to_owned();
        let total = searcher.num_docs();
        let stride = (total / QUANTILE_SAMPLES).max(1) as u32;
        let mut sample = Vec::new();
        for segment in searcher.segment_readers() {
            let column = segment.fast_fields().u64(&name)?;
            let alive = segment.alive_bitset();
            for doc in (0..segment.max_doc()).step_by(stride as usize) {
                if alive.is_some_and(|alive| !alive.is_alive(doc)) {
                    continue;
                }
                if let Some(time) = column.first(doc) {
                    sample.push(time);
                }
            }
        }
        if sample.is_empty() {
            return Ok(None);
        }
        sample.sort_unstable();
        let position = ((sample.len() as f64 * fraction) as usize).min(sample.len() - 1);
        // Everything strictly below the cutoff goes: step past the sampled value itself.
        Ok(Some(sample[position].saturating_add(1)))
    }
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
