//! What the server and the command line do with recordings: open one for a call, recover
//! what a crash left, expire old ones, and read them back (list, export, verify, rotate).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tracing::{info, warn};

use super::encode::WAV_HEADER_LEN;
use super::export::{Export, ExportError};
use super::format::{AudioFormat, HEADER_LEN, RecordingId};
use super::index::{Index, IndexError, IndexEvent, Row, State, now_ms};
use super::reader::{ReadError, ReadSummary, Reader};
use super::sealer;
use super::settings::RecordingConfig;
use super::store::{Store, StoreError};
use super::writer::{Opening, WriterPool, WriterSettings};
use crate::keys::{KeyError, KeyRing};
use crate::media::codec::Law;
use crate::media::codec::{Codec, Decoder};
use crate::media::recorder::{Participants, RecorderTap};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("{id}: {source}")]
    Read { id: RecordingId, source: ReadError },
    #[error("no recording {0} in the index")]
    NotFound(RecordingId),
    #[error("{0} was deleted ({1})")]
    Deleted(RecordingId, String),
    #[error("{0} cannot be deleted yet: {1}")]
    Busy(RecordingId, &'static str),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("export: {0}")]
    Export(String),
    #[error(
        "{id}: stored size {found} bytes / SHA-256 differ from the index ({expected} bytes): the object was replaced or damaged"
    )]
    Mismatch {
        id: RecordingId,
        expected: u64,
        found: u64,
    },
}

/// The recordings on disk or in S3, with their index and the key ring: everything that reads.
pub struct Archive {
    pub dir: PathBuf,
    pub ring: Arc<KeyRing>,
    pub index: Arc<Index>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
}

/// What verify found about one recording.
#[derive(Debug)]
pub struct Verified {
    pub summary: ReadSummary,
}

/// What export wrote.
#[derive(Debug)]
pub struct Exported {
    pub bytes: u64,
    /// Set when the recording was cut short (crash): the audio up to there was exported.
    pub truncated: Option<String>,
}

impl Archive {
    pub fn open(
        cfg: &RecordingConfig,
        data_dir: &Path,
        ring: Arc<KeyRing>,
        metrics: Arc<Metrics>,
    ) -> Result<Archive, RecordingError> {
        let dir = cfg.dir(data_dir);
        let store = Arc::new(Store::open(cfg, &dir)?);
        let index = Arc::new(Index::open(&dir)?);
        Ok(Archive {
            dir,
            ring,
            index,
            store,
            metrics,
        })
    }

    pub fn list(&self) -> Result<Vec<Row>, RecordingError> {
        let mut rows: Vec<Row> = self.index.rows()?.into_values().collect();
        rows.sort_by_key(|r| r.started_ms);
        Ok(rows)
    }

    pub fn row(&self, id: RecordingId) -> Result<Row, RecordingError> {
        let row = self.index.get(id)?.ok_or(RecordingError::NotFound(id))?;
        if row.state == State::Deleted {
            return Err(RecordingError::Deleted(
                id,
                row.deleted_reason.clone().unwrap_or_default(),
            ));
        }
        Ok(row)
    }

    /// Decrypts a recording, handing plaintext to `sink` as it comes. A truncated recording
    /// is an error *after* everything authentic was handed over.
    pub async fn read(
        &self,
        row: &Row,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(ReadSummary, u64, String), RecordingError> {
        use sha2::Digest;
        let mut stream = self.store.read(row).await?;
        let mut reader = Reader::new(&self.ring);
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut out = Vec::new();
        let fail = |source| RecordingError::Read { id: row.id, source };
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            let skip = (HEADER_LEN as u64).saturating_sub(size) as usize;
            hasher.update(&piece[skip.min(piece.len())..]);
            size += piece.len() as u64;
            out.clear();
            reader.push(&piece, &mut out).map_err(fail)?;
            sink(&out);
        }
        let summary = reader.finish().map_err(fail)?;
        Ok((summary, size, hex::encode(hasher.finalize())))
    }

