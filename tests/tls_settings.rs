//! Transport security as an auditor or a scanner checks it (the HIPAA transmission-security
//! safeguard): Careline's SIP TLS port speaks TLS 1.2 and 1.3 only, with forward-secret AEAD
//! suites only. Checked with OpenSSL's own client (`openssl s_client`), not with the TLS
//! library Careline uses. (The HTTPS listener gets the same check in
//! `tests/access_api.rs`.)

mod support;

use support::server::TestServer;

#[test]
fn sip_over_tls_speaks_tls_1_2_and_1_3_with_forward_secret_aead_suites_only() {
    let server = TestServer::start();
    support::tls::assert_modern_tls_only(server.tls);
    assert!(
        server.http_get("/healthz").is_some_and(|(c, _)| c == 200),
        "the server is fine after the refusals"
    );
}
