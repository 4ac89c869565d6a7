//! The write-ahead log: every accepted batch is appended and fsync'd here before its request is
//! acknowledged, and replayed into the stores after a crash.
//!
//! Layout: `<data_dir>/wal/<first_seq>.wal` segment files. Each frame is
//! `[body_len: u32 LE][crc32(body): u32 LE][body]` with `body = [seq: u64 LE][kind: u8][payload]`.
//! Sequence numbers grow by one per frame and never restart: the stores record the last sequence
//! number they committed, and replay starts after it, so a record is indexed exactly once.
//!
//! A torn frame at the end of the last segment (the process died mid-write, so that write was
//! never acknowledged) is cut off on open. Segments whose every frame has been committed by the
//! stores are deleted by [`WalSegments::remove_committed`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::{info, warn};

const FRAME_HEADER_LEN: usize = 8;
const BODY_HEADER_LEN: usize = 9;
/// Larger frames are treated as corruption: no batch is this large (requests are capped well below).
const MAX_FRAME_LEN: usize = 1 << 30;

/// What a frame holds. Stored as one byte; new signals get new values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A batch of encoded span records (see `SpanFields::batch`).
    Spans = 1,
    /// A batch of encoded log records (see `log_store::LogEncoder`).
    Logs = 2,
    /// An OTLP `ExportMetricsServiceRequest`, as received (validated).
    Metrics = 3,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Spans),
            2 => Some(Self::Logs),
            3 => Some(Self::Metrics),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log i/o error in {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One segment file: its path and the sequence number of its first frame.
#[derive(Debug, Clone)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
}

/// The list of segment files, shared between the writer (which adds segments) and the stores'
/// committer (which removes committed ones).
#[derive(Debug, Clone, Default)]
pub struct WalSegments {
    dir: PathBuf,
    segments: Arc<Mutex<Vec<Segment>>>,
}

impl WalSegments {
    /// Deletes every segment whose frames all have a sequence number at or below
    /// `committed_seq`. The newest segment stays: the writer appends to it. Returns the bytes freed.
    pub fn remove_committed(&self, committed_seq: u64) -> u64 {
        let mut segments = self.segments.lock();
        let mut freed = 0;
        while segments.len() > 1 && segments[1].first_seq <= committed_seq + 1 {
            let segment = segments.remove(0);
            freed += fs::metadata(&segment.path).map(|m| m.len()).unwrap_or(0);
            if let Err(err) = fs::remove_file(&segment.path) {
                warn!(path = %segment.path.display(), error = %err, "failed to remove write-ahead log segment");
            }
        }
        freed
    }

