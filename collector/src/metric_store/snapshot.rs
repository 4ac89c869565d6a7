//! Snapshots of the metric store: a restart reads the store back and replays only the
//! write-ahead log written since, instead of every request of the retention.
//!
//! One file, `<dir>/snapshot`: the magic `SLMSNAP1`, the sequence number of the newest
//! write-ahead-log frame whose samples it holds (u64 LE), then frames
//! `[body_len: u32 LE][crc32(body): u32 LE][body]`, each body a run of records (metric metadata,
//! series). It is written to `snapshot.tmp`, fsync'd and renamed over the previous one, so a
//! crash while writing leaves the previous snapshot, and the log it still needs, in place.
//!
//! A snapshot is taken while ingest goes on, one series at a time: a series may already hold
//! samples of frames after the recorded sequence number. Replaying those frames adds nothing
//! twice, since a sample at or before a series' newest is skipped (as a retried export's is),
//! and a delta series' running total only grows by the samples it takes.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use sightline_proto::metric::{Exemplar, Labels, Metadata};
use sightline_proto::validate::Rejected;
use tracing::error;

use super::{chunk, unpack, Chunk, MetricStore, Packed, SeriesData};

const MAGIC: &[u8; 8] = b"SLMSNAP1";
const FILE: &str = "snapshot";
const TEMPORARY: &str = "snapshot.tmp";
/// A frame is written once its records reach this size (a larger series makes a larger frame).
const FRAME_BYTES: usize = 1 << 20;
/// Larger frames are treated as corruption.
const MAX_FRAME_BYTES: usize = 1 << 30;

const METADATA: u8 = 1;
const SERIES: u8 = 2;

/// What a snapshot held.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// Every write-ahead-log frame up to this one is in the snapshot.
    pub seq: u64,
    pub series: u64,
    pub samples: u64,
    pub bytes: u64,
}

/// A snapshot just written.
#[derive(Debug)]
pub struct Written {
    pub summary: SnapshotSummary,
    /// How long the series index was read-locked (a new series waits for it).
    pub index_locked: std::time::Duration,
}

/// What reading a snapshot found besides the series it restored.
#[derive(Debug, Default)]
pub struct Restored {
    pub summary: SnapshotSummary,
    /// Frames that failed their checksum or did not parse: their series are lost.
    pub corrupt_frames: u64,
    /// Series refused by the series caps of this start (they were lowered).
    pub refused: Rejected,
}

impl MetricStore {
    /// Writes the store's series and metadata to `dir` as holding every frame up to `seq`
    /// (which must all have been applied), replacing the previous snapshot.
    pub fn write_snapshot(&self, dir: &Path, seq: u64) -> io::Result<Written> {
        fs::create_dir_all(dir)?;
        let temporary = dir.join(TEMPORARY);
        let mut out = BufWriter::with_capacity(FRAME_BYTES, File::create(&temporary)?);
        out.write_all(MAGIC)?;
        out.write_all(&seq.to_le_bytes())?;
        let mut summary = SnapshotSummary {
            seq,
            bytes: (MAGIC.len() + 8) as u64,
            ..SnapshotSummary::default()
        };
        let mut frame = Vec::with_capacity(FRAME_BYTES);
        let metadata = self.inner.metadata.read().clone();
        for (name, meta) in &metadata {
            frame.push(METADATA);
            for text in [name, meta.kind, &meta.help, &meta.unit, &meta.otlp_name] {
                put_str(&mut frame, text);
            }
        }
        // The series as they are now, with their labels' symbols and the strings they stand
        // for: the index is read-locked only to copy pointers (a new series waits for that, and
        // parking_lot lets no reader in while a writer waits, so all of ingest would). Each
        // series is then copied under its own lock only.
        let started = std::time::Instant::now();
        let (strings, series) = {
            let index = self.inner.index.read();
            let series: Vec<(Packed, Arc<Mutex<SeriesData>>)> = index
                .series
                .iter()
                .flatten()
                .map(|series| (series.lock().labels.clone(), series.clone()))
                .collect();
            (index.symbols.strings.clone(), series)
        };
        let index_locked = started.elapsed();
        let mut head = Vec::new();
        for (packed, series) in series {
            let labels = unpack(&strings, &packed);
            {
                let data = series.lock();
                frame.push(SERIES);
                put_labels(&mut frame, &labels);
                frame.extend_from_slice(&data.last_t.to_le_bytes());
                frame.extend_from_slice(&data.total.to_le_bytes());
                frame.extend_from_slice(&data.start.unwrap_or(i64::MIN).to_le_bytes());
                put_bytes(&mut frame, &data.sealed);
                head.clear();
                if !data.head.is_empty() {
                    data.head.clone().seal_into(&mut head);
                }
                put_bytes(&mut frame, &head);
                let exemplars = data.exemplars.as_deref();
                frame.push(exemplars.map_or(0, |e| e.len()) as u8);
                for exemplar in exemplars.into_iter().flatten() {
                    put_labels(&mut frame, &exemplar.labels);
                    frame.extend_from_slice(&exemplar.t_ms.to_le_bytes());
                    frame.extend_from_slice(&exemplar.value.to_le_bytes());
                }
                summary.series += 1;
                summary.samples += chunk::packed(&data.sealed)
                    .map(|chunk| u64::from(chunk.count))
                    .sum::<u64>()
                    + data.head.len() as u64;
            }
            if frame.len() >= FRAME_BYTES {
                summary.bytes += write_frame(&mut out, &frame)?;
                frame.clear();
            }
        }
        if !frame.is_empty() {
            summary.bytes += write_frame(&mut out, &frame)?;
        }
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()?;
        fs::rename(&temporary, dir.join(FILE))?;
        File::open(dir)?.sync_all()?;
        Ok(Written {
            summary,
            index_locked,
        })
    }

