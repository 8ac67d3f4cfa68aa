//! Recordings in S3-compatible storage, against a real `s3s-fs` server on loopback
//! (`cargo install s3s-fs@0.14.1 --locked --features binary`, done by scripts/test).
//! Includes the store going away in the middle of a call, a recording uploaded in several
//! parts, the store losing a multipart upload, and a store that refuses the upload.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::io::Write;
use std::sync::Arc;

use careline::media::codec::Codec;
use careline::media::recognize;
use careline::metrics::Metrics;
use careline::recording::index::{Index, IndexEvent, Row};
use careline::recording::settings::{RecordingConfig, S3Config, StoreKind};
use careline::recording::store::Store;
use careline::recording::{AudioFormat, RecordingId};
use support::audio::let_call_run;
use support::rtp::RtpPeer;
use support::server::{Options, TestServer, prompt_pcm};
use support::sip::{Call, Ua, answered_call, sdp_media_addr, sdp_offer};

struct S3Server {
    child: Option<Child>,
    /// The secret key the server accepts (the access key is always AKTEST).
    secret: String,
    port: u16,
    root: tempfile::TempDir,
}

const BUCKET: &str = "careline-test";

fn s3s_fs() -> PathBuf {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let installed = home.join("bin/s3s-fs");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("s3s-fs")
    }
}

