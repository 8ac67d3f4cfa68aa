//! The one small HTTP client the flow shells share (Lambda endpoints, the HTTP TTS engine):
//! hyper over plain TCP or rustls (ring provider, system roots), JSON POST with a deadline
//! and a response size cap.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("`{0}` is not a valid http(s) URL")]
    BadUrl(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
}

#[derive(Clone)]
pub struct HttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient")
    }
}

/// A response: status, content type and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl HttpClient {
    /// Builds the client. HTTPS uses the ring provider explicitly, so it works whether or not
    /// a process-wide provider was installed.
    pub fn new() -> HttpClient {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let https = match builder.with_provider_and_native_roots(provider) {
            Ok(b) => b.https_or_http().enable_http1().build(),
            Err(_) => {
                // No system roots (a bare container): plain HTTP still works.
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(
                        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                            rustls::crypto::ring::default_provider(),
                        ))
                        .with_safe_default_protocol_versions()
                        .expect("ring supports the default TLS versions")
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                    )
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http)
            }
        };
        HttpClient {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https),
        }
    }

    /// POSTs `body` as JSON; the whole exchange (connect, send, read) must end in `timeout`.
    pub async fn post_json(
        &self,
        url: &str,
        body: Vec<u8>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Response, HttpError> {
        self.post_json_with(url, body, &[], timeout, max_body).await
    }

    /// [`HttpClient::post_json`] with extra request headers.
    pub async fn post_json_with(
        &self,
        url: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
        timeout: Duration,
        max_body: usize,
    ) -> Result<Response, HttpError> {
        let uri: hyper::Uri = url.parse().map_err(|_| HttpError::BadUrl(url.into()))?;
        if !matches!(uri.scheme_str(), Some("http") | Some("https")) {
            return Err(HttpError::BadUrl(url.into()));
        }
        let typed = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        let mut req = hyper::Request::post(uri);
        if !typed {
            req = req.header("content-type", "application/json");
        }
        let mut req = req.header(
            "user-agent",
            concat!("careline/", env!("CARGO_PKG_VERSION")),
        );
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HttpError::Transport(e.to_string()))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| HttpError::Transport(e.to_string()))?;
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = Limited::new(resp.into_body(), max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        HttpError::TooLarge(max_body)
                    } else {
                        HttpError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Response {
                status,
                content_type,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout(timeout))?
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}
