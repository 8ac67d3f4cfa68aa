//! TLS as a third party sees it: OpenSSL's own client against a Careline port.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// `openssl s_client` against `addr` with `args`, closing at once after the handshake; its
/// whole output.
pub fn s_client(addr: SocketAddr, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (apt-get install openssl)");
    // An empty line and end of input: s_client closes once the handshake is over.
    let _ = child.stdin.take().map(|mut s| s.write_all(b"\n"));
    let out = child.wait_with_output().expect("openssl s_client ran");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Checks what `addr` accepts: TLS 1.3; TLS 1.2 with a forward-secret AEAD suite only; TLS
/// 1.0 and 1.1 (offered for real, OpenSSL's own floor lowered) and static-RSA or CBC suites
/// ended by the server's alert, not by the client declining to try.
pub fn assert_modern_tls_only(addr: SocketAddr) {
    let v13 = s_client(addr, &["-tls1_3"]);
    assert!(v13.contains("TLSv1.3"), "TLS 1.3 is spoken:\n{v13}");
    let v12 = s_client(addr, &["-tls1_2"]);
    let cipher = v12
        .lines()
        .find_map(|l| l.split("Cipher is ").nth(1))
        .unwrap_or_else(|| panic!("TLS 1.2 is spoken:\n{v12}"))
        .trim()
        .to_string();
    assert!(
        cipher.starts_with("ECDHE-") && (cipher.contains("GCM") || cipher.contains("CHACHA20")),
        "TLS 1.2 picks a forward-secret AEAD suite, got {cipher}"
    );
    let refused = |out: &str| out.contains("SSL alert number") && out.contains("Cipher is (NONE)");
    for old in ["-tls1", "-tls1_1"] {
        let out = s_client(addr, &[old, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(refused(&out), "{old} is refused by the server:\n{out}");
    }
    let weak = s_client(
        addr,
        &[
            "-tls1_2",
            "-cipher",
            "AES128-SHA:AES256-SHA:AES128-SHA256:AES128-GCM-SHA256",
        ],
    );
    assert!(
        refused(&weak),
        "static-RSA and CBC suites are refused by the server:\n{weak}"
    );
}
