//! The UDP socket rsipstack reads from, with the [`Guard`](super::guard::Guard) in front:
//! rsipstack takes any `platform::net::UdpSocket`, so malformed datagrams are answered
//! (400/501/513) or dropped here and the stack only ever receives what passed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::guard::{Guard, Verdict};
use crate::metrics::Metrics;

pub(crate) struct GuardedUdpSocket {
    socket: tokio::net::UdpSocket,
    guard: Mutex<Guard>,
    /// Mints the challenges the guard answers statelessly.
    gate: Arc<super::access::Gate>,
    metrics: Arc<Metrics>,
}

impl GuardedUdpSocket {
    pub(crate) fn new(
        socket: tokio::net::UdpSocket,
        guard: Guard,
        gate: Arc<super::access::Gate>,
        metrics: Arc<Metrics>,
    ) -> Self {
        GuardedUdpSocket {
            socket,
            guard: Mutex::new(guard),
            gate,
            metrics,
        }
    }
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for GuardedUdpSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (len, source) = self.socket.recv_from(buf).await?;
            let verdict = match self.guard.lock() {
                Ok(mut guard) => guard.inspect(&buf[..len], source.ip(), Instant::now()),
                Err(poisoned) => {
                    poisoned
                        .into_inner()
                        .inspect(&buf[..len], source.ip(), Instant::now())
                }
            };
            match verdict {
                Verdict::Pass => return Ok((len, source)),
                Verdict::PassAs(plain) => {
                    if let Some(room) = buf.get_mut(..plain.len()) {
                        room.copy_from_slice(&plain);
                        return Ok((plain.len(), source));
                    }
                    // No room for the plain form (a header per line grew by a byte): the
                    // stack gets the message as it came.
                    return Ok((len, source));
                }
                Verdict::Reply(response, why) => {
                    self.metrics.sip_rejected(why.as_str());
                    tracing::debug!(%source, reason = why.as_str(), "answered a bad SIP datagram");
                    // Best effort: a peer that cannot receive its 400 loses nothing else.
                    let _ = self.socket.send_to(&response, source).await;
                }
                Verdict::Challenge(challenge) => {
                    self.metrics.sip_auth("challenged");
                    let headers =
                        self.gate
                            .challenge_headers(super::unix_secs(), source.ip(), false);
                    let _ = self
                        .socket
                        .send_to(&challenge.response(&headers), source)
                        .await;
                }
                Verdict::Drop(why) => {
                    use super::guard::Rejection;
                    match why {
                        Rejection::Keepalive => {}
                        // A flood's datagrams are counted, not logged one by one (a flood at
                        // line rate would write gigabytes of log lines).
                        Rejection::RateLimited | Rejection::UntrustedLimit => {
                            self.metrics.sip_rejected(why.as_str());
                            tracing::trace!(%source, reason = why.as_str(), "dropped a SIP datagram");
                        }
                        _ => {
                            self.metrics.sip_rejected(why.as_str());
                            tracing::debug!(%source, reason = why.as_str(), "dropped a SIP datagram");
                        }
                    }
                }
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}
