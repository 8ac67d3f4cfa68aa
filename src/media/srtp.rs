//! SRTP on RTP legs (RFC 3711), keyed by SDES (RFC 4568 `a=crypto`, negotiated in
//! `sip::sdp`): what a phone's audio is wrapped in between it and Careline, so the call does
//! not cross a network in clear (HIPAA §164.312(e)(1), transmission security).
//!
//! Browser legs get their SRTP from DTLS inside their peer connection (`webrtc`); this is the
//! other kind, for SIP legs whose keys came in the SDP over TLS. The cipher work, the rollover
//! counter (RFC 3711 §3.3.1) and the replay lists (§3.3.2) are webrtc-rs's `rtc-srtp`, already
//! linked for browser legs; this module chooses suites, holds keys and bounds what a stranger
//! can make it keep.
//!
//! Sans-IO: packets in, packets out; the keys are the caller's (drawn by the shell).
//!
//! ```
//! use careline::media::srtp::{MasterKey, SrtpKeys, SrtpSuite, SrtpTransport};
//!
//! let suite = SrtpSuite::AesCm128HmacSha1_80;
//! let (a, b) = (MasterKey::new(&[1; 30]).unwrap(), MasterKey::new(&[2; 30]).unwrap());
//! let mut careline = SrtpTransport::new(SrtpKeys { suite, local: a.clone(), remote: b.clone() })?;
//! let mut phone = SrtpTransport::new(SrtpKeys { suite, local: b, remote: a })?;
//!
//! let mut packet = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7, 0xd5, 0xd5];
//! let plain = packet.clone();
//! careline.protect_rtp(&mut packet)?;
//! assert_eq!(packet.len(), plain.len() + 10, "80-bit tag");
//! let mut heard = Vec::new();
//! phone.unprotect_rtp(&packet, &mut heard)?;
//! assert_eq!(heard, plain);
//! assert!(phone.unprotect_rtp(&packet, &mut heard).is_err(), "a replay is refused");
//! # Ok::<(), careline::media::srtp::SrtpError>(())
//! ```

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use rtc::crypto::RTCCryptoProvider;
use rtc::srtp::context::Context;
use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc::srtp::protection_profile::ProtectionProfile;

/// The SRTCP tag of every HMAC-SHA1 suite, `_32` ones included (RFC 4568 §6.2.2).
const HMAC_RTCP_TAG_LEN: usize = 10;

/// The longest master key and salt of any suite (AES-256 key and 112-bit salt).
pub const MAX_MASTER_LEN: usize = 46;

/// Packets remembered per source for replay checks (RFC 3711 §3.3.2 asks for at least 64;
/// 128 is libsrtp's default and covers a jitter buffer's worth of reordering).
const REPLAY_WINDOW: usize = 128;

/// Sources a leg keeps cipher state for. A call has one, a few after re-INVITEs or a
/// transfer; a packet from a new source past the bound is refused.
const MAX_SOURCES: usize = 16;

/// The SRTP crypto suites Careline takes, strongest first (the order Careline prefers when
/// it chooses; as answerer it takes the offerer's order, RFC 4568 §7.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// RFC 7714.
    AeadAes256Gcm,
    /// RFC 7714.
    AeadAes128Gcm,
    /// RFC 6188.
    AesCm256HmacSha1_80,
    /// RFC 4568 §6.2.1, the suite every SDES phone has.
    AesCm128HmacSha1_80,
    /// RFC 4568 §6.2.2: a 32-bit tag on RTP (RTCP keeps 80 bits).
    AesCm128HmacSha1_32,
}

impl SrtpSuite {
    pub const ALL: [SrtpSuite; 5] = [
        SrtpSuite::AeadAes256Gcm,
        SrtpSuite::AeadAes128Gcm,
        SrtpSuite::AesCm256HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
    ];

