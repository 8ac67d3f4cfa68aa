//! E-mail through the clinic's SMTP relay (`[smtp]`), by lettre: STARTTLS required by default
//! (RFC 3207; a relay that does not offer it gets no credentials and no mail), implicit TLS
//! (RFC 8314, port 465), or plain SMTP for a relay on loopback.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Failure;
use crate::config::SmtpConfig;

/// A configuration the relay cannot be reached with.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("[smtp] from `{0}` is not an address (`Name <box@host>` or `box@host`)")]
    From(String),
    #[error("[smtp] tls `{0}` is none of starttls, tls, off")]
    TlsMode(String),
    #[error(
        "[smtp] tls = \"off\" with a username sends the password in clear: only to a relay on loopback, not `{0}`"
    )]
    ClearCredentials(String),
    #[error("[smtp] ca_file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("[smtp] TLS to `{host}`: {reason}")]
    Tls { host: String, reason: String },
    #[error("`{0}` is not an e-mail address")]
    Address(String),
}

/// Checks `addr` reads as a mailbox (for settings, at start).
pub fn check_address(addr: &str) -> Result<(), MailError> {
    addr.parse::<Mailbox>()
        .map(|_| ())
        .map_err(|_| MailError::Address(addr.to_string()))
}

/// Sends e-mail through the configured relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The right-hand side of Message-IDs.
    domain: String,
}

impl Mailer {
    /// The relay `[smtp]` names; None when it names none (`host` empty).
    pub fn from_config(c: &SmtpConfig) -> Result<Option<Mailer>, MailError> {
        if c.host.is_empty() {
            return Ok(None);
        }
        let from: Mailbox = c
            .from
            .parse()
            .map_err(|_| MailError::From(c.from.clone()))?;
        let tls_params = || -> Result<TlsParameters, MailError> {
            let mut b = TlsParameters::builder(c.host.clone());
            if let Some(path) = &c.ca_file {
                let ca_err = |reason: String| MailError::Ca {
                    path: path.display().to_string(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
                b = b.add_root_certificate(
                    Certificate::from_pem(&pem).map_err(|e| ca_err(e.to_string()))?,
                );
            }
            b.build_rustls().map_err(|e| MailError::Tls {
                host: c.host.clone(),
                reason: e.to_string(),
            })
        };
        let (tls, default_port) = match c.tls.as_str() {
            "starttls" => (Tls::Required(tls_params()?), 587),
            "tls" => (Tls::Wrapper(tls_params()?), 465),
            "off" => {
                if !c.username.is_empty() && !is_loopback(&c.host) {
                    return Err(MailError::ClearCredentials(c.host.clone()));
                }
                (Tls::None, 25)
            }
            other => return Err(MailError::TlsMode(other.to_string())),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.host.clone())
            .port(if c.port == 0 { default_port } else { c.port })
            .tls(tls)
            .timeout(Some(Duration::from_secs(c.timeout_secs.max(1))));
        if !c.username.is_empty() {
            b = b.credentials(Credentials::new(c.username.clone(), c.password.clone()));
        }
        let domain = from.email.domain().to_string();
        Ok(Some(Mailer {
            transport: b.build(),
            from,
            domain,
        }))
    }

    /// Sends one plain-text message; `id` makes its `Message-ID`, the same on every try.
    pub async fn send(
        &self,
        id: &str,
        to: &[&str],
        subject: &str,
        body: &str,
    ) -> Result<(), Failure> {
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!(
                "<{}@{}>",
                message_local_part(id),
                self.domain
            )));
        if to.is_empty() {
            return Err(Failure::Permanent("no recipients".into()));
        }
        for addr in to {
            let mb: Mailbox = addr
                .parse()
                .map_err(|_| Failure::Permanent(format!("`{addr}` is not an e-mail address")))?;
            m = m.to(mb);
        }
        let message = m
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Failure::Permanent(e.to_string())),
            Err(e) => Err(Failure::Transient(e.to_string())),
        }
    }
}

/// A Message-ID's left part from a notice id: letters, digits and `.-_` kept, the rest `.`.
fn message_local_part(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '.'
            }
        })
        .collect()
}

/// Whether `host` (a name, an address, `[v6]`) is this machine: where a secret or patient
/// data may go without TLS.
pub(crate) fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmtpConfig {
        SmtpConfig {
            host: "relay.clinic.example".into(),
            from: "Careline <careline@clinic.example>".into(),
            ..SmtpConfig::default()
        }
    }

    #[test]
    fn settings_a_relay_cannot_work_with_are_refused_at_start() {
        assert!(
            Mailer::from_config(&SmtpConfig::default())
                .unwrap()
                .is_none()
        );
        assert!(Mailer::from_config(&config()).unwrap().is_some());
        let bad_from = SmtpConfig {
            from: "careline".into(),
            ..config()
        };
        assert!(matches!(
            Mailer::from_config(&bad_from),
            Err(MailError::From(_))
        ));
        let clear = SmtpConfig {
            tls: "off".into(),
            username: "careline".into(),
            password: "secret".into(),
            ..config()
        };
        let e = Mailer::from_config(&clear).err().unwrap().to_string();
        assert!(e.contains("in clear") && !e.contains("secret"), "{e}");
        let local = SmtpConfig {
            host: "127.0.0.1".into(),
            ..clear
        };
        assert!(Mailer::from_config(&local).unwrap().is_some());
        let mode = SmtpConfig {
            tls: "maybe".into(),
            ..config()
        };
        assert!(matches!(
            Mailer::from_config(&mode),
            Err(MailError::TlsMode(_))
        ));
    }

    #[test]
    fn message_ids_keep_to_safe_characters() {
        assert_eq!(
            message_local_part("care-task:ab12:mail"),
            "care-task.ab12.mail"
        );
        assert_eq!(message_local_part("x y<z>"), "x.y.z.");
    }
}
