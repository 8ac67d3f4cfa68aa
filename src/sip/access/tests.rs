use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::sip::digest::response;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn trusted_sources_are_named_by_their_trunk() {
    let mut trunks = BTreeMap::new();
    trunks.insert("carrier".to_string(), vec![net("198.51.100.0/24")]);
    trunks.insert(
        "pbx".to_string(),
        vec![net("10.1.2.3/32"), net("2001:db8::/32")],
    );
    let t = Trusted::new(&[net("10.0.0.0/8"), net("127.0.0.0/8")], &trunks);
    assert_eq!(t.source(ip("198.51.100.77")), Some(Some("carrier")));
    assert_eq!(
        t.source(ip("10.1.2.3")),
        Some(Some("pbx")),
        "the narrower net wins"
    );
    assert_eq!(t.source(ip("10.9.9.9")), Some(None));
    assert_eq!(t.source(ip("2001:db8::5")), Some(Some("pbx")));
    assert_eq!(t.source(ip("::ffff:127.0.0.1")), Some(None), "v4-mapped");
    assert_eq!(t.source(ip("203.0.113.1")), None);
    assert_eq!(Trusted::default().source(ip("127.0.0.1")), None);
}

/// One user, nina, with secret "s3cret"; locks a (user, source) pair after two failures.
#[derive(Default)]
struct Users {
    failures: AtomicU32,
    successes: AtomicU32,
}

#[async_trait::async_trait]
impl SipUsers for Users {
    async fn secret(&self, user: &str) -> Option<Zeroizing<String>> {
        (user == "nina").then(|| Zeroizing::new("s3cret".to_string()))
    }
    fn check(&self, _: &str, _: IpAddr) -> Result<(), Duration> {
        if self.failures.load(Ordering::SeqCst) >= 2 {
            Err(Duration::from_secs(1))
        } else {
            Ok(())
        }
    }
    async fn failed(&self, _: &str, _: IpAddr) {
        self.failures.fetch_add(1, Ordering::SeqCst);
    }
    fn succeeded(&self, _: &str, _: IpAddr) {
        self.successes.fetch_add(1, Ordering::SeqCst);
    }
}

fn gate(algorithms: Vec<Algorithm>) -> Gate {
    Gate::new(
        DigestSettings {
            realm: "careline".into(),
            algorithms,
            nonce_secs: 60,
        },
        [9; 32],
    )
}

fn nonce_of(d: &Decision) -> String {
    let Decision::Challenge { headers, .. } = d else {
        panic!("not a challenge: {d:?}")
    };
    crate::sip::digest::challenge_nonce(&headers[0]).expect("a nonce")
}

