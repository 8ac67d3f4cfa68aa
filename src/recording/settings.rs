//! The `[recording]` configuration section.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::format::AudioFormat;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Record every call from answer (also `careline serve --record-all`). Otherwise calls are
    /// recorded when a flow or the API asks.
    pub record_all: bool,
    /// `opus` (Ogg Opus, about 2.5 kB/s) or `wav` (16-bit PCM).
    pub format: AudioFormat,
    /// `local` (files under `dir`) or `s3`.
    pub store: StoreKind,
    /// Local recordings, the S3 spool and the index; default `<data_dir>/recordings`.
    pub dir: Option<PathBuf>,
    /// Plaintext bytes per encrypted chunk.
    pub chunk_bytes: u32,
    /// A partial chunk is sealed and written when nothing was for this long (what a crash
    /// can lose).
    pub flush_secs: u32,
    /// Delete recordings this many days after they end (0 = keep for ever).
    pub retention_days: u32,
    /// Frames queued between the media threads and a writer before frames are dropped.
    pub queue_frames: usize,
    /// Writer threads; 0 = one per core.
    pub writer_threads: usize,
    /// Opus encoder complexity 0-10 (CPU per recorded call against quality).
    pub opus_complexity: i32,
    /// With `format = "opus"`: a recording that starts while the writer threads are behind
    /// (Opus encoding is the costliest part of recording) is stored as WAV instead, so a
    /// busy hour costs disk space rather than audio. `false`: always Opus, and frames the
    /// writers cannot take in time are dropped (silence stands in).
    pub overload_wav: bool,
    /// Serve the recording endpoints (`/api/v1/recordings...`, guarded by the permission table
    /// like every `/api/v1` route, and `/api/v1/calls/{call_id}/recording/{action}`). `false`
    /// is an off switch: recordings are then reached only through the command line.
    pub http_enabled: bool,
    pub s3: S3Config,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Local,
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    /// e.g. `https://s3.eu-central-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: String,
    /// Credentials; `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` when unset.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Object key prefix.
    pub prefix: String,
    /// Multipart part size (S3 requires at least 5 MiB for every part but the last).
    pub part_bytes: usize,
    /// Permit `http://` endpoints (a store on loopback or a private network).
    pub allow_http: bool,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            record_all: false,
            format: AudioFormat::Opus,
            store: StoreKind::Local,
            dir: None,
            chunk_bytes: 64 * 1024,
            flush_secs: 5,
            retention_days: 0,
            queue_frames: 8192,
            writer_threads: 0,
            opus_complexity: 1,
            overload_wav: true,
            http_enabled: true,
            s3: S3Config::default(),
        }
    }
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            prefix: "recordings".into(),
            part_bytes: 8 << 20,
            allow_http: false,
        }
    }
}

impl RecordingConfig {
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join("recordings"))
    }

    /// Checks what serde cannot; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1024..=4 << 20).contains(&self.chunk_bytes) {
            return Err(format!(
                "recording.chunk_bytes = {} must be between 1024 and 4194304",
                self.chunk_bytes
            ));
        }
        if self.flush_secs == 0 {
            return Err("recording.flush_secs must be at least 1".into());
        }
        if self.store == StoreKind::S3 && self.s3.bucket.is_empty() {
            return Err("recording.store = \"s3\" needs recording.s3.bucket".into());
        }
        if self.s3.part_bytes < 5 << 20 {
            // S3 (and s3s-fs) refuse to complete an upload whose non-last parts are smaller.
            return Err(
                "recording.s3.part_bytes must be at least 5242880 (5 MiB, S3's minimum part)"
                    .into(),
            );
        }
        Ok(())
    }
}
