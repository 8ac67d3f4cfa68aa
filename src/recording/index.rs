//! The recording table, kept as an append-only JSON-lines event log under the data dir
//! (`recordings/index.jsonl`): started, sealed, uploaded, rewrapped, deleted. Replaying the
//! log gives one row per recording; deletions stay in it, so each one is on record.
//!
//! A log rather than a database table keeps this module free of the shared `db` module
//! while that lands; every event maps onto a `recordings` row update (see docs/recording.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::format::{AudioFormat, RecordingId};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("recording index {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum IndexEvent {
    Started {
        id: RecordingId,
        call_id: String,
        started_ms: u64,
        format: AudioFormat,
        sample_rate: u32,
        participants: Vec<String>,
        key_id: String,
        /// Where the sealed object lives (`file:...` or `s3://bucket/key`).
        location: String,
    },
    Sealed {
        id: RecordingId,
        ended_ms: u64,
        duration_ms: u64,
        size: u64,
        sha256: String,
        chunks: u32,
        #[serde(default)]
        dropped_frames: u64,
        #[serde(default)]
        pauses: u32,
        /// Sealed at restart after a crash: the audio ends where the crash cut it.
        #[serde(default)]
        recovered: bool,
    },
    Uploaded {
        id: RecordingId,
        location: String,
    },
    Rewrapped {
        id: RecordingId,
        key_id: String,
        at_ms: u64,
    },
    Deleted {
        id: RecordingId,
        at_ms: u64,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Being written (or cut short by a crash, until the next start seals it).
    Recording,
    Sealed,
    Deleted,
}

/// One recording as the table shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: RecordingId,
    pub call_id: String,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub duration_ms: u64,
    pub participants: Vec<String>,
    pub format: AudioFormat,
    pub sample_rate: u32,
    pub key_id: String,
    pub location: String,
    /// Set while an S3 recording still sits in the local spool.
    pub uploaded: bool,
    pub size: u64,
    pub sha256: String,
    pub chunks: u32,
    pub dropped_frames: u64,
    pub recovered: bool,
    pub state: State,
    pub deleted_ms: Option<u64>,
    pub deleted_reason: Option<String>,
}

pub struct Index {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    /// Events appended since the last sync.
    dirty: AtomicBool,
    /// The log replayed so far. Other processes (the CLI) append too, so every read picks
    /// up what was added since by reading the file's new tail, never the whole log again.
    seen: Mutex<Replayed>,
}

#[derive(Default)]
struct Replayed {
    /// Bytes of the log applied (always at a line boundary).
    offset: u64,
    rows: BTreeMap<RecordingId, Row>,
}

