//! Who may start something over SIP. A clinic's SIP port faces the internet: INVITEs from a
//! carrier trunk or a trusted network are taken as they come (the carrier authenticated its
//! caller); INVITEs from anywhere else, and every REGISTER, must answer a digest challenge
//! (RFC 3261 §22, [`super::digest`]) with a Careline user's SIP secret.
//!
//! The users, their secrets and the lock-out policy belong to a layer above (`auth`); it is
//! reached through [`SipUsers`]. What a scanner learns is the same for a name that exists and
//! one that does not: a challenge, then `403 Forbidden`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use ipnet::IpNet;
use zeroize::Zeroizing;

use super::digest::{Algorithm, Credentials, NonceState, Nonces, Replays};

/// Networks whose INVITEs need no password: named trunks (a carrier, a PBX) and plain
/// trusted networks.
#[derive(Debug, Clone, Default)]
pub struct Trusted {
    networks: Vec<(IpNet, Option<String>)>,
}

impl Trusted {
    pub fn new(networks: &[IpNet], trunks: &BTreeMap<String, Vec<IpNet>>) -> Trusted {
        let mut all: Vec<(IpNet, Option<String>)> = trunks
            .iter()
            .flat_map(|(name, nets)| nets.iter().map(move |n| (*n, Some(name.clone()))))
            .collect();
        all.extend(networks.iter().map(|n| (*n, None)));
        // The most specific network wins, so a trunk inside a trusted range is still named.
        all.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Trusted { networks: all }
    }

    /// `Some(trunk name or None)` when `source` is trusted.
    pub fn source(&self, source: IpAddr) -> Option<Option<&str>> {
        let source = match source {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(source, IpAddr::V4),
            v4 => v4,
        };
        self.networks
            .iter()
            .find(|(n, _)| n.contains(&source))
            .map(|(_, trunk)| trunk.as_deref())
    }
}

/// The Careline users a SIP request can authenticate as.
#[async_trait::async_trait]
pub trait SipUsers: Send + Sync + 'static {
    /// `user`'s SIP secret; `None` for an unknown or disabled user or one without a secret.
    async fn secret(&self, user: &str) -> Option<Zeroizing<String>>;
    /// `Err(wait)` when attempts for `user` from `source` are throttled.
    fn check(&self, user: &str, source: IpAddr) -> Result<(), Duration>;
    /// A wrong answer for `user` from `source` (counts toward the lock-out).
    async fn failed(&self, user: &str, source: IpAddr);
    /// A right answer (clears the pair's failures).
    fn succeeded(&self, user: &str, source: IpAddr);
}

/// The digest settings (from `[sip]`).
#[derive(Debug, Clone)]
pub struct DigestSettings {
    pub realm: String,
    /// Offered most preferred first; only these are accepted.
    pub algorithms: Vec<Algorithm>,
    pub nonce_secs: u64,
}

/// What to do with a request that needs authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Authenticated as this user.
    Accepted { user: String },
    /// Answer 401 with these `WWW-Authenticate` values.
    Challenge {
        headers: Vec<String>,
        why: &'static str,
    },
    /// Answer 403 (wrong or unknown credentials, or too many failures).
    Forbidden { why: &'static str },
}

/// Challenges and checks digest answers: nonces, replays, then the user's secret.
pub struct Gate {
    settings: DigestSettings,
    nonces: Nonces,
    replays: Mutex<Replays>,
}

/// Nonces remembered for replay checks (each a few dozen bytes).
const REPLAY_CAPACITY: usize = 100_000;

impl Gate {
    /// `key`: random, drawn by the shell at start (nonces from before a restart are simply
    /// challenged again).
    pub fn new(settings: DigestSettings, key: [u8; 32]) -> Gate {
        Gate {
            nonces: Nonces::new(key, settings.nonce_secs),
            replays: Mutex::new(Replays::new(REPLAY_CAPACITY, settings.nonce_secs)),
            settings,
        }
    }

    fn challenge(&self, now_secs: u64, source: IpAddr, stale: bool, why: &'static str) -> Decision {
        Decision::Challenge {
            headers: self.challenge_headers(now_secs, source, stale),
            why,
        }
    }

    /// The `WWW-Authenticate` values of a fresh challenge to `source`.
    pub fn challenge_headers(&self, now_secs: u64, source: IpAddr, stale: bool) -> Vec<String> {
        self.nonces.challenge(
            &self.settings.realm,
            &self.settings.algorithms,
            now_secs,
            rand::random(),
            source,
            stale,
        )
    }

    /// Decides on a request (`method` as written in its CSeq) from `source` carrying these
    /// `Authorization` values, at `now_secs` (Unix time).
    pub async fn decide(
        &self,
        users: &dyn SipUsers,
        method: &str,
        source: IpAddr,
        authorizations: &[String],
        now_secs: u64,
    ) -> Decision {
        // A client may answer several challenges (one per realm or algorithm): take the one
        // for our realm in an algorithm we offered.
        let creds = authorizations
            .iter()
            .filter_map(|v| Credentials::parse(v).ok())
            .find(|c| {
                c.realm == self.settings.realm && self.settings.algorithms.contains(&c.algorithm)
            });
        let Some(creds) = creds else {
            let why = if authorizations.is_empty() {
                "no credentials"
            } else {
                "unusable credentials"
            };
            return self.challenge(now_secs, source, false, why);
        };
        match self.nonces.check(&creds.nonce, now_secs, source) {
            NonceState::Fresh => {}
            NonceState::Stale => return self.challenge(now_secs, source, true, "stale nonce"),
            NonceState::Unknown => {
                return self.challenge(now_secs, source, false, "unknown nonce");
            }
        }
        if users.check(&creds.username, source).is_err() {
            return Decision::Forbidden { why: "throttled" };
        }
        let secret = users.secret(&creds.username).await;
        // An unknown user costs the same hashing as a known one.
        let right = match &secret {
            Some(s) => creds.verify(s, method),
            None => {
                let _ = creds.verify("", method);
                false
            }
        };
        if !right {
            users.failed(&creds.username, source).await;
            return Decision::Forbidden {
                why: "wrong credentials",
            };
        }
        let fresh = {
            let mut replays = self.replays.lock().unwrap_or_else(|p| p.into_inner());
            replays.accept(&creds.nonce, creds.nc, now_secs)
        };
        if !fresh {
            return self.challenge(now_secs, source, false, "replayed");
        }
        users.succeeded(&creds.username, source);
        Decision::Accepted {
            user: creds.username,
        }
    }
}

#[cfg(test)]
mod tests;
