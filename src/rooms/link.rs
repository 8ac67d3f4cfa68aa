//! Invitation links: `/room/<room>?t=<token>`, where the token says which room, which
//! invitee and until when, signed with a key only the server has (HMAC-SHA256 under a key
//! derived from the key ring, [`crate::keys::KeyRing::index_key`]`("room-link")`).
//!
//! Signed rather than random-and-stored so that a link forged or altered is refused without a
//! database read, and a link is bound to its room: a token for one room opens no other. The
//! store still holds each invitee (a revoked invitation is refused although its signature
//! holds). Token form: `<room>.<invitee>.<expires, unix seconds>.<base64url MAC>`; the room
//! and invitee ids are hex, so the dots are unambiguous.
//!
//! A phone has no link: each invitee also has a visit PIN of [`PIN_DIGITS`] digits to key in
//! on the dial-in line ([`LinkSigner::pin`]), derived from the same key, room and invitee, so
//! it is shown again without being stored; the store keeps only its blind index to find the
//! invitation it opens.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::keys::Secret;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// How many digits a visit PIN has: a billion of them, against three tries per call (see
/// `docs/rooms.md`), so that guessing one is hopeless while keying it stays easy.
pub const PIN_DIGITS: usize = 9;

/// What a valid link grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub room: String,
    pub invitee: String,
    /// Unix seconds.
    pub expires: i64,
}

/// Why a link opens nothing. The message names no room and no invitee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this invitation link is not valid")]
    Forged,
    #[error("this invitation link has expired: ask the clinic for a new one")]
    Expired,
}

/// Signs and checks invitation links.
pub struct LinkSigner {
    key: Secret,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner")
    }
}

impl LinkSigner {
    pub fn new(key: Secret) -> LinkSigner {
        LinkSigner { key }
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.as_slice())
            .expect("HMAC takes keys of any length");
        mac.update(payload.as_bytes());
        mac
    }

    /// A token for `invitee` of `room`, valid until `expires` (unix seconds).
    pub fn sign(&self, room: &str, invitee: &str, expires: i64) -> String {
        let payload = format!("{room}.{invitee}.{expires}");
        let tag = B64.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// The visit PIN of `invitee` of `room`: [`PIN_DIGITS`] decimal digits.
    pub fn pin(&self, room: &str, invitee: &str) -> String {
        let tag = self
            .mac(&format!("pin.{room}.{invitee}"))
            .finalize()
            .into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag[..8]);
        // 2^64 is 18 billion billions: the modulo's bias is below one in a billion.
        let n = u64::from_be_bytes(first) % 10u64.pow(PIN_DIGITS as u32);
        format!("{n:0width$}", width = PIN_DIGITS)
    }

    /// What `token` grants at `now` (unix seconds). The signature is checked first (in
    /// constant time), so an altered expiry is forged, not expired.
    pub fn verify(&self, token: &str, now: i64) -> Result<Invitation, LinkError> {
        let (payload, tag) = token.rsplit_once('.').ok_or(LinkError::Forged)?;
        let tag = B64.decode(tag).map_err(|_| LinkError::Forged)?;
        self.mac(payload)
            .verify_slice(&tag)
            .map_err(|_| LinkError::Forged)?;
        let mut parts = payload.splitn(3, '.');
        let (Some(room), Some(invitee), Some(expires)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(LinkError::Forged);
        };
        let expires: i64 = expires.parse().map_err(|_| LinkError::Forged)?;
        if now >= expires {
            return Err(LinkError::Expired);
        }
        Ok(Invitation {
            room: room.to_string(),
            invitee: invitee.to_string(),
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn signer(byte: u8) -> LinkSigner {
        LinkSigner::new(Zeroizing::new([byte; 32]))
    }

    #[test]
    fn a_link_opens_its_room_until_it_expires() {
        let s = signer(7);
        let token = s.sign("r1a2", "i9", 1_000);
        let inv = s.verify(&token, 999).unwrap();
        assert_eq!(
            inv,
            Invitation {
                room: "r1a2".into(),
                invitee: "i9".into(),
                expires: 1_000
            }
        );
        assert_eq!(s.verify(&token, 1_000), Err(LinkError::Expired));
    }

    #[test]
    fn altered_or_foreign_links_are_forged() {
        let s = signer(7);
        let token = s.sign("r1a2", "i9", 1_000);
        // A later expiry, another room, another invitee: the signature no longer holds.
        for altered in [
            token.replace(".1000.", ".9999."),
            token.replace("r1a2", "r1a3"),
            token.replace("i9", "i8"),
        ] {
            assert_eq!(s.verify(&altered, 0), Err(LinkError::Forged), "{altered}");
        }
        assert_eq!(signer(8).verify(&token, 0), Err(LinkError::Forged));
        for junk in ["", ".", "a.b.c.d", "r.i.10.%%%", "r.i.x.AAAA", &token[..10]] {
            assert_eq!(s.verify(junk, 0), Err(LinkError::Forged), "{junk}");
        }
        let unsigned_tail = format!("{}.", token.rsplit_once('.').unwrap().0);
        assert_eq!(s.verify(&unsigned_tail, 0), Err(LinkError::Forged));
    }

    #[test]
    fn each_invitee_has_a_pin_of_nine_digits_that_the_key_alone_makes() {
        let s = signer(7);
        let pin = s.pin("r1a2", "i9");
        assert_eq!(pin.len(), PIN_DIGITS);
        assert!(pin.bytes().all(|b| b.is_ascii_digit()), "{pin}");
        assert_eq!(
            pin,
            s.pin("r1a2", "i9"),
            "the same again: shown again, not stored"
        );
        assert_ne!(pin, s.pin("r1a2", "i8"));
        assert_ne!(pin, s.pin("r1a3", "i9"));
        assert_ne!(pin, signer(8).pin("r1a2", "i9"));
        // Leading zeros are kept: still nine keys to press.
        let pins: Vec<String> = (0..200).map(|i| s.pin("r", &format!("i{i}"))).collect();
        assert!(pins.iter().all(|p| p.len() == PIN_DIGITS));
    }

    proptest::proptest! {
        #[test]
        fn no_string_panics_or_opens_a_room(s in ".{0,120}") {
            proptest::prop_assert!(signer(1).verify(&s, 0).is_err());
        }
    }
}
