//! The HTTP(S) listener: accepts connections, caps them per source address, completes TLS
//! handshakes off the accept path, and serves HTTP/1.1 with hyper under time limits, so a
//! client that connects and says nothing, sends half a request, or leaves a keep-alive
//! connection idle is cut off, and one address cannot hold every connection.
//!
//! `axum::serve` sets no timer on hyper, so none of hyper's timeouts apply there; this loop
//! sets one: the request head (and an idle keep-alive connection waiting for the next head)
//! gets `header_timeout`, the TLS handshake the same, and the body `body_timeout` (checked
//! where bodies are read, [`super::extract::body_bytes`], through [`BodyTimeout`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::access::ClientAddr;

/// Limits on connections and the time a client has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Open connections per source IP; 0: no limit.
    pub per_source: u32,
}

impl Limits {
    pub(crate) fn from_config(c: &crate::config::HttpConfig) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(c.header_timeout_secs.max(1)),
            body_timeout: Duration::from_secs(c.body_timeout_secs.max(1)),
            per_source: c.max_connections_per_source,
        }
    }
}

/// How long a request's body may take to arrive (a request extension set per connection).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimeout(pub Duration);

/// Open connections by source address.
#[derive(Debug, Default)]
struct PerSource {
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One open connection, counted until dropped.
struct Slot {
    table: Arc<PerSource>,
    ip: IpAddr,
}

impl PerSource {
    fn take(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<Slot> {
        let mut open = self.open.lock().ok()?;
        let n = open.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.table.open.lock()
            && let Some(n) = open.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until the process ends; with `tls`, every connection is a TLS
/// connection.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) {
    let table = Arc::new(PerSource::default());
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, mostly: wait a little rather than spin.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = table.take(peer.ip(), limits.per_source) else {
            if let Some(m) = &metrics {
                m.http_connections_refused.inc();
            }
            tracing::debug!(source = %peer.ip(), "too many HTTP connections from one source");
            drop(tcp);
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => connection(tcp, peer, app, limits).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection(stream, peer, app, limits).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn connection<IO>(io: IO, peer: SocketAddr, app: Router, limits: Limits)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(ClientAddr(peer)));
            req.extensions_mut()
                .insert(BodyTimeout(limits.body_timeout));
            let mut app = app.clone();
            async move { tower_service::Service::call(&mut app, req.map(axum::body::Body::new)).await }
        },
    );
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    // Upgrades: the console's WebSocket (`api::signaling`) takes the connection over.
    let served = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = served.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_source_and_freed_on_drop() {
        let table = Arc::new(PerSource::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = table.take(a, 2).unwrap();
        let second = table.take(a, 2).unwrap();
        assert!(table.take(a, 2).is_none(), "a third from the same source");
        assert!(table.take(b, 2).is_some(), "another source is not affected");
        drop(first);
        let third = table.take(a, 2);
        assert!(third.is_some(), "a closed connection frees its place");
        drop((second, third));
        assert!(
            table.open.lock().unwrap().is_empty(),
            "no entry left behind"
        );
        // 0: no limit.
        let many: Vec<_> = (0..100).map(|_| table.take(a, 0).unwrap()).collect();
        assert_eq!(many.len(), 100);
    }
}