    /// Restores the snapshot in `dir` into this (empty) store; `None` when there is none. A
    /// frame that fails its checksum is logged and skipped, and counted; a file that is not a
    /// snapshot is an error, since the log it replaced is gone.
    pub fn read_snapshot(&self, dir: &Path) -> io::Result<Option<Restored>> {
        let path = dir.join(FILE);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let mut input = BufReader::with_capacity(FRAME_BYTES, file);
        let mut header = [0u8; 16];
        input.read_exact(&mut header).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("{}: no snapshot header: {err}", path.display()),
            )
        })?;
        if &header[..8] != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a metric store snapshot", path.display()),
            ));
        }
        let mut restored = Restored::default();
        restored.summary.seq = u64::from_le_bytes(header[8..].try_into().unwrap_or_default());
        restored.summary.bytes = header.len() as u64;
        let mut frame = Vec::new();
        loop {
            let mut frame_header = [0u8; 8];
            match input.read_exact(&mut frame_header) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(err) => return Err(err),
            }
            let len = u32::from_le_bytes(frame_header[..4].try_into().unwrap_or_default()) as usize;
            let crc = u32::from_le_bytes(frame_header[4..].try_into().unwrap_or_default());
            if len > MAX_FRAME_BYTES {
                error!(path = %path.display(), len, "snapshot frame too large: the rest of the snapshot is lost");
                restored.corrupt_frames += 1;
                break;
            }
            frame.resize(len, 0);
            if let Err(err) = input.read_exact(&mut frame) {
                error!(path = %path.display(), error = %err, "snapshot cut short: the rest of it is lost");
                restored.corrupt_frames += 1;
                break;
            }
            restored.summary.bytes += (frame_header.len() + len) as u64;
            if crc32fast::hash(&frame) != crc {
                error!(path = %path.display(), "snapshot frame fails its checksum: its series are lost");
                restored.corrupt_frames += 1;
                continue;
            }
            if let Err(reason) = self.restore_frame(&frame, &mut restored) {
                error!(path = %path.display(), reason, "snapshot frame does not parse: the rest of its series are lost");
                restored.corrupt_frames += 1;
            }
        }
        Ok(Some(restored))
    }

    fn restore_frame(&self, frame: &[u8], restored: &mut Restored) -> Result<(), &'static str> {
        let mut input = Input(frame);
        while let Some(tag) = input.u8() {
            match tag {
                METADATA => {
                    let name = input.str()?;
                    let kind = match input.str()?.as_str() {
                        "counter" => "counter",
                        "histogram" => "histogram",
                        "summary" => "summary",
                        "gauge" => "gauge",
                        _ => "unknown",
                    };
                    let meta = Metadata {
                        kind,
                        help: input.str()?,
                        unit: input.str()?,
                        otlp_name: input.str()?,
                    };
                    self.inner.metadata.write().insert(name, meta);
                }
                SERIES => self.restore_series(&mut input, restored)?,
                _ => return Err("unknown record"),
            }
        }
        Ok(())
    }

    fn restore_series(
        &self,
        input: &mut Input,
        restored: &mut Restored,
    ) -> Result<(), &'static str> {
        let labels = input.labels()?;
        let last_t = input.i64()?;
        let total = f64::from_le_bytes(input.array()?);
        let start = Some(input.i64()?).filter(|start| *start != i64::MIN);
        let sealed = input.bytes()?.to_vec();
        let mut head = Chunk::default();
        if let Some(packed) = chunk::packed(input.bytes()?).next() {
            for (t, v) in packed.samples() {
                head.push(t, v);
            }
        }
        let exemplar_count = input.u8().ok_or("cut short")?;
        let mut exemplars = Vec::with_capacity(usize::from(exemplar_count));
        for _ in 0..exemplar_count {
            exemplars.push(Exemplar {
                labels: input.labels()?,
                t_ms: input.i64()?,
                value: f64::from_le_bytes(input.array()?),
            });
        }
        let samples = chunk::packed(&sealed)
            .map(|chunk| u64::from(chunk.count))
            .sum::<u64>()
            + head.len() as u64;
        let Some(series) = self.series_for(&labels, &mut restored.refused) else {
            return Ok(());
        };
        let mut data = series.lock();
        data.sealed = sealed;
        data.head = head;
        data.last_t = last_t;
        data.total = total;
        data.start = start;
        data.exemplars = (!exemplars.is_empty()).then(|| Box::new(exemplars.into()));
        self.inner.samples.fetch_add(samples, Ordering::Relaxed);
        restored.summary.series += 1;
        restored.summary.samples += samples;
        Ok(())
    }
}

