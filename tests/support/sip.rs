//! A small SIP user agent for tests: raw messages over real UDP or TCP sockets, so a test
//! can send exactly what a phone (or a broken phone) sends and read every response.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// A parsed SIP message (lenient; enough for assertions).
#[derive(Debug, Clone)]
pub struct Msg {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

const COMPACT: [(&str, &str); 8] = [
    ("v", "via"),
    ("f", "from"),
    ("t", "to"),
    ("i", "call-id"),
    ("m", "contact"),
    ("l", "content-length"),
    ("c", "content-type"),
    ("k", "supported"),
];

fn canonical(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    COMPACT
        .iter()
        .find(|(c, _)| *c == lower)
        .map(|(_, full)| full.to_string())
        .unwrap_or(lower)
}

impl Msg {
    pub fn parse(bytes: &[u8]) -> Option<Msg> {
        let split = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&bytes[..split]).ok()?;
        let mut lines = head.split("\r\n");
        let start = lines.next()?.to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (canonical(n), v.trim().to_string()))
            .collect();
        Some(Msg {
            start,
            headers,
            body: bytes[split + 4..].to_vec(),
        })
    }

    pub fn status(&self) -> Option<u16> {
        self.start
            .strip_prefix("SIP/2.0 ")?
            .split(' ')
            .next()?
            .parse()
            .ok()
    }

    pub fn method(&self) -> Option<&str> {
        if self.start.starts_with("SIP/") {
            None
        } else {
            self.start.split(' ').next()
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = canonical(name);
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        let name = canonical(name);
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `tag=` parameter of the To header.
    pub fn to_tag(&self) -> Option<String> {
        tag_of(self.header("to")?)
    }

    pub fn cseq_method(&self) -> Option<&str> {
        self.header("cseq")?.split_whitespace().nth(1)
    }
}

fn tag_of(header: &str) -> Option<String> {
    header
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .map(|t| t.to_string())
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream, Vec<u8>),
}

/// One SIP endpoint (a "phone") talking to one server.
pub struct Ua {
    conn: Conn,
    pub server: SocketAddr,
    pub local: SocketAddr,
}

