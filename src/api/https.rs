//! HTTPS for the API: the rustls configuration (ring provider) the listener in
//! [`super::serve`] completes handshakes with. The certificate is the configured one or a
//! self-signed one generated in the data dir on first start.

use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("HTTPS certificate: {0}")]
    Cert(#[from] crate::sip::tls::TlsError),
    #[error("HTTPS certificate {0}: {1}")]
    Pem(String, String),
    #[error("HTTPS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Reads `cert`/`key`, or reads or creates `<data_dir>/tls/sip-{cert,key}.pem` (the same
/// self-signed pair SIP over TLS uses, so an operator trusts one certificate).
pub(crate) fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
) -> Result<(Arc<rustls::ServerConfig>, String), HttpsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pair = crate::sip::tls::load_or_generate(cert, key, data_dir)?;
    let origin = pair.origin.display().to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pair.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| HttpsError::Pem(origin.clone(), e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&pair.key_pem)
        .map_err(|e| HttpsError::Pem(origin.clone(), e.to_string()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), origin))
}
