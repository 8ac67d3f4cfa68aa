//! Where sealed recordings live: files under the recordings folder (the default), or an
//! S3-compatible object store. S3 recordings are written to a local encrypted spool first
//! and streamed up with multipart upload as parts fill (every part retried until the store
//! takes it); if the store is down the spool simply grows, and uploads resume when it is
//! back, including after a restart. Memory per recording stays at one chunk; at most
//! [`PARALLEL_PARTS`] parts are in memory at once for the whole process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use tracing::{error, info, warn};

use super::format::RecordingId;
use super::index::{Index, IndexEvent, Row, day_of};
use super::settings::{RecordingConfig, StoreKind};
use crate::metrics::Metrics;

/// Part uploads in flight at once, process-wide (each holds one part in memory).
pub const PARALLEL_PARTS: usize = 4;

/// The longest wait before a request the store refused (not merely failed) is tried again.
const REFUSED_RETRY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("object store: {0}")]
    Object(#[from] object_store::Error),
    #[error("recording location `{0}` is not one this store understands")]
    BadLocation(String),
    #[error("S3 configuration: {0}")]
    Config(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct S3 {
    store: Arc<object_store::aws::AmazonS3>,
    bucket: String,
    prefix: String,
    part_bytes: usize,
    parts: Arc<tokio::sync::Semaphore>,
}

pub struct Store {
    root: PathBuf,
    s3: Option<S3>,
}

impl Store {
    pub fn open(cfg: &RecordingConfig, root: &Path) -> Result<Store, StoreError> {
        let s3 = match cfg.store {
            StoreKind::Local => None,
            StoreKind::S3 => {
                // reqwest's TLS takes the process-wide rustls provider (ring, as elsewhere).
                let _ = rustls::crypto::ring::default_provider().install_default();
                let c = &cfg.s3;
                let mut b = object_store::aws::AmazonS3Builder::new()
                    // Client options first: setting them replaces allow_http set before.
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(3))
                            .with_timeout(Duration::from_secs(60)),
                    )
                    .with_bucket_name(&c.bucket)
                    .with_region(&c.region)
                    .with_allow_http(c.allow_http)
                    // Our own loop retries for ever; the client gives up fast so a dead store
                    // is noticed and the audio stays in the spool.
                    .with_retry(object_store::RetryConfig {
                        max_retries: 1,
                        retry_timeout: Duration::from_secs(5),
                        backoff: Default::default(),
                    });
                if let Some(e) = &c.endpoint {
                    b = b.with_endpoint(e);
                }
                let key = c
                    .access_key_id
                    .clone()
                    .or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok());
                let secret = c
                    .secret_access_key
                    .clone()
                    .or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok());
                if let (Some(k), Some(s)) = (key, secret) {
                    b = b.with_access_key_id(k).with_secret_access_key(s);
                }
                let store = b.build().map_err(|e| StoreError::Config(e.to_string()))?;
                Some(S3 {
                    store: Arc::new(store),
                    bucket: c.bucket.clone(),
                    prefix: c.prefix.trim_matches('/').to_string(),
                    part_bytes: c.part_bytes,
                    parts: Arc::new(tokio::sync::Semaphore::new(PARALLEL_PARTS)),
                })
            }
        };
        std::fs::create_dir_all(root).map_err(io(root))?;
        Ok(Store {
            root: root.to_path_buf(),
            s3,
        })
    }

    pub fn is_s3(&self) -> bool {
        self.s3.is_some()
    }

    /// Where a new recording is written, and the location the index records for it.
    pub fn placement(&self, id: RecordingId, started_ms: u64) -> (PathBuf, String) {
        let day = day_of(started_ms);
        match &self.s3 {
            None => {
                let rel = format!("{day}/{id}.clrec");
                (self.root.join(&rel), format!("file:{rel}"))
            }
            Some(s3) => (
                self.spool_path(id),
                format!("s3://{}/{}", s3.bucket, s3.key(&day, id)),
            ),
        }
    }

    pub fn spool_path(&self, id: RecordingId) -> PathBuf {
        self.root.join("spool").join(format!("{id}.clrec"))
    }

    /// The local file holding a recording now, if it is on this disk.
    pub fn local_file(&self, row: &Row) -> Result<Option<PathBuf>, StoreError> {
        if let Some(rel) = row.location.strip_prefix("file:") {
            return Ok(Some(self.root.join(rel)));
        }
        if row.location.starts_with("s3://") {
            return Ok((!row.uploaded).then(|| self.spool_path(row.id)));
        }
        Err(StoreError::BadLocation(row.location.clone()))
    }

    fn object(&self, row: &Row) -> Result<(&S3, ObjectPath), StoreError> {
        let s3 = self.s3.as_ref().ok_or_else(|| {
            StoreError::Config(format!(
                "{} is in S3, but recording.store is not s3",
                row.id
            ))
        })?;
        let rest = row
            .location
            .strip_prefix(&format!("s3://{}/", s3.bucket))
            .ok_or_else(|| StoreError::BadLocation(row.location.clone()))?;
        Ok((s3, ObjectPath::from(rest)))
    }

    /// The recording's bytes as a stream, wherever they are.
    pub async fn read(
        &self,
        row: &Row,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        if let Some(path) = self.local_file(row)? {
            let file = tokio::fs::File::open(&path).await.map_err(io(&path))?;
            let stream = futures::stream::unfold((file, path), |(mut file, path)| async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 64 * 1024];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(Bytes::from(buf)), (file, path)))
                    }
                    Err(source) => {
                        let err = StoreError::Io {
                            path: path.clone(),
                            source,
                        };
                        Some((Err(err), (file, path)))
                    }
                }
            });
            return Ok(stream.boxed());
        }
        let (s3, path) = self.object(row)?;
        let got = s3.store.get(&path).await?;
        Ok(got
            .into_stream()
            .map(|r| r.map_err(StoreError::from))
            .boxed())
    }

    pub async fn delete(&self, row: &Row) -> Result<(), StoreError> {
        if let Some(path) = self.local_file(row)? {
            return match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
                _ => Ok(()),
            };
        }
        let (s3, path) = self.object(row)?;
        Ok(s3.store.delete(&path).await?)
    }

    /// Replaces the header (same length) of a stored recording; the chunks are not touched.
    pub async fn rewrite_header(&self, row: &Row, header: &[u8]) -> Result<(), StoreError> {
        if let Some(path) = self.local_file(row)? {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            f.write_all_at(header, 0).map_err(io(&path))?;
            return f.sync_all().map_err(io(&path));
        }
        // Objects are immutable: write a copy whose first bytes differ.
        let (s3, path) = self.object(row)?;
        let mut body = s3.store.get(&path).await?.bytes().await?.to_vec();
        let n = header.len().min(body.len());
        body[..n].copy_from_slice(&header[..n]);
        s3.store.put(&path, PutPayload::from(body)).await?;
        Ok(())
    }

    /// Streams a spooled recording to S3 as it grows, then records it uploaded and removes the
    /// spool file. `progress` says how many bytes the file holds and whether it is sealed.
    pub async fn upload(
        self: Arc<Self>,
        row: Row,
        mut progress: tokio::sync::watch::Receiver<(u64, bool)>,
        index: Arc<Index>,
        metrics: Arc<Metrics>,
    ) {
        let Some(s3) = &self.s3 else { return };
        let Ok((_, path)) = self.object(&row) else {
            warn!(recording = %row.id, location = row.location, "cannot upload: bad location");
            return;
        };
        let spool = self.spool_path(row.id);
        let mut upload: Option<object_store::MultipartId> = None;
        let mut parts = Vec::new();
        let mut sent: u64 = 0;
        let mut refused = Refused::new(&metrics, row.id);
        let mut restarts = Restarts(0);
        loop {
            let (len, sealed) = *progress.borrow_and_update();
            let part = s3.part_bytes as u64;
            while len - sent >= part || (sealed && sent < len) {
                let n = (len - sent).min(part);
                let data = match read_range(&spool, sent, n as usize).await {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(recording = %row.id, error = %e, "spool unreadable; upload stops");
                        return;
                    }
                };
                if sealed && sent == 0 && n == len {
                    // Small enough for one request.
                    let put = retry(&mut refused, "put", false, || {
                        let store = s3.store.clone();
                        let (path, data) = (path.clone(), data.clone());
                        async move { store.put(&path, PutPayload::from(data)).await.map(|_| ()) }
                    });
                    // Outside a multipart upload a request is retried until it succeeds.
                    if put.await.is_ok() {
                        sent = len;
                    }
                    break;
                }
                let id = match &upload {
                    Some(id) => id.clone(),
                    None => {
                        let create = retry(&mut refused, "create_multipart", false, || {
                            let store = s3.store.clone();
                            let path = path.clone();
                            async move { store.create_multipart(&path).await }
                        });
                        let Ok(id) = create.await else { continue };
                        upload = Some(id.clone());
                        id
                    }
                };
                let _permit = s3.parts.acquire().await;
                let idx = parts.len();
                let put_part = retry(&mut refused, "put_part", true, || {
                    let store = s3.store.clone();
                    let (path, id, data) = (path.clone(), id.clone(), data.clone());
                    async move {
                        store
                            .put_part(&path, &id, idx, PutPayload::from(data))
                            .await
                    }
                });
                match put_part.await {
                    Ok(part_id) => {
                        parts.push(part_id);
                        sent += n;
                        restarts.reset();
                    }
                    Err(UploadGone) => {
                        drop(_permit);
                        restarts.wait(row.id).await;
                        (upload, sent) = (None, 0);
                        parts.clear();
                    }
                }
            }
            if sealed && sent >= len {
                if let Some(id) = upload.take() {
                    let complete = retry(&mut refused, "complete_multipart", true, || {
                        let store = s3.store.clone();
                        let (path, id, parts) = (path.clone(), id.clone(), parts.clone());
                        async move {
                            store
                                .complete_multipart(&path, &id, parts)
                                .await
                                .map(|_| ())
                        }
                    });
                    if complete.await.is_err() {
                        restarts.wait(row.id).await;
                        sent = 0;
                        parts.clear();
                        continue;
                    }
                }
                let _ = index.append(&IndexEvent::Uploaded {
                    id: row.id,
                    location: row.location.clone(),
                });
                let _ = tokio::fs::remove_file(&spool).await;
                info!(recording = %row.id, bytes = len, parts = parts.len().max(1), "recording uploaded");
                return;
            }
            if progress.changed().await.is_err() {
                // The writer went away without sealing (shutdown): the next start resumes.
                return;
            }
        }
    }
}