impl Ua {
    pub fn udp(server: SocketAddr) -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = sock.local_addr().unwrap();
        Ua {
            conn: Conn::Udp(sock),
            server,
            local,
        }
    }

    pub fn tcp(server: SocketAddr) -> Ua {
        let s = TcpStream::connect(server).expect("connect tcp");
        let local = s.local_addr().unwrap();
        Ua {
            conn: Conn::Tcp(s, Vec::new()),
            server,
            local,
        }
    }

    /// The far end of a TCP connection the server opened to a listener of the test's (a
    /// trunk, a phone): what the test sends goes back on it.
    #[allow(dead_code)]
    pub fn tcp_accepted(s: TcpStream) -> Ua {
        let local = s.local_addr().unwrap();
        let server = s.peer_addr().unwrap();
        Ua {
            conn: Conn::Tcp(s, Vec::new()),
            server,
            local,
        }
    }

    pub fn transport(&self) -> &'static str {
        match self.conn {
            Conn::Udp(_) => "UDP",
            Conn::Tcp(..) => "TCP",
        }
    }

    pub fn send(&mut self, msg: &str) {
        self.send_bytes(msg.as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        match &mut self.conn {
            Conn::Udp(s) => {
                s.send_to(bytes, self.server).unwrap();
            }
            Conn::Tcp(s, _) => s.write_all(bytes).unwrap(),
        }
    }

    /// The next message within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        match &mut self.conn {
            Conn::Udp(s) => {
                let mut buf = vec![0u8; 65536];
                loop {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                        .unwrap();
                    match s.recv_from(&mut buf) {
                        Ok((n, _)) => {
                            if let Some(m) = Msg::parse(&buf[..n]) {
                                return Some(m);
                            }
                        }
                        Err(_) => return None,
                    }
                }
            }
            Conn::Tcp(s, pending) => loop {
                if let Some(m) = take_stream_message(pending) {
                    return Some(m);
                }
                let left = deadline.checked_duration_since(Instant::now())?;
                s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                    .unwrap();
                let mut buf = [0u8; 8192];
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            },
        }
    }

    /// Waits for a message matching `pred`, answering any request from the server on the way
    /// (200 to BYE/INFO/OPTIONS) so the dialog stays healthy. Returns the match.
    pub fn expect(&mut self, timeout: Duration, mut pred: impl FnMut(&Msg) -> bool) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let m = self.recv(left)?;
            if pred(&m) {
                return Some(m);
            }
        }
    }

    /// Answers a request the server sent (e.g. its BYE) with `code`.
    pub fn respond(&mut self, req: &Msg, code: u16, reason: &str) {
        let mut out = format!("SIP/2.0 {code} {reason}\r\n");
        for v in req.headers_all("via") {
            out.push_str(&format!("Via: {v}\r\n"));
        }
        for h in ["from", "to", "call-id", "cseq"] {
            if let Some(v) = req.header(h) {
                out.push_str(&format!("{}: {v}\r\n", header_name(h)));
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        self.send(&out);
    }
}

/// The phone's side of a call Careline placed: the test is the UAS (RFC 3261 §13.3).
#[allow(dead_code)] // each test binary uses its own part
pub struct Callee {
    pub invite: Msg,
    pub to_tag: String,
    cseq: u32,
}

#[allow(dead_code)]
impl Callee {
    /// Waits for Careline's INVITE (answering anything else it sends on the way).
    pub fn ring(ua: &mut Ua, timeout: Duration) -> Option<Callee> {
        let invite = ua.expect(timeout, |m| m.method() == Some("INVITE"))?;
        Some(Callee {
            invite,
            to_tag: format!("callee{:08x}", rand::random::<u32>()),
            cseq: 1,
        })
    }

    /// A response to the INVITE with this dialog's To tag, a Contact and, given one, an SDP
    /// body.
    pub fn respond(&self, ua: &mut Ua, code: u16, reason: &str, sdp: Option<&str>) {
        let req = &self.invite;
        let mut out = format!("SIP/2.0 {code} {reason}\r\n");
        for v in req.headers_all("via") {
            out.push_str(&format!("Via: {v}\r\n"));
        }
        if let Some(v) = req.header("from") {
            out.push_str(&format!("From: {v}\r\n"));
        }
        if let Some(v) = req.header("to") {
            out.push_str(&format!("To: {v};tag={}\r\n", self.to_tag));
        }
        for h in ["call-id", "cseq"] {
            if let Some(v) = req.header(h) {
                out.push_str(&format!("{}: {v}\r\n", header_name(h)));
            }
        }
        out.push_str(&format!("Contact: <sip:phone@{}>\r\n", ua.local));
        match sdp {
            Some(body) => out.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        ua.send(&out);
    }

    /// The phone hangs up: a BYE to Careline's Contact.
    pub fn bye(&mut self, ua: &mut Ua) {
        self.cseq += 1;
        let req = &self.invite;
        let contact = req
            .header("contact")
            .map(|c| {
                c.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or(c)
                    .to_string()
            })
            .unwrap_or_else(|| format!("sip:careline@{}", ua.server));
        let out = format!(
            "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bKbye{n:08x}\r\n\
             Max-Forwards: 70\r\nFrom: {to};tag={tag}\r\nTo: {from}\r\nCall-ID: {id}\r\n\
             CSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n",
            transport = ua.transport(),
            local = ua.local,
            n = rand::random::<u32>(),
            to = req.header("to").unwrap_or_default(),
            tag = self.to_tag,
            from = req.header("from").unwrap_or_default(),
            id = req.header("call-id").unwrap_or_default(),
            cseq = self.cseq,
        );
        ua.send(&out);
    }
}

fn header_name(h: &str) -> &'static str {
    match h {
        "from" => "From",
        "to" => "To",
        "call-id" => "Call-ID",
        _ => "CSeq",
    }
}

fn take_stream_message(pending: &mut Vec<u8>) -> Option<Msg> {
    // Skip keep-alive CRLFs between messages.
    while pending.starts_with(b"\r\n") {
        pending.drain(..2);
    }
    let split = pending.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&pending[..split]).to_string();
    let len: usize = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| canonical(n) == "content-length")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let total = split + 4 + len;
    if pending.len() < total {
        return None;
    }
    let bytes: Vec<u8> = pending.drain(..total).collect();
    Msg::parse(&bytes)
}

/// The caller side of one call: the state needed to write its requests.
pub struct Call {
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub dialed: String,
    pub cseq: u32,
    pub invite_branch: String,
    /// Where in-dialog requests go (the 200's Contact), as a URI.
    pub remote_target: Option<String>,
    last_invite_cseq: u32,
}

