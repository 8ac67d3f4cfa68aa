//! The HTTP listener's limits against clients that misbehave on purpose: a connection that
//! says nothing, a half-sent request head or body, an idle keep-alive connection, and one
//! address opening connection after connection. Each is cut off by the server (the client sees
//! the connection close), never by the test's own read timeout.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::server::{Options, TestServer};

/// Far longer than any limit the servers below set: a read that lasts this long means the
/// server did not close the connection.
const PATIENCE: Duration = Duration::from_secs(60);

fn start(toml: &str) -> TestServer {
    TestServer::start_with(Options {
        toml: toml.to_string(),
        ..Options::default()
    })
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Reads until the server closes; returns what it sent. Panics if the server kept the
/// connection open for the whole `PATIENCE`.
fn read_until_closed(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server kept the connection open for {PATIENCE:?}")
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn slow_silent_and_idle_clients_are_cut_off() {
    let server = start("[http]\nheader_timeout_secs = 1\nbody_timeout_secs = 2\n");

    // Connects and says nothing.
    let mut silent = connect(server.http);
    assert_eq!(read_until_closed(&mut silent), "");

    // Half a request head, then nothing.
    let mut half = connect(server.http);
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow:")
        .unwrap();
    let answer = read_until_closed(&mut half);
    assert!(!answer.contains("200 OK"), "{answer}");

    // A whole head announcing a body that never comes: 408 from the body reader.
    let mut no_body = connect(server.http);
    no_body
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\nname=a",
        )
        .unwrap();
    let answer = read_until_closed(&mut no_body);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A keep-alive connection: a request is answered, then the idle connection is closed.
    let mut idle = connect(server.http);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The server is still there for well-behaved clients.
    assert_eq!(server.http_get("/healthz").map(|r| r.0), Some(200));
}

#[test]
fn one_source_cannot_hold_every_connection() {
    let server = start("[http]\nmax_connections_per_source = 4\n");
    let held: Vec<TcpStream> = (0..4).map(|_| connect(server.http)).collect();
    // The fifth from the same address is closed at once, unanswered.
    let mut fifth = connect(server.http);
    let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(read_until_closed(&mut fifth), "");
    // Those it holds are served.
    let mut first = held.into_iter().collect::<Vec<_>>();
    first[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(read_until_closed(&mut first[0]).starts_with("HTTP/1.1 200"));
    // Once it lets go, new connections are served again.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.http_get("/healthz").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "connections were not released");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.metric("careline_http_connections_refused_total") >= 1.0);
}