    /// The name in `a=crypto` (RFC 4568 §10.3.2.1, RFC 6188 §7.1, RFC 7714 §14.2).
    pub fn name(self) -> &'static str {
        match self {
            SrtpSuite::AeadAes256Gcm => "AEAD_AES_256_GCM",
            SrtpSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            SrtpSuite::AesCm256HmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite an `a=crypto` line names, if Careline has it.
    pub fn from_name(name: &str) -> Option<SrtpSuite> {
        SrtpSuite::ALL.into_iter().find(|s| s.name() == name)
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            SrtpSuite::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
            SrtpSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpSuite::AesCm256HmacSha1_80 => ProtectionProfile::Aes256CmHmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }

    /// An AEAD suite (RFC 7714), which authenticates with its cipher, not with HMAC-SHA1.
    pub fn is_aead(self) -> bool {
        matches!(self, SrtpSuite::AeadAes256Gcm | SrtpSuite::AeadAes128Gcm)
    }

    /// Bytes of master key.
    pub fn key_len(self) -> usize {
        self.profile().key_len()
    }

    /// Bytes of master key and salt together: what an SDES `inline:` carries.
    pub fn master_len(self) -> usize {
        let profile = self.profile();
        profile.key_len() + profile.salt_len()
    }
}

impl std::fmt::Display for SrtpSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A master key followed by its master salt, as SDES carries them. Its `Debug` shows the
/// length only, so a key never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    bytes: [u8; MAX_MASTER_LEN],
    len: u8,
}

impl MasterKey {
    /// `None` past [`MAX_MASTER_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Option<MasterKey> {
        let mut key = MasterKey {
            bytes: [0; MAX_MASTER_LEN],
            len: u8::try_from(bytes.len()).ok()?,
        };
        key.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(key)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(<{} bytes>)", self.len)
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        // Best effort: the bytes do not outlive the key in this value.
        self.bytes.iter_mut().for_each(|b| *b = 0);
    }
}

/// One SDES-negotiated session: the suite, what Careline encrypts with, and what the peer
/// encrypts with (and Careline decrypts with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: SrtpSuite,
    pub local: MasterKey,
    pub remote: MasterKey,
}

#[derive(Debug, thiserror::Error)]
pub enum SrtpError {
    #[error("SRTP keys refused: {0}")]
    Keys(String),
    /// A packet that failed its tag, was a replay, was cut short or came from one source too
    /// many. The reason is for counters and debug logs; the packet is dropped either way.
    #[error("SRTP packet refused: {0}")]
    Packet(String),
}

/// One leg's SRTP: an outbound context keyed with Careline's key, and an inbound context
/// per source the peer sends from, keyed with the peer's key, each with its replay list.
///
/// A source gets its context only once one of its packets passed its tag (a packet from an
/// unknown source is checked with a fresh context that is kept only if it passes), and at
/// most [`MAX_SOURCES`] are kept: `rtc-srtp` makes per-source state before checking a tag, so
/// one shared context would grow without end under a stranger's packets with random SSRCs.
pub struct SrtpTransport {
    keys: SrtpKeys,
    outbound: Context,
    inbound: HashMap<u32, Context>,
}

fn provider() -> Result<&'static dyn RTCCryptoProvider, SrtpError> {
    static PROVIDER: OnceLock<Option<Arc<dyn RTCCryptoProvider>>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| rtc::crypto::default_provider().ok())
        .as_deref()
        .ok_or_else(|| SrtpError::Keys("no crypto provider linked".into()))
}