fn rand_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Call {
    pub fn new(dialed: &str) -> Call {
        Call {
            call_id: format!("{}@test", rand_token()),
            from_tag: rand_token(),
            to_tag: None,
            dialed: dialed.to_string(),
            cseq: 0,
            invite_branch: String::new(),
            remote_target: None,
            last_invite_cseq: 0,
        }
    }

    fn via(ua: &Ua, branch: &str) -> String {
        format!(
            "Via: SIP/2.0/{} {};branch=z9hG4bK{branch};rport",
            ua.transport(),
            ua.local
        )
    }

    fn from(&self, ua: &Ua) -> String {
        format!(
            "From: \"Test Caller\" <sip:15551230000@{}>;tag={}",
            ua.local.ip(),
            self.from_tag
        )
    }

    fn to(&self, ua: &Ua) -> String {
        match &self.to_tag {
            Some(t) => format!("To: <sip:{}@{}>;tag={t}", self.dialed, ua.server),
            None => format!("To: <sip:{}@{}>", self.dialed, ua.server),
        }
    }

    fn request_uri(&self, ua: &Ua) -> String {
        let transport = if ua.transport() == "TCP" {
            ";transport=tcp"
        } else {
            ""
        };
        self.remote_target
            .clone()
            .unwrap_or_else(|| format!("sip:{}@{}{transport}", self.dialed, ua.server))
    }

    fn request(
        &mut self,
        ua: &Ua,
        method: &str,
        branch: &str,
        cseq: u32,
        extra: &str,
        body: Option<(&str, &str)>,
    ) -> String {
        let uri = if method == "INVITE" && self.to_tag.is_none()
            || method == "CANCEL"
            || (method == "ACK" && self.to_tag.is_none())
        {
            let transport = if ua.transport() == "TCP" {
                ";transport=tcp"
            } else {
                ""
            };
            format!("sip:{}@{}{transport}", self.dialed, ua.server)
        } else {
            self.request_uri(ua)
        };
        let mut m = format!(
            "{method} {uri} SIP/2.0\r\n{}\r\n{}\r\n{}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n\
             Contact: <sip:15551230000@{}{}>\r\nUser-Agent: careline-tests\r\n{extra}",
            Self::via(ua, branch),
            self.from(ua),
            self.to(ua),
            self.call_id,
            ua.local,
            if ua.transport() == "TCP" {
                ";transport=tcp"
            } else {
                ""
            },
        );
        match body {
            Some((ct, b)) => m.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => m.push_str("Content-Length: 0\r\n\r\n"),
        }
        m
    }

    pub fn invite(&mut self, ua: &Ua, sdp: &str) -> String {
        self.cseq += 1;
        self.last_invite_cseq = self.cseq;
        self.invite_branch = rand_token();
        let branch = self.invite_branch.clone();
        self.request(
            ua,
            "INVITE",
            &branch,
            self.cseq,
            "",
            Some(("application/sdp", sdp)),
        )
    }

    /// Records the dialog state a 2xx (or 1xx with tag) establishes.
    pub fn on_response(&mut self, resp: &Msg) {
        if self.to_tag.is_none() {
            self.to_tag = resp.to_tag();
        }
        if resp.status().is_some_and(|s| (200..300).contains(&s))
            && let Some(c) = resp.header("contact")
        {
            let uri = c.trim().trim_start_matches('<');
            let uri = uri.split('>').next().unwrap_or(uri);
            self.remote_target = Some(uri.to_string());
        }
    }

    /// ACK for the final response of the last INVITE (2xx: new transaction; else same branch).
    pub fn ack(&mut self, ua: &Ua, final_status: u16) -> String {
        let branch = if (200..300).contains(&final_status) {
            rand_token()
        } else {
            self.invite_branch.clone()
        };
        let cseq = self.last_invite_cseq;
        self.request(ua, "ACK", &branch, cseq, "", None)
    }

    pub fn cancel(&mut self, ua: &Ua) -> String {
        let branch = self.invite_branch.clone();
        let cseq = self.last_invite_cseq;
        let saved = self.to_tag.take();
        let m = self.request(ua, "CANCEL", &branch, cseq, "", None);
        self.to_tag = saved;
        m
    }

    pub fn bye(&mut self, ua: &Ua) -> String {
        self.cseq += 1;
        let cseq = self.cseq;
        self.request(ua, "BYE", &rand_token(), cseq, "", None)
    }

    pub fn reinvite(&mut self, ua: &Ua, sdp: &str) -> String {
        self.cseq += 1;
        self.last_invite_cseq = self.cseq;
        self.invite_branch = rand_token();
        let branch = self.invite_branch.clone();
        let cseq = self.cseq;
        self.request(
            ua,
            "INVITE",
            &branch,
            cseq,
            "",
            Some(("application/sdp", sdp)),
        )
    }

    pub fn info(&mut self, ua: &Ua, content_type: &str, body: &str) -> String {
        self.cseq += 1;
        let cseq = self.cseq;
        self.request(
            ua,
            "INFO",
            &rand_token(),
            cseq,
            "",
            Some((content_type, body)),
        )
    }
}

