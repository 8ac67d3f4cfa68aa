//! A small HTTP/1.1 client for API tests (one request per connection, plain or TLS).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request; `headers` are extra lines like `("Authorization", "Bearer x")`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Response {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    exchange(s, method, path, headers, body)
}

/// POSTs a browser's SDP offer (WHIP, RFC 9725) to `path`, with a bearer `token` if given.
pub fn post_sdp(addr: SocketAddr, path: &str, offer: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    request(
        addr,
        "POST",
        path,
        &headers,
        Some(("application/sdp", offer.as_bytes())),
    )
}

/// Sends one request on `s` and reads the whole response.
fn exchange(
    mut s: TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Response {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(&build(method, path, headers, body)).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    parse(&buf)
}

/// [`request`] from another loopback address (`127.0.0.2`): a client elsewhere.
#[allow(dead_code)]
pub fn request_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Response {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("a TCP socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind the source address (loopback)");
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("connect");
    exchange(socket.into(), method, path, headers, body)
}

fn build(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut raw = Vec::new();
    match body {
        Some((ctype, b)) => {
            head.push_str(&format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                b.len()
            ));
            raw.extend(head.as_bytes());
            raw.extend(b);
        }
        None => {
            head.push_str("Content-Length: 0\r\n\r\n");
            raw.extend(head.as_bytes());
        }
    }
    raw
}

pub fn parse(buf: &[u8]) -> Response {
    let text = String::from_utf8_lossy(buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}
