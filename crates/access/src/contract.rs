//! The contract every [`TokenRegistry`] must meet, run by the fake here and by adapters'
//! tests against their implementation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use time::macros::datetime;

use crate::ports::{Issuance, TokenRegistry};

fn issuance(token_id: &str, subject: &str, hour: u8) -> Issuance {
    let issued_at = datetime!(2026-11-22 00:00 UTC) + time::Duration::hours(i64::from(hour));
    Issuance {
        token_id: token_id.to_owned(),
        subject: subject.to_owned(),
        role: "clinician".to_owned(),
        organization: Some("Organization/1".to_owned()),
        patient: None,
        scopes: "user/*.cruds".to_owned(),
        purpose: Some("TREAT".to_owned()),
        issued_at,
        expires_at: issued_at + time::Duration::hours(8),
        revoked_at: None,
    }
}

/// Records, lists (newest first, by subject), revokes idempotently, and stamps every change.
pub async fn token_registry(registry: &dyn TokenRegistry) {
    let empty = registry.revocation_stamp().await.unwrap();
    assert!(registry.revoked_ids().await.unwrap().is_empty());

    let first = issuance("aa01", "user:alice", 1);
    let second = issuance("aa02", "user:alice", 2);
    let other = issuance("bb01", "service:feed", 3);
    for i in [&first, &second, &other] {
        registry.record_issuance(i).await.unwrap();
    }
    assert!(
        registry.record_issuance(&first).await.is_err(),
        "a token id is recorded once"
    );
    let all = registry.issuances(None).await.unwrap();
    assert_eq!(
        all.iter().map(|i| i.token_id.as_str()).collect::<Vec<_>>(),
        ["bb01", "aa02", "aa01"]
    );
    assert_eq!(all[2], first, "an issuance reads back as recorded");
    let alice = registry.issuances(Some("user:alice")).await.unwrap();
    assert_eq!(alice.len(), 2);

    let at = datetime!(2026-11-22 05:00 UTC);
    let ids = vec!["aa01".to_owned(), "aa02".to_owned()];
    assert_eq!(
        registry.revoke(&ids, at, "left the clinic").await.unwrap(),
        2
    );
    let stamp = registry.revocation_stamp().await.unwrap();
    assert_ne!(stamp, empty);
    assert_eq!(stamp.count, 2);
    // Revoking again changes nothing, not even the stamp.
    assert_eq!(registry.revoke(&ids, at, "again").await.unwrap(), 0);
    assert_eq!(registry.revocation_stamp().await.unwrap(), stamp);
    // Any revocation id may be revoked, also one of an attenuated block nobody recorded.
    assert_eq!(
        registry
            .revoke(&["cc99".to_owned()], at, "leaked")
            .await
            .unwrap(),
        1
    );
    assert_ne!(registry.revocation_stamp().await.unwrap(), stamp);

    let revoked = registry.revoked_ids().await.unwrap();
    assert!(revoked.contains("aa01") && revoked.contains("aa02") && revoked.contains("cc99"));
    assert!(!revoked.contains("bb01"));
    let alice = registry.issuances(Some("user:alice")).await.unwrap();
    assert!(alice.iter().all(|i| i.revoked_at == Some(at)));
    let feed = registry.issuances(Some("service:feed")).await.unwrap();
    assert_eq!(feed[0].revoked_at, None);
    assert!(feed[0].is_active(datetime!(2026-11-22 04:00 UTC)));
    assert!(!feed[0].is_active(datetime!(2026-11-22 12:00 UTC)));
}
