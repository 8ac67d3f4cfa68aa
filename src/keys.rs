//! The key ring: master keys that wrap per-object data keys (recordings, patient records),
//! and a separate, never-rotated secret for blind indexes.
//!
//! Envelope encryption: each object gets a fresh random data key; only its wrapped form
//! (AES-256-GCM under a master key, bound to the object by associated data) is stored. Rotation
//! creates a new master key and re-wraps data keys (a few bytes each) without touching the data.
//! Blind indexes (keyed HMACs for lookups such as "which patient has this phone number") must
//! give the same value for ever, so they derive from their own secret, not from a master key.
//!
//! On disk (`<data_dir>/keys/`, 0700): `<id>.key` (hex, 0600) per master key, `current` naming
//! the active one, `index.secret` (hex, 0600). A master key id is derived from the key itself
//! (`mk-` + 16 hex digits of its SHA-256), so an id always names exactly one key. Keys can also
//! come from the environment (`CARELINE_MASTER_KEY`, `CARELINE_INDEX_KEY`, 64 hex digits), for
//! deployments that keep secrets out of the data dir.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A 256-bit secret that is wiped from memory when dropped.
pub type Secret = Zeroizing<[u8; 32]>;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a 256-bit key written as 64 hex digits")]
    BadKeyFile(String),
    #[error(
        "master key {0} is not in the key ring (was it removed, or is CARELINE_MASTER_KEY unset?)"
    )]
    MissingKey(String),
    #[error(
        "data key does not unwrap under master key {0}: wrong key, or the wrapped key or its context was altered"
    )]
    Unwrap(String),
    #[error("wrapped key `{0}` is not in the form id:nonce:ciphertext")]
    BadWrapped(String),
}

/// A data key wrapped under a master key.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub key_id: String,
    pub nonce: [u8; 12],
    /// The 32-byte data key encrypted, plus the 16-byte GCM tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({})", self.key_id)
    }
}

/// `id:nonce-hex:ciphertext-hex`, the form stored in indexes and database columns.
impl fmt::Display for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.key_id,
            hex::encode(self.nonce),
            hex::encode(&self.ciphertext)
        )
    }
}

impl std::str::FromStr for WrappedKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<WrappedKey, KeyError> {
        let bad = || KeyError::BadWrapped(s.chars().take(80).collect());
        let mut parts = s.split(':');
        let (Some(id), Some(nonce), Some(ct), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let nonce: [u8; 12] = hex::decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(bad)?;
        let ciphertext = hex::decode(ct).map_err(|_| bad())?;
        if id.is_empty() || ciphertext.len() != 48 {
            return Err(bad());
        }
        Ok(WrappedKey {
            key_id: id.to_string(),
            nonce,
            ciphertext,
        })
    }
}

pub struct KeyRing {
    dir: PathBuf,
    /// Behind a lock because `careline keys rotate` (another process) changes the folder
    /// under a running server: [`KeyRing::refresh`] picks the new current key up.
    masters: RwLock<Masters>,
    /// `CARELINE_MASTER_KEY` was given: its key stays current whatever the folder says.
    pinned: bool,
    index_secret: Secret,
}

struct Masters {
    keys: BTreeMap<String, Secret>,
    current: String,
}

/// Where the secrets come from besides the key folder.
#[derive(Default)]
pub struct Supplied {
    /// `CARELINE_MASTER_KEY`: becomes (and stays) the current master key.
    pub master: Option<String>,
    /// `CARELINE_INDEX_KEY`: the blind-index secret.
    pub index: Option<String>,
}

impl Supplied {
    pub fn from_env() -> Supplied {
        Supplied {
            master: std::env::var("CARELINE_MASTER_KEY").ok(),
            index: std::env::var("CARELINE_INDEX_KEY").ok(),
        }
    }
}

