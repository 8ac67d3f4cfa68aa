//! SDES (RFC 4568): the `a=crypto` attribute, which carries SRTP master keys inside SDP. The
//! keys are only as secret as the signalling, so Careline takes and gives them over TLS only
//! unless the operator says otherwise ([`LocalSrtp::keys_allowed`]).
//!
//! Grammar (RFC 4568 §9.1): `a=crypto:<tag> <suite> inline:<base64 key||salt>[|<lifetime>]
//! [|<MKI>:<length>][;inline:...] [<session-param> ...]`. Careline takes a line with one key
//! and no MKI (every packet would carry the MKI, and one key per direction is all a call
//! needs), a suite of [`SrtpSuite`], and no session parameter that would weaken or change the
//! suite (`UNENCRYPTED_SRTP`, `UNAUTHENTICATED_SRTP`, `KDR`, `FEC_ORDER`, `FEC_KEY`; only the
//! window size hint `WSH` is accepted, and ignored). A key lifetime is accepted and not
//! enforced: a call ends long before 2^31 packets, and RFC 3711's own 2^48 limit is checked
//! by the SRTP context.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use super::Media;
use crate::media::srtp::{MasterKey, SrtpKeys, SrtpSuite};

/// Careline's SRTP side of one leg's offer/answer (absent: SRTP is off and an `RTP/SAVP`
/// offer is refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSrtp {
    /// Plain RTP is refused (`[rtp] srtp = "require"`): 488.
    pub required: bool,
    /// This SDP travels over TLS, or the operator allows keys over plain signalling
    /// (`[rtp] srtp_keys_without_tls`). Otherwise keys offered are refused, never used.
    pub keys_allowed: bool,
    /// The suites Careline takes (`[rtp] srtp_suites`); a line with another is passed over.
    pub suites: Vec<SrtpSuite>,
    /// Careline's secret for this leg ([`crate::media::srtp::MAX_MASTER_LEN`] random bytes,
    /// drawn by the caller); each suite's master key and salt are derived from it
    /// ([`LocalSrtp::key_for`]).
    pub key: MasterKey,
}

impl LocalSrtp {
    /// The master key and salt Careline uses with `suite`: HKDF-SHA256 (RFC 5869) of the
    /// leg's secret with the suite's name as info, so an offer listing several suites gives
    /// each its own key (RFC 4568 §6.1 asks that keys not be shared between suites) and an
    /// answer's suite finds the same key again.
    pub fn key_for(&self, suite: SrtpSuite) -> Option<MasterKey> {
        struct Len(usize);
        impl ring::hkdf::KeyType for Len {
            fn len(&self) -> usize {
                self.0
            }
        }
        let len = suite.master_len();
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"careline sdes")
            .extract(self.key.as_bytes());
        let info = [suite.name().as_bytes()];
        let okm = prk.expand(&info, Len(len)).ok()?;
        let mut bytes = [0u8; crate::media::srtp::MAX_MASTER_LEN];
        let out = bytes.get_mut(..len)?;
        okm.fill(out).ok()?;
        let key = MasterKey::new(out);
        bytes.fill(0);
        key
    }
}

/// One `a=crypto` line Careline can use.
pub(super) struct Crypto {
    pub(super) tag: u32,
    pub(super) suite: SrtpSuite,
    pub(super) key: MasterKey,
}

/// Reads one `a=crypto` value; `Err` says why Careline passes it over.
pub(super) fn parse_crypto(value: &str) -> Result<Crypto, String> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(tag), Some(suite), Some(key_params)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("fewer than three fields".into());
    };
    let tag = (tag.len() <= 9 && tag.bytes().all(|b| b.is_ascii_digit()))
        .then(|| tag.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| "a tag that is not 1-9 digits".to_string())?;
    let suite = SrtpSuite::from_name(suite).ok_or_else(|| format!("suite {}", clip(suite)))?;
    if key_params.contains(';') {
        return Err(format!("{suite} with several keys"));
    }
    let inline = key_params
        .strip_prefix("inline:")
        .ok_or_else(|| format!("{suite} with a key method other than inline"))?;
    let mut parts = inline.split('|');
    let encoded = parts.next().unwrap_or_default();
    for part in parts {
        if part.contains(':') {
            return Err(format!("{suite} with an MKI"));
        }
        let lifetime_ok = match part.strip_prefix("2^") {
            Some(exp) => exp.parse::<u8>().is_ok_and(|e| e <= 48),
            None => !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()),
        };
        if !lifetime_ok {
            return Err(format!("{suite} with a malformed key lifetime"));
        }
    }
    let bytes = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| format!("{suite} with a key that is not base64"))?;
    if bytes.len() != suite.master_len() {
        return Err(format!(
            "{suite} with {} bytes of key and salt (it takes {})",
            bytes.len(),
            suite.master_len()
        ));
    }
    let key = MasterKey::new(&bytes).ok_or_else(|| format!("{suite} key too long"))?;
    for param in fields {
        if !param.starts_with("WSH=") {
            return Err(format!("{suite} with session parameter {}", clip(param)));
        }
    }
    Ok(Crypto { tag, suite, key })
}

