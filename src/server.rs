//! Wiring: builds every part from one [`Config`] and starts it; drains on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::call::{CallCommand, CallServices, CallSettings};
use crate::config::{Config, ConfigError};
use crate::media::engine::MediaEngine;
use crate::media::ports::PortAllocator;
use crate::media::prompt::PromptError;
use crate::metrics::Metrics;
use crate::sip::{SipError, SipOptions, SipServer, tls};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("prompts: {0}")]
    Prompts(#[from] PromptError),
    #[error("contact flows: {0}")]
    Flows(#[from] crate::flow::engine::FlowStartError),
    #[error("SIP: {0}")]
    Sip(#[from] SipError),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("data dir {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("recording: {0}")]
    Recording(#[from] crate::recording::RecordingError),
    #[error(transparent)]
    Records(#[from] crate::api::access::OpenError),
    #[error(transparent)]
    Https(#[from] crate::api::https::HttpsError),
    #[error("audit trail: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("access: {0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Trunk(#[from] crate::call::dial::MissingPassword),
    #[error("workflows: {0}")]
    Workflows(#[from] crate::workflow::runner::LoadError),
    #[error("workflow executions: {0}")]
    WorkflowStore(#[from] crate::workflow::store::StoreError),
    #[error("workflows: {0}")]
    WorkflowSettings(#[from] crate::workflow::runner::RunnerError),
    #[error("cannot listen on HTTP {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Server {
    pub services: Arc<CallServices>,
    pub sip: Arc<SipServer>,
    pub http_addr: SocketAddr,
    /// Users and the audit trail (the drain writes what is still pending into it).
    pub auth: Arc<crate::auth::Auth>,
}

impl Server {
    pub async fn start(config: Config) -> Result<Server, StartError> {
        // rsipstack's TLS is built on rustls with ring; one provider for the whole process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        raise_fd_limit();
        create_private_dir(&config.data_dir)?;
        let codecs = config.codecs()?;
        let metrics = Arc::new(Metrics::new());

        let started = Instant::now();
        let prompts = crate::shipped::prompt_library(&config.prompts.dir)?;
        metrics.prompts_loaded.set(prompts.len() as i64);
        info!(
            prompts = prompts.len(),
            from = %crate::shipped::folder_name(&config.prompts.dir, crate::shipped::PROMPTS_DIR),
            ms = started.elapsed().as_millis() as u64,
            "prompts loaded and encoded"
        );
        let flows = crate::flow::engine::FlowEngine::build(
            &config,
            Arc::new(prompts),
            crate::flow::http::HttpClient::new(),
        )?;
        for w in &flows.warnings {
            tracing::warn!("{w}");
        }
        flows.queues.observe(&metrics);
        info!(
            flows = flows.env.catalog.len(),
            from = %crate::shipped::folder_name(&config.flows.dir, crate::shipped::FLOWS_DIR),
            "contact flows loaded"
        );
        // Static texts are rendered in the background, a few at a time: the server answers at
        // once, and a caller who reaches a text still rendering waits for that one rendering.
        let warm = flows.static_speech();
        let speech = flows.speech.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let count = warm.len();
            let failures = speech.warm(warm, 2).await;
            for (text_len, e) in failures.iter().map(|(t, e)| (t.chars().count(), e)) {
                tracing::warn!(chars = text_len, error = %e, "speech for a flow text could not be rendered");
            }
            info!(
                texts = count,
                failed = failures.len(),
                ms = started.elapsed().as_millis() as u64,
                "flow speech rendered"
            );
        });

        let tls = match config.sip.tls_listen {
            Some(_) => Some(tls::load_or_generate(
                config.sip.tls_cert.as_deref(),
                config.sip.tls_key.as_deref(),
                &config.data_dir,
            )?),
            None => None,
        };
        let tls_origin = tls.as_ref().map(|t| t.origin.display().to_string());
        // Patients, users and the audit trail (database, keys); every start notes whether the
        // configuration changed since the last one. Opened before SIP: phones authenticate
        // as its users.
        let records =
            Arc::new(crate::api::access::ApiState::open(&config, Some(metrics.clone())).await?);
        let trunks = config
            .sip
            .trunks
            .iter()
            .map(|(name, t)| (name.clone(), t.addresses.clone()))
            .collect();
        let (sip, incoming) = SipServer::start(
            SipOptions {
                listen: config.sip.listen,
                tls_listen: config.sip.tls_listen,
                tls,
                public_address: config.sip.public_address,
                max_message_bytes: config.sip.max_message_bytes,
                rate_limit_per_source: config.sip.rate_limit_per_source,
                trusted: crate::sip::access::Trusted::new(&config.sip.trusted_networks, &trunks),
                untrusted_rate_limit: config.sip.untrusted_rate_limit,
                digest: crate::sip::access::DigestSettings {
                    realm: config.sip.realm.clone(),
                    algorithms: config.sip.digest_algorithms.clone(),
                    nonce_secs: config.sip.nonce_secs,
                },
                users: records.sip_secrets.clone(),
                min_expires: config.sip.min_expires_secs,
                max_expires: config.sip.max_expires_secs,
            },
            metrics.clone(),
        )
        .await?;
        let sip = Arc::new(sip);

        let ring = Arc::new(crate::keys::KeyRing::open(
            &config.data_dir,
            crate::keys::Supplied::from_env(),
        )?);
        // `careline keys rotate` runs beside the server: follow its new current key, so new
        // data keys are not wrapped under the key being retired.
        let watched = Arc::downgrade(&ring);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::keys::REFRESH_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(ring) = watched.upgrade() else {
                    return;
                };
                match ring.refresh() {
                    Ok(Some(id)) => info!(key = %id, "master key rotated: new data keys use it"),
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "could not re-read the key folder"),
                }
            }
        });
        let recorder = crate::recording::Recorder::start(
            &config.recording,
            &config.data_dir,
            ring,
            metrics.clone(),
        )?;

        let media = MediaEngine::start(
            config.rtp.media_threads,
            PortAllocator::new(config.rtp.ports.lo, config.rtp.ports.hi),
            Arc::new(crate::media::prompt::Silence::new()?),
            metrics.clone(),
        );
        let config_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            toml::to_string(&config).unwrap_or_default().as_bytes(),
        ));
        records.audit.note_config(&config_digest).await?;
        // No call survives a restart: links to the calls of a previous process end now (a
        // person's after the wrap-up time).
        let orphaned = records.auth.end_orphaned_contacts("system").await?;
        tokio::spawn(records.auth.clone().flush_outsiders_forever());
        if orphaned > 0 {
            info!(
                calls = orphaned,
                "ended the patient links of calls from before the restart"
            );
        }
        let hooks: Arc<dyn crate::call::CallHooks> =
            Arc::new(crate::audit::calls::CallEvents::new(
                records.audit.clone(),
                records.auth.clone(),
                records.patients.clone(),
                records.call_records.clone(),
            ));

        let trunks =
            crate::call::dial::Trunk::from_config(&config.sip.trunks, |v| std::env::var(v).ok())?;
        let desk =
            crate::routing::desk::Desk::start(&config.routing, &config.queues, metrics.clone());
        flows.queues.watch(desk.clone());
        let services = Arc::new(CallServices {
            desk,
            trunks,
            placed: Default::default(),
            callbacks: Some(records.callbacks.clone()),
            room_door: Default::default(),
            settings: CallSettings {
                max_calls: config.sip.max_calls,
                retry_after_secs: config.sip.retry_after_secs,
                ring: Duration::from_millis(config.calls.ring_ms),
                menu_timeout: Duration::from_secs(config.calls.menu_timeout_secs),
                codecs,
                inband: config.rtp.inband_dtmf,
                jitter_ms: config.rtp.jitter_ms,
                rtp_timeout: Duration::from_secs(config.rtp.timeout_secs as u64),
                webrtc_connect_timeout: Duration::from_secs(u64::from(
                    config.webrtc.connect_timeout_secs,
                )),
                webrtc_reconnect_grace: Duration::from_secs(u64::from(
                    config.webrtc.reconnect_grace_secs,
                )),
                webrtc_connecting_per_source: config.webrtc.max_connecting_per_source as usize,
                srtp: config.rtp.srtp,
                srtp_keys_without_tls: config.rtp.srtp_keys_without_tls,
                srtp_suites: config.srtp_suites()?,
                amd: config.calls.amd,
            },
            media,
            sip: sip.clone(),
            flows,
            table: Default::default(),
            connecting: Default::default(),
            agent_sessions: Default::default(),
            monitor_sessions: Default::default(),
            hold_music: Arc::new(crate::media::prompt::hold_music()?),
            metrics,
            draining: AtomicBool::new(false),
            recorder,
            hooks: Some(hooks),
        });

        // Users who may answer calls are at the desk while their SIP phone is registered.
        let auth = records.auth.clone();
        crate::call::phone_agent::start(
            services.clone(),
            Arc::new(move |user: String| {
                let auth = auth.clone();
                Box::pin(async move {
                    matches!(auth.user_role(&user).await, Ok(Some(role))
                        if crate::auth::permission::scope(role, crate::auth::Action::CallAnswer)
                            .is_some())
                })
            }),
        );
        // Callbacks callers asked for before the restart take their places again.
        match crate::call::callback::restore(&services).await {
            Ok(0) => {}
            Ok(n) => info!(callbacks = n, "queued callbacks back in their places"),
            Err(e) => warn!(error = %e, "could not restore the queued callbacks"),
        }

        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .map_err(|source| StartError::Http {
                addr: config.http.listen,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| StartError::Http {
            addr: config.http.listen,
            source,
        })?;
        let catalog = crate::workflow::runner::Catalog::load(&config.workflows.dir)?;
        info!(
            workflows = catalog.len(),
            from = %crate::shipped::folder_name(&config.workflows.dir, crate::shipped::WORKFLOWS_DIR),
            "workflows loaded"
        );
        let workflows = crate::workflow::runner::Workflows::start(
            records.workflows.clone(),
            catalog,
            crate::workflow::runner::Tasks::new(
                crate::flow::lambda::Lambdas::new(
                    &config.lambda,
                    crate::flow::http::HttpClient::new(),
                ),
                &config.workflows,
                records.care_tasks.clone(),
            )?
            .with_records(records.patients.clone(), records.audit.clone())
            .with_notices(records.outbox.clone(), !config.smtp.host.is_empty())
            .with_rooms(
                records.rooms.clone(),
                records.room_links.clone(),
                config.rooms.clone(),
            )
            .with_call_patient(
                crate::workflow::call_patient::CallPatientTask::new(
                    Arc::new(services.clone()),
                    records.patients.clone(),
                    records.audit.clone(),
                    config.workflows.call_patient.clone(),
                )
                .map_err(|e| ConfigError::Invalid(format!("workflows.call_patient.{e}")))?
                .with_metrics(services.metrics.clone()),
            ),
            Duration::from_secs(config.workflows.task_timeout_secs.max(1)),
            crate::db::WallClock::system(),
            Some(services.metrics.clone()),
        )
        .await?;
        // The notices owed (a new care task's webhook and e-mail), sent in the background and
        // after a restart whatever was still owed.
        let mailer = crate::notify::mail::Mailer::from_config(&config.smtp)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        tokio::spawn(
            crate::notify::Postman::new(
                records.outbox.clone(),
                mailer,
                Some(services.metrics.clone()),
            )
            .run(),
        );
        if let Some(trigger) = crate::workflow::runner::DischargeTrigger::new(
            workflows.starter().clone(),
            &config.workflows,
        )? {
            let _ = records.discharges.set((trigger, workflows.clone()));
        }
        let mut app = crate::api::router(services.clone())
            .merge(crate::api::v1::router(records.clone()))
            .merge(crate::api::workflows::router(
                records.clone(),
                workflows,
                Some(config.workflows.pharmacy.url.clone()).filter(|u| !u.is_empty()),
            ));
        app = app.merge(crate::api::whip::router(
            records.clone(),
            services.clone(),
            config.webrtc.public_calls,
            config.webrtc.allowed_origins.clone(),
        ));
        let rooms = Arc::new(crate::rooms::service::Rooms::new(
            services.clone(),
            records.rooms.clone(),
            Duration::from_secs(config.rooms.rejoin_grace_secs.into()),
            Some(records.auth.clone()),
        ));
        // Callers who key a visit PIN on the dial-in line enter the rooms through it.
        let _ = services.room_door.set(crate::api::rooms::phone_door(
            records.clone(),
            rooms.clone(),
        ));
        app = app.merge(crate::api::rooms::router(
            records.clone(),
            rooms,
            records.room_links.clone(),
            config.rooms.clone(),
        ));
        if config.recording.http_enabled {
            app = app.merge(crate::api::recordings::router(
                records.clone(),
                services.clone(),
            ));
        }
        let https = config.http.https();
        // Security headers on every response, cross-site cookie writes refused; unknown paths
        // answered as problem details like every other error.
        let app = app
            .fallback(|| async {
                crate::api::access::ApiError::not_found(
                    "no such endpoint (see /api/v1/openapi.json)",
                )
            })
            .layer(axum::middleware::from_fn(move |req, next| {
                crate::api::browser::guard(https, req, next)
            }));
        let tls = if https {
            let (tls_config, origin) = crate::api::https::server_config(
                config.http.tls_cert.as_deref(),
                config.http.tls_key.as_deref(),
                &config.data_dir,
            )?;
            info!(cert = origin, "HTTPS");
            Some(tokio_rustls::TlsAcceptor::from(tls_config))
        } else {
            None
        };
        tokio::spawn(crate::api::serve::serve(
            listener,
            tls,
            app,
            crate::api::serve::Limits::from_config(&config.http),
            Some(services.metrics.clone()),
        ));
        tokio::spawn(crate::call::admit::switchboard(incoming, services.clone()));

        info!(
            sip_udp = %sip.udp_addr,
            sip_tcp = %sip.tcp_addr,
            sip_tls = sip.tls_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
            tls_cert = tls_origin.unwrap_or_default(),
            http = %http_addr,
            https,
            rtp = %config.rtp.ports,
            data_dir = %config.data_dir.display(),
            "careline ready"
        );
        Ok(Server {
            services,
            sip,
            http_addr,
            auth: records.auth.clone(),
        })
    }

    /// Graceful shutdown: refuse new calls (503), let active calls finish for up to `grace`,
    /// then hang up the rest and wait briefly for their BYEs to go out.
    pub async fn drain(&self, grace: Duration) {
        let svc = &self.services;
        svc.draining.store(true, Ordering::Release);
        svc.metrics.draining.set(1);
        info!(
            active = svc.table.len(),
            grace_secs = grace.as_secs(),
            "draining: new calls are refused"
        );
        let deadline = Instant::now() + grace;
        // Admitted calls: the answered ones in the table, and calls Careline placed that still
        // ring.
        while svc.table.admitted() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if svc.table.admitted() > 0 {
            info!(
                active = svc.table.len(),
                admitted = svc.table.admitted(),
                "grace period over: hanging up remaining calls"
            );
            svc.table
                .broadcast(|| CallCommand::Hangup { cause: "drain" });
            svc.placed.hang_up_all("drain");
            let bye_deadline = Instant::now() + Duration::from_secs(5);
            while svc.table.admitted() > 0 && Instant::now() < bye_deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.sip.shutdown();
        svc.recorder.shutdown();
        // The summaries of refused requests still counting go into the audit trail now.
        self.auth.flush_outsiders(true).await;
        info!("drained");
    }
}

fn create_private_dir(path: &std::path::Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Each call holds two UDP sockets; lift the soft descriptor limit to the hard one.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
