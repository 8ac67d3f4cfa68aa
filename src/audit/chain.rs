//! The hash chain (sans-IO): how an entry's hash is computed and how a run of entries is
//! checked. Each hash is an HMAC-SHA256 (key from the key ring) over the entry's fields and
//! the previous entry's hash, so editing, deleting or reordering a row breaks the chain at that
//! row, and someone with write access to the database alone cannot recompute it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The `prev_hash` of the first entry.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored audit entry, as it is hashed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub patient_id: Option<String>,
    /// JSON object without PHI.
    pub detail: String,
    /// Sealed free text (keys.rs `seal`), if any.
    pub sealed: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// HMAC over every field but `hash`, each length-prefixed so no two entries hash alike by
/// moving bytes between fields.
pub(crate) fn entry_hash(key: &[u8; 32], e: &Entry) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    let mut field = |bytes: &[u8]| {
        mac.update(&(bytes.len() as u64).to_be_bytes());
        mac.update(bytes);
    };
    field(&e.seq.to_be_bytes());
    field(&e.at.to_be_bytes());
    field(e.actor.as_bytes());
    field(e.action.as_bytes());
    field(e.outcome.as_bytes());
    field(e.patient_id.as_deref().unwrap_or("\u{0}").as_bytes());
    field(e.detail.as_bytes());
    field(e.sealed.as_deref().unwrap_or("\u{0}").as_bytes());
    field(e.prev_hash.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Why the chain is broken at an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The entry's content does not match its hash (edited).
    Altered,
    /// The entry does not point at the hash of the entry before it.
    Unlinked,
    /// Entries before this one are missing (deleted), or the log does not start at 1.
    Gap { expected: i64 },
    /// The checkpoint kept outside the database names this entry, but the trail ends at
    /// `last`: the newest entries were deleted.
    TailCut { last: i64 },
    /// The entry is not the one the checkpoint outside the database recorded (the trail was
    /// replaced by another copy of itself).
    Replaced,
    /// The checkpoint file itself cannot be read.
    Checkpoint(String),
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::Altered => write!(
                f,
                "its content does not match its hash (the row was edited)"
            ),
            Break::Unlinked => write!(
                f,
                "it does not carry the hash of the entry before it (an entry was replaced or reordered)"
            ),
            Break::Gap { expected } => write!(
                f,
                "entry {expected} is missing before it (entries were deleted)"
            ),
            Break::TailCut { last } => write!(
                f,
                "the trail ends at entry {last}, but this entry was written (the checkpoint \
                 outside the database says so): the newest entries were deleted"
            ),
            Break::Replaced => write!(
                f,
                "it is not the entry the checkpoint outside the database recorded (the trail \
                 was replaced by another copy)"
            ),
            Break::Checkpoint(why) => write!(f, "the chain-head checkpoint: {why}"),
        }
    }
}

/// Checks entries fed in `seq` order, one at a time.
pub(crate) struct Verifier {
    key: [u8; 32],
    expected_seq: i64,
    prev_hash: String,
    pub checked: u64,
}

impl Verifier {
    pub(crate) fn new(key: [u8; 32]) -> Verifier {
        Verifier {
            key,
            expected_seq: 1,
            prev_hash: GENESIS.to_string(),
            checked: 0,
        }
    }

    /// `Err` at the first broken entry.
    pub(crate) fn feed(&mut self, e: &Entry) -> Result<(), Break> {
        if e.seq != self.expected_seq {
            return Err(Break::Gap {
                expected: self.expected_seq,
            });
        }
        if entry_hash(&self.key, e) != e.hash {
            return Err(Break::Altered);
        }
        if e.prev_hash != self.prev_hash {
            return Err(Break::Unlinked);
        }
        self.expected_seq += 1;
        self.prev_hash = e.hash.clone();
        self.checked += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(key: &[u8; 32], n: i64) -> Vec<Entry> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let mut e = Entry {
                    seq,
                    at: 1000 + seq,
                    actor: "alice".into(),
                    action: "patient.read".into(),
                    outcome: "success".into(),
                    patient_id: Some("p1".into()),
                    detail: "{}".into(),
                    sealed: None,
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = entry_hash(key, &e);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn verify(key: &[u8; 32], entries: &[Entry]) -> Result<(), (i64, Break)> {
        let mut v = Verifier::new(*key);
        for e in entries {
            v.feed(e).map_err(|b| (e.seq, b))?;
        }
        Ok(())
    }

    #[test]
    fn an_intact_chain_verifies_and_every_kind_of_tampering_is_named() {
        let key = [7u8; 32];
        let entries = chain(&key, 5);
        assert_eq!(verify(&key, &entries), Ok(()));

        let mut edited = entries.clone();
        edited[2].actor = "mallory".into();
        assert_eq!(verify(&key, &edited), Err((3, Break::Altered)));

        let mut deleted = entries.clone();
        deleted.remove(1);
        assert_eq!(verify(&key, &deleted), Err((3, Break::Gap { expected: 2 })));

        // Recomputing the hash without the key is not possible; with a wrong key it fails.
        let mut forged = entries.clone();
        forged[3].outcome = "denied".into();
        forged[3].hash = entry_hash(&[9u8; 32], &forged[3]);
        assert_eq!(verify(&key, &forged), Err((4, Break::Altered)));

        let mut swapped = entries.clone();
        swapped[4].prev_hash = entries[2].hash.clone();
        swapped[4].hash = entry_hash(&key, &swapped[4]);
        assert_eq!(verify(&key, &swapped), Err((5, Break::Unlinked)));
    }
}