/// At most 32 characters of a peer's token in a reason phrase.
fn clip(token: &str) -> String {
    token.chars().take(32).collect()
}

/// What Careline does about SRTP for one offered audio stream: `Ok(None)` plain RTP,
/// `Ok(Some((tag, keys)))` SRTP with the offer's line `tag`, `Err` the reason the stream
/// cannot be taken (a 488's reason phrase).
///
/// `RTP/SAVP` offers are SDES's own; `RTP/AVP` offers with `a=crypto` lines are "best
/// effort" SRTP, which phones and PBXs (baresip's `srtp`, Asterisk, FreeSWITCH) send to a
/// peer that may not have it: Careline answers those encrypted when it may take keys, else
/// plain.
pub(super) fn choose_srtp(
    media: &Media<'_>,
    secure_profile: bool,
    local: Option<&LocalSrtp>,
) -> Result<Option<(u32, SrtpKeys)>, String> {
    let line = media.line;
    let Some(local) = local else {
        return if secure_profile {
            Err(format!(
                "m=audio {} (line {line}): SRTP is off here ([rtp] srtp = \"off\")",
                media.proto
            ))
        } else {
            Ok(None)
        };
    };
    let plain_refused = || {
        Err(format!(
            "m=audio {} (line {line}) without SRTP keys Careline can use: plain RTP is \
             refused here ([rtp] srtp = \"require\")",
            media.proto
        ))
    };
    if !local.keys_allowed {
        if secure_profile {
            return Err(format!(
                "SRTP keys (a=crypto, line {line}) arrived over signalling that is not TLS; \
                 Careline takes them over TLS only (a sips: URI or transport=tls)"
            ));
        }
        return if local.required {
            plain_refused()
        } else {
            Ok(None)
        };
    }
    let mut passed_over: Vec<String> = Vec::new();
    for value in media.attrs("crypto") {
        match parse_crypto(value) {
            Ok(crypto) if !local.suites.contains(&crypto.suite) => {
                passed_over.push(format!("{} (not in [rtp] srtp_suites)", crypto.suite));
            }
            Ok(crypto) => {
                let Some(ours) = local.key_for(crypto.suite) else {
                    continue;
                };
                let keys = SrtpKeys {
                    suite: crypto.suite,
                    local: ours,
                    remote: crypto.key,
                };
                return Ok(Some((crypto.tag, keys)));
            }
            Err(why) => passed_over.push(why),
        }
    }
    if secure_profile {
        let offered = if passed_over.is_empty() {
            "no a=crypto line".to_string()
        } else {
            passed_over.join(", ")
        };
        let suites: Vec<&str> = local.suites.iter().map(|s| s.name()).collect();
        return Err(format!(
            "m=audio {} (line {line}): no usable SRTP key (offered: {offered}); Careline \
             takes {} with one inline key and no MKI",
            media.proto,
            suites.join(", ")
        ));
    }
    if local.required {
        return plain_refused();
    }
    Ok(None)
}

/// Careline's offer's `a=crypto` lines: one per suite it takes, in its order, tags from 1,
/// each with its own key. Empty when keys may not be given here.
pub(super) fn offered_cryptos(local: &LocalSrtp) -> String {
    if !local.keys_allowed {
        return String::new();
    }
    let mut out = String::new();
    for (i, suite) in local.suites.iter().enumerate() {
        if let Some(key) = local.key_for(*suite) {
            out.push_str(&crypto_attribute(i as u32 + 1, *suite, &key));
        }
    }
    out
}

/// An `a=crypto` line with Careline's key: in an answer, the offer's tag and suite.
pub(super) fn crypto_attribute(tag: u32, suite: SrtpSuite, key: &MasterKey) -> String {
    format!(
        "a=crypto:{tag} {suite} inline:{}\r\n",
        STANDARD.encode(key.as_bytes())
    )
}
