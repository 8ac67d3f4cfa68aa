//! Certificates for SIP over TLS: the operator's, or a self-signed one made on first start
//! and kept in the data dir so its fingerprint stays the same across restarts.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM {what} found")]
    NoPem { path: PathBuf, what: &'static str },
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
}

/// PEM certificate chain and private key.
pub struct CertPair {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Where they came from, for the start-up log.
    pub origin: PathBuf,
}

/// Reads the configured pair, or reads/creates `data_dir/tls/sip-{cert,key}.pem`.
pub(crate) fn load_or_generate(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
) -> Result<CertPair, TlsError> {
    if let (Some(cert), Some(key)) = (cert, key) {
        return read_pair(cert, key);
    }
    let dir = data_dir.join("tls");
    let cert = dir.join("sip-cert.pem");
    let key = dir.join("sip-key.pem");
    if cert.exists() && key.exists() {
        return read_pair(&cert, &key);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io {
            path: path.clone(),
            source,
        }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert_pem = generated.cert.pem().into_bytes();
    let key_pem = generated.signing_key.serialize_pem().into_bytes();
    write_private(&key, &key_pem).map_err(io(&key))?;
    std::fs::write(&cert, &cert_pem).map_err(io(&cert))?;
    Ok(CertPair {
        cert_pem,
        key_pem,
        origin: dir,
    })
}

fn read_pair(cert: &Path, key: &Path) -> Result<CertPair, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    if !String::from_utf8_lossy(&cert_pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(TlsError::NoPem {
            path: cert.to_path_buf(),
            what: "certificate",
        });
    }
    if !String::from_utf8_lossy(&key_pem).contains("PRIVATE KEY-----") {
        return Err(TlsError::NoPem {
            path: key.to_path_buf(),
            what: "private key",
        });
    }
    Ok(CertPair {
        cert_pem,
        key_pem,
        origin: cert.to_path_buf(),
    })
}

/// Creates the file readable by its owner only (0600) before any secret is written to it.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_generate(None, None, dir.path()).unwrap();
        let b = load_or_generate(None, None, dir.path()).unwrap();
        assert_eq!(
            a.cert_pem, b.cert_pem,
            "second start reuses the certificate"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls/sip-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn configured_files_that_are_not_pem_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "hello").unwrap();
        std::fs::write(&key, "hello").unwrap();
        let err = load_or_generate(Some(&cert), Some(&key), dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("c.pem") && err.contains("certificate"),
            "{err}"
        );
    }
}