impl S3 {
    fn key(&self, day: &str, id: RecordingId) -> String {
        if self.prefix.is_empty() {
            format!("{day}/{id}.clrec")
        } else {
            format!("{}/{day}/{id}.clrec", self.prefix)
        }
    }
}

async fn read_range(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await.map_err(io(path))?;
    f.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(io(path))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).await.map_err(io(path))?;
    Ok(buf)
}

/// The multipart upload a request belonged to is gone (aborted by the store's lifecycle
/// rules, or lost by a store that restarted): the recording is uploaded again from its start.
struct UploadGone;

/// Restarting a multipart upload the store lost, backing off (1 s doubling to a minute) in
/// case the store keeps losing it.
struct Restarts(u32);

impl Restarts {
    async fn wait(&mut self, id: RecordingId) {
        warn!(recording = %id, "the object store no longer knows this multipart upload; uploading the recording again from its start");
        tokio::time::sleep(Duration::from_secs(1 << self.0.min(6)).min(REFUSED_RETRY)).await;
        self.0 += 1;
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Whether the store is refusing one recording's upload outright (bucket missing, access
/// denied, bad credentials): a configuration problem an operator must see, unlike the store
/// being unreachable. While it lasts the recording counts in
/// `careline_recording_uploads_refused` and is retried at most a minute apart; the audio
/// stays in the encrypted spool.
struct Refused {
    metrics: Arc<Metrics>,
    id: RecordingId,
    counted: bool,
}

impl Refused {
    fn new(metrics: &Arc<Metrics>, id: RecordingId) -> Refused {
        Refused {
            metrics: metrics.clone(),
            id,
            counted: false,
        }
    }

    fn set(&mut self, refused: bool) {
        if refused != self.counted {
            self.counted = refused;
            if refused {
                self.metrics.recording_uploads_refused.inc();
            } else {
                self.metrics.recording_uploads_refused.dec();
            }
        }
    }
}

impl Drop for Refused {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// The store answered, and will answer the same again: retrying soon is pointless.
fn is_refusal(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
    )
}

/// Runs `op` until it succeeds, backing off from 200 ms to 10 s while the store is away (a
/// normal condition, never a reason to lose audio), and from 10 s to a minute while it
/// refuses.
/// `in_upload`: the request belongs to a multipart upload that the store accepted, so
/// "not found" or "denied" means the upload is gone ([`UploadGone`]) rather than the bucket.
async fn retry<T, F, Fut>(
    refused: &mut Refused,
    what: &str,
    in_upload: bool,
    mut op: F,
) -> Result<T, UploadGone>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, object_store::Error>>,
{
    let id = refused.id;
    let mut delay = Duration::from_millis(200);
    let mut refused_delay = Duration::from_secs(10);
    let mut failures = 0u32;
    loop {
        match op().await {
            Ok(v) => {
                if failures > 0 {
                    info!(recording = %id, what, failures, "object store took the recording again");
                }
                refused.set(false);
                return Ok(v);
            }
            // S3 says NoSuchUpload (404); s3s-fs says AccessDenied. A real denial shows again
            // when the upload is created anew, and is handled there.
            Err(
                object_store::Error::NotFound { .. } | object_store::Error::PermissionDenied { .. },
            ) if in_upload => return Err(UploadGone),
            Err(e) => {
                refused.metrics.recording_upload_failures.inc();
                let log = failures == 0 || failures.is_power_of_two();
                failures += 1;
                if is_refusal(&e) {
                    refused.set(true);
                    if log {
                        error!(recording = %id, what, error = %e, "the object store refuses the recording (check recording.s3 bucket and credentials); retrying, at most a minute apart; the audio stays in the encrypted spool");
                    }
                    tokio::time::sleep(refused_delay).await;
                    refused_delay = (refused_delay * 2).min(REFUSED_RETRY);
                    continue;
                }
                if log {
                    warn!(recording = %id, what, error = %e, "object store request failed; retrying (audio stays in the encrypted spool)");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