    /// Total bytes of all segment files.
    pub fn disk_bytes(&self) -> u64 {
        self.segments
            .lock()
            .iter()
            .map(|segment| fs::metadata(&segment.path).map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A frame read back during replay.
pub struct ReplayedFrame {
    pub seq: u64,
    pub kind: RecordKind,
    pub payload: Vec<u8>,
}

/// The appending side of the log. Owned by one writer thread.
pub struct WalWriter {
    segments: WalSegments,
    file: File,
    file_len: u64,
    next_seq: u64,
    segment_bytes: u64,
    frame_buf: Vec<u8>,
}

/// Opens the log in `dir`, replays every frame with a sequence number above `committed_seq`
/// into `replay`, and returns the writer positioned after the last frame.
pub fn open(
    dir: &Path,
    committed_seq: u64,
    segment_bytes: u64,
    mut replay: impl FnMut(ReplayedFrame),
) -> Result<WalWriter, WalError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut segments = list_segments(dir)?;
    let mut last_seq = committed_seq;
    let num_segments = segments.len();
    for (index, segment) in segments.iter().enumerate() {
        let is_last = index + 1 == num_segments;
        let (valid_len, torn) = read_segment(&segment.path, |frame| {
            last_seq = last_seq.max(frame.seq);
            if frame.seq > committed_seq {
                replay(frame);
            }
        })?;
        if torn {
            if is_last {
                warn!(path = %segment.path.display(), valid_len, "cutting off a torn write at the end of the write-ahead log");
                let file = OpenOptions::new()
                    .write(true)
                    .open(&segment.path)
                    .map_err(io_error(&segment.path))?;
                file.set_len(valid_len)
                    .and_then(|()| file.sync_all())
                    .map_err(io_error(&segment.path))?;
            } else {
                warn!(path = %segment.path.display(), valid_len, "corrupt frame in a write-ahead log segment: the rest of this segment is skipped");
            }
        }
    }
    let next_seq = last_seq + 1;
    let (file, file_len) = match segments.last() {
        Some(segment) => {
            let mut file = OpenOptions::new()
                .append(true)
                .open(&segment.path)
                .map_err(io_error(&segment.path))?;
            let len = file
                .seek(SeekFrom::End(0))
                .map_err(io_error(&segment.path))?;
            (file, len)
        }
        None => {
            let segment = create_segment(dir, next_seq)?;
            let file = OpenOptions::new()
                .append(true)
                .open(&segment.path)
                .map_err(io_error(&segment.path))?;
            segments.push(segment);
            (file, 0)
        }
    };
    info!(dir = %dir.display(), next_seq, segments = segments.len(), "write-ahead log opened");
    Ok(WalWriter {
        segments: WalSegments {
            dir: dir.to_owned(),
            segments: Arc::new(Mutex::new(segments)),
        },
        file,
        file_len,
        next_seq,
        segment_bytes,
        frame_buf: Vec::new(),
    })
}

impl WalWriter {
    pub fn segments(&self) -> WalSegments {
        self.segments.clone()
    }

    /// Buffers a frame; it is written by the next [`WalWriter::sync`]. Returns its sequence number.
    pub fn append(&mut self, kind: RecordKind, payload: &[u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let body_len = BODY_HEADER_LEN + payload.len();
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&seq.to_le_bytes());
        hasher.update(&[kind as u8]);
        hasher.update(payload);
        self.frame_buf.reserve(FRAME_HEADER_LEN + body_len);
        self.frame_buf
            .extend_from_slice(&(body_len as u32).to_le_bytes());
        self.frame_buf
            .extend_from_slice(&hasher.finalize().to_le_bytes());
        self.frame_buf.extend_from_slice(&seq.to_le_bytes());
        self.frame_buf.push(kind as u8);
        self.frame_buf.extend_from_slice(payload);
        seq
    }

    /// Writes the buffered frames and fsyncs them: one fsync for every frame appended since the
    /// last call. Returns the number of bytes written.
    pub fn sync(&mut self) -> Result<u64, WalError> {
        if self.frame_buf.is_empty() {
            return Ok(0);
        }
        if self.file_len >= self.segment_bytes {
            self.rotate()?;
        }
        let path = self.current_path();
        if let Err(err) = self
            .file
            .write_all(&self.frame_buf)
            .and_then(|()| self.file.sync_data())
        {
            // Cut off whatever part of the frames reached the file, so that later frames are
            // not appended behind a torn one; the refused frames' sequence numbers stay unused.
            self.frame_buf.clear();
            let _ = self.file.set_len(self.file_len);
            return Err(io_error(&path)(err));
        }
        let written = self.frame_buf.len() as u64;
        self.file_len += written;
        self.frame_buf.clear();
        Ok(written)
    }

    fn current_path(&self) -> PathBuf {
        self.segments
            .segments
            .lock()
            .last()
            .map(|segment| segment.path.clone())
            .unwrap_or_default()
    }

    fn rotate(&mut self) -> Result<(), WalError> {
        let segment = create_segment(&self.segments.dir, self.next_seq_of_buffer())?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&segment.path)
            .map_err(io_error(&segment.path))?;
        self.file_len = 0;
        self.segments.segments.lock().push(segment);
        Ok(())
    }

    /// The sequence number of the first frame in the buffer.
    fn next_seq_of_buffer(&self) -> u64 {
        if self.frame_buf.len() < FRAME_HEADER_LEN + 8 {
            return self.next_seq;
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&self.frame_buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + 8]);
        u64::from_le_bytes(seq)
    }
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<Segment, WalError> {
    let path = segment_path(dir, first_seq);
    File::create(&path)
        .and_then(|file| file.sync_all())
        .map_err(io_error(&path))?;
    // Make the new file's directory entry durable too.
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(dir))?;
    Ok(Segment { first_seq, path })
}

fn list_segments(dir: &Path) -> Result<Vec<Segment>, WalError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        let first_seq = path
            .extension()
            .filter(|ext| *ext == "wal")
            .and_then(|_| path.file_stem()?.to_str()?.parse::<u64>().ok());
        if let Some(first_seq) = first_seq {
            segments.push(Segment { first_seq, path });
        }
    }
    segments.sort_by_key(|segment| segment.first_seq);
    Ok(segments)
}