fn context(suite: SrtpSuite, key: &MasterKey, inbound: bool) -> Result<Context, SrtpError> {
    let profile = suite.profile();
    if key.as_bytes().len() != suite.master_len() {
        return Err(SrtpError::Keys(format!(
            "{suite} needs {} bytes of key and salt, not {}",
            suite.master_len(),
            key.as_bytes().len()
        )));
    }
    let (master, salt) = key.as_bytes().split_at(profile.key_len());
    let (rtp, rtcp) = if inbound {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    Context::new(master, salt, profile, rtp, rtcp, provider()?.crypto())
        .map_err(|e| SrtpError::Keys(format!("{suite}: {e}")))
}

impl SrtpTransport {
    pub fn new(keys: SrtpKeys) -> Result<SrtpTransport, SrtpError> {
        // Both keys are checked now, so a bad remote key fails the leg, not its first packet.
        context(keys.suite, &keys.remote, true)?;
        Ok(SrtpTransport {
            outbound: context(keys.suite, &keys.local, false)?,
            inbound: HashMap::new(),
            keys,
        })
    }

    pub fn keys(&self) -> &SrtpKeys {
        &self.keys
    }

    /// New keys from a re-offer (RFC 4568 §7.1.4): only the direction whose key changed
    /// starts a new context, so a stream that goes on under its old key keeps its rollover
    /// counter (after 65,536 packets, about 22 minutes of a call, a fresh context would get
    /// it wrong and every packet after would fail its tag).
    pub fn update(&mut self, keys: SrtpKeys) -> Result<(), SrtpError> {
        if keys == self.keys {
            return Ok(());
        }
        let suite_changed = keys.suite != self.keys.suite;
        if suite_changed || keys.remote != self.keys.remote {
            context(keys.suite, &keys.remote, true)?;
            self.inbound.clear();
        }
        if suite_changed || keys.local != self.keys.local {
            self.outbound = context(keys.suite, &keys.local, false)?;
        }
        self.keys = keys;
        Ok(())
    }

    /// Encrypts and signs an RTP packet in place.
    pub fn protect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let protected = self
            .outbound
            .encrypt_rtp(packet)
            .map_err(|e| SrtpError::Packet(e.to_string()))?;
        packet.clear();
        packet.extend_from_slice(&protected);
        Ok(())
    }

    /// Checks and decrypts one received SRTP packet into `plain`.
    pub fn unprotect_rtp(&mut self, datagram: &[u8], plain: &mut Vec<u8>) -> Result<(), SrtpError> {
        let ssrc = be_u32(datagram, 8).ok_or_else(|| too_short("an RTP header"))?;
        let decrypted = self.with_source(ssrc, |ctx| ctx.decrypt_rtp(datagram))?;
        plain.clear();
        plain.extend_from_slice(&decrypted);
        Ok(())
    }

    /// Encrypts and signs a compound RTCP packet (SRTCP, RFC 3711 §3.4) into `out`.
    pub fn protect_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        let protected = self
            .outbound
            .encrypt_rtcp(packet)
            .map_err(|e| SrtpError::Packet(e.to_string()))?;
        out.clear();
        out.extend_from_slice(&protected);
        Ok(())
    }

    /// Checks and decrypts one received SRTCP packet into `plain`.
    pub fn unprotect_rtcp(
        &mut self,
        datagram: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<(), SrtpError> {
        let ssrc = be_u32(datagram, 4).ok_or_else(|| too_short("an RTCP header"))?;
        // RFC 3711 §3.4: SRTCP is always authenticated; the E flag says whether it is also
        // encrypted, and Careline never agrees to unencrypted SRTCP (`UNENCRYPTED_SRTCP`
        // lines are passed over). rtc-srtp 0.21.1 hands back an AES-CM packet whose E flag
        // is clear without checking its tag (anyone could inject reports), and does not
        // notice a flipped E flag on an AEAD one, so the flag is checked here first. It is
        // the top bit of the word before the HMAC tag (RFC 3711 §3.4), or the last word for
        // AEAD suites, whose tag comes before it (RFC 7714 §9.3).
        let tag = if self.keys.suite.is_aead() {
            0
        } else {
            HMAC_RTCP_TAG_LEN
        };
        let flag = datagram.len().checked_sub(tag + 4);
        if flag
            .and_then(|at| datagram.get(at))
            .is_none_or(|b| b & 0x80 == 0)
        {
            return Err(SrtpError::Packet(
                "SRTCP without its E flag (unencrypted SRTCP is never agreed to)".into(),
            ));
        }
        let decrypted = self.with_source(ssrc, |ctx| ctx.decrypt_rtcp(datagram))?;
        plain.clear();
        plain.extend_from_slice(&decrypted);
        Ok(())
    }

    /// Runs `decrypt` with the source's context; a source not seen yet gets a fresh one,
    /// kept only when its first packet passes.
    fn with_source<T>(
        &mut self,
        ssrc: u32,
        decrypt: impl FnOnce(&mut Context) -> Result<T, rtc::shared::error::Error>,
    ) -> Result<T, SrtpError> {
        let refused = |e: rtc::shared::error::Error| SrtpError::Packet(e.to_string());
        if let Some(ctx) = self.inbound.get_mut(&ssrc) {
            return decrypt(ctx).map_err(refused);
        }
        if self.inbound.len() >= MAX_SOURCES {
            return Err(SrtpError::Packet(format!(
                "a source past the {MAX_SOURCES} this leg keeps state for"
            )));
        }
        let mut ctx = context(self.keys.suite, &self.keys.remote, true)?;
        let out = decrypt(&mut ctx).map_err(refused)?;
        self.inbound.insert(ssrc, ctx);
        Ok(out)
    }
}

fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn too_short(what: &str) -> SrtpError {
    SrtpError::Packet(format!("shorter than {what}"))
}

#[cfg(test)]
#[path = "srtp_tests.rs"]
mod tests;