impl KeyRing {
    /// Opens `<data_dir>/keys`, creating the folder, a first master key and the index secret
    /// on first start.
    pub fn open(data_dir: &Path, supplied: Supplied) -> Result<KeyRing, KeyError> {
        let dir = data_dir.join("keys");
        create_private_dir(&dir)?;
        let mut masters = BTreeMap::new();
        let entries = std::fs::read_dir(&dir).map_err(io(&dir))?;
        for entry in entries {
            let path = entry.map_err(io(&dir))?.path();
            if path.extension().is_some_and(|e| e == "key") {
                let key = read_hex_key(&path)?;
                masters.insert(key_id(&key), key);
            }
        }
        let mut current = std::fs::read_to_string(dir.join("current"))
            .ok()
            .map(|s| s.trim().to_string());
        if let Some(hex_key) = &supplied.master {
            let key = parse_hex_key(hex_key)
                .ok_or_else(|| KeyError::BadKeyFile("CARELINE_MASTER_KEY".into()))?;
            let id = key_id(&key);
            masters.insert(id.clone(), key);
            current = Some(id);
        }
        let current = match current.filter(|c| masters.contains_key(c)) {
            Some(c) => c,
            None => match masters.keys().next_back() {
                Some(id) if masters.len() == 1 => id.clone(),
                _ => {
                    let key = random_secret();
                    let id = write_key(&dir, &key)?;
                    masters.insert(id.clone(), key);
                    write_private(&dir.join("current"), id.as_bytes())?;
                    id
                }
            },
        };
        let index_secret = match &supplied.index {
            Some(h) => {
                parse_hex_key(h).ok_or_else(|| KeyError::BadKeyFile("CARELINE_INDEX_KEY".into()))?
            }
            None => {
                let path = dir.join("index.secret");
                if path.exists() {
                    read_hex_key(&path)?
                } else {
                    let s = random_secret();
                    write_private(&path, hex::encode(*s).as_bytes())?;
                    s
                }
            }
        };
        Ok(KeyRing {
            dir,
            masters: RwLock::new(Masters {
                keys: masters,
                current,
            }),
            pinned: supplied.master.is_some(),
            index_secret,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Masters> {
        self.masters.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The id of the master key new data keys are wrapped under.
    pub fn current_id(&self) -> String {
        self.read().current.clone()
    }

    pub fn ids(&self) -> Vec<String> {
        self.read().keys.keys().cloned().collect()
    }

    /// Re-reads the key folder: keys added since are taken in, and the current key follows
    /// the folder's `current` (unless `CARELINE_MASTER_KEY` pins it). Returns the new current
    /// id when it changed. A running server calls this periodically, so data keys wrapped
    /// after `careline keys rotate` use the new key without a restart (otherwise they would
    /// stay under the old key, which the operator is about to retire).
    pub fn refresh(&self) -> Result<Option<String>, KeyError> {
        let mut found = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(io(&self.dir))?;
        for entry in entries {
            let path = entry.map_err(io(&self.dir))?.path();
            if path.extension().is_some_and(|e| e == "key") {
                found.push(path);
            }
        }
        let named = std::fs::read_to_string(self.dir.join("current"))
            .ok()
            .map(|s| s.trim().to_string());
        let mut m = self.masters.write().unwrap_or_else(|p| p.into_inner());
        for path in found {
            // A key file being written by `keys rotate` may be read half-done: skip it until
            // it parses (its id is its hash, so a partial read never enters under its name).
            if let Ok(key) = read_hex_key(&path) {
                let id = key_id(&key);
                m.keys.entry(id).or_insert(key);
            }
        }
        match named {
            Some(id) if !self.pinned && id != m.current && m.keys.contains_key(&id) => {
                m.current = id.clone();
                Ok(Some(id))
            }
            _ => Ok(None),
        }
    }

    /// A fresh random data key.
    pub fn new_data_key() -> Secret {
        random_secret()
    }

    /// Wraps `data_key` under the current master key. `context` (e.g. a recording id) is bound
    /// as associated data: the wrapped key only unwraps for the same context, so a wrapped key
    /// copied onto another object is detected.
    pub fn wrap(&self, data_key: &[u8; 32], context: &[u8]) -> WrappedKey {
        self.wrap_under_nonce(data_key, context, rand::random())
    }

    /// [`KeyRing::wrap`] with the caller's nonce (drawn at random by the caller, never
    /// repeated under one master key), for code that takes its randomness as an input.
    pub fn wrap_under_nonce(
        &self,
        data_key: &[u8; 32],
        context: &[u8],
        nonce: [u8; 12],
    ) -> WrappedKey {
        let m = self.read();
        Self::wrap_with(&m, &m.current, data_key, context, nonce)
            .expect("the current key is in the ring")
    }

    fn wrap_with(
        m: &Masters,
        id: &str,
        data_key: &[u8; 32],
        context: &[u8],
        nonce: [u8; 12],
    ) -> Result<WrappedKey, KeyError> {
        let master = m
            .keys
            .get(id)
            .ok_or_else(|| KeyError::MissingKey(id.to_string()))?;
        let cipher = Aes256Gcm::new_from_slice(master.as_slice())
            .map_err(|_| KeyError::Unwrap(id.to_string()))?;
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: data_key,
                    aad: context,
                },
            )
            .map_err(|_| KeyError::Unwrap(id.to_string()))?;
        Ok(WrappedKey {
            key_id: id.to_string(),
            nonce,
            ciphertext,
        })
    }

    pub fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<Secret, KeyError> {
        let m = self.read();
        let master = m
            .keys
            .get(&wrapped.key_id)
            .ok_or_else(|| KeyError::MissingKey(wrapped.key_id.clone()))?;
        let cipher = Aes256Gcm::new_from_slice(master.as_slice())
            .map_err(|_| KeyError::Unwrap(wrapped.key_id.clone()))?;
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &Nonce::from(wrapped.nonce),
                    Payload {
                        msg: &wrapped.ciphertext,
                        aad: context,
                    },
                )
                .map_err(|_| KeyError::Unwrap(wrapped.key_id.clone()))?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(KeyError::Unwrap(wrapped.key_id.clone()));
        }
        key.copy_from_slice(&plain);
        Ok(key)
    }