/// Reads the frames of one segment. Returns the length of its valid prefix and whether a torn or
/// corrupt frame ended it early.
fn read_segment(
    path: &Path,
    mut on_frame: impl FnMut(ReplayedFrame),
) -> Result<(u64, bool), WalError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(io_error(path))?;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + FRAME_HEADER_LEN) else {
            return Ok((pos as u64, true));
        };
        let body_len = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
        let body_start = pos + FRAME_HEADER_LEN;
        let body = match bytes.get(body_start..body_start + body_len) {
            Some(body) if (BODY_HEADER_LEN..MAX_FRAME_LEN).contains(&body_len) => body,
            _ => return Ok((pos as u64, true)),
        };
        if crc32fast::hash(body) != crc {
            return Ok((pos as u64, true));
        }
        let seq = u64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
        match RecordKind::from_byte(body[8]) {
            Some(kind) => on_frame(ReplayedFrame {
                seq,
                kind,
                payload: body[BODY_HEADER_LEN..].to_vec(),
            }),
            None => warn!(
                seq,
                kind = body[8],
                "skipping a write-ahead log frame of unknown kind"
            ),
        }
        pos = body_start + body_len;
    }
    Ok((pos as u64, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay_all(dir: &Path, committed: u64) -> (Vec<(u64, Vec<u8>)>, WalWriter) {
        let mut frames = Vec::new();
        let writer = open(dir, committed, 1 << 20, |frame| {
            frames.push((frame.seq, frame.payload))
        })
        .unwrap();
        (frames, writer)
    }

    #[test]
    fn frames_survive_reopen_and_replay_skips_committed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (frames, mut writer) = replay_all(dir.path(), 0);
        assert!(frames.is_empty());
        assert_eq!(writer.append(RecordKind::Spans, b"one"), 1);
        assert_eq!(writer.append(RecordKind::Spans, b"two"), 2);
        writer.sync().unwrap();
        assert_eq!(writer.append(RecordKind::Spans, b"three"), 3);
        writer.sync().unwrap();
        drop(writer);

        let (frames, _) = replay_all(dir.path(), 0);
        assert_eq!(
            frames,
            vec![
                (1, b"one".to_vec()),
                (2, b"two".to_vec()),
                (3, b"three".to_vec())
            ]
        );
        let (frames, mut writer) = replay_all(dir.path(), 2);
        assert_eq!(frames, vec![(3, b"three".to_vec())]);
        assert_eq!(writer.append(RecordKind::Spans, b"four"), 4);
    }

    #[test]
    fn torn_tail_is_cut_off_and_appending_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut writer) = replay_all(dir.path(), 0);
        writer.append(RecordKind::Spans, b"kept");
        writer.sync().unwrap();
        writer.append(RecordKind::Spans, b"torn away");
        writer.sync().unwrap();
        let path = writer.current_path();
        drop(writer);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();

        let (frames, mut writer) = replay_all(dir.path(), 0);
        assert_eq!(frames, vec![(1, b"kept".to_vec())]);
        assert_eq!(writer.append(RecordKind::Spans, b"after"), 2);
        writer.sync().unwrap();
        drop(writer);
        let (frames, _) = replay_all(dir.path(), 0);
        assert_eq!(frames, vec![(1, b"kept".to_vec()), (2, b"after".to_vec())]);
    }

    #[test]
    fn committed_segments_are_removed_and_sequence_numbers_never_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = open(dir.path(), 0, 16, |_| {}).unwrap();
        for _ in 0..5 {
            writer.append(RecordKind::Spans, b"0123456789");
            writer.sync().unwrap();
        }
        let segments = writer.segments();
        assert_eq!(segments.segments.lock().len(), 5);
        segments.remove_committed(3);
        // Segments starting at 1, 2 and 3 held only committed frames; 4 and 5 remain.
        assert_eq!(segments.segments.lock().len(), 2);
        segments.remove_committed(5);
        assert_eq!(segments.segments.lock().len(), 1);
        drop(writer);

        // The store committed everything; the log restarts after seq 5, not at 1.
        let (frames, mut writer) = replay_all(dir.path(), 5);
        assert!(frames.is_empty());
        assert_eq!(writer.append(RecordKind::Spans, b"x"), 6);
    }
}