impl S3Server {
    fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = S3Server {
            child: None,
            secret: "SKTEST".into(),
            port,
            root,
        };
        s.up();
        s
    }

    fn up(&mut self) {
        let child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", "AKTEST", "--secret-key", &self.secret])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn objects(&self) -> Vec<PathBuf> {
        files(&self.root.path().join(BUCKET))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "clrec"))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.down();
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn rows(server: &TestServer) -> Vec<serde_json::Value> {
    let out = server.cli(&["recording", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn server_for(s3: &S3Server) -> TestServer {
    TestServer::start_with(Options {
        toml: format!(
            "[recording]\nformat = \"wav\"\nstore = \"s3\"\nflush_secs = 1\n\
             [recording.s3]\nbucket = \"{BUCKET}\"\nendpoint = \"http://127.0.0.1:{}\"\n\
             access_key_id = \"AKTEST\"\nsecret_access_key = \"SKTEST\"\nallow_http = true\n",
            s3.port
        ),
        args: vec!["--record-all".into()],
        ..Default::default()
    })
}

fn call(server: &TestServer, peer: &RtpPeer) -> (Ua, Call) {
    let mut ua = Ua::udp(server.sip);
    let mut call = Call::new("100");
    let ok = answered_call(
        &mut ua,
        &mut call,
        &sdp_offer(
            peer.port,
            "0 101",
            &["a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000"],
        ),
    );
    peer.set_remote(sdp_media_addr(&ok.body_str()).unwrap());
    (ua, call)
}

fn hang_up(ua: &mut Ua, call: &mut Call) {
    let bye = call.bye(ua);
    ua.send(&bye);
    ua.expect(Duration::from_secs(5), |m| m.cseq_method() == Some("BYE"))
        .expect("200 to BYE");
}

fn exported_left(server: &TestServer, id: &str) -> Vec<i16> {
    let out_path = server.data_dir.path().join("out.wav");
    let out = server.cli(&["recording", "export", id, "-o", out_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = hound::WavReader::open(&out_path).unwrap();
    r.samples::<i16>().step_by(2).map(|s| s.unwrap()).collect()
}

#[test]
fn recording_streams_to_s3_and_survives_the_store_going_away_mid_call() {
    let mut s3 = S3Server::start();
    let server = server_for(&s3);
    let peer = RtpPeer::new(Codec::Pcmu, 0, None);
    let (mut ua, mut c) = call(&server, &peer);
    let mut said = prompt_pcm("en", "digit-7");
    said.truncate(16000);
    peer.send_audio(said.clone());
    let_call_run(&peer, 2500);
    s3.down();
    let spool = server.data_path().join("recordings/spool");
    // The audio keeps going to the encrypted spool: it grows past 5 s of the call (a PCMU
    // call records its µ-law bytes, 16 kB/s stereo), well past what was written before the
    // store went away.
    wait_for("the spool to grow while the store is down", 60, || {
        let spooled = files(&spool);
        spooled.len() == 1 && std::fs::metadata(&spooled[0]).map_or(0, |m| m.len()) > 5 * 16_000
    });
    assert_eq!(files(&spool).len(), 1, "one recording, one spool file");
    hang_up(&mut ua, &mut c);
    wait_for("the recording to be sealed", 30, || {
        rows(&server).pop().unwrap()["state"] == "sealed"
    });
    let row = rows(&server).pop().unwrap();
    assert_eq!(row["uploaded"], false, "the store is still down");
    assert!(s3.objects().is_empty());

    s3.up();
    wait_for("the spool to upload", 40, || {
        rows(&server).pop().unwrap()["uploaded"] == true
    });
    wait_for("the spool file to go", 10, || files(&spool).is_empty());
    let objects = s3.objects();
    assert_eq!(objects.len(), 1);
    let row = rows(&server).pop().unwrap();
    assert_eq!(
        std::fs::metadata(&objects[0]).unwrap().len(),
        row["size"].as_u64().unwrap(),
        "the object is the whole recording"
    );
    let id = row["id"].as_str().unwrap().to_string();
    let out = server.cli(&["recording", "verify", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let left = exported_left(&server, &id);
    // Past the 2.5 s before the outage: what was spooled during it is in the recording.
    assert!(left.len() > 8000 * 5, "{} ms", left.len() / 8);
    let m = recognize::find(&left, &said).unwrap();
    assert!(
        m.waveform_score > 0.95,
        "the caller's audio, read back from S3: {m:?}"
    );
}

/// A store client and index over `s3`, as the server makes them, and one recording in its
/// spool (indexed as started, not yet written).
struct Spooled {
    store: Arc<Store>,
    index: Arc<Index>,
    metrics: Arc<Metrics>,
    id: RecordingId,
    spool: PathBuf,
    location: String,
    row: Row,
    _data: tempfile::TempDir,
}

fn spooled(s3: &S3Server, secret: &str) -> Spooled {
    let data = tempfile::tempdir().unwrap();
    let cfg = RecordingConfig {
        store: StoreKind::S3,
        s3: S3Config {
            bucket: BUCKET.into(),
            endpoint: Some(format!("http://127.0.0.1:{}", s3.port)),
            access_key_id: Some("AKTEST".into()),
            secret_access_key: Some(secret.into()),
            part_bytes: PART,
            allow_http: true,
            ..S3Config::default()
        },
        ..RecordingConfig::default()
    };
    cfg.validate().expect("a valid configuration");
    let store = Arc::new(Store::open(&cfg, data.path()).unwrap());
    let index = Arc::new(Index::open(data.path()).unwrap());
    let id = RecordingId::random();
    let started_ms = 1_700_000_000_000;
    let (spool, location) = store.placement(id, started_ms);
    std::fs::create_dir_all(spool.parent().unwrap()).unwrap();
    index
        .append(&IndexEvent::Started {
            id,
            call_id: "store-test".into(),
            started_ms,
            format: AudioFormat::Wav,
            sample_rate: 8000,
            participants: vec![],
            key_id: "k".into(),
            location: location.clone(),
        })
        .unwrap();
    let row = index.get(id).unwrap().unwrap();
    Spooled {
        store,
        index,
        metrics: Arc::new(Metrics::new()),
        id,
        spool,
        location,
        row,
        _data: data,
    }
}

impl Spooled {
    /// The store's upload task for this recording, following the writer's `progress`.
    fn upload(
        &self,
        progress: tokio::sync::watch::Receiver<(u64, bool)>,
    ) -> impl std::future::Future<Output = ()> + use<> {
        self.store.clone().upload(
            self.row.clone(),
            progress,
            self.index.clone(),
            self.metrics.clone(),
        )
    }
}

/// S3's minimum part size, which the configuration enforces.
const PART: usize = 5 << 20;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Not audio: bytes whose every position is distinct enough that a part out of place,
/// repeated or missing shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A recording longer than one part (5 MiB, S3's minimum) goes up as a multipart upload
/// while it grows: parts in order, the last one short, the object byte for byte the spool
/// file. On the way the store loses the upload (as S3's "abort incomplete multipart uploads"
/// lifecycle rule does), and the recording is uploaded again from its start. Driven through
/// the store directly: a call would need minutes of audio per part.
#[test]
fn a_recording_larger_than_a_part_uploads_in_parts_while_it_grows() {
    let s3 = S3Server::start();
    let t = spooled(&s3, "SKTEST");
    let total = 2 * PART + PART / 2 + 12_345;
    let bytes = pattern(total);
    let mut file = std::fs::File::create(&t.spool).unwrap();
    let (tx, rx) = tokio::sync::watch::channel((0u64, false));
    let rt = runtime();
    let upload = rt.spawn(t.upload(rx));
    // The writer appends and reports progress; the first part leaves once 5 MiB are there.
    let first = PART + PART / 3;
    file.write_all(&bytes[..first]).unwrap();
    tx.send((first as u64, false)).unwrap();
    let in_store = |prefix: &str| -> Vec<PathBuf> {
        files(s3.root.path())
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .collect()
    };
    wait_for("the first part in the store", 20, || {
        !in_store(".upload_id-").is_empty()
    });
    assert!(
        s3.objects().is_empty(),
        "nothing is visible until the upload completes"
    );
    // The store forgets the upload: its next part is refused.
    for f in in_store(".upload-") {
        std::fs::remove_file(f).unwrap();
    }
    file.write_all(&bytes[first..]).unwrap();
    file.sync_all().unwrap();
    tx.send((total as u64, true)).unwrap();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), upload).await })
        .expect("the upload finishes")
        .unwrap();

    let objects = s3.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    let stored = std::fs::read(&objects[0]).unwrap();
    assert_eq!(stored.len(), total, "three parts: 5 MiB, 5 MiB, the rest");
    assert!(
        stored == bytes,
        "the object is the spool file byte for byte"
    );
    assert!(!t.spool.exists(), "the spool file is removed once uploaded");
    let row = t
        .index
        .get(t.id)
        .unwrap()
        .expect("the recording is indexed");
    assert!(row.uploaded, "the index records the upload");
    assert_eq!(row.location, t.location);
}

/// A store that refuses the upload (here: credentials it does not accept) is an operator's
/// problem, not an outage: the recording counts in careline_recording_uploads_refused while
/// it waits in the spool, and goes up once the store accepts it.
#[test]
fn an_upload_the_store_refuses_is_counted_and_goes_up_once_it_is_accepted() {
    let mut s3 = S3Server::start();
    let t = spooled(&s3, "rotated-secret");
    let bytes = pattern(100_000);
    std::fs::write(&t.spool, &bytes).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel((bytes.len() as u64, true));
    let rt = runtime();
    let upload = rt.spawn(t.upload(rx));
    wait_for("the refusal to be counted", 20, || {
        t.metrics.recording_uploads_refused.get() == 1
    });
    assert!(t.spool.exists(), "the audio stays in the spool");
    assert!(!t.index.get(t.id).unwrap().unwrap().uploaded);
    assert!(s3.objects().is_empty());

    // The operator gives the store the credentials Careline was configured with.
    s3.down();
    s3.secret = "rotated-secret".into();
    s3.up();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(40), upload).await })
        .expect("the upload goes through once the store accepts it")
        .unwrap();
    assert_eq!(t.metrics.recording_uploads_refused.get(), 0);
    assert!(t.index.get(t.id).unwrap().unwrap().uploaded);
    let objects = s3.objects();
    assert_eq!(objects.len(), 1);
    assert!(std::fs::read(&objects[0]).unwrap() == bytes);
    assert!(!t.spool.exists());
}