impl Index {
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        let path = dir.join("index.jsonl");
        let err = |source| IndexError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(err)?;
        // A crash mid-append leaves a torn last line: end it, or the next event would be
        // glued to it and lost with it.
        if ends_torn(&mut file).map_err(err)? {
            file.write_all(b"\n").map_err(err)?;
        }
        Ok(Index {
            path,
            file: Mutex::new(file),
            dirty: AtomicBool::new(false),
            seen: Mutex::new(Replayed::default()),
        })
    }

    /// Appends one event (one `write` of one line: concurrent writers do not interleave) and
    /// makes it durable before returning.
    pub fn append(&self, event: &IndexEvent) -> Result<(), IndexError> {
        let f = self.write_line(event)?;
        f.sync_data().map_err(|source| self.io(source))?;
        self.dirty.store(false, Ordering::Release);
        Ok(())
    }

    /// Appends one event without waiting for the disk: a killed process keeps it (it is in
    /// the page cache), a power cut may lose what the next [`Index::sync`] would have saved.
    /// The writer threads log recordings started and sealed this way and sync twice a second
    /// (group commit): an `fdatasync` per event was a fifth of what recording cost at 1,000
    /// calls.
    pub fn append_lazy(&self, event: &IndexEvent) -> Result<(), IndexError> {
        drop(self.write_line(event)?);
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes lazily appended events durable (nothing to do when there are none).
    pub fn sync(&self) -> Result<(), IndexError> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(source) = f.sync_data() {
                self.dirty.store(true, Ordering::Release);
                return Err(self.io(source));
            }
        }
        Ok(())
    }

    fn write_line(
        &self,
        event: &IndexEvent,
    ) -> Result<std::sync::MutexGuard<'_, std::fs::File>, IndexError> {
        let mut line = serde_json::to_vec(event).unwrap_or_default();
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line).map_err(|source| self.io(source))?;
        Ok(f)
    }

    fn io(&self, source: std::io::Error) -> IndexError {
        IndexError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Every recording's row (the log replayed). A torn line (crash mid-append) is skipped.
    pub fn rows(&self) -> Result<BTreeMap<RecordingId, Row>, IndexError> {
        Ok(self.replayed()?.rows.clone())
    }

    pub fn get(&self, id: RecordingId) -> Result<Option<Row>, IndexError> {
        Ok(self.replayed()?.rows.get(&id).cloned())
    }

    /// Applies what the log gained since the last read.
    fn replayed(&self) -> Result<std::sync::MutexGuard<'_, Replayed>, IndexError> {
        use std::io::{Read, Seek, SeekFrom};
        let err = |source| IndexError::Io {
            path: self.path.clone(),
            source,
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = std::fs::File::open(&self.path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len < seen.offset {
            // Replaced by a shorter file (restored from a backup): start over.
            *seen = Replayed::default();
        }
        if len == seen.offset {
            return Ok(seen);
        }
        file.seek(SeekFrom::Start(seen.offset)).map_err(err)?;
        let mut tail = Vec::with_capacity((len - seen.offset) as usize);
        file.take(len - seen.offset)
            .read_to_end(&mut tail)
            .map_err(err)?;
        // Only whole lines: a line being appended right now is read next time.
        let whole = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in tail[..whole].split(|b| *b == b'\n') {
            if let Ok(ev) = serde_json::from_slice::<IndexEvent>(line) {
                apply(&mut seen.rows, ev);
            }
        }
        seen.offset += whole as u64;
        Ok(seen)
    }
}

/// Whether the log's last byte is not a newline (a torn append).
fn ends_torn(file: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

fn apply(rows: &mut BTreeMap<RecordingId, Row>, ev: IndexEvent) {
    match ev {
        IndexEvent::Started {
            id,
            call_id,
            started_ms,
            format,
            sample_rate,
            participants,
            key_id,
            location,
        } => {
            rows.insert(
                id,
                Row {
                    id,
                    call_id,
                    started_ms,
                    ended_ms: None,
                    duration_ms: 0,
                    participants,
                    format,
                    sample_rate,
                    key_id,
                    uploaded: !location.starts_with("s3://"),
                    location,
                    size: 0,
                    sha256: String::new(),
                    chunks: 0,
                    dropped_frames: 0,
                    recovered: false,
                    state: State::Recording,
                    deleted_ms: None,
                    deleted_reason: None,
                },
            );
        }
        IndexEvent::Sealed {
            id,
            ended_ms,
            duration_ms,
            size,
            sha256,
            chunks,
            dropped_frames,
            recovered,
            ..
        } => {
            if let Some(r) = rows.get_mut(&id) {
                r.ended_ms = Some(ended_ms);
                r.duration_ms = duration_ms;
                r.size = size;
                r.sha256 = sha256;
                r.chunks = chunks;
                r.dropped_frames = dropped_frames;
                r.recovered = recovered;
                if r.state == State::Recording {
                    r.state = State::Sealed;
                }
            }
        }
        IndexEvent::Uploaded { id, location } => {
            if let Some(r) = rows.get_mut(&id) {
                r.location = location;
                r.uploaded = true;
            }
        }
        IndexEvent::Rewrapped { id, key_id, .. } => {
            if let Some(r) = rows.get_mut(&id) {
                r.key_id = key_id;
            }
        }
        IndexEvent::Deleted { id, at_ms, reason } => {
            if let Some(r) = rows.get_mut(&id) {
                r.state = State::Deleted;
                r.deleted_ms = Some(at_ms);
                r.deleted_reason = Some(reason);
            }
        }
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `YYYY-MM-DD` (UTC) of a Unix time in ms, for grouping recordings by day.
pub fn day_of(unix_ms: u64) -> String {
    // Howard Hinnant's civil-from-days.
    let z = (unix_ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_replays_into_rows_and_keeps_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        let id = RecordingId::random();
        idx.append(&IndexEvent::Started {
            id,
            call_id: "c1".into(),
            started_ms: 1,
            format: AudioFormat::Opus,
            sample_rate: 8000,
            participants: vec!["customer".into()],
            key_id: "mk-0000000000000000".into(),
            location: "file:x".into(),
        })
        .unwrap();
        assert_eq!(idx.get(id).unwrap().unwrap().state, State::Recording);
        idx.append(&IndexEvent::Deleted {
            id,
            at_ms: 5,
            reason: "retention".into(),
        })
        .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("index.jsonl"))
            .unwrap()
            .write_all(b"{\"event\":\"sealed\",\"id\":")
            .unwrap();
        let row = idx.get(id).unwrap().unwrap();
        assert_eq!(row.state, State::Deleted);
        assert_eq!(row.deleted_reason.as_deref(), Some("retention"));

        // A restart after that torn append, then another writer (the CLI) adds a recording:
        // the event after the torn line is not lost, and the first handle sees it too.
        let other = Index::open(dir.path()).unwrap();
        let second = RecordingId::random();
        other
            .append(&IndexEvent::Started {
                id: second,
                call_id: "c2".into(),
                started_ms: 9,
                format: AudioFormat::Wav,
                sample_rate: 8000,
                participants: vec!["customer".into(), "agent".into()],
                key_id: "mk-0000000000000000".into(),
                location: "file:y".into(),
            })
            .unwrap();
        assert_eq!(other.get(second).unwrap().unwrap().call_id, "c2");
        assert_eq!(idx.get(second).unwrap().unwrap().call_id, "c2");
        assert_eq!(idx.rows().unwrap().len(), 2);
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_709_251_200_000), "2024-03-01");
    }
}