fn answer(alg: Algorithm, user: &str, secret: &str, nonce: &str, nc: u32) -> String {
    let nc = format!("{nc:08x}");
    let r = response(
        alg,
        user,
        "careline",
        secret,
        nonce,
        "REGISTER",
        "sip:careline",
        &nc,
        "cn",
    );
    format!(
        "Digest username=\"{user}\", realm=\"careline\", nonce=\"{nonce}\", uri=\"sip:careline\", \
         response=\"{r}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"cn\"",
        alg.as_str()
    )
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_phone_is_challenged_then_accepted_once_per_nonce_count() {
    run(async {
        let users = Users::default();
        let g = gate(vec![Algorithm::Sha256, Algorithm::Md5]);
        let phone = ip("192.0.2.7");
        let first = g.decide(&users, "REGISTER", phone, &[], 100).await;
        assert!(matches!(
            first,
            Decision::Challenge {
                why: "no credentials",
                ..
            }
        ));
        let nonce = nonce_of(&first);
        for (nc, alg) in [(1, Algorithm::Sha256), (2, Algorithm::Md5)] {
            let d = g
                .decide(
                    &users,
                    "REGISTER",
                    phone,
                    &[answer(alg, "nina", "s3cret", &nonce, nc)],
                    101,
                )
                .await;
            assert_eq!(
                d,
                Decision::Accepted {
                    user: "nina".into()
                },
                "{alg:?}"
            );
        }
        // The same request again (a replay) is challenged afresh, not accepted.
        let replay = answer(Algorithm::Md5, "nina", "s3cret", &nonce, 2);
        let d = g
            .decide(
                &users,
                "REGISTER",
                phone,
                std::slice::from_ref(&replay),
                102,
            )
            .await;
        assert!(
            matches!(
                d,
                Decision::Challenge {
                    why: "replayed",
                    ..
                }
            ),
            "{d:?}"
        );
        // From another address the nonce is not ours.
        let d = g
            .decide(
                &users,
                "REGISTER",
                ip("192.0.2.8"),
                &[answer(Algorithm::Md5, "nina", "s3cret", &nonce, 9)],
                102,
            )
            .await;
        assert!(
            matches!(
                d,
                Decision::Challenge {
                    why: "unknown nonce",
                    ..
                }
            ),
            "{d:?}"
        );
        // After the nonce's lifetime: stale, so the phone retries without asking its user.
        let d = g
            .decide(
                &users,
                "REGISTER",
                phone,
                &[answer(Algorithm::Md5, "nina", "s3cret", &nonce, 10)],
                161,
            )
            .await;
        let Decision::Challenge {
            headers,
            why: "stale nonce",
        } = &d
        else {
            panic!("{d:?}")
        };
        assert!(headers.iter().all(|h| h.contains("stale=true")));
        assert_eq!(users.successes.load(Ordering::SeqCst), 2);
    })
}

#[test]
fn unknown_users_and_wrong_secrets_get_the_same_answer_then_a_lockout() {
    run(async {
        let users = Users::default();
        let g = gate(vec![Algorithm::Md5]);
        let src = ip("203.0.113.5");
        let nonce = nonce_of(&g.decide(&users, "INVITE", src, &[], 5).await);
        let wrong = g
            .decide(
                &users,
                "REGISTER",
                src,
                &[answer(Algorithm::Md5, "nina", "guess", &nonce, 1)],
                5,
            )
            .await;
        let unknown = g
            .decide(
                &users,
                "REGISTER",
                src,
                &[answer(Algorithm::Md5, "nobody", "guess", &nonce, 2)],
                5,
            )
            .await;
        assert_eq!(
            wrong,
            Decision::Forbidden {
                why: "wrong credentials"
            }
        );
        assert_eq!(unknown, wrong, "a scanner cannot tell which names exist");
        // Locked: even the right secret is refused until the wait is over.
        let d = g
            .decide(
                &users,
                "REGISTER",
                src,
                &[answer(Algorithm::Md5, "nina", "s3cret", &nonce, 3)],
                6,
            )
            .await;
        assert_eq!(d, Decision::Forbidden { why: "throttled" });
    })
}

#[test]
fn only_offered_algorithms_and_our_realm_are_taken() {
    run(async {
        let users = Users::default();
        let g = gate(vec![Algorithm::Sha256]);
        let src = ip("192.0.2.1");
        let nonce = nonce_of(&g.decide(&users, "REGISTER", src, &[], 1).await);
        let md5 = answer(Algorithm::Md5, "nina", "s3cret", &nonce, 1);
        let d = g
            .decide(&users, "REGISTER", src, std::slice::from_ref(&md5), 1)
            .await;
        assert!(
            matches!(
                d,
                Decision::Challenge {
                    why: "unusable credentials",
                    ..
                }
            ),
            "{d:?}"
        );
        let other_realm = md5.replace("realm=\"careline\"", "realm=\"elsewhere\"");
        let sha = answer(Algorithm::Sha256, "nina", "s3cret", &nonce, 1);
        // Several answers: the usable one is found.
        let d = g
            .decide(&users, "REGISTER", src, &[other_realm, sha], 1)
            .await;
        assert_eq!(
            d,
            Decision::Accepted {
                user: "nina".into()
            }
        );
    })
}

/// A phone registers and then calls within one second: each request was challenged on its
/// own, and each answer starts its nonce count at 1. Neither may pass for a replay.
#[test]
fn two_challenges_in_one_second_are_two_nonces() {
    run(async {
        let users = Users::default();
        let g = gate(vec![Algorithm::Md5]);
        let phone = ip("192.0.2.7");
        let first = nonce_of(&g.decide(&users, "REGISTER", phone, &[], 100).await);
        let second = nonce_of(&g.decide(&users, "REGISTER", phone, &[], 100).await);
        assert_ne!(first, second);
        for n in [first, second] {
            let d = g
                .decide(
                    &users,
                    "REGISTER",
                    phone,
                    &[answer(Algorithm::Md5, "nina", "s3cret", &n, 1)],
                    100,
                )
                .await;
            assert_eq!(
                d,
                Decision::Accepted {
                    user: "nina".into()
                }
            );
        }
    })
}
