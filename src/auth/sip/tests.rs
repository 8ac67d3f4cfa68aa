use super::*;
use crate::auth::Auth;
use crate::sip::access::SipUsers;

async fn setup() -> (Auth, SipSecrets, Arc<KeyRing>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = Arc::new(KeyRing::open(dir.path(), crate::keys::Supplied::default()).expect("keys"));
    let db = Db::open(None, dir.path()).await.expect("database");
    let audit = Audit::new(db.clone(), keys.clone());
    let settings = AuthSettings {
        max_failures: 2,
        ..AuthSettings::default()
    };
    let auth = Auth::new(db.clone(), audit.clone(), settings.clone(), None);
    let secrets = SipSecrets::new(db, keys.clone(), audit, &settings, None);
    (auth, secrets, keys, dir)
}

#[tokio::test]
async fn a_secret_is_set_for_call_handlers_read_back_and_sealed_at_rest() {
    let (auth, secrets, _keys, dir) = setup().await;
    auth.create_user("nina", Role::Clinician, None, "admin")
        .await
        .unwrap();
    auth.create_user("audra", Role::Auditor, None, "admin")
        .await
        .unwrap();
    let secret = secrets.set("nina", "admin").await.expect("set");
    assert_eq!(secret.len(), 24);
    assert!(secret.bytes().all(|b| ALPHABET.contains(&b)));
    assert_eq!(
        secrets.secret("nina").await.as_deref().map(String::as_str),
        Some(secret.as_str())
    );
    assert!(secrets.has_secret("nina").await.unwrap());
    // A new one replaces the old.
    let again = secrets.set("nina", "admin").await.unwrap();
    assert_ne!(*again, *secret);
    assert_eq!(
        secrets.secret("nina").await.as_deref().map(String::as_str),
        Some(again.as_str())
    );
    // Not in clear in the database file.
    let file = std::fs::read(dir.path().join("careline.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("careline.db-wal")).unwrap_or_default();
    for bytes in [&file, &wal] {
        assert!(
            !bytes.windows(again.len()).any(|w| w == again.as_bytes()),
            "the secret is sealed at rest"
        );
    }
    // Only users who handle calls have phones; unknown users are named.
    assert!(matches!(
        secrets.set("audra", "admin").await,
        Err(AuthError::NotAHandler { .. })
    ));
    assert!(matches!(
        secrets.set("nobody", "admin").await,
        Err(AuthError::NoUser(_))
    ));
    // Disabled: the phone's secret no longer answers.
    auth.set_disabled("nina", true, "admin").await.unwrap();
    assert!(secrets.secret("nina").await.is_none());
    auth.set_disabled("nina", false, "admin").await.unwrap();
    assert!(secrets.clear("nina", "admin").await.unwrap());
    assert!(secrets.secret("nina").await.is_none());
    assert!(!secrets.clear("nina", "admin").await.unwrap());
    // Each change is in the audit trail, never the secret.
    let trail = auth.audit().query(&Default::default()).await.unwrap();
    let kinds: Vec<_> = trail.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|a| **a == action::SIP_SECRET_SET)
            .count(),
        2
    );
    assert!(kinds.contains(&action::SIP_SECRET_CLEAR));
    let text: String = trail.iter().map(|e| e.detail.clone()).collect();
    assert!(!text.contains(again.as_str()));
}

#[tokio::test]
async fn failures_lock_a_pair_and_only_a_real_accounts_lockout_is_audited() {
    let (auth, secrets, _keys, _dir) = setup().await;
    auth.create_user("nina", Role::Agent, None, "admin")
        .await
        .unwrap();
    let src: IpAddr = "203.0.113.9".parse().unwrap();
    for name in ["nina", "ghost"] {
        assert!(secrets.check(name, src).is_ok());
        secrets.failed(name, src).await;
        secrets.failed(name, src).await;
        secrets.failed(name, src).await;
        assert!(secrets.check(name, src).is_err(), "{name} waits now");
    }
    // Another address is not slowed by them.
    assert!(secrets.check("nina", "192.0.2.1".parse().unwrap()).is_ok());
    let trail = auth.audit().query(&Default::default()).await.unwrap();
    let locks: Vec<_> = trail
        .iter()
        .filter(|e| e.action == action::SIP_LOCKOUT)
        .map(|e| e.actor.clone())
        .collect();
    assert_eq!(locks, vec!["nina".to_string()]);
}

#[tokio::test]
async fn rotation_rewraps_secrets_which_still_open() {
    let (auth, secrets, keys, dir) = setup().await;
    auth.create_user("nina", Role::Supervisor, None, "admin")
        .await
        .unwrap();
    let secret = secrets.set("nina", "admin").await.unwrap();
    let mut ring = KeyRing::open(dir.path(), crate::keys::Supplied::default()).unwrap();
    ring.rotate().unwrap();
    let rotated = SipSecrets::new(
        secrets.db.clone(),
        Arc::new(ring),
        secrets.audit.clone(),
        &AuthSettings::default(),
        None,
    );
    assert_eq!(rotated.reseal_all().await.unwrap(), 1);
    assert_eq!(rotated.reseal_all().await.unwrap(), 0, "nothing left to do");
    assert_eq!(
        rotated.secret("nina").await.as_deref().map(String::as_str),
        Some(secret.as_str())
    );
    drop(keys);
}
