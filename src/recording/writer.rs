//! Writer threads: take blocks of frames off the media threads' taps, encode, seal and
//! append them to the recording's file (its final place on the local store, or the spool for
//! S3), off the media clock. One thread per core at most; a recording stays on one thread.
//!
//! Every sealed chunk is written (`write(2)`) as soon as it completes, and a partial chunk is
//! sealed when nothing was written for `flush_secs`, so a killed process leaves all but the
//! last few seconds readable. A recording's file is `fdatasync`ed when it is sealed; the
//! index lines the writers add (started, sealed) are synced together twice a second.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::crypt;
use super::encode::{AudioEncoder, frame_samples};
use super::format::{AudioFormat, RecordingId, StreamInfo};
use super::index::{Index, IndexEvent, now_ms};
use super::sealer::ChunkSealer;
use crate::keys::KeyRing;
use crate::media::recorder::{
    Block, ControlSink, FrameQueue, Participants, RecorderTap, Samples, TapControl,
    interleave_block,
};
use crate::metrics::Metrics;

/// At most this many frames of silence stand in for frames dropped in one gap (5 s).
const MAX_FILL_FRAMES: u32 = 250;

/// Progress of a recording's file: bytes written, and whether it is sealed (for uploads).
pub type Progress = tokio::sync::watch::Sender<(u64, bool)>;

pub enum WriterControl {
    Open(Box<Opening>),
    Tap(TapControl),
    Stop,
}

/// A tap's pause, resume and end go through the writer's one control queue, in order with
/// the recording's Open.
impl ControlSink for Sender<WriterControl> {
    fn deliver(&self, message: TapControl) {
        let _ = self.send(WriterControl::Tap(message));
    }
}

/// Everything a writer needs to start a recording.
pub struct Opening {
    pub id: RecordingId,
    pub call_id: String,
    pub participants: Participants,
    pub format: AudioFormat,
    pub rate: u32,
    pub started_ms: u64,
    /// The file to append to.
    pub path: PathBuf,
    /// The `location` written to the index.
    pub location: String,
    pub progress: Option<Progress>,
}

/// Settings shared by the writer threads.
#[derive(Clone)]
pub struct WriterSettings {
    pub chunk_bytes: usize,
    pub flush_every: Duration,
    pub opus_complexity: i32,
}

struct Writer {
    settings: WriterSettings,
    ring: Arc<KeyRing>,
    index: Arc<Index>,
    metrics: Arc<Metrics>,
    active: HashMap<RecordingId, Active>,
    plain: Vec<u8>,
    silence: Vec<i16>,
    /// A block interleaved, before it is encoded or sealed.
    linear: Vec<i16>,
    /// Buffers of blocks written, given back to the taps at the next take.
    done: Vec<Samples>,
    /// Sealed frames on their way to a file (see [`ChunkSealer`]).
    sealed: Vec<u8>,
}

struct Active {
    call_id: String,
    encoder: AudioEncoder,
    sealer: ChunkSealer,
    file: std::fs::File,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    rate: u32,
    next_seq: u32,
    received: u64,
    frames_written: u64,
    filled: u64,
    pauses: u32,
    /// When sealed bytes were last written: after `flush_every` without, a partial chunk
    /// is sealed (a full one written meanwhile leaves nothing old to flush).
    last_write: Instant,
    end: Option<(u64, u64)>,
    /// When the End arrived (a safety net if its frames never do).
    end_seen: Option<Instant>,
    progress: Option<Progress>,
    failed: bool,
}

pub struct WriterPool {
    lanes: Vec<Lane>,
    behind: Arc<Behind>,
}

/// Whether the writer threads have lately been unable to keep up: each marks it when it
/// spent most of the last half second working (its queue then only grows), and it holds for
/// [`Behind::HOLD`] after the last such mark. Read when a recording is opened, to store it
/// in a format that costs less to write ([`crate::recording::Recorder::open`]).
#[derive(Default)]
pub struct Behind {
    /// Milliseconds since the pool started until which the writers count as behind.
    until_ms: std::sync::atomic::AtomicU64,
    started: std::sync::OnceLock<Instant>,
}