    /// Checks one recording end to end: header, every chunk, the final chunk, and the size and
    /// SHA-256 the index holds.
    pub async fn verify(&self, id: RecordingId) -> Result<Verified, RecordingError> {
        let row = self.row(id)?;
        let (summary, size, sha) = self.read(&row, |_| {}).await?;
        if row.state == State::Sealed && (size != row.size || sha != row.sha256) {
            return Err(RecordingError::Mismatch {
                id,
                expected: row.size,
                found: size,
            });
        }
        Ok(Verified { summary })
    }

    /// Writes the recording to `out` as `.ogg`/`.opus` or `.wav` (transcoding when the
    /// stored format differs). A truncated recording is exported up to the cut, and says so.
    pub async fn export(&self, id: RecordingId, out: &Path) -> Result<Exported, RecordingError> {
        let row = self.row(id)?;
        let want = match out.extension().and_then(|e| e.to_str()) {
            Some("wav") => AudioFormat::Wav,
            Some("ogg") | Some("opus") => AudioFormat::Opus,
            _ => {
                return Err(RecordingError::Export(format!(
                    "{}: name the output .ogg, .opus or .wav",
                    out.display()
                )));
            }
        };
        let io = |source| RecordingError::Io {
            path: out.to_path_buf(),
            source,
        };
        // Written as it is decrypted (transcoded on the way when asked for another format):
        // one chunk in memory whatever the recording's length.
        let mut f = create_private(out).map_err(io)?;
        let result = match self.stream_to(&row, want, &mut f, io).await {
            Ok(done) => f.sync_all().map_err(io).map(|()| done),
            Err(e) => Err(e),
        };
        match result {
            Ok((bytes, truncated)) => Ok(Exported { bytes, truncated }),
            Err(e) => {
                // A refused recording (tampered, key missing) leaves no partial file behind.
                drop(f);
                let _ = std::fs::remove_file(out);
                Err(e)
            }
        }
    }

    /// Decrypts `row` into `out` as `want` (see [`Export`]), piece by piece: (bytes written, a
    /// note when the recording was cut short). `io` names what an error writing `out`
    /// concerns.
    async fn stream_to<W: std::io::Write + std::io::Seek>(
        &self,
        row: &Row,
        want: AudioFormat,
        out: &mut W,
        io: impl Fn(std::io::Error) -> RecordingError,
    ) -> Result<(u64, Option<String>), RecordingError> {
        let failed = |e: ExportError| match e {
            ExportError::Io(e) => io(e),
            e @ (ExportError::Codec(_) | ExportError::Length { .. }) => {
                RecordingError::Export(e.to_string())
            }
        };
        let mut file =
            Export::new(row.format, want, row.sample_rate, rand::random()).map_err(failed)?;
        let mut error = None;
        let read = self
            .read(row, |plain| {
                if error.is_none()
                    && let Err(e) = file.push(plain, out)
                {
                    error = Some(e);
                }
            })
            .await;
        if let Some(e) = error {
            return Err(failed(e));
        }
        let truncated = cut_short(read)?;
        let bytes = file.finish(out).map_err(failed)?;
        Ok((bytes, truncated))
    }

    /// Deletes one sealed recording's audio and records the deletion, with `reason`, in the
    /// index (where it stays): the path retention takes too. A recording still being written
    /// or uploaded is refused ([`RecordingError::Busy`]).
    pub async fn delete(&self, id: RecordingId, reason: &str) -> Result<Row, RecordingError> {
        let row = self.row(id)?;
        self.delete_row(&row, reason).await?;
        Ok(row)
    }

    async fn delete_row(&self, row: &Row, reason: &str) -> Result<(), RecordingError> {
        if row.state == State::Recording {
            return Err(RecordingError::Busy(row.id, "it is still being recorded"));
        }
        if !row.uploaded {
            return Err(RecordingError::Busy(
                row.id,
                "it is still being uploaded to the object store",
            ));
        }
        self.store.delete(row).await?;
        self.index.append(&IndexEvent::Deleted {
            id: row.id,
            at_ms: now_ms(),
            reason: reason.to_string(),
        })?;
        self.metrics.recordings_deleted.inc();
        Ok(())
    }

