//! SIP digest authentication, the server's side (RFC 3261 §22, RFC 8760 for SHA-256, the
//! computation of RFC 7616 §3.4.1 with `qop=auth`). Sans-IO: time and the nonce key are
//! inputs, nothing here reads a clock or a database.
//!
//! - Nonces carry their own mint time and are bound to the caller's address by an HMAC under
//!   a key only this process knows, so any number of challenges cost no memory; a nonce older
//!   than the configured lifetime is *stale* (the client answers the new challenge without
//!   asking its user again, RFC 7616 §3.3).
//! - `qop=auth` is required: its nonce count (`nc`) must rise with every request under one
//!   nonce, which is how a replayed request is told from a new one ([`Replays`]).
//! - Responses are compared in constant time.
//!
//! ```
//! use careline::sip::digest::{Algorithm, Credentials, Nonces, response};
//! let nonces = Nonces::new([7; 32], 300);
//! let source = "192.0.2.10".parse().unwrap();
//! let nonce = nonces.mint(1_000, [3; 8], source);
//! // What a phone sends back after the challenge:
//! let answer = response(Algorithm::Sha256, "nina", "careline", "s3cret", &nonce,
//!                       "REGISTER", "sip:careline", "00000001", "c0ffee");
//! let header = format!(
//!     "Digest username=\"nina\", realm=\"careline\", nonce=\"{nonce}\", uri=\"sip:careline\", \
//!      response=\"{answer}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c0ffee\"");
//! let creds = Credentials::parse(&header).unwrap();
//! assert!(nonces.check(&creds.nonce, 1_010, source).is_fresh());
//! assert!(creds.verify("s3cret", "REGISTER"));
//! assert!(!creds.verify("guess", "REGISTER"));
//! ```

use std::collections::HashMap;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Digest;

/// The digest algorithms Careline accepts (RFC 8760 §2.1: SHA-256 preferred, MD5 for
/// older phones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    #[serde(rename = "SHA-256")]
    Sha256,
    #[serde(rename = "MD5")]
    Md5,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    fn parse(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else {
            None
        }
    }

    fn hex(self, text: &str) -> String {
        match self {
            Algorithm::Sha256 => hex::encode(sha2::Sha256::digest(text.as_bytes())),
            Algorithm::Md5 => hex::encode(md5::Md5::digest(text.as_bytes())),
        }
    }
}

/// Why an `Authorization` header cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("not a Digest authorization")]
    NotDigest,
    #[error("the authorization has no `{0}`")]
    Missing(&'static str),
    #[error("unsupported digest algorithm")]
    Algorithm,
    #[error("only qop=auth is accepted")]
    Qop,
    #[error("malformed nonce count")]
    NonceCount,
    #[error("malformed authorization parameters")]
    Syntax,
}

/// What a client sent in `Authorization` (RFC 3261 §25.1 `credentials`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The digest-uri exactly as the client wrote it (it is part of what was hashed).
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub cnonce: String,
    /// The nonce count as written (eight hex digits) and its value.
    pub nc_text: String,
    pub nc: u32,
}

impl Credentials {
    /// Parses one `Authorization` header value. Parameter names are case-insensitive and
    /// may come in any order; values may be tokens or quoted strings (RFC 3261 §25.1).
    pub fn parse(value: &str) -> Result<Credentials, DigestError> {
        let value = value.trim_start();
        let (scheme, rest) = value.split_at(value.find(char::is_whitespace).unwrap_or(value.len()));
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::NotDigest);
        }
        let params = params(rest)?;
        let get = |name: &'static str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let need = |name: &'static str| get(name).ok_or(DigestError::Missing(name));
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(&a).ok_or(DigestError::Algorithm)?,
        };
        match get("qop") {
            Some(q) if q.eq_ignore_ascii_case("auth") => {}
            _ => return Err(DigestError::Qop),
        }
        let nc_text = need("nc")?;
        if nc_text.len() != 8 {
            return Err(DigestError::NonceCount);
        }
        let nc = u32::from_str_radix(&nc_text, 16).map_err(|_| DigestError::NonceCount)?;
        Ok(Credentials {
            username: need("username")?,
            realm: need("realm")?,
            nonce: need("nonce")?,
            uri: need("uri")?,
            response: need("response")?.to_ascii_lowercase(),
            algorithm,
            cnonce: need("cnonce")?,
            nc_text,
            nc,
        })
    }

    /// Whether the response is the one `secret` gives for `method` (constant time).
    pub fn verify(&self, secret: &str, method: &str) -> bool {
        let expected = response(
            self.algorithm,
            &self.username,
            &self.realm,
            secret,
            &self.nonce,
            method,
            &self.uri,
            &self.nc_text,
            &self.cnonce,
        );
        expected.len() == self.response.len()
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_bytes(),
                self.response.as_bytes(),
            ))
    }
}

/// The `response` a client computes (RFC 7616 §3.4.1, qop=auth):
/// `H(H(user:realm:secret):nonce:nc:cnonce:auth:H(method:uri))`, lower-case hex.
#[allow(clippy::too_many_arguments)]
pub fn response(
    algorithm: Algorithm,
    username: &str,
    realm: &str,
    secret: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    nc: &str,
    cnonce: &str,
) -> String {
    let ha1 = algorithm.hex(&format!("{username}:{realm}:{secret}"));
    let ha2 = algorithm.hex(&format!("{method}:{uri}"));
    algorithm.hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
}

