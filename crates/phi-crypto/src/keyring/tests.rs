#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use time::macros::datetime;

use super::*;

fn owner() -> KeyOwner {
    KeyOwner::Patient("p1".into())
}

#[test]
fn a_keyring_file_round_trips_and_never_prints_secrets() {
    let keyring = Keyring::generate(datetime!(2026-11-22 10:00 UTC)).unwrap();
    let json = keyring.to_json().unwrap();
    let again = Keyring::from_json(&json).unwrap();
    assert_eq!(again.versions(), keyring.versions());
    assert_eq!(again.index_root(), keyring.index_root());
    let key = KeyId::random().unwrap();
    let secret = Zeroizing::new([7u8; 32]);
    let wrapped = keyring.wrap(&owner(), &key, &secret).unwrap();
    assert_eq!(*again.unwrap(&owner(), &key, &wrapped).unwrap(), [7u8; 32]);
    let shown = format!("{keyring:?} {wrapped:?}");
    let file: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let secret_b64 = file["masterKeys"][0]["key"].as_str().unwrap();
    assert!(!shown.contains(secret_b64));
}

#[test]
fn bad_keyring_files_are_refused_without_echoing_keys() {
    for (json, expect) in [
        ("{}", "not a keyring file"),
        (
            r#"{"format":"other","active":1,"masterKeys":[],"blindIndexKey":""}"#,
            "unknown format",
        ),
        (
            r#"{"format":"cairn-keyring/1","active":2,"masterKeys":[{"version":1,"created":"2026-01-01T00:00:00Z","key":"AAAA"}],"blindIndexKey":"AAAA"}"#,
            "must be 32 bytes",
        ),
        (
            r#"{"format":"cairn-keyring/1","active":1,"masterKeys":[{"version":1,"created":"2026-01-01T00:00:00Z","key":"c2VjcmV0IXNlY3JldCE="}],"blindIndexKey":"x"}"#,
            "must be 32 bytes",
        ),
    ] {
        let err = Keyring::from_json(json.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(expect), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }
}

#[test]
fn rotation_adds_an_active_version_and_keeps_old_ones_readable() {
    let v1 = Keyring::generate(datetime!(2026-01-01 0:00 UTC)).unwrap();
    let key = KeyId::random().unwrap();
    let secret = Zeroizing::new([9u8; 32]);
    let old = v1.wrap(&owner(), &key, &secret).unwrap();
    let v2 = v1.rotated(datetime!(2026-06-01 0:00 UTC)).unwrap();
    assert_eq!(v2.active_version(), 2);
    assert_eq!(old.kek_version, 1);
    assert_eq!(*v2.unwrap(&owner(), &key, &old).unwrap(), [9u8; 32]);
    let new = v2.wrap(&owner(), &key, &secret).unwrap();
    assert_eq!(new.kek_version, 2);
    assert!(matches!(
        v1.unwrap(&owner(), &key, &new),
        Err(CryptoError::UnknownMasterKey(2))
    ));
    assert!(matches!(
        v2.without(2),
        Err(CryptoError::NotRetirable { .. })
    ));
    let retired = v2.without(1).unwrap();
    assert!(!retired.has_version(1));
    assert!(matches!(
        retired.unwrap(&owner(), &key, &old),
        Err(CryptoError::UnknownMasterKey(1))
    ));
    assert_eq!(
        retired.index_root(),
        v1.index_root(),
        "indexes survive rotation"
    );
}

#[test]
fn a_wrapped_key_opens_only_for_its_owner_and_id() {
    let keyring = Keyring::generate(datetime!(2026-01-01 0:00 UTC)).unwrap();
    let key = KeyId::random().unwrap();
    let wrapped = keyring
        .wrap(&owner(), &key, &Zeroizing::new([1u8; 32]))
        .unwrap();
    let other_owner = KeyOwner::Patient("p2".into());
    assert!(matches!(
        keyring.unwrap(&other_owner, &key, &wrapped),
        Err(CryptoError::Integrity { .. })
    ));
    let other_id = KeyId::random().unwrap();
    assert!(matches!(
        keyring.unwrap(&owner(), &other_id, &wrapped),
        Err(CryptoError::Integrity { .. })
    ));
    let mut flipped = wrapped.clone();
    flipped.bytes[20] ^= 1;
    assert!(matches!(
        keyring.unwrap(&owner(), &key, &flipped),
        Err(CryptoError::Integrity { .. })
    ));
}

#[test]
fn a_master_key_from_the_environment_works_and_derives_a_separate_index_root() {
    let raw = [3u8; 32];
    let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
    let keyring = Keyring::from_master_key_base64(&encoded).unwrap();
    assert_eq!(keyring.active_version(), 1);
    assert_ne!(keyring.index_root(), &raw);
    let again = Keyring::from_master_key_base64(&format!(" {encoded}\n")).unwrap();
    assert_eq!(again.index_root(), keyring.index_root());
    assert!(
        keyring.to_json().is_err(),
        "an env key is never written out"
    );
    assert!(Keyring::from_master_key_base64("dG9vIHNob3J0").is_err());
}

#[test]
fn the_token_signing_seed_survives_files_and_rotation_and_is_its_own_key() {
    let keyring = Keyring::generate(datetime!(2026-11-22 10:00 UTC)).unwrap();
    let seed = *keyring.token_signing_seed();
    assert_ne!(&seed, keyring.index_root());
    let again = Keyring::from_json(&keyring.to_json().unwrap()).unwrap();
    assert_eq!(again.token_signing_seed(), &seed);
    let rotated = keyring.rotated(datetime!(2026-11-23 10:00 UTC)).unwrap();
    assert_eq!(rotated.token_signing_seed(), &seed);
    assert_eq!(rotated.without(1).unwrap().token_signing_seed(), &seed);

    // A file written before tokens existed derives one stable seed from its index key.
    let mut old: serde_json::Value = serde_json::from_slice(&keyring.to_json().unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("tokenSigningSeed");
    let old = serde_json::to_vec(&old).unwrap();
    let first = *Keyring::from_json(&old).unwrap().token_signing_seed();
    assert_eq!(
        Keyring::from_json(&old).unwrap().token_signing_seed(),
        &first
    );
    assert_ne!(&first, keyring.index_root());

    // From the environment's one key: derived, stable, distinct from the other derived key.
    let env = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let a = Keyring::from_master_key_base64(&env).unwrap();
    let b = Keyring::from_master_key_base64(&env).unwrap();
    assert_eq!(a.token_signing_seed(), b.token_signing_seed());
    assert_ne!(a.token_signing_seed(), a.index_root());
}