/// Sends an INVITE and collects responses until a final one. Returns (final, provisional codes).
/// Over UDP the INVITE is sent again until something answers, as a phone does (RFC 3261
/// §17.1.1.2, Timer A: 500 ms, doubling): a datagram can be lost, on a loaded machine too (a
/// flood filling the server's socket).
pub fn invite(ua: &mut Ua, call: &mut Call, sdp: &str) -> (Msg, Vec<u16>) {
    let m = call.invite(ua, sdp);
    ua.send(&m);
    let is_response = |m: &Msg| m.status().is_some() && m.cseq_method() == Some("INVITE");
    let mut provisional = Vec::new();
    let mut first = None;
    if ua.transport() == "UDP" {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut interval = Duration::from_millis(500);
        while first.is_none() && Instant::now() < deadline {
            first = ua.expect(interval, is_response);
            if first.is_none() {
                ua.send(&m);
                interval = (interval * 2).min(Duration::from_secs(4));
            }
        }
    }
    loop {
        let resp = match first.take() {
            Some(r) => r,
            None => ua
                .expect(Duration::from_secs(15), is_response)
                .expect("a response to INVITE"),
        };
        call.on_response(&resp);
        let code = resp.status().unwrap_or(0);
        if code < 200 {
            provisional.push(code);
            continue;
        }
        return (resp, provisional);
    }
}

/// Dials `dialed` from `ua` with `peer`'s PCMU + telephone-event offer, requires the answer,
/// ACKs it and points `peer` at the server's media address.
pub fn dial_answered(ua: &mut Ua, dialed: &str, peer: &super::rtp::RtpPeer) -> Call {
    let mut call = Call::new(dialed);
    let ok = answered_call(ua, &mut call, &sdp_offer(peer.port, "0 101", &PCMU_TE));
    peer.set_remote(sdp_media_addr(&ok.body_str()).expect("media address in the answer"));
    call
}

/// Places a call that must be answered: INVITE, 200, ACK. Returns the 200.
pub fn answered_call(ua: &mut Ua, call: &mut Call, sdp: &str) -> Msg {
    let (resp, _) = invite(ua, call, sdp);
    assert_eq!(resp.status(), Some(200), "call not answered: {resp:?}");
    let ack = call.ack(ua, 200);
    ua.send(&ack);
    resp
}

/// The RTP address in an SDP body (`c=` and the first `m=audio` port).
pub fn sdp_media_addr(sdp: &str) -> Option<SocketAddr> {
    let ip = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
        .trim();
    let port = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split(' ')
        .next()?;
    format!("{ip}:{port}").parse().ok()
}

/// An SDP offer from `127.0.0.1:port` with the given `m=` formats and attribute lines.
/// The attributes of the usual offer: PCMU with telephone-event 101 (`sdp_offer(port, "0 101", &PCMU_TE)`).
pub const PCMU_TE: [&str; 3] = [
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
];

pub fn sdp_offer(port: u16, formats: &str, attributes: &[&str]) -> String {
    let mut s = format!(
        "v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n"
    );
    for a in attributes {
        s.push_str(a);
        s.push_str("\r\n");
    }
    s
}

/// The phone behind a trunk rings with Careline's INVITE (within `timeout`) and answers it
/// with a PCMU + telephone-event peer, which it returns with the call once ACKed.
pub fn pick_up(phone: &mut Ua, timeout: Duration) -> (Callee, super::rtp::RtpPeer) {
    let callee = Callee::ring(phone, timeout).expect("Careline's INVITE reaches the phone");
    let peer = super::rtp::RtpPeer::new(careline::media::codec::Codec::Pcmu, 0, Some(101));
    peer.set_remote(sdp_media_addr(&callee.invite.body_str()).expect("media address"));
    callee.respond(
        phone,
        200,
        "OK",
        Some(&sdp_offer(peer.port, "0 101", &PCMU_TE)),
    );
    phone
        .expect(timeout, |m| m.method() == Some("ACK"))
        .expect("the answer is acknowledged");
    (callee, peer)
}