/// `name=value` pairs separated by commas; values are tokens or quoted strings with `\`
/// escapes.
fn params(text: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || name.is_empty() {
            return Err(DigestError::Syntax);
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(DigestError::Syntax),
                    Some('"') => break,
                    Some('\\') => value.push(chars.next().ok_or(DigestError::Syntax)?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if out.len() >= 32 {
            return Err(DigestError::Syntax);
        }
        out.push((name, value));
    }
}

/// The nonce of a `WWW-Authenticate` challenge value (what a client reads from it).
#[cfg(test)]
pub(crate) fn challenge_nonce(challenge: &str) -> Option<String> {
    let rest = challenge.trim_start().strip_prefix("Digest")?;
    params(rest)
        .ok()?
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("nonce"))
        .map(|(_, v)| v)
}

/// What a nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Minted here for this address within the lifetime.
    Fresh,
    /// Minted here for this address, but too long ago: challenge again with `stale=true`.
    Stale,
    /// Not one of ours (or for another address, or from before a restart).
    Unknown,
}

impl NonceState {
    pub fn is_fresh(self) -> bool {
        self == NonceState::Fresh
    }
}

/// Mints and checks nonces: `base64url(mint time ‖ salt ‖ HMAC-SHA256(key, mint time ‖ salt ‖
/// address)[..16])`. The salt (random, drawn by the caller) makes every challenge's nonce its
/// own: two challenges in one second must not share a nonce, or the second request's count
/// would look like a replay of the first's.
pub struct Nonces {
    key: [u8; 32],
    lifetime_secs: u64,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl Nonces {
    /// `key` must be secret and random (the shell draws it at start).
    pub fn new(key: [u8; 32], lifetime_secs: u64) -> Nonces {
        Nonces {
            key,
            lifetime_secs: lifetime_secs.max(1),
        }
    }

    pub fn lifetime_secs(&self) -> u64 {
        self.lifetime_secs
    }

    fn tag(&self, minted: u64, salt: &[u8], source: IpAddr) -> [u8; 16] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("any key length");
        mac.update(&minted.to_be_bytes());
        mac.update(salt);
        match source {
            IpAddr::V4(a) => mac.update(&a.octets()),
            IpAddr::V6(a) => mac.update(&a.octets()),
        }
        let full = mac.finalize().into_bytes();
        let mut tag = [0; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }

    /// A new nonce for a challenge sent to `source` at `now_secs` (Unix time); `salt` random.
    pub fn mint(&self, now_secs: u64, salt: [u8; 8], source: IpAddr) -> String {
        let mut raw = Vec::with_capacity(32);
        raw.extend_from_slice(&now_secs.to_be_bytes());
        raw.extend_from_slice(&salt);
        raw.extend_from_slice(&self.tag(now_secs, &salt, source));
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn check(&self, nonce: &str, now_secs: u64, source: IpAddr) -> NonceState {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce) else {
            return NonceState::Unknown;
        };
        if raw.len() != 32 {
            return NonceState::Unknown;
        }
        let mut ts = [0; 8];
        ts.copy_from_slice(&raw[..8]);
        let minted = u64::from_be_bytes(ts);
        let tag = self.tag(minted, &raw[8..16], source);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&tag[..], &raw[16..])) {
            return NonceState::Unknown;
        }
        // A nonce from the future (a clock stepped back) is treated as stale, never fresh.
        if minted > now_secs || now_secs - minted > self.lifetime_secs {
            NonceState::Stale
        } else {
            NonceState::Fresh
        }
    }

    /// The `WWW-Authenticate` values of a challenge, one per algorithm in the order given
    /// (most preferred first, RFC 8760 §2.4).
    pub fn challenge(
        &self,
        realm: &str,
        algorithms: &[Algorithm],
        now_secs: u64,
        salt: [u8; 8],
        source: IpAddr,
        stale: bool,
    ) -> Vec<String> {
        let nonce = self.mint(now_secs, salt, source);
        let realm = realm.replace(['"', '\\'], "");
        algorithms
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{}",
                    a.as_str(),
                    if stale { ", stale=true" } else { "" }
                )
            })
            .collect()
    }
}

/// The highest nonce count seen per nonce: a request whose count is not above it is a
/// replay (RFC 7616 §3.3, `nc`). Bounded: the oldest nonces are forgotten first, and a
/// forgotten nonce is stale by then anyway when `capacity` covers a lifetime of challenges.
pub struct Replays {
    seen: HashMap<String, (u32, u64)>,
    capacity: usize,
    /// Nonces unused this long are stale and forgotten (checked at most once a minute).
    lifetime_secs: u64,
    swept_at: u64,
}

impl Replays {
    pub fn new(capacity: usize, lifetime_secs: u64) -> Replays {
        Replays {
            seen: HashMap::new(),
            capacity: capacity.max(1),
            lifetime_secs,
            swept_at: 0,
        }
    }

    /// Records `nc` under `nonce`; false when it is not above the count already seen.
    pub fn accept(&mut self, nonce: &str, nc: u32, now_secs: u64) -> bool {
        if now_secs >= self.swept_at.saturating_add(60) {
            self.swept_at = now_secs;
            let before = now_secs.saturating_sub(self.lifetime_secs);
            self.seen.retain(|_, (_, at)| *at >= before);
        }
        if let Some((last, at)) = self.seen.get_mut(nonce) {
            if nc <= *last {
                return false;
            }
            *last = nc;
            *at = now_secs;
            return true;
        }
        if nc == 0 {
            return false;
        }
        if self.seen.len() >= self.capacity
            && let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(nonce.to_string(), (nc, now_secs));
        true
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests;