    /// Seals what a crash left unfinished: cuts an incomplete last chunk, appends the final
    /// chunk, and indexes the recording as sealed and recovered. Returns what was recovered.
    pub fn recover(&self) -> Result<Vec<Row>, RecordingError> {
        let mut done = Vec::new();
        for row in self.index.rows()?.into_values() {
            if row.state != State::Recording {
                continue;
            }
            match self.recover_one(&row) {
                Ok(()) => done.push(row),
                Err(e) => warn!(recording = %row.id, error = %e, "could not recover the recording"),
            }
        }
        Ok(done)
    }

    fn recover_one(&self, row: &Row) -> Result<(), RecordingError> {
        use sha2::Digest;
        let Some(path) = self.store.local_file(row)? else {
            return Ok(());
        };
        let ioe = |source| RecordingError::Io {
            path: path.clone(),
            source,
        };
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.index.append(&IndexEvent::Deleted {
                    id: row.id,
                    at_ms: now_ms(),
                    reason: "no audio was written before the crash".into(),
                })?;
                return Ok(());
            }
            Err(e) => return Err(ioe(e)),
        };
        let mut reader = Reader::new(&self.ring);
        let mut plain = Vec::new();
        let pushed = reader.push(&data, &mut plain);
        let keep = reader.consumed_bytes(data.len() as u64) as usize;
        let chunks = reader.chunks();
        let Some(opened) = reader.opened() else {
            return Err(RecordingError::Read {
                id: row.id,
                source: pushed.err().unwrap_or(ReadError::Truncated {
                    after: None,
                    partial_bytes: data.len(),
                }),
            });
        };
        let mut sealed_bytes = data[..keep.min(data.len())].to_vec();
        let final_present = reader.is_finished();
        if !final_present {
            let tail = sealer::final_frame(&opened.keys, chunks);
            sealed_bytes.extend_from_slice(&tail);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(ioe)?;
            f.set_len(keep as u64).map_err(ioe)?;
            use std::os::unix::fs::FileExt;
            f.write_all_at(&tail, keep as u64).map_err(ioe)?;
            f.sync_all().map_err(ioe)?;
        }
        let duration_ms = plain_duration_ms(&plain, row.format, row.sample_rate);
        self.index.append(&IndexEvent::Sealed {
            id: row.id,
            ended_ms: row.started_ms + duration_ms,
            duration_ms,
            size: sealed_bytes.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(
                sealed_bytes.get(HEADER_LEN..).unwrap_or_default(),
            )),
            chunks: chunks + u32::from(!final_present),
            dropped_frames: 0,
            pauses: 0,
            recovered: true,
        })?;
        info!(recording = %row.id, chunks, ms = duration_ms, "unfinished recording sealed after a restart");
        Ok(())
    }

    /// Deletes sealed recordings older than `days`; each deletion goes into the index.
    pub async fn expire(&self, days: u32) -> Result<Vec<RecordingId>, RecordingError> {
        let cutoff = now_ms().saturating_sub(days as u64 * 86_400_000);
        let mut gone = Vec::new();
        for row in self.index.rows()?.into_values() {
            let ended = row.ended_ms.unwrap_or(row.started_ms);
            if row.state != State::Sealed || ended >= cutoff || !row.uploaded {
                continue;
            }
            match self
                .delete_row(&row, &format!("retention: older than {days} days"))
                .await
            {
                Ok(()) => gone.push(row.id),
                Err(e @ RecordingError::Index(_)) => return Err(e),
                Err(e) => warn!(recording = %row.id, error = %e, "retention could not delete"),
            }
        }
        Ok(gone)
    }

    /// Re-wraps every recording's data key under the ring's current master key, rewriting only
    /// headers. Returns (rewrapped, failures): a recording whose key is missing is a failure,
    /// named, never skipped.
    pub async fn rewrap_all(&self) -> Result<(u32, Vec<(RecordingId, String)>), RecordingError> {
        let current = self.ring.current_id();
        let mut done = 0;
        let mut failed = Vec::new();
        for row in self.index.rows()?.into_values() {
            if row.state == State::Deleted || row.key_id == current {
                continue;
            }
            match self.rewrap_one(&row).await {
                Ok(()) => {
                    self.index.append(&IndexEvent::Rewrapped {
                        id: row.id,
                        key_id: current.clone(),
                        at_ms: now_ms(),
                    })?;
                    done += 1;
                }
                Err(e) => failed.push((row.id, e.to_string())),
            }
        }
        Ok((done, failed))
    }

    async fn rewrap_one(&self, row: &Row) -> Result<(), RecordingError> {
        let mut stream = self.store.read(row).await?;
        let mut head = Vec::with_capacity(HEADER_LEN);
        while head.len() < HEADER_LEN {
            match stream.next().await {
                Some(piece) => head.extend_from_slice(&piece?),
                None => break,
            }
        }
        drop(stream);
        let opened =
            super::crypt::open_header(&self.ring, &head).map_err(|e| RecordingError::Read {
                id: row.id,
                source: ReadError::Header(e),
            })?;
        let header = opened
            .rewrapped(&self.ring, super::crypt::Nonces::draw())
            .map_err(|e| RecordingError::Read {
                id: row.id,
                source: ReadError::Header(e),
            })?;
        self.store.rewrite_header(row, &header).await?;
        Ok(())
    }
}

