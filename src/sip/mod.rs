//! Careline's SIP facade over rsipstack: transports, the request dispatcher, and the two
//! objects the call layer sees, [`IncomingCall`] (an INVITE not yet answered) and
//! [`ServerCall`] (an established server dialog). Nothing above this module names an
//! rsipstack type, so the stack can be swapped.

pub mod access;
pub(crate) mod body;
pub mod digest;
pub(crate) mod guard;
pub(crate) mod info;
pub(crate) mod lexical;
pub mod outbound;
pub mod registrar;
pub mod sdp;
pub(crate) mod strict;
pub(crate) mod tls;
pub(crate) mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tracing::Instrument as _;

use rsipstack::EndpointBuilder;
use rsipstack::dialog::DialogId;
use rsipstack::dialog::dialog::{
    DialogState, DialogStateReceiver, TerminatedReason, TransactionHandle,
};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::Transaction;
use rsipstack::transaction::endpoint::Endpoint;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{TcpListenerConnection, TransportLayer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Methods Careline handles, for `Allow` (RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REGISTER";
/// Bodies Careline reads, for `Accept` (RFC 3261 §20.1).
pub const ACCEPT: &str =
    "application/sdp, multipart/mixed, application/dtmf-relay, application/dtmf";
const USER_AGENT: &str = concat!("careline/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot listen on {transport} {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The stack's own error, as text: rsipstack types stay behind this facade.
    #[error("SIP stack: {0}")]
    Stack(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

impl From<rsipstack::Error> for SipError {
    fn from(e: rsipstack::Error) -> SipError {
        SipError::Stack(e.to_string())
    }
}

pub struct SipOptions {
    pub listen: SocketAddr,
    pub tls_listen: Option<SocketAddr>,
    pub tls: Option<tls::CertPair>,
    pub public_address: Option<IpAddr>,
    pub max_message_bytes: usize,
    pub rate_limit_per_source: u32,
    /// Sources whose INVITEs need no password.
    pub trusted: access::Trusted,
    /// INVITEs and REGISTERs per second from all untrusted sources together (0: no limit).
    pub untrusted_rate_limit: u32,
    pub digest: access::DigestSettings,
    /// The users phones authenticate as.
    pub users: Arc<dyn access::SipUsers>,
    /// Registration bounds (seconds).
    pub min_expires: u32,
    pub max_expires: u32,
}

/// The running SIP side: listeners, transaction layer and the dispatcher task.
pub struct SipServer {
    _endpoint: Arc<Endpoint>,
    /// Careline's own calls are made through it (`outbound`).
    dialog_layer: Arc<DialogLayer>,
    cancel: CancellationToken,
    pub udp_addr: SocketAddr,
    pub tcp_addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    public_address: Option<IpAddr>,
    /// Users' phone bindings, shared with the dispatcher that answers REGISTER.
    registrar: Arc<std::sync::Mutex<registrar::Registrar>>,
    registrations: tokio::sync::broadcast::Sender<Registration>,
}

impl SipServer {
    /// Binds every listener (failing fast, naming the address) and starts serving. New
    /// calls arrive on the returned channel.
    pub async fn start(
        opts: SipOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(SipServer, mpsc::Receiver<IncomingCall>), SipError> {
        let cancel = CancellationToken::new();
        let transport_layer = TransportLayer::new(cancel.clone());

        let std_udp = std::net::UdpSocket::bind(opts.listen).map_err(|source| SipError::Bind {
            transport: "udp",
            addr: opts.listen,
            source,
        })?;
        let udp_addr = std_udp.local_addr().map_err(|source| SipError::Bind {
            transport: "udp",
            addr: opts.listen,
            source,
        })?;
        std_udp
            .set_nonblocking(true)
            .map_err(|source| SipError::Bind {
                transport: "udp",
                addr: udp_addr,
                source,
            })?;
        let socket = tokio::net::UdpSocket::from_std(std_udp).map_err(|source| SipError::Bind {
            transport: "udp",
            addr: udp_addr,
            source,
        })?;
        let gate = Arc::new(access::Gate::new(opts.digest, rand::random()));
        let guarded = udp::GuardedUdpSocket::new(
            socket,
            guard::Guard::new(opts.max_message_bytes, opts.rate_limit_per_source)
                .with_trust(opts.trusted.clone(), opts.untrusted_rate_limit),
            gate.clone(),
            metrics.clone(),
        );
        let external = opts
            .public_address
            .map(|ip| SocketAddr::new(ip, udp_addr.port()));
        let udp =
            UdpConnection::from_socket(Arc::new(guarded), external, Some(cancel.child_token()))
                .await?;
        transport_layer.add_transport(udp.into());

        // rsipstack binds stream listeners inside its serve loop and only logs a failure;
        // probe the ports first so a busy port stops the start with a clear error.
        let tcp_addr = SocketAddr::new(opts.listen.ip(), udp_addr.port());
        probe_tcp(tcp_addr, "tcp")?;
        let tcp = TcpListenerConnection::new(
            tcp_addr,
            opts.public_address
                .map(|ip| SocketAddr::new(ip, tcp_addr.port())),
        )
        .await?;
        transport_layer.add_transport(tcp.into());

        let mut tls_addr = None;
        if let (Some(addr), Some(pair)) = (opts.tls_listen, &opts.tls) {
            probe_tcp(addr, "tls")?;
            let config = rsipstack::transport::tls::TlsConfig {
                cert: Some(pair.cert_pem.clone()),
                key: Some(pair.key_pem.clone()),
                ..Default::default()
            };
            let listener = rsipstack::transport::tls::TlsListenerConnection::new(
                addr,
                opts.public_address
                    .map(|ip| SocketAddr::new(ip, addr.port())),
                config,
            )
            .await?;
            transport_layer.add_transport(listener.into());
            tls_addr = Some(addr);
        }

        let endpoint = Arc::new(
            EndpointBuilder::new()
                .with_cancel_token(cancel.clone())
                .with_transport_layer(transport_layer)
                .with_user_agent(USER_AGENT)
                .build(),
        );
        let incoming = endpoint.incoming_transactions()?;
        let dialog_layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let (calls_tx, calls_rx) = mpsc::channel(1024);

        let serving = endpoint.clone();
        tokio::spawn(async move { serving.serve().await });
        let registrar = Arc::new(std::sync::Mutex::new(registrar::Registrar::new(
            opts.min_expires,
            opts.max_expires,
        )));
        let (registrations, _) = tokio::sync::broadcast::channel(256);
        let ctx = Arc::new(Dispatcher {
            dialog_layer: dialog_layer.clone(),
            calls: calls_tx,
            metrics,
            public_address: opts.public_address,
            trusted: opts.trusted,
            gate,
            users: opts.users,
            registrar: registrar.clone(),
            registrations: registrations.clone(),
        });
        tokio::spawn(ctx.run(incoming, cancel.clone()));

        let server = SipServer {
            _endpoint: endpoint,
            dialog_layer,
            cancel,
            udp_addr,
            tcp_addr,
            tls_addr,
            public_address: opts.public_address,
            registrar,
            registrations,
        };
        Ok((server, calls_rx))
    }

    /// The address to put in SDP for a peer at `remote`: the configured public address, the
    /// listen address, or (listening on 0.0.0.0) the local address the kernel would route
    /// from.
    pub fn media_address_for(&self, remote: IpAddr) -> IpAddr {
        if let Some(ip) = self.public_address {
            return ip;
        }
        if !self.udp_addr.ip().is_unspecified() {
            return self.udp_addr.ip();
        }
        std::net::UdpSocket::bind(SocketAddr::new(self.udp_addr.ip(), 0))
            .and_then(|s| {
                s.connect(SocketAddr::new(remote, 9))?;
                s.local_addr()
            })
            .map(|a| a.ip())
            .unwrap_or(self.udp_addr.ip())
    }

    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Phones registering and unregistering, as they happen (a binding that expires without
    /// an un-REGISTER is not told: see [`SipServer::contacts_of`]).
    pub fn registrations(&self) -> tokio::sync::broadcast::Receiver<Registration> {
        self.registrations.subscribe()
    }

    /// The contact URIs `user`'s phones are registered at now, the newest first.
    pub fn contacts_of(&self, user: &str) -> Vec<String> {
        let Ok(registrar) = self.registrar.lock() else {
            return Vec::new();
        };
        let mut out: Vec<String> = registrar
            .contacts(user, unix_secs())
            .into_iter()
            .map(|b| {
                b.contact
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
            .collect();
        out.reverse();
        out
    }
}

/// A user's phone registered (`bound`: it has a contact now) or unregistered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub user: String,
    pub bound: bool,
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn probe_tcp(addr: SocketAddr, transport: &'static str) -> Result<(), SipError> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|source| SipError::Bind {
            transport,
            addr,
            source,
        })
}

/// Routes each new server transaction: new INVITEs to the call layer, in-dialog requests to
/// their dialog, the rest answered here.
struct Dispatcher {
    dialog_layer: Arc<DialogLayer>,
    calls: mpsc::Sender<IncomingCall>,
    metrics: Arc<Metrics>,
    public_address: Option<IpAddr>,
    trusted: access::Trusted,
    gate: Arc<access::Gate>,
    users: Arc<dyn access::SipUsers>,
    /// Users' phone bindings (in memory: phones refresh them).
    registrar: Arc<std::sync::Mutex<registrar::Registrar>>,
    registrations: tokio::sync::broadcast::Sender<Registration>,
}

impl Dispatcher {
    async fn run(
        self: Arc<Self>,
        mut incoming: rsipstack::transaction::TransactionReceiver,
        cancel: CancellationToken,
    ) {
        loop {
            let mut tx = tokio::select! {
                _ = cancel.cancelled() => return,
                tx = incoming.recv() => match tx { Some(tx) => tx, None => return },
            };
            if let Some(refusal) = strict::check(&tx.original) {
                self.metrics.sip_rejected(refusal.kind);
                tracing::debug!(
                    code = refusal.code,
                    reason = refusal.kind,
                    "refused a SIP request"
                );
                let headers = refusal
                    .headers
                    .into_iter()
                    .map(|(name, value)| Header::Other(name.into(), value))
                    .collect();
                // The answer is SIP/2.0 whatever version the request claimed (the stack
                // copies the request's into the response).
                tx.original.version = rsipstack::sip::Version::V2;
                reply(tx, StatusCode::Other(refusal.code, refusal.reason), headers);
                continue;
            }
            let method = tx.original.method;
            let has_to_tag = tx
                .original
                .to_header()
                .ok()
                .and_then(|t| t.tag().ok().flatten())
                .is_some();
            if has_to_tag {
                match self.dialog_layer.match_dialog(&tx) {
                    Some(mut dialog) => {
                        tokio::spawn(async move {
                            if let Err(e) = dialog.handle(&mut tx).await {
                                tracing::debug!(error = %e, "in-dialog request failed");
                            }
                        });
                    }
                    None if method == Method::Ack => {}
                    None => reply(tx, StatusCode::CallTransactionDoesNotExist, vec![]),
                }
                continue;
            }
            match method {
                Method::Invite => {
                    let source = source_ip(&tx);
                    match self.trusted.source(source) {
                        Some(trunk) => self.new_call(tx, trunk.map(str::to_string), None),
                        None => {
                            let this = self.clone();
                            tokio::spawn(async move {
                                if let Some((tx, user)) = this.authenticate(tx, source).await {
                                    this.new_call(tx, None, Some(user));
                                }
                            });
                        }
                    }
                }
                Method::Register => {
                    let source = source_ip(&tx);
                    let this = self.clone();
                    tokio::spawn(async move {
                        if let Some((tx, user)) = this.authenticate(tx, source).await {
                            this.register(tx, &user);
                        }
                    });
                }
                Method::Options => reply(
                    tx,
                    StatusCode::OK,
                    vec![
                        Header::Allow(ALLOW.into()),
                        Header::Accept(ACCEPT.into()),
                        Header::Other("Accept-Language".into(), "en, ja".into()),
                    ],
                ),
                Method::Ack => {}
                Method::Bye | Method::Info | Method::Update | Method::PRack | Method::Cancel => {
                    reply(tx, StatusCode::CallTransactionDoesNotExist, vec![])
                }
                _ => reply(
                    tx,
                    StatusCode::MethodNotAllowed,
                    vec![Header::Allow(ALLOW.into())],
                ),
            }
        }
    }
}

impl Dispatcher {
    /// Hands a new INVITE to the call layer (503 when it cannot take more).
    fn new_call(&self, tx: Transaction, trunk: Option<String>, user: Option<String>) {
        match IncomingCall::new(tx, self.dialog_layer.clone(), self.public_address) {
            Ok(mut call) => {
                call.trunk = trunk;
                call.user = user;
                if let Err(
                    mpsc::error::TrySendError::Full(call) | mpsc::error::TrySendError::Closed(call),
                ) = self.calls.try_send(call)
                {
                    self.metrics.call_rejected("503");
                    tokio::spawn(call.reject(503, Some(5), None));
                }
            }
            Err(tx) => reply(*tx, StatusCode::BadRequest, vec![]),
        }
    }

    /// Digest authentication of a request (RFC 3261 §22.2): the user it authenticated as,
    /// or `None` once it has been answered 401 (a challenge) or 403.
    async fn authenticate(&self, tx: Transaction, source: IpAddr) -> Option<(Transaction, String)> {
        let method = tx.original.method.to_string();
        let given: Vec<String> = tx
            .original
            .headers
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case("Authorization"))
            .map(|h| h.value().to_string())
            .collect();
        let decision = self
            .gate
            .decide(self.users.as_ref(), &method, source, &given, unix_secs())
            .await;
        match decision {
            access::Decision::Accepted { user } => {
                self.metrics.sip_auth("accepted");
                Some((tx, user))
            }
            access::Decision::Challenge { headers, why } => {
                self.metrics.sip_auth("challenged");
                tracing::debug!(%source, why, "SIP request challenged");
                let headers = headers
                    .into_iter()
                    .map(|v| Header::WwwAuthenticate(v.into()))
                    .collect();
                // Not kept to absorb the ACK (it has a To tag and no dialog, so it is
                // dropped), and a retransmitted request is simply challenged again: a flood
                // of challenged requests holds no transaction for 32 s each.
                reply(tx, StatusCode::Unauthorized, headers);
                None
            }
            access::Decision::Forbidden { why } => {
                self.metrics.sip_auth(if why == "throttled" {
                    "throttled"
                } else {
                    "refused"
                });
                tracing::info!(%source, why, "SIP request refused");
                reply(tx, StatusCode::Forbidden, vec![]);
                None
            }
        }
    }

    /// A REGISTER from `user` (authenticated): RFC 3261 §10.3.
    fn register(&self, tx: Transaction, user: &str) {
        let req = &tx.original;
        // Step 5: only the user's own address-of-record.
        let aor = req
            .to_header()
            .ok()
            .and_then(|t| t.uri().ok())
            .and_then(|u| u.auth.map(|a| a.user));
        if aor.as_deref() != Some(user) {
            self.metrics.sip_auth("refused");
            reply(tx, StatusCode::Forbidden, vec![]);
            return;
        }
        let contacts: Vec<String> = req
            .headers
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case("Contact"))
            .map(|h| h.value().to_string())
            .collect();
        let expires = req.header_value("Expires").map(|v| v.trim().parse::<u32>());
        let expires = match expires {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => {
                reply(tx, StatusCode::Other(400, "Bad Expires".into()), vec![]);
                return;
            }
        };
        let call_id = req
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        let cseq = req
            .cseq_header()
            .ok()
            .and_then(|c| c.seq().ok())
            .unwrap_or(0);
        let request = match registrar::Request::parse(&contacts, expires, &call_id, cseq) {
            Ok(r) => r,
            Err(e) => {
                reply(tx, StatusCode::Other(400, e.to_string()), vec![]);
                return;
            }
        };
        let now = unix_secs();
        let (outcome, users) = match self.registrar.lock() {
            Ok(mut r) => {
                let outcome = r.register(user, request, now);
                r.expire(now);
                (outcome, r.registered_users())
            }
            Err(_) => {
                reply(tx, StatusCode::ServerInternalError, vec![]);
                return;
            }
        };
        self.metrics.sip_registered_users.set(users as i64);
        if let registrar::Outcome::Bindings(now) = &outcome {
            // Nobody listening (no agents) is fine.
            let _ = self.registrations.send(Registration {
                user: user.to_string(),
                bound: !now.is_empty(),
            });
        }
        match outcome {
            registrar::Outcome::Bindings(now) | registrar::Outcome::OutOfOrder(now) => {
                let headers = now
                    .into_iter()
                    .map(|b| {
                        Header::Contact(format!("{};expires={}", b.contact, b.expires_in).into())
                    })
                    .collect();
                reply(tx, StatusCode::OK, headers);
            }
            registrar::Outcome::TooBrief { min_expires } => reply(
                tx,
                StatusCode::IntervalTooBrief,
                vec![Header::MinExpires(min_expires.to_string().into())],
            ),
        }
    }
}

/// Where a request came from (unspecified when the transport does not say).
fn source_ip(tx: &Transaction) -> IpAddr {
    tx.connection
        .as_ref()
        .and_then(|c| c.get_remote_addr())
        .and_then(|a| a.get_socketaddr().ok())
        .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

fn reply(mut tx: Transaction, status: StatusCode, headers: Vec<Header>) {
    tokio::spawn(async move {
        if let Err(e) = tx.reply_with(status, headers, None).await {
            tracing::debug!(error = %e, "could not send a SIP response");
        }
    });
}

/// A new INVITE, not yet answered. The call layer decides: [`IncomingCall::reject`] or
/// [`IncomingCall::accept_dialog`].
pub struct IncomingCall {
    tx: Transaction,
    dialog_layer: Arc<DialogLayer>,
    public_address: Option<IpAddr>,
    pub call_id: String,
    /// The number dialed (Request-URI user, else To user), used to pick the flow.
    pub dialed: String,
    /// The caller's address-of-record user part. PHI: never log it in clear.
    pub caller: String,
    pub offer: Vec<u8>,
    pub content_type: Option<String>,
    /// Where the INVITE came from, for SDP address selection.
    pub remote: Option<SocketAddr>,
    pub transport: &'static str,
    /// The trunk it came through, when its source is one.
    pub trunk: Option<String>,
    /// The Careline user it authenticated as (digest), when its source was not trusted.
    pub user: Option<String>,
}

impl IncomingCall {
    fn new(
        tx: Transaction,
        dialog_layer: Arc<DialogLayer>,
        public_address: Option<IpAddr>,
    ) -> Result<IncomingCall, Box<Transaction>> {
        let req = &tx.original;
        let Ok(call_id) = req.call_id_header().map(|c| c.value().to_string()) else {
            return Err(Box::new(tx));
        };
        let dialed = req
            .uri
            .auth
            .as_ref()
            .map(|a| a.user.clone())
            .or_else(|| {
                req.to_header()
                    .ok()
                    .and_then(|t| t.uri().ok())
                    .and_then(|u| u.auth.map(|a| a.user))
            })
            .unwrap_or_default();
        let caller = req
            .from_header()
            .ok()
            .and_then(|f| f.uri().ok())
            .and_then(|u| u.auth.map(|a| a.user))
            .unwrap_or_default();
        let mut content_type = req.header_value("Content-Type");
        let mut offer = req.body().clone();
        // The SDP part of a multipart body (the strict checks refused any other kind); a
        // body that is the SDP itself is kept as it came, not copied.
        if let Some(ct) = &content_type
            && let Ok(sdp) = body::session_description(ct, &offer)
            && sdp.len() != offer.len()
        {
            offer = sdp.to_vec();
            content_type = Some(strict::SDP.to_string());
        }
        let (remote, transport) = match &tx.connection {
            Some(conn) => (
                conn.get_remote_addr().and_then(|a| a.get_socketaddr().ok()),
                match conn.transport() {
                    rsipstack::sip::Transport::Udp => "udp",
                    rsipstack::sip::Transport::Tcp => "tcp",
                    rsipstack::sip::Transport::Tls => "tls",
                    _ => "other",
                },
            ),
            None => (None, "udp"),
        };
        Ok(IncomingCall {
            tx,
            dialog_layer,
            public_address,
            call_id,
            dialed,
            caller,
            offer,
            content_type,
            remote,
            transport,
            trunk: None,
            user: None,
        })
    }

    /// Answers 100 Trying (RFC 3261 §17.2.1), so the caller's transaction stops retransmitting
    /// while the call is set up. Sent from the call's own task: a peer slow to take it (TCP)
    /// holds up only its own call, not the dispatch of every other request.
    pub async fn trying(&mut self) {
        if let Err(e) = self.tx.reply_with(StatusCode::Trying, vec![], None).await {
            tracing::debug!(error = %e, "could not send 100 Trying");
        }
    }

    /// Refuses the call with a final response. `retry_after` adds Retry-After (RFC 3261
    /// §20.33, with 503); `warning` adds a Warning (§20.43, with 488: what was wrong).
    pub async fn reject(mut self, code: u16, retry_after: Option<u32>, warning: Option<String>) {
        let mut headers = Vec::new();
        if let Some(secs) = retry_after {
            headers.push(Header::RetryAfter(secs.to_string().into()));
        }
        if let Some(text) = warning {
            let text = text.replace('"', "'");
            headers.push(Header::Warning(format!("399 careline \"{text}\"").into()));
        }
        if code == 488 {
            headers.push(Header::Accept(ACCEPT.into()));
        }
        let status = StatusCode::from(code);
        if let Err(e) = self.tx.reply_with(status, headers, None).await {
            tracing::debug!(error = %e, "could not send the rejection");
        }
        // Keep the transaction alive to absorb the ACK and retransmissions of the INVITE
        // (up to 32 s over UDP, Timer H), in the background: the caller of `reject` holds
        // nothing of the call meanwhile (a call slot kept that long let a flood of refused
        // INVITEs fill the call table).
        let mut tx = self.tx;
        tokio::spawn(async move { while tx.receive().await.is_some() {} }.in_current_span());
    }

    /// Creates the server dialog (sending 100 Trying) and returns the handle that answers and
    /// follows it.
    pub fn accept_dialog(self) -> Result<ServerCall, SipError> {
        let IncomingCall {
            mut tx,
            dialog_layer,
            public_address,
            ..
        } = self;
        let contact = local_contact(&tx, public_address);
        let (state_tx, states) = dialog_layer.new_dialog_state_channel();
        let dialog = dialog_layer.get_or_create_server_invite(&tx, state_tx, None, contact)?;
        let mut handler = dialog.clone();
        tokio::spawn(async move {
            if let Err(e) = handler.handle(&mut tx).await {
                tracing::debug!(error = %e, "INVITE transaction ended with an error");
            }
        });
        let id = dialog.id();
        Ok(ServerCall {
            dialog,
            id,
            states,
            dialog_layer,
            confirmed: false,
        })
    }
}

/// `sip:careline@<the address the request arrived on>` with the arriving transport, so the
/// caller's in-dialog requests come back the same way.
fn local_contact(tx: &Transaction, public_address: Option<IpAddr>) -> Option<rsipstack::sip::Uri> {
    let conn = tx.connection.as_ref()?;
    let local = conn.get_addr();
    let mut host = local.addr.clone();
    if let Some(ip) = public_address {
        host.host = rsipstack::sip::Host::IpAddr(ip);
    }
    let transport = match conn.transport() {
        rsipstack::sip::Transport::Tcp => ";transport=tcp",
        rsipstack::sip::Transport::Tls => ";transport=tls",
        _ => "",
    };
    rsipstack::sip::Uri::try_from(format!("sip:careline@{host}{transport}").as_str()).ok()
}

/// What a dialog tells the call that owns it.
pub enum CallSignal {
    /// A call Careline placed rings at the far end (180 or 183).
    Ringing,
    /// A call Careline placed was answered (200 OK, ACKed): the far end's SDP answer.
    Answered(Vec<u8>),
    /// A call Careline placed was not answered: the final status, or `None` when no answer
    /// came at all (the trunk unreachable, the transaction timed out).
    Refused(Option<u16>),
    /// The ACK for our 200 arrived: media may start.
    Confirmed,
    /// The dialog ended.
    Ended(EndReason),
    /// A re-INVITE or UPDATE with an SDP offer (hold, unhold, address change).
    Offer { sdp: Vec<u8>, reply: Responder },
    /// An INFO request (DTMF relay or something else).
    Info {
        content_type: String,
        body: Vec<u8>,
        reply: Responder,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    CallerBye,
    OurBye,
    Cancelled,
    /// No ACK, transaction timeout.
    Timeout,
    Other,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::CallerBye => "caller_bye",
            EndReason::OurBye => "server_bye",
            EndReason::Cancelled => "cancel",
            EndReason::Timeout => "timeout",
            EndReason::Other => "other",
        }
    }
}

/// Answers one in-dialog request.
pub struct Responder(TransactionHandle);

impl Responder {
    pub async fn respond(self, code: u16, body: Option<(&str, Vec<u8>)>) {
        let (headers, body) = match body {
            Some((content_type, bytes)) => (
                Some(vec![Header::ContentType(content_type.to_string().into())]),
                Some(bytes),
            ),
            None => (None, None),
        };
        if self
            .0
            .respond(StatusCode::from(code), headers, body)
            .await
            .is_err()
        {
            tracing::debug!("in-dialog transaction ended before its response");
        }
    }
}

/// An established (or answering) server INVITE dialog.
pub struct ServerCall {
    dialog: InviteDialog,
    id: DialogId,
    states: DialogStateReceiver,
    dialog_layer: Arc<DialogLayer>,
    confirmed: bool,
}

impl ServerCall {
    /// 180 Ringing.
    pub fn ring(&self) -> Result<(), SipError> {
        Ok(self.dialog.ringing(None, None)?)
    }

    /// 200 OK with the SDP answer.
    pub fn answer(&self, sdp: String) -> Result<(), SipError> {
        let headers = vec![Header::ContentType("application/sdp".to_string().into())];
        Ok(self.dialog.accept(Some(headers), Some(sdp.into_bytes()))?)
    }

    /// A final error response before the call was answered.
    pub fn reject(&self, code: u16) -> Result<(), SipError> {
        Ok(self.dialog.reject(Some(StatusCode::from(code)), None)?)
    }

    /// BYE (or nothing when the dialog already ended).
    pub async fn hangup(&self) {
        if let Err(e) = self.dialog.hangup().await {
            tracing::debug!(error = %e, "BYE failed");
        }
    }

    /// The next thing the dialog has to say; `None` once it is gone.
    pub async fn next_signal(&mut self) -> Option<CallSignal> {
        loop {
            let state = self.states.recv().await?;
            match state {
                DialogState::Confirmed(..) if !self.confirmed => {
                    self.confirmed = true;
                    return Some(CallSignal::Confirmed);
                }
                DialogState::Terminated(_, reason) => {
                    let why = match reason {
                        TerminatedReason::UacBye => EndReason::CallerBye,
                        TerminatedReason::UasBye => EndReason::OurBye,
                        TerminatedReason::UacCancel => EndReason::Cancelled,
                        TerminatedReason::Timeout => EndReason::Timeout,
                        _ => EndReason::Other,
                    };
                    return Some(CallSignal::Ended(why));
                }
                other => {
                    if let Some(signal) = in_dialog(other).await {
                        return Some(signal);
                    }
                }
            }
        }
    }
}

/// A request inside an established dialog (either side's): an offer or an INFO for the call,
/// or answered here (a session refresh, OPTIONS, methods Careline does not take).
async fn in_dialog(state: DialogState) -> Option<CallSignal> {
    match state {
        DialogState::Updated(_, req, handle) => {
            if req.body().is_empty() {
                // A session refresh without SDP: nothing changes.
                let _ = handle.reply(StatusCode::OK).await;
                return None;
            }
            let content_type = req.header_value("Content-Type").unwrap_or_default();
            let sdp = body::session_description(&content_type, req.body())
                .map_or_else(|_| req.body().clone(), <[u8]>::to_vec);
            Some(CallSignal::Offer {
                sdp,
                reply: Responder(handle),
            })
        }
        DialogState::Info(_, req, handle) => {
            let content_type = req.header_value("Content-Type").unwrap_or_default();
            Some(CallSignal::Info {
                content_type,
                body: req.body().clone(),
                reply: Responder(handle),
            })
        }
        DialogState::Options(_, _, handle) => {
            let _ = handle
                .respond(
                    StatusCode::OK,
                    Some(vec![Header::Allow(ALLOW.into())]),
                    None,
                )
                .await;
            None
        }
        DialogState::Refer(_, _, handle)
        | DialogState::Message(_, _, handle)
        | DialogState::Notify(_, _, handle)
        | DialogState::Publish(_, _, handle) => {
            let _ = handle
                .respond(
                    StatusCode::MethodNotAllowed,
                    Some(vec![Header::Allow(ALLOW.into())]),
                    None,
                )
                .await;
            None
        }
        _ => None,
    }
}

impl Drop for ServerCall {
    fn drop(&mut self) {
        self.dialog_layer.remove_dialog(&self.id);
    }
}