impl Behind {
    /// How long one overloaded half second counts.
    const HOLD: Duration = Duration::from_secs(30);
    /// The share of wall time spent working above which a writer is behind.
    const BUSY: f64 = 0.5;

    fn ms(&self) -> u64 {
        self.started.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    fn mark(&self) {
        let until = self.ms() + Self::HOLD.as_millis() as u64;
        self.until_ms
            .fetch_max(until, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_behind(&self) -> bool {
        self.ms() < self.until_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
}

struct Lane {
    data: Arc<FrameQueue>,
    control: Sender<WriterControl>,
    thread: Option<JoinHandle<()>>,
}

impl WriterPool {
    pub fn start(
        threads: usize,
        queue_frames: usize,
        settings: WriterSettings,
        ring: Arc<KeyRing>,
        index: Arc<Index>,
        metrics: Arc<Metrics>,
    ) -> WriterPool {
        let behind = Arc::new(Behind::default());
        let lanes = (0..threads.max(1))
            .map(|i| {
                let behind = behind.clone();
                let data = FrameQueue::new(queue_frames);
                let data_rx = data.clone();
                let (control, control_rx) = mpsc::channel();
                let writer = Writer {
                    settings: settings.clone(),
                    ring: ring.clone(),
                    index: index.clone(),
                    metrics: metrics.clone(),
                    active: HashMap::new(),
                    plain: Vec::with_capacity(4096),
                    silence: Vec::new(),
                    linear: Vec::new(),
                    done: Vec::new(),
                    sealed: Vec::new(),
                };
                let thread = std::thread::Builder::new()
                    .name(format!("rec-writer-{i}"))
                    .spawn(move || writer.run(data_rx, control_rx, &behind))
                    .ok();
                Lane {
                    data,
                    control,
                    thread,
                }
            })
            .collect();
        WriterPool { lanes, behind }
    }

    /// The writers have lately been unable to keep up (see [`Behind`]).
    pub fn is_behind(&self) -> bool {
        self.behind.is_behind()
    }

    /// What a writer does when it spent most of half a second working.
    #[cfg(test)]
    pub(crate) fn mark_behind(&self) {
        self.behind.mark();
    }

    /// Starts a recording on a writer and returns the tap for the media leg.
    pub fn open(&self, opening: Opening) -> RecorderTap {
        let lane = &self.lanes[opening.id.0[0] as usize % self.lanes.len()];
        let (id, rate, participants) = (opening.id, opening.rate, opening.participants);
        let law = opening.format.law();
        let _ = lane.control.send(WriterControl::Open(Box::new(opening)));
        RecorderTap::new(
            id,
            rate,
            law,
            participants,
            lane.data.clone(),
            Box::new(lane.control.clone()),
        )
    }

    /// Seals every open recording and stops the threads.
    pub fn shutdown(&mut self) {
        for lane in &mut self.lanes {
            let _ = lane.control.send(WriterControl::Stop);
            if let Some(t) = lane.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for WriterPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Writer {
    fn run(mut self, data: Arc<FrameQueue>, control: Receiver<WriterControl>, behind: &Behind) {
        let mut last_tick = Instant::now();
        let mut busy = Duration::ZERO;
        let mut batch = Vec::new();
        loop {
            let work = Instant::now();
            // Frames first, control second: a recording's Open is always sent before its
            // first frame, so it is seen no later than the frames taken here.
            let fill = data.take(&mut batch, &mut self.done);
            let running = self.control(&control);
            for block in batch.drain(..) {
                self.block(block, &control);
            }
            if !running {
                return self.stop(&data, &control);
            }
            busy += work.elapsed();
            let window = last_tick.elapsed();
            if window >= Duration::from_millis(500) {
                if busy.as_secs_f64() > Behind::BUSY * window.as_secs_f64() {
                    if !behind.is_behind() {
                        warn!(
                            busy_percent =
                                (100.0 * busy.as_secs_f64() / window.as_secs_f64()) as u32,
                            "recording writers are behind (over half their time working); with format = opus and overload_wav, new recordings are stored as WAV for a while"
                        );
                    }
                    behind.mark();
                }
                busy = Duration::ZERO;
                last_tick = Instant::now();
                self.flush_due();
                self.seal_abandoned();
                self.sync_index();
            }
            // Each recording hands over a block every half second: waking every 100 ms takes
            // a fifth of each one's wait, and a writer of dozens of recordings wakes 10 times a
            // second, not 50 (each wake-up is a timer and a futex: on a VM, 20-40 µs). When the
            // queue filled faster than that (hundreds of recordings on one writer), every
            // 20 ms. Control messages (open, end, pause) wake it at once.
            // With nothing open, nothing can be queued for this writer before an Open reaches
            // it here: it sleeps until then (an idle server's writers were each waking 50
            // times a second: a second of CPU a minute on 16 cores).
            let wait = if fill > 1.0 / 8.0 {
                Duration::from_millis(20)
            } else {
                Duration::from_millis(100)
            };
            let next = if self.active.is_empty() {
                self.sync_index();
                let next = control.recv().map_err(|_| RecvTimeoutError::Disconnected);
                (last_tick, busy) = (Instant::now(), Duration::ZERO);
                next
            } else {
                control.recv_timeout(wait)
            };
            match next {
                Ok(msg) => {
                    if !self.apply(msg) {
                        return self.stop(&data, &control);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.stop(&data, &control),
            }
        }
    }

    /// An End whose frames never all arrived (counted as queued, yet lost) must not keep the
    /// recording open for ever: seal it after a grace period.
    fn seal_abandoned(&mut self) {
        let stale: Vec<RecordingId> = self
            .active
            .iter()
            .filter(|(_, a)| {
                a.end_seen
                    .is_some_and(|t| t.elapsed() > Duration::from_secs(5))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            warn!(recording = %id, "sealing a recording whose last frames never arrived");
            self.seal(id);
        }
    }

    /// Shutdown: write what the media threads queued last, then seal everything.
    fn stop(&mut self, data: &FrameQueue, control: &Receiver<WriterControl>) {
        let mut rest = Vec::new();
        data.take(&mut rest, &mut self.done);
        for block in rest {
            self.block(block, control);
        }
        self.seal_all();
    }

    fn seal_all(&mut self) {
        let ids: Vec<RecordingId> = self.active.keys().copied().collect();
        for id in ids {
            self.seal(id);
        }
        self.sync_index();
    }

    /// Group commit of the index lines this writer appended (see [`Index::append_lazy`]).
    fn sync_index(&self) {
        if let Err(e) = self.index.sync() {
            warn!(error = %e, "could not sync the recording index");
        }
    }

    /// Applies pending control messages; false on Stop.
    fn control(&mut self, control: &Receiver<WriterControl>) -> bool {
        loop {
            match control.try_recv() {
                Ok(msg) => {
                    if !self.apply(msg) {
                        return false;
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Applies one control message; false on Stop.
    fn apply(&mut self, msg: WriterControl) -> bool {
        match msg {
            WriterControl::Open(o) => self.open(*o),
            WriterControl::Tap(TapControl::Pause { id }) => {
                if let Some(a) = self.active.get_mut(&id) {
                    a.pauses += 1;
                }
            }
            WriterControl::Tap(TapControl::Resume { .. }) => {}
            WriterControl::Tap(TapControl::End {
                id,
                frames,
                dropped,
            }) => {
                if let Some(a) = self.active.get_mut(&id) {
                    a.end = Some((frames, dropped));
                    a.end_seen = Some(Instant::now());
                }
                if self.active.get(&id).is_some_and(|a| a.received >= frames) {
                    self.seal(id);
                }
            }
            WriterControl::Stop => return false,
        }
        true
    }

    fn open(&mut self, o: Opening) {
        let info = StreamInfo {
            id: o.id,
            started_unix_ms: o.started_ms,
            format: o.format,
            channels: 2,
            sample_rate: o.rate,
            chunk_bytes: self.settings.chunk_bytes as u32,
        };
        let result = (|| -> Result<Active, String> {
            let (header, keys, wrapped) =
                crypt::new_header(&self.ring, &info, crypt::HeaderRandom::draw())
                    .map_err(|e| e.to_string())?;
            self.index
                .append_lazy(&IndexEvent::Started {
                    id: o.id,
                    call_id: o.call_id.clone(),
                    started_ms: o.started_ms,
                    format: o.format,
                    sample_rate: o.rate,
                    participants: o.participants.names(),
                    key_id: wrapped.key_id.clone(),
                    location: o.location.clone(),
                })
                .map_err(|e| e.to_string())?;
            if let Some(dir) = o.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let file = std::fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&o.path)
                .map_err(|e| format!("{}: {e}", o.path.display()))?;
            let mut sealer = ChunkSealer::new(keys, self.settings.chunk_bytes);
            let mut plain = Vec::new();
            let encoder = AudioEncoder::new(
                o.format,
                o.rate,
                self.settings.opus_complexity,
                rand::random(),
                &mut plain,
            )
            .map_err(|e| e.to_string())?;
            self.sealed.clear();
            self.sealed.extend_from_slice(&header);
            sealer.write(&plain, &mut self.sealed);
            Ok(Active {
                call_id: o.call_id.clone(),
                encoder,
                sealer,
                file,
                path: o.path.clone(),
                hasher: Sha256::new(),
                size: 0,
                rate: o.rate,
                next_seq: 0,
                received: 0,
                frames_written: 0,
                filled: 0,
                pauses: 0,
                last_write: Instant::now(),
                end: None,
                end_seen: None,
                progress: o.progress,
                failed: false,
            })
        })();
        match result {
            Ok(mut a) => {
                write_out(&mut a, &mut self.sealed);
                info!(recording = %o.id, call = %o.call_id, format = ?o.format, rate = o.rate, "recording started");
                self.metrics.recordings_active.inc();
                self.metrics.recordings_started.inc();
                self.active.insert(o.id, a);
            }
            Err(e) => warn!(recording = %o.id, error = %e, "recording could not start"),
        }
    }

    fn block(&mut self, b: Block, control: &Receiver<WriterControl>) {
        if !self.active.contains_key(&b.id) {
            // Its Open may still wait in the control queue.
            if !self.control(control) {
                return;
            }
        }
        let Some(a) = self.active.get_mut(&b.id) else {
            return;
        };
        // The tap records at the rate the recording was opened with: frames are this long.
        let n = frame_samples(a.rate) * 2;
        let gap = b.first_seq.wrapping_sub(a.next_seq);
        let fill = if gap > 0 && gap <= MAX_FILL_FRAMES {
            a.filled += gap as u64;
            gap as usize
        } else {
            0
        };
        let frames = b.frames;
        match &b.samples {
            Samples::Linear(planar) => {
                if fill > 0 {
                    self.silence.clear();
                    self.silence.resize(n * fill, 0);
                    push(a, &self.silence, n, &mut self.plain, &mut self.sealed);
                }
                interleave_block(planar, frames, &mut self.linear);
                push(a, &self.linear, n, &mut self.plain, &mut self.sealed);
            }
            Samples::Companded(planar) => {
                // The call's own G.711 bytes: already what the file stores (a WAV of that
                // law), so they go straight to the sealer.
                match a.encoder.law() {
                    Some(law) => {
                        if fill > 0 {
                            self.plain.clear();
                            self.plain.resize(n * fill, law.silence());
                            a.sealer.write(&self.plain, &mut self.sealed);
                            a.frames_written += fill as u64;
                        }
                        interleave_block(planar, frames, &mut self.plain);
                        a.sealer.write(&self.plain, &mut self.sealed);
                        a.frames_written += frames as u64;
                    }
                    None => {
                        if !a.failed {
                            warn!(recording = %b.id, "G.711 frames for a recording of another format");
                        }
                        a.failed = true;
                    }
                }
            }
        }
        self.done.push(b.samples);
        a.next_seq = b.first_seq.wrapping_add(frames as u32);
        a.received += frames as u64;
        write_out(a, &mut self.sealed);
        if let Some((end, _)) = a.end
            && a.received >= end
        {
            let id = b.id;
            self.seal(id);
        }
    }

    fn flush_due(&mut self) {
        for a in self.active.values_mut() {
            if a.last_write.elapsed() >= self.settings.flush_every {
                a.last_write = Instant::now();
                self.plain.clear();
                if a.encoder.flush(&mut self.plain).is_ok() {
                    a.sealer.write(&self.plain, &mut self.sealed);
                }
                a.sealer.flush(&mut self.sealed);
                write_out(a, &mut self.sealed);
            }
        }
    }

    fn seal(&mut self, id: RecordingId) {
        let Some(mut a) = self.active.remove(&id) else {
            return;
        };
        self.metrics.recordings_active.dec();
        self.plain.clear();
        if let Err(e) = a.encoder.finish(&mut self.plain) {
            warn!(recording = %id, error = %e, "encoder did not finish cleanly");
        }
        a.sealer.write(&self.plain, &mut self.sealed);
        a.sealer.finish(&mut self.sealed);
        write_out(&mut a, &mut self.sealed);
        if let Err(e) = a.file.sync_data() {
            warn!(recording = %id, error = %e, "fsync failed");
            a.failed = true;
        }
        let dropped = a.end.map(|(_, d)| d).unwrap_or(0);
        self.metrics.recording_frames_dropped.inc_by(dropped);
        if a.failed {
            // Left unsealed in the index: the next start recovers what the file holds.
            warn!(recording = %id, path = %a.path.display(), "recording ended with write errors");
            return;
        }
        let sealed = IndexEvent::Sealed {
            id,
            ended_ms: now_ms(),
            duration_ms: a.frames_written * 20,
            size: a.size,
            sha256: hex::encode(a.hasher.finalize_reset()),
            chunks: a.sealer.chunks(),
            dropped_frames: dropped,
            pauses: a.pauses,
            recovered: false,
        };
        if let Err(e) = self.index.append_lazy(&sealed) {
            warn!(recording = %id, error = %e, "could not index the sealed recording");
        }
        if let Some(p) = &a.progress {
            let _ = p.send((a.size, true));
        }
        info!(recording = %id, call = %a.call_id, ms = a.frames_written * 20, bytes = a.size, dropped, filled = a.filled, "recording sealed");
    }
}

/// Encodes and seals consecutive frames of `n` interleaved samples.
fn push(a: &mut Active, pcm: &[i16], n: usize, plain: &mut Vec<u8>, sealed: &mut Vec<u8>) {
    plain.clear();
    match a.encoder.push_frames(pcm, n, plain) {
        Ok(()) => a.sealer.write(plain, sealed),
        Err(e) => {
            if !a.failed {
                warn!(error = %e, "recording encoder failed");
            }
            a.failed = true;
        }
    }
    a.frames_written += (pcm.len() / n.max(1)) as u64;
}

/// Appends the sealed frames in `out` to the file, so they survive a crash of the process,
/// and empties `out`.
fn write_out(a: &mut Active, out: &mut Vec<u8>) {
    if out.is_empty() {
        return;
    }
    match a.file.write_all(out) {
        Ok(()) => {
            a.last_write = Instant::now();
            // The index's SHA-256 covers the chunks, not the header (which rotation rewrites).
            let skip = (super::format::HEADER_LEN as u64).saturating_sub(a.size) as usize;
            a.hasher.update(&out[skip.min(out.len())..]);
            a.size += out.len() as u64;
            if let Some(p) = &a.progress {
                let _ = p.send((a.size, false));
            }
        }
        Err(e) => {
            if !a.failed {
                warn!(path = %a.path.display(), error = %e, "recording write failed");
            }
            a.failed = true;
        }
    }
    out.clear();
}