/// Audio length of a plaintext stream (for a recovered recording).
fn plain_duration_ms(plain: &[u8], format: AudioFormat, rate: u32) -> u64 {
    match format {
        AudioFormat::Wav | AudioFormat::Mulaw | AudioFormat::Alaw => {
            (plain.len().saturating_sub(WAV_HEADER_LEN) / format.wav_block_align()) as u64 * 1000
                / rate.max(1) as u64
        }
        AudioFormat::Opus => {
            // The granule position of the last complete Ogg page, in 48 kHz samples.
            let mut last = 0u64;
            let mut i = 0;
            while let Some(p) = plain[i..].windows(4).position(|w| w == b"OggS") {
                let at = i + p;
                if at + 14 <= plain.len() {
                    let g =
                        u64::from_le_bytes(plain[at + 6..at + 14].try_into().unwrap_or_default());
                    if g != u64::MAX {
                        last = last.max(g);
                    }
                }
                i = at + 4;
            }
            last / 48
        }
    }
}

/// A read that stopped at a cut (a crash, a lost tail) still exports what came before it:
/// the note saying where it stopped, or the error when the read failed otherwise.
fn cut_short<T>(read: Result<T, RecordingError>) -> Result<Option<String>, RecordingError> {
    match read {
        Ok(_) => Ok(None),
        Err(RecordingError::Read { source, .. }) if source.is_truncation() => {
            Ok(Some(source.to_string()))
        }
        Err(e) => Err(e),
    }
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
}

/// The live side: opens recordings for calls, keeps uploads and retention going.
pub struct Recorder {
    pub archive: Archive,
    pub config: RecordingConfig,
    pool: Mutex<Option<WriterPool>>,
}