    /// Re-wraps under the current master key (after [`KeyRing::rotate`]).
    pub fn rewrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<WrappedKey, KeyError> {
        let key = self.unwrap(wrapped, context)?;
        let m = self.read();
        Self::wrap_with(&m, &m.current, &key, context, rand::random())
    }

    /// Creates a new master key, makes it current and returns its id. Old keys stay in the
    /// ring (data keys wrapped under them still open) until every data key was re-wrapped.
    pub fn rotate(&mut self) -> Result<String, KeyError> {
        let key = random_secret();
        let id = write_key(&self.dir, &key)?;
        write_private(&self.dir.join("current"), id.as_bytes())?;
        let m = self.masters.get_mut().unwrap_or_else(|p| p.into_inner());
        m.keys.insert(id.clone(), key);
        m.current = id.clone();
        Ok(id)
    }

    /// A key for one blind index or keyed hash (`purpose`, e.g. `"patient-phone"`), stable
    /// across master key rotations (HKDF-SHA256 from the index secret).
    pub fn index_key(&self, purpose: &str) -> Secret {
        let hk = Hkdf::<Sha256>::new(
            Some(b"careline blind index v1"),
            self.index_secret.as_slice(),
        );
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
        let _ = hk.expand(purpose.as_bytes(), out.as_mut_slice());
        out
    }
}

/// Sealed records: small values (a FHIR resource, a contact note) encrypted with their own data
/// key, stored as one string, and keyed HMACs for blind indexes.
///
/// Form of a sealed value: `<wrapped data key>.<base64(nonce || AES-256-GCM ciphertext)>`. The
/// `context` (e.g. `"fhir/Condition/123"`) is bound twice, to the wrapped key and as the
/// ciphertext's associated data, so a sealed value copied onto another row does not open.
impl KeyRing {
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        use base64::Engine;
        let data_key = KeyRing::new_data_key();
        let wrapped = self.wrap(&data_key, context.as_bytes());
        // A fresh key per value: the random nonce can never repeat under one key.
        let cipher = Aes256Gcm::new_from_slice(data_key.as_slice()).expect("32-byte key");
        let nonce: [u8; 12] = rand::random();
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut body = Vec::with_capacity(12 + ciphertext.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&ciphertext);
        format!(
            "{wrapped}.{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(body)
        )
    }

    /// Opens what [`KeyRing::seal`] made for the same `context`.
    pub fn open_sealed(&self, context: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        use base64::Engine;
        let bad = || KeyError::BadWrapped(sealed.chars().take(80).collect());
        let (wrapped, body) = sealed.split_once('.').ok_or_else(bad)?;
        let wrapped: WrappedKey = wrapped.parse()?;
        let body = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(body)
            .map_err(|_| bad())?;
        if body.len() < 12 + 16 {
            return Err(bad());
        }
        let data_key = self.unwrap(&wrapped, context.as_bytes())?;
        let cipher = Aes256Gcm::new_from_slice(data_key.as_slice())
            .map_err(|_| KeyError::Unwrap(wrapped.key_id.clone()))?;
        let (nonce, ciphertext) = body.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| bad())?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Unwrap(wrapped.key_id.clone()))
    }

    /// Whether a sealed value's data key is wrapped under the current master key already
    /// (a rotation has nothing to do for it).
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed
            .split_once('.')
            .and_then(|(w, _)| w.parse::<WrappedKey>().ok())
            .is_some_and(|w| w.key_id == self.current_id())
    }

    /// Re-wraps a sealed value's data key under the current master key (after a rotation);
    /// the ciphertext is kept as it is.
    pub fn reseal(&self, context: &str, sealed: &str) -> Result<String, KeyError> {
        let bad = || KeyError::BadWrapped(sealed.chars().take(80).collect());
        let (wrapped, body) = sealed.split_once('.').ok_or_else(bad)?;
        let wrapped: WrappedKey = wrapped.parse()?;
        let rewrapped = self.rewrap(&wrapped, context.as_bytes())?;
        Ok(format!("{rewrapped}.{body}"))
    }

    /// A blind index value: HMAC-SHA256 of `value` under [`KeyRing::index_key`]`(purpose)`, in
    /// hex. Equal inputs give equal outputs for ever (rotation does not move them); the
    /// database learns only which rows share a value, never the value.
    pub fn blind_index(&self, purpose: &str, value: &str) -> String {
        use hmac::{Hmac, Mac};
        let key = self.index_key(purpose);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_slice())
            .expect("HMAC takes keys of any length");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// How often a running server re-reads the key folder ([`KeyRing::refresh`]): a rotation
