//! An agent's console channel (`GET /api/v1/ws`) as a scripted client over a real WebSocket:
//! it sends console messages and waits for the ones it expects.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

pub struct Console {
    ws: WebSocket<TcpStream>,
    /// Every message received, in order.
    pub seen: Vec<Value>,
}

impl Console {
    /// Opens the channel with a bearer token and reads the server's hello.
    pub fn open(http: SocketAddr, token: &str) -> Console {
        let stream = TcpStream::connect(http).expect("connect");
        let mut req = format!("ws://{http}/api/v1/ws")
            .into_client_request()
            .expect("request");
        let auth = format!("Bearer {token}").parse().expect("header");
        req.headers_mut().insert("Authorization", auth);
        let (ws, resp) = tungstenite::client::client(req, stream).expect("WebSocket upgrade");
        assert_eq!(resp.status(), 101);
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut c = Console {
            ws,
            seen: Vec::new(),
        };
        c.expect(Duration::from_secs(10), "hello", |m| m["type"] == "hello");
        c
    }

    /// Opens the channel as [`Console::open`] and makes the agent available.
    pub fn open_available(http: SocketAddr, token: &str) -> Console {
        let mut c = Console::open(http, token);
        c.send(serde_json::json!({"type": "state", "state": "available"}));
        c.expect_state("available");
        c
    }

    pub fn send(&mut self, msg: Value) {
        self.send_text(&msg.to_string());
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }

    /// Sends without insisting: `false` once the server has closed the channel (as it may in
    /// the middle of a flood).
    pub fn try_send(&mut self, msg: Value) -> bool {
        self.ws.send(Message::text(msg.to_string())).is_ok()
    }

    /// Reads whatever arrives for `span` into `seen` (to check what did not arrive).
    #[allow(dead_code)]
    pub fn listen(&mut self, span: Duration) {
        let until = Instant::now() + span;
        while Instant::now() < until {
            self.read_one("listening");
        }
    }

    /// One JSON message if one came within the read timeout (kept in `seen`).
    fn read_one(&mut self, what: &str) -> Option<Value> {
        match self.ws.read() {
            Ok(Message::Text(text)) => {
                let v: Value = serde_json::from_str(&text).expect("JSON from the server");
                self.seen.push(v.clone());
                Some(v)
            }
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("{what}: the channel failed ({e}); received {:?}", self.seen),
        }
    }

    /// Waits up to `timeout` for a message `pred` accepts (earlier ones are kept in `seen`).
    pub fn expect(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            assert!(
                Instant::now() < deadline,
                "{what}: not received in {timeout:?}; received {:?}",
                self.seen
            );
            if let Some(v) = self.read_one(what)
                && pred(&v)
            {
                return v;
            }
        }
    }

    /// Waits for the agent's state to become `state` (`available`, `offered`, ...).
    pub fn expect_state(&mut self, state: &str) -> Value {
        self.expect(Duration::from_secs(30), &format!("state {state}"), |m| {
            m["type"] == "state" && m["state"] == state
        })
    }

    /// Waits for an offer of a call, and returns its id.
    pub fn expect_offer(&mut self) -> String {
        let offer = self.expect(Duration::from_secs(30), "an offer", |m| {
            m["type"] == "offer"
        });
        offer["call_id"].as_str().expect("call_id").to_string()
    }

    /// Waits for the server to close the channel; its close code.
    pub fn expect_closed(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Close(frame)) => {
                    return frame.map(|f: CloseFrame| u16::from(f.code));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
        panic!("the channel stayed open");
    }
}
