//! WHIP signaling (RFC 9725) for browser callers: the offer POSTed to Careline's
//! `/api/v1/calls/whip`, the session DELETEd to hang up. HTTP is blocking and slow next to a
//! 20 ms media tick, so a few helper threads per worker carry the exchanges and hand the
//! answers back through a channel, waking the worker with an empty datagram on its SIP
//! socket (which it reads at once) instead of waiting for its next tick.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::clock::{self, Nanos};

/// Where browser callers call: Careline's HTTP listener, and the bearer token when its
/// `[webrtc] public_calls` is off.
#[derive(Debug, Clone)]
pub struct WhipTarget {
    pub http: SocketAddr,
    pub token: Option<String>,
}

pub enum Job {
    /// POST `offer` to `path`.
    Post {
        call_id: String,
        path: String,
        offer: String,
    },
    /// DELETE the session at `location`.
    Delete { call_id: String, location: String },
}

pub enum Done {
    /// The POST's answer (status 0: no HTTP answer; `body` says why).
    Answered {
        call_id: String,
        status: u16,
        location: Option<String>,
        body: String,
        at: Nanos,
    },
    Deleted {
        call_id: String,
        status: u16,
    },
}

pub struct Signaler {
    jobs: mpsc::Sender<Job>,
    pub done: mpsc::Receiver<Done>,
}

/// Threads per worker: POSTs on loopback take a few milliseconds each; four keep a burst of
/// new calls from queueing behind one another.
const THREADS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(10);

impl Signaler {
    /// Helper threads for `target`; each finished exchange wakes `wake` (the worker's SIP
    /// socket) with an empty datagram.
    pub fn spawn(target: WhipTarget, wake: Option<SocketAddr>) -> io::Result<Signaler> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (tx, done) = mpsc::channel();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..THREADS {
            let rx = rx.clone();
            let tx = tx.clone();
            let target = target.clone();
            let waker = match wake {
                Some(w) => Some((UdpSocket::bind(SocketAddr::new(w.ip(), 0))?, w)),
                None => None,
            };
            std::thread::Builder::new()
                .name(format!("whip-{n}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let done = run(&target, job);
                        if tx.send(done).is_err() {
                            return;
                        }
                        if let Some((sock, to)) = &waker {
                            let _ = sock.send_to(&[], to);
                        }
                    }
                })?;
        }
        Ok(Signaler { jobs, done })
    }

    pub fn send(&self, job: Job) {
        let _ = self.jobs.send(job);
    }
}

fn run(target: &WhipTarget, job: Job) -> Done {
    match job {
        Job::Post {
            call_id,
            path,
            offer,
        } => {
            let (status, location, body) =
                match exchange(target, "POST", &path, Some(offer.as_bytes())) {
                    Ok(r) => r,
                    Err(e) => (0, None, e.to_string()),
                };
            Done::Answered {
                call_id,
                status,
                location,
                body,
                at: clock::now(),
            }
        }
        Job::Delete { call_id, location } => {
            let status = exchange(target, "DELETE", &location, None).map_or(0, |r| r.0);
            Done::Deleted { call_id, status }
        }
    }
}

/// One HTTP/1.1 exchange on a new connection: status, `Location`, body.
fn exchange(
    target: &WhipTarget,
    method: &str,
    path: &str,
    sdp: Option<&[u8]>,
) -> io::Result<(u16, Option<String>, String)> {
    let mut s = TcpStream::connect_timeout(&target.http, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.set_nodelay(true)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: careline-loadtest\r\n",
        target.http
    );
    if let Some(t) = &target.token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = sdp.unwrap_or_default();
    if sdp.is_some() {
        req.push_str("Content-Type: application/sdp\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    parse_response(&buf)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))
}

fn parse_response(buf: &[u8]) -> Option<(u16, Option<String>, String)> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let location = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    });
    Some((status, location, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_gives_its_status_location_and_body() {
        let r = b"HTTP/1.1 201 Created\r\ncontent-type: application/sdp\r\nlocation: /api/v1/calls/whip/abc\r\ncontent-length: 3\r\n\r\nv=0";
        assert_eq!(
            parse_response(r),
            Some((201, Some("/api/v1/calls/whip/abc".into()), "v=0".into()))
        );
        let r = b"HTTP/1.1 401 Unauthorized\r\n\r\n{\"error\":\"sign in\"}";
        assert_eq!(
            parse_response(r),
            Some((401, None, "{\"error\":\"sign in\"}".into()))
        );
        assert_eq!(parse_response(b"garbage"), None);
    }
}