/// waits twice this long before its second pass, by when the server wraps under the new key.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn io(path: &Path) -> impl Fn(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn key_id(key: &[u8; 32]) -> String {
    let digest = Sha256::digest(key);
    format!("mk-{}", hex::encode(&digest[..8]))
}

fn random_secret() -> Secret {
    Zeroizing::new(rand::random())
}

fn parse_hex_key(text: &str) -> Option<Secret> {
    let bytes = Zeroizing::new(hex::decode(text.trim()).ok()?);
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return None;
    }
    key.copy_from_slice(&bytes);
    Some(key)
}

fn read_hex_key(path: &Path) -> Result<Secret, KeyError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io(path))?);
    parse_hex_key(&text).ok_or_else(|| KeyError::BadKeyFile(path.display().to_string()))
}

fn write_key(dir: &Path, key: &[u8; 32]) -> Result<String, KeyError> {
    let id = key_id(key);
    write_private(&dir.join(format!("{id}.key")), hex::encode(key).as_bytes())?;
    Ok(id)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), KeyError> {
    crate::sip::tls::write_private(path, data).map_err(io(path))
}

fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_ring_follows_a_rotation_made_by_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let server = KeyRing::open(dir.path(), Supplied::default()).unwrap();
        let old = server.current_id();
        let before = server.wrap(&[7u8; 32], b"ctx");
        assert_eq!(server.refresh().unwrap(), None, "nothing changed yet");

        // `careline keys rotate`, as its own process would do it.
        let mut cli = KeyRing::open(dir.path(), Supplied::default()).unwrap();
        let new = cli.rotate().unwrap();
        assert_ne!(new, old);

        assert_eq!(server.refresh().unwrap().as_deref(), Some(new.as_str()));
        assert_eq!(server.current_id(), new);
        assert_eq!(server.wrap(&[7u8; 32], b"ctx").key_id, new);
        // What was wrapped before still opens: the old key stays in the ring.
        assert_eq!(*server.unwrap(&before, b"ctx").unwrap(), [7u8; 32]);
        assert_eq!(server.ids().len(), 2);

        // A key pinned by CARELINE_MASTER_KEY stays current whatever the folder says.
        let pinned = KeyRing::open(
            dir.path(),
            Supplied {
                master: Some(hex::encode([9u8; 32])),
                index: None,
            },
        )
        .unwrap();
        let pin = pinned.current_id();
        cli.rotate().unwrap();
        assert_eq!(pinned.refresh().unwrap(), None);
        assert_eq!(pinned.current_id(), pin);
    }

    #[test]
    fn first_open_creates_private_keys_and_reopening_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), Supplied::default()).unwrap();
        let id = ring.current_id();
        assert!(id.starts_with("mk-"));
        let again = KeyRing::open(dir.path(), Supplied::default()).unwrap();
        assert_eq!(again.current_id(), id);
        assert_eq!(*ring.index_key("phone"), *again.index_key("phone"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join("keys")), 0o700);
            assert_eq!(mode(&dir.path().join(format!("keys/{id}.key"))), 0o600);
            assert_eq!(mode(&dir.path().join("keys/index.secret")), 0o600);
        }
    }

    #[test]
    fn wrapped_keys_open_only_in_their_context_and_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::open(dir.path(), Supplied::default()).unwrap();
        let dek = KeyRing::new_data_key();
        let wrapped = ring.wrap(&dek, b"rec-1");
        let parsed: WrappedKey = wrapped.to_string().parse().unwrap();
        assert_eq!(parsed, wrapped);
        assert_eq!(*ring.unwrap(&parsed, b"rec-1").unwrap(), *dek);
        assert!(
            matches!(ring.unwrap(&parsed, b"rec-2"), Err(KeyError::Unwrap(_))),
            "bound to its object"
        );

        let old = ring.current_id();
        let index_before = ring.index_key("phone");
        let new = ring.rotate().unwrap();
        assert_ne!(old, new);
        assert_eq!(
            *ring.unwrap(&wrapped, b"rec-1").unwrap(),
            *dek,
            "old wraps still open"
        );
        let rewrapped = ring.rewrap(&wrapped, b"rec-1").unwrap();
        assert_eq!(rewrapped.key_id, new);
        assert_eq!(*ring.unwrap(&rewrapped, b"rec-1").unwrap(), *dek);
        assert_eq!(
            *ring.index_key("phone"),
            *index_before,
            "blind indexes do not move with rotation"
        );
        let reopened = KeyRing::open(dir.path(), Supplied::default()).unwrap();
        assert_eq!(reopened.current_id(), new);
    }

    #[test]
    fn a_missing_or_wrong_master_key_is_named() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ring_a = KeyRing::open(a.path(), Supplied::default()).unwrap();
        let ring_b = KeyRing::open(b.path(), Supplied::default()).unwrap();
        let wrapped = ring_a.wrap(&KeyRing::new_data_key(), b"x");
        let err = ring_b.unwrap(&wrapped, b"x").unwrap_err();
        assert!(
            matches!(&err, KeyError::MissingKey(id) if *id == wrapped.key_id),
            "{err}"
        );
        let mut forged = wrapped.clone();
        forged.key_id = ring_b.current_id();
        assert!(matches!(
            ring_b.unwrap(&forged, b"x"),
            Err(KeyError::Unwrap(_))
        ));
        let mut flipped = wrapped.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(matches!(
            ring_a.unwrap(&flipped, b"x"),
            Err(KeyError::Unwrap(_))
        ));
    }

    #[test]
    fn supplied_keys_take_over_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let hex_key = "11".repeat(32);
        let ring = KeyRing::open(
            dir.path(),
            Supplied {
                master: Some(hex_key.clone()),
                index: Some("22".repeat(32)),
            },
        )
        .unwrap();
        assert_eq!(ring.current_id(), key_id(&[0x11; 32]));
        assert!(
            !dir.path()
                .join(format!("keys/{}.key", ring.current_id()))
                .exists(),
            "supplied keys are not written to disk"
        );
        let err = KeyRing::open(
            dir.path(),
            Supplied {
                master: Some("abc".into()),
                index: None,
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("CARELINE_MASTER_KEY"), "{err}");
        assert!("garbage".parse::<WrappedKey>().is_err());
    }

    #[test]
    fn sealed_values_open_only_in_their_context_and_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = KeyRing::open(dir.path(), Supplied::default()).unwrap();
        let sealed = ring.seal("fhir/Patient/1", b"Alexis Toy");
        assert!(!sealed.contains("Alexis"));
        assert_eq!(
            &**ring.open_sealed("fhir/Patient/1", &sealed).unwrap(),
            b"Alexis Toy"
        );
        assert!(ring.open_sealed("fhir/Patient/2", &sealed).is_err());
        ring.rotate().unwrap();
        let resealed = ring.reseal("fhir/Patient/1", &sealed).unwrap();
        assert!(resealed.starts_with(&ring.current_id()));
        assert_eq!(
            &**ring.open_sealed("fhir/Patient/1", &resealed).unwrap(),
            b"Alexis Toy"
        );
        assert_eq!(
            ring.blind_index("phone", "+15550001111"),
            ring.blind_index("phone", "+15550001111")
        );
        assert_ne!(
            ring.blind_index("phone", "+15550001111"),
            ring.blind_index("mrn", "+15550001111")
        );
    }
}
