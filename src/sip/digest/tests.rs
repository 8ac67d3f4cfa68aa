use super::*;

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// RFC 7616 §3.9.1's example (HTTP, but the computation is the one SIP uses): both the
/// MD5 and the SHA-256 response, from the RFC's own numbers.
#[test]
fn the_rfc_7616_example_responses() {
    let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    let args = |a| {
        response(
            a,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
            nonce,
            "GET",
            "/dir/index.html",
            "00000001",
            cnonce,
        )
    };
    assert_eq!(args(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
    assert_eq!(
        args(Algorithm::Sha256),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

fn header(alg: &str, nonce: &str, resp: &str, nc: &str) -> String {
    format!(
        "Digest username=\"nina\",realm=\"careline\", nonce=\"{nonce}\", uri=\"sip:100@127.0.0.1:5060\", \
         response=\"{resp}\", algorithm={alg}, cnonce=\"0a4f113b\", nc={nc}, qop=auth, opaque=\"\""
    )
}

#[test]
fn a_phone_answer_verifies_with_the_right_secret_only() {
    for (alg, name) in [(Algorithm::Md5, "MD5"), (Algorithm::Sha256, "sha-256")] {
        let resp = response(
            alg,
            "nina",
            "careline",
            "s3cret",
            "N1",
            "INVITE",
            "sip:100@127.0.0.1:5060",
            "00000001",
            "0a4f113b",
        );
        let creds = Credentials::parse(&header(name, "N1", &resp, "00000001")).unwrap();
        assert_eq!(creds.algorithm, alg);
        assert_eq!(creds.uri, "sip:100@127.0.0.1:5060");
        assert!(creds.verify("s3cret", "INVITE"));
        assert!(!creds.verify("s3cret!", "INVITE"), "wrong secret");
        assert!(!creds.verify("s3cret", "REGISTER"), "other method");
        // Upper-case hex from the client is the same answer.
        let upper =
            Credentials::parse(&header(name, "N1", &resp.to_uppercase(), "00000001")).unwrap();
        assert!(upper.verify("s3cret", "INVITE"));
    }
}

#[test]
fn authorizations_careline_cannot_use_are_refused_by_name() {
    let ok = header("MD5", "N", "abc", "00000001");
    assert!(Credentials::parse(&ok).is_ok());
    assert_eq!(
        Credentials::parse("Basic bmluYTpzZWNyZXQ="),
        Err(DigestError::NotDigest)
    );
    assert_eq!(
        Credentials::parse(&ok.replace("algorithm=MD5", "algorithm=SHA-512-256")),
        Err(DigestError::Algorithm)
    );
    assert_eq!(
        Credentials::parse(&ok.replace("qop=auth", "qop=auth-int")),
        Err(DigestError::Qop)
    );
    assert_eq!(
        Credentials::parse(&ok.replace(", qop=auth", "")),
        Err(DigestError::Qop),
        "RFC 2069 digests without qop cannot be told from replays"
    );
    assert_eq!(
        Credentials::parse(&ok.replace("nc=00000001", "nc=1")),
        Err(DigestError::NonceCount)
    );
    assert_eq!(
        Credentials::parse(&ok.replace("username=\"nina\",", "")),
        Err(DigestError::Missing("username"))
    );
    assert_eq!(
        Credentials::parse(&ok.replace("\"0a4f113b\"", "\"0a4f113b")),
        Err(DigestError::Syntax)
    );
    // No algorithm means MD5 (RFC 3261 §25.1 default).
    let plain = Credentials::parse(&ok.replace(", algorithm=MD5", "")).unwrap();
    assert_eq!(plain.algorithm, Algorithm::Md5);
}

#[test]
fn quoted_values_keep_commas_and_escapes() {
    let v = "Digest username=\"a\\\"b, c\", realm=careline, nonce=\"n\", uri=\"sip:x\", \
             response=\"r\", qop=\"auth\", nc=00000002, cnonce=\"c\"";
    let c = Credentials::parse(v).unwrap();
    assert_eq!(c.username, "a\"b, c");
    assert_eq!(c.realm, "careline");
    assert_eq!(c.nc, 2);
}

#[test]
fn nonces_are_ours_for_one_address_and_go_stale() {
    let n = Nonces::new([1; 32], 300);
    let phone = addr("192.0.2.7");
    let nonce = n.mint(1_000, [5; 8], phone);
    assert_ne!(
        nonce,
        n.mint(1_000, [6; 8], phone),
        "each challenge its own nonce"
    );
    assert_eq!(n.check(&nonce, 1_000, phone), NonceState::Fresh);
    assert_eq!(n.check(&nonce, 1_300, phone), NonceState::Fresh);
    assert_eq!(n.check(&nonce, 1_301, phone), NonceState::Stale);
    assert_eq!(
        n.check(&nonce, 999, phone),
        NonceState::Stale,
        "from the future"
    );
    assert_eq!(
        n.check(&nonce, 1_000, addr("192.0.2.8")),
        NonceState::Unknown,
        "another address"
    );
    assert_eq!(
        Nonces::new([2; 32], 300).check(&nonce, 1_000, phone),
        NonceState::Unknown,
        "another key (a restart)"
    );
    // A nonce with its time moved forward is not ours.
    let mut raw = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
    raw[7] ^= 1;
    assert_eq!(
        n.check(&URL_SAFE_NO_PAD.encode(raw), 1_000, phone),
        NonceState::Unknown
    );
    for junk in ["", "not base64!", "AAAA", &nonce[..10]] {
        assert_eq!(n.check(junk, 1_000, phone), NonceState::Unknown, "{junk}");
    }
}

#[test]
fn a_challenge_offers_each_algorithm_with_one_nonce() {
    let n = Nonces::new([1; 32], 300);
    let c = n.challenge(
        "care\"line",
        &[Algorithm::Sha256, Algorithm::Md5],
        5,
        [0; 8],
        addr("::1"),
        true,
    );
    assert_eq!(c.len(), 2);
    assert!(
        c[0].starts_with("Digest realm=\"careline\", nonce=\""),
        "{}",
        c[0]
    );
    assert!(c[0].contains("algorithm=SHA-256") && c[1].contains("algorithm=MD5"));
    assert!(
        c.iter()
            .all(|h| h.contains("qop=\"auth\"") && h.ends_with("stale=true"))
    );
    let nonce = |h: &str| challenge_nonce(h).expect("a nonce");
    assert_eq!(nonce(&c[0]), nonce(&c[1]));
    assert!(n.check(&nonce(&c[0]), 5, addr("::1")).is_fresh());
}

#[test]
fn a_nonce_count_is_taken_once_and_must_rise() {
    let mut r = Replays::new(2, 300);
    assert!(r.accept("a", 1, 10));
    assert!(!r.accept("a", 1, 11), "the same request again");
    assert!(r.accept("a", 3, 12), "counts may skip");
    assert!(!r.accept("a", 2, 13), "an older request");
    assert!(!r.accept("b", 0, 13), "nc starts at 1");
    assert!(r.accept("b", 1, 14));
    // Full: the least recently used nonce goes.
    assert!(r.accept("c", 1, 15));
    assert_eq!(r.len(), 2);
    assert!(r.accept("a", 1, 16), "forgotten (it is stale by then)");
    // Unused for a lifetime: forgotten at the next sweep.
    assert!(r.accept("d", 1, 16 + 301));
    assert_eq!(r.len(), 1);
}

proptest::proptest! {
    /// Any text is parsed or refused, never a panic.
    #[test]
    fn any_authorization_text_is_parsed_or_refused(s in "\\PC{0,200}") {
        let _ = Credentials::parse(&s);
        let _ = Credentials::parse(&format!("Digest {s}"));
    }
}