fn write_frame(out: &mut impl Write, body: &[u8]) -> io::Result<u64> {
    out.write_all(&(body.len() as u32).to_le_bytes())?;
    out.write_all(&crc32fast::hash(body).to_le_bytes())?;
    out.write_all(body)?;
    Ok(8 + body.len() as u64)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_bytes(out, text.as_bytes());
}

fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
    out.extend_from_slice(&(labels.len() as u16).to_le_bytes());
    for (name, value) in labels {
        put_str(out, name);
        put_str(out, value);
    }
}

/// Reads what the `put_*` functions wrote; every read fails on a record cut short.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < len {
            return Err("cut short");
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        self.take(N)?.try_into().map_err(|_| "cut short")
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).ok().map(|bytes| bytes[0])
    }

    fn i64(&mut self) -> Result<i64, &'static str> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }

    fn str(&mut self) -> Result<String, &'static str> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "a string is not UTF-8")
    }

    fn labels(&mut self) -> Result<Labels, &'static str> {
        let count = u16::from_le_bytes(self.array()?);
        (0..count).map(|_| Ok((self.str()?, self.str()?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric_store::MetricSettings;
    use sightline_proto::metric::{Sample, Translated};
    use std::time::Duration;

    fn store() -> MetricStore {
        MetricStore::new(MetricSettings {
            retention: Duration::from_secs(365 * 24 * 3600),
            ..MetricSettings::default()
        })
    }

    fn labels(name: &str, pod: &str) -> Labels {
        vec![
            ("__name__".to_owned(), name.to_owned()),
            ("pod".to_owned(), pod.to_owned()),
        ]
    }

    fn export(samples: Vec<Sample>) -> Translated {
        let mut translated = Translated::default();
        translated.metadata.insert(
            "requests_total".to_owned(),
            Metadata {
                kind: "counter",
                help: "requests".to_owned(),
                unit: String::new(),
                otlp_name: "requests".to_owned(),
            },
        );
        translated.samples = samples;
        translated
    }

    fn sample(name: &str, pod: &str, t_ms: i64, value: f64, delta: bool) -> Sample {
        crate::metric_store::tests::sample(labels(name, pod), t_ms, value, delta)
    }

    /// Every series' samples, as `select` returns them for all time.
    fn everything(store: &MetricStore) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let mut all: Vec<_> = store
            .select(&[], &|_| true, i64::MIN, i64::MAX)
            .into_iter()
            .map(|(labels, samples)| ((*labels).clone(), samples))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    #[test]
    fn a_snapshot_restores_every_sample_and_replaying_newer_frames_adds_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let before = store();
        // A float series over several chunks, a whole-number counter, a delta series.
        let mut samples = Vec::new();
        for i in 0..300i64 {
            samples.push(sample(
                "temperature",
                "a",
                1_000 + i * 15_000,
                20.0 + (i as f64).sin(),
                false,
            ));
            samples.push(sample(
                "requests_total",
                "a",
                1_000 + i * 15_000,
                (i * 3) as f64,
                false,
            ));
            samples.push(sample("bytes_total", "b", 1_000 + i * 15_000, 2.0, true));
        }
        let mut with_exemplar = sample("requests_total", "b", 5_000, 1.0, false);
        with_exemplar.exemplars.push(Exemplar {
            labels: vec![("trace_id".to_owned(), "ab".repeat(16))],
            t_ms: 5_000,
            value: 1.0,
        });
        samples.push(with_exemplar);
        assert_eq!(before.ingest(export(samples), 10_000_000).accepted, 901);
        let summary = before.write_snapshot(dir.path(), 7).unwrap().summary;
        assert_eq!((summary.seq, summary.series, summary.samples), (7, 4, 901));

        let after = store();
        let restored = after.read_snapshot(dir.path()).unwrap().unwrap();
        assert_eq!(restored.summary, summary);
        assert_eq!(restored.corrupt_frames, 0);
        assert_eq!(everything(&after), everything(&before));
        assert_eq!(after.metadata(), before.metadata());
        assert_eq!(after.stats().samples, 901);
        let exemplars = after.exemplars(&[], &|_| true, 0, 10_000);
        assert_eq!(exemplars.len(), 1);

        // A frame written while the snapshot was taken is replayed: what the snapshot already
        // holds is skipped, the delta total goes on from where it was.
        let replay = || {
            export(vec![
                sample("bytes_total", "b", 1_000 + 299 * 15_000, 2.0, true),
                sample("bytes_total", "b", 1_000 + 300 * 15_000, 2.0, true),
            ])
        };
        assert_eq!(before.ingest(replay(), 10_000_000).accepted, 1);
        assert_eq!(after.ingest(replay(), 10_000_000).accepted, 1);
        assert_eq!(everything(&after), everything(&before));
        let bytes = everything(&after)
            .into_iter()
            .find(|(labels, _)| labels[0].1 == "bytes_total")
            .unwrap()
            .1;
        assert_eq!(bytes.last(), Some(&(1_000 + 300 * 15_000, 602.0)));
    }

    #[test]
    fn a_corrupt_frame_is_counted_and_the_rest_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let before = store();
        // Enough series for several frames.
        let samples = (0..40_000)
            .map(|i| {
                sample(
                    "up",
                    &format!("pod-{i}-{}", "x".repeat(20)),
                    1_000,
                    1.0,
                    false,
                )
            })
            .collect();
        before.ingest(export(samples), 10_000_000);
        before.write_snapshot(dir.path(), 1).unwrap();
        let path = dir.path().join(FILE);
        let mut bytes = fs::read(&path).unwrap();
        // Flip a byte inside the first frame's body.
        bytes[16 + 8 + 100] ^= 0xff;
        fs::write(&path, &bytes).unwrap();

        let after = store();
        let restored = after.read_snapshot(dir.path()).unwrap().unwrap();
        assert_eq!(restored.corrupt_frames, 1);
        assert!(restored.summary.series > 0 && restored.summary.series < 40_000);
        assert_eq!(after.stats().series as u64, restored.summary.series);

        fs::write(&path, b"not a snapshot at all").unwrap();
        assert!(store().read_snapshot(dir.path()).is_err());
        fs::remove_file(&path).unwrap();
        assert!(store().read_snapshot(dir.path()).unwrap().is_none());
    }
}