impl Recorder {
    /// Opens the archive, seals what a crash left, resumes pending uploads and starts the
    /// writer threads. Call inside the tokio runtime.
    pub fn start(
        config: &RecordingConfig,
        data_dir: &Path,
        ring: Arc<KeyRing>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Recorder>, RecordingError> {
        let archive = Archive::open(config, data_dir, ring.clone(), metrics.clone())?;
        let recovered = archive.recover()?;
        if !recovered.is_empty() {
            info!(
                count = recovered.len(),
                "recordings recovered after an unclean stop"
            );
        }
        let threads = if config.writer_threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            config.writer_threads
        };
        let pool = WriterPool::start(
            threads,
            config.queue_frames,
            WriterSettings {
                chunk_bytes: config.chunk_bytes as usize,
                flush_every: Duration::from_secs(config.flush_secs as u64),
                opus_complexity: config.opus_complexity,
            },
            ring,
            archive.index.clone(),
            metrics,
        );
        let recorder = Arc::new(Recorder {
            archive,
            config: config.clone(),
            pool: Mutex::new(Some(pool)),
        });
        if recorder.archive.store.is_s3() {
            for row in recorder.archive.index.rows()?.into_values() {
                if row.state == State::Sealed && !row.uploaded {
                    let (tx, rx) = tokio::sync::watch::channel((0, true));
                    let len = recorder
                        .archive
                        .store
                        .local_file(&row)
                        .ok()
                        .flatten()
                        .and_then(|p| std::fs::metadata(p).ok())
                        .map(|m| m.len())
                        .unwrap_or(0);
                    let _ = tx.send((len, true));
                    let a = &recorder.archive;
                    tokio::spawn(a.store.clone().upload(
                        row,
                        rx,
                        a.index.clone(),
                        a.metrics.clone(),
                    ));
                    drop(tx);
                }
            }
        }
        if config.retention_days > 0 {
            let r = Arc::downgrade(&recorder);
            let days = config.retention_days;
            tokio::spawn(async move {
                loop {
                    let Some(rec) = r.upgrade() else { return };
                    match rec.archive.expire(days).await {
                        Ok(gone) if !gone.is_empty() => {
                            info!(count = gone.len(), days, "recordings deleted by retention")
                        }
                        Ok(_) => {}
                        Err(e) => warn!(error = %e, "retention pass failed"),
                    }
                    drop(rec);
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
        Ok(recorder)
    }

    pub fn record_all(&self) -> bool {
        self.config.record_all
    }

    /// A new recording for a call whose leg speaks `codec`; hand the tap to the call's
    /// media leg. It records at the rate the leg decodes at (8 kHz G.711, 16 kHz Opus), and
    /// a WAV of a G.711 call keeps the call's own bytes ([`AudioFormat::Mulaw`]/`Alaw`).
    pub fn open(
        &self,
        call_id: &str,
        participants: Participants,
        codec: Codec,
    ) -> Option<RecorderTap> {
        let rate = Decoder::rate_of(codec);
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let mut format = self.config.format;
        if format == AudioFormat::Opus
            && self.config.overload_wav
            && pool.as_ref().is_some_and(|p| p.is_behind())
        {
            self.archive.metrics.recordings_overload_wav.inc();
            format = AudioFormat::Wav;
        }
        let format = match (format, Law::of(codec)) {
            (AudioFormat::Wav, Some(Law::Mu)) => AudioFormat::Mulaw,
            (AudioFormat::Wav, Some(Law::A)) => AudioFormat::Alaw,
            (format, _) => format,
        };
        let id = RecordingId::random();
        let started_ms = now_ms();
        let (path, location) = self.archive.store.placement(id, started_ms);
        let progress = if self.archive.store.is_s3() {
            let (tx, rx) = tokio::sync::watch::channel((0u64, false));
            let row = Row {
                id,
                call_id: call_id.to_string(),
                started_ms,
                ended_ms: None,
                duration_ms: 0,
                participants: participants.names(),
                format,
                sample_rate: rate,
                key_id: String::new(),
                location: location.clone(),
                uploaded: false,
                size: 0,
                sha256: String::new(),
                chunks: 0,
                dropped_frames: 0,
                recovered: false,
                state: State::Recording,
                deleted_ms: None,
                deleted_reason: None,
            };
            let a = &self.archive;
            tokio::spawn(
                a.store
                    .clone()
                    .upload(row, rx, a.index.clone(), a.metrics.clone()),
            );
            Some(tx)
        } else {
            None
        };
        pool.as_ref().map(|p| {
            p.open(Opening {
                id,
                call_id: call_id.to_string(),
                participants,
                format,
                rate,
                started_ms,
                path,
                location,
                progress,
            })
        })
    }

    /// Seals open recordings and stops the writers (after the last call).
    pub fn shutdown(&self) {
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(pool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(dir: &Path) -> Archive {
        let ring = Arc::new(KeyRing::open(dir, crate::keys::Supplied::default()).unwrap());
        Archive::open(
            &RecordingConfig::default(),
            dir,
            ring,
            Arc::new(Metrics::new()),
        )
        .unwrap()
    }

    /// Indexes a recording that ended `age_days` ago, sealed or not, with a file in place.
    fn add(a: &Archive, age_days: u64, sealed: bool) -> (RecordingId, PathBuf) {
        let id = RecordingId::random();
        let started = now_ms() - age_days * 86_400_000 - 60_000;
        let (path, location) = a.store.placement(id, started);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"sealed bytes").unwrap();
        a.index
            .append(&IndexEvent::Started {
                id,
                call_id: "c1".into(),
                started_ms: started,
                format: AudioFormat::Opus,
                sample_rate: 8000,
                participants: vec!["customer".into()],
                key_id: a.ring.current_id(),
                location,
            })
            .unwrap();
        if sealed {
            a.index
                .append(&IndexEvent::Sealed {
                    id,
                    ended_ms: started + 60_000,
                    duration_ms: 60_000,
                    size: 12,
                    sha256: String::new(),
                    chunks: 1,
                    dropped_frames: 0,
                    pauses: 0,
                    recovered: false,
                })
                .unwrap();
        }
        (id, path)
    }

    /// The format the writer indexed recording `id` under, once it has.
    async fn indexed_format(r: &Recorder, id: RecordingId) -> AudioFormat {
        for _ in 0..200 {
            if let Some(row) = r.archive.index.get(id).unwrap() {
                return row.format;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("recording {id} never indexed");
    }

    #[tokio::test]
    async fn opus_recordings_opened_while_the_writers_are_behind_are_stored_as_wav() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Arc::new(KeyRing::open(dir.path(), crate::keys::Supplied::default()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let r = Recorder::start(
            &RecordingConfig::default(),
            dir.path(),
            ring.clone(),
            metrics.clone(),
        )
        .unwrap();
        let calm = r.open("c1", Participants::BOTH, Codec::Pcmu).unwrap();
        assert_eq!(indexed_format(&r, calm.id).await, AudioFormat::Opus);

        r.pool.lock().unwrap().as_ref().unwrap().mark_behind();
        let busy = r.open("c2", Participants::BOTH, Codec::Pcmu).unwrap();
        assert_eq!(
            indexed_format(&r, busy.id).await,
            AudioFormat::Mulaw,
            "a G.711 call's own bytes: the cheapest recording there is"
        );
        let busy_opus = r.open("c3", Participants::BOTH, Codec::Opus).unwrap();
        assert_eq!(indexed_format(&r, busy_opus.id).await, AudioFormat::Wav);
        assert_eq!(metrics.recordings_overload_wav.get(), 2);
        drop((calm, busy, busy_opus));
        r.shutdown();

        // Turned off, Opus it stays, whatever the writers' state.
        let dir = tempfile::tempdir().unwrap();
        let config = RecordingConfig {
            overload_wav: false,
            ..RecordingConfig::default()
        };
        let r = Recorder::start(&config, dir.path(), ring, Arc::new(Metrics::new())).unwrap();
        r.pool.lock().unwrap().as_ref().unwrap().mark_behind();
        let tap = r.open("c4", Participants::BOTH, Codec::Pcmu).unwrap();
        assert_eq!(indexed_format(&r, tap.id).await, AudioFormat::Opus);
        drop(tap);
        r.shutdown();
    }

    #[tokio::test]
    async fn retention_and_deletion_by_hand_take_the_same_recorded_path() {
        let dir = tempfile::tempdir().unwrap();
        let a = archive(dir.path());
        let (old, old_path) = add(&a, 40, true);
        let (young, young_path) = add(&a, 1, true);
        let (live, live_path) = add(&a, 0, false);

        assert_eq!(a.expire(30).await.unwrap(), vec![old]);
        assert!(!old_path.exists() && young_path.exists() && live_path.exists());
        let row = a.index.get(old).unwrap().unwrap();
        assert_eq!(row.state, State::Deleted);
        assert_eq!(
            row.deleted_reason.as_deref(),
            Some("retention: older than 30 days")
        );

        a.delete(young, "deleted by ada through the API")
            .await
            .unwrap();
        assert!(!young_path.exists());
        let row = a.index.get(young).unwrap().unwrap();
        assert_eq!(row.state, State::Deleted);
        assert_eq!(
            row.deleted_reason.as_deref(),
            Some("deleted by ada through the API")
        );
        assert!(matches!(
            a.delete(young, "again").await,
            Err(RecordingError::Deleted(..))
        ));
        assert!(matches!(
            a.delete(live, "too soon").await,
            Err(RecordingError::Busy(..))
        ));
        assert!(
            live_path.exists(),
            "a recording in progress is never deleted"
        );
        assert_eq!(a.metrics.recordings_deleted.get(), 2);
    }
}
